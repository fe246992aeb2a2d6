"""Continuous verification when the trust comes from custom resources: Gatekeeper's audit lists a running
Pod once a policy resource stops trusting its signer.

This module's Countersign is ``countersign serve`` (this work tree) with ``kubernetes.enabled``, its file
holding no verifier and no policy: it runs with a token of a ServiceAccount bound to the chart's RBAC only
(tests/support/kube_source.py) and reads everything from the chart's CRDs: a ``Verifier`` whose cosign key
comes from a Secret of its namespace, and a ``ClusterImagePolicy`` requiring it for this module's
repository. It sits behind its own Provider and a constraint matching only this module's namespace
(tests/support/audit.py, shared with tests/e2e/test_audit.py); Gatekeeper's audit runs every 5 s with a
1 s response cache.

* the ClusterImagePolicy edited to require a Verifier that trusts another key: a Pod admitted earlier is
  listed in the constraint's ``status.violations`` within the rebuild (watch + debounce + a new engine,
  whose caches are empty: no verdict TTL to wait out) plus Gatekeeper's response cache TTL plus one audit
  interval and the run; edited back, it is no longer listed;
* the key Secret of the required Verifier rotated to another key (no resource changes): likewise;
* the Verifier the policy requires deleted: the policy has no valid generation left, still claims its
  scopes, and its images are denied ``policy_unavailable`` (never left to a weaker policy): listed too.

The measured delays are printed (``pytest -s``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import cosign
from tests.support.admission import server_config, server_tls, signed_image, start_provider_daemon
from tests.support.audit import (
    AuditedNamespace,
    install_constraint,
    printed,
    remove_constraint,
    until,
    until_listed,
)
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.kube import AuditSettings, Cluster
from tests.support.kube_source import (
    conditions,
    cosign_key_secret,
    cosign_verifier,
    install_chart_crds,
    provider_rbac,
    resource_status,
    service_account_kubeconfig,
)
from tests.support.registries import Registry, free_port

AUDIT = AuditSettings(interval=5, response_cache_ttl="1s", violations_limit=50)
CACHE_TTL = 1.0  # AUDIT.response_cache_ttl
#: The provider's namespace (its Secrets) and ServiceAccount; not the chart's `countersign`, which
#: tests/e2e/test_helm_install.py installs later in the session.
HOME = "countersign-audit-res"
PROVIDER = CONSTRAINT = "countersign-audit-res"
POLICY, TRUSTED, OTHER = "audit-res-signed", "audit-res-cosign", "audit-res-other"
REPOSITORY = "audit-res"
API = "countersign.dev/v1alpha1"
# What the provider takes to see the edit and swap in an engine built from it (watch, 0.3 s debounce,
# the build) on this loaded machine.
REBUILD = 5.0
# The rebuild + Gatekeeper's response cache TTL (whole seconds: +1) + one audit interval, plus what an
# audit run and its status write take on this 2-core machine shared with other tests.
BOUND = REBUILD + CACHE_TTL + 1 + AUDIT.interval + 15.0
_report = printed("audit-resources")


def _key_secret(name: str, key: KeyPair) -> dict[str, Any]:
    return cosign_key_secret(name, HOME, key)


def _policy(registry: Registry, verifiers: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ClusterImagePolicy",
        "metadata": {"name": POLICY},
        "spec": {"scopes": [f"{registry.host}/{REPOSITORY}/*"], "allOf": verifiers},
    }


def _serving(cluster: Cluster, kind: str, name: str) -> int | None:
    """The generation in service when it is the latest (Ready), else None."""
    status = resource_status(cluster, kind, name)
    generation = int(cluster.get(kind, name)["metadata"]["generation"])
    ready = conditions(status).get("Ready", {}).get("status") == "True"
    return generation if ready and status.get("servingGeneration") == generation else None


@pytest.fixture(scope="module")
def bed(
    tmp_path_factory: pytest.TempPathFactory,
    cluster: Cluster,
    registry: Registry,
    trusted_key: KeyPair,
) -> Iterator[AuditedNamespace]:
    directory = tmp_path_factory.mktemp("audit-resources")
    install_chart_crds(cluster)
    cluster.namespace(HOME, ignored=True)
    cluster.apply(provider_rbac(HOME, HOME))
    cluster.apply([_key_secret(TRUSTED, trusted_key), cosign_verifier(TRUSTED, TRUSTED)])
    cluster.apply([_policy(registry, [TRUSTED])])
    kubeconfig = service_account_kubeconfig(cluster, directory / "kubeconfig", HOME, HOME)
    ca = server_tls(directory)
    port, health_port = free_port(), free_port()
    config = {
        "apiVersion": API,
        "server": server_config(directory, port, health_port, cluster.pki.gatekeeper_cert_dir / "ca.crt"),
        "registries": {registry.host: {"insecure": True}},
        "cache": {"verdictTTL": "3s", "tagTTL": "3s"},
        "kubernetes": {"enabled": True, "namespace": HOME, "kubeconfig": str(kubeconfig)},
    }
    provider, _ = start_provider_daemon(PROVIDER, directory, ca, config)
    namespace = f"audit-res-{free_port()}"
    try:
        # Denied `no_policy` (no policy covers it) once the constraint is in force.
        probe = f"{registry.host}/elsewhere/never-pushed@sha256:" + "0" * 64
        install_constraint(cluster, provider, PROVIDER, CONSTRAINT, namespace, probe)
        the_bed = AuditedNamespace(cluster, provider, health_port, namespace, CONSTRAINT)
        began = time.monotonic()
        until(lambda: _serving(cluster, "clusterimagepolicies", POLICY) == 1, began, 30, "the policy serving")
        cluster.start_audit(AUDIT)
        yield the_bed
    finally:
        cluster.stop_audit()
        remove_constraint(cluster, PROVIDER, CONSTRAINT, namespace)
        for kind, name in (
            ("clusterimagepolicies", POLICY),
            ("verifiers.countersign.dev", TRUSTED),
            ("verifiers.countersign.dev", OTHER),
            ("clusterrolebinding", HOME),
            ("clusterrole", HOME),
        ):
            cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")
        cluster.kubectl("delete", "namespace", HOME, "--wait=false")
        provider.close()


def test_a_policy_resource_change_and_a_deleted_verifier_are_reported_by_the_audit(
    bed: AuditedNamespace, registry: Registry, cosign_env: CosignEnv, trusted_key: KeyPair
) -> None:
    cluster = bed.cluster
    image = signed_image(registry, cosign_env, trusted_key, f"{REPOSITORY}/app")
    bed.admit("running", image)
    first = bed.verdict(image.pinned)
    assert first["allowed"] is True and first["policy"] == POLICY, first
    bed.next_audits(2)  # at least one full run after the Pod was stored
    assert bed.listed("running") is None, bed.violations()

    # Another Verifier, trusting another key, in service before the policy names it.
    other = cosign.generate_key_pair(cosign_env, f"audit-res-other-{free_port()}")
    cluster.apply([_key_secret(OTHER, other), cosign_verifier(OTHER, OTHER)])
    began = time.monotonic()
    until(lambda: _serving(cluster, "verifiers.countersign.dev", OTHER) == 1, began, 30, "the other Verifier")

    # (a) The operator edits the policy to require the other signer: the running Pod's signer is distrusted.
    cluster.apply([_policy(registry, [OTHER])])
    since = time.monotonic()
    applied = until(lambda: _serving(cluster, "clusterimagepolicies", POLICY) == 2, since, 30, "the edit")
    elapsed, violation = until_listed(bed, "running", since, BOUND + 30)
    _report(
        f"policy edited to another signer -> serving (status) after {applied:.1f}s, listed after "
        f"{elapsed:.1f}s (bound {BOUND:.0f}s = rebuild {REBUILD:g}s + response cache {CACHE_TTL:g}s (+1s) "
        f"+ interval {AUDIT.interval}s + 15s run/slack)"
    )
    assert elapsed <= BOUND
    assert violation["kind"] == "Pod" and violation["enforcementAction"] == "deny"
    assert image.digest in violation["message"] and f"denied by {PROVIDER}" in violation["message"]
    distrusted = bed.verdict(image.pinned)
    assert distrusted["allowed"] is False and distrusted["policy"] == POLICY, distrusted
    failed = bed.metrics().get(
        f'countersign_verifier_results_total{{outcome="failed",type="cosign",verifier="{OTHER}"}}', 0.0
    )
    assert failed >= 1  # the newly required verifier, not another, failed it

    # Edited back: the next audits no longer list it.
    cluster.apply([_policy(registry, [TRUSTED])])
    since = time.monotonic()
    until(lambda: _serving(cluster, "clusterimagepolicies", POLICY) == 3, since, 30, "the edit back")
    cleared = until(lambda: bed.listed("running") is None, since, BOUND + 30, "the Pod no longer listed")
    _report(f"policy edited back -> no longer listed after {cleared:.1f}s")

    # The trusted Verifier's key Secret rotated to the other key: the Verifier and the policy are unchanged
    # (same generations), the rebuilt engine reads the new file; the Pod is listed again.
    rotations = bed.reloads()
    cluster.apply([_key_secret(TRUSTED, other)])
    since = time.monotonic()
    rebuilt = until(lambda: bed.reloads() > rotations, since, 30, "the rebuild after the rotation")
    elapsed, violation = until_listed(bed, "running", since, BOUND + 30)
    _report(
        f"key Secret rotated -> rebuilt after {rebuilt:.1f}s, listed after {elapsed:.1f}s "
        f"(bound {BOUND:.0f}s)"
    )
    assert elapsed <= BOUND
    assert image.digest in violation["message"] and f"denied by {PROVIDER}" in violation["message"]
    assert _serving(cluster, "clusterimagepolicies", POLICY) == 3
    cluster.apply([_key_secret(TRUSTED, trusted_key)])
    since = time.monotonic()
    cleared = until(lambda: bed.listed("running") is None, since, BOUND + 30, "the Pod no longer listed")
    _report(f"key Secret rotated back -> no longer listed after {cleared:.1f}s")

    # (b) The Verifier the policy requires is deleted: no valid generation of the policy is left; it still
    # claims its scopes and denies its images `policy_unavailable`, never leaving them to a weaker policy.
    cluster.kubectl("delete", "verifiers.countersign.dev", TRUSTED).check()
    since = time.monotonic()

    def invalid() -> bool:
        status = resource_status(cluster, "clusterimagepolicies", POLICY)
        return conditions(status).get("Invalid", {}).get("status") == "True"

    refused = until(invalid, since, 30, "status Invalid on the policy")
    elapsed, violation = until_listed(bed, "running", since, BOUND + 30)
    _report(
        f"required Verifier deleted -> policy Invalid after {refused:.1f}s, listed after {elapsed:.1f}s "
        f"(bound {BOUND:.0f}s)"
    )
    assert elapsed <= BOUND
    assert image.digest in violation["message"] and f"denied by {PROVIDER}" in violation["message"]
    message = conditions(resource_status(cluster, "clusterimagepolicies", POLICY))["Invalid"]["message"]
    assert "spec.allOf[0]" in message and TRUSTED in message and "policy_unavailable" in message, message
    unavailable = bed.verdict(image.pinned)
    assert unavailable["allowed"] is False and unavailable["reason"] == "policy_unavailable", unavailable
    assert unavailable["policy"] == POLICY, unavailable
