"""Gatekeeper's audit against a Countersign of its own: the pieces tests/e2e/test_audit*.py share.

A module starts ``countersign serve`` (:func:`tests.support.admission.start_provider_daemon`), gives it its
own ``Provider`` and a constraint matching one namespace only (:func:`install_constraint`), starts the audit
(``Cluster.start_audit``) and then watches the constraint's ``status`` through :class:`AuditedNamespace`:
which Pods are listed, when the next audit runs, and the provider's ``/metrics`` (the audit's traffic
alone, since nothing else in the session asks that provider anything).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from tests.support.admission import PODS, Provider, apply_constraint, constraint, install_provider, pod
from tests.support.images import PushedImage
from tests.support.kube import Cluster
from tests.support.registries import LOOPBACK

__all__ = [
    "KIND",
    "AuditedNamespace",
    "diff",
    "install_constraint",
    "per_cycle",
    "printed",
    "remove_constraint",
    "until",
    "until_listed",
    "wait",
]

#: The constraint kind of gatekeeper-templates/verified-images-template.yaml (plural, for kubectl).
KIND = "countersignverifiedimages"


def _opener(context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


@dataclass
class AuditedNamespace:
    """One constraint (``constraint``, matching Pods of ``namespace`` only) answered by ``provider``."""

    cluster: Cluster
    provider: Provider
    health_port: int
    namespace: str
    constraint: str

    def metrics(self) -> dict[str, float]:
        """countersign_* samples of the provider's /metrics, by their full text before the value."""
        with _opener().open(f"http://{LOOPBACK}:{self.health_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("countersign_") and " " in line:
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def registry_requests(self) -> dict[str, float]:
        """countersign_registry_requests_total by "METHOD STATUS" (summed over registries)."""
        by_method: dict[str, float] = {}
        for name, value in self.metrics().items():
            if name.startswith("countersign_registry_requests_total{"):
                method = name.split('method="', 1)[1].split('"', 1)[0]
                status = name.split('status="', 1)[1].split('"', 1)[0]
                by_method[f"{method} {status}"] = by_method.get(f"{method} {status}", 0.0) + value
        return by_method

    def reloads(self) -> float:
        """Successful engine swaps (a reloaded file, or resources recomposed)."""
        return self.metrics().get('countersign_config_reloads_total{result="success"}', 0.0)

    def status(self) -> dict[str, Any]:
        constraint = self.cluster.get(KIND, self.constraint)
        status = constraint.get("status", {})
        assert isinstance(status, dict)
        return status

    def violations(self) -> list[dict[str, Any]]:
        listed = self.status().get("violations") or []
        assert isinstance(listed, list)
        return listed

    def listed(self, pod_name: str) -> dict[str, Any] | None:
        for violation in self.violations():
            if violation.get("name") == pod_name and violation.get("namespace") == self.namespace:
                return violation
        return None

    def audit_timestamp(self) -> str:
        return str(self.status().get("auditTimestamp", ""))

    def next_audits(self, count: int, timeout: float = 60.0) -> str:
        """Wait until ``count`` more audit runs have written their status; the last timestamp."""
        seen = self.audit_timestamp()
        deadline = time.monotonic() + timeout
        for _ in range(count):
            while (now := self.audit_timestamp()) == seen:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no audit run within {timeout:.0f}s\n{self.cluster.logs()}")
                time.sleep(0.25)
            seen = now
        return seen

    def admit(self, name: str, image: PushedImage) -> None:
        created = self.cluster.create(pod(name, self.namespace, image.pinned))
        assert created.ok, created.output

    def verdict(self, image: str) -> dict[str, Any]:
        """Countersign's answer for ``[namespace]image``, asked as Gatekeeper asks (its client
        certificate), bypassing Gatekeeper's response caches."""
        certs = self.cluster.pki.gatekeeper_cert_dir
        context = ssl.create_default_context(cadata=self.provider.ca.cert_pem.bytes().decode())
        context.load_cert_chain(str(certs / "tls.crt"), str(certs / "tls.key"))
        body = {
            "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
            "kind": "ProviderRequest",
            "request": {"keys": [f"[{self.namespace}]{image}"]},
        }
        request = urllib.request.Request(
            self.provider.url("/v1/verify"),
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with _opener(context).open(request, timeout=10) as response:
            reply = json.loads(response.read())
        items = reply["response"]["items"]
        assert len(items) == 1, reply
        value = items[0]["value"]
        assert isinstance(value, dict), reply
        return value


def install_constraint(
    cluster: Cluster, provider: Provider, provider_name: str, constraint_name: str, namespace: str, probe: str
) -> None:
    """The template, a Provider ``provider_name`` for ``provider``, the namespace and a deny constraint
    matching its Pods only (namespaced keys); returns once a Pod with the image ``probe`` (one the provider
    denies) is refused by it."""
    install_provider(cluster, provider_name, provider.url("/v1/verify"), provider.ca_bundle)
    cluster.namespace(namespace)
    document = constraint(
        constraint_name,
        provider_name,
        {"kinds": [PODS], "namespaces": [namespace]},
        deny=True,
        namespacedKeys=True,
    )
    apply_constraint(cluster, document, f"applying the constraint {constraint_name}")
    unsigned = pod("probe", namespace, probe)
    cluster.eventually(
        lambda: cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(unsigned)),
        lambda result: not result.ok and provider_name in result.stderr,
        what=f"the constraint {constraint_name} in force",
    )


def remove_constraint(cluster: Cluster, provider_name: str, constraint: str, namespace: str) -> None:
    for kind, name in ((KIND, constraint), ("providers.externaldata.gatekeeper.sh", provider_name)):
        cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def until_listed(
    bed: AuditedNamespace, pod_name: str, since: float, give_up: float
) -> tuple[float, dict[str, Any]]:
    """Seconds from ``since`` until ``pod_name`` is in the constraint's violations, and its entry."""
    while True:
        violation = bed.listed(pod_name)
        elapsed = time.monotonic() - since
        if violation is not None:
            return elapsed, violation
        if elapsed > give_up:
            raise AssertionError(
                f"{pod_name} not listed after {elapsed:.1f}s; status: {bed.status()}\n{bed.cluster.logs()}"
            )
        time.sleep(0.25)


def per_cycle(bed: AuditedNamespace, cycles: int) -> dict[str, float]:
    """Registry requests Countersign made per audit cycle, averaged over ``cycles`` runs (sampled right
    after each run's status write: the next run starts an interval after the previous one started)."""
    bed.next_audits(1)
    before = bed.registry_requests()
    bed.next_audits(cycles)
    after = bed.registry_requests()
    return {m: (after.get(m, 0.0) - before.get(m, 0.0)) / cycles for m in sorted(set(before) | set(after))}


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)


def until(condition: Callable[[], bool], since: float, timeout: float, what: str) -> float:
    """Seconds from ``since`` until ``condition`` holds (checked every 0.2 s)."""
    wait(condition, timeout - (time.monotonic() - since), what)
    return time.monotonic() - since


def diff(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {m: after.get(m, 0.0) - before.get(m, 0.0) for m in sorted(set(before) | set(after))}


def printed(tag: str) -> Callable[[str], None]:
    def report(line: str) -> None:
        print(f"[{tag}] {line}")

    return report
