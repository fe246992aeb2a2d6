"""A tiny OCSP responder and CRL server on 127.0.0.1, built with cryptography, for revocation tests.

* :func:`ocsp_response` and :func:`make_crl` build (signed) responses and CRLs directly, for unit tests.
* :class:`RevocationServers` serves both from two :class:`BackgroundServer` threads (so a ``notation``
  subprocess can reach them too): ``POST /ocsp`` (``application/ocsp-request``) and ``GET /ocsp/<base64>``
  (RFC 6960 appendix A, as notation sends small requests), and ``GET /crl`` (DER). Its URLs exist before
  the issuing CA does (a :class:`tests.support.notation.SigningChain` takes them as ``ocsp_url``/``crl_url``);
  :meth:`RevocationServers.bind` then names the issuer. :meth:`revoke` and :attr:`unknown` change the
  answers; :meth:`stop_ocsp`/:meth:`stop_crl` take a server down (an outage), ``start_*`` bring it back.
  :attr:`RevocationServers.delta` adds a delta CRL (``GET /delta``, named by the base CRL's Freshest CRL
  extension); :attr:`RevocationServers.delta_available` takes only the delta down.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self
from urllib.parse import unquote

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp

from tests.support.http_servers import BackgroundServer

__all__ = ["RevocationServers", "Revoked", "SigningKey", "make_crl", "ocsp_response"]

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Revoked:
    time: datetime
    reason: x509.ReasonFlags | None = x509.ReasonFlags.key_compromise


def ocsp_response(
    request: ocsp.OCSPRequest,
    signer_cert: x509.Certificate,
    signer_key: SigningKey,
    *,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    revoked: Revoked | None = None,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
    include_signer: bool = False,
) -> bytes:
    """A signed DER OCSP response answering `request` (its CertID echoed, whatever its hash)."""
    now = datetime.now(UTC)
    this_update = this_update or now - timedelta(minutes=1)
    next_update = next_update or now + timedelta(hours=1)
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        request.issuer_name_hash,
        request.issuer_key_hash,
        request.serial_number,
        request.hash_algorithm,
        ocsp.OCSPCertStatus.REVOKED if revoked is not None else status,
        this_update,
        next_update,
        revoked.time if revoked is not None else None,
        revoked.reason if revoked is not None else None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert)
    if include_signer:
        builder = builder.certificates([signer_cert])
    return builder.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def make_crl(
    issuer_cert: x509.Certificate,
    issuer_key: SigningKey,
    revoked: dict[int, Revoked],
    *,
    last_update: datetime | None = None,
    next_update: datetime | None = None,
    number: int | None = 1,
    delta_of: int | None = None,
    freshest: Sequence[str] = (),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> bytes:
    """A DER CRL of `issuer_cert` listing `revoked` (serial -> when/why).

    `number`: its CRL number (None: no CRLNumber extension). `delta_of`: make it a delta CRL (a critical
    Delta CRL Indicator naming that base CRL number). `freshest`: the URLs of a Freshest CRL extension (where
    the delta CRL is). `extensions`: more (extension, critical) pairs.
    """
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(last_update or now - timedelta(minutes=1))
        .next_update(next_update or now + timedelta(hours=1))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    if delta_of is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
    if freshest:
        points = [
            x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
            for url in freshest
        ]
        builder = builder.add_extension(x509.FreshestCRL(points), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    for serial, entry in revoked.items():
        item = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(entry.time)
        if entry.reason is not None:
            item = item.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(item.build())
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@dataclass
class RevocationServers:
    """An OCSP responder and a CRL server for one issuer (see the module)."""

    issuer_cert: x509.Certificate | None = None
    issuer_key: SigningKey | None = None
    revoked: dict[int, Revoked] = field(default_factory=dict)
    unknown: set[int] = field(default_factory=set)
    ocsp_requests: list[str] = field(default_factory=list)
    crl_requests: int = 0
    #: None: the CRL names no delta CRL. Otherwise the base CRL (number 1) names :attr:`delta_url` in a
    #: Freshest CRL extension, and that URL serves a delta CRL (number 2, based on 1) listing these.
    delta: dict[int, Revoked] | None = None
    #: False: the delta CRL's URL answers 503 (the base CRL is still served).
    delta_available: bool = True
    delta_requests: int = 0

    def __post_init__(self) -> None:
        self._ocsp = BackgroundServer(self._ocsp_app, name="test-ocsp")
        self._crl = BackgroundServer(self._crl_app, name="test-crl")

    # --- lifecycle ---

    def __enter__(self) -> Self:
        self._ocsp.start()
        self._crl.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._ocsp.stop()
        self._crl.stop()

    def start_ocsp(self) -> None:
        self._ocsp.start()

    def stop_ocsp(self) -> None:
        self._ocsp.stop()

    def start_crl(self) -> None:
        self._crl.start()

    def stop_crl(self) -> None:
        self._crl.stop()

    @property
    def ocsp_url(self) -> str:
        return f"{self._ocsp.url}/ocsp"

    @property
    def crl_url(self) -> str:
        return f"{self._crl.url}/crl"

    @property
    def delta_url(self) -> str:
        return f"{self._crl.url}/delta"

    def bind(self, issuer_cert: x509.Certificate, issuer_key: SigningKey) -> None:
        self.issuer_cert, self.issuer_key = issuer_cert, issuer_key

    def revoke(self, serial: int, reason: x509.ReasonFlags | None = x509.ReasonFlags.key_compromise) -> None:
        self.revoked[serial] = Revoked(datetime.now(UTC) - timedelta(seconds=30), reason)

    # --- handlers ---

    def _issuer(self) -> tuple[x509.Certificate, SigningKey]:
        if self.issuer_cert is None or self.issuer_key is None:
            raise web.HTTPServiceUnavailable(text="no issuer bound")
        return self.issuer_cert, self.issuer_key

    async def _answer(self, der: bytes, how: str) -> web.Response:
        self.ocsp_requests.append(how)
        try:
            request = ocsp.load_der_ocsp_request(der)
        except ValueError:
            return web.Response(
                body=ocsp.OCSPResponseBuilder.build_unsuccessful(
                    ocsp.OCSPResponseStatus.MALFORMED_REQUEST
                ).public_bytes(serialization.Encoding.DER),
                content_type="application/ocsp-response",
            )
        cert, key = self._issuer()
        serial = request.serial_number
        body = ocsp_response(
            request,
            cert,
            key,
            status=ocsp.OCSPCertStatus.UNKNOWN if serial in self.unknown else ocsp.OCSPCertStatus.GOOD,
            revoked=self.revoked.get(serial),
        )
        return web.Response(body=body, content_type="application/ocsp-response")

    async def _ocsp_post(self, request: web.Request) -> web.Response:
        return await self._answer(await request.read(), "POST")

    async def _ocsp_get(self, request: web.Request) -> web.Response:
        encoded = request.raw_path.split("/ocsp/", 1)[1]
        for _ in range(3):
            encoded = unquote(encoded)
        try:
            der = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            der = b""
        return await self._answer(der, "GET")

    def _ocsp_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/ocsp", self._ocsp_post)
        app.router.add_post("/ocsp/", self._ocsp_post)
        app.router.add_get("/ocsp/{tail:.+}", self._ocsp_get)
        return app

    async def _crl_get(self, request: web.Request) -> web.Response:
        self.crl_requests += 1
        cert, key = self._issuer()
        freshest = [self.delta_url] if self.delta is not None else []
        body = make_crl(cert, key, self.revoked, number=1, freshest=freshest)
        return web.Response(body=body, content_type="application/pkix-crl")

    async def _delta_get(self, request: web.Request) -> web.Response:
        self.delta_requests += 1
        if self.delta is None or not self.delta_available:
            raise web.HTTPServiceUnavailable(text="no delta CRL")
        cert, key = self._issuer()
        body = make_crl(cert, key, self.delta, number=2, delta_of=1)
        return web.Response(body=body, content_type="application/pkix-crl")

    def _crl_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/crl", self._crl_get)
        app.router.add_get("/delta", self._delta_get)
        return app
