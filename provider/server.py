"""The HTTPS server Gatekeeper talks to.

Endpoints: `POST /v1/verify`, `POST /v1/mutate` (ProviderRequest -> ProviderResponse), `GET /healthz`,
`GET /readyz`, `GET /metrics`. TLS 1.3 only; with a client CA configured a client certificate is mandatory
(mutual TLS, as Gatekeeper does with its webhook certificate). The certificate, key and client CA are
re-read when their files change, without a restart.

The configuration file is reloaded too (`ConfigReloader`): when its contents change, or on SIGHUP, a new
engine is built from it and swapped in; a configuration that does not load leaves the old one in service.

Both listeners are `GuardedSite`s: at most `server.limits.maxConnections` connections each (more are closed
at accept, before a TLS handshake), the TLS handshake, a request's headers, its body and idle keep-alive
each bounded by `server.timeouts` (aiohttp has no header-read timeout of its own: a client sending one
byte every few seconds would otherwise hold a connection for ever).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import errno
import hashlib
import json
import logging
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler

from provider.config import Config, ConfigError, ServerConfig, TLSConfig, load_config
from provider.engine import Decided, Engine, Invalid, Outcome
from provider.metrics import CONTENT_TYPE_LATEST, Metrics
from provider.protocol import (
    ProtocolError,
    RequestLimits,
    encode_outcomes,
    encode_response,
    error_response,
    is_well_formed,
    parse_request,
)

__all__ = [
    "RELOADER",
    "CertificateReloader",
    "ConfigReloader",
    "Generation",
    "GuardedSite",
    "build_app",
    "build_health_app",
    "make_server_ssl_context",
    "run_server",
]

log = logging.getLogger(__name__)

METRICS = web.AppKey("metrics", Metrics)


def make_server_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """A TLS 1.3-only server context; a client CA makes a client certificate mandatory."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(tls.client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _file_digest(*files: Path) -> str:
    """The hash of the contents of `files`: Kubernetes swaps a ConfigMap or Secret volume's symlinks, so
    mtimes say little."""
    digest = hashlib.sha256()
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as e:
            data = f"unreadable: {e}".encode()
        digest.update(hashlib.sha256(str(file).encode() + b"\0" + data).digest())
    return digest.hexdigest()


class CertificateReloader:
    """Swaps in a new server context when the certificate, key or client CA files change.

    The listening socket keeps one context whose SNI callback hands every new connection the current
    context, so a rotation (cert-manager, Gatekeeper's own rotator) needs no restart. A broken new pair is
    logged and the previous one stays in service.
    """

    def __init__(self, tls: TLSConfig) -> None:
        self.tls = tls
        self.current = make_server_ssl_context(tls)
        self._fingerprint = self._files_fingerprint()
        self.reloads = 0
        self.listening = make_server_ssl_context(tls)
        self.listening.sni_callback = self._select

    def _select(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj.context = self.current
        return None

    def _files(self) -> list[Path]:
        files = [self.tls.cert_file, self.tls.key_file]
        if self.tls.client_ca_file is not None:
            files.append(self.tls.client_ca_file)
        return files

    def _files_fingerprint(self) -> str:
        return _file_digest(*self._files())

    def check(self) -> bool:
        """Reload when the files changed; True when a new context is now in service."""
        fingerprint = self._files_fingerprint()
        if fingerprint == self._fingerprint:
            return False
        try:
            ctx = make_server_ssl_context(self.tls)
        except (OSError, ssl.SSLError) as e:
            log.warning("TLS files changed but cannot be loaded (keeping the previous ones): %s", e)
            return False
        self.current = ctx
        self._fingerprint = fingerprint
        self.reloads += 1
        log.info("TLS certificate reloaded")
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.tls.reload_interval)
            await asyncio.to_thread(self.check)


# Settings bound to the listening sockets (and the certificate watcher): a reload keeps the old values.
_RESTART_ONLY = {"address": "address", "port": "port", "health_port": "healthPort", "tls": "tls"}


