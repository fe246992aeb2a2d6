"""The first requests of fresh processes: ``python -m bench.first_request [--runs N] [--requests K]``.

bench-peers' "cold, fresh process, 1 key" row, looked at closer: each run starts a fresh process of each
variant (in alternating order) and sends it ``K`` one-key requests in turn, each on a new TLS connection,
each of a different image of the bed (so every one is verified cold; only the process is warm after the
first). Variants: Countersign, Countersign with ``server.warmUp: false`` (no start-up warm-up,
provider/warmup), and Ratify. Printed per variant: each request's median, and the first's quartiles and
minimum, in milliseconds; the gap between the first request and the later ones is what a process pays
once.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.peer_bench import (
    COUNTERSIGN,
    RATIFY,
    Running,
    fresh_processes,
    ratify_binary,
    start,
    start_countersign,
    timed_batch,
)
from bench.peer_setup import TestBed, main_on_test_bed

__all__ = ["main", "variants"]


def variants(bed: TestBed) -> dict[str, Callable[[Path], Running]]:
    """Countersign, Countersign without its start-up warm-up, and Ratify, on ``bed``: starters by name."""
    hosts = [bed.registry.host]
    return {
        COUNTERSIGN: functools.partial(start_countersign, bed, hosts),
        f"{COUNTERSIGN} (warmUp: false)": functools.partial(
            start_countersign, bed, hosts, server={"warmUp": False}
        ),
        RATIFY: functools.partial(start, RATIFY, bed, hosts),
    }


def samples(bed: TestBed, runs: int, requests: int, workdir: Path) -> dict[str, list[list[float]]]:
    """Per variant, per request (1st, 2nd, ...), the wall seconds of each run."""
    keys = bed.keys()

    def walls(server: Running, run: int) -> list[float]:
        return [asyncio.run(timed_batch(server, [keys[run * requests + i]]))[0] for i in range(requests)]

    per_run = fresh_processes(variants(bed), runs, workdir / "first", walls)
    return {
        name: [list(request) for request in zip(*measured, strict=True)] for name, measured in per_run.items()
    }


def lines(results: dict[str, list[list[float]]]) -> list[str]:
    out = []
    for name, per_request in results.items():
        first = sorted(w * 1000 for w in per_request[0])
        q1, median, q3 = statistics.quantiles(first, n=4) if len(first) > 1 else (first[0],) * 3
        later = "  ".join(
            f"request {i + 1} {statistics.median(w) * 1000:5.1f}" for i, w in enumerate(per_request[1:], 1)
        )
        out.append(
            f"{name:<28} request 1 median {median:5.1f} (q1 {q1:5.1f}, q3 {q3:5.1f}, min {first[0]:5.1f})  "
            f"{later}  [ms, {len(first)} runs]"
        )
    out.append(f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    parser = argparse.ArgumentParser(
        prog="python -m bench.first_request", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=20, help="fresh processes per variant")
    parser.add_argument("--requests", type=int, default=3, help="one-key requests per process")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.requests < 1:
        parser.error("--runs and --requests must be at least 1")
    return main_on_test_bed(
        "bench.first_request",
        args.runs * args.requests,
        lambda bed, scratch: lines(samples(bed, args.runs, args.requests, scratch)),
        ratify_binary,
    )


if __name__ == "__main__":
    sys.exit(main())
