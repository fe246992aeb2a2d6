"""The async OCI registry client used on the request path: the transport.

One `aiohttp.ClientSession` per process. The egress policy is checked before every request (the registry
a key names, every redirect target; the addresses connected to, by the session's resolver), so nothing is
sent to a refused host. Every manifest and blob read is bounded in size and checked against its digest
(provider/registry/content.py) before anything else sees it; redirects are followed by hand so that
`Authorization` never leaves the registry's origin; 429 and 5xx are retried only when the `Retry-After` (or
backoff) fits inside the request's deadline. What to send as `Authorization`, and the token flow behind it
(`WWW-Authenticate: Bearer` or Basic), is provider/registry/tokens.py; its exchanges with a token service
go through this transport (`_send_token_request`).

The deadline is read from `DEADLINE` (a context variable holding an event-loop time), which the engine
sets for each verification.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urljoin, urlsplit

import aiohttp
from multidict import CIMultiDictProxy

import provider.trace as trace
from provider.budget import ACCOUNT, json_parse_cost, read_cost
from provider.registry.auth import CredentialStore
from provider.registry.content import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    Manifest,
    checked_manifest,
    compute_digest,
    index_descriptors,
    listed_descriptors,
    off_loop,
)
from provider.registry.egress import EgressPolicy, EgressRefused, FilteringResolver, refusal_of
from provider.registry.settings import DEFAULT_SETTINGS, Limits, RegistrySettings, base_url, origin, redact
from provider.registry.tokens import RegistryAuth, TokenReply, TokenRequest
from verifiers import oci
from verifiers.base import Descriptor
from verifiers.errors import (
    AuthenticationFailed,
    IntegrityError,
    InvalidContent,
    NotFound,
    RateLimited,
    RegistryError,
    TooLarge,
    Unavailable,
)
from verifiers.reference import ImageReference

__all__ = ["DEADLINE", "RegistryClient"]

log = logging.getLogger(__name__)

OCI_MANIFEST = oci.OCI_MANIFEST
OCI_INDEX = oci.OCI_INDEX

DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("countersign_deadline", default=None)

_REDIRECTS = (301, 302, 303, 307, 308)
_ACCEPT_MANIFESTS = ", ".join(MANIFEST_MEDIA_TYPES)
_RETRYABLE = (429, 502, 503, 504)


def _retry_after(headers: CIMultiDictProxy[str], default: float) -> float:
    value = headers.get("Retry-After")
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def _next_link(headers: CIMultiDictProxy[str]) -> str | None:
    for value in headers.getall("Link", []):
        for part in value.split(","):
            segs = [s.strip() for s in part.split(";")]
            if len(segs) >= 2 and segs[0].startswith("<") and segs[0].endswith(">"):
                if any(s.replace(" ", "") in ('rel="next"', "rel=next") for s in segs[1:]):
                    return segs[0][1:-1]
    return None


RequestObserver = Callable[[str, str, str], None]  # (registry, method, status or error class)


class RegistryClient:
    """Async client for OCI distribution registries. Create it in a running loop; `await close()` it."""

    def __init__(
        self,
        *,
        settings: Mapping[str, RegistrySettings] | None = None,
        credentials: CredentialStore | None = None,
        limits: Limits | None = None,
        observe: RequestObserver | None = None,
        user_agent: str = "countersign",
        egress: EgressPolicy | None = None,
    ) -> None:
        self._settings = dict(settings or {})
        # The registries named in the configuration are the operator's choice: exempt from the built-in
        # address refusals at their exact host:port (see provider/registry/egress.py).
        self.egress = (egress or EgressPolicy()).with_trusted(
            (name, s.insecure) for name, s in self._settings.items()
        )
        self.limits = limits or Limits()
        self._observe = observe
        self._ssl: dict[str, ssl.SSLContext] = {}
        self._auth = RegistryAuth(
            settings=self._settings,
            credentials=credentials or CredentialStore(),
            egress=self.egress,
            send=self._send_token_request,
        )
        # Sized for a cold batch: every image's reads in flight at once (issue 14's trace: at 32 per host,
        # 558 ms of a 753 ms critical path was waiting for a connection). Idle connections are kept for
        # the next batch; a GET that finds its kept connection closed by the registry is resent once by
        # aiohttp on a new one.
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections,
            limit_per_host=self.limits.max_connections_per_registry,
            keepalive_timeout=self.limits.idle_connection_timeout,
            ttl_dns_cache=60,
            resolver=FilteringResolver(self.egress),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, connect=self.limits.connect_timeout),
            headers={"User-Agent": user_agent},
            auto_decompress=False,
            # aiohttp's hooks cost a little on every request: installed only for a traced client.
            trace_configs=[trace.aiohttp_trace_config()] if trace.active() else None,
        )

    def check_settings(self) -> None:
        """Load every configured CA file now, so a bad one fails at start-up (ValueError), not per request."""
        for registry in ("", *self._settings):
            try:
                self._ssl_context(registry)
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"registries[{registry!r}].caFile: cannot be loaded: {e}") from e

    async def close(self) -> None:
        await self._session.close()

    # --- public reads -------------------------------------------------------------------------------

    async def get_manifest(self, ref: ImageReference, reference: str | None = None) -> Manifest:
        """GET a manifest or index by tag or digest; checked against the digest and the size limit."""
        with trace.span("registry", "manifest", reference or ref.reference):
            return await self._get_manifest(ref, reference)

    async def _get_manifest(self, ref: ImageReference, reference: str | None) -> Manifest:
        reference = reference or ref.reference
        headers = {"Accept": _ACCEPT_MANIFESTS}
        path = f"/v2/{ref.repository}/manifests/{reference}"
        async with self._request("GET", ref, path, headers=headers) as resp:
            if resp.status == 404:
                raise NotFound(f"manifest {reference} not found in {ref.name}")
            self._raise_for_status(resp, ref, f"manifest {reference}")
            data = await self._read_limited(resp, self.limits.max_manifest_bytes, f"manifest {reference}")
            header_digest = resp.headers.get("Docker-Content-Digest")
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if reference.startswith(("sha256:", "sha512:")):
            expected = reference
        else:
            expected = None
        return await off_loop(
            data, checked_manifest, ref, reference, data, expected, header_digest, content_type
        )

    async def get_blob(
        self, ref: ImageReference, descriptor: Descriptor, max_bytes: int | None = None
    ) -> bytes:
        """GET a blob, following redirects; checked against the descriptor's digest and size."""
        with trace.span("registry", "blob", descriptor.digest):
            return await self._get_blob(ref, descriptor, max_bytes)

    async def _get_blob(self, ref: ImageReference, descriptor: Descriptor, max_bytes: int | None) -> bytes:
        limit = min(max_bytes or self.limits.max_blob_bytes, self.limits.max_blob_bytes)
        if descriptor.size > limit:
            raise TooLarge(f"blob {descriptor.digest} is {descriptor.size} bytes, over the limit of {limit}")
        path = f"/v2/{ref.repository}/blobs/{descriptor.digest}"
        async with self._request("GET", ref, path, headers={}) as resp:
            if resp.status == 404:
                raise NotFound(f"blob {descriptor.digest} not found in {ref.name}")
            self._raise_for_status(resp, ref, f"blob {descriptor.digest}")
            try:
                data = await self._read_limited(resp, descriptor.size, f"blob {descriptor.digest}")
            except TooLarge as e:  # the descriptor's size is within the limit: more bytes is tampering
                raise IntegrityError(
                    f"blob {descriptor.digest}: registry served more than {descriptor.size} bytes"
                ) from e
        if len(data) != descriptor.size:
            raise IntegrityError(
                f"blob {descriptor.digest}: expected {descriptor.size} bytes, got {len(data)}"
            )
        digest = await off_loop(data, compute_digest, data, descriptor.digest.split(":")[0])
        if digest != descriptor.digest:
            raise IntegrityError(f"registry served blob bytes for {descriptor.digest} that hash to {digest}")
        return data

    async def list_referrers(self, ref: ImageReference, digest: str) -> list[Descriptor]:
        """All manifests whose subject is `digest`: the referrers API, else the `<alg>-<hex>` tag schema."""
        with trace.span("registry", "referrers", digest):
            return await self._list_referrers(ref, digest)

    async def _list_referrers(self, ref: ImageReference, digest: str) -> list[Descriptor]:
        path: str | None = f"/v2/{ref.repository}/referrers/{digest}"
        found: list[Descriptor] = []
        pages = 0
        while path is not None:
            pages += 1
            if pages > self.limits.max_referrer_pages:
                raise TooLarge(
                    f"referrers of {ref.name}@{digest}: more than {self.limits.max_referrer_pages} pages"
                )
            async with self._request("GET", ref, path, headers={"Accept": OCI_INDEX}) as resp:
                if resp.status == 404 and pages == 1:
                    return await self._referrers_by_tag(ref, digest)
                self._raise_for_status(resp, ref, f"referrers of {digest}")
                data = await self._read_limited(
                    resp, self.limits.max_manifest_bytes, f"referrers of {digest}"
                )
                link = _next_link(resp.headers)
            what = f"referrers of {ref.name}@{digest}"
            found.extend(await off_loop(data, index_descriptors, data, what))
            if len(found) > self.limits.max_referrers:
                raise TooLarge(f"{ref.name}@{digest} has more than {self.limits.max_referrers} referrers")
            path = (
                self._same_origin_path(ref, f"/v2/{ref.repository}/referrers/{digest}", link)
                if link
                else None
            )
        return found

    def _same_origin_path(self, ref: ImageReference, current: str, link: str) -> str:
        """A next-page link as a path on the registry; a link to any other origin is refused."""
        base = self._base_url(ref.registry)
        absolute = urljoin(base + current, link)
        if origin(absolute) != origin(base):
            raise InvalidContent(f"{ref.registry}: next page link leaves the registry: {link[:200]}")
        parts = urlsplit(absolute)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    async def _referrers_by_tag(self, ref: ImageReference, digest: str) -> list[Descriptor]:
        """The referrers tag schema: the index tagged `<alg>-<hex>` lists the referrers.

        A missing tag, or a tag holding an image manifest rather than an index, means "no referrers by
        the tag schema", as go-containerregistry (and so cosign) reads it: `cosign copy` onto a registry
        without the referrers API writes the copied image under exactly that tag name. Fewer referrers
        can only mean fewer signatures found, never an allow. An index whose entries are junk is read as
        always (junk entries skipped); bytes that are no valid manifest at all stay `InvalidContent`.
        """
        algorithm, _, hex_part = digest.partition(":")
        tag = f"{algorithm}-{hex_part}"
        try:
            index = await self.get_manifest(ref, tag)
        except NotFound:
            return []
        if index.media_type not in INDEX_MEDIA_TYPES:
            log.debug(
                "referrers tag %s:%s is a %s (%s), not an index: no referrers by the tag schema",
                ref.name,
                tag,
                index.media_type,
                index.digest,
            )
            return []
        what = f"referrers tag {ref.name}:{tag}"
        if isinstance(index.document, oci.ImageIndex):  # checked by get_manifest: its entries, as parsed
            found = listed_descriptors(index.document, what)
        else:
            found = await off_loop(index.data, index_descriptors, index.data, what)
        if len(found) > self.limits.max_referrers:
            raise TooLarge(f"{ref.name}@{digest} has more than {self.limits.max_referrers} referrers")
        return found

    # --- plumbing ------------------------------------------------------------------------------------

    def _raise_for_status(self, resp: aiohttp.ClientResponse, ref: ImageReference, what: str) -> None:
        if resp.status == 200:
            return
        if resp.status in (401, 403):
            raise AuthenticationFailed(
                f"{ref.registry}: access to {what} in {ref.repository} denied ({resp.status})"
            )
        if resp.status in _RETRYABLE or resp.status >= 500:
            raise Unavailable(f"{ref.registry}: {what}: HTTP {resp.status}")
        raise InvalidContent(f"{ref.registry}: {what}: unexpected HTTP {resp.status}")

    async def _read_limited(self, resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        """The body, at most `limit` bytes, reserved in the verification's memory account (if any): before
        and while it is read (`read_cost`), then what it and its parse may take (`json_parse_cost`)."""
        length = resp.content_length
        if length is not None and length > limit:
            raise TooLarge(f"{what} is {length} bytes, over the limit of {limit}")
        account = ACCOUNT.get()
        reserved = 0
        if account is not None and length is not None:
            reserved = min(read_cost(length), max(account.room, length))
            if not account.try_reserve(reserved):
                await account.reserve(reserved, what)
        chunks: list[bytes] = []
        total = 0
        try:
            with trace.span("read", "body", what):
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    total += len(chunk)
                    if total > limit:
                        raise TooLarge(f"{what} is over the limit of {limit} bytes")
                    if account is not None and total > reserved - read_cost(0):
                        target = max(total, min(read_cost(total), reserved + account.room))
                        if not account.try_reserve(target - reserved):
                            await account.reserve(target - reserved, what)
                        reserved = target
                    chunks.append(chunk)
        except TimeoutError as e:
            raise Unavailable(f"{what}: timed out while reading", "registry_timeout") from e
        except (aiohttp.ClientError, ConnectionError) as e:
            raise Unavailable(f"{what}: connection lost while reading: {e}") from e
        data = b"".join(chunks)
        del chunks
        if account is not None:
            exact = json_parse_cost(data)
            if exact > reserved:
                if not account.try_reserve(exact - reserved):
                    await account.reserve(exact - reserved, what)
            else:
                account.give_back(reserved - exact)
        return data

    def _settings_for(self, registry: str) -> RegistrySettings:
        return self._settings.get(registry, DEFAULT_SETTINGS)

    def _base_url(self, registry: str) -> str:
        return base_url(registry, self._settings_for(registry))

    def _ssl_context(self, registry: str) -> ssl.SSLContext | bool:
        """The TLS context for a registry: its own when configured, else one shared default context.

        Registries a key names without configuration share one context, so a key naming a new host
        neither grows this map nor costs a context (tens of milliseconds loading the system CAs) on the
        event loop. Configured registries' contexts are made by `check_settings` at start-up.
        """
        settings = self._settings.get(registry)
        if settings is None:
            registry, settings = "", DEFAULT_SETTINGS
        if settings.insecure:
            return False
        ctx = self._ssl.get(registry)
        if ctx is None:
            ctx = ssl.create_default_context()
            if settings.ca_file is not None:
                ctx.load_verify_locations(cafile=str(settings.ca_file))
            ctx.minimum_version = (
                ssl.TLSVersion.TLSv1_3 if settings.min_tls == "1.3" else ssl.TLSVersion.TLSv1_2
            )
            self._ssl[registry] = ctx
        return ctx

    def _remaining(self) -> float:
        deadline = DEADLINE.get()
        if deadline is None:
            return self.limits.request_timeout
        return deadline - asyncio.get_running_loop().time()

    def _request(
        self, method: str, ref: ImageReference, path: str, *, headers: Mapping[str, str]
    ) -> _ResponseContext:
        return _ResponseContext(self._send(method, ref, path, headers))

    async def _send(
        self, method: str, ref: ImageReference, path: str, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        """Send with auth, manual redirects and bounded retries. The caller releases the response."""
        registry = ref.registry
        scope = f"repository:{ref.repository}:pull"
        url = self._base_url(registry) + path
        authorized = False
        attempts = 0
        while True:
            attempts += 1
            auth = await self._auth.header(registry, scope)
            resp = await self._follow(method, registry, url, headers, auth)
            if resp.status == 401 and not authorized:
                challenge_header = resp.headers.get("WWW-Authenticate", "")
                resp.release()
                with trace.span("token", "challenge", registry):
                    await self._auth.challenged(registry, scope, challenge_header, presented=auth)
                authorized = True
                attempts -= 1  # the challenge round is not a retry
                continue
            if resp.status in _RETRYABLE:
                delay = _retry_after(resp.headers, default=0.1 * 2**attempts)
                fits = delay <= self.limits.max_retry_after and delay < self._remaining() - 0.05
                if fits and attempts < self.limits.max_attempts:
                    resp.release()
                    await asyncio.sleep(delay)
                    continue
                if resp.status == 429:
                    resp.release()
                    why = (
                        "after the last attempt"
                        if fits
                        else f"Retry-After {delay:.1f}s does not fit the deadline"
                    )
                    raise RateLimited(f"{registry}: rate limited (429) {why}")
            return resp

    async def _follow(
        self, method: str, registry: str, url: str, headers: Mapping[str, str], auth: str | None
    ) -> aiohttp.ClientResponse:
        start = origin(url)
        current, here = url, start  # the URL of this hop and its origin (parsed once per hop)
        # The registry a key names: its globs and, for an address literal, its address. Every later hop
        # is a URL the registry chose, checked the same way before anything is sent to it.
        self.egress.check_registry(registry, self._settings_for(registry).insecure)
        for _ in range(self.limits.max_redirects + 1):
            send_headers = dict(headers)
            if auth is not None and here == start:
                send_headers["Authorization"] = auth
            remaining = self._remaining()
            if remaining <= 0:
                raise Unavailable(
                    f"{registry}: deadline reached before the request was sent", "deadline_exceeded"
                )
            try:
                with trace.span("http", method, current) as traced:
                    resp = await self._session.request(
                        method,
                        current,
                        headers=send_headers,
                        allow_redirects=False,
                        ssl=self._ssl_context(registry) if here[1:] == start[1:] else True,
                        timeout=aiohttp.ClientTimeout(
                            total=min(remaining, self.limits.request_timeout),
                            connect=self.limits.connect_timeout,
                        ),
                    )
                    if traced is not None:
                        traced.status = resp.status
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise self._transport_error(registry, method, current, e) from e
            self._note(registry, method, str(resp.status))
            if resp.status not in _REDIRECTS:
                return resp
            location = resp.headers.get("Location")
            resp.release()
            if not location:
                raise InvalidContent(f"{registry}: redirect without a Location")
            nxt = urljoin(current, location)
            if urlsplit(nxt).scheme not in ("http", "https"):
                raise InvalidContent(f"{registry}: redirect to an unsupported URL scheme: {nxt[:100]}")
            if urlsplit(current).scheme == "https" and urlsplit(nxt).scheme != "https":
                raise IntegrityError(f"{registry}: refusing a redirect from https to {urlsplit(nxt).scheme}")
            self.egress.check_url(nxt, f"{registry}: redirect")  # a URL it cannot parse was refused here
            current, here = nxt, origin(nxt)
        raise InvalidContent(f"{registry}: more than {self.limits.max_redirects} redirects")

    def _transport_error(self, registry: str, method: str, url: str, error: BaseException) -> RegistryError:
        """The error for a failed exchange: an egress refusal, or the registry unavailable.

        Keys are chosen by pod authors, so what a failure tells them is bounded: every transport failure
        (connection refused, reset, a TLS failure, a timeout, an unreachable network) reads the same,
        "cannot reach <registry>" with reason `registry_unavailable`, and so cannot tell a closed port from
        an open one that speaks something else. The details go to this provider's log (a warning for a
        registry the configuration names, where they are the operator's to act on) and to the
        `countersign_registry_requests_total` status label.
        """
        refusal = refusal_of(error)
        if refusal is not None:
            self._note(registry, method, "egress_refused")
            return EgressRefused(refusal)
        if isinstance(error, TimeoutError):
            status, detail = "timeout", "timed out"
        elif isinstance(error, aiohttp.ClientSSLError):
            status, detail = "tls_error", f"TLS error: {error}"
        elif isinstance(error, aiohttp.ClientConnectorError):
            why = error.os_error.strerror or type(error.os_error).__name__
            status, detail = "connection_error", f"cannot connect to {error.host}:{error.port} ({why})"
        else:
            status, detail = "connection_error", f"{type(error).__name__}: {error}"
        self._note(registry, method, status)
        if method.startswith("TOKEN"):
            detail = f"token service: {detail}"
        level = logging.WARNING if registry in self._settings else logging.INFO
        log.log(level, "%s %s: %s", method, redact(url), detail)
        return Unavailable(f"cannot reach {registry} (the provider's log has the details)")

    def _note(self, registry: str, method: str, status: str) -> None:
        if self._observe is not None:
            self._observe(registry, method, status)

    async def _send_token_request(self, registry: str, request: TokenRequest) -> TokenReply:
        """One exchange with `registry`'s token service, for the token flow (`RegistryAuth`): the status, and
        the body of a 200 (at most `max_token_bytes`, else `TooLarge`). The realm was checked against the
        egress policy by the flow before this is called; the resolver checks the addresses connected to."""
        remaining = self._remaining()
        if remaining <= 0:
            raise Unavailable(
                f"{registry}: deadline reached before a token was obtained", "deadline_exceeded"
            )
        method = f"TOKEN {request.method}"
        try:
            with trace.span("http", method, request.url):
                async with self._session.request(
                    request.method,
                    request.url,
                    headers=request.headers,
                    data=request.data,
                    allow_redirects=False,
                    # The registry's trust (system CAs plus its caFile) also covers its token service,
                    # wherever that lives, as in docker and containerd.
                    ssl=registry_ssl
                    if isinstance(registry_ssl := self._ssl_context(registry), ssl.SSLContext)
                    else True,
                    timeout=aiohttp.ClientTimeout(total=min(remaining, self.limits.request_timeout)),
                ) as resp:
                    self._note(registry, method, str(resp.status))
                    if resp.status != 200:
                        return TokenReply(resp.status, None)
                    body = await self._read_limited(resp, self.limits.max_token_bytes, "token response")
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise self._transport_error(registry, method, request.url, e) from e
        return TokenReply(200, body)


class _ResponseContext:
    """`async with client._request(...) as resp` that releases the response on exit."""

    def __init__(self, coro: Awaitable[aiohttp.ClientResponse]) -> None:
        self._coro = coro
        self._resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self._resp = await self._coro
        return self._resp

    async def __aexit__(self, *exc: object) -> None:
        if self._resp is not None:
            self._resp.release()


def is_definite(error: RegistryError) -> bool:
    """True for errors that decide an image (not found, integrity, too large, invalid content)."""
    return not isinstance(error, Unavailable)