@dataclasses.dataclass(eq=False)
class Generation:
    """One configuration and the engine built from it. A request keeps the generation it started on."""

    config: Config
    engine: Engine
    owned: bool = True  # an engine handed to build_app is closed by whoever made it
    requests: int = 0
    closed: bool = False

    @property
    def busy(self) -> bool:
        """Requests still using it, or verifications still running on its engine (in the background too)."""
        # A retired engine gets no new work, so its in-flight count only shrinks.
        return self.requests > 0 or self.engine.in_flight > 0


class ConfigReloader:
    """The configuration in service, and its replacement when the file changes or on SIGHUP.

    A new configuration is loaded and validated by `load_config`, and its engine built by `Engine.create`,
    exactly as at start-up, before anything is swapped: a failure logs the offending field, counts in
    `countersign_config_reloads_total{result="failure"}` and leaves the old generation serving. After a
    swap new requests get the new generation; the old one is closed once its requests and background
    verifications are done, or after a grace period (its longest deadline plus one second).

    Settings in `_RESTART_ONLY` cannot change while serving: a reload keeps their old values and warns.
    """

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        *,
        path: Path | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.path = path
        self.metrics = metrics
        self._initial = config
        self._engine = engine
        self.current: Generation | None = None
        self.reloads = 0
        self.failures = 0
        self._digest = ""
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[object]] = set()  # the watcher, SIGHUP reloads, retiring generations

    @property
    def server(self) -> ServerConfig:
        """The server settings in service (the initial ones before `start`)."""
        return (self.current.config if self.current is not None else self._initial).server

    async def start(self) -> None:
        """Build the first engine (inside the running loop) and, with a file, start watching it."""
        if self.path is not None:
            self._digest = await asyncio.to_thread(_file_digest, self.path, *self._initial.credential_files)
        engine = self._engine or await Engine.create(self._initial, self.metrics)
        self.current = Generation(self._initial, engine, owned=self._engine is None)
        self.metrics.config_last_reload_successful.set(1)
        self.metrics.config_last_reload_success.set_to_current_time()
        if self.path is not None:
            self._spawn(self._watch())

    async def stop(self) -> None:
        """Finish a reload under way, then close every generation (background work is cancelled)."""
        self._stop.set()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.current is not None:
            await self._close(self.current)

    @contextmanager
    def use(self) -> Iterator[Generation]:
        """The generation a request runs on from start to end, whatever is swapped in meanwhile."""
        generation = self.current
        if generation is None:
            raise web.HTTPServiceUnavailable(text="starting\n")
        generation.requests += 1
        try:
            yield generation
        finally:
            generation.requests -= 1

    def request_reload(self) -> None:
        """SIGHUP: reload now, even when the file did not change (e.g. a rotated key file it names)."""
        if self.path is None:
            log.warning("SIGHUP: no configuration file to reload")
            return
        self._spawn(self.reload(force=True))

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        while not self._stop.is_set():
            assert self.current is not None
            try:
                await asyncio.wait_for(self._stop.wait(), self.current.config.server.config_reload_interval)
            except TimeoutError:
                await self.reload()

    async def reload(self, *, force: bool = False) -> bool | None:
        """Reload when the file changed (always with `force`): True when swapped, False when it failed,
        None when there was nothing to do."""
        if self.path is None:
            return None
        async with self._lock:
            if self._stop.is_set() or self.current is None:
                return None
            # The files the serving configuration read besides itself: a rotated docker config or password
            # file (a Secret) is picked up like a changed configuration.
            watched = self.current.config.credential_files
            digest = await asyncio.to_thread(_file_digest, self.path, *watched)
            if digest == self._digest and not force:
                return None
            # Recorded before loading: a broken file is reported once, not at every check.
            self._digest = digest
            old = self.current
            try:
                config = await asyncio.to_thread(load_config, self.path)
                config, restart = self._keep_restart_only(config, old.config)
                # One budget for registry responses in the process: the new engine shares the old one's.
                engine = await Engine.create(config, self.metrics, memory=old.engine.memory)
            except Exception as e:  # whatever fails, the old configuration keeps serving
                self._failed(e, old.config)
                return False
            self.current = Generation(config, engine)
            engine.memory.resize(config.server.in_flight_bytes)
            # Over the files this configuration reads (the set may have changed with it).
            self._digest = await asyncio.to_thread(_file_digest, self.path, *config.credential_files)
            self.reloads += 1
            self.metrics.config_reloads.labels("success").inc()
            self.metrics.config_last_reload_successful.set(1)
            self.metrics.config_last_reload_success.set_to_current_time()
            self.metrics.config_restart_required.set(1 if restart else 0)
            log.info(
                "configuration %s reloaded: fingerprint %s (was %s)",
                self.path,
                config.fingerprint,
                old.config.fingerprint,
            )
            self._spawn(self._retire(old))
            return True

    def _failed(self, error: Exception, active: Config) -> None:
        self.failures += 1
        self.metrics.config_reloads.labels("failure").inc()
        self.metrics.config_last_reload_successful.set(0)
        if isinstance(error, ConfigError):
            where = error.path or "(file)"
            log.error(
                "configuration %s not reloaded, invalid at %s: %s; still serving fingerprint %s",
                self.path,
                where,
                error.message,
                active.fingerprint,
            )
        else:
            log.error(
                "configuration %s not reloaded: %s: %s; still serving fingerprint %s",
                self.path,
                type(error).__name__,
                error,
                active.fingerprint,
                exc_info=not isinstance(error, ValueError | OSError),  # a bug deserves its traceback
            )

    def _keep_restart_only(self, new: Config, active: Config) -> tuple[Config, bool]:
        changed = {
            field: getattr(active.server, field)
            for field in _RESTART_ONLY
            if getattr(new.server, field) != getattr(active.server, field)
        }
        for field, kept in changed.items():
            log.warning(
                "configuration %s: server.%s changed (to %s) but only a restart applies it; keeping %s",
                self.path,
                _RESTART_ONLY[field],
                getattr(new.server, field),
                kept,
            )
        if not changed:
            return new, False
        return dataclasses.replace(new, server=dataclasses.replace(new.server, **changed)), True

    async def _retire(self, old: Generation) -> None:
        server = old.config.server
        loop = asyncio.get_running_loop()
        grace = max(server.background_timeout, server.verify_deadline, server.mutate_deadline) + 1.0
        deadline = loop.time() + grace
        while old.busy and loop.time() < deadline and not self._stop.is_set():
            with suppress(TimeoutError):  # the engine has no "idle" event to wait on: poll it
                await asyncio.wait_for(self._stop.wait(), 0.05)
        if old.busy and not self._stop.is_set():
            log.warning("closing the previous configuration's engine with work still in flight (grace over)")
        await self._close(old)

    async def _close(self, generation: Generation) -> None:
        if generation.closed or not generation.owned:
            return
        generation.closed = True
        try:
            await generation.engine.close()
        except Exception:
            log.exception("closing the engine of configuration %s failed", generation.config.fingerprint)


