"""Memory rows: RSS of the real server (``python -m provider.cli serve``, a subprocess) under two loads.

1. ``100k verdicts``: 100,000 distinct keys, each naming a distinct small manifest by digest (digest-pin
   policy), sent in requests of 1000 keys, two at a time, until every one is decided; the server is
   configured to keep every verdict (``maxVerdicts`` 100,000, a long TTL; ``contentBytes`` 16 MiB). The
   row's RSS is the server's ``VmRSS`` once all are cached; then every key is sent again and the server's
   verdict-cache hit counter must grow by 100,000 (proof that it really kept them).
2. ``fat manifests``: N keys (16, 64, 256), each naming a distinct valid ~3.9 MB manifest (just under the
   4 MiB manifest limit), all in one request, repeated until every key is decided; policy digest-pin and
   sbom (so referrers are looked up too), default cache and budget settings. The row's RSS is the server's
   peak (``VmHWM``) over the whole attack, a fresh server per N. No key may be allowed.

The manifests come from a registry that generates them from the repository name
(tests/support/synthetic_registry.py) on 127.0.0.1, in this process. ``python -m bench.memory_bench``
runs these rows alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench.stats import Row, summarize
from tests.support.provider_process import ProviderProcess, start_provider
from tests.support.synthetic_registry import SyntheticRegistry, provider_config

__all__ = ["MemoryBenchError", "fat_manifest_rows", "memory_rows", "verdicts_row"]

log = logging.getLogger("bench.memory")

VERDICTS = 100_000
BATCH = 1000
FAT_KEYS = (16, 64, 256)
# The verdict row measures the verdict cache: a content cache of 16 MiB (the default is 64 MiB) keeps the
# manifests behind it from filling the figure. Verdicts take ~0.45 KiB each here: 100k fit `verdictBytes`.
VERDICT_CACHE = {"contentBytes": 16 << 20}
_PASS_LIMIT = 600.0  # seconds for one scenario to get every key decided


class MemoryBenchError(RuntimeError):
    """A memory scenario could not produce a meaningful number."""


@asynccontextmanager
async def _serving(
    registry: SyntheticRegistry,
    verifiers: Sequence[str],
    cache: Mapping[str, Any],
    workdir: Path,
    server: Mapping[str, Any] | None = None,
) -> AsyncIterator[tuple[str, ProviderProcess]]:
    """``registry`` served here and a Countersign server (a subprocess) whose policy covers it; yields the
    registry's host and the server, and stops both."""
    async with registry.served() as host:
        config = provider_config(host, verifiers, cache)
        provider = await asyncio.to_thread(start_provider, config, workdir, server=server)
        try:
            yield host, provider
        finally:
            await asyncio.to_thread(provider.stop)


async def _decide_all(
    provider: ProviderProcess,
    session: aiohttp.ClientSession,
    keys: Sequence[str],
    *,
    batch: int,
    concurrency: int,
    allowed: bool | None,
) -> tuple[list[float], float, int]:
    """Send ``keys`` in batches until every one is decided; (request latencies, seconds, undecided answers).

    ``allowed`` True: every verdict must allow; False: none may; None: either.
    """
    pending = list(keys)
    latencies: list[float] = []
    undecided_answers = 0
    started = time.perf_counter()
    while pending:
        if time.perf_counter() - started > _PASS_LIMIT:
            raise MemoryBenchError(f"{len(pending)} keys still undecided after {_PASS_LIMIT:g}s")
        batches = [pending[i : i + batch] for i in range(0, len(pending), batch)]
        still: list[str] = []
        queue: asyncio.Queue[list[str]] = asyncio.Queue()
        for b in batches:
            queue.put_nowait(b)

        async def worker(queue: asyncio.Queue[list[str]], still: list[str]) -> None:
            nonlocal undecided_answers
            while not queue.empty():
                chunk = queue.get_nowait()
                t0 = time.perf_counter()
                reply = await provider.post(session, chunk)
                latencies.append(time.perf_counter() - t0)
                items = {item["key"]: item for item in reply["response"]["items"]}
                for key in chunk:
                    item = items.get(key)
                    if item is None:
                        still.append(key)
                        undecided_answers += 1
                        continue
                    value = item.get("value")
                    if not isinstance(value, dict):
                        raise MemoryBenchError(f"{key}: not a verdict: {json.dumps(item)[:300]}")
                    if allowed is not None and value.get("allowed") is not allowed:
                        raise MemoryBenchError(f"{key}: allowed is not {allowed}: {json.dumps(item)[:500]}")

        await asyncio.gather(*(worker(queue, still) for _ in range(concurrency)))
        pending = still
        if pending:
            await asyncio.sleep(0.5)  # what was left goes on in the background
    return latencies, time.perf_counter() - started, undecided_answers


def _row(scenario: str, latencies: Sequence[float], throughput: str, rss_mib: float, **details: Any) -> Row:
    return Row(
        scenario=scenario,
        runs=len(latencies),
        summary=summarize(latencies),
        throughput=throughput,
        peak_rss_mib=rss_mib,
        details={**details, "samples_s": list(latencies)},
    )


