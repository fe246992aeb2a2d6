"""Where a cold batch's time goes: ``python -m bench.trace_bench [--keys N] [--delay-ms D] [--trace FILE]``.

Set-up: olareg on 127.0.0.1; ``--keys`` images (one repository each), each signed by cosign v2 (key, legacy
``.sig``) and by notation (JWS, a test key); policy ``allOf [cosign, notation]``. With ``--delay-ms D`` the
engine reaches olareg through bench/delay_proxy.py (D ms each way: +2D ms per round trip).

Measured: ``--runs`` cold batches of every key (a fresh Engine each: empty caches, new connections; one
unmeasured batch first), untraced: their median wall time and the process CPU time; then one more cold
batch traced (provider/trace.py), whose critical path, waits by kind and round trips per image are printed
(bench/tracing.py) and, with ``--trace FILE``, its JSON written. `make bench` runs this at 100 keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

import provider.trace as trace
from bench.delay_proxy import DelayProxy
from bench.scenarios import require_allowed
from bench.tracing import TraceView, report
from provider.config import Config, parse_config
from provider.engine import Engine, build_verifiers
from provider.registry.cached import CachedRegistry
from provider.registry.client import RegistryClient
from tests.support.dual_signing import SIGNING_TOOLS, DualSigner, require_both
from tests.support.images import push_image
from tests.support.registries import Registry, start_olareg, write_tls_files
from tests.support.tools import ensure_tool

__all__ = ["TraceResult", "main", "sign_both", "trace_scenario"]

_BUDGET = 60.0


@dataclass(frozen=True, slots=True)
class TraceResult:
    keys: int
    delay_ms: float
    samples_ms: list[float]
    cpu_ms: list[float]
    traced_ms: float
    lines: list[str]
    export: dict[str, Any]


def sign_both(registry: Registry, signer: DualSigner, count: int, workers: int) -> list[tuple[str, str]]:
    """``count`` images, each signed by cosign v2 (legacy ``.sig``) and notation (JWS): (repository, tag)."""

    def one(index: int) -> tuple[str, str]:
        image = push_image(registry, f"bench/both-{index:03d}", "v1", seed=f"countersign-bench-both-{index}")
        signer.sign(registry, image)
        return image.repository, "v1"

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-both") as pool:
        return list(pool.map(one, range(count)))


def both_config(
    host: str,
    signer: DualSigner,
    connections: int | None = None,
    ca_file: Path | None = None,
) -> Config:
    """The bench's configuration: plain HTTP to ``host``, or HTTPS trusting ``ca_file``."""
    limits = (
        {}
        if connections is None
        else {"maxConnections": connections, "maxConnectionsPerRegistry": connections}
    )
    return parse_config(
        {
            "limits": limits,
            "registries": {host: {"insecure": True} if ca_file is None else {"caFile": str(ca_file)}},
            "verifiers": signer.verifiers(),
            "policies": require_both(),
            "cache": {"tagTTL": 3600, "verdictTTL": 3600},
        }
    )


class _KeptClient(RegistryClient):
    """A registry client that outlives the engines built on it (``--kept-connections``): what a running
    server's engine has after earlier batches, open connections (within ``limits.idleConnectionTimeout``)."""

    async def close(self) -> None:
        pass

    async def close_for_real(self) -> None:
        await super().close()


async def _engine(config: Config, kept: _KeptClient | None) -> Engine:
    if kept is None:
        return await Engine.create(config)
    registry = CachedRegistry(
        kept,
        content_bytes=config.cache.content_bytes,
        tag_ttl=config.cache.tag_ttl,
        tag_bytes=config.cache.tag_bytes,
    )
    return Engine(config, registry, build_verifiers(config))


async def _cold(
    config: Config, keys: Sequence[str], recorder: trace.Recorder | None, kept: _KeptClient | None = None
) -> tuple[float, float]:
    """One cold batch through a fresh engine (empty caches; with ``kept``, on its open connections): (wall ms
    of engine.verify, process CPU ms of it)."""
    with recorder.activate() if recorder is not None else contextlib.nullcontext():
        engine = await _engine(config, kept)
        try:
            gc.collect()
            cpu, started = time.process_time(), time.perf_counter()
            results = await engine.verify(keys, _BUDGET)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            await engine.close()
    require_allowed(keys, results)
    return wall * 1000, cpu * 1000