RELOADER = web.AppKey("reloader", ConfigReloader)


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ProtocolError(f"request body is {request.content_length} bytes, over the limit of {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise ProtocolError(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _provider_handler(endpoint: str) -> Callable[[web.Request], object]:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        metrics = request.app[METRICS]
        status = 200
        with request.app[RELOADER].use() as generation:
            server = generation.config.server
            try:
                async with asyncio.timeout(server.body_timeout):
                    body = await _read_body(request, server.max_body_bytes)
            except TimeoutError:
                # A client trickling its body: answer (it may not read it) and drop the connection.
                status = 408
                metrics.connections_dropped.labels("provider", "request_body").inc()
                message = f"request body not received within {server.body_timeout:g}s"
                response = _json_response(encode_response(error_response(message)), status=408)
                response.force_close()
            except ProtocolError as e:
                status = 400
                response = _json_response(encode_response(error_response(str(e))), status=400)
            else:
                response, status = await _answer(endpoint, body, generation, metrics)
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.request_latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    return handle


async def _answer(
    endpoint: str, body: bytes, generation: Generation, metrics: Metrics
) -> tuple[web.Response, int]:
    engine, server = generation.engine, generation.config.server
    try:
        api_version, keys = parse_request(body, RequestLimits(server.max_keys, server.max_key_bytes))
    except ProtocolError as e:
        return _json_response(encode_response(error_response(str(e))), status=400), 400
    # A key that is not valid Unicode never reaches the engine: response_for makes it an error item.
    decodable = [key for key in keys if is_well_formed(key)]
    if endpoint == "verify":
        outcomes = await engine.verify(decodable, server.verify_deadline)
    else:
        outcomes = await engine.mutate(decodable, server.mutate_deadline)
    _count(metrics, endpoint, outcomes, len(set(keys) - set(decodable)))
    # Decided verdicts are spliced in from their cached encoding (encode_outcomes falls back to the
    # careful encode_response for anything unusual).
    return web.Response(
        body=encode_outcomes(keys, outcomes, api_version), content_type="application/json"
    ), 200


def _count(metrics: Metrics, endpoint: str, outcomes: dict[str, Outcome], undecodable: int = 0) -> None:
    """Distinct keys by outcome; `undecodable` distinct keys that were not valid Unicode count as invalid."""
    if undecodable:
        metrics.keys.labels(endpoint, "invalid").inc(undecodable)
    for outcome in outcomes.values():
        if isinstance(outcome, Decided):
            allowed = endpoint == "mutate" or outcome.allowed
            label = "allowed" if allowed else "denied"
        elif isinstance(outcome, Invalid):
            label = "invalid"
        else:
            label = "undecided"
        metrics.keys.labels(endpoint, label).inc()


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    current = request.app[RELOADER].current
    if current is None:
        return web.Response(status=503, text="starting\n")
    return _json_response(json.dumps({"ready": True, "config": current.config.fingerprint}).encode())


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# --- listeners ----------------------------------------------------------------------------------------

_HEADERS = "request_headers"
_BUSY = "busy"
_IDLE = "idle"
# Errors of accept(2) that say the process or the system is out of a resource: wait, then accept again.
_ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's request handler behind a deadline for each phase.

    `request_headers`: from the start of the connection (after the TLS handshake), or from the first byte
    after an idle period, until a request's handler starts (`_phases` middleware); `busy`: while a handler
    runs (it bounds itself: body timeout, deadlines); `idle`: from a handler's end (the response is being
    written) until the next request's first byte. A deadline that passes aborts the connection.
    Everything else is passed to aiohttp's handler unchanged.
    """

    def __init__(self, site: GuardedSite, handler: asyncio.Protocol) -> None:
        self._site = site
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._phase = _HEADERS
        self.made = False
        self._released = False

    # asyncio.Protocol, forwarded
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True
        self._transport = cast(asyncio.Transport, transport)
        self._arm(_HEADERS, self._site.limits().header_timeout)
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._phase == _IDLE:  # the first byte of the next request
            self._arm(_HEADERS, self._site.limits().header_timeout)
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        try:
            self._handler.connection_lost(exc)
        finally:
            self.release()

    # phases
    def request_started(self) -> None:
        self._cancel()
        self._phase = _BUSY

    def request_finished(self) -> None:
        self._arm(_IDLE, self._site.limits().idle_timeout)

    def release(self) -> None:
        """Give the connection's slot back (once)."""
        if not self._released:
            self._released = True
            self._site.connection_closed()

    def _arm(self, phase: str, delay: float) -> None:
        self._cancel()
        self._phase = phase
        self._timer = self._loop.call_later(delay, self._expired)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._site.dropped(self._phase)
        log.debug(
            "%s: closing a connection from %s (%s timeout)",
            self._site.name,
            transport.get_extra_info("peername"),
            self._phase,
        )
        transport.abort()


