"""The series every provider has are at zero from the start: a rate over them, or an alert on their
absence, needs no first request (and the first request does not pay for making them)."""

from __future__ import annotations

import gc
import weakref

from provider.config import parse_config
from provider.engine import Engine
from provider.metrics import Metrics


def test_a_fresh_provider_renders_its_request_key_and_cache_series_at_zero() -> None:
    text = Metrics().render().decode()
    for endpoint in ("verify", "mutate"):
        assert f'countersign_requests_total{{endpoint="{endpoint}",status="200"}} 0.0' in text
        assert f'countersign_request_duration_seconds_count{{endpoint="{endpoint}"}} 0.0' in text
        for outcome in ("allowed", "denied", "invalid", "undecided"):
            assert f'countersign_keys_total{{endpoint="{endpoint}",outcome="{outcome}"}} 0.0' in text
    for cache in ("verdict", "verdict_digest", "tag", "content"):
        for result in ("hit", "miss"):
            assert f'countersign_cache_requests_total{{cache="{cache}",result="{result}"}} 0.0' in text


def test_counting_goes_to_the_series_made_at_the_start() -> None:
    metrics = Metrics()
    metrics.answered("verify", 200, 0.01)
    metrics.count_keys("verify", "allowed", 3)
    metrics.cache_lookup("tag", hit=False)
    text = metrics.render().decode()
    assert 'countersign_requests_total{endpoint="verify",status="200"} 1.0' in text
    assert 'countersign_keys_total{endpoint="verify",outcome="allowed"} 3.0' in text
    assert 'countersign_cache_requests_total{cache="tag",result="miss"} 1.0' in text
    assert 'countersign_requests_total{endpoint="mutate",status="200"} 0.0' in text


def test_a_verifier_has_its_three_series_from_the_start_and_counts_into_them() -> None:
    metrics = Metrics()
    metrics.add_verifier("cosign", "cosign")
    metrics.verifier_result("cosign", "cosign", "failed")
    text = metrics.render().decode()
    series = 'countersign_verifier_results_total{{outcome="{}",type="cosign",verifier="cosign"}}'
    assert f"{series.format('passed')} 0.0" in text
    assert f"{series.format('failed')} 1.0" in text
    assert f"{series.format('undecided')} 0.0" in text


async def test_the_memory_gauges_keep_no_engine_alive() -> None:
    # A Metrics can outlive its engine (the warm-up's, kept by aiohttp's cache of its application).
    metrics = Metrics()
    config = parse_config(
        {
            "verifiers": {"pinned": {"type": "digest-pin"}},
            "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pinned"]}],
        }
    )
    engine = await Engine.create(config, metrics)
    gone = weakref.ref(engine)
    await engine.close()
    del engine
    gc.collect()
    assert gone() is None
    assert 'countersign_memory_bytes{pool="verdict"} 0.0' in metrics.render().decode()
