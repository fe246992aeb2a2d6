"""The HTTPS server Gatekeeper talks to: the aiohttp applications, their routes and handlers.

Endpoints: `POST /v1/verify`, `POST /v1/mutate` (ProviderRequest -> ProviderResponse), `GET /healthz`,
`GET /readyz`, `GET /metrics`. TLS 1.3 only; with a client CA configured a client certificate is mandatory
(mutual TLS, as Gatekeeper does with its webhook certificate).

What the server is made of, each in its own module: the TLS context and its certificate reloaded when the
files change (provider/tls.py), the configuration reloaded when its file changes or on SIGHUP
(provider/reload.py), and the listeners, `GuardedSite`s bounding connections and their phases
(provider/site.py). This module wires them: `build_app`, `build_health_app`, `run_server`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from provider import heap
from provider.config import Config
from provider.engine import Engine
from provider.metrics import CONTENT_TYPE_LATEST, KEY_OUTCOMES, Metrics
from provider.outcome import Decided, Invalid, Outcome
from provider.protocol import (
    ProtocolError,
    RequestLimits,
    encode_outcomes,
    encode_response,
    error_response,
    is_well_formed,
    parse_request,
)
from provider.reload import ConfigReloader, Generation
from provider.site import GuardedSite, track_phases
from provider.tls import CertificateReloader

__all__ = [
    "METRICS",
    "RELOADER",
    "build_app",
    "build_health_app",
    "guarded_site",
    "run_server",
]

log = logging.getLogger(__name__)

METRICS = web.AppKey("metrics", Metrics)
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
        metrics.answered(endpoint, status, time.perf_counter() - started)
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
    counts = dict.fromkeys(KEY_OUTCOMES, 0)
    counts["invalid"] = undecodable
    for outcome in outcomes.values():
        if isinstance(outcome, Decided):
            counts["allowed" if endpoint == "mutate" or outcome.allowed else "denied"] += 1
        elif isinstance(outcome, Invalid):
            counts["invalid"] += 1
        else:
            counts["undecided"] += 1
    for label, count in counts.items():
        if count:
            metrics.count_keys(endpoint, label, count)


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
    kubeconfig: Path | None = None,
) -> web.Application:
    """The aiohttp application; the engines and their HTTP client sessions live in its cleanup context.

    With `config_path` (the file `config` was loaded from) the configuration is reloaded when it changes.
    With `kubernetes.enabled` (and a file) the configuration is the file plus the countersign.dev
    resources (`provider.kube.source`): not ready until their first composition serves.
    """
    # Bodies are streamed and checked against the active `maxBodyBytes` by the handlers, not by this.
    app = web.Application(client_max_size=config.server.max_body_bytes + 1, middlewares=[track_phases])
    app[METRICS] = metrics or (engine.metrics if engine is not None else Metrics())
    source = None
    if config.kubernetes.enabled and config_path is not None and engine is None:
        from provider.kube.source import KubeSource  # imports the kubernetes client: only when used

        source = KubeSource(config, config_path, app[METRICS], kubeconfig=kubeconfig)
        app[RELOADER] = ConfigReloader(config, app[METRICS], path=config_path, loader=source.load)
    else:
        app[RELOADER] = ConfigReloader(config, app[METRICS], path=config_path, engine=engine)

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        await app[RELOADER].start()
        try:
            if source is not None:
                await source.start(app[RELOADER])
            yield
        finally:
            if source is not None:
                await source.stop()
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
    health = web.Application(middlewares=[track_phases])
    # The same handlers, on the main application's configuration and metrics.
    health[RELOADER] = main[RELOADER]
    health[METRICS] = main[METRICS]
    health.router.add_get("/healthz", _healthz)
    health.router.add_get("/readyz", _readyz)
    health.router.add_get("/metrics", _metrics)
    return health


async def run_server(
    config: Config,
    *,
    config_path: Path | None = None,
    ready: Callable[[int], None] | None = None,
    kubeconfig: Path | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; SIGHUP reloads `config_path`. HTTPS only: `server.tls` is required."""
    if config.server.tls is None:
        raise ValueError("server.tls is required: Gatekeeper only talks to providers over HTTPS")
    reloader = CertificateReloader(config.server.tls)
    if config.server.warm_up:
        from provider.warmup import kinds_for, warm_up  # it builds its own application with build_app

        (await warm_up(kinds=kinds_for(config))).log()
    app = build_app(config, config_path=config_path, kubeconfig=kubeconfig)
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
    heap.loosen()  # young collections every 10,000 net allocations, not 700 (provider/heap.py)
    heap.settle()  # what start-up built leaves the collector's walks (provider/heap.py)
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
