"""Prometheus metrics. Each app owns its own registry, so several apps in one process never clash."""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "KEY_OUTCOMES", "Metrics"]

MAX_REGISTRY_LABELS = 64
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0)


_Labels = TypeVar("_Labels", bound=tuple[str, ...])
_Metric = TypeVar("_Metric", Counter, Histogram)


def _child(children: dict[_Labels, _Metric], metric: _Metric, labels: _Labels) -> _Metric:
    """`metric.labels(*labels)`, remembered in `children`: prometheus_client's own lookup takes a lock and
    checks the labels on every call."""
    child = children.get(labels)
    if child is None:
        child = children[labels] = metric.labels(*labels)
    return child


#: What a key is answered with (`countersign_keys_total`'s `outcome`).
KEY_OUTCOMES = ("allowed", "denied", "invalid", "undecided")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._registries: set[str] = set()
        # The labelled children of the two counters counted on every registry request and cache lookup.
        self._request_counters: dict[tuple[str, str, str], Counter] = {}
        self._cache_counters: dict[tuple[str, str], Counter] = {}
        # ... and of those counted on every Gatekeeper request (endpoints and statuses: a handful).
        self._key_counters: dict[tuple[str, str], Counter] = {}
        self._status_counters: dict[tuple[str, str], Counter] = {}
        self._latencies: dict[tuple[str], Histogram] = {}
        self._verifier_counters: dict[tuple[str, str, str], Counter] = {}
        self.request_latency = Histogram(
            "countersign_request_duration_seconds",
            "Time to answer a Gatekeeper request, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "countersign_requests_total",
            "Requests by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.keys = Counter(
            "countersign_keys_total",
            "Keys answered, by endpoint and outcome (allowed, denied, invalid, undecided).",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.verifier_results = Counter(
            "countersign_verifier_results_total",
            "Verifier runs by verifier name, type and outcome (passed, failed, undecided).",
            ["verifier", "type", "outcome"],
            registry=self.registry,
        )
        self.registry_requests = Counter(
            "countersign_registry_requests_total",
            "HTTP requests to registries, by registry, method and status (or error class).",
            ["registry", "method", "status"],
            registry=self.registry,
        )
        self.cache = Counter(
            "countersign_cache_requests_total",
            "Cache lookups by cache (verdict, tag, content) and result (hit, miss).",
            ["cache", "result"],
            registry=self.registry,
        )
        # The series every provider has, at zero from the start (a rate or an alert on them needs no first
        # event), and their children made now rather than on the first request.
        for endpoint in ("verify", "mutate"):
            _child(self._status_counters, self.requests, (endpoint, "200"))
            _child(self._latencies, self.request_latency, (endpoint,))
            for outcome in KEY_OUTCOMES:
                _child(self._key_counters, self.keys, (endpoint, outcome))
        for cache in ("verdict", "verdict_digest", "tag", "content"):
            for result in ("hit", "miss"):
                _child(self._cache_counters, self.cache, (cache, result))
        self.memory = Gauge(
            "countersign_memory_bytes",
            "Memory counted by pool: registry responses in flight (in_flight, bounded by "
            "server.limits.inFlightBytes) and the verdict, content and tag caches, as they really take it.",
            ["pool"],
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "countersign_config_reloads_total",
            "Configuration reloads while serving, by result (success, failure).",
            ["result"],
            registry=self.registry,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        self.config_last_reload_successful = Gauge(
            "countersign_config_last_reload_successful",
            "1 when the last attempt to load the configuration succeeded, 0 when it failed.",
            registry=self.registry,
        )
        self.config_last_reload_success = Gauge(
            "countersign_config_last_reload_success_timestamp_seconds",
            "When the configuration in service was loaded (start-up or the last successful reload).",
            registry=self.registry,
        )
        self.connections = Gauge(
            "countersign_connections",
            "Client connections open (TLS handshake included), by listener (provider, health).",
            ["listener"],
            registry=self.registry,
        )
        self.connections_dropped = Counter(
            "countersign_connections_dropped_total",
            "Client connections Countersign closed itself, by listener and reason: limit (over "
            "maxConnections, closed at accept), tls_handshake (failed or too slow), request_headers, "
            "request_body, idle.",
            ["listener", "reason"],
            registry=self.registry,
        )
        self.config_restart_required = Gauge(
            "countersign_config_restart_required",
            "1 when the configuration file changes a setting that only a restart applies.",
            registry=self.registry,
        )

        # The Kubernetes source (`kubernetes.enabled`); `resource` is the informer's collection:
        # clusterimagepolicies, verifiers, imagepolicies, secrets, configmaps.
        self.kube_watch_errors = Counter(
            "countersign_kube_watch_errors_total",
            "Failed lists and watches of the Kubernetes API (backed off and retried), by resource.",
            ["resource"],
            registry=self.registry,
        )
        self.kube_relists = Counter(
            "countersign_kube_relists_total",
            "Complete lists of a resource's collection, by reason: initial, gone (410: the watch's "
            "resourceVersion expired), resync (kubernetes.resync), error (after too many objects), budget "
            "(room was made for objects left out).",
            ["resource", "reason"],
            registry=self.registry,
        )
        self.kube_compositions = Counter(
            "countersign_kube_compositions_total",
            "Compositions of the file and the resources, by result: rebuilt (a new engine serves), "
            "unchanged (what serves was already it: only statuses were brought up to date), failed.",
            ["result"],
            registry=self.registry,
        )
        for result in ("rebuilt", "unchanged", "failed"):
            self.kube_compositions.labels(result)
        self.kube_resources = Gauge(
            "countersign_kube_resources",
            "Countersign resources by kind and state: ready (the latest generation serves), invalid "
            "(refused; an earlier generation serves), unavailable (no generation serves).",
            ["kind", "state"],
            registry=self.registry,
        )
        self.kube_status_write_failures = Counter(
            "countersign_kube_status_write_failures_total",
            "Status patches the API server refused or did not answer, by kind (retried at the next "
            "composition).",
            ["kind"],
            registry=self.registry,
        )
        self.kube_objects_left_out = Gauge(
            "countersign_kube_objects_left_out",
            "Secrets or ConfigMaps of the provider's namespace not held: over the byte bounds.",
            ["resource"],
            registry=self.registry,
        )
        self.kube_held_bytes = Gauge(
            "countersign_kube_held_bytes",
            "Bytes (JSON) of the Secrets or ConfigMaps of the provider's namespace held in memory.",
            ["resource"],
            registry=self.registry,
        )

    def observe_registry(self, registry: str, method: str, status: str) -> None:
        # Keys name arbitrary hosts: past MAX_REGISTRY_LABELS distinct ones, label them "other".
        if registry not in self._registries:
            if len(self._registries) >= MAX_REGISTRY_LABELS:
                registry = "other"
            else:
                self._registries.add(registry)
        # as many children as registry_requests has label sets: bounded by the cap above
        _child(self._request_counters, self.registry_requests, (registry, method, status)).inc()

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        """One Gatekeeper request answered: its status and latency."""
        _child(self._status_counters, self.requests, (endpoint, str(status))).inc()
        _child(self._latencies, self.request_latency, (endpoint,)).observe(seconds)

    def count_keys(self, endpoint: str, outcome: str, count: int = 1) -> None:
        """`count` distinct keys of one request answered with `outcome`."""
        _child(self._key_counters, self.keys, (endpoint, outcome)).inc(count)

    def verifier_result(self, verifier: str, kind: str, outcome: str) -> None:
        """One verifier run; `outcome`: passed, failed or undecided. Verifier names come from the
        configuration and its resources: as many children as verifiers defined, times three."""
        _child(self._verifier_counters, self.verifier_results, (verifier, kind, outcome)).inc()

    def add_verifier(self, verifier: str, kind: str) -> None:
        """A verifier's three series, at zero until it runs."""
        for outcome in ("passed", "failed", "undecided"):
            _child(self._verifier_counters, self.verifier_results, (verifier, kind, outcome))

    def cache_lookup(self, cache: str, hit: bool) -> None:
        _child(self._cache_counters, self.cache, (cache, "hit" if hit else "miss")).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
