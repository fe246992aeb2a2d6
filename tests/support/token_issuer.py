"""A token service for distribution's ``auth: token`` (the docker registry v2 bearer-token flow).

It answers ``GET /token?service=...&scope=repository:<name>:<actions>`` the way Docker's token servers do:
Basic credentials are checked against ``users``; a request without credentials gets the
``anonymous_actions`` (none by default: then it is refused). The token is an ES256 JWS whose header carries
the signing certificate in ``x5c``; distribution trusts it through ``rootcertbundle``
(:meth:`TokenIssuer.write_root_bundle`). Every request is recorded in :attr:`TokenIssuer.requests`.

It serves HTTPS when given an ``ssl_context``; ``realm_host`` names it in the realm URL (``localhost``
instead of ``127.0.0.1``: another host than the registry's).

Behaviour can be changed while it runs: ``expires_in``, ``refuse`` (answer 401 to everyone),
``fail_status`` (answer that HTTP status instead), :meth:`rotate_key`. Stop it to simulate an outage:
``start()`` again keeps the port.

distribution's side of the configuration is :meth:`TokenIssuer.distribution_auth`.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support.http_servers import BackgroundServer, ServedInBackground
from tests.support.registries import LOOPBACK

__all__ = ["Access", "TokenIssuer", "TokenRequest", "decode_jwt"]

#: What a token grants: (type, name, actions), e.g. ("repository", "t/app", ("pull",)).
Access = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class TokenRequest:
    """One request to the token endpoint, and what was answered."""

    method: str
    username: str | None
    scopes: tuple[str, ...]
    service: str | None
    status: int
    granted: tuple[Access, ...] = ()
    #: The request's ``Authorization`` header as received (None: none was sent).
    authorization: str | None = None

    @property
    def repositories(self) -> tuple[str, ...]:
        return tuple(name for kind, name, _ in self.granted if kind == "repository")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (header, claims) of a JWS in compact form, without verifying it (for assertions)."""
    header, claims, _ = token.split(".")
    decoded: tuple[dict[str, Any], dict[str, Any]] = (
        json.loads(_b64url_decode(header)),
        json.loads(_b64url_decode(claims)),
    )
    return decoded


def _parse_scope(scope: str) -> Access | None:
    # "repository:<name>:<actions>"; the name may itself contain ':' only with a port (not for repositories).
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        return None
    return kind, name, tuple(a for a in actions.split(",") if a)


@dataclass
class _SigningKey:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def generate(cls, common_name: str) -> _SigningKey:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def sign(self, claims: Mapping[str, Any]) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode("ascii")]}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass
class TokenIssuer(ServedInBackground):
    """A token service on 127.0.0.1 (see the module docstring). Use it as a context manager, or start/stop."""

    users: Mapping[str, str] = field(default_factory=dict)
    service: str = "countersign-test-registry"
    issuer: str = "countersign-test-issuer"
    #: Actions granted to requests without credentials, e.g. ("pull",); empty: anonymous requests get 401.
    anonymous_actions: tuple[str, ...] = ()
    expires_in: int = 300
    #: Answer 401 to every request, whatever the credentials.
    refuse: bool = False
    #: Answer this HTTP status (with no token) to every request.
    fail_status: int | None = None
    requests: list[TokenRequest] = field(default_factory=list)
    #: Serve HTTPS with this (server) context; plain HTTP when None.
    ssl_context: ssl.SSLContext | None = None
    #: The host name the realm URL uses (it always listens on 127.0.0.1), e.g. "localhost".
    realm_host: str = LOOPBACK

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._key = _SigningKey.generate(self.issuer)
        self._server = BackgroundServer(self._app, name="token-issuer", ssl_context=self.ssl_context)

    # --- what registries and clients need ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def realm(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.realm_host}:{self.port}/token"

    @property
    def running(self) -> bool:
        return self._server.running

    def write_root_bundle(self, path: Path) -> Path:
        """Write the certificate that signs tokens (PEM), for distribution's ``rootcertbundle``."""
        path.write_bytes(self._key.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def distribution_auth(self, root_bundle: Path) -> dict[str, Any]:
        """The ``auth`` section of a distribution config that trusts this issuer."""
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(root_bundle),
            }
        }

    def rotate_key(self) -> None:
        """Sign with a new key and certificate from now on (rewrite the bundle and restart the registry)."""
        self._key = _SigningKey.generate(self.issuer)

    # --- tokens -------------------------------------------------------------------------------------------

    def issue(self, subject: str, access: Sequence[Access], *, expires_in: int | None = None) -> str:
        """A signed token for ``subject`` granting ``access``, valid ``expires_in`` seconds from now."""
        now = int(time.time())
        lifetime = self.expires_in if expires_in is None else expires_in
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + lifetime,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [
                {"type": kind, "name": name, "actions": list(actions)} for kind, name, actions in access
            ],
        }
        return self._key.sign(claims)

    def token_requests(self) -> list[TokenRequest]:
        """A snapshot of :attr:`requests` (the issuer appends to it from its own thread)."""
        with self._lock:
            return list(self.requests)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, entry: TokenRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def _authenticate(self, header: str | None) -> tuple[bool, str | None]:
        """(credentials accepted, username); no header gives (True, None): anonymous."""
        if header is None:
            return True, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            username, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        ok = bool(sep) and username in self.users and secrets.compare_digest(self.users[username], password)
        return ok, username

    async def _token(self, request: web.Request) -> web.Response:
        scopes = tuple(request.query.getall("scope", []))
        service = request.query.get("service")
        authorization = request.headers.get("Authorization")
        accepted, username = self._authenticate(authorization)

        def answer(status: int, granted: tuple[Access, ...] = ()) -> None:
            self._record(
                TokenRequest(request.method, username, scopes, service, status, granted, authorization)
            )

        if self.fail_status is not None:
            answer(self.fail_status)
            return web.json_response({"errors": [{"code": "UNAVAILABLE"}]}, status=self.fail_status)
        if self.refuse or not accepted or (username is None and not self.anonymous_actions):
            answer(401)
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status=401,
                headers={"WWW-Authenticate": f'Basic realm="{self.realm}"'},
            )
        granted: list[Access] = []
        for scope in scopes:
            parsed = _parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            allowed = (
                actions if username is not None else tuple(a for a in actions if a in self.anonymous_actions)
            )
            if allowed:
                granted.append((kind, name, allowed))
        token = self.issue(username or "", granted)
        answer(200, tuple(granted))
        issued_at = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        return web.json_response(
            {"token": token, "access_token": token, "expires_in": self.expires_in, "issued_at": issued_at}
        )

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self._token)
        return app
