"""Where a cold batch's CPU goes: ``python -m bench.cpu_profile [--keys N] [--runs R] [--out FILE]``.

The set-up of bench/trace_bench.py (olareg on 127.0.0.1; ``--keys`` images each signed by cosign v2, key,
legacy ``.sig``, and by notation, JWS; policy ``allOf [cosign, notation]``); one unmeasured cold batch,
then ``--runs`` cold batches (a fresh Engine each) unprofiled and ``--runs`` under cProfile. Printed: the
CPU per image (process user and system, and the event loop thread's own), the garbage collector's share
of it (collections and their wall time, from ``gc.callbacks``, in the unprofiled batches), and the top
functions by own time and by cumulative time (totals over the profiled images). ``--out`` keeps the
pstats file (``python -m pstats FILE``). ``--gc-threshold N`` sets the collector's generation-0 threshold
(``gc.set_threshold``) before the batches, to measure another one. The profiler's clock is the thread's
CPU time (other processes' load does not count). cProfile roughly doubles the CPU of what it profiles;
read the shares, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.scenarios import require_allowed
from bench.trace_bench import both_config, sign_both
from provider.config import Config
from provider.engine import Engine
from tests.support.dual_signing import SIGNING_TOOLS, DualSigner
from tests.support.registries import start_olareg
from tests.support.tools import ensure_tool

__all__ = ["main"]


@dataclass(frozen=True, slots=True)
class BatchCpu:
    """One cold batch's CPU seconds in `verify`: the process's user and system time, and the event loop
    thread's own (the thread every registry read and, without the pool, every verification runs on)."""

    user: float
    system: float
    loop: float
    gc_runs: tuple[int, int, int]
    gc_seconds: float


class _Collections:
    """The collector's runs by generation and their time, from `gc.callbacks`, while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.runs = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.runs[info["generation"]] += 1
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> _Collections:
        self.on, self.runs, self.seconds = True, [0, 0, 0], 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.on = False


async def _batches(
    config: Config, keys: Sequence[str], runs: int, profiler: cProfile.Profile | None, workers: int
) -> list[BatchCpu]:
    """`runs` cold batches (fresh engines, `workers` CPU pool threads), each's CPU."""
    samples: list[BatchCpu] = []
    collections = _Collections()
    gc.callbacks.append(collections)
    try:
        for _ in range(runs):
            samples.append(await _batch(config, keys, profiler, workers, collections))
    finally:
        gc.callbacks.remove(collections)
    return samples


async def _batch(
    config: Config,
    keys: Sequence[str],
    profiler: cProfile.Profile | None,
    workers: int,
    collections: _Collections,
) -> BatchCpu:
    """One cold batch (a fresh engine): its CPU and the collector's runs within it."""
    engine = await Engine.create(config, cpu_workers=workers)
    try:
        gc.collect()
        before, loop = os.times(), time.thread_time()
        if profiler is not None:
            profiler.enable()
        with collections:
            results = await engine.verify(keys, 60.0)
        if profiler is not None:
            profiler.disable()
        after, loop = os.times(), time.thread_time() - loop
    finally:
        await engine.close()
    require_allowed(keys, results)
    runs = (collections.runs[0], collections.runs[1], collections.runs[2])
    return BatchCpu(after.user - before.user, after.system - before.system, loop, runs, collections.seconds)


def _us(samples: list[BatchCpu], keys: int) -> str:
    """Medians over batches, per image."""
    per = 1e6 / keys

    def median(values: list[float]) -> float:
        return statistics.median(values) * per

    process = [s.user + s.system for s in samples]
    spread = f"{min(process) * per:.0f}..{max(process) * per:.0f}"
    return (
        f"process {median(process):.0f} us (user {median([s.user for s in samples]):.0f}, system "
        f"{median([s.system for s in samples]):.0f}; batches {spread}), "
        f"event-loop thread {median([s.loop for s in samples]):.0f} us"
    )


def _collector(samples: list[BatchCpu], keys: int) -> str:
    """The collector's runs per batch and time per image (medians over batches)."""
    runs = [statistics.median([s.gc_runs[g] for s in samples]) for g in range(3)]
    took = statistics.median([s.gc_seconds for s in samples]) * 1e6 / keys
    threshold = "/".join(str(t) for t in gc.get_threshold())
    return (
        f"collector (thresholds {threshold}): {took:.0f} us per image; per batch gen0 {runs[0]:g}, "
        f"gen1 {runs[1]:g}, gen2 {runs[2]:g} collections"
    )


def _table(stats: pstats.Stats, order: str, per: int, top: int) -> list[str]:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(order).print_stats(top)
    lines = [f"top {top} by {order} (times are totals over {per} images; divide for per image):"]
    lines += [line for line in out.getvalue().splitlines() if line.strip()][-(top + 1) :]
    return lines


def run(
    keys: int, runs: int, top: int, out_file: Path | None, workers: int = 0, gc_threshold: int | None = None
) -> list[str]:
    if gc_threshold is not None:
        gc.set_threshold(gc_threshold, *gc.get_threshold()[1:])
    for tool in ("olareg", *SIGNING_TOOLS):
        ensure_tool(tool)
    lines: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="countersign-cpu-") as scratch,
        DualSigner.create(Path(scratch), "bench") as signer,
        start_olareg(Path(scratch) / "olareg") as registry,
    ):
        images = sign_both(registry, signer, keys, 5)
        refs = [f"{registry.host}/{repository}:{tag}" for repository, tag in images]
        config = both_config(registry.host, signer)
        asyncio.run(_batches(config, refs, 1, None, workers))  # one-off costs
        plain = asyncio.run(_batches(config, refs, runs, None, workers))
        profiler = cProfile.Profile(time.thread_time)  # CPU time: the machine may be shared
        profiled = asyncio.run(_batches(config, refs, runs, profiler, workers)) if top > 0 else []
    pool = f"a CPU pool of {workers} threads" if workers > 0 else "verifier work inline"
    lines.append(f"{runs} cold batches of {keys} keys ({pool}), CPU per image (median over batches):")
    lines.append(f"  unprofiled: {_us(plain, keys)}")
    lines.append(f"  {_collector(plain, keys)}")
    if not profiled:
        return lines
    lines.append(f"  under cProfile: {_us(profiled, keys)}")
    stats = pstats.Stats(profiler)
    if out_file is not None:
        stats.dump_stats(str(out_file))
        lines.append(f"pstats written to {out_file}")
    images_done = keys * runs
    lines += _table(stats, "tottime", images_done, top)
    lines += _table(stats, "cumulative", images_done, top)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=40, help="functions listed; 0: no profile, only the CPU")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE")
    parser.add_argument(
        "--cpu-workers", type=int, default=0, help="threads of the engine's CPU pool (0: inline, the default)"
    )
    parser.add_argument(
        "--gc-threshold", type=int, default=None, metavar="N", help="the collector's generation-0 threshold"
    )
    args = parser.parse_args(argv)
    print("\n".join(run(args.keys, args.runs, args.top, args.out, args.cpu_workers, args.gc_threshold)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