@web.middleware
async def _phases(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tells the connection (when it is a `_Connection`) that a request's handler runs, then that it ended."""
    transport = request.transport
    connection = transport.get_protocol() if transport is not None else None
    if not isinstance(connection, _Connection):
        return await handler(request)
    connection.request_started()
    try:
        return await handler(request)
    finally:
        connection.request_finished()


class GuardedSite(web.BaseSite):
    """A TCP listener for an aiohttp runner, like `web.TCPSite`, that bounds what a client can hold.

    It accepts connections itself (`loop.sock_accept`) and hands each one to asyncio with
    `loop.connect_accepted_socket`, so that it can count them before any TLS handshake: past
    `limits().max_connections` open connections a new one is closed at once. The TLS handshake is bounded by
    `tls_handshake_timeout`; each connection is a `_Connection` (request headers, idle keep-alive) and the
    handlers bound the body. `limits` is read for every connection, so a configuration reload applies to the
    next ones. Only public asyncio and aiohttp interfaces are used: the connection protocol is aiohttp's
    own (`runner.server()`), wrapped.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limits: Callable[[], ServerConfig],
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
        listener: str = "provider",
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        server = runner.server
        assert server is not None  # BaseSite checked it
        self._protocol_factory = server
        self._host = host
        self._requested_port = port
        self._tls = ssl_context
        self._listen_backlog = backlog
        self._listener = listener
        self._metrics = metrics
        self.limits = limits
        self._sockets: list[socket.socket] = []
        self._acceptors: list[asyncio.Task[None]] = []
        self._handshakes: set[asyncio.Task[None]] = set()
        self.open_connections = 0
        self.dropped_connections: collections.Counter[str] = collections.Counter()
        self._last_limit_warning = -float("inf")

    @property
    def name(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on (the one bound when `port` was 0)."""
        if self._sockets:
            return int(self._sockets[0].getsockname()[1])
        return self._requested_port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio does: `::` does not also take the IPv4 port
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self._listen_backlog)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise
        self._acceptors = [loop.create_task(self._accept(sock)) for sock in self._sockets]

    async def stop(self) -> None:
        """Stop accepting and abandon handshakes under way; aiohttp's runner closes the connections."""
        for task in self._acceptors:
            task.cancel()
        await asyncio.gather(*self._acceptors, return_exceptions=True)
        self._acceptors = []
        self._close_sockets()
        for task in list(self._handshakes):
            task.cancel()
        await asyncio.gather(*self._handshakes, return_exceptions=True)
        await super().stop()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as e:
                if e.errno in _ACCEPT_EXHAUSTED:
                    log.error("%s: cannot accept connections (%s); trying again in 1s", self.name, e)
                    await asyncio.sleep(1.0)
                elif not isinstance(e, ConnectionAbortedError):  # a client gone before accept: no news
                    log.warning("%s: accept failed: %s", self.name, e)
                    await asyncio.sleep(0.1)
                continue
            limits = self.limits()
            if self.open_connections >= limits.max_connections:
                conn.close()
                self.dropped("limit")
                now = loop.time()
                if now - self._last_limit_warning > 10.0:
                    self._last_limit_warning = now
                    log.warning(
                        "%s: %d connections open (server.limits.maxConnections); closing new ones",
                        self.name,
                        self.open_connections,
                    )
                continue
            self.open_connections += 1
            self._gauge()
            task = loop.create_task(self._serve(conn, limits))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _serve(self, conn: socket.socket, limits: ServerConfig) -> None:
        connection = _Connection(self, self._protocol_factory())
        try:
            # On failure asyncio closes the transport, which owns `conn` from here on.
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: connection,
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=limits.tls_handshake_timeout if self._tls is not None else None,
            )
        except asyncio.CancelledError:
            if not connection.made:
                connection.release()
            raise
        except Exception as e:  # a failed or timed-out TLS handshake, a reset: the client's loss
            if not connection.made:
                connection.release()
                self.dropped("tls_handshake")
                log.debug("%s: TLS handshake failed: %s: %s", self.name, type(e).__name__, e)

    def connection_closed(self) -> None:
        self.open_connections -= 1
        self._gauge()

    def dropped(self, reason: str) -> None:
        self.dropped_connections[reason] += 1
        if self._metrics is not None:
            self._metrics.connections_dropped.labels(self._listener, reason).inc()

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.connections.labels(self._listener).set(self.open_connections)


