"""The registry authentication flow: what to send as `Authorization`, and how to obtain it.

On a 401 the registry's `WWW-Authenticate` challenges (parsed by `provider.registry.auth`) say how:
`Bearer` is the distribution token flow (a token from the realm the challenge names, for one
repository scope, cached per (registry, scope) until shortly before it expires), `Basic` the registry's
credentials on every request. The realm is the registry's choice, so it is checked here before anything is
sent to it: an HTTP(S) URL, plain HTTP only for a registry configured as plain HTTP, inside the egress
policy; credentials cross the network in the clear to no host the operator did not name.

The exchange with the token service itself (TLS, deadline, bounded read, transport errors) is the
transport's: `RegistryAuth` is given it as a `TokenSender`.

A verification with workload credentials (provider/registry/workload.py) uses them for their registry host
before the operator's, and the tokens they obtain are cached under their identity: a token obtained with
one namespace's pull secret is never presented for another key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from provider.cache import KeyedLocks, TTLCache, bytes_cost, ttl_slot_cost
from provider.registry.auth import Challenge, Credentials, CredentialStore, parse_challenges
from provider.registry.egress import EgressPolicy
from provider.registry.settings import DEFAULT_SETTINGS, RegistrySettings, base_url, origin, redact
from provider.registry.workload import host_identity, workload_credentials
from verifiers import oci
from verifiers.errors import AuthenticationFailed, TooLarge, Unavailable

__all__ = [
    "MAX_TOKENS",
    "MAX_TOKEN_CACHE_BYTES",
    "RegistryAuth",
    "TokenReply",
    "TokenRequest",
    "TokenSender",
]

log = logging.getLogger(__name__)

MAX_TOKENS = 4096
MAX_TOKEN_CACHE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One request to a token service: `url` is the realm (with the query for a GET)."""

    method: str  # "GET" or "POST"
    url: str
    headers: Mapping[str, str]
    data: str | None = None


@dataclass(frozen=True, slots=True)
class TokenReply:
    """The token service's answer: its status, and its body for a 200 only (other bodies are not read)."""

    status: int
    body: bytes | None


# Sends a token request for a registry; raises `TooLarge` for a body over `Limits.max_token_bytes`, the
# transport's errors for a failed exchange (a deadline already reached, an unreachable service).
TokenSender = Callable[[str, TokenRequest], Awaitable[TokenReply]]


@dataclass(slots=True)
class _Token:
    value: str
    expires: float  # monotonic


def _token_cost(token: _Token) -> int:
    return 96 + bytes_cost(token.value)  # the object, its dict-less slots, the float


def _bearer_value(header: str | None) -> str | None:
    return header[7:] if header is not None and header.startswith("Bearer ") else None


