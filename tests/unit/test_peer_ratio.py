"""bench-peers' last column says how many times better Countersign's figure is, whichever way a row counts;
its targets table divides Ratify's medians by what issue 14 asks for."""

from __future__ import annotations

from bench.peer_bench import COUNTERSIGN, RATIFY, Results, _ratio, parse_args, target_lines


def test_times_and_sizes_lower_is_better() -> None:
    assert _ratio(10.0, 20.0) == "2.00"  # Countersign twice as fast
    assert _ratio(20.0, 10.0) == "0.50"


def test_throughputs_higher_is_better() -> None:
    assert _ratio(20_000.0, 10_000.0, higher_is_better=True) == "2.00"
    assert _ratio(10_000.0, 20_000.0, higher_is_better=True) == "0.50"


def test_a_zero_figure_has_no_ratio() -> None:
    assert _ratio(0.0, 1.0) == "-"
    assert _ratio(1.0, 0.0, higher_is_better=True) == "-"


def test_the_targets_table_divides_ratify_by_the_factor_asked_for() -> None:
    options = parse_args(["--delay-ms", "10"])
    results = Results(
        cold={COUNTERSIGN: {10: [0.034, 0.036]}, RATIFY: {10: [0.030, 0.028]}},
        delayed={COUNTERSIGN: [0.30], RATIFY: [0.33]},
        floor={"cold10": [0.010, 0.012], "delayed": [0.26]},
        answer=[0.005, 0.004, 0.006],
    )
    lines = target_lines(results, options)
    assert lines[2] == "| cold 10 keys, 2x | 29.0 ms | 14.5 ms | 11.0 ms | 5.0 ms | -1.5 ms | 35.0 ms |"
    assert lines[3] == (
        "| cold 100 keys at +20 ms RTT, 3x | 330.0 ms | 110.0 ms | 260.0 ms | not measured | -150.0 ms "
        "| 300.0 ms |"
    )


def test_the_targets_table_leaves_out_what_was_not_measured() -> None:
    results = Results(cold={COUNTERSIGN: {10: [0.03]}, RATIFY: {10: [0.03]}})
    assert len(target_lines(results, parse_args([]))) == 2  # the header only
