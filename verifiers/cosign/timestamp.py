"""RFC 3161 timestamps: a trusted timestamp authority (TSA) vouches that some bytes existed at a time.

cosign (v2 `sign --timestamp-server-url`, and v3's legacy formats) asks the TSA to timestamp the *raw
signature bytes* (the base64-decoded `dev.cosignproject.cosign/signature` annotation), SHA-256 imprint, and
stores the whole DER `TimeStampResp` in the layer annotation `dev.sigstore.cosign/rfc3161timestamp` as
JSON: ``{"SignedRFC3161Timestamp": "<base64 DER>"}`` (cosign's `internal/pkg/cosign/tsa/signer.go` and
`pkg/cosign/verify.go` `VerifyRFC3161Timestamp`, which verifies over the same raw signature bytes).

Parsing and verifying is rfc3161-client's (Trail of Bits; what sigstore-python uses for bundle timestamps):
`decode_timestamp_response` parses strictly (DER), and its `Verifier` checks the PKIStatus, the CMS
signature of the token with OpenSSL `PKCS7_verify` (signed attributes and content digest included), the
signer's chain to the given roots *at the token's genTime* with OpenSSL's timestamp-signing purpose (an
extended key usage of timeStamping only), that the signer is the pinned TSA certificate when one is given,
that its extended key usage extension is critical, and the message imprint. Only the token's signed content
(TSTInfo, via the signed attributes) is trusted; its unsigned parts (the certificates it carries, which only
feed chain building) cannot change what is reported. `verify_timestamp` adds, per `timestampAuthorities[]`
entry of the trusted root (read as sigstore-python and sigstore-go do: leaf first unless it is a CA, root
last):

- the imprint uses SHA-256, SHA-384 or SHA-512 and equals the hash of the covered bytes (checked first, so
  a timestamp over other bytes is told apart from an untrusted one);
- the authority's `validFor` window contains genTime.

Failures, in that order: unparseable annotation or DER, status not granted, an unsupported imprint hash:
`MALFORMED`; an imprint over other bytes: `SIGNATURE_INVALID`; no authority in the trusted root, a signer
that chains to none of them (or is not its pinned TSA certificate, or lacks the critical timeStamping EKU),
or a genTime outside the authority's window: `UNTRUSTED_CHAIN`; a signer that chains to a trusted
authority but whose CMS signature or content digest does not verify (altered token): `SIGNATURE_INVALID`.

Leniency: real TSAs put the certificates of the token's `SignedData.certificates` SET in an order DER
forbids (sigstore's own `timestamp-server --include-chain-in-response` does; so, per notation's test data,
does a GlobalSign token), which rfc3161-client's strict parser rejects (`InvalidSetOrdering`). Those
certificates are not covered by the token's signature (they only feed chain building), so a token that
fails to parse is retried once with that one SET's elements sorted into DER order; nothing else is
rewritten, and the result is parsed strictly again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from rfc3161_client import (
    PKIStatus,
    TimeStampResponse,
    VerificationError,
    Verifier,
    VerifierBuilder,
    decode_timestamp_response,
)

from verifiers.cosign.common import b64decode, fail, get_str, load_json, rfc3339
from verifiers.cosign.model import Reason
from verifiers.cosign.trustroot import CertificateAuthority, TrustRoot

__all__ = [
    "VerifiedTimestamp",
    "parse_timestamp",
    "timestamp_from_cosign_annotation",
    "verify_cosign_timestamp",
    "verify_timestamp",
]

_WHAT = "RFC 3161 timestamp"
_MAX_TIMESTAMP_BYTES = 256 * 1024
_HASHES: dict[str, Callable[[bytes], Any]] = {
    "2.16.840.1.101.3.4.2.1": hashlib.sha256,
    "2.16.840.1.101.3.4.2.2": hashlib.sha384,
    "2.16.840.1.101.3.4.2.3": hashlib.sha512,
}
# OpenSSL's PKCS7_verify reasons: it checks the signer's chain first ("certificate verify error"), then
# the signed attributes' content digest and the signature; the latter two mean the TSA is trusted but the
# token was altered.
_CHAIN_FAILURE = 'reason: "certificate verify error"'
_SIGNATURE_FAILURES = ('reason: "signature failure"', 'reason: "digest failure"')


@dataclass(frozen=True, slots=True)
class VerifiedTimestamp:
    """A timestamp that verified: its genTime, and the TSA certificate (subject) and authority that signed."""

    time: datetime
    authority: str  # the TSA signing certificate's subject, RFC 4514
    uri: str  # the trusted root's `uri` for that authority (may be empty)

    def details(self) -> dict[str, str]:
        """What a verified candidate reports (flat, as Sigstore bundles report their timestamps)."""
        return {"timestamp": rfc3339(self.time), "timestampAuthority": self.authority}


# --- parsing --------------------------------------------------------------------------------------------


def _header(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER TLV at `offset`; ValueError when it is not one."""
    if offset + 2 > end:
        raise ValueError("truncated")
    tag, first = data[offset], data[offset + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    if first < 0x80:
        length, start = first, offset + 2
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or offset + 2 + count > end:
            raise ValueError("bad length")
        length, start = int.from_bytes(data[offset + 2 : offset + 2 + count], "big"), offset + 2 + count
    if start + length > end:
        raise ValueError("truncated")
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The TLVs in `data[start:end]`: (tag, TLV start, content start, content end)."""
    out: list[tuple[int, int, int, int]] = []
    offset = start
    while offset < end:
        tag, content_start, content_end = _header(data, offset, end)
        out.append((tag, offset, content_start, content_end))
        offset = content_end
    return out


def _sort_certificate_set(data: bytes) -> bytes | None:
    """`data` (a TimeStampResp or a bare TimeStampToken) with its `SignedData.certificates` SET in DER
    order, or None when there is no such SET or it is in order already. Lengths do not change."""
    try:
        tag, start, end = _header(data, 0, len(data))
        if tag != 0x30 or end != len(data):
            return None
        top = _children(data, start, end)
        token = top[1] if len(top) >= 2 and top[0][0] == 0x30 else (0x30, 0, start, end)  # response?
        content_info = _children(data, token[2], token[3])
        if len(content_info) != 2 or content_info[0][0] != 0x06 or content_info[1][0] != 0xA0:
            return None
        (signed_data,) = _children(data, content_info[1][2], content_info[1][3])
        if signed_data[0] != 0x30:
            return None
        fields = _children(data, signed_data[2], signed_data[3])
        certificates = next((item for item in fields if item[0] == 0xA0), None)
        if certificates is None:
            return None
        elements = [data[item[1] : item[3]] for item in _children(data, certificates[2], certificates[3])]
    except ValueError:
        return None
    ordered = sorted(elements)
    if ordered == elements:
        return None
    return data[: certificates[2]] + b"".join(ordered) + data[certificates[3] :]


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _decode(data: bytes) -> TimeStampResponse:
    """A TimeStampResp as given, or a bare TimeStampToken (ContentInfo) wrapped as a granted response."""
    try:
        return decode_timestamp_response(data)
    except ValueError as first:
        if data[:1] == b"\x30":
            try:
                _, start, _ = _header(data, 0, len(data))
            except ValueError:
                raise first from None
            if data[start : start + 1] == b"\x06":  # ContentInfo: contentType OID first
                inner = b"\x30\x03\x02\x01\x00" + data  # PKIStatusInfo {status granted}
                return decode_timestamp_response(b"\x30" + _der_length(len(inner)) + inner)
        raise


def parse_timestamp(data: bytes) -> TimeStampResponse:
    """Parse a DER TimeStampResp or TimeStampToken (`MALFORMED` when neither, or not granted)."""
    if not data or len(data) > _MAX_TIMESTAMP_BYTES:
        fail(Reason.MALFORMED, f"{_WHAT} is empty or larger than {_MAX_TIMESTAMP_BYTES} bytes")
    try:
        try:
            response = _decode(data)
        except ValueError:
            sorted_data = _sort_certificate_set(data)
            if sorted_data is None:
                raise
            response = _decode(sorted_data)
    except ValueError as exc:
        fail(Reason.MALFORMED, f"{_WHAT} is not a DER TimeStampResp or TimeStampToken: {exc}")
    if response.status != PKIStatus.GRANTED:
        # rfc3161-client (like sigstore's verifiers) accepts only `granted`, not `grantedWithMods`.
        fail(Reason.MALFORMED, f"{_WHAT} response status is {response.status}, not granted (0)")
    try:
        response.tst_info  # noqa: B018 - parsed lazily: a granted response may still lack its token
        response.signed_data  # noqa: B018
    except ValueError as exc:
        fail(Reason.MALFORMED, f"{_WHAT} response has no usable token: {exc}")
    return response


def timestamp_from_cosign_annotation(annotation: bytes) -> bytes:
    """The DER bytes of cosign's `dev.sigstore.cosign/rfc3161timestamp` annotation (JSON)."""
    what = f"{_WHAT} annotation"
    document = load_json(annotation, what)
    if not isinstance(document, dict):
        fail(Reason.MALFORMED, f"{what} must be a JSON object")
    return b64decode(get_str(document, "SignedRFC3161Timestamp", what), f"{what} SignedRFC3161Timestamp")


# --- verification ---------------------------------------------------------------------------------------


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _pinned_leaf(authority: CertificateAuthority) -> x509.Certificate | None:
    chain = authority.certificates
    return chain[0] if len(chain) >= 2 and not _is_ca(chain[0]) else None


def _verifier_for(authority: CertificateAuthority) -> Verifier:
    chain = authority.certificates
    leaf = _pinned_leaf(authority)
    builder = VerifierBuilder()
    if leaf is not None:
        builder = builder.tsa_certificate(leaf)
    builder = builder.add_root_certificate(chain[-1])
    for certificate in chain[1 if leaf is not None else 0 : -1]:
        if certificate not in chain[-1:]:
            builder = builder.add_intermediate_certificate(certificate)
    return builder.build()


def _signer(response: TimeStampResponse, authority: CertificateAuthority) -> x509.Certificate | None:
    """The certificate that signed the token (after the verifier accepted it with `authority`)."""
    pinned = _pinned_leaf(authority)
    if pinned is not None:
        return pinned
    signer_infos = list(response.signed_data.signer_infos)
    if len(signer_infos) != 1:
        return None
    info = signer_infos[0]
    for raw in response.signed_data.certificates:
        certificate = x509.load_der_x509_certificate(raw)
        if certificate.issuer == info.issuer and certificate.serial_number == info.serial_number:
            return certificate
    return None


def verify_timestamp(data: bytes, covered: bytes, root: TrustRoot) -> VerifiedTimestamp:
    """Verify a DER TimeStampResp/TimeStampToken over the bytes `covered` against the trusted root's
    timestamp authorities (module docstring: the checks and their reasons)."""
    response = parse_timestamp(data)
    info = response.tst_info
    imprint = info.message_imprint
    hash_function = _HASHES.get(imprint.hash_algorithm.dotted_string)
    if hash_function is None:
        fail(
            Reason.MALFORMED,
            f"{_WHAT} imprint uses hash {imprint.hash_algorithm.dotted_string}, not SHA-256/384/512",
        )
    digest: bytes = hash_function(covered).digest()
    if imprint.message != digest:
        fail(Reason.SIGNATURE_INVALID, f"{_WHAT} is over other data than this signature")
    gen_time = info.gen_time
    if not root.timestamp_authorities:
        fail(
            Reason.UNTRUSTED_CHAIN,
            f"signature carries an {_WHAT}, but the trusted root lists no timestamp authority",
        )

    errors: list[str] = []
    tampered = False
    for authority in root.timestamp_authorities:
        where = authority.uri or authority.certificates[-1].subject.rfc4514_string()
        try:
            verifier = _verifier_for(authority)
        except ValueError as exc:  # an odd trusted-root entry (repeated certificates): it vouches for nothing
            errors.append(f"{where}: {exc}")
            continue
        try:
            verifier.verify(response, digest)
        except VerificationError as exc:
            text = str(exc)
            if _CHAIN_FAILURE not in text and any(marker in text for marker in _SIGNATURE_FAILURES):
                tampered = True
            errors.append(f"{where}: {_short(text)}")
            continue
        except Exception as exc:
            # The token's own certificates, loaded by rfc3161-client with cryptography, can be hostile DER
            # (InvalidVersion, ValueError, ...): no authority can make that token valid.
            fail(Reason.MALFORMED, f"{_WHAT} carries malformed certificates: {type(exc).__name__}: {exc}")
        if not authority.window.contains(gen_time):
            errors.append(f"{where}: genTime {rfc3339(gen_time)} is outside the authority's validity window")
            continue
        signer = _signer(response, authority)
        subject = signer.subject.rfc4514_string() if signer is not None else where
        return VerifiedTimestamp(time=gen_time, authority=subject, uri=authority.uri)
    if tampered:
        fail(
            Reason.SIGNATURE_INVALID,
            f"{_WHAT} was signed by a trusted timestamp authority's certificate, but its CMS signature does "
            f"not verify (altered token): {'; '.join(errors)}",
        )
    fail(
        Reason.UNTRUSTED_CHAIN,
        f"{_WHAT} is not signed by a timestamp authority of the trusted root at {rfc3339(gen_time)}: "
        f"{'; '.join(errors)}",
    )


def _short(text: str, limit: int = 300) -> str:
    """rfc3161-client wraps OpenSSL's error stack; keep the reasons, not the source locations."""
    if "ErrorStack(" in text:
        reasons = [part.split('"')[1] for part in text.split("reason: ")[1:] if '"' in part]
        data = [part.split('"')[1] for part in text.split("data: ")[1:] if '"' in part]
        prefix = text.split("ErrorStack(")[0].rstrip(": ")
        text = f"{prefix}: {', '.join(dict.fromkeys(reasons + data))}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verify_cosign_timestamp(annotation: bytes, covered: bytes, root: TrustRoot) -> VerifiedTimestamp:
    """cosign's `dev.sigstore.cosign/rfc3161timestamp` annotation, over `covered` (the raw signature)."""
    return verify_timestamp(timestamp_from_cosign_annotation(annotation), covered, root)
