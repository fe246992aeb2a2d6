"""Revocation: the pure OCSP/CRL checks; the checker's fallback, cache and bounds; a local responder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

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
