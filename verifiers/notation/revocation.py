"""Revocation checking of a certificate chain (OCSP, then CRL), as notation does it.

For every certificate of the chain except the root (the leaf and the intermediates), issued by the next one:

* a certificate naming neither an OCSP responder (authorityInfoAccess) nor a CRL distribution point is
  *not revocable* and passes;
* OCSP first: a request for the certificate (CertID hashed with SHA-1, the RFC 5019 profile every responder
  accepts; a response's CertID may use any hash cryptography knows) is POSTed as
  `application/ocsp-request` to each `http://`/`https://` OCSP URL in turn. The response (`check_ocsp`)
  must be signed by the issuer, or by a delegated responder certificate issued by the issuer with the
  OCSPSigning extended key usage and valid now; `thisUpdate` must not be in the future and `nextUpdate`
  (when present) not in the past (5 minutes of clock skew either way). Its status is good, revoked or
  unknown;
* when OCSP is absent, or every responder failed (network error, HTTP error, unusable or *unknown*
  response — notation falls back on an unknown OCSP result too), the CRLs: each `http://`/`https://`
  distribution point is fetched with a GET (DER, or PEM) and checked (`check_base_crl`: issued and signed by
  the issuer, no unknown critical extension, `nextUpdate` present and not passed, not itself a delta CRL).
  When that base CRL names a delta CRL (Freshest CRL extension), the delta is fetched from its first
  `http://`/`https://` location that answers; when none does, that CRL is unusable (notation-go's CRL
  fetcher fails the same way: the status is not taken from a base CRL alone). `check_crl` then verifies the
  delta (same issuer, not past `nextUpdate`, Delta CRL Indicator <= the base CRL number < its own CRL
  number) and looks the serial up in both: a permanent reason in either revokes; otherwise the latest
  `certificateHold` / `removeFromCRL` entry decides (a hold in the base lifted by `removeFromCRL` in the
  delta is good).

The chain is `revoked` when any certificate is, `unavailable` when any certificate's status could not be
established, else `good`. Requests never follow redirects, carry no credentials (a URL with user
information is refused, no cookies, no proxy or .netrc from the environment), and are bounded: each by
`min(remaining time before the deadline, 2 s)`, a response by 64 KiB (OCSP) or 8 MiB (a CRL or delta
CRL). Good and revoked statuses are cached until their `nextUpdate` (the earlier of a base and delta CRL's;
a bounded LRU keyed by issuer key hash and serial).

The same checker (rules, cache, deadline) serves a Notary Project signing chain and the certificate chain
of the RFC 3161 timestamp authority that countersigned it (the verifier asks for both). `check_ocsp`,
`check_base_crl` and `check_crl` are pure; `RevocationChecker` does the fetching through a
`RevocationFetcher` (by default `AiohttpFetcher`, one `aiohttp.ClientSession` created lazily and reused;
`aclose()` it).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    CRLEntryExtensionOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
)

__all__ = [
    "MAX_CRL_BYTES",
    "MAX_OCSP_BYTES",
    "AiohttpFetcher",
    "CertStatus",
    "ChainStatus",
    "FetchError",
    "ResponseError",
    "RevocationChecker",
    "RevocationFetcher",
    "check_base_crl",
    "check_crl",
    "check_ocsp",
    "crl_urls",
    "freshest_crl_urls",
    "is_revocable",
    "ocsp_request",
    "ocsp_urls",
    "parse_crl",
]

MAX_OCSP_BYTES = 64 * 1024
MAX_CRL_BYTES = 8 * 1024 * 1024
REQUEST_TIMEOUT = 2.0
CACHE_SIZE = 1024
MAX_URLS = 4  # per certificate and kind
SKEW = timedelta(minutes=5)

Status = Literal["good", "revoked", "unknown"]


class ResponseError(ValueError):
    """An OCSP response or CRL that cannot be used (malformed, wrong signer, out of date...)."""


class FetchError(Exception):
    """A fetch that failed (network, HTTP status, too large, timeout, refused URL)."""


@dataclass(frozen=True, slots=True)
class CertStatus:
    """One certificate's status from one source. `next_update`: until when it may be cached."""

    status: Status
    source: Literal["ocsp", "crl"]
    this_update: datetime
    next_update: datetime | None
    revocation_time: datetime | None = None
    reason: str | None = None

    def describe(self, cert: x509.Certificate) -> str:
        subject = repr(cert.subject.rfc4514_string())
        if self.status == "revoked":
            when = self.revocation_time.isoformat() if self.revocation_time else "an unknown time"
            return (
                f"certificate {subject} (serial {cert.serial_number:x}) was revoked at {when} "
                f"(reason: {self.reason or 'unspecified'}; by {self.source.upper()})"
            )
        return f"certificate {subject} is {self.status} (by {self.source.upper()})"


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """The chain's outcome: `good`, `revoked` or `unavailable`, with a sentence."""

    status: Literal["good", "revoked", "unavailable"]
    message: str


