"""bench-peers' cold rows alone: ``python -m bench.cold [--keys 1,10,100] [--runs N] [--peer NAME]``.

The same test bed, servers and measurement as `make bench-peers` (bench/peer_bench.py: a fresh process per
sample, one request of N keys on a new TLS connection, every key allowed), without the long-lived scenarios:
a quick before/after of a change to the cold path. ``--delay-ms D`` adds the largest batch through the delay
proxy (+2D ms per round trip); ``--peer`` limits the run to one provider (repeatable; default both).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.delay_proxy import DelayProxy
from bench.peer_bench import PEERS, RATIFY, cold_samples, ratify_binary
from bench.peer_setup import TestBed, main_on_test_bed

__all__ = ["main"]


def _line(label: str, name: str, samples: list[tuple[float, float]]) -> str:
    wall = [s * 1000 for s, _ in samples]
    cpu = [c * 1000 for _, c in samples]
    return (
        f"{label:>12}  {name:<12} median {statistics.median(wall):7.1f} ms  min {min(wall):7.1f} ms  "
        f"server CPU median {statistics.median(cpu):5.0f} ms  load {os.getloadavg()[0]:.2f}"
    )


def _run(bed: TestBed, hosts: list[str], args: argparse.Namespace, workdir: Path) -> list[str]:
    lines = []
    for size in args.keys:
        samples = cold_samples(bed, bed.keys()[:size], hosts, args.runs, workdir, f"cold{size}", args.peer)
        lines += [_line(f"cold {size}", name, samples[name]) for name in args.peer]
    if args.delay_ms:
        with DelayProxy(hosts[0], args.delay_ms, workdir / "delay-proxy.log") as proxy:
            keys = bed.keys(proxy.host)[: max(args.keys)]
            samples = cold_samples(bed, keys, [*hosts, proxy.host], args.runs, workdir, "delayed", args.peer)
        label = f"+{2 * args.delay_ms:g}ms {max(args.keys)}"
        lines += [_line(label, name, samples[name]) for name in args.peer]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="python -m bench.cold", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=lambda v: [int(k) for k in v.split(",")], default=[1, 10, 100])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per provider and size")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay for the largest batch")
    parser.add_argument("--peer", action="append", choices=[p.lower() for p in PEERS])
    args = parser.parse_args(argv)
    args.peer = [p for p in PEERS if args.peer is None or p.lower() in args.peer]
    check = ratify_binary if RATIFY in args.peer else lambda: None
    return main_on_test_bed(
        "bench.cold",
        max(args.keys),
        lambda bed, scratch: _run(bed, [bed.registry.host], args, scratch),
        check,
    )


if __name__ == "__main__":
    sys.exit(main())