def guarded_site(
    runner: web.BaseRunner,
    app: web.Application,
    *,
    port: int,
    ssl_context: ssl.SSLContext | None,
    listener: str,
    backlog: int = 512,
) -> GuardedSite:
    """A `GuardedSite` for an application built here, with the limits of the configuration in service."""
    reloader = app[RELOADER]
    return GuardedSite(
        runner,
        reloader.server.address,
        port,
        limits=lambda: reloader.server,
        ssl_context=ssl_context,
        backlog=backlog,
        listener=listener,
        metrics=app[METRICS],
    )


# --- applications -------------------------------------------------------------------------------------


def build_app(
    config: Config,
    metrics: Metrics | None = None,
    engine: Engine | None = None,
    *,
    config_path: Path | None = None,
) -> web.Application:
    """The aiohttp application; the engines and their HTTP client sessions live in its cleanup context.

    With `config_path` (the file `config` was loaded from) the configuration is reloaded when it changes.
    """
    # Bodies are streamed and checked against the active `maxBodyBytes` by the handlers, not by this.
    app = web.Application(client_max_size=config.server.max_body_bytes + 1, middlewares=[_phases])
    app[METRICS] = metrics or (engine.metrics if engine is not None else Metrics())
    app[RELOADER] = ConfigReloader(config, app[METRICS], path=config_path, engine=engine)

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        await app[RELOADER].start()
        yield
        await app[RELOADER].stop()

    app.cleanup_ctx.append(engine_ctx)
    app.router.add_post("/v1/verify", _provider_handler("verify"))  # type: ignore[arg-type]
    app.router.add_post("/v1/mutate", _provider_handler("mutate"))  # type: ignore[arg-type]
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


