"""The reads of a cold batch and nothing else: ``python -m bench.read_floor [--keys 10,100] [--delay-ms 10]``.

What any verifier of bench-peers' images must read from the registry, done by a bare client: per image the
tag's manifest; then, at once, the referrers listing of its digest and cosign's ``sha256-<hex>.sig`` tag;
then, at once, notation's signature manifest and the cosign signature layer; then the notation envelope
blob. Six GETs in four round trips, all images at once, with no check, no verification and no answer
around them (only the JSON needed to find the next URL is parsed, and the manifest hashed for its digest).
That is a lower bound on what Countersign's cold rows can cost with the same HTTP client, and it answers
issue 14's question of whether HTTP/2 to the registry would help, by measurement:

- ``aiohttp``: the project's client (HTTP/1.1), 64 connections per registry (Countersign's default);
- ``httpx-h1``: httpx on HTTP/1.1, the same limit;
- ``httpx-h2``: httpx with h2 on HTTP/2: one TLS connection per registry, every GET a stream on it.

Each sample is a fresh client (new connections: TCP and TLS handshakes counted) in this process, after a
warm-up batch (code paths warm: generous to the floor), the clients alternating. The registry is the same
signed test bed as bench-peers', served by olareg over plain HTTP (the registry the peers' cold rows read;
HTTP/2 needs TLS there, so no ``httpx-h2`` row) and by a second olareg on the same data over TLS 1.3.
``--delay-ms D`` adds the largest batch through the delay proxy (+2D ms per round trip). `make bench-peers`
measures the ``aiohttp`` rows on plain HTTP in the same run as the two providers, beside issue 14's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import ssl
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import trustme

from bench.delay_proxy import DelayProxy
from bench.peer_setup import TestBed, main_on_test_bed
from tests.support.registries import Registry, start_registry, write_tls_files

__all__ = ["CLIENTS", "floor_samples", "main"]

_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_NOTATION = "application/vnd.cncf.notary.signature"
_PER_REGISTRY = 64
#: HTTP/2 flow-control windows the h2 client opens (the protocol's default, 64 KiB for the whole
#: connection, would hold a 100-image round trip's answers back by several round trips).
_WINDOW = 16 << 20

#: GET url -> body (raises on a status other than 200).
Get = Callable[[str, str], Awaitable[bytes]]
#: A fresh client (TLS context, connections per registry for HTTP/1.1): a context manager yielding its Get.
ClientFactory = Callable[[ssl.SSLContext | None, int], contextlib.AbstractAsyncContextManager[Get]]


@contextlib.asynccontextmanager
async def _aiohttp(context: ssl.SSLContext | None, connections: int) -> AsyncIterator[Get]:
    connector = aiohttp.TCPConnector(limit=2 * connections, limit_per_host=connections, ssl=context or False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(url: str, accept: str) -> bytes:
            async with session.get(url, headers={"Accept": accept}) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {url}: HTTP {resp.status}")
                return body

        yield get


def _httpx(http2: bool) -> ClientFactory:
    @contextlib.asynccontextmanager
    async def factory(context: ssl.SSLContext | None, connections: int) -> AsyncIterator[Get]:
        import httpx

        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        verify: ssl.SSLContext | bool = context if context is not None else False
        async with httpx.AsyncClient(http1=not http2, http2=http2, verify=verify, limits=limits) as client:

            async def get(url: str, accept: str) -> bytes:
                resp = await client.get(url, headers={"Accept": accept})
                if resp.status_code != 200:
                    raise RuntimeError(f"GET {url}: HTTP {resp.status_code}")
                if http2 and resp.http_version != "HTTP/2":
                    raise RuntimeError(f"GET {url}: {resp.http_version}, not HTTP/2")
                return resp.content

            yield get

    return factory


class _H2(asyncio.Protocol):
    """HTTP/2 with the h2 package directly on an asyncio transport: no client library around it, so the
    least CPU an HTTP/2 read can cost in Python (the protocol's framing and HPACK, done by h2 in Python)."""

    def __init__(self, authority: str) -> None:
        import h2.config
        import h2.connection

        self.authority = authority
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.transport: asyncio.Transport | None = None
        self.settings: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.streams: dict[int, tuple[bytearray, list[int], asyncio.Future[bytes]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.local_settings.initial_window_size = _WINDOW  # per stream, announced with the preface
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_WINDOW)  # the connection's window: one round trip's answers
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        import h2.events

        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged) and not self.settings.done():
                self.settings.set_result(self.h2.remote_settings.max_concurrent_streams)
            elif isinstance(event, h2.events.ResponseReceived):
                code = dict(event.headers or ()).get(b":status", b"0")
                self.streams[event.stream_id][1].append(int(code))
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id][0].extend(event.data)
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                body, codes, done = self.streams.pop(event.stream_id)
                if codes != [200]:
                    done.set_exception(RuntimeError(f"stream {event.stream_id}: HTTP {codes}"))
                else:
                    done.set_result(bytes(body))
            elif isinstance(event, h2.events.StreamReset):
                self.streams.pop(event.stream_id)[2].set_exception(RuntimeError("stream reset"))
        assert self.transport is not None
        self.transport.write(self.h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        for _, _, done in self.streams.values():
            if not done.done():
                done.set_exception(RuntimeError(f"connection lost: {exc}"))

    async def get(self, path: str, accept: str) -> bytes:
        stream = self.h2.get_next_available_stream_id()
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.streams[stream] = (bytearray(), [], done)
        headers = [(":method", "GET"), (":scheme", "https"), (":authority", self.authority), (":path", path)]
        self.h2.send_headers(stream, [*headers, ("accept", accept)], end_stream=True)
        assert self.transport is not None
        self.transport.write(self.h2.data_to_send())
        return await done


@contextlib.asynccontextmanager
async def _raw_h2(context: ssl.SSLContext | None, _connections: int) -> AsyncIterator[Get]:
    """One HTTP/2 connection, opened on the first GET (so its handshake is counted), every GET a stream."""
    if context is None:
        raise RuntimeError("HTTP/2 needs TLS here (the registry does not speak cleartext HTTP/2)")
    context.set_alpn_protocols(["h2"])
    loop = asyncio.get_running_loop()
    state: dict[str, tuple[_H2, asyncio.Semaphore]] = {}
    opening = asyncio.Lock()

    async def connection(netloc: str) -> tuple[_H2, asyncio.Semaphore]:
        async with opening:
            if netloc not in state:
                host, port = netloc.rsplit(":", 1)
                transport, protocol = await loop.create_connection(
                    lambda: _H2(netloc), host, int(port), ssl=context, server_hostname=host
                )
                ssl_object = transport.get_extra_info("ssl_object")
                if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                    raise RuntimeError(f"{netloc} did not agree to HTTP/2")
                state[netloc] = (protocol, asyncio.Semaphore(await protocol.settings))
            return state[netloc]

    async def get(url: str, accept: str) -> bytes:
        netloc, _, path = url.removeprefix("https://").partition("/")
        protocol, streams = await connection(netloc)
        async with streams:
            return await protocol.get("/" + path, accept)

    try:
        yield get
    finally:
        for protocol, _ in state.values():
            if protocol.transport is not None:
                protocol.transport.close()


CLIENTS: dict[str, ClientFactory] = {
    "aiohttp": _aiohttp,
    "httpx-h1": _httpx(False),
    "httpx-h2": _httpx(True),
    "h2": _raw_h2,
}
#: The clients that speak only HTTP/2 (no row on the plain-HTTP registry).
_HTTP2_ONLY = ("httpx-h2", "h2")


async def _read_image(get: Get, base: str, repository: str) -> int:
    """The six reads of one image; returns how many were made (a check that the bed is what it should be)."""
    root = f"{base}/v2/{repository}"
    manifest = await get(f"{root}/manifests/v1", _MANIFEST)
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    listing, cosign = await asyncio.gather(
        get(f"{root}/referrers/{digest}", "application/vnd.oci.image.index.v1+json"),
        get(f"{root}/manifests/sha256-{digest[7:]}.sig", _MANIFEST),
    )
    notation = [d for d in json.loads(listing)["manifests"] if d.get("artifactType") == _NOTATION]
    cosign_layers = json.loads(cosign)["layers"]
    if not notation or not cosign_layers:
        raise RuntimeError(f"{repository}: no notation referrer or no cosign signature layer")

    async def notation_envelope() -> None:
        signature = json.loads(await get(f"{root}/manifests/{notation[0]['digest']}", _MANIFEST))
        await get(f"{root}/blobs/{signature['layers'][0]['digest']}", "*/*")

    await asyncio.gather(notation_envelope(), get(f"{root}/blobs/{cosign_layers[0]['digest']}", "*/*"))
    return 6


@dataclass(frozen=True)
class Route:
    """Where a batch reads from: a label, the base URL, the CA to trust (None for plain HTTP), and how many
    connections an HTTP/1.1 client may open to it."""

    label: str
    base: str
    ca_file: Path | None
    connections: int


async def _batch(factory: ClientFactory, route: Route, repos: Sequence[str]) -> tuple[float, float]:
    """(wall, process CPU) seconds of one cold batch on a fresh client.

    The client and its own TLS context are made before the clock starts (Countersign makes them at start-up);
    its connections, TCP and TLS handshakes, are counted. Each client has its own context:
    httpx sets ALPN on the context it is given, and aiohttp on a shared one would then be offered HTTP/2."""
    context = _tls_context(route.ca_file) if route.ca_file is not None else None
    async with factory(context, route.connections) as get:
        wall, cpu = time.perf_counter(), time.process_time()
        reads = await asyncio.gather(*(_read_image(get, route.base, r) for r in repos))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if sum(reads) != 6 * len(repos):
        raise RuntimeError("a batch made fewer reads than it should")
    return wall, cpu


def _samples(
    route: Route, clients: Sequence[str], repos: Sequence[str], runs: int
) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}

    async def all_runs() -> None:
        for name in clients:  # warm-up: code paths and the registry's caches, not counted
            await _batch(CLIENTS[name], route, repos)
        for run in range(runs):
            for name in clients if run % 2 == 0 else clients[::-1]:
                out[name].append(await _batch(CLIENTS[name], route, repos))

    asyncio.run(all_runs())
    return out


