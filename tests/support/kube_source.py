"""What `countersign serve` with ``kubernetes.enabled`` needs from a test cluster: the chart's CRDs, its
RBAC (templates/rbac.yaml) for a ServiceAccount, and a kubeconfig holding that ServiceAccount's token, so
the provider runs with exactly the chart's permissions (out of the cluster); an etcd + kube-apiserver
cluster set up with them (:func:`api_server_cluster`), waiting for a provider process to see a change
(:func:`eventually`), a cosign key Secret and the Verifier that reads it (:func:`cosign_key_secret`,
:func:`cosign_verifier`), and a resource's status and its conditions by type (:func:`resource_status`,
:func:`conditions`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.cosign import KeyPair
from tests.support.kube import Cluster
from tests.support.provider_process import ProviderProcess

__all__ = [
    "CHART_CRDS",
    "api_server_cluster",
    "chart_crds",
    "conditions",
    "cosign_key_secret",
    "cosign_verifier",
    "eventually",
    "install_chart_crds",
    "provider_rbac",
    "resource_status",
    "service_account_kubeconfig",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_CRDS = REPO_ROOT / "charts" / "countersign" / "crds" / "countersign.dev.yaml"
KINDS = ["clusterimagepolicies", "imagepolicies", "verifiers"]


def chart_crds() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions the chart installs (charts/countersign/crds/)."""
    return [d for d in yaml.safe_load_all(CHART_CRDS.read_text()) if d]


def install_chart_crds(cluster: Cluster) -> None:
    """The chart's CRDs applied, returning once the API server serves them (Established)."""
    cluster.apply(chart_crds())
    cluster.kubectl("wait", "--for=condition=established", "crd", "--all", "--timeout=60s").check()


@contextlib.contextmanager
def api_server_cluster(
    directory: Path, namespaces: Iterable[str], rbac: list[dict[str, Any]]
) -> Iterator[Cluster]:
    """etcd and kube-apiserver only (no Gatekeeper: nothing goes through admission), with the chart's
    CRDs, ``namespaces`` and the ``rbac`` objects; stopped at exit."""
    cluster = Cluster(directory)
    try:
        cluster.etcd.start()
        cluster.apiserver.start()
        install_chart_crds(cluster)
        for namespace in namespaces:
            cluster.namespace(namespace)
        cluster.apply(rbac)
        yield cluster
    finally:
        cluster.stop()


#: The provider's namespace and ServiceAccount in the kube integration tests (the chart's defaults).
PROVIDER_NAMESPACE = PROVIDER_ACCOUNT = "countersign"


def provider_rbac(namespace: str = PROVIDER_NAMESPACE, name: str = PROVIDER_ACCOUNT) -> list[dict[str, Any]]:
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


def service_account_kubeconfig(
    cluster: Cluster, path: Path, namespace: str = PROVIDER_NAMESPACE, name: str = PROVIDER_ACCOUNT
) -> Path:
    """A kubeconfig at ``path`` with a one-hour token of the ServiceAccount ``namespace``/``name``."""
    token = cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h").check().output
    config = cluster.kubeconfig_document(name, {"token": token.strip()})
    path.write_text(yaml.safe_dump(config))
    return path


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, provider: ProviderProcess, within: float = 15.0
) -> float:
    """Seconds until ``check()`` returns True (asked every 0.2 s); after ``within`` seconds an
    AssertionError naming ``what``, the last answer and the provider's log."""
    began = time.monotonic()
    last: Any = None
    while time.monotonic() - began < within:
        last = await check()
        if last is True:
            return time.monotonic() - began
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not within {within:g}s (last: {last!r})\n{provider.log_tail()}")


def cosign_key_secret(name: str, namespace: str, key: KeyPair) -> dict[str, Any]:
    """A Secret ``namespace``/``name`` holding ``key``'s public key as ``cosign.pub``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"cosign.pub": base64.b64encode(key.public_pem).decode()},
    }


def cosign_verifier(name: str, secret: str) -> dict[str, Any]:
    """A cosign Verifier ``name`` (no transparency log) whose one key is ``cosign.pub`` of the Secret
    ``secret`` (:func:`cosign_key_secret`) in the provider's namespace."""
    return {
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "Verifier",
        "metadata": {"name": name},
        "spec": {
            "type": "cosign",
            "options": {"keys": [{"name": "team", "path": "keys/cosign.pub"}], "transparencyLog": "skip"},
            "files": {"keys/cosign.pub": {"secretKeyRef": {"name": secret, "key": "cosign.pub"}}},
        },
    }


def resource_status(cluster: Cluster, kind: str, name: str) -> dict[str, Any]:
    """The ``status`` of the resource ``kind``/``name`` (empty while nothing wrote one)."""
    found: dict[str, Any] = cluster.get(kind, name).get("status") or {}
    return found


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A status's conditions by their type."""
    return {c["type"]: c for c in status.get("conditions", [])}
