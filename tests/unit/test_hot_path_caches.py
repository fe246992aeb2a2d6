"""The per-request caches of the hot path give the answers they replace.

`origin` (called several times per request) remembers the origin of `http(s)://netloc` prefixes; the
egress policy remembers `check_registry`'s outcome per registry. Both must answer exactly as the parse
they skip, refusals and errors included, and stay bounded (keys name arbitrary hosts).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from provider.metrics import MAX_REGISTRY_LABELS, Metrics
from provider.registry import egress
from provider.registry.egress import EgressPolicy, EgressRefused
from provider.registry.settings import origin
from verifiers import reference
from verifiers.reference import ReferenceError, parse_key, parse_reference

URLS = [
    "http://127.0.0.1:5000/v2/app/manifests/sha256:" + "a" * 64,
    "https://Registry.Example.COM/v2/",
    "https://registry.example.com",
    "http://h?x=1",
    "http://h#fragment",
    "http://user:pass@h:8080/v2/",
    "http://[::1]:5000/v2/x",
    "https://[2001:db8::1]/v2/",
    "http://h:/v2/",
    "http://h:0/",
    "http://ev\til.example/v2/",
    "http://tab.example/v2/\tafter",
    "http://nl.example\n/v2/",
    " http://padded.example/v2/",
    "HTTP://UPPER.example/v2/",
    "ftp://other.example/x",
    "http://ünïcode.example/v2/",
    "http://a.example@b.example/x",
    "http://a.example\\@b.example/x",
]


def _reference(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
    return parts.scheme, (parts.hostname or "").lower(), port


@pytest.mark.parametrize("url", URLS)
def test_origin_answers_as_urlsplit_does(url: str) -> None:
    for _ in range(2):  # the second call is served from the cache
        assert origin(url) == _reference(url)


@pytest.mark.parametrize("url", ["http://h:99999/v2/", "https://h:port/v2/", "http://[::1/v2/"])
def test_origin_raises_as_urlsplit_does_every_time(url: str) -> None:
    with pytest.raises(ValueError):
        _reference(url)
    for _ in range(2):
        with pytest.raises(ValueError):
            origin(url)


def test_check_registry_is_remembered_with_its_refusal() -> None:
    policy = EgressPolicy(hosts=("*.example.com",))
    policy.check_registry("reg.example.com")  # allowed, twice
    policy.check_registry("reg.example.com")
    messages = []
    for _ in range(2):
        with pytest.raises(EgressRefused) as refused:
            policy.check_registry("reg.elsewhere.org:5000")
        messages.append(str(refused.value))
    assert messages[0] == messages[1]
    assert "reg.elsewhere.org" in messages[0] and "not allowed by the egress policy" in messages[0]
    # An address literal the built-in rules refuse (loopback) is refused from the cache as well.
    default = EgressPolicy()
    for _ in range(2):
        with pytest.raises(EgressRefused, match=r"127\.0\.0\.1"):
            default.check_registry("127.0.0.1:5000", insecure=True)
    trusted = default.with_trusted([("127.0.0.1:5000", True)])
    trusted.check_registry("127.0.0.1:5000", insecure=True)  # a new policy: its own answers


def test_the_registry_check_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egress, "_MAX_REGISTRY_CHECKS", 8)
    policy = EgressPolicy()
    for i in range(50):
        policy.check_registry(f"r{i}.example.com")
        assert policy._registry_refusal.cache_info().currsize <= 8
    assert policy == EgressPolicy() and hash(policy) == hash(EgressPolicy())  # the cache is not identity


def _sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_remembered_metric_children_count_as_the_labelled_counters_do() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.observe_registry("reg.example.com", "GET", "200")
    metrics.observe_registry("reg.example.com", "GET", "404")
    for hit in (True, True, False):
        metrics.cache_lookup("manifest", hit)
    requests = "countersign_registry_requests_total"
    assert _sample(metrics, requests, {"registry": "reg.example.com", "method": "GET", "status": "200"}) == 3
    assert _sample(metrics, requests, {"registry": "reg.example.com", "method": "GET", "status": "404"}) == 1
    assert _sample(metrics, "countersign_cache_requests_total", {"cache": "manifest", "result": "hit"}) == 2
    assert _sample(metrics, "countersign_cache_requests_total", {"cache": "manifest", "result": "miss"}) == 1
    # Past the cap, registries are counted as "other", remembered children or not.
    for i in range(MAX_REGISTRY_LABELS + 5):
        metrics.observe_registry(f"r{i}.example.com", "GET", "200")
    other = {"registry": "other", "method": "GET", "status": "200"}
    assert _sample(metrics, requests, other) == 6  # reg.example.com took one of the labels
    assert len(metrics._request_counters) == MAX_REGISTRY_LABELS + 2
    for _ in range(2):
        metrics.answered("verify", 200, 0.003)
    metrics.answered("verify", 400, 0.2)
    metrics.count_keys("verify", "allowed", 7)
    metrics.count_keys("verify", "allowed")
    metrics.count_keys("mutate", "undecided", 2)
    status = "countersign_requests_total"
    assert _sample(metrics, status, {"endpoint": "verify", "status": "200"}) == 2
    assert _sample(metrics, status, {"endpoint": "verify", "status": "400"}) == 1
    latency = "countersign_request_duration_seconds"
    assert _sample(metrics, f"{latency}_count", {"endpoint": "verify"}) == 3
    assert _sample(metrics, f"{latency}_sum", {"endpoint": "verify"}) == pytest.approx(0.206)
    keys = "countersign_keys_total"
    assert _sample(metrics, keys, {"endpoint": "verify", "outcome": "allowed"}) == 8
    assert _sample(metrics, keys, {"endpoint": "mutate", "outcome": "undecided"}) == 2


# Every code point class the key parser's white-space check meets: ASCII controls, the separators and the
# Unicode spaces (str.isspace is true for all of U+001C..U+001F, U+0085, U+00A0, U+1680, U+2000..U+200A,
# U+2028, U+2029, U+202F, U+205F, U+3000), and look-alikes that are not space (U+200B, U+FEFF).
@pytest.mark.parametrize(
    "code", [*range(0x00, 0x100), 0x1680, *range(0x2000, 0x2030), 0x205F, 0x3000, 0xFEFF]
)
def test_the_white_space_check_is_str_isspace(code: int) -> None:
    char = chr(code)
    text = f"registry.example.com/app{char}x:v1"
    if char.isspace():
        with pytest.raises(ReferenceError, match="white space"):
            parse_reference(text)
    else:  # refused for another reason or accepted: never for white space
        try:
            parse_reference(text)
        except ReferenceError as e:
            assert "white space" not in str(e)


def test_parsed_keys_are_remembered_within_bounds() -> None:
    reference._parse_key_cached.cache_clear()
    key = "[team-a]registry.example.com/app:v1"
    first = parse_key(key)
    assert parse_key(key) is first  # remembered: Key is immutable
    assert first == reference._parse_key(key)  # and equal to a fresh parse
    with pytest.raises(ReferenceError):
        parse_key("[team-a]registry.example.com/App:v1")
    with pytest.raises(ReferenceError):  # an invalid key raises every time (nothing remembered for it)
        parse_key("[team-a]registry.example.com/App:v1")
    secrets = [f"pull-secret-{i:02d}-" + "x" * 60 for i in range(16)]
    long_key = json.dumps(
        {
            "v": 1,
            "image": "registry.example.com/app:v1",
            "namespace": "team-a",
            "serviceAccount": "default",
            "imagePullSecrets": secrets,
        }
    )
    assert len(long_key) > reference._CACHED_KEY_CHARS
    assert parse_key(long_key) is not parse_key(long_key)  # past the length bound: parsed every time
    for i in range(reference._KEY_CACHE_SIZE + 10):
        parse_key(f"registry.example.com/app-{i}:v1")
    assert reference._parse_key_cached.cache_info().currsize == reference._KEY_CACHE_SIZE
