"""Summary statistics and peak RSS, kept small and explicit so the table can be read without guessing."""

from __future__ import annotations

import math
import resource
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Row",
    "Summary",
    "batch_row",
    "cpu_row",
    "nearest_rank",
    "peak_rss_mib",
    "summarize",
    "summary_row",
]


def nearest_rank(samples: Sequence[float], percentile: float) -> float:
    """The nearest-rank percentile: the smallest sample with at least ``percentile`` % of samples <= it.

    No interpolation: with fewer than 100 samples, p99 is the maximum.
    """
    if not samples:
        raise ValueError("no samples")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    ordered = sorted(samples)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """Latency samples, in seconds, reduced to what the table prints."""

    count: int
    median: float
    p99: float
    mean: float
    minimum: float
    maximum: float
    total: float


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("no samples")
    return Summary(
        count=len(samples),
        median=statistics.median(samples),
        p99=nearest_rank(samples, 99),
        mean=statistics.fmean(samples),
        minimum=min(samples),
        maximum=max(samples),
        total=math.fsum(samples),
    )


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(who).ru_maxrss / 1024


@dataclass(slots=True)
class Row:
    """One line of the table: a scenario's samples (seconds) reduced, and what else the JSON keeps."""

    scenario: str
    runs: int
    summary: Summary
    throughput: str
    peak_rss_mib: float
    details: dict[str, Any] = field(default_factory=dict)


def summary_row(scenario: str, summary: Summary, throughput: str, details: dict[str, Any]) -> Row:
    """A table row for ``summary``: one run per sample, the peak RSS taken now."""
    return Row(
        scenario=scenario,
        runs=summary.count,
        summary=summary,
        throughput=throughput,
        peak_rss_mib=peak_rss_mib(),
        details=details,
    )


def batch_row(scenario: str, samples: Sequence[float], batch: int, **details: Any) -> Row:
    """A table row for wall seconds per batch of ``batch`` images: throughput in images/s.

    ``details`` go between the rate and the samples in the JSON.
    """
    summary = summarize(samples)
    rate = batch * summary.count / summary.total
    return summary_row(
        scenario,
        summary,
        f"{rate:,.1f} images/s",
        {"batch": batch, "images_per_second": rate, **details, "samples_s": samples},
    )


def cpu_row(scenario: str, samples_ns: Sequence[int], measure: str, labels: dict[str, Any]) -> Row:
    """A table row for CPU time per operation (process time in ns per sample)."""
    summary = summarize([ns / 1e9 for ns in samples_ns])
    median_us = summary.median * 1e6
    return summary_row(
        scenario,
        summary,
        f"{median_us:,.0f} us CPU, {1e6 / median_us:,.0f}/s/core",
        {
            "measure": f"{measure} (latency_ms fields are CPU ms)",
            **labels,
            "iterations": summary.count,
            "cpu_us": {
                "median": median_us,
                "p99_nearest_rank": summary.p99 * 1e6,
                "mean": summary.mean * 1e6,
                "min": summary.minimum * 1e6,
                "max": summary.maximum * 1e6,
            },
            "verifications_per_cpu_second": 1e6 / median_us,
        },
    )
