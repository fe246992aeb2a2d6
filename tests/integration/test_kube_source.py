"""The Kubernetes source against the real kube-apiserver: `countersign serve` (a process) with a token of a
ServiceAccount bound only to the chart's RBAC rules, its policies and verifiers from custom resources.

* a ClusterImagePolicy created changes /v1/verify answers within seconds;
* an invalid edit gets status Invalid naming the field path, and the previous spec keeps serving;
* a rotated key Secret applies without a restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import cosign
from tests.support.admission import signed_image
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.kube import Cluster
from tests.support.kube_source import (
    PROVIDER_NAMESPACE,
    api_server_cluster,
    conditions,
    cosign_key_secret,
    cosign_verifier,
    eventually,
    provider_rbac,
    resource_status,
    service_account_kubeconfig,
)
from tests.support.provider_process import ProviderProcess, start_provider
from tests.support.registries import Registry

pytestmark = pytest.mark.integration

NAMESPACE = PROVIDER_NAMESPACE


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd and kube-apiserver only (no Gatekeeper: nothing here goes through admission)."""
    with api_server_cluster(tmp_path_factory.mktemp("kube"), [NAMESPACE], provider_rbac()) as cluster:
        yield cluster


def _key_secret(key: KeyPair) -> dict[str, Any]:
    return cosign_key_secret("cosign-key", NAMESPACE, key)


def _verifier() -> dict[str, Any]:
    return cosign_verifier("cosign", "cosign-key")


def _policy(verifiers: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": "signed"},
        "spec": {"scopes": ["*"], "allOf": verifiers},
    }


async def _verdict(provider: ProviderProcess, key: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        body = await provider.post(session, [key])
    items = body["response"]["items"]
    assert len(items) == 1, body
    value: dict[str, Any] = items[0]["value"]
    return value


async def test_resources_drive_verification_status_and_secret_rotation(
    cluster: Cluster, olareg_registry: Registry, cosign_env: CosignEnv, trusted_key: KeyPair, tmp_path: Path
) -> None:
    image = signed_image(olareg_registry, cosign_env, trusted_key, "kube/signed", sbom=False)
    key = f"{olareg_registry.host}/kube/signed@{image.digest}"
    other = cosign.generate_key_pair(cosign_env, "rotated")
    cluster.apply([_key_secret(trusted_key)])
    kubeconfig = service_account_kubeconfig(cluster, tmp_path / "kubeconfig")
    provider = start_provider(
        {
            "apiVersion": "countersign.dev/v1alpha1",
            "registries": {olareg_registry.host: {"insecure": True}},
            "kubernetes": {"enabled": True, "namespace": NAMESPACE, "kubeconfig": str(kubeconfig)},
        },
        tmp_path / "provider",
    )
    try:
        # No policy anywhere yet: denied, from its name alone.
        first = await _verdict(provider, key)
        assert first["allowed"] is False and first["reason"] == "no_policy", first

        # A ClusterImagePolicy (and the Verifier it needs, its key from a Secret) changes the answer.
        cluster.apply([_verifier(), _policy(["cosign"])])

        async def allowed() -> Any:
            value = await _verdict(provider, key)
            return value["allowed"] is True or value

        took = await eventually(allowed, "the ClusterImagePolicy applied", provider)
        assert took < 10.0

        def status() -> dict[str, Any]:
            return resource_status(cluster, "clusterimagepolicies", "signed")

        def condition_true(kind: str) -> Callable[[], Awaitable[Any]]:
            async def check() -> Any:
                s = status()
                return conditions(s).get(kind, {}).get("status") == "True" or s

            return check

        await eventually(condition_true("Ready"), "status Ready on the ClusterImagePolicy", provider)
        serving = status()
        assert serving["summary"] == "all of [cosign]"
        assert serving["servingGeneration"] == serving["observedGeneration"] == 1

        # An invalid edit: status Invalid at the field path; generation 1 keeps serving.
        cluster.apply([_policy(["cosign", "nonexistent"])])

        await eventually(condition_true("Invalid"), "status Invalid on the ClusterImagePolicy", provider)
        refused = status()
        by_type = {c["type"]: c for c in refused["conditions"]}
        assert "spec.allOf[1]" in by_type["Invalid"]["message"], refused
        assert "nonexistent" in by_type["Invalid"]["message"]
        assert by_type["Ready"]["status"] == "False"
        assert refused["observedGeneration"] == 2 and refused["servingGeneration"] == 1
        assert (await _verdict(provider, key))["allowed"] is True  # the previous spec still serves

        # The key Secret rotated to another key: the signature no longer verifies, without a restart.
        pid = provider.process.pid
        cluster.apply([_key_secret(other)])

        async def denied() -> Any:
            value = await _verdict(provider, key)
            return value["allowed"] is False or value

        await eventually(denied, "the rotated key applied", provider)
        assert provider.process.poll() is None and provider.process.pid == pid
    finally:
        provider.stop()
