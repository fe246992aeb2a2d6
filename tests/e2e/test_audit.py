"""Continuous verification: Gatekeeper's audit re-asks Countersign about running workloads.

Gatekeeper's audit runs as a second manager process (``Cluster.start_audit``: ``--operation=audit``, a 5 s
``--audit-interval``, a 1 s external-data response cache). This module's own Countersign (``countersign
serve`` from this work tree, a 3 s verdict TTL, its configuration file reloaded every second) sits behind
its own Provider and a constraint that matches only this module's namespace, so nothing else in the
session asks it anything and its ``/metrics`` counters are the audit's traffic alone.

* a Pod admitted with a signed image whose signature is then deleted from the registry (the image stays)
  is listed in the constraint's ``status.violations`` within one audit interval plus the verdict TTL (plus
  Gatekeeper's response cache TTL and the audit run itself);
* a Pod whose signer a configuration change distrusts (the cosign key replaced in the file) likewise.

The measured delays and the registry requests per audit cycle are printed (``pytest -s``).
"""

from __future__ import annotations

import copy
import json
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.support import cosign
from tests.support.admission import TEMPLATES, Provider, pod, provider_config, signed_image
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.daemons import Daemon
from tests.support.images import PushedImage
from tests.support.kube import AuditSettings, Cluster, manifests
from tests.support.notation import NotationEnv
from tests.support.registries import LOOPBACK, Registry, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
AUDIT = AuditSettings(interval=5, response_cache_ttl="1s", violations_limit=50)
VERDICT_TTL, TAG_TTL = 3.0, 3.0
CACHE_TTL = 1.0  # AUDIT.response_cache_ttl
PROVIDER = "countersign-audit"
CONSTRAINT = "countersign-audit"
KIND = "countersignverifiedimages"
# One audit interval + the verdict TTL + Gatekeeper's response cache TTL (whole seconds: +1), plus what
# an audit run and its status write take on this 2-core machine shared with other tests.
BOUND = AUDIT.interval + VERDICT_TTL + CACHE_TTL + 1 + 15.0


