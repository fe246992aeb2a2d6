"""The HTTPS server Gatekeeper talks to.

Endpoints: `POST /v1/verify`, `POST /v1/mutate` (ProviderRequest -> ProviderResponse), `GET /healthz`,
`GET /readyz`, `GET /metrics`. TLS 1.3 only; with a client CA configured a client certificate is mandatory
(mutual TLS, as Gatekeeper does with its webhook certificate). The certificate, key and client CA are
re-read when their files change, without a restart.

The configuration file is reloaded too (`ConfigReloader`): when its contents change, or on SIGHUP, a new
engine is built from it and swapped in; a configuration that does not load leaves the old one in service.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from aiohttp import web

from provider.config import Config, ConfigError, TLSConfig, load_config
from provider.engine import Decided, Engine, Invalid, Outcome
from provider.metrics import CONTENT_TYPE_LATEST, Metrics
from provider.protocol import ProtocolError, RequestLimits, encode_response, error_response, parse_request

__all__ = [
    "RELOADER",
    "CertificateReloader",
    "ConfigReloader",
    "Generation",
    "build_app",
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


def _json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )


def _provider_handler(endpoint: str) -> Callable[[web.Request], object]:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        metrics = request.app[METRICS]
        status = 200
        with request.app[RELOADER].use() as generation:
            engine, server = generation.engine, generation.config.server
            try:
                body = await _read_body(request, server.max_body_bytes)
                api_version, keys = parse_request(body, RequestLimits(server.max_keys, server.max_key_bytes))
            except ProtocolError as e:
                status = 400
                response = _json_response(error_response(str(e)), status=400)
            else:
                if endpoint == "verify":
                    outcomes = await engine.verify(keys, server.verify_deadline)
                else:
                    outcomes = await engine.mutate(keys, server.mutate_deadline)
                _count(metrics, endpoint, outcomes)
                response = web.Response(
                    body=encode_response(keys, outcomes, api_version), content_type="application/json"
                )
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.request_latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    return handle


def _count(metrics: Metrics, endpoint: str, outcomes: dict[str, Outcome]) -> None:
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
    return _json_response({"ready": True, "config": current.config.fingerprint})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


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
    app = web.Application(client_max_size=config.server.max_body_bytes + 1)
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
    health = web.Application()
    # The same handlers, on the main application's configuration and metrics.
    health[RELOADER] = main[RELOADER]
    health[METRICS] = main[METRICS]
    health.router.add_get("/healthz", _healthz)
    health.router.add_get("/readyz", _readyz)
    health.router.add_get("/metrics", _metrics)
    return health


def _bound_port(site: web.TCPSite) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else 0


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
    site = web.TCPSite(
        runner, config.server.address, config.server.port, ssl_context=reloader.listening, backlog=512
    )
    await site.start()
    port = _bound_port(site)
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
        await web.TCPSite(health_runner, config.server.address, config.server.health_port).start()
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