def build_health_app(main: web.Application) -> web.Application:
    """Plain HTTP `/healthz`, `/readyz` and `/metrics` for kubelet probes and Prometheus (no client cert).

    It serves nothing else: verification stays on the mutual-TLS listener.
    """
    health = web.Application(middlewares=[_phases])
    # The same handlers, on the main application's configuration and metrics.
    health[RELOADER] = main[RELOADER]
    health[METRICS] = main[METRICS]
    health.router.add_get("/healthz", _healthz)
    health.router.add_get("/readyz", _readyz)
    health.router.add_get("/metrics", _metrics)
    return health


async def run_server(
    config: Config, *, config_path: Path | None = None, ready: Callable[[int], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM; SIGHUP reloads `config_path`. HTTPS only: `server.tls` is required."""
    if config.server.tls is None:
        raise ValueError("server.tls is required: Gatekeeper only talks to providers over HTTPS")
    reloader = CertificateReloader(config.server.tls)
    app = build_app(config, config_path=config_path)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = guarded_site(
        runner, app, port=config.server.port, ssl_context=reloader.listening, listener="provider"
    )
    await site.start()
    port = site.port
    log.info("countersign serving on https://%s:%d", config.server.address, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app[RELOADER].request_reload)
    if ready is not None:
        ready(port)
    health_runner: web.AppRunner | None = None
    if config.server.health_port is not None:
        health_runner = web.AppRunner(build_health_app(app), access_log=None, handle_signals=False)
        await health_runner.setup()
        health = guarded_site(
            health_runner, app, port=config.server.health_port, ssl_context=None, listener="health"
        )
        await health.start()
        log.info("health and metrics on http://%s:%d", config.server.address, config.server.health_port)
    watcher = asyncio.create_task(reloader.watch())
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        if health_runner is not None:
            await health_runner.cleanup()
        await runner.cleanup()
