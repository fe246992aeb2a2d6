"""The CPU floor of a cold batch's HTTP on this machine: ``python -m bench.http_floor [--requests N]``.

A cold image costs Countersign ~7 registry exchanges (tag, referrers, `.sig`, `.att`, notation manifest,
two blobs). Whatever Countersign does around them, each costs at least what aiohttp (the HTTP client the
project uses) spends on one GET, and each connection opened at least what aiohttp spends opening one. This
measures both against olareg on 127.0.0.1 (a tiny manifest, plain HTTP, so the registry's own CPU is not
counted: it is another process), and Countersign's registry client on the same GET, then prints the floor
they put under bench-peers' cold rows (docs/performance.md, "The floor").

Measured (process CPU, `time.process_time`): ``--requests`` GETs, ``--concurrency`` at a time, on kept
connections (a warm-up round first); the same number on a connector that closes each connection after its
request (a new TCP connection per GET: the difference, per GET, is a connection's cost); and
`RegistryClient.get_manifest` by digest on kept connections (checked: digest, size, the manifest's
structure). Each measurement is repeated ``--rounds`` times; the median is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiohttp

from provider.config import parse_config
from provider.registry.client import RegistryClient
from tests.support.images import push_image
from tests.support.registries import Registry, start_olareg
from tests.support.tools import ToolNotFoundError, ensure_tool
from verifiers.reference import parse_reference

__all__ = ["main"]

#: bench-peers' cold scenarios: (keys, connections opened), the connections as the traces count them
#: (a 10-key batch opens ~26; a 100-key batch the per-registry limit, 64 by default).
_SCENARIOS = ((1, 3), (10, 26), (100, 64))
_EXCHANGES_PER_IMAGE = 7
_ACCEPT = "application/vnd.oci.image.manifest.v1+json"


async def _cpu_per_call(calls: int, concurrency: int, one: Callable[[], Awaitable[None]]) -> float:
    """Process CPU seconds per call of `one`, `calls` of them, `concurrency` at a time."""
    limit = asyncio.Semaphore(concurrency)

    async def bounded() -> None:
        async with limit:
            await one()

    started = time.process_time()
    await asyncio.gather(*(bounded() for _ in range(calls)))
    return (time.process_time() - started) / calls


async def _raw(url: str, calls: int, concurrency: int, kept: bool) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=not kept)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.get(url, headers={"Accept": _ACCEPT}) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {url}: HTTP {resp.status}")

        await _cpu_per_call(concurrency, concurrency, one)  # connections opened, code paths warm
        return await _cpu_per_call(calls, concurrency, one)


async def _client(registry: Registry, repository: str, calls: int, concurrency: int) -> float:
    config = parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"pin": {"type": "digest-pin"}},
            "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pin"]}],
        }
    )
    client = RegistryClient(settings=config.registries, limits=config.limits, egress=config.egress)
    try:
        ref = parse_reference(f"{registry.host}/{repository}:v1")
        digest = (await client.get_manifest(ref)).digest

        async def one() -> None:
            await client.get_manifest(ref, digest)

        await _cpu_per_call(concurrency, concurrency, one)
        return await _cpu_per_call(calls, concurrency, one)
    finally:
        await client.close()


async def _measure(
    registry: Registry, repository: str, digest: str, args: argparse.Namespace
) -> dict[str, float]:
    url = f"{registry.url}/v2/{repository}/manifests/{digest}"
    samples: dict[str, list[float]] = {"kept": [], "new": [], "client": []}
    for _ in range(args.rounds):
        samples["kept"].append(await _raw(url, args.requests, args.concurrency, kept=True))
        samples["new"].append(await _raw(url, args.requests, args.concurrency, kept=False))
        samples["client"].append(await _client(registry, repository, args.requests, args.concurrency))
    return {name: statistics.median(values) for name, values in samples.items()}


def report(figures: dict[str, float]) -> list[str]:
    kept, new, client = figures["kept"], figures["new"], figures["client"]
    connection = max(new - kept, 0.0)
    us = 1e6
    lines = [
        "| what | CPU |",
        "|---|---|",
        f"| aiohttp GET on a kept connection (tiny manifest) | {kept * us:.0f} us |",
        f"| aiohttp GET on a new connection (TCP connect included) | {new * us:.0f} us |",
        f"| so a new connection, beyond its GET | {connection * us:.0f} us |",
        f"| Countersign's `RegistryClient.get_manifest` (kept connection, checked) | {client * us:.0f} us |",
        "",
        f"The floor of a cold batch's HTTP alone ({_EXCHANGES_PER_IMAGE} exchanges per image, aiohttp's cost "
        "with nothing of Countersign's around it; one event loop, so one core):",
        "",
        "| cold keys | exchanges | connections | HTTP floor | with Countersign's client |",
        "|---|---|---|---|---|",
    ]
    for keys, connections in _SCENARIOS:
        exchanges = keys * _EXCHANGES_PER_IMAGE
        floor = exchanges * kept + connections * connection
        ours = exchanges * client + connections * connection
        lines.append(
            f"| {keys} | {exchanges} | {connections} | {floor * 1000:.1f} ms | {ours * 1000:.1f} ms |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="GETs per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="GETs in flight at once")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (the median is printed)")
    args = parser.parse_args(argv)
    try:
        ensure_tool("olareg")
    except ToolNotFoundError as error:
        print(f"http_floor: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="countersign-floor-") as scratch:
        with start_olareg(Path(scratch) / "olareg") as registry:
            image = push_image(registry, "floor/app", "v1", seed="countersign-http-floor")
            figures = asyncio.run(_measure(registry, image.repository, image.digest, args))
    print("\n".join(report(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