async def verdicts_row(
    workdir: Path, cache: Mapping[str, Any], count: int = VERDICTS, concurrency: int = 2
) -> Row:
    registry = SyntheticRegistry()
    cache = {"verdictTTL": 3600, "tagTTL": 3600, "maxVerdicts": count, **cache}
    async with _serving(registry, ["pinned"], cache, workdir) as (host, provider):
        keys = [registry.reference(host, "small", i) for i in range(count)]
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            rss_start = provider.rss_mib()
            latencies, seconds, undecided = await _decide_all(
                provider, session, keys, batch=BATCH, concurrency=concurrency, allowed=True
            )
            await asyncio.sleep(2.0)
            after = provider.memory_kib()
            hits_before = await provider.metric(
                session, "countersign_cache_requests_total", {"cache": "verdict", "result": "hit"}
            )
            fetched_before = registry.manifest_requests
            await _decide_all(provider, session, keys, batch=BATCH, concurrency=4, allowed=True)
            hits = (
                await provider.metric(
                    session, "countersign_cache_requests_total", {"cache": "verdict", "result": "hit"}
                )
                - hits_before
            )
            refetched = registry.manifest_requests - fetched_before
            rss_second = provider.rss_mib()
    if hits < count:
        raise MemoryBenchError(f"the verdict cache kept {hits:.0f} of {count} verdicts")
    rss = after["VmRSS"] / 1024
    log.info(
        "%d verdicts: RSS %.1f MiB (start %.1f, peak %.1f)", count, rss, rss_start, after["VmHWM"] / 1024
    )
    return _row(
        f"{count // 1000}k verdicts cached: RSS after",
        latencies,
        f"{count / seconds:,.0f} keys/s",
        rss,
        keys=count,
        keys_per_request=BATCH,
        concurrency=concurrency,
        undecided_answers=undecided,
        rss_start_mib=rss_start,
        rss_after_mib=rss,
        peak_rss_mib=after["VmHWM"] / 1024,
        rss_after_second_pass_mib=rss_second,
        verdict_hits_second_pass=hits,
        manifests_refetched_second_pass=refetched,
        cache=dict(cache),
    )


async def fat_manifest_rows(
    workdir: Path, cache: Mapping[str, Any], server: Mapping[str, Any], sizes: Sequence[int] = FAT_KEYS
) -> list[Row]:
    rows: list[Row] = []
    for n in sizes:
        registry = SyntheticRegistry()
        serving = _serving(registry, ["pinned", "sbom"], cache, workdir / f"fat-{n}", server)
        async with serving as (host, provider):
            keys = [registry.reference(host, "fat", i) for i in range(n)]
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                rss_start = provider.rss_mib()
                latencies, seconds, undecided = await _decide_all(
                    provider, session, keys, batch=BATCH, concurrency=1, allowed=False
                )
                await asyncio.sleep(1.0)
                memory = provider.memory_kib()
        peak = memory["VmHWM"] / 1024
        log.info("fat manifests x%d: peak RSS %.1f MiB, after %.1f", n, peak, memory["VmRSS"] / 1024)
        rows.append(
            _row(
                f"fat manifests, {n} keys: peak RSS",
                latencies,
                f"{n / seconds:,.1f} keys/s decided",
                peak,
                keys=n,
                manifest_bytes=len(registry.manifest("fat", 0)),
                manifests_served=registry.manifest_requests,
                requests=len(latencies),
                undecided_answers=undecided,
                seconds_to_decide_all=seconds,
                rss_start_mib=rss_start,
                rss_after_mib=memory["VmRSS"] / 1024,
                peak_rss_mib=peak,
            )
        )
    return rows


async def memory_rows(
    workdir: Path,
    *,
    verdicts: int = VERDICTS,
    fat_sizes: Sequence[int] = FAT_KEYS,
    verdict_cache: Mapping[str, Any] | None = None,
    fat_cache: Mapping[str, Any] | None = None,
    fat_server: Mapping[str, Any] | None = None,
    concurrency: int = 2,
) -> list[Row]:
    if verdict_cache is None:
        verdict_cache = VERDICT_CACHE
    rows = (
        [await verdicts_row(workdir / "verdicts", verdict_cache, verdicts, concurrency)] if verdicts else []
    )
    rows += await fat_manifest_rows(workdir, fat_cache or {}, fat_server or {}, fat_sizes)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--verdicts", type=int, default=VERDICTS, help="distinct verdicts (0: skip the row)")
    parser.add_argument("--fat", type=int, nargs="*", default=list(FAT_KEYS), help="key counts of fat rows")
    parser.add_argument("--verdict-cache", type=json.loads, default=None, help="cache section (JSON)")
    parser.add_argument("--fat-cache", type=json.loads, default=None, help="cache section (JSON)")
    parser.add_argument("--fat-server", type=json.loads, default=None, help="server section (JSON)")
    parser.add_argument("--concurrency", type=int, default=2, help="requests at once in the verdicts row")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="countersign-membench-") as scratch:
        try:
            rows = asyncio.run(
                memory_rows(
                    Path(scratch),
                    verdicts=args.verdicts,
                    fat_sizes=args.fat,
                    verdict_cache=args.verdict_cache,
                    fat_cache=args.fat_cache,
                    fat_server=args.fat_server,
                    concurrency=args.concurrency,
                )
            )
        except MemoryBenchError as error:
            print(f"bench: FAILED: {error}", file=sys.stderr)
            return 1
    for row in rows:
        median, p99 = row.summary.median * 1000, row.summary.p99 * 1000
        print(
            f"{row.scenario:<36}{row.runs:>6}{median:>11.1f}{p99:>10.1f}"
            f"   {row.throughput:<24}{row.peak_rss_mib:>10.1f} MiB"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps([{"scenario": r.scenario, **r.details} for r in rows], indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
