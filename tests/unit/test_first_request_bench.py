"""bench.first_request's summary lines: each variant's first request (median, quartiles, minimum) and the
medians of the later ones, from the samples in seconds."""

from __future__ import annotations

from bench.first_request import lines


def test_each_variant_gets_its_first_request_quartiles_and_later_medians() -> None:
    results = {
        "Countersign": [[0.009, 0.008, 0.010, 0.011], [0.006, 0.007, 0.006, 0.008]],
        "Ratify": [[0.012], [0.007]],
    }
    out = lines(results)
    assert out[0].startswith("Countersign")
    assert "request 1 median   9.5 (q1   8.2, q3  10.8, min   8.0)" in out[0]
    assert "request 2   6.5" in out[0] and "[ms, 4 runs]" in out[0]
    assert "request 1 median  12.0 (q1  12.0, q3  12.0, min  12.0)" in out[1]
    assert out[-1].startswith("load ")
