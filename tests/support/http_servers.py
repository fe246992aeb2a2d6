"""Small HTTP test doubles on 127.0.0.1, for what real registries cannot be made to do on demand.

* :class:`BackgroundServer` serves an aiohttp application from a thread with its own event loop, so it can
  outlive one test (module- or session-scoped fixtures) and be stopped and started again on the same port
  (an outage). The token issuer and the "CDN" that serves redirected blobs run this way.
* :class:`ServedInBackground` is the base of the test doubles that own one ``BackgroundServer`` (the token
  issuer, the hostile registry...): their address, ``start``/``stop`` and use as a context manager.
* :func:`served` serves an aiohttp application in the test's own event loop for the length of an
  ``async with`` block (a fixture's or one test's in-process double).
* :class:`Front` is a recording reverse proxy that runs in the test's own event loop, in front of a real
  registry: every request is forwarded unless the test's ``intercept`` answers it instead (a 429, a 503, a
  tampered body, a paginated referrers list...). ``Front.requests`` lists what it received.

Everything listens on 127.0.0.1 only, on a port the OS picks.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from tests.support.processes import StartStop
from tests.support.registries import LOOPBACK

__all__ = [
    "BackgroundServer",
    "Front",
    "Intercept",
    "SeenRequest",
    "ServedInBackground",
    "UpstreamResponse",
    "served",
]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class SeenRequest:
    """A request as a test double received it."""

    method: str
    path_qs: str
    headers: CIMultiDict[str]

    @classmethod
    def of(cls, request: web.Request) -> SeenRequest:
        return cls(request.method, request.path_qs, CIMultiDict(request.headers))

    @property
    def path(self) -> str:
        return self.path_qs.split("?", 1)[0]

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


def _abort_connections(runner: web.BaseRunner) -> None:
    """Drop every open connection at once. A graceful close of a TLS connection waits (up to 30 s) for the
    client's close_notify, and would leave its socket open when the loop is closed before that."""
    if runner.server is not None:
        for handler in runner.server.connections:
            if handler.transport is not None:
                handler.transport.abort()


async def _cancel_leftovers() -> None:
    """Cancel what a server's cleanup leaves: connections still in their TLS handshake (e.g. from a client
    that just refused the certificate) are not aiohttp's yet; cancelling the handshake closes them."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.sleep(0)  # the transports' scheduled connection_lost callbacks close the sockets


class BackgroundServer(StartStop):
    """An aiohttp application on 127.0.0.1, served by a daemon thread running its own event loop.

    ``app_factory`` is called at every :meth:`start` (an ``Application`` cannot be started twice). The port
    is chosen at the first start and kept by later ones, so ``stop()`` then ``start()`` is an outage.
    """

    def __init__(
        self,
        app_factory: Callable[[], web.Application],
        *,
        name: str = "test-server",
        ssl_context: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        self._factory = app_factory
        self._name = name
        self._ssl = ssl_context
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://{self.host}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        if self.running:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            runner = web.AppRunner(self._factory(), access_log=None, handle_signals=False)
            try:
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, LOOPBACK, self.port, ssl_context=self._ssl, reuse_address=True)
                loop.run_until_complete(site.start())
                self.port = runner.addresses[0][1]
            except BaseException as error:
                failure.append(error)
                try:
                    loop.run_until_complete(runner.cleanup())
                finally:
                    loop.close()
                    ready.set()
                return
            self._loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                try:
                    _abort_connections(runner)
                    loop.run_until_complete(runner.cleanup())
                    loop.run_until_complete(_cancel_leftovers())
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()

        thread = threading.Thread(target=serve, name=self._name, daemon=True)
        thread.start()
        if not ready.wait(_START_TIMEOUT):
            raise RuntimeError(f"{self._name} did not start within {_START_TIMEOUT:.0f}s")
        if failure:
            thread.join(_START_TIMEOUT)
            raise RuntimeError(f"{self._name} could not start on {self.host}: {failure[0]}") from failure[0]
        self._thread = thread
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket; idempotent."""
        thread, loop = self._thread, self._loop
        self._thread = self._loop = None
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_START_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{self._name} did not stop within {_START_TIMEOUT:.0f}s")


class ServedInBackground(StartStop):
    """A test double served by its :class:`BackgroundServer` ``_server`` (set by the subclass): where it
    listens, start/stop (both return at once when already done), and ``with`` for start ... stop."""

    _server: BackgroundServer

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (a port the OS picks) in the running event loop; yields ``host:port``.
    Cleaned up (its connections closed) at the end of the block."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, LOOPBACK, 0).start()
        yield f"{LOOPBACK}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class UpstreamResponse:
    """A complete response from the registry behind a :class:`Front` (the body read in full)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def response(
        self, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        """This response for the client, with ``body`` and ``headers`` overridden if given."""
        out = CIMultiDict((k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP)
        out.update(headers or {})
        return web.Response(status=self.status, body=self.body if body is None else body, headers=out)


#: Answers a request instead of the registry (return a response), or lets it through (return ``None``).
Intercept = Callable[["Front", web.Request], Awaitable[web.StreamResponse | None]]


class Front:
    """A recording reverse proxy on 127.0.0.1 in front of ``upstream`` (a real registry's URL).

    Use as ``async with Front(registry.url, intercept) as front:`` in a test; ``front.host`` goes into image
    references. ``intercept(front, request)`` may answer any request itself, and may call
    :meth:`fetch_upstream` to base its answer on what the registry says. Set ``ssl_context`` to serve HTTPS.
    """

    def __init__(
        self,
        upstream: str,
        intercept: Intercept | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        upstream_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.intercept = intercept
        self.requests: list[SeenRequest] = []
        self._ssl = ssl_context
        self._upstream_ssl: ssl.SSLContext | bool = upstream_ssl or True
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://{self.host}"

    def seen(self, path_contains: str = "") -> list[SeenRequest]:
        """The requests received so far whose path contains ``path_contains``."""
        return [r for r in self.requests if path_contains in r.path]

    async def fetch_upstream(self, request: web.Request, path_qs: str | None = None) -> UpstreamResponse:
        """Send ``request`` (to ``path_qs`` if given) to the registry and read the whole answer."""
        assert self._session is not None, "Front is not started"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method,
            self.upstream + (path_qs or request.path_qs),
            headers=headers,
            data=body or None,
            allow_redirects=False,
            ssl=self._upstream_ssl,
        ) as resp:
            return UpstreamResponse(resp.status, resp.headers, await resp.read())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(SeenRequest.of(request))
        if self.intercept is not None:
            answer = await self.intercept(self, request)
            if answer is not None:
                return answer
        return (await self.fetch_upstream(request)).response()

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=30))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0, ssl_context=self._ssl)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            _abort_connections(self._runner)
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