async def trace_scenario(
    config: Config, keys: Sequence[str], runs: int, delay_ms: float, kept_connections: bool = False
) -> TraceResult:
    kept = None
    if kept_connections:
        # created while a recorder is active, so that aiohttp's hooks (pool, connect waits) are installed;
        # untraced batches then run them too, recording nothing (a few µs per request)
        with trace.Recorder().activate():
            kept = _KeptClient(settings=config.registries, limits=config.limits, egress=config.egress)
    try:
        # unmeasured: one-off costs (imports, trust material); with `kept`, it opens the connections
        await _cold(config, keys, None, kept)
        samples, cpu = [], []
        for _ in range(runs):
            wall, used = await _cold(config, keys, None, kept)
            samples.append(wall)
            cpu.append(used)
        recorder = trace.Recorder()
        traced, _ = await _cold(config, keys, recorder, kept)
    finally:
        if kept is not None:
            await kept.close_for_real()
    export = recorder.export()
    view = TraceView(export)
    batch = max(view.of_kind("batch"), key=lambda s: s.duration)
    lines = report(view, batch, statistics.median(samples))
    return TraceResult(len(keys), delay_ms, samples, cpu, traced, lines, export)


@contextlib.contextmanager
def _maybe_proxy(registry: Registry, delay_ms: float) -> Iterator[str]:
    if delay_ms <= 0:
        yield registry.host
        return
    with DelayProxy(registry.host, delay_ms) as proxy:
        yield proxy.host


def summary_lines(result: TraceResult, tls: bool = False, kept: bool = False) -> list[str]:
    where = f"through the delay proxy (+{2 * result.delay_ms:g} ms RTT)" if result.delay_ms > 0 else "local"
    where += ", HTTPS (TLS 1.3)" if tls else ", plain HTTP"
    where += ", connections kept from the previous batch" if kept else ", new connections"
    return [
        f"cold batch of {result.keys} keys (cosign .sig + notation JWS each, allOf), {where}: "
        f"median {statistics.median(result.samples_ms):.1f} ms over {len(result.samples_ms)} runs "
        f"(min {min(result.samples_ms):.1f}, max {max(result.samples_ms):.1f}), process CPU median "
        f"{statistics.median(result.cpu_ms):.1f} ms; traced run {result.traced_ms:.1f} ms",
        *result.lines,
    ]


def run(
    keys: int,
    runs: int,
    delays: Sequence[float],
    workers: int,
    trace_file: Path | None,
    connections: int | None = None,
    tls: bool = False,
    kept_connections: bool = False,
) -> list[str]:
    for tool in ("olareg", *SIGNING_TOOLS):
        ensure_tool(tool)
    out: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="countersign-trace-") as scratch,
        DualSigner.create(Path(scratch), "bench") as signer,
    ):
        workdir = Path(scratch)

        def measure(registry: Registry, images: Sequence[tuple[str, str]]) -> None:
            for delay in delays:
                with _maybe_proxy(registry, delay) as host:
                    refs = [f"{host}/{repository}:{tag}" for repository, tag in images]
                    config = both_config(host, signer, connections, registry.ca_file)
                    result = asyncio.run(trace_scenario(config, refs, runs, delay, kept_connections))
                out.extend(summary_lines(result, registry.tls, kept_connections))
                if trace_file is not None:
                    target = trace_file if len(delays) == 1 else trace_file.with_suffix(f".{delay:g}ms.json")
                    target.write_text(json.dumps(result.export) + "\n")
                    out.append(f"trace written to {target}")

        with start_olareg(workdir / "olareg") as registry:
            started = time.perf_counter()
            images = sign_both(registry, signer, keys, workers)
            out.append(
                f"set-up: {keys} images signed by cosign and notation "
                f"in {time.perf_counter() - started:.1f} s"
            )
            if not tls:
                measure(registry, images)
        if tls:  # notation signs only over plain HTTP: the same storage, served again over HTTPS
            files = write_tls_files(trustme.CA(), workdir / "tls")
            with start_olareg(workdir / "olareg", files) as registry:
                measure(registry, images)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100, help="images in the batch")
    parser.add_argument("--runs", type=int, default=5, help="untraced cold batches measured")
    parser.add_argument(
        "--delay-ms",
        type=float,
        action="append",
        default=None,
        help="one-way delay through the proxy (repeatable; 0: direct; default: 0)",
    )
    parser.add_argument("--sign-workers", type=int, default=5)
    parser.add_argument(
        "--trace", type=Path, default=None, metavar="FILE", help="write the traced batch's JSON"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        metavar="N",
        help="limits.maxConnections and maxConnectionsPerRegistry (default: the configuration's defaults)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="the registry over HTTPS (TLS 1.3, a test CA) instead of plain HTTP",
    )
    parser.add_argument(
        "--kept-connections",
        action="store_true",
        help="every batch's fresh engine uses one registry client: connections kept from the previous batch "
        "(a running server's case)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.keys <= 1000 or not 1 <= args.runs <= 100:
        parser.error("--keys must be in [1, 1000] and --runs in [1, 100]")
    lines = run(
        args.keys,
        args.runs,
        args.delay_ms or [0.0],
        args.sign_workers,
        args.trace,
        args.connections,
        args.tls,
        args.kept_connections,
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
