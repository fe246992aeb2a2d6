"""Workload pull secrets against the real kube-apiserver and a registry that requires authentication.

A private image (distribution with ``htpasswd`` Basic auth, signed by the real cosign) is verified by
`countersign serve` (a process, ``kubernetes.workloadPullSecrets: true``) through its v1 keys, with a
ServiceAccount token bound to the chart's RBAC (the Kubernetes source's rules plus
templates/rbac-workload.yaml's cluster-wide ``get`` on secrets and serviceaccounts). Countersign itself has
no credentials for the registry. Namespace ``team-a`` holds a ``kubernetes.io/dockerconfigjson`` Secret;
``team-b`` holds none:

* a v1 key of team-a naming the Secret is allowed;
* the same image for team-b is undecided (registry_auth_failed, the Secret named as missing), also
  right after team-a's verdict and in the same request (no verdict, tag, manifest, blob or token
  obtained with team-a's secret serves team-b);
* a v1 key naming no Secret uses its ServiceAccount's ``imagePullSecrets``;
* a Secret of team-b with a wrong password does not borrow team-a's verdict or reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import cosign
from tests.support.auth_registries import ConfiguredDistribution
from tests.support.cosign import KeyPair
from tests.support.images import PushedImage
from tests.support.kube import Cluster
from tests.support.kube_source import (
    PROVIDER_NAMESPACE,
    api_server_cluster,
    provider_rbac,
    service_account_kubeconfig,
)
from tests.support.private_registry import (
    ALICE,
    dockerconfigjson_secret,
    signed_private_image,
)
from tests.support.provider_process import ProviderProcess, start_provider

pytestmark = pytest.mark.integration

TEAM_A, TEAM_B = "team-a", "team-b"
SECRET = "regcred"

NAMESPACE = PROVIDER_NAMESPACE


def _workloadprovider_rbac() -> list[dict[str, Any]]:
    """charts/countersign/templates/rbac-workload.yaml with `namespaces: []`: get, cluster-wide."""
    name = "countersign-workload-pull-secrets"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "countersign", "namespace": NAMESPACE}],
        },
    ]


def _pull_secret(
    namespace: str, host: str, credentials: tuple[str, str], *, name: str = SECRET
) -> dict[str, Any]:
    return dockerconfigjson_secret(name, namespace, host, credentials)


def _service_account(namespace: str, name: str, secrets: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
        "imagePullSecrets": [{"name": s} for s in secrets],
    }


def v1_key(image: str, namespace: str, *, secrets: list[str], service_account: str = "default") -> str:
    """A v1 key as the template's `workloadCredentials` sends it (json.marshal: sorted keys, no spaces)."""
    doc = {
        "image": image,
        "imagePullSecrets": secrets,
        "namespace": namespace,
        "serviceAccount": service_account,
        "v": 1,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd and kube-apiserver only; the provider's ServiceAccount bound to the chart's RBAC."""
    namespaces, rbac = (NAMESPACE, TEAM_A, TEAM_B), provider_rbac() + _workloadprovider_rbac()
    with api_server_cluster(tmp_path_factory.mktemp("kube"), namespaces, rbac) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def private_image(
    private_registry: ConfiguredDistribution, trusted_key: KeyPair, tmp_path_factory: pytest.TempPathFactory
) -> PushedImage:
    """An image in the private registry, signed by the real cosign (which logs in as alice)."""
    return signed_private_image(
        private_registry,
        trusted_key,
        tmp_path_factory.mktemp("cosign-private"),
        "team/app",
        seed="workload-pull-secrets",
    )


async def _post(provider: ProviderProcess, keys: list[str]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        body: dict[str, Any] = (await provider.post(session, keys))["response"]
    return body


def _allowed(response: dict[str, Any], key: str) -> bool:
    """True only for a decided `allowed: true` item of `key`; an undecided key (left out of items, named
    in systemError) or a denial is False."""
    for item in response.get("items", []):
        if item["key"] == key:
            value = item.get("value")
            return isinstance(value, dict) and value.get("allowed") is True and not item.get("error")
    return False


def _refused(response: dict[str, Any], key: str, *why: str) -> bool:
    """`key` undecided because the registry refused access: no item, named in systemError with `why`."""
    error = response.get("systemError", "")
    return (
        not [i for i in response.get("items", []) if i["key"] == key]
        and f"{key}: " in error
        and "[registry_auth_failed]" in error
        and all(w in error for w in why)
    )


def _explain(response: dict[str, Any], key: str) -> str:
    items = [i for i in response.get("items", []) if i["key"] == key]
    return f"items for the key: {items}; systemError: {response.get('systemError', '')!r}"


async def test_a_private_image_verifies_with_its_namespaces_pull_secret_only(
    cluster: Cluster,
    private_registry: ConfiguredDistribution,
    private_image: PushedImage,
    trusted_key: KeyPair,
    tmp_path: Path,
) -> None:
    host = private_registry.host
    image = f"{host}/{private_image.repository}@{private_image.digest}"
    cluster.apply(
        [
            _pull_secret(TEAM_A, host, ALICE),
            _service_account(TEAM_A, "builder", [SECRET]),
            _service_account(TEAM_B, "builder", [SECRET]),
        ]
    )
    kubeconfig = service_account_kubeconfig(cluster, tmp_path / "kubeconfig")
    provider = start_provider(
        {
            "apiVersion": "countersign.dev/v1alpha1",
            "registries": {host: {"insecure": True}},  # no credentials of Countersign's own
            "verifiers": {"signed": {"type": "cosign", "options": cosign.key_options(trusted_key)}},
            "policies": [{"name": "signed", "scopes": ["*"], "allOf": ["signed"]}],
            "kubernetes": {
                "enabled": True,
                "namespace": NAMESPACE,
                "kubeconfig": str(kubeconfig),
                "workloadPullSecrets": True,
            },
        },
        tmp_path / "provider",
    )
    a = v1_key(image, TEAM_A, secrets=[SECRET])
    b = v1_key(image, TEAM_B, secrets=[SECRET])
    try:
        # team-b first (nothing cached yet): its Secret does not exist, the registry refuses.
        first_b = await _post(provider, [b])
        assert _refused(first_b, b, "Secret team-b/regcred not found"), _explain(first_b, b)

        # team-a with its Secret: allowed.
        response = await _post(provider, [a])
        assert _allowed(response, a), _explain(response, a) + "\n" + provider.log_tail()

        # team-b right after team-a (everything team-a read is cached): still not allowed, alone or in the
        # same request as team-a's key; and team-a's own answer stays allowed.
        after = await _post(provider, [b])
        assert _refused(after, b, "Secret team-b/regcred not found"), _explain(after, b)
        both = await _post(provider, [a, b])
        assert _allowed(both, a), _explain(both, a)
        assert _refused(both, b, "Secret team-b/regcred not found"), _explain(both, b)

        # Without a v1 key (Countersign's own credentials: none): not allowed either.
        bare = await _post(provider, [image, f"[{TEAM_A}]{image}"])
        for key in (image, f"[{TEAM_A}]{image}"):
            assert _refused(bare, key), _explain(bare, key)

        # A key naming no Secret: the ServiceAccount's imagePullSecrets. team-a's builder lists regcred;
        # team-b's builder lists a regcred that does not exist there; team-a's missing "default" has none.
        via_sa = v1_key(image, TEAM_A, secrets=[], service_account="builder")
        via_sa_b = v1_key(image, TEAM_B, secrets=[], service_account="builder")
        no_sa = v1_key(image, TEAM_A, secrets=[])
        response = await _post(provider, [via_sa, via_sa_b, no_sa])
        assert _allowed(response, via_sa), _explain(response, via_sa) + "\n" + provider.log_tail()
        assert _refused(response, via_sa_b, "Secret team-b/regcred not found"), _explain(response, via_sa_b)
        assert _refused(response, no_sa), _explain(response, no_sa)

        # team-b gets a Secret for the registry, with a wrong password: still refused (its credentials'
        # identity differs from team-a's, so nothing team-a read or decided applies). Another name than
        # regcred: Countersign remembers team-b/regcred missing for a few seconds (its negative TTL).
        cluster.apply([_pull_secret(TEAM_B, host, (ALICE[0], "wrong-password"), name="wrongcred")])
        wrong = v1_key(image, TEAM_B, secrets=["wrongcred"])
        response = await _post(provider, [wrong])
        assert _refused(response, wrong), _explain(response, wrong)
        assert "not found" not in response["systemError"], _explain(response, wrong)
    finally:
        provider.stop()
