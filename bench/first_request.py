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
    ratify_binary,
    start_countersign,
    start_ratify,
    timed_batch,
)
from bench.peer_setup import TestBed, main_on_test_bed

__all__ = ["VARIANTS", "main"]

Starter = Callable[[TestBed, Sequence[str], Path], Running]

VARIANTS: dict[str, Starter] = {
    COUNTERSIGN: lambda bed, hosts, workdir: start_countersign(bed, hosts, workdir),
    f"{COUNTERSIGN} (warmUp: false)": lambda bed, hosts, workdir: start_countersign(
        bed, hosts, workdir, {"warmUp": False}
    ),
    RATIFY: lambda bed, hosts, workdir: start_ratify(bed, workdir),
}


def samples(bed: TestBed, runs: int, requests: int, workdir: Path) -> dict[str, list[list[float]]]:
    """Per variant, per request (1st, 2nd, ...), the wall seconds of each run."""
    hosts = [bed.registry.host]
    keys = bed.keys()
    out: dict[str, list[list[float]]] = {name: [[] for _ in range(requests)] for name in VARIANTS}
    for run in range(runs):
        names = list(VARIANTS) if run % 2 == 0 else list(VARIANTS)[::-1]
        for name in names:
            server = VARIANTS[name](bed, hosts, workdir / f"first-{run}-{names.index(name)}")
            try:
                for index in range(requests):
                    key = keys[run * requests + index]
                    wall, _ = asyncio.run(timed_batch(server, [key]))
                    out[name][index].append(wall)
            finally:
                server.stop()
    return out


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