# --- pure checks ------------------------------------------------------------------------------------------


def _sha1() -> hashes.HashAlgorithm:
    return hashes.SHA1()  # CertID hashing (RFC 5019), not a signature


def ocsp_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """A DER OCSP request for `cert` (CertID with SHA-1), no nonce (RFC 5019)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, _sha1())
    return builder.build().public_bytes(serialization.Encoding.DER)


def _verify(key: object, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None) -> None:
    if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
        key.verify(signature, data, ec.ECDSA(algorithm))
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        key.verify(signature, data)
    else:
        raise InvalidSignature("unsupported key or signature algorithm")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _key_hash(cert: x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey bit string (the responder-id `byKey` form)."""
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _is_responder(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_key_hash is not None:
        return response.responder_key_hash == _key_hash(cert)
    return response.responder_name == cert.subject


def _ocsp_signer(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime) -> x509.Certificate:
    if _is_responder(response, issuer):
        return issuer
    for candidate in response.certificates:
        if not _is_responder(response, candidate):
            continue
        if not _issued_by(candidate, issuer):
            raise ResponseError("the OCSP responder certificate is not issued by the certificate's issuer")
        try:
            eku = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = None
        if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            raise ResponseError("the delegated OCSP responder certificate lacks the OCSPSigning usage")
        if not candidate.not_valid_before_utc <= now <= candidate.not_valid_after_utc:
            raise ResponseError("the delegated OCSP responder certificate is not valid now")
        return candidate
    raise ResponseError("the OCSP response is signed neither by the issuer nor by a delegated responder")


def _reason(reason: x509.ReasonFlags | None) -> str | None:
    return reason.value if reason is not None else None


def check_ocsp(data: bytes, cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> CertStatus:
    """The status of `cert` in the DER OCSP response `data`; raises `ResponseError` when unusable."""
    try:
        response = ocsp.load_der_ocsp_response(data)
    except ValueError as exc:
        raise ResponseError(f"not an OCSP response: {exc}") from None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise ResponseError(f"the OCSP responder answered {response.response_status.name}")
    signer = _ocsp_signer(response, issuer, now)
    try:
        _verify(
            signer.public_key(),
            response.signature,
            response.tbs_response_bytes,
            response.signature_hash_algorithm,
        )
    except (InvalidSignature, UnsupportedAlgorithm):
        raise ResponseError("the OCSP response signature does not verify") from None
    for single in response.responses:
        if single.serial_number != cert.serial_number:
            continue
        expected = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, single.hash_algorithm).build()
        if (single.issuer_key_hash, single.issuer_name_hash) != (
            expected.issuer_key_hash,
            expected.issuer_name_hash,
        ):
            continue
        this_update, next_update = single.this_update_utc, single.next_update_utc
        if this_update > now + SKEW:
            raise ResponseError(f"the OCSP response's thisUpdate {this_update.isoformat()} is in the future")
        if next_update is not None and next_update + SKEW < now:
            raise ResponseError(f"the OCSP response expired at {next_update.isoformat()}")
        if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return CertStatus("good", "ocsp", this_update, next_update)
        if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
            return CertStatus(
                "revoked",
                "ocsp",
                this_update,
                next_update,
                single.revocation_time_utc,
                _reason(single.revocation_reason),
            )
        return CertStatus("unknown", "ocsp", this_update, next_update)
    raise ResponseError("the OCSP response does not cover the certificate")


# CRL-level extensions that may be critical (notation-go's validateCRL allows these two, nothing else).
_CRITICAL_CRL_EXTENSIONS = (ExtensionOID.ISSUING_DISTRIBUTION_POINT, ExtensionOID.DELTA_CRL_INDICATOR)
# Entry extensions that may be critical: the reason code and the invalidity date.
_CRITICAL_ENTRY_EXTENSIONS = (CRLEntryExtensionOID.CRL_REASON, CRLEntryExtensionOID.INVALIDITY_DATE)
_TEMPORARY = (x509.ReasonFlags.certificate_hold, x509.ReasonFlags.remove_from_crl)


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from DER or PEM `data`; raises `ResponseError`."""
    try:
        crl = (
            x509.load_pem_x509_crl(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_crl(data)
        )
        crl.extensions  # noqa: B018 - parsed lazily; a malformed extension raises here
    except ValueError as exc:
        raise ResponseError(f"not a CRL: {exc}") from None
    return crl


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def _delta_indicator(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number
    except x509.ExtensionNotFound:
        return None


def _validate_crl(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: datetime, what: str
) -> None:
    """Issued and signed by `issuer`, known critical extensions only, `nextUpdate` present and not passed."""
    if crl.issuer != issuer.subject:
        raise ResponseError(f"the {what} is not issued by the certificate's issuer")
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.crl_sign:
            raise ResponseError(f"the {what} issuer lacks the cRLSign key usage")
    except x509.ExtensionNotFound:
        pass
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise ResponseError(f"the {what} signature does not verify")
    for extension in crl.extensions:
        if extension.critical and extension.oid not in _CRITICAL_CRL_EXTENSIONS:
            oid = extension.oid.dotted_string
            raise ResponseError(f"the {what} has an unsupported critical extension {oid}")
    last_update, next_update = crl.last_update_utc, crl.next_update_utc
    if next_update is None:
        raise ResponseError(f"the {what} has no nextUpdate")
    if last_update > now + SKEW:
        raise ResponseError(f"the {what}'s thisUpdate {last_update.isoformat()} is in the future")
    if next_update + SKEW < now:
        raise ResponseError(f"the {what} expired at {next_update.isoformat()}")


def check_base_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: datetime) -> None:
    """Whether `crl` can serve as `issuer`'s base CRL (see `check_crl`); raises `ResponseError`.

    The checker calls it before following the CRL's Freshest CRL locations, so a forged CRL cannot send
    it anywhere.
    """
    _validate_crl(crl, issuer, now, "CRL")
    if _delta_indicator(crl) is not None:
        raise ResponseError("the CRL is a delta CRL (a base CRL is needed)")


def _point_uris(
    extensions: x509.Extensions, kind: type[x509.FreshestCRL] | type[x509.CRLDistributionPoints]
) -> list[str]:
    """The full-name URIs of the distribution points in the extension `kind`; [] without it."""
    try:
        points = extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return []
    return [
        name.value
        for point in points
        for name in (point.full_name or ())
        if isinstance(name, x509.UniformResourceIdentifier)
    ]


def freshest_crl_urls(crl: x509.CertificateRevocationList) -> list[str]:
    """The full-name URIs of the CRL's Freshest CRL extension (where its delta CRL is); [] without one."""
    return _point_uris(crl.extensions, x509.FreshestCRL)


def _has_freshest(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_class(x509.FreshestCRL)
    except x509.ExtensionNotFound:
        return False
    return True


def _check_delta(
    delta: x509.CertificateRevocationList,
    base: x509.CertificateRevocationList,
    issuer: x509.Certificate,
    now: datetime,
) -> None:
    """RFC 5280 5.2.4, as notation-go checks it: same issuer, newer than the base, based on it or older."""
    _validate_crl(delta, issuer, now, "delta CRL")
    minimum_base = _delta_indicator(delta)
    if minimum_base is None:
        raise ResponseError("the delta CRL has no Delta CRL Indicator")
    base_number, delta_number = _crl_number(base), _crl_number(delta)
    if base_number is None:
        raise ResponseError("the base CRL has no CRL number, so its delta CRL cannot be matched to it")
    if delta_number is None or delta_number <= base_number:
        raise ResponseError(
            f"the delta CRL's number {delta_number} is not greater than the base CRL's {base_number}"
        )
    if minimum_base > base_number:
        raise ResponseError(
            f"the delta CRL applies to base CRLs numbered {minimum_base} or later, not {base_number}"
        )


def _entry_reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    for extension in entry.extensions:
        if extension.critical and extension.oid not in _CRITICAL_ENTRY_EXTENSIONS:
            raise ResponseError(
                f"the CRL entry has an unsupported critical extension {extension.oid.dotted_string}"
            )
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None


def check_crl(
    data: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    now: datetime,
    delta: bytes | None = None,
) -> CertStatus:
    """The status of `cert` in the CRL `data` (DER or PEM) and its delta CRL; raises `ResponseError`.

    The base CRL must be issued and signed by `issuer`, carry no critical extension but an issuing
    distribution point, have a `nextUpdate` not passed, and not be a delta CRL. When it names a delta CRL
    (a Freshest CRL extension with locations), `delta` must be that CRL: signed by the same issuer, not
    past its `nextUpdate`, with a Delta CRL Indicator whose base CRL number is at most the base CRL's
    number and a CRL number greater than it. A certificate whose own Freshest CRL extension is not matched
    by one in its base CRL is refused, as notation-go does.

    An entry with a permanent reason, in either CRL, revokes. Otherwise the most recent `certificateHold`
    or `removeFromCRL` entry decides (on equal dates the delta's, the newer CRL): on hold is revoked,
    removed from the CRL is good.
    """
    base = parse_crl(data)
    check_base_crl(base, issuer, now)
    named = freshest_crl_urls(base)
    if _has_freshest(cert) and not named:
        raise ResponseError(
            "the certificate names a delta CRL that its base CRL does not (not supported, as in notation)"
        )
    lists: list[x509.CertificateRevocationList] = [base]
    if named:
        if delta is None:
            raise ResponseError("the CRL names a delta CRL, and none was supplied")
        delta_crl = parse_crl(delta)
        _check_delta(delta_crl, base, issuer, now)
        lists.append(delta_crl)
    elif delta is not None:
        raise ResponseError("a delta CRL was supplied for a CRL that names none")
    this_update = lists[-1].last_update_utc
    next_update = min(crl.next_update_utc for crl in lists if crl.next_update_utc is not None)
    latest: x509.RevokedCertificate | None = None  # the most recent certificateHold/removeFromCRL entry
    on_hold = False
    for crl in lists:  # base first, then the delta
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            continue
        reason = _entry_reason(entry)
        if reason is None or reason not in _TEMPORARY:
            return CertStatus(
                "revoked", "crl", this_update, next_update, entry.revocation_date_utc, _reason(reason)
            )
        if latest is None or entry.revocation_date_utc >= latest.revocation_date_utc:
            latest, on_hold = entry, reason == x509.ReasonFlags.certificate_hold
    if latest is not None and on_hold:
        return CertStatus(
            "revoked", "crl", this_update, next_update, latest.revocation_date_utc, "certificateHold"
        )
    return CertStatus("good", "crl", this_update, next_update)


def _http_urls(urls: list[str]) -> list[str]:
    out = []
    for url in urls:
        parts = urlsplit(url)
        if (
            parts.scheme.lower() in ("http", "https")
            and parts.hostname
            and not (parts.username or parts.password)
        ):
            out.append(url)
    return out[:MAX_URLS]


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    """The OCSP responder URLs of `cert` (all of them, any scheme)."""
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [
        d.access_location.value
        for d in access
        if d.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    ]


def crl_urls(cert: x509.Certificate) -> list[str]:
    """The full-name URIs of `cert`'s CRL distribution points (any scheme)."""
    return _point_uris(cert.extensions, x509.CRLDistributionPoints)


def is_revocable(cert: x509.Certificate) -> bool:
    """Whether `cert` names an OCSP responder or a CRL distribution point (any scheme)."""
    return bool(ocsp_urls(cert) or crl_urls(cert))


# --- fetching -------------------------------------------------------------------------------------------


class RevocationFetcher(Protocol):
    """What the checker fetches with: `fetch` returns the body of a 200 response or raises `FetchError`."""

    async def fetch(
        self, url: str, body: bytes | None, content_type: str | None, max_bytes: int, time_limit: float
    ) -> bytes:
        """GET `url` (body None) or POST `body`; no redirects, at most `max_bytes`, within `time_limit` s."""
        ...

    async def aclose(self) -> None: ...


class AiohttpFetcher:
    """A `RevocationFetcher` on one lazily created `aiohttp.ClientSession` (no cookies, no env proxies)."""

    def __init__(self) -> None:
        self._session: object | None = None

    async def fetch(
        self, url: str, body: bytes | None, content_type: str | None, max_bytes: int, time_limit: float
    ) -> bytes:
        import aiohttp

        if not isinstance(self._session, aiohttp.ClientSession) or self._session.closed:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=True
            )
        session = self._session
        headers = {"Content-Type": content_type} if content_type else {}
        method = "GET" if body is None else "POST"
        try:
            async with asyncio.timeout(time_limit):
                async with session.request(
                    method, url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    if response.status != 200:
                        raise FetchError(f"{method} {url}: HTTP {response.status}")
                    if response.content_length is not None and response.content_length > max_bytes:
                        raise FetchError(f"{method} {url}: the response is larger than {max_bytes} bytes")
                    data = await response.content.read(max_bytes + 1)
                    while len(data) <= max_bytes:
                        more = await response.content.read(max_bytes + 1 - len(data))
                        if not more:
                            break
                        data += more
                    if len(data) > max_bytes:
                        raise FetchError(f"{method} {url}: the response is larger than {max_bytes} bytes")
                    return data
        except TimeoutError:
            raise FetchError(f"{method} {url}: timed out after {time_limit:.1f}s") from None
        except aiohttp.ClientError as exc:
            raise FetchError(f"{method} {url}: {exc or type(exc).__name__}") from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        import aiohttp

        if isinstance(session, aiohttp.ClientSession):
            await session.close()


class RevocationChecker:
    """Checks chains (see the module); caches good/revoked statuses until their nextUpdate."""

    def __init__(
        self,
        fetcher: RevocationFetcher | None = None,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.fetcher: RevocationFetcher = fetcher if fetcher is not None else AiohttpFetcher()
        self.request_timeout = request_timeout
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[bytes, int], CertStatus] = OrderedDict()

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    def _timeout(self, deadline: float) -> float:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise FetchError("the verification deadline has passed")
        return min(remaining, self.request_timeout)

    async def _one(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime, deadline: float
    ) -> tuple[CertStatus | None, list[str]]:
        problems: list[str] = []
        ocsp_list, crl_list = _http_urls(ocsp_urls(cert)), _http_urls(crl_urls(cert))
        if not ocsp_list and not crl_list:
            problems.append("it names no http(s) OCSP responder or CRL distribution point")
        request = ocsp_request(cert, issuer) if ocsp_list else b""
        for url in ocsp_list:
            try:
                data = await self.fetcher.fetch(
                    url, request, "application/ocsp-request", MAX_OCSP_BYTES, self._timeout(deadline)
                )
                status = check_ocsp(data, cert, issuer, now)
            except (FetchError, ResponseError) as exc:
                problems.append(f"OCSP {url}: {exc}")
                continue
            if status.status != "unknown":
                return status, problems
            problems.append(f"OCSP {url}: the responder does not know the certificate")
        for url in crl_list:
            try:
                data = await self.fetcher.fetch(url, None, None, MAX_CRL_BYTES, self._timeout(deadline))
                delta = await self._delta(data, issuer, now, deadline)
                return check_crl(data, cert, issuer, now, delta), problems
            except (FetchError, ResponseError) as exc:
                problems.append(f"CRL {url}: {exc}")
        return None, problems

    async def _delta(
        self, data: bytes, issuer: x509.Certificate, now: datetime, deadline: float
    ) -> bytes | None:
        """The delta CRL the base CRL `data` names (after checking the base); None when it names none.

        The delta's locations are tried in order; when none answers, the CRL cannot be used (`FetchError`),
        as in notation-go, whose CRL fetcher fails when the delta CRL cannot be fetched.
        """
        base = parse_crl(data)
        check_base_crl(base, issuer, now)
        named = freshest_crl_urls(base)
        if not named:
            return None
        urls = _http_urls(named)
        if not urls:
            raise FetchError("its delta CRL (Freshest CRL) has no http(s) location")
        failures: list[str] = []
        for url in urls:
            try:
                return await self.fetcher.fetch(url, None, None, MAX_CRL_BYTES, self._timeout(deadline))
            except FetchError as exc:
                failures.append(str(exc))
        raise FetchError(f"its delta CRL is unavailable: {'; '.join(failures)}")

    async def check_chain(
        self, chain: Sequence[x509.Certificate], now: datetime, deadline: float
    ) -> ChainStatus:
        """The chain's revocation status (leaf first, root last; the root is not checked)."""
        unavailable: list[str] = []
        checked = 0
        for index, cert in enumerate(chain[:-1]):
            if not is_revocable(cert):
                continue
            checked += 1
            issuer = chain[index + 1]
            spki = issuer.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            key = (hashlib.sha256(spki).digest(), cert.serial_number)
            status = self._cache.get(key)
            if status is not None and status.next_update is not None and now < status.next_update:
                self._cache.move_to_end(key)
            else:
                self._cache.pop(key, None)
                status, problems = await self._one(cert, issuer, now, deadline)
                if status is None:
                    subject = repr(cert.subject.rfc4514_string())
                    unavailable.append(
                        f"the revocation status of {subject} is unavailable: {'; '.join(problems)}"
                    )
                    continue
                if status.next_update is not None:
                    self._cache[key] = status
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
            if status.status == "revoked":
                return ChainStatus("revoked", status.describe(cert))
        if unavailable:
            return ChainStatus("unavailable", "; ".join(unavailable))
        if not checked:
            return ChainStatus("good", "no certificate of the chain names an OCSP responder or CRL")
        return ChainStatus("good", "no certificate of the chain is revoked (OCSP/CRL)")
