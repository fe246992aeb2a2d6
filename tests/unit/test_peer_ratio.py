"""bench-peers' last column says how many times better Countersign's figure is, whichever way a row counts."""

from __future__ import annotations

from bench.peer_bench import _ratio


def test_times_and_sizes_lower_is_better() -> None:
    assert _ratio(10.0, 20.0) == "2.00"  # Countersign twice as fast
    assert _ratio(20.0, 10.0) == "0.50"


def test_throughputs_higher_is_better() -> None:
    assert _ratio(20_000.0, 10_000.0, higher_is_better=True) == "2.00"
    assert _ratio(10_000.0, 20_000.0, higher_is_better=True) == "0.50"


def test_a_zero_figure_has_no_ratio() -> None:
    assert _ratio(0.0, 1.0) == "-"
    assert _ratio(1.0, 0.0, higher_is_better=True) == "-"