def floor_samples(
    base: str,
    repositories: Sequence[str],
    runs: int,
    *,
    client: str = "aiohttp",
    connections: int = _PER_REGISTRY,
    ca_file: Path | None = None,
) -> list[tuple[float, float]]:
    """(wall, process CPU) seconds of ``runs`` cold batches of the reads of ``repositories`` (each tagged
    ``v1``, signed as bench-peers' test bed is) from the registry at ``base``, by a bare ``client``."""
    route = Route("", base, ca_file, connections)
    return _samples(route, [client], repositories, runs)[client]


def _line(label: str, name: str, samples: Sequence[tuple[float, float]]) -> str:
    wall = [s * 1000 for s, _ in samples]
    cpu = [c * 1000 for _, c in samples]
    return (
        f"{label:>18}  {name:<9} median {statistics.median(wall):7.1f} ms  min {min(wall):7.1f} ms  "
        f"client CPU median {statistics.median(cpu):6.1f} ms  load {os.getloadavg()[0]:.2f}"
    )


def _tls_context(ca_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


@contextlib.contextmanager
def _tls_twin(bed: TestBed, workdir: Path) -> Iterator[Registry]:
    """A second olareg over TLS 1.3 serving the bed's registry's data directory."""
    files = write_tls_files(trustme.CA(), workdir / "tls")
    twin = workdir / "olareg-tls"
    twin.mkdir()
    (twin / bed.registry.data_dir.name).symlink_to(bed.registry.data_dir, target_is_directory=True)
    with start_registry("olareg", twin, tls=files) as registry:
        yield registry


def _run(bed: TestBed, args: argparse.Namespace, workdir: Path) -> list[str]:
    lines: list[str] = []
    repos = bed.repositories()
    plain = [c for c in args.client if c not in _HTTP2_ONLY]
    with _tls_twin(bed, workdir) as tls:
        for size in args.keys:
            for route, clients in (
                (Route("plain", bed.registry.url, None, args.connections), plain),
                (Route("TLS", tls.url, tls.ca_file, args.connections), args.client),
            ):
                samples = _samples(route, clients, repos[:size], args.runs)
                lines += [_line(f"{route.label} {size}", name, samples[name]) for name in clients]
        if args.delay_ms:
            size = max(args.keys)
            for label, target, scheme, ca_file, clients in (
                ("plain", bed.registry.host, "http", None, plain),
                ("TLS", tls.host, "https", tls.ca_file, args.client),
            ):
                with DelayProxy(target, args.delay_ms, workdir / f"delay-{label}.log") as proxy:
                    route = Route(label, f"{scheme}://{proxy.host}", ca_file, args.connections)
                    samples = _samples(route, clients, repos[:size], args.runs)
                lines += [_line(f"+{2 * args.delay_ms:g}ms {size} {label}", n, samples[n]) for n in clients]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m bench.read_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=lambda v: [int(k) for k in v.split(",")], default=[10, 100])
    parser.add_argument("--runs", type=int, default=7, help="cold batches per client, route and size")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay for the largest batch")
    parser.add_argument(
        "--client",
        action="append",
        choices=list(CLIENTS),
        help="default: all but httpx-h1 (seconds per batch)",
    )
    parser.add_argument(
        "--connections", type=int, default=_PER_REGISTRY, help="per registry, HTTP/1.1 clients (default 64)"
    )
    args = parser.parse_args(argv)
    args.client = args.client or [c for c in CLIENTS if c != "httpx-h1"]
    return main_on_test_bed("bench.read_floor", max(args.keys), lambda bed, scratch: _run(bed, args, scratch))


if __name__ == "__main__":
    sys.exit(main())
