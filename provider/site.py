"""The listeners: `GuardedSite`, an aiohttp site that bounds what a client can hold.

At most `maxConnections` connections each (more are closed at accept, before a TLS handshake); the TLS
handshake, a request's headers and idle keep-alive each bounded by a timeout (aiohttp has no header-read
timeout of its own: a client sending one byte every few seconds would otherwise hold a connection for ever).
The handlers bound a request's body themselves. Only public asyncio and aiohttp interfaces are used.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Protocol, cast

from aiohttp import web
from aiohttp.typedefs import Handler

from provider.metrics import Metrics

__all__ = ["ConnectionLimits", "GuardedSite", "track_phases"]

log = logging.getLogger(__name__)


class ConnectionLimits(Protocol):
    """The bounds a `GuardedSite` reads for each new connection (`provider.config.ServerConfig` has them)."""

    @property
    def max_connections(self) -> int: ...
    @property
    def tls_handshake_timeout(self) -> float: ...
    @property
    def header_timeout(self) -> float: ...
    @property
    def idle_timeout(self) -> float: ...


_HEADERS = "request_headers"
_BUSY = "busy"
_IDLE = "idle"
# Errors of accept(2) that say the process or the system is out of a resource: wait, then accept again.
_ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's request handler behind a deadline for each phase.

    `request_headers`: from the start of the connection (after the TLS handshake), or from the first byte
    after an idle period, until a request's handler starts (`track_phases` middleware); `busy`: while a
    handler runs (it bounds itself: body timeout, deadlines); `idle`: from a handler's end (the response is
    being written) until the next request's first byte. A deadline that passes aborts the connection.
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
async def track_phases(request: web.Request, handler: Handler) -> web.StreamResponse:
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
        limits: Callable[[], ConnectionLimits],
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

    async def _serve(self, conn: socket.socket, limits: ConnectionLimits) -> None:
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
