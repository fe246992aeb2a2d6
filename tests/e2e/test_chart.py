"""The Helm chart against the test bed's real kube-apiserver (with Gatekeeper's CRDs, so Provider objects are
known): every rendered object passes server-side validation, the Pod meets the `restricted` Pod Security
Standard, and `helm install` reads the Providers' caBundle from the serving Secret. Rendering details are
checked without a cluster in tests/integration/test_chart.py."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.integration.test_chart import CA_PEM, CHART, FULL_VALUES, INLINE_CA_VALUES
from tests.support.kube import IGNORE_LABEL, Cluster
from tests.support.tools import require_tool

NAMESPACE = "countersign-chart"
RELEASE = "countersign"

Doc = dict[str, Any]

VALUE_SETS: dict[str, Doc] = {"default": {}, "full": FULL_VALUES, "inline-client-ca": INLINE_CA_VALUES}


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> str:
    """Countersign's namespace, as an operator would set it up: Gatekeeper's webhooks skip it (Countersign
    must not depend on itself), and the `restricted` Pod Security Standard is enforced and warned about."""
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": NAMESPACE,
                    "labels": {
                        IGNORE_LABEL: "yes",
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/warn": "restricted",
                    },
                },
            }
        ]
    )
    return NAMESPACE


def helm(
    cluster: Cluster, tmp_path: Path, *args: str, values: Doc | None = None
) -> subprocess.CompletedProcess[str]:
    """The pinned helm with the test bed's kubeconfig, its own caches, and no proxy."""
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
    }
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        env.pop(variable, None)
    command = [str(require_tool("helm")), *args]
    stdin = None
    if values is not None:
        command += ["--values", "-"]
        stdin = yaml.safe_dump(values)
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=120, env=env, check=False
    )


def render(cluster: Cluster, tmp_path: Path, values: Doc) -> str:
    done = helm(cluster, tmp_path, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, values=values)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_object_passes_server_side_validation(
    cluster: Cluster, namespace: str, tmp_path: Path, name: str
) -> None:
    manifest = render(cluster, tmp_path, VALUE_SETS[name])
    kinds = {d["kind"] for d in yaml.safe_load_all(manifest) if d}
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget"} <= kinds
    if name == "full":
        assert {"Provider", "NetworkPolicy"} <= kinds
    # Strict field validation: an unknown or misplaced field anywhere is an error, not a warning.
    done = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifest)
    assert done.ok, done.output
    assert "PodSecurity" not in done.stderr, done.stderr
    assert "Warning" not in done.stderr, done.stderr


def test_pod_is_admitted_under_the_restricted_pod_security_standard(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    docs = [d for d in yaml.safe_load_all(render(cluster, tmp_path, FULL_VALUES)) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "countersign-pod-security", "namespace": namespace, **template["metadata"]},
        "spec": template["spec"],
    }
    # Pod Security admission enforces on Pods (for Deployments it only warns), so create one, dry run.
    done = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod))
    assert done.ok, done.output

    # The check is real: the same Pod with a root user is refused.
    pod["spec"]["securityContext"]["runAsUser"] = 0
    refused = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod))
    assert not refused.ok
    assert "violates PodSecurity" in refused.stderr


def test_helm_install_takes_the_ca_bundle_from_the_serving_secret(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert(f"{RELEASE}.{namespace}.svc")
    ca_bundle = base64.b64encode(ca.cert_pem.bytes()).decode()
    secret: Doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "countersign-tls", "namespace": namespace},
        "data": {
            "tls.crt": base64.b64encode(leaf.cert_chain_pems[0].bytes()).decode(),
            "tls.key": base64.b64encode(leaf.private_key_pem.bytes()).decode(),
            "ca.crt": ca_bundle,
        },
    }
    cluster.apply([secret])
    values = {
        # Names of their own: the admission tests' Providers (not Helm's) may already exist in this cluster.
        "gatekeeper": {
            "providers": {
                "enabled": True,
                "verify": {"name": "chart-test-verify"},
                "mutate": {"name": "chart-test-mutate"},
            }
        },
        "mtls": {"clientCASecret": "", "clientCA": CA_PEM},
    }
    done = helm(
        cluster,
        tmp_path,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--dry-run=server",
        values=values,
    )
    assert done.returncode == 0, done.stderr
    manifest, _, notes = done.stdout.partition("NOTES:")
    providers = [
        d for d in yaml.safe_load_all(manifest.split("MANIFEST:", 1)[1]) if d and d["kind"] == "Provider"
    ]
    assert {p["metadata"]["name"] for p in providers} == {"chart-test-verify", "chart-test-mutate"}
    for provider in providers:
        assert provider["spec"]["caBundle"] == ca_bundle
        assert provider["spec"]["url"].startswith(f"https://{RELEASE}.{namespace}.svc:8443/v1/")
    assert f"https://{RELEASE}.{namespace}.svc:8443/v1/verify" in notes
    assert "installed by the chart (chart-test-verify, chart-test-mutate)" in notes
