"""What `countersign serve` with ``kubernetes.enabled`` needs from a test cluster: the chart's CRDs, its
RBAC (templates/rbac.yaml) for a ServiceAccount, and a kubeconfig holding that ServiceAccount's token, so
the provider runs with exactly the chart's permissions (out of the cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.kube import Cluster

__all__ = ["CHART_CRDS", "chart_crds", "provider_rbac", "service_account_kubeconfig"]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_CRDS = REPO_ROOT / "charts" / "countersign" / "crds" / "countersign.dev.yaml"
KINDS = ["clusterimagepolicies", "imagepolicies", "verifiers"]


def chart_crds() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions the chart installs (charts/countersign/crds/)."""
    return [d for d in yaml.safe_load_all(CHART_CRDS.read_text()) if d]


def provider_rbac(namespace: str, name: str) -> list[dict[str, Any]]:
    """The chart's rules (templates/rbac.yaml) for a ServiceAccount ``name`` in ``namespace`` (the
    provider's), and nothing more; every object is called ``name``."""
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": ["countersign.dev"], "resources": KINDS, "verbs": ["get", "list", "watch"]},
                {
                    "apiGroups": ["countersign.dev"],
                    "resources": [f"{k}/status" for k in KINDS],
                    "verbs": ["patch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [subject],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [
                {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [subject],
        },
    ]


def service_account_kubeconfig(cluster: Cluster, path: Path, namespace: str, name: str) -> Path:
    """A kubeconfig at ``path`` with a one-hour token of the ServiceAccount ``namespace``/``name``."""
    token = cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h").check().output
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {
                    "server": f"https://127.0.0.1:{cluster.apiserver_port}",
                    "certificate-authority": str(cluster.pki.cluster_ca_file),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token.strip()}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": name}}],
        "current-context": "e2e",
    }
    path.write_text(yaml.safe_dump(config))
    return path
