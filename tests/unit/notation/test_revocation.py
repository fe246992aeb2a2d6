"""Revocation: the pure OCSP/CRL checks; the checker's fallback, cache and bounds; a local responder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.http_servers import BackgroundServer
from tests.support.notation import SigningChain
from tests.support.revocation import RevocationServers, Revoked, make_crl, ocsp_response
from verifiers.notation.revocation import (
    AiohttpFetcher,
    FetchError,
    ResponseError,
    RevocationChecker,
    check_crl,
    check_ocsp,
    ocsp_request,
)

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def pki() -> SigningChain:
    return SigningChain(
        name="revocation-unit", intermediate=False, ca_kind="ecdsa-p256", leaf_kind="ecdsa-p256"
    )


@pytest.fixture(scope="module")
def other() -> SigningChain:
    return SigningChain(
        name="revocation-other", intermediate=False, ca_kind="ecdsa-p256", leaf_kind="ecdsa-p256"
    )


def _request(pki: SigningChain) -> ocsp.OCSPRequest:
    return ocsp.load_der_ocsp_request(ocsp_request(pki.leaf_cert, pki.root_cert))


def _responder(pki: SigningChain, *, eku: bool = True) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "delegated ocsp")]))
        .issuer_name(pki.root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=1))
    )
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
        )
    return builder.sign(pki.root_key, hashes.SHA256()), key


# --- OCSP -------------------------------------------------------------------------------------------------


def test_ocsp_good_revoked_unknown(pki: SigningChain) -> None:
    req = _request(pki)
    good = check_ocsp(ocsp_response(req, pki.root_cert, pki.root_key), pki.leaf_cert, pki.root_cert, NOW)
    assert good.status == "good" and good.source == "ocsp" and good.next_update is not None
    when = (NOW - timedelta(days=1)).replace(microsecond=0)
    data = ocsp_response(
        req, pki.root_cert, pki.root_key, revoked=Revoked(when, x509.ReasonFlags.key_compromise)
    )
    revoked = check_ocsp(data, pki.leaf_cert, pki.root_cert, NOW)
    assert (revoked.status, revoked.revocation_time, revoked.reason) == ("revoked", when, "keyCompromise")
    assert "revoked" in revoked.describe(pki.leaf_cert) and "keyCompromise" in revoked.describe(pki.leaf_cert)
    data = ocsp_response(req, pki.root_cert, pki.root_key, status=ocsp.OCSPCertStatus.UNKNOWN)
    assert check_ocsp(data, pki.leaf_cert, pki.root_cert, NOW).status == "unknown"


def test_ocsp_sha256_cert_id_is_accepted(pki: SigningChain) -> None:
    builder = ocsp.OCSPRequestBuilder().add_certificate(pki.leaf_cert, pki.root_cert, hashes.SHA256())
    data = ocsp_response(builder.build(), pki.root_cert, pki.root_key)
    assert check_ocsp(data, pki.leaf_cert, pki.root_cert, NOW).status == "good"


def test_ocsp_bad_signature_wrong_issuer_and_other_serial(pki: SigningChain, other: SigningChain) -> None:
    req = _request(pki)
    genuine = ocsp_response(req, pki.root_cert, pki.root_key)
    forged = genuine[:-1] + bytes([genuine[-1] ^ 0x01])  # the signature's last byte
    with pytest.raises(ResponseError, match="does not verify"):
        check_ocsp(forged, pki.leaf_cert, pki.root_cert, NOW)
    with pytest.raises(ResponseError, match="neither by the issuer"):
        check_ocsp(genuine, pki.leaf_cert, other.root_cert, NOW)
    with pytest.raises(ResponseError, match="does not cover"):
        check_ocsp(genuine, other.leaf_cert, pki.root_cert, NOW)
    with pytest.raises(ResponseError, match="not an OCSP response"):
        check_ocsp(b"\x30\x03junk", pki.leaf_cert, pki.root_cert, NOW)
    failed = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    with pytest.raises(ResponseError, match="TRY_LATER"):
        check_ocsp(failed.public_bytes(serialization.Encoding.DER), pki.leaf_cert, pki.root_cert, NOW)


def test_ocsp_time_window(pki: SigningChain) -> None:
    req = _request(pki)
    expired = ocsp_response(
        req,
        pki.root_cert,
        pki.root_key,
        this_update=NOW - timedelta(days=2),
        next_update=NOW - timedelta(days=1),
    )
    with pytest.raises(ResponseError, match="expired"):
        check_ocsp(expired, pki.leaf_cert, pki.root_cert, NOW)
    future = ocsp_response(
        req,
        pki.root_cert,
        pki.root_key,
        this_update=NOW + timedelta(hours=1),
        next_update=NOW + timedelta(days=1),
    )
    with pytest.raises(ResponseError, match="future"):
        check_ocsp(future, pki.leaf_cert, pki.root_cert, NOW)


def test_ocsp_delegated_responder(pki: SigningChain, other: SigningChain) -> None:
    req = _request(pki)
    cert, key = _responder(pki)
    data = ocsp_response(req, cert, key, include_signer=True)
    assert check_ocsp(data, pki.leaf_cert, pki.root_cert, NOW).status == "good"
    with pytest.raises(ResponseError, match="not valid now"):
        check_ocsp(data, pki.leaf_cert, pki.root_cert, NOW + timedelta(days=3))
    with pytest.raises(ResponseError, match="neither by the issuer"):
        check_ocsp(
            ocsp_response(req, cert, key), pki.leaf_cert, pki.root_cert, NOW
        )  # responder cert not sent
    no_eku, no_eku_key = _responder(pki, eku=False)
    with pytest.raises(ResponseError, match="OCSPSigning"):
        check_ocsp(
            ocsp_response(req, no_eku, no_eku_key, include_signer=True), pki.leaf_cert, pki.root_cert, NOW
        )
    stranger, stranger_key = _responder(other)
    with pytest.raises(ResponseError, match="not issued by"):
        check_ocsp(
            ocsp_response(req, stranger, stranger_key, include_signer=True), pki.leaf_cert, pki.root_cert, NOW
        )


# --- CRL ----------------------------------------------------------------------------------------------------


def test_crl_good_revoked_and_unusable(pki: SigningChain, other: SigningChain) -> None:
    serial = pki.leaf_cert.serial_number
    assert (
        check_crl(make_crl(pki.root_cert, pki.root_key, {}), pki.leaf_cert, pki.root_cert, NOW).status
        == "good"
    )
    when = (NOW - timedelta(hours=3)).replace(microsecond=0)
    crl = make_crl(pki.root_cert, pki.root_key, {serial: Revoked(when, x509.ReasonFlags.superseded)})
    status = check_crl(crl, pki.leaf_cert, pki.root_cert, NOW)
    assert (status.status, status.source, status.revocation_time, status.reason) == (
        "revoked",
        "crl",
        when,
        "superseded",
    )
    removed = make_crl(pki.root_cert, pki.root_key, {serial: Revoked(when, x509.ReasonFlags.remove_from_crl)})
    assert check_crl(removed, pki.leaf_cert, pki.root_cert, NOW).status == "good"
    forged = make_crl(pki.root_cert, other.root_key, {})
    with pytest.raises(ResponseError, match="does not verify"):
        check_crl(forged, pki.leaf_cert, pki.root_cert, NOW)
    with pytest.raises(ResponseError, match="not issued by"):
        check_crl(make_crl(other.root_cert, other.root_key, {}), pki.leaf_cert, pki.root_cert, NOW)
    stale = make_crl(
        pki.root_cert,
        pki.root_key,
        {},
        last_update=NOW - timedelta(days=2),
        next_update=NOW - timedelta(days=1),
    )
    with pytest.raises(ResponseError, match="expired"):
        check_crl(stale, pki.leaf_cert, pki.root_cert, NOW)
    with pytest.raises(ResponseError, match="not a CRL"):
        check_crl(b"junk", pki.leaf_cert, pki.root_cert, NOW)


# --- delta CRLs (RFC 5280 5.2.4) --------------------------------------------------------------------------

DELTA_URL = "http://127.0.0.1:9/delta"
BASE = 5  # the base CRL's number in these tests


def _base(pki: SigningChain, revoked: dict[int, Revoked] | None = None, **options: Any) -> bytes:
    options.setdefault("number", BASE)
    options.setdefault("freshest", [DELTA_URL])
    return make_crl(pki.root_cert, pki.root_key, revoked or {}, **options)


def _delta(pki: SigningChain, revoked: dict[int, Revoked] | None = None, **options: Any) -> bytes:
    options.setdefault("number", BASE + 1)
    options.setdefault("delta_of", BASE)
    return make_crl(pki.root_cert, pki.root_key, revoked or {}, **options)


def test_delta_crl_revokes_and_lifts_a_hold(pki: SigningChain) -> None:
    serial = pki.leaf_cert.serial_number
    held_at = (NOW - timedelta(hours=2)).replace(microsecond=0)
    lifted_at = (NOW - timedelta(hours=1)).replace(microsecond=0)
    hold = {serial: Revoked(held_at, x509.ReasonFlags.certificate_hold)}
    lift = {serial: Revoked(lifted_at, x509.ReasonFlags.remove_from_crl)}
    compromised = {serial: Revoked(lifted_at, x509.ReasonFlags.key_compromise)}

    # Good in the base, revoked in the delta: revoked, with the delta's date and reason.
    status = check_crl(_base(pki), pki.leaf_cert, pki.root_cert, NOW, _delta(pki, compromised))
    assert (status.status, status.revocation_time, status.reason) == ("revoked", lifted_at, "keyCompromise")
    # Good in both.
    assert check_crl(_base(pki), pki.leaf_cert, pki.root_cert, NOW, _delta(pki)).status == "good"
    # On hold in the base: revoked, unless the delta lifts the hold with removeFromCRL.
    on_hold = check_crl(_base(pki, hold), pki.leaf_cert, pki.root_cert, NOW, _delta(pki))
    assert (on_hold.status, on_hold.reason) == ("revoked", "certificateHold")
    assert check_crl(_base(pki, hold), pki.leaf_cert, pki.root_cert, NOW, _delta(pki, lift)).status == "good"
    # ... but a removeFromCRL dated before the hold does not lift it (the latest entry decides, as in
    # notation-go), and nothing lifts a permanent revocation.
    early = {serial: Revoked(held_at - timedelta(hours=1), x509.ReasonFlags.remove_from_crl)}
    assert (
        check_crl(_base(pki, hold), pki.leaf_cert, pki.root_cert, NOW, _delta(pki, early)).status == "revoked"
    )
    status = check_crl(_base(pki, compromised), pki.leaf_cert, pki.root_cert, NOW, _delta(pki, lift))
    assert (status.status, status.reason) == ("revoked", "keyCompromise")
    # A hold placed by the delta itself revokes.
    held = check_crl(_base(pki), pki.leaf_cert, pki.root_cert, NOW, _delta(pki, hold))
    assert (held.status, held.reason) == ("revoked", "certificateHold")


def test_delta_crl_bounds_the_cached_status(pki: SigningChain) -> None:
    soon = (NOW + timedelta(minutes=10)).replace(microsecond=0)
    status = check_crl(_base(pki), pki.leaf_cert, pki.root_cert, NOW, _delta(pki, next_update=soon))
    assert status.status == "good" and status.next_update == soon  # the earlier of the two nextUpdates


def test_delta_crl_that_cannot_be_used(pki: SigningChain, other: SigningChain) -> None:
    base = _base(pki)
    cert, issuer = pki.leaf_cert, pki.root_cert
    cases: list[tuple[bytes, str]] = [
        (
            make_crl(pki.root_cert, other.root_key, {}, number=6, delta_of=BASE),
            "delta CRL signature does not",
        ),
        (
            make_crl(other.root_cert, other.root_key, {}, number=6, delta_of=BASE),
            "delta CRL is not issued by",
        ),
        (_delta(pki, delta_of=None), "no Delta CRL Indicator"),
        (_delta(pki, delta_of=BASE + 1), "numbered 6 or later, not 5"),
        (_delta(pki, number=BASE), "not greater than the base CRL's 5"),
        (_delta(pki, number=None), "not greater than the base CRL's 5"),
        (
            _delta(pki, last_update=NOW - timedelta(days=2), next_update=NOW - timedelta(days=1)),
            "delta CRL expired",
        ),
        (
            _delta(pki, last_update=NOW + timedelta(hours=1), next_update=NOW + timedelta(hours=2)),
            "in the future",
        ),
        (b"junk", "not a CRL"),
    ]
    for delta, words in cases:
        with pytest.raises(ResponseError, match=words):
            check_crl(base, cert, issuer, NOW, delta)
    # The base CRL names a delta that was not supplied; or a delta is supplied for a base naming none.
    with pytest.raises(ResponseError, match="none was supplied"):
        check_crl(base, cert, issuer, NOW)
    with pytest.raises(ResponseError, match="names none"):
        check_crl(_base(pki, freshest=()), cert, issuer, NOW, _delta(pki))
    # A base CRL without a CRL number cannot be matched to its delta.
    with pytest.raises(ResponseError, match="no CRL number"):
        check_crl(_base(pki, number=None), cert, issuer, NOW, _delta(pki))
    # A delta CRL served where the base CRL should be.
    with pytest.raises(ResponseError, match="is a delta CRL"):
        check_crl(_delta(pki), cert, issuer, NOW)


def test_crl_critical_extensions(pki: SigningChain) -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    crl = make_crl(pki.root_cert, pki.root_key, {}, extensions=[(unknown, True)])
    with pytest.raises(ResponseError, match=r"unsupported critical extension 1\.3\.6\.1\.4\.1\.55555\.1"):
        check_crl(crl, pki.leaf_cert, pki.root_cert, NOW)
    # Not critical: ignored.
    crl = make_crl(pki.root_cert, pki.root_key, {}, extensions=[(unknown, False)])
    assert check_crl(crl, pki.leaf_cert, pki.root_cert, NOW).status == "good"


def test_certificate_naming_a_delta_its_base_crl_does_not(pki: SigningChain) -> None:
    """notation-go refuses it (its CRL check: "freshest CRL from certificate extension is not supported")."""
    point = x509.DistributionPoint([x509.UniformResourceIdentifier(DELTA_URL)], None, None, None)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(pki.leaf_cert.subject)
        .issuer_name(pki.root_cert.subject)
        .public_key(pki.leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.FreshestCRL([point]), critical=False)
        .sign(pki.root_key, hashes.SHA256())
    )
    with pytest.raises(ResponseError, match="names a delta CRL that its base CRL does not"):
        check_crl(_base(pki, freshest=()), leaf, pki.root_cert, NOW)
    assert check_crl(_base(pki), leaf, pki.root_cert, NOW, _delta(pki)).status == "good"


# --- the checker --------------------------------------------------------------------------------------------


class FakeFetcher:
    def __init__(self, answers: dict[str, bytes | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, bool]] = []
        self.closed = False

    async def fetch(
        self, url: str, body: bytes | None, content_type: str | None, max_bytes: int, time_limit: float
    ) -> bytes:
        self.calls.append((url, body is not None))
        assert 0 < time_limit <= 2.0
        answer = self.answers.get(url, FetchError(f"{url}: connection refused"))
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aclose(self) -> None:
        self.closed = True


OCSP_URL, CRL_URL = "http://127.0.0.1:9/ocsp", "http://127.0.0.1:9/crl"


@pytest.fixture(scope="module")
def revocable() -> SigningChain:
    return SigningChain(
        name="revocation-checker",
        intermediate=False,
        ca_kind="ecdsa-p256",
        leaf_kind="ecdsa-p256",
        ocsp_url=OCSP_URL,
        crl_url=CRL_URL,
    )


def _deadline(seconds: float = 10.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_checker_ocsp_then_crl_fallback_and_cache(revocable: SigningChain) -> None:
    pki = revocable
    chain = pki.chain
    req = _request(pki)
    fetcher = FakeFetcher({OCSP_URL: ocsp_response(req, pki.root_cert, pki.root_key)})
    checker = RevocationChecker(fetcher)
    assert (await checker.check_chain(chain, NOW, _deadline())).status == "good"
    assert fetcher.calls == [(OCSP_URL, True)]
    assert (await checker.check_chain(chain, NOW, _deadline())).status == "good"
    assert len(fetcher.calls) == 1  # cached until nextUpdate
    assert (await checker.check_chain(chain, NOW + timedelta(hours=2), _deadline())).status == "unavailable"

    fetcher = FakeFetcher(
        {CRL_URL: make_crl(pki.root_cert, pki.root_key, {pki.leaf_cert.serial_number: Revoked(NOW)})}
    )
    outcome = await RevocationChecker(fetcher).check_chain(chain, NOW, _deadline())
    assert outcome.status == "revoked" and "by CRL" in outcome.message
    assert fetcher.calls == [(OCSP_URL, True), (CRL_URL, False)]

    unknown = ocsp_response(req, pki.root_cert, pki.root_key, status=ocsp.OCSPCertStatus.UNKNOWN)
    fetcher = FakeFetcher({OCSP_URL: unknown, CRL_URL: make_crl(pki.root_cert, pki.root_key, {})})
    assert (await RevocationChecker(fetcher).check_chain(chain, NOW, _deadline())).status == "good"

    fetcher = FakeFetcher({})
    outcome = await RevocationChecker(fetcher).check_chain(chain, NOW, _deadline())
    assert outcome.status == "unavailable" and "connection refused" in outcome.message
    await RevocationChecker(fetcher).aclose()
    assert fetcher.closed


async def test_checker_deadline_and_non_http_urls(revocable: SigningChain) -> None:
    fetcher = FakeFetcher({})
    outcome = await RevocationChecker(fetcher).check_chain(revocable.chain, NOW, _deadline(-1))
    assert outcome.status == "unavailable" and "deadline" in outcome.message
    assert fetcher.calls == []
    ldap = SigningChain(
        name="revocation-ldap",
        intermediate=False,
        ca_kind="ecdsa-p256",
        leaf_kind="ecdsa-p256",
        crl_url="ldap://127.0.0.1/cn=crl",
    )
    outcome = await RevocationChecker(fetcher).check_chain(ldap.chain, NOW, _deadline())
    assert outcome.status == "unavailable" and fetcher.calls == []
    plain = SigningChain(
        name="revocation-none", intermediate=False, ca_kind="ecdsa-p256", leaf_kind="ecdsa-p256"
    )
    assert (await RevocationChecker(fetcher).check_chain(plain.chain, NOW, _deadline())).status == "good"


async def test_checker_fetches_and_applies_the_delta_crl(revocable: SigningChain) -> None:
    pki, chain = revocable, revocable.chain
    serial = pki.leaf_cert.serial_number
    base = _base(pki, {serial: Revoked(NOW - timedelta(hours=2), x509.ReasonFlags.certificate_hold)})
    lifted = _delta(pki, {serial: Revoked(NOW - timedelta(hours=1), x509.ReasonFlags.remove_from_crl)})
    fetcher = FakeFetcher({CRL_URL: base, DELTA_URL: lifted})  # OCSP down: the CRL decides
    assert (await RevocationChecker(fetcher).check_chain(chain, NOW, _deadline())).status == "good"
    assert fetcher.calls == [(OCSP_URL, True), (CRL_URL, False), (DELTA_URL, False)]

    fetcher = FakeFetcher({CRL_URL: base, DELTA_URL: _delta(pki)})
    outcome = await RevocationChecker(fetcher).check_chain(chain, NOW, _deadline())
    assert outcome.status == "revoked" and "certificateHold" in outcome.message

    fetcher = FakeFetcher({CRL_URL: _base(pki), DELTA_URL: _delta(pki, {serial: Revoked(NOW)})})
    outcome = await RevocationChecker(fetcher).check_chain(chain, NOW, _deadline())
    assert outcome.status == "revoked" and "by CRL" in outcome.message


async def test_checker_delta_crl_unavailable_is_unavailable(revocable: SigningChain) -> None:
    """As in notation-go (its CRL fetcher fails when the delta cannot be fetched): no status from the base
    CRL alone, even a good one."""
    pki, chain = revocable, revocable.chain
    fetcher = FakeFetcher({CRL_URL: _base(pki)})  # the delta's location refuses connections
    outcome = await RevocationChecker(fetcher).check_chain(chain, NOW, _deadline())
    assert outcome.status == "unavailable", outcome
    assert "delta CRL is unavailable" in outcome.message and "connection refused" in outcome.message
    assert fetcher.calls == [(OCSP_URL, True), (CRL_URL, False), (DELTA_URL, False)]

    fetcher = FakeFetcher({CRL_URL: _base(pki, freshest=["ldap://127.0.0.1/cn=delta"])})
    outcome = await RevocationChecker(fetcher).check_chain(chain, NOW, _deadline())
    assert outcome.status == "unavailable" and "no http(s) location" in outcome.message
    assert len(fetcher.calls) == 2

    # An unusable delta (here: for another base CRL) makes the CRL unusable too.
    fetcher = FakeFetcher({CRL_URL: _base(pki), DELTA_URL: _delta(pki, delta_of=BASE + 1)})
    outcome = await RevocationChecker(fetcher).check_chain(chain, NOW, _deadline())
    assert outcome.status == "unavailable" and "numbered 6 or later" in outcome.message


async def test_checker_follows_no_delta_location_of_a_forged_crl(
    revocable: SigningChain, other: SigningChain
) -> None:
    forged = make_crl(revocable.root_cert, other.root_key, {}, number=BASE, freshest=[DELTA_URL])
    fetcher = FakeFetcher({CRL_URL: forged, DELTA_URL: _delta(revocable)})
    outcome = await RevocationChecker(fetcher).check_chain(revocable.chain, NOW, _deadline())
    assert outcome.status == "unavailable" and "signature does not verify" in outcome.message
    assert (DELTA_URL, False) not in fetcher.calls


# --- the aiohttp fetcher against the local responder -------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[RevocationServers]:
    with RevocationServers() as made:
        yield made


async def test_local_responder_end_to_end(servers: RevocationServers) -> None:
    pki = SigningChain(
        name="revocation-local",
        intermediate=False,
        ca_kind="ecdsa-p256",
        leaf_kind="ecdsa-p256",
        ocsp_url=servers.ocsp_url,
        crl_url=servers.crl_url,
    )
    servers.bind(pki.root_cert, pki.root_key)
    checker = RevocationChecker()
    try:
        now = datetime.now(UTC)
        assert (await checker.check_chain(pki.chain, now, _deadline())).status == "good"
        assert servers.ocsp_requests == ["POST"] and servers.crl_requests == 0
    finally:
        await checker.aclose()
    servers.revoke(pki.leaf_cert.serial_number)
    servers.stop_ocsp()
    checker = RevocationChecker()
    try:
        outcome = await checker.check_chain(pki.chain, datetime.now(UTC), _deadline())
        assert (
            outcome.status == "revoked" and "keyCompromise" in outcome.message and servers.crl_requests == 1
        )
        servers.stop_crl()
        fresh = RevocationChecker(checker.fetcher)
        outcome = await fresh.check_chain(pki.chain, datetime.now(UTC), _deadline())
        assert outcome.status == "unavailable"
    finally:
        await checker.aclose()


async def test_fetcher_caps_size_and_refuses_redirects() -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 2048)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/big")

    def app() -> web.Application:
        made = web.Application()
        made.router.add_get("/big", big)
        made.router.add_get("/moved", moved)
        return made

    fetcher = AiohttpFetcher()
    try:
        with BackgroundServer(app, name="test-revocation-fetch") as server:
            assert len(await fetcher.fetch(f"{server.url}/big", None, None, 4096, 2.0)) == 2048
            with pytest.raises(FetchError, match="larger than 1024"):
                await fetcher.fetch(f"{server.url}/big", None, None, 1024, 2.0)
            with pytest.raises(FetchError, match="HTTP 302"):
                await fetcher.fetch(f"{server.url}/moved", None, None, 4096, 2.0)
    finally:
        await fetcher.aclose()
