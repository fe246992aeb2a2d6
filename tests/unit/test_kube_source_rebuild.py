"""KubeSource rebuilds the engine only when what it serves changed.

A Secret or ConfigMap of the provider's namespace that nothing references, or a resource's own status
write, recomposes (statuses are re-evaluated) but does not rebuild the engine (whose caches would empty);
a referenced Secret rotated, a policy changed, the operator's pull-secret credentials changed or the file
changed do. The informers are replaced by their stores (the objects an informer would hold); no API.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provider.config import load_config
from provider.kube.api import KubeApiError
from provider.kube.informer import LEFT_OUT
from provider.kube.source import KubeSource
from provider.metrics import Metrics
from provider.reload import ConfigReloader

NAMESPACE = "countersign"
FILE = {
    "kubernetes": {"enabled": True, "namespace": NAMESPACE, "pullSecrets": ["operator-creds"]},
    "verifiers": {"pin": {"type": "digest-pin"}},
    "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pin"]}],
}


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def secret(name: str, data: dict[str, str], version: int, kind: str = "Opaque") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "resourceVersion": str(version),
        },
        "type": kind,
        "data": {k: b64(v) for k, v in data.items()},
    }


def docker_config(password: str) -> str:
    return json.dumps({"auths": {"reg.test": {"auth": b64(f"user:{password}")}}})


def verifier(version: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "keys", "uid": "uid-v", "generation": 1, "resourceVersion": str(version)},
        "spec": {"type": "digest-pin", "files": {"trust": {"secretKeyRef": {"name": "trust", "key": "k"}}}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def policy(verifiers: list[str], generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "app",
            "uid": "uid-p",
            "generation": generation,
            "resourceVersion": str(generation),
        },
        "spec": {"scopes": ["reg.test/app"], "allOf": verifiers},
    }


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[KubeSource]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(FILE))
    config = load_config(path)
    metrics = Metrics()
    src = KubeSource(config, path, metrics, runtime_dir=tmp_path / "run")
    src._make_runtime_dir()
    src.reloader = ConfigReloader(config, metrics, path=path, loader=src.load)
    src.stores = {
        "clusterimagepolicies": {"app": policy(["keys"])},
        "verifiers": {"keys": verifier(1)},
        "imagepolicies": {},
        "secrets": {
            f"{NAMESPACE}/trust": secret("trust", {"k": "one"}, 1),
            f"{NAMESPACE}/unrelated": secret("unrelated", {"x": "a"}, 1),
            f"{NAMESPACE}/operator-creds": secret(
                "operator-creds",
                {".dockerconfigjson": docker_config("p1")},
                1,
                "kubernetes.io/dockerconfigjson",
            ),
        },
        "configmaps": {f"{NAMESPACE}/other": {"metadata": {"name": "other", "resourceVersion": "1"}}},
    }
    await src.refresh()
    assert src.reloader.reloads == 1 and src.reloader.current is not None
    try:
        yield src
    finally:
        await src.reloader.stop()


def update(src: KubeSource, store: str, key: str, obj: dict[str, Any]) -> None:
    src.stores = {**src.stores, store: {**src.stores[store], key: obj}}


async def test_unreferenced_changes_do_not_rebuild(source: KubeSource) -> None:
    assert source.reloader is not None
    engine = source.reloader.current.engine if source.reloader.current else None
    update(source, "secrets", f"{NAMESPACE}/unrelated", secret("unrelated", {"x": "b"}, 2))
    await source.refresh()
    update(source, "configmaps", f"{NAMESPACE}/new", {"metadata": {"name": "new", "resourceVersion": "7"}})
    await source.refresh()
    # A status write (the provider's own) bumps the resourceVersion, not the generation.
    update(source, "verifiers", "keys", verifier(2, status={"observedGeneration": 1}))
    await source.refresh()
    assert source.reloader.reloads == 1 and source.unchanged == 3
    assert source.reloader.current is not None and source.reloader.current.engine is engine


async def test_served_changes_rebuild(source: KubeSource) -> None:
    assert source.reloader is not None
    fingerprint = source.reloader.current.config.fingerprint if source.reloader.current else ""
    # The referenced key Secret rotated: the verifier's files differ.
    update(source, "secrets", f"{NAMESPACE}/trust", secret("trust", {"k": "two"}, 2))
    await source.refresh()
    assert source.reloader.reloads == 2 and source.unchanged == 0
    assert source.reloader.current is not None and source.reloader.current.config.fingerprint != fingerprint
    # The operator's pull secret rotated: the credentials differ (not part of the fingerprint).
    creds = secret(
        "operator-creds", {".dockerconfigjson": docker_config("p2")}, 2, "kubernetes.io/dockerconfigjson"
    )
    update(source, "secrets", f"{NAMESPACE}/operator-creds", creds)
    await source.refresh()
    assert source.reloader.reloads == 3
    (docker,) = source.reloader.current.config.docker_configs
    assert "p2" not in docker.read_text() and b64("user:p2") in docker.read_text()
    # A policy edited.
    update(source, "clusterimagepolicies", "app", policy(["keys", "pin"], generation=2))
    await source.refresh()
    assert source.reloader.reloads == 4
    # The file changed: rebuilt (the reloader's own watch; SIGHUP forces the same).
    assert source.reloader.path is not None
    source.reloader.path.write_text(yaml.safe_dump({**FILE, "cache": {"verdictTTL": 77}}))
    assert await source.reloader.reload() is True and source.reloader.reloads == 5
    assert source.unchanged == 0


async def test_a_left_out_secret_is_named_with_its_reason_and_nothing_crashes(source: KubeSource) -> None:
    """A Secret the informer left out (over the byte bounds) reaches a Verifier naming it as its reason."""
    assert source.reloader is not None
    reason = "3000000 bytes, more than the 2097152 bytes held of one object"
    placeholder = {
        "metadata": {"name": "trust", "namespace": NAMESPACE, "uid": "uid-trust", "resourceVersion": "9"},
        LEFT_OUT: reason,
    }
    update(source, "secrets", f"{NAMESPACE}/trust", placeholder)
    await source.refresh()
    assert source._composition is not None
    status = source._composition.statuses["uid-v"]
    assert not status.valid
    ((path, message),) = status.errors
    assert path == "spec.files['trust']" and f"Secret {NAMESPACE}/trust is not read: {reason}" in message
    # The same object held again (a relist found room), same resourceVersion: composed again, valid.
    update(source, "secrets", f"{NAMESPACE}/trust", secret("trust", {"k": "one"}, 9))
    await source.refresh()
    assert source._composition.statuses["uid-v"].valid


def sample(source: KubeSource, name: str, **labels: str) -> float | None:
    return source.metrics.registry.get_sample_value(name, labels)


async def test_metrics_count_compositions_resource_states_and_status_write_failures(
    source: KubeSource,
) -> None:
    assert sample(source, "countersign_kube_compositions_total", result="rebuilt") == 1
    assert sample(source, "countersign_kube_resources", kind="Verifier", state="ready") == 1
    assert sample(source, "countersign_kube_resources", kind="ClusterImagePolicy", state="ready") == 1
    assert sample(source, "countersign_kube_resources", kind="ImagePolicy", state="ready") == 0
    update(source, "secrets", f"{NAMESPACE}/unrelated", secret("unrelated", {"x": "b"}, 2))
    await source.refresh()
    assert sample(source, "countersign_kube_compositions_total", result="unchanged") == 1
    # The policy edited to name a verifier that does not exist: refused, generation 1 keeps serving (what
    # serves is the same: not rebuilt).
    update(source, "clusterimagepolicies", "app", policy(["keys", "missing"], generation=2))
    await source.refresh()
    assert sample(source, "countersign_kube_compositions_total", result="unchanged") == 2
    assert sample(source, "countersign_kube_resources", kind="ClusterImagePolicy", state="ready") == 0
    assert sample(source, "countersign_kube_resources", kind="ClusterImagePolicy", state="invalid") == 1
    # A new policy that was never valid: nothing of it serves.
    other = policy(["missing"])
    other["metadata"] |= {"name": "other", "uid": "uid-o"}
    other["spec"]["scopes"] = ["reg.test/other"]
    update(source, "clusterimagepolicies", "other", other)
    await source.refresh()
    assert sample(source, "countersign_kube_resources", kind="ClusterImagePolicy", state="unavailable") == 1

    # The file broken: the composition fails (the old generation keeps serving).
    assert source.reloader is not None and source.reloader.path is not None
    source.reloader.path.write_text("kubernetes: [")
    assert await source.reloader.reload() is False
    assert sample(source, "countersign_kube_compositions_total", result="failed") == 1

    class FailingApi:
        async def patch_status(self, path: str, body: Any) -> dict[str, Any]:
            raise KubeApiError(500, "etcd is unhappy")

    source.api = FailingApi()  # type: ignore[assignment]
    await source.write_statuses()
    assert (
        sample(source, "countersign_kube_status_write_failures_total", kind="ClusterImagePolicy") or 0
    ) >= 1
    assert sample(source, "countersign_kube_status_write_failures_total", kind="Verifier") == 1


async def test_a_pull_secret_problem_is_logged_once_per_change_of_state(
    source: KubeSource, caplog: pytest.LogCaptureFixture
) -> None:
    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "kubernetes.pullSecrets" in r.getMessage()]

    key = f"{NAMESPACE}/operator-creds"
    with caplog.at_level(logging.INFO, logger="provider.kube.source"):
        source.stores = {
            **source.stores,
            "secrets": {k: v for k, v in source.stores["secrets"].items() if k != key},
        }
        await source.refresh()
        for version in range(2, 5):  # other changes recompose: the missing Secret is not logged again
            update(
                source, "secrets", f"{NAMESPACE}/unrelated", secret("unrelated", {"x": str(version)}, version)
            )
            await source.refresh()
        assert lines() == [f"kubernetes.pullSecrets: Secret {key} not found"]
        update(source, "secrets", key, secret("operator-creds", {"other": "x"}, 5))  # another problem
        await source.refresh()
        update(source, "secrets", f"{NAMESPACE}/unrelated", secret("unrelated", {"x": "9"}, 9))
        await source.refresh()
        assert lines()[1:] == [f"kubernetes.pullSecrets: Secret {key} has no .dockerconfigjson"]
        creds = secret("operator-creds", {".dockerconfigjson": docker_config("p3")}, 6)
        update(source, "secrets", key, creds)
        await source.refresh()
        assert lines()[2:] == [f"kubernetes.pullSecrets: Secret {key} is read again"]
    assert source.reloader is not None and source.reloader.current is not None
    (docker,) = source.reloader.current.config.docker_configs
    assert b64("user:p3") in docker.read_text()
