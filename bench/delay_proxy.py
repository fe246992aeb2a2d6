"""A TCP proxy on 127.0.0.1 that delays every byte by a fixed time in each direction (a far-away registry).

``python -m bench.delay_proxy --target 127.0.0.1:5000 --delay-ms 10`` listens on a free port, prints it on
its first stdout line, and forwards every connection to the target, each chunk delivered ``delay-ms`` after
it was read (order kept, no bandwidth limit): ``delay-ms`` 10 adds 20 ms to every round trip. Run it in its
own process (``DelayProxy``), so its work does not share the measured process's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections.abc import Sequence
from types import TracebackType

__all__ = ["DelayProxy", "main"]

_LOOPBACK = "127.0.0.1"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            pause = due - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            chunk = await reader.read(64 * 1024)
            queue.put_nowait((loop.time() + delay, chunk))
            if not chunk:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()


async def _serve(target_host: str, target_port: int, delay: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.sleep(delay * 2)  # the TCP handshake's round trip
        try:
            await asyncio.gather(
                _pipe(client_r, upstream_w, delay), _pipe(upstream_r, client_w, delay), return_exceptions=True
            )
        finally:
            client_w.close()
            upstream_w.close()

    server = await asyncio.start_server(handle, _LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delay_proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, required=True, help="delay added in each direction")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    asyncio.run(_serve(host, int(port), args.delay_ms / 1000))
    return 0


class DelayProxy:
    """The proxy as a subprocess: ``with DelayProxy("127.0.0.1:5000", 10) as proxy: proxy.host``."""

    def __init__(self, target: str, delay_ms: float) -> None:
        self.target = target
        self.delay_ms = delay_ms
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    @property
    def host(self) -> str:
        return f"{_LOOPBACK}:{self.port}"

    def __enter__(self) -> DelayProxy:
        args = ["--target", self.target, "--delay-ms", str(self.delay_ms)]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.delay_proxy", *args], stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.strip().isdigit():
            self.__exit__(None, None, None)
            raise RuntimeError(f"the delay proxy did not start (it printed {line!r})")
        self.port = int(line)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            if self._process.stdout is not None:
                self._process.stdout.close()


if __name__ == "__main__":
    raise SystemExit(main())
