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
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import cosign
from tests.support.admission import provider_config, server_tls, signed_image, start_provider_daemon
from tests.support.audit import (
    AuditedNamespace,
    diff,
    install_constraint,
    per_cycle,
    printed,
    remove_constraint,
    until_listed,
    wait,
)
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.images import PushedImage
from tests.support.kube import AuditSettings, Cluster
from tests.support.notation import NotationEnv
from tests.support.registries import Registry, free_port

AUDIT = AuditSettings(interval=5, response_cache_ttl="1s", violations_limit=50)
VERDICT_TTL, TAG_TTL = 3.0, 3.0
CACHE_TTL = 1.0  # AUDIT.response_cache_ttl
PROVIDER = "countersign-audit"
CONSTRAINT = "countersign-audit"
# One audit interval + the verdict TTL + Gatekeeper's response cache TTL (whole seconds: +1), plus what
# an audit run and its status write take on this 2-core machine shared with other tests.
BOUND = AUDIT.interval + VERDICT_TTL + CACHE_TTL + 1 + 15.0
_report = printed("audit")


@dataclass
class AuditBed(AuditedNamespace):
    registry: Registry
    config_file: Path
    config: dict[str, Any]
    cosign_env: CosignEnv
    trusted_key: KeyPair


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
    ca = server_tls(directory)
    port, health_port = free_port(), free_port()
    client_ca = cluster.pki.gatekeeper_cert_dir / "ca.crt"
    config = provider_config(directory, port, health_port, client_ca, registry, trusted_key, notation_env)
    config["server"]["configReloadInterval"] = "1s"
    config["cache"] = {"verdictTTL": f"{VERDICT_TTL:g}s", "tagTTL": f"{TAG_TTL:g}s"}
    provider, config_file = start_provider_daemon("countersign-audit", directory, ca, config)
    namespace = f"audit-{free_port()}"
    try:
        probe = registry.host + "/audit/never-pushed@sha256:" + "0" * 64
        install_constraint(cluster, provider, PROVIDER, CONSTRAINT, namespace, probe)
        the_bed = AuditBed(
            cluster=cluster,
            provider=provider,
            health_port=health_port,
            namespace=namespace,
            constraint=CONSTRAINT,
            registry=registry,
            config_file=config_file,
            config=config,
            cosign_env=cosign_env,
            trusted_key=trusted_key,
        )
        cluster.start_audit(AUDIT)
        yield the_bed
    finally:
        cluster.stop_audit()
        remove_constraint(cluster, PROVIDER, CONSTRAINT, namespace)
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


def test_a_deleted_signature_is_reported_by_the_audit(bed: AuditBed) -> None:
    image = signed_image(bed.registry, bed.cosign_env, bed.trusted_key, "audit/deleted")
    first = bed.registry_requests()
    bed.admit("deleted-signature", image)
    admitted = bed.registry_requests()
    _report(f"admission (cold) registry requests: {diff(first, admitted)}")
    bed.next_audits(2)  # at least one full run after the Pod was stored
    assert bed.listed("deleted-signature") is None, bed.violations()
    clean = per_cycle(bed, 3)
    _report(f"per audit cycle, signed image, verdict expired each cycle: {clean}")
    assert sum(clean.values()) >= 1  # the verdict TTL is below the interval: each cycle asks the registry

    deleted = _delete_signatures(bed.registry, image)
    assert deleted, "the image had no cosign bundle referrer"
    since = time.monotonic()
    elapsed, violation = until_listed(bed, "deleted-signature", since, BOUND + 30)
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
    failing = per_cycle(bed, 3)
    _report(f"per audit cycle, signature gone: {failing}")


def test_a_distrusted_signer_is_reported_by_the_audit(bed: AuditBed) -> None:
    image = signed_image(bed.registry, bed.cosign_env, bed.trusted_key, "audit/distrusted")
    bed.admit("distrusted-signer", image)
    bed.next_audits(2)
    assert bed.listed("distrusted-signer") is None, bed.violations()
    reloads = bed.reloads()
    # The operator replaces the trusted key: images signed only by the old one are no longer verified.
    replacement = cosign.generate_key_pair(bed.cosign_env, f"replacement-{free_port()}")
    config = copy.deepcopy(bed.config)
    config["verifiers"]["cosign"]["options"] = cosign.key_options(replacement)
    bed.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    since = time.monotonic()
    try:
        wait(lambda: bed.reloads() > reloads, 20, "the configuration reload")
        reloaded = time.monotonic() - since
        elapsed, violation = until_listed(bed, "distrusted-signer", since, BOUND + 30)
        _report(
            f"signer distrusted -> reloaded after {reloaded:.1f}s, listed after {elapsed:.1f}s "
            f"(bound {BOUND:.0f}s + the reload interval 1s)"
        )
        assert elapsed <= BOUND + 1
        assert image.digest in violation["message"] and f"denied by {PROVIDER}" in violation["message"]
    finally:
        bed.config_file.write_text(yaml.safe_dump(bed.config, sort_keys=False))
