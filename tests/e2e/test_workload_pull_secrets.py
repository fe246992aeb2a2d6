"""Workload pull secrets through the real Gatekeeper: a private image is admitted in the namespace whose
Pods carry a pull secret for it, and denied in another.

The registry (distribution with ``htpasswd`` Basic auth) refuses every anonymous read; its image is signed
by the real cosign. This module's own Countersign (``countersign serve`` from this work tree, mutual TLS with
Gatekeeper's CA as its client CA, as in test_audit.py) has NO credentials for it, ``kubernetes.enabled``
and ``kubernetes.workloadPullSecrets``, and reads the API server with a ServiceAccount token bound to the
RBAC the chart renders (``helm template``, release ``cs-pull``). Its own Provider and a
CountersignVerifiedImages constraint with ``workloadCredentials: true`` match only ``team-a`` and
``team-b``. ``team-a`` holds a ``kubernetes.io/dockerconfigjson`` Secret ``regcred``; both namespaces'
Pods name it in ``imagePullSecrets``.

* ``kubernetes.workloadPullSecrets.namespaces: []`` (a ClusterRole: get on secrets and serviceaccounts):
  the Pod is admitted in team-a; denied in team-b (no Secret), with the reason in the denial, also right
  after team-a's admission; a Deployment in team-a is admitted too; once team-b creates its Secret, its
  Pod is admitted within Countersign's negative pull-secret cache time (5 s).
* ``namespaces: [team-a]`` (a Role and RoleBinding in team-a only): team-a is still admitted; team-b
  with its own, correct, ``regcred`` is denied, because Countersign may not read it (HTTP 403).

When the session's shipped constraint (test_admission.py's ``countersign-verified-images``, which matches
every namespace but three and asks the session's Countersign, which has no credentials for this registry)
is installed, these two namespaces are added to its ``excludedNamespaces`` for the module and removed
after: an operator turning ``workloadCredentials`` on changes that constraint instead of adding one.

Timings of the admission requests are printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from provider.kube.pullsecrets import NEGATIVE_TTL
from tests.support import cosign
from tests.support.admission import (
    PODS,
    Provider,
    apply_constraint,
    constraint,
    deployment,
    install_provider,
    outside_session_constraint,
    pod,
    server_config,
    server_tls,
    start_provider_daemon,
)
from tests.support.auth_registries import ConfiguredDistribution, write_docker_config
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.images import PushedImage, push_image
from tests.support.kube import Cluster, KubectlResult
from tests.support.kube_source import install_chart_crds, service_account_kubeconfig
from tests.support.podspec import helm_template
from tests.support.private_registry import ALICE, dockerconfigjson_secret
from tests.support.registries import free_port

RELEASE = NAMESPACE = "cs-pull"  # the provider's release and namespace
ACCOUNT = f"{RELEASE}-countersign"  # the chart's ServiceAccount name for that release
WORKLOAD_RBAC = f"{RELEASE}-countersign-workload-pull-secrets"
TEAM_A, TEAM_B = "team-a", "team-b"
SECRET = "regcred"
PROVIDER = CONSTRAINT = "countersign-pull"
KIND = "countersignverifiedimages"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def _rbac(namespaces: list[str]) -> list[dict[str, Any]]:
    """The chart's ServiceAccount and RBAC for ``kubernetes.workloadPullSecrets`` with ``namespaces``."""
    values = {
        "kubernetes": {"enabled": True, "workloadPullSecrets": {"enabled": True, "namespaces": namespaces}}
    }
    docs = helm_template(values, release=RELEASE, namespace=NAMESPACE)
    return [d for d in docs if d["kind"] in RBAC_KINDS]


def _pull_secret(namespace: str, host: str, credentials: tuple[str, str]) -> dict[str, Any]:
    return dockerconfigjson_secret(SECRET, namespace, host, credentials)