@dataclass
class AuditBed:
    cluster: Cluster
    registry: Registry
    provider: Provider
    config_file: Path
    config: dict[str, Any]
    health_port: int
    namespace: str
    cosign_env: CosignEnv
    trusted_key: KeyPair

    def metrics(self) -> dict[str, float]:
        """countersign_* samples of the provider's /metrics, by their full text before the value."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{LOOPBACK}:{self.health_port}/metrics", timeout=5) as response:
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

    def status(self) -> dict[str, Any]:
        constraint = self.cluster.get(KIND, CONSTRAINT)
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


def _start_provider(directory: Path, ca: trustme.CA, config: dict[str, Any]) -> tuple[Provider, Path]:
    config_file = directory / "countersign.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    health_port = config["server"]["healthPort"]

    def ready() -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{LOOPBACK}:{health_port}/readyz", timeout=2) as response:
            return int(response.status) == 200

    daemon = Daemon(
        "countersign-audit",
        [sys.executable, "-m", "provider.cli", "serve", "--config", str(config_file)],
        log_file=directory / "countersign.log",
        ready=ready,
        cwd=REPO_ROOT,
        ready_timeout=30,
    )
    daemon.start()
    return Provider(daemon, int(config["server"]["port"]), ca, directory), config_file


@pytest.fixture(scope="module")
def bed(
    tmp_path_factory: pytest.TempPathFactory,
    cluster: Cluster,
    registry: Registry,
    cosign_env: CosignEnv,
    trusted_key: KeyPair,
    notation_env: NotationEnv,
) -> Iterator[AuditBed]:
    directory = tmp_path_factory.mktemp("audit-countersign")
    ca = trustme.CA()
    leaf = ca.issue_cert(LOOPBACK)
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
    (directory / "tls.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    port, health_port = free_port(), free_port()
    client_ca = cluster.pki.gatekeeper_cert_dir / "ca.crt"
    config = provider_config(directory, port, health_port, client_ca, registry, trusted_key, notation_env)
    config["server"]["configReloadInterval"] = "1s"
    config["cache"] = {"verdictTTL": f"{VERDICT_TTL:g}s", "tagTTL": f"{TAG_TTL:g}s"}
    provider, config_file = _start_provider(directory, ca, config)
    namespace = f"audit-{free_port()}"
    try:
        cluster.apply(manifests([TEMPLATES / "verified-images-template.yaml"]))
        cluster.apply(
            [
                {
                    "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
                    "kind": "Provider",
                    "metadata": {"name": PROVIDER},
                    "spec": {"url": provider.url("/v1/verify"), "timeout": 3, "caBundle": provider.ca_bundle},
                }
            ]
        )
        cluster.namespace(namespace)
        cluster.eventually(
            lambda: cluster.kubectl("get", "crd", f"{KIND}.constraints.gatekeeper.sh"),
            lambda result: result.ok,
            what="the CountersignVerifiedImages CRD",
        )
        constraint = {
            "apiVersion": "constraints.gatekeeper.sh/v1beta1",
            "kind": "CountersignVerifiedImages",
            "metadata": {"name": CONSTRAINT},
            "spec": {
                "enforcementAction": "deny",
                "match": {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}], "namespaces": [namespace]},
                "parameters": {"provider": PROVIDER, "namespacedKeys": True},
            },
        }
        cluster.eventually(
            lambda: cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(constraint)),
            lambda result: result.ok,
            what="applying the audit constraint",
        )
        the_bed = AuditBed(
            cluster, registry, provider, config_file, config, health_port, namespace, cosign_env, trusted_key
        )
        unsigned = pod("probe", namespace, registry.host + "/audit/never-pushed@sha256:" + "0" * 64)
        cluster.eventually(
            lambda: cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(unsigned)),
            lambda result: not result.ok and "countersign-audit" in result.stderr,
            what="the audit constraint in force",
        )
        cluster.start_audit(AUDIT)
        yield the_bed
    finally:
        cluster.stop_audit()
        for kind, name in ((KIND, CONSTRAINT), ("providers.externaldata.gatekeeper.sh", PROVIDER)):
            cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        provider.close()


def _delete_signatures(registry: Registry, image: PushedImage) -> list[str]:
    """DELETE every cosign bundle referrer of ``image`` from the registry (the image and its SBOM stay)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    base = f"{registry.url}/v2/{image.repository}"
    with opener.open(f"{base}/referrers/{image.digest}", timeout=5) as response:
        index = json.loads(response.read())
    deleted = []
    for descriptor in index.get("manifests", []):
        if descriptor.get("artifactType") == cosign.BUNDLE_ARTIFACT_TYPE:
            request = urllib.request.Request(f"{base}/manifests/{descriptor['digest']}", method="DELETE")
            with opener.open(request, timeout=5) as response:
                assert response.status in (200, 202), response.status
            deleted.append(descriptor["digest"])
    return deleted


def _until_listed(bed: AuditBed, pod_name: str, since: float) -> tuple[float, dict[str, Any]]:
    while True:
        violation = bed.listed(pod_name)
        elapsed = time.monotonic() - since
        if violation is not None:
            return elapsed, violation
        if elapsed > BOUND + 30:
            raise AssertionError(
                f"{pod_name} not listed after {elapsed:.1f}s; status: {bed.status()}\n{bed.cluster.logs()}"
            )
        time.sleep(0.25)


def _per_cycle(bed: AuditBed, cycles: int) -> dict[str, float]:
    """Registry requests Countersign made per audit cycle, averaged over ``cycles`` runs (sampled right
    after each run's status write: the next run starts an interval after the previous one started)."""
    bed.next_audits(1)
    before = bed.registry_requests()
    bed.next_audits(cycles)
    after = bed.registry_requests()
    return {m: (after.get(m, 0.0) - before.get(m, 0.0)) / cycles for m in sorted(set(before) | set(after))}


