"""The HTTPS server Gatekeeper talks to.

Endpoints: `POST /v1/verify`, `POST /v1/mutate` (ProviderRequest -> ProviderResponse), `GET /healthz`,
`GET /readyz`, `GET /metrics`. TLS 1.3 only; with a client CA configured a client certificate is mandatory
(mutual TLS, as Gatekeeper does with its webhook certificate). The certificate, key and client CA are
re-read when their files change, without a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from provider.config import Config, TLSConfig
from provider.engine import Decided, Engine, Invalid, Outcome
from provider.metrics import CONTENT_TYPE_LATEST, Metrics
from provider.protocol import ProtocolError, RequestLimits, error_response, parse_request, response_for

__all__ = ["ENGINE", "CertificateReloader", "build_app", "make_server_ssl_context", "run_server"]

log = logging.getLogger(__name__)

ENGINE = web.AppKey("engine", Engine)
CONFIG = web.AppKey("config", Config)
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
        h = hashlib.sha256()
        for f in self._files():
            try:
                h.update(f.read_bytes())
            except OSError:
                h.update(b"<missing>")
            h.update(b"\0")
        return h.hexdigest()

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
        engine = request.app[ENGINE]
        config = request.app[CONFIG]
        metrics = request.app[METRICS]
        server = config.server
        status = 200
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
            response = _json_response(response_for(keys, outcomes, api_version))
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.request_latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    return handle


def _count(metrics: Metrics, endpoint: str, outcomes: dict[str, Outcome]) -> None:
    for outcome in outcomes.values():
        if isinstance(outcome, Decided):
            allowed = endpoint == "mutate" or bool(outcome.value.get("allowed"))
            label = "allowed" if allowed else "denied"
        elif isinstance(outcome, Invalid):
            label = "invalid"
        else:
            label = "undecided"
        metrics.keys.labels(endpoint, label).inc()


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def _readiness(app: web.Application) -> web.Response:
    if app.get(ENGINE) is None:
        return web.Response(status=503, text="starting\n")
    return _json_response({"ready": True, "config": app[CONFIG].fingerprint})


def _exposition(app: web.Application) -> web.Response:
    return web.Response(body=app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _readyz(request: web.Request) -> web.Response:
    return _readiness(request.app)


async def _metrics(request: web.Request) -> web.Response:
    return _exposition(request.app)


def build_app(
    config: Config, metrics: Metrics | None = None, engine: Engine | None = None
) -> web.Application:
    """The aiohttp application; the engine and its HTTP client session live in its cleanup context."""
    app = web.Application(client_max_size=config.server.max_body_bytes + 1)
    app[CONFIG] = config
    app[METRICS] = metrics or (engine.metrics if engine is not None else Metrics())

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        owned = engine is None
        app[ENGINE] = engine if engine is not None else await Engine.create(config, app[METRICS])
        yield
        if owned:
            await app[ENGINE].close()

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

    async def readyz(request: web.Request) -> web.Response:
        return _readiness(main)

    async def metrics(request: web.Request) -> web.Response:
        return _exposition(main)

    health.router.add_get("/healthz", _healthz)
    health.router.add_get("/readyz", readyz)
    health.router.add_get("/metrics", metrics)
    return health


def _bound_port(site: web.TCPSite) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else 0


async def run_server(config: Config, *, ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM. HTTPS only: a config without `server.tls` is refused."""
    if config.server.tls is None:
        raise ValueError("server.tls is required: Gatekeeper only talks to providers over HTTPS")
    reloader = CertificateReloader(config.server.tls)
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(
        runner, config.server.address, config.server.port, ssl_context=reloader.listening, backlog=512
    )
    await site.start()
    port = _bound_port(site)
    log.info("countersign serving on https://%s:%d", config.server.address, port)
    if ready is not None:
        ready(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
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
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        if health_runner is not None:
            await health_runner.cleanup()
        await runner.cleanup()