def _with_pull_secret(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (a Pod or a Deployment) whose pod spec names ``regcred`` in ``imagePullSecrets``."""
    document = copy.deepcopy(document)
    spec = document["spec"]["template"]["spec"] if document["kind"] == "Deployment" else document["spec"]
    spec["imagePullSecrets"] = [{"name": SECRET}]
    return document


@dataclass
class PullBed:
    cluster: Cluster
    registry: ConfiguredDistribution
    cosign_env: CosignEnv
    trusted_key: KeyPair
    directory: Path
    ca: trustme.CA
    config: dict[str, Any]
    provider: Provider

    def restart_provider(self) -> None:
        """A fresh ``countersign serve`` (empty caches) on the same ports, behind the same Provider."""
        self.provider.close()
        self.provider = _start_provider(self.directory, self.ca, self.config)

    def private_image(self, repo: str) -> PushedImage:
        """A new image in the private registry, signed by the trusted key (cosign logs in as alice)."""
        image = push_image(self.registry, repo, "v1", seed=f"e2e-pull-{repo}-{time.time_ns()}")
        cosign.sign_bundle(self.cosign_env, self.trusted_key, self.registry, image)
        return image

    def dry_run(self, document: dict[str, Any]) -> tuple[KubectlResult, float]:
        """``kubectl create --dry-run=server``: admission runs, nothing is stored; (result, seconds)."""
        began = time.monotonic()
        result = self.cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(document))
        return result, time.monotonic() - began


def _start_provider(directory: Path, ca: trustme.CA, config: dict[str, Any]) -> Provider:
    provider, _ = start_provider_daemon("countersign-pull", directory, ca, config, ready_timeout=60)
    return provider


@pytest.fixture(scope="module")
def bed(
    tmp_path_factory: pytest.TempPathFactory,
    cluster: Cluster,
    private_registry: ConfiguredDistribution,
    trusted_key: KeyPair,
) -> Iterator[PullBed]:
    directory = tmp_path_factory.mktemp("pull-countersign")
    ca = server_tls(directory)
    host = private_registry.host
    with CosignEnv(tmp_path_factory.mktemp("pull-cosign")) as cosign_env:
        write_docker_config(cosign_env.docker_config / "config.json", {host: ALICE})
        # The trusted key's files live in the session's cosign environment; signing needs only its paths.
        outside = contextlib.ExitStack()
        provider: Provider | None = None
        try:
            install_chart_crds(cluster)
            for namespace in (NAMESPACE, TEAM_A, TEAM_B):
                cluster.namespace(namespace)
            cluster.apply(_rbac([]))
            cluster.apply([_pull_secret(TEAM_A, host, ALICE)])
            kubeconfig = service_account_kubeconfig(cluster, directory / "kubeconfig", NAMESPACE, ACCOUNT)
            config: dict[str, Any] = {
                "apiVersion": "countersign.dev/v1alpha1",
                "server": server_config(
                    directory, free_port(), free_port(), cluster.pki.gatekeeper_cert_dir / "ca.crt"
                ),
                "registries": {host: {"insecure": True}},  # no credentials of Countersign's own
                "verifiers": {"cosign": {"type": "cosign", "options": cosign.key_options(trusted_key)}},
                "policies": [{"name": "signed", "scopes": ["*"], "allOf": ["cosign"]}],
                "kubernetes": {
                    "enabled": True,
                    "namespace": NAMESPACE,
                    "kubeconfig": str(kubeconfig),
                    "workloadPullSecrets": True,
                },
            }
            provider = _start_provider(directory, ca, config)
            install_provider(cluster, PROVIDER, provider.url("/v1/verify"), provider.ca_bundle)
            match = {
                "kinds": [PODS, {"apiGroups": ["apps"], "kinds": ["Deployment"]}],
                "namespaces": [TEAM_A, TEAM_B],
            }
            document = constraint(CONSTRAINT, PROVIDER, match, deny=True, workloadCredentials=True)
            apply_constraint(cluster, document, "applying the workload-credentials constraint")
            outside.enter_context(outside_session_constraint(cluster, [TEAM_A, TEAM_B]))
            never = pod("probe", TEAM_A, f"{host}/team/never-pushed@sha256:" + "0" * 64)
            cluster.eventually(
                lambda: cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(never)),
                lambda result: not result.ok and f"[{CONSTRAINT}]" in result.stderr,
                what="the workload-credentials constraint in force",
            )
            the_bed = PullBed(
                cluster, private_registry, cosign_env, trusted_key, directory, ca, config, provider
            )
            yield the_bed
            provider = the_bed.provider
        finally:
            outside.close()
            for kind, name in ((KIND, CONSTRAINT), ("providers.externaldata.gatekeeper.sh", PROVIDER)):
                cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")
            for namespace in (TEAM_A, TEAM_B, NAMESPACE):
                cluster.kubectl("delete", "namespace", namespace, "--wait=false")
            cluster.kubectl(
                "delete", "clusterrolebinding,clusterrole", WORKLOAD_RBAC, ACCOUNT, "--ignore-not-found"
            )
            if provider is not None:
                provider.close()


def _report(line: str) -> None:
    print(f"[workload-pull-secrets] {line}")


def _denied_by_us(result: KubectlResult) -> bool:
    return not result.ok and f"[{CONSTRAINT}]" in result.stderr


def test_a_private_image_is_admitted_only_where_its_pull_secret_is(bed: PullBed) -> None:
    image = bed.private_image("team/app")
    in_a = _with_pull_secret(pod("app", TEAM_A, image.pinned))
    in_b = _with_pull_secret(pod("app", TEAM_B, image.pinned))

    # team-b first, nothing cached anywhere: no Secret regcred there, the registry refuses Countersign.
    first_b, first_b_s = bed.dry_run(in_b)
    assert _denied_by_us(first_b), first_b.output
    _report(f"team-b (no Secret), cold: denied in {first_b_s:.2f}s:\n{first_b.stderr.strip()}")
    for expected in (
        f"image verification through the {PROVIDER} provider failed",
        "[registry_auth_failed]",
        f"Secret {TEAM_B}/{SECRET} not found",
        f"image {image.pinned} in containers[c0] has no verdict from {PROVIDER}",
    ):
        assert expected in first_b.stderr, first_b.stderr

    # team-a with its Secret: admitted (eventually: the shipped constraint's exclusion may still be loading).
    began = time.monotonic()
    admitted = bed.cluster.eventually(
        lambda: bed.dry_run(in_a)[0], lambda result: result.ok, timeout=30, what="team-a's Pod admitted"
    )
    _report(
        f"team-a (Secret regcred), cold: admitted after {time.monotonic() - began:.2f}s: "
        + admitted.stdout.strip()
    )
    warm_a, warm_a_s = bed.dry_run(in_a)
    assert warm_a.ok, warm_a.output
    _report(f"team-a again (Gatekeeper's response cache): admitted in {warm_a_s:.2f}s")

    # team-b right after team-a (all that team-a's credentials read is in Countersign's caches, team-a's
    # verdict in Gatekeeper's): still denied, for the same reason.
    after_b, after_b_s = bed.dry_run(in_b)
    assert _denied_by_us(after_b), after_b.output
    assert f"Secret {TEAM_B}/{SECRET} not found" in after_b.stderr, after_b.stderr
    assert "[registry_auth_failed]" in after_b.stderr, after_b.stderr
    _report(f"team-b right after team-a: denied in {after_b_s:.2f}s")

    # Without imagePullSecrets in team-a, the key names none and the ServiceAccount "default" does not
    # exist (no controller-manager here): denied too.
    bare_a, _ = bed.dry_run(pod("bare", TEAM_A, image.pinned))
    assert _denied_by_us(bare_a), bare_a.output
    assert "[registry_auth_failed]" in bare_a.stderr, bare_a.stderr

    # A workload's pod template in team-a: admitted; the same Deployment in team-b: denied.
    deploy_a, deploy_a_s = bed.dry_run(_with_pull_secret(deployment("app", TEAM_A, image.pinned)))
    assert deploy_a.ok, deploy_a.output
    _report(f"team-a Deployment: admitted in {deploy_a_s:.2f}s")
    deploy_b, _ = bed.dry_run(_with_pull_secret(deployment("app", TEAM_B, image.pinned)))
    assert _denied_by_us(deploy_b), deploy_b.output
    assert f"Secret {TEAM_B}/{SECRET} not found" in deploy_b.stderr, deploy_b.stderr

    # team-b creates its Secret: admitted on a retry once Countersign's negative pull-secret cache (5 s)
    # is over; nothing in Gatekeeper has to expire (undecided keys are not cached there).
    bed.cluster.apply([_pull_secret(TEAM_B, bed.registry.host, ALICE)])
    began = time.monotonic()
    bed.cluster.eventually(
        lambda: bed.dry_run(in_b)[0], lambda result: result.ok, timeout=30, what="team-b's Pod admitted"
    )
    waited = time.monotonic() - began
    _report(
        f"team-b after creating its Secret: admitted after {waited:.2f}s (negative TTL {NEGATIVE_TTL:g}s)"
    )
    assert waited <= NEGATIVE_TTL + 3.0


def test_per_namespace_rbac_denies_a_namespace_not_granted(bed: PullBed) -> None:
    """``kubernetes.workloadPullSecrets.namespaces: [team-a]``: team-b's own, correct Secret is not read."""
    bed.cluster.kubectl(
        "delete", "clusterrolebinding,clusterrole", WORKLOAD_RBAC, "--ignore-not-found"
    ).check()
    rbac = _rbac([TEAM_A])
    assert {
        (d["kind"], d["metadata"].get("namespace")) for d in rbac if d["metadata"]["name"] == WORKLOAD_RBAC
    } == {
        ("Role", TEAM_A),
        ("RoleBinding", TEAM_A),
    }
    bed.cluster.apply(rbac)
    bed.cluster.apply([_pull_secret(TEAM_B, bed.registry.host, ALICE)])
    can_i = bed.cluster.kubectl(
        "auth", "can-i", "get", "secrets", "-n", TEAM_B, f"--as=system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
    )
    assert can_i.stdout.strip() == "no", can_i.output
    bed.restart_provider()  # as installed with these values: nothing cached from the cluster-wide grant
    # A new image: Gatekeeper's response cache holds team-a's verdict for the first one.
    image = bed.private_image("team/app-least-privilege")
    in_a = _with_pull_secret(pod("app", TEAM_A, image.pinned))
    in_b = _with_pull_secret(pod("app", TEAM_B, image.pinned))

    admitted = bed.cluster.eventually(
        lambda: bed.dry_run(in_a)[0], lambda result: result.ok, timeout=30, what="team-a's Pod admitted"
    )
    assert admitted.ok
    denied, denied_s = bed.dry_run(in_b)
    assert _denied_by_us(denied), denied.output
    _report(f"team-b (own Secret, no Role): denied in {denied_s:.2f}s:\n{denied.stderr.strip()}")
    for expected in (
        "[registry_auth_failed]",
        f"Secret {TEAM_B}/{SECRET}: the provider may not read it (HTTP 403; see its RBAC)",
    ):
        assert expected in denied.stderr, denied.stderr