class RegistryAuth:
    """Authorization for registry requests: the token cache, the registries that asked for Basic, and the
    flow that answers a challenge. One per registry client."""

    def __init__(
        self,
        *,
        settings: Mapping[str, RegistrySettings],
        credentials: CredentialStore,
        egress: EgressPolicy,
        send: TokenSender,
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self._egress = egress
        self._send = send
        # Keys name any repository: tokens are bounded (count and bytes: a token may be 256 KiB) and expire;
        # a lock exists only while someone fetches or waits for that token.
        # Keyed (registry, scope), and the workload credentials' identity when they obtained the token.
        self._tokens: TTLCache[tuple[str, ...], _Token] = TTLCache(
            3600.0,
            max_entries=MAX_TOKENS,
            max_bytes=MAX_TOKEN_CACHE_BYTES,
            size_of=_token_cost,
            slot_of=ttl_slot_cost,
        )
        self._token_locks: KeyedLocks[tuple[str, ...]] = KeyedLocks("token")
        self._basic: set[str] = set()  # registries that asked for Basic auth

    def _settings_for(self, registry: str) -> RegistrySettings:
        return self._settings.get(registry, DEFAULT_SETTINGS)

    @staticmethod
    def _token_key(registry: str, scope: str) -> tuple[str, ...]:
        identity = host_identity(registry)
        return (registry, scope, identity) if identity else (registry, scope)

    async def header(self, registry: str, scope: str) -> str | None:
        """The `Authorization` value for a request to `registry` in `scope`, when one is known."""
        token = self._tokens.get(self._token_key(registry, scope))
        if token is not None and token.expires > time.monotonic():
            return f"Bearer {token.value}"
        if registry in self._basic:
            creds = await self._creds(registry)
            return creds.basic_header() if creds is not None else None
        return None

    async def _creds(self, registry: str) -> Credentials | None:
        workload = workload_credentials(registry)  # the Pod's pull secrets first, as the kubelet does
        if workload is not None:
            return workload
        settings = self._settings_for(registry)
        if settings.credentials is not None:
            return settings.credentials
        return await self._credentials.get(registry)

    async def challenged(
        self, registry: str, scope: str, www_authenticate: str, presented: str | None
    ) -> None:
        """A 401 with `www_authenticate` answered a request that carried `presented` (an `Authorization`
        value, or None): obtain what to present next time (a token that was just refused is not reused)."""
        await self._authenticate(
            registry, scope, parse_challenges(www_authenticate), rejected=_bearer_value(presented)
        )

    async def _authenticate(
        self, registry: str, scope: str, challenges: Sequence[Challenge], rejected: str | None = None
    ) -> None:
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        if bearer is not None:
            await self._fetch_token(registry, scope, bearer, rejected)
            return
        if any(c.scheme == "basic" for c in challenges):
            if await self._creds(registry) is None:
                raise AuthenticationFailed(
                    f"{registry} requires Basic authentication and no credentials are set"
                )
            self._basic.add(registry)
            return
        raise AuthenticationFailed(f"{registry}: 401 without a supported WWW-Authenticate challenge")

    def _credentials_may_go_to(self, registry: str, realm: str) -> bool:
        """Credentials go to a token realm over HTTPS, or over plain HTTP only to the registry's own origin
        (a registry the operator configured as plain HTTP, e.g. a local one)."""
        if urlsplit(realm).scheme == "https":
            return True
        return origin(realm) == origin(base_url(registry, self._settings_for(registry)))

    async def _fetch_token(
        self, registry: str, scope: str, challenge: Challenge, rejected: str | None = None
    ) -> None:
        """Obtain a token for (registry, scope); never reuse `rejected`, a token the registry just refused."""
        key = self._token_key(registry, scope)
        async with self._token_locks.hold(key):
            existing = self._tokens.get(key)
            if existing is not None and existing.value != rejected and existing.expires > time.monotonic():
                return  # another request refreshed it while we waited
            realm = challenge.params.get("realm")
            if not realm:
                raise AuthenticationFailed(f"{registry}: Bearer challenge without a realm")
            realm_scheme = urlsplit(realm).scheme
            if realm_scheme not in ("https", "http"):
                raise AuthenticationFailed(f"{registry}: token realm {realm[:200]!r} is not an HTTP(S) URL")
            if realm_scheme == "http" and not self._settings_for(registry).insecure:
                raise AuthenticationFailed(
                    f"{registry}: refusing a plain-HTTP token realm for a TLS registry"
                )
            # The realm is the registry's choice: the egress policy bounds it like a redirect.
            self._egress.check_url(realm, f"{registry}: token realm")
            creds = await self._creds(registry)
            if creds is not None and not self._credentials_may_go_to(registry, realm):
                # Plain HTTP to another origin than the registry's own: the credentials would cross the
                # network in the clear to a host the operator never named. Ask for an anonymous token.
                log.warning(
                    "%s: token realm %s is plain HTTP on another origin; not sending credentials there",
                    registry,
                    redact(realm),
                )
                creds = None
            params = {"scope": challenge.params.get("scope") or scope}
            if challenge.params.get("service"):
                params["service"] = challenge.params["service"]
            headers: dict[str, str] = {}
            method = "GET"
            data: str | None = None
            if creds is not None and creds.identity_token:
                method = "POST"
                data = urlencode(
                    {
                        **params,
                        "grant_type": "refresh_token",
                        "refresh_token": creds.identity_token,
                        "client_id": "countersign",
                    }
                )
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                url = realm
            else:
                if creds is not None:
                    headers["Authorization"] = creds.basic_header()
                url = realm + ("&" if "?" in realm else "?") + urlencode(params)
            try:
                reply = await self._send(registry, TokenRequest(method, url, headers, data))
            except TooLarge as e:
                raise AuthenticationFailed(f"{registry}: {e}") from e
            if reply.status in (401, 403):
                raise AuthenticationFailed(
                    f"{registry}: token service refused the credentials ({reply.status})"
                )
            if reply.status != 200 or reply.body is None:
                raise Unavailable(f"{registry}: token service answered HTTP {reply.status}")
            body = reply.body
            try:
                doc = oci.load_json(body)
            except oci.ContentError as e:
                raise AuthenticationFailed(f"{registry}: token service returned invalid JSON: {e}") from e
            token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
            if not isinstance(token, str) or not token:
                raise AuthenticationFailed(f"{registry}: token service returned no token")
            expires_in = doc.get("expires_in", 60)
            if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
                expires_in = 60
            # Refresh a little early (up to 10 s, at most half its life) so a token never expires in flight.
            lifetime = float(expires_in)
            expires = lifetime - min(10.0, lifetime / 2)
            self._tokens.put(key, _Token(token, time.monotonic() + expires), ttl=expires)
