"""A TCP proxy on 127.0.0.1 that delays every byte by a fixed time in each direction (a far-away registry for
``make bench-peers`` and ``make bench-trace``).

``python -m bench.delay_proxy --target HOST:PORT --delay-ms 10`` listens on a free loopback port, prints
``listening 127.0.0.1:PORT`` on stdout once it accepts connections, and forwards each connection to the
target. What is read from one side is written to the other ``delay`` seconds after it was read, in order,
so a request/response exchange takes ``2 * delay`` longer (10 ms a direction: +20 ms round-trip time),
while the bytes of one direction keep flowing (it adds latency, not a bandwidth limit). Connecting to the
target also goes through the delay: the proxy waits ``delay`` before it connects, and the client's first
bytes wait until the connection is up, as a TCP handshake across that distance would.

It runs as its own process so that its CPU time is neither the benchmark's nor a provider's. It stops on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["DelayProxy", "main"]

_CHUNK = 65536


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk written ``delay`` seconds after it was read."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                queue.put_nowait((time.monotonic() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((time.monotonic() + delay, b""))

    async def write() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(ConnectionError, OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    reading = asyncio.create_task(read())
    try:
        await write()
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)


async def _connection(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    host: str,
    port: int,
    delay: float,
) -> None:
    try:
        await asyncio.sleep(delay)  # the handshake's way there; its way back is the first reply's delay
        upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _pump(client_reader, upstream_writer, delay),
            _pump(upstream_reader, client_writer, delay),
            return_exceptions=True,
        )
    finally:
        for writer in (client_writer, upstream_writer):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def _serve(target: str, delay: float) -> None:
    host, _, port_text = target.rpartition(":")
    port = int(port_text)
    server = await asyncio.start_server(lambda r, w: _connection(r, w, host, port, delay), "127.0.0.1", 0)
    address = server.sockets[0].getsockname()
    print(f"listening {address[0]}:{address[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delay_proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to (loopback)")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="delay per direction, milliseconds")
    args = parser.parse_args(argv)
    if not 0 <= args.delay_ms <= 10_000:
        parser.error("--delay-ms must be between 0 and 10000")
    asyncio.run(_serve(args.target, args.delay_ms / 1000))
    return 0


class DelayProxy:
    """The proxy in its own process (its CPU is neither the benchmark's nor a provider's), in front of
    ``target``: ``with DelayProxy("127.0.0.1:5000", 10) as proxy: proxy.host``."""

    def __init__(self, target: str, delay_ms: float, log_file: Path | None = None) -> None:
        self.target, self.delay_ms, self.host = target, delay_ms, ""
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DelayProxy:
        log = self._log_file.open("ab") if self._log_file is not None else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.delay_proxy",
                "--target",
                self.target,
                "--delay-ms",
                str(self.delay_ms),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=Path(__file__).resolve().parents[1],
            start_new_session=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().decode().strip()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"the delay proxy did not start (it printed {line!r})")
        self.host = line.removeprefix("listening ")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        if self._process.stdout is not None:
            self._process.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