def _report(line: str) -> None:
    print(f"[audit] {line}")


def test_a_deleted_signature_is_reported_by_the_audit(bed: AuditBed) -> None:
    image = signed_image(bed.registry, bed.cosign_env, bed.trusted_key, "audit/deleted")
    first = bed.registry_requests()
    bed.admit("deleted-signature", image)
    admitted = bed.registry_requests()
    _report(f"admission (cold) registry requests: {_diff(first, admitted)}")
    bed.next_audits(2)  # at least one full run after the Pod was stored
    assert bed.listed("deleted-signature") is None, bed.violations()
    clean = _per_cycle(bed, 3)
    _report(f"per audit cycle, signed image, verdict expired each cycle: {clean}")
    assert sum(clean.values()) >= 1  # the verdict TTL is below the interval: each cycle asks the registry

    deleted = _delete_signatures(bed.registry, image)
    assert deleted, "the image had no cosign bundle referrer"
    since = time.monotonic()
    elapsed, violation = _until_listed(bed, "deleted-signature", since)
    _report(
        f"signature deleted -> listed in status.violations after {elapsed:.1f}s "
        f"(bound {BOUND:.0f}s = interval {AUDIT.interval}s + verdictTTL {VERDICT_TTL:g}s + "
        f"response cache {CACHE_TTL:g}s (+1s) + 15s run/slack)"
    )
    assert elapsed <= BOUND
    assert violation["kind"] == "Pod" and violation["enforcementAction"] == "deny"
    # Gatekeeper cuts status messages at 256 characters: the digest and the provider fit, the reasons not.
    assert image.digest in violation["message"] and f"denied by {PROVIDER}" in violation["message"]
    failed = bed.metrics().get(
        'countersign_verifier_results_total{outcome="failed",type="cosign",verifier="cosign"}', 0.0
    )
    assert failed >= 1  # the cosign verifier, not another, failed it
    total = bed.status()["totalViolations"]
    assert isinstance(total, int) and total >= 1
    failing = _per_cycle(bed, 3)
    _report(f"per audit cycle, signature gone: {failing}")


def test_a_distrusted_signer_is_reported_by_the_audit(bed: AuditBed) -> None:
    image = signed_image(bed.registry, bed.cosign_env, bed.trusted_key, "audit/distrusted")
    bed.admit("distrusted-signer", image)
    bed.next_audits(2)
    assert bed.listed("distrusted-signer") is None, bed.violations()
    reloads = _reloads(bed)
    # The operator replaces the trusted key: images signed only by the old one are no longer verified.
    replacement = cosign.generate_key_pair(bed.cosign_env, f"replacement-{free_port()}")
    config = copy.deepcopy(bed.config)
    config["verifiers"]["cosign"]["options"] = cosign.key_options(replacement)
    bed.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    since = time.monotonic()
    try:
        _wait(lambda: _reloads(bed) > reloads, 20, "the configuration reload")
        reloaded = time.monotonic() - since
        elapsed, violation = _until_listed(bed, "distrusted-signer", since)
        _report(
            f"signer distrusted -> reloaded after {reloaded:.1f}s, listed after {elapsed:.1f}s "
            f"(bound {BOUND:.0f}s + the reload interval 1s)"
        )
        assert elapsed <= BOUND + 1
        assert image.digest in violation["message"] and f"denied by {PROVIDER}" in violation["message"]
    finally:
        bed.config_file.write_text(yaml.safe_dump(bed.config, sort_keys=False))


def _reloads(bed: AuditBed) -> float:
    return bed.metrics().get('countersign_config_reloads_total{result="success"}', 0.0)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)


def _diff(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {m: after.get(m, 0.0) - before.get(m, 0.0) for m in sorted(set(before) | set(after))}
