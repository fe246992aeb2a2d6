"""The Kubernetes source's Secrets, ConfigMaps and start-up against the real kube-apiserver, `countersign
serve` (a process) with a token of a ServiceAccount bound only to the chart's RBAC rules:

* `kubernetes.pullSecrets`: the operator's registry credentials from a dockerconfigjson Secret of the
  provider's namespace open a registry that requires authentication; the Secret rotated to a wrong
  password closes it again, without a restart;
* a notation Verifier whose trust policy and trust store come from ConfigMap directory sources (the real
  notation CLI signs); the trust store's ConfigMap rotated to another root denies; the materialized file
  directories nothing serves any more are removed;
* /readyz is 503 while the API server cannot be reached at start (SIGHUP included), and 200 once it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support import cosign, notation
from tests.support.auth_registries import ConfiguredDistribution
from tests.support.cosign import KeyPair
from tests.support.images import PushedImage, push_image
from tests.support.kube import Cluster
from tests.support.kube_source import (
    PROVIDER_NAMESPACE,
    api_server_cluster,
    eventually,
    provider_rbac,
    service_account_kubeconfig,
)
from tests.support.notation import NotationEnv, SigningChain
from tests.support.pod import pipe
from tests.support.private_registry import (
    ALICE,
    dockerconfigjson_secret,
    signed_private_image,
)
from tests.support.provider_process import ProviderProcess, start_provider
from tests.support.registries import LOOPBACK, Registry, free_port
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

OPERATOR_SECRET = "operator-regcred"

NAMESPACE = PROVIDER_NAMESPACE


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd and kube-apiserver only (no Gatekeeper: nothing here goes through admission)."""
    with api_server_cluster(tmp_path_factory.mktemp("kube"), [NAMESPACE], provider_rbac()) as cluster:
        yield cluster


async def _post(provider: ProviderProcess, keys: list[str]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        body: dict[str, Any] = (await provider.post(session, keys))["response"]
    return body


def _value(response: dict[str, Any], key: str) -> dict[str, Any] | None:
    for item in response.get("items", []):
        if item["key"] == key and isinstance(item.get("value"), dict):
            value: dict[str, Any] = item["value"]
            return value
    return None


def _allowed(response: dict[str, Any], key: str) -> bool:
    value = _value(response, key)
    return value is not None and value.get("allowed") is True


# --- kubernetes.pullSecrets ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_image(
    private_registry: ConfiguredDistribution, trusted_key: KeyPair, tmp_path_factory: pytest.TempPathFactory
) -> PushedImage:
    """An image in the private registry, signed by the real cosign (which logs in as alice)."""
    return signed_private_image(
        private_registry,
        trusted_key,
        tmp_path_factory.mktemp("cosign-private"),
        "operator/app",
        seed="kube-operator-pull-secrets",
    )


def _docker_secret(host: str, credentials: tuple[str, str]) -> dict[str, Any]:
    return dockerconfigjson_secret(OPERATOR_SECRET, NAMESPACE, host, credentials)


async def test_operator_pull_secret_opens_the_registry_and_its_rotation_applies_without_restart(
    cluster: Cluster,
    private_registry: ConfiguredDistribution,
    private_image: PushedImage,
    trusted_key: KeyPair,
    tmp_path: Path,
) -> None:
    host = private_registry.host
    key = f"{host}/{private_image.repository}@{private_image.digest}"
    cluster.apply([_docker_secret(host, ALICE)])
    kubeconfig = service_account_kubeconfig(cluster, tmp_path / "kubeconfig")
    provider = start_provider(
        {
            "apiVersion": "countersign.dev/v1alpha1",
            "registries": {host: {"insecure": True}},  # no credentials in the file
            "verifiers": {"signed": {"type": "cosign", "options": cosign.key_options(trusted_key)}},
            "policies": [{"name": "private", "scopes": [f"{host}/*"], "allOf": ["signed"]}],
            "kubernetes": {
                "enabled": True,
                "namespace": NAMESPACE,
                "kubeconfig": str(kubeconfig),
                "pullSecrets": [OPERATOR_SECRET],
            },
        },
        tmp_path / "provider",
    )
    try:
        response = await _post(provider, [key])
        assert _allowed(response, key), f"{response}\n{provider.log_tail()}"

        # The Secret rotated to a wrong password: the next generation reads with it (the registry refuses:
        # undecided, never allowed), without a restart.
        pid = provider.process.pid
        cluster.apply([_docker_secret(host, (ALICE[0], "wrong-password"))])

        async def refused() -> Any:
            response = await _post(provider, [key])
            error = response.get("systemError", "")
            return (_value(response, key) is None and "[registry_auth_failed]" in error) or response

        took = await eventually(refused, "the rotated pull secret applied", provider)
        assert took < 10.0
        assert provider.process.poll() is None and provider.process.pid == pid

        # Rotated back: verified again.
        cluster.apply([_docker_secret(host, ALICE)])

        async def allowed() -> Any:
            response = await _post(provider, [key])
            return _allowed(response, key) or response

        await eventually(allowed, "the pull secret rotated back", provider)
    finally:
        provider.stop()
        cluster.kubectl("delete", "secret", OPERATOR_SECRET, "-n", NAMESPACE, "--ignore-not-found").check()


# --- notation trust material from ConfigMaps; file directories collected -----------------------------


def _config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": data,
    }


NOTATION_VERIFIER = {
    "apiVersion": "countersign.dev/v1alpha1",
    "kind": "Verifier",
    "metadata": {"name": "notation-from-configmaps"},
    "spec": {
        "type": "notation",
        "options": {"trustPolicy": "policy/trustpolicy.json", "trustStore": "truststore"},
        "files": {
            # Directory sources: every key of the ConfigMap a file in that directory.
            "policy": {"configMap": {"name": "notation-policy"}},
            "truststore/x509/ca/shop": {"configMap": {"name": "notation-ca"}},
        },
    },
}


def _notation_policy(host: str) -> dict[str, Any]:
    return {
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": "notation-signed"},
        "spec": {"scopes": [f"{host}/kube-notation/*"], "allOf": ["notation-from-configmaps"]},
    }


def _file_dirs(runtime: Path) -> set[str]:
    return {
        p.name for d in runtime.glob("countersign-*/files") for p in d.iterdir() if not p.name.startswith(".")
    }


async def test_notation_trust_from_configmap_directories_and_unused_file_directories_removed(
    cluster: Cluster, olareg_registry: Registry, tmp_path: Path
) -> None:
    require_tool("notation")
    chain = SigningChain(name="kube-notation")
    stranger = SigningChain(name="kube-stranger", intermediate=False)
    with NotationEnv(tmp_path / "notation") as env:
        notation.install_key(env, "signer", chain.key_pem, chain.chain_pem, default=True)
        image = push_image(olareg_registry, "kube-notation/app", "v1", seed="kube-notation-configmaps")
        notation.sign(env, "signer", olareg_registry, image)
    key = f"{olareg_registry.host}/{image.repository}@{image.digest}"
    trust_policy = notation.trust_policy(["ca:shop"], name="shop")
    cluster.apply(
        [
            _config_map("notation-policy", {"trustpolicy.json": json.dumps(trust_policy)}),
            _config_map("notation-ca", {"root.pem": chain.root_pem.decode()}),
        ]
    )
    kubeconfig = service_account_kubeconfig(cluster, tmp_path / "kubeconfig")
    runtime = tmp_path / "run"
    runtime.mkdir()
    provider = start_provider(
        {
            "apiVersion": "countersign.dev/v1alpha1",
            "registries": {olareg_registry.host: {"insecure": True}},
            "kubernetes": {"enabled": True, "namespace": NAMESPACE, "kubeconfig": str(kubeconfig)},
        },
        tmp_path / "provider",
        env={"COUNTERSIGN_RUNTIME_DIR": str(runtime)},
    )
    try:
        cluster.apply([NOTATION_VERIFIER, _notation_policy(olareg_registry.host)])

        async def allowed() -> Any:
            response = await _post(provider, [key])
            return _allowed(response, key) or response

        await eventually(allowed, "the notation Verifier from ConfigMaps", provider)
        first = _file_dirs(runtime)
        assert len(first) == 1, first  # the Verifier's directory (no pull secrets here)
        (directory,) = runtime.glob(f"countersign-*/files/{next(iter(first))}")
        assert (directory / "policy" / "trustpolicy.json").is_file()
        assert (directory / "truststore" / "x509" / "ca" / "shop" / "root.pem").read_bytes() == chain.root_pem
        assert oct(directory.stat().st_mode & 0o777) == "0o700"

        # The trust store rotated to another root: the signature no longer verifies.
        cluster.apply([_config_map("notation-ca", {"root.pem": stranger.root_pem.decode()})])

        async def denied() -> Any:
            value = _value(await _post(provider, [key]), key)
            return (value is not None and value["allowed"] is False) or value

        await eventually(denied, "the rotated trust store applied", provider)
        # The serving and the retiring generation's directories (a request may still run on the latter).
        second = _file_dirs(runtime)
        assert first < second and len(second) == 2, (first, second)

        # Rotated back: allowed again, and the first directory is in service again; the stranger's is
        # kept as the retiring one. One more change then removes it: nothing serves from it.
        cluster.apply([_config_map("notation-ca", {"root.pem": chain.root_pem.decode()})])
        await eventually(allowed, "the trust store rotated back", provider)
        assert _file_dirs(runtime) == second
        cluster.apply(
            [_config_map("notation-policy", {"trustpolicy.json": json.dumps(trust_policy, indent=1)})]
        )

        async def collected() -> Any:
            dirs = _file_dirs(runtime)
            return (len(dirs) == 2 and first <= dirs and not (second - first) & dirs) or dirs

        await eventually(collected, "the unused file directory removed", provider)
        assert _allowed(await _post(provider, [key]), key)
    finally:
        provider.stop()
        cluster.kubectl("delete", "clusterimagepolicy", "notation-signed", "--ignore-not-found").check()
        cluster.kubectl("delete", "verifier", "notation-from-configmaps", "--ignore-not-found").check()
        cluster.kubectl("delete", "configmap", "notation-policy", "notation-ca", "-n", NAMESPACE).check()
    assert not list(runtime.glob("countersign-*")), "the runtime directory is removed at exit"


# --- readiness while the API server cannot be reached ------------------------------------------------


@contextlib.asynccontextmanager
async def _tcp_forwarder(port: int, target: int) -> AsyncIterator[None]:
    """127.0.0.1:`port` forwarded to 127.0.0.1:`target` (the API server; TLS passes through)."""
    writers: set[asyncio.StreamWriter] = set()
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
        writers.add(client_writer)
        try:
            server_reader, server_writer = await asyncio.open_connection(LOOPBACK, target)
        except OSError:
            client_writer.close()
            return
        writers.add(server_writer)
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    server = await asyncio.start_server(handle, LOOPBACK, port)
    try:
        yield
    finally:
        server.close()
        for writer in writers:
            writer.close()
        if handlers:  # they end on their own once their connections are closed (never cancelled)
            await asyncio.wait(handlers, timeout=5.0)
        await server.wait_closed()


async def _metrics_text(provider: ProviderProcess) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{LOOPBACK}:{provider.health_port}/metrics") as resp:
            text = await resp.text()
    return "\n".join(line for line in text.splitlines() if line.startswith("countersign_kube"))


async def _readyz(provider: ProviderProcess) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{LOOPBACK}:{provider.health_port}/readyz") as resp:
            return resp.status


async def test_not_ready_while_the_api_server_is_unreachable_at_start(
    cluster: Cluster, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there yet
    kubeconfig = service_account_kubeconfig(cluster, tmp_path / "kubeconfig")
    document = yaml.safe_load(kubeconfig.read_text())
    document["clusters"][0]["cluster"]["server"] = f"https://{LOOPBACK}:{port}"
    kubeconfig.write_text(yaml.safe_dump(document))
    provider = start_provider(
        {
            "apiVersion": "countersign.dev/v1alpha1",
            # A file policy that a ClusterImagePolicy of the same name could replace: serving the file
            # alone would not be what the cluster says.
            "verifiers": {"pin": {"type": "digest-pin"}},
            "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pin"]}],
            "kubernetes": {"enabled": True, "namespace": NAMESPACE, "kubeconfig": str(kubeconfig)},
        },
        tmp_path / "provider",
        wait_ready=False,
    )
    try:
        began = time.monotonic()
        while time.monotonic() - began < 3.0:
            assert await _readyz(provider) == 503, provider.log_tail()
            await asyncio.sleep(0.2)
        provider.process.send_signal(signal.SIGHUP)  # a reload asked for before the first lists
        await asyncio.sleep(1.0)
        assert await _readyz(provider) == 503, provider.log_tail()
        async with aiohttp.ClientSession() as session:
            errors = await provider.metric(
                session, "countersign_kube_watch_errors_total", {"resource": "verifiers"}
            )
        assert errors >= 1, provider.log_tail()
        assert provider.process.poll() is None

        async with _tcp_forwarder(port, cluster.apiserver_port):
            began = time.monotonic()

            async def ready() -> Any:
                status = await _readyz(provider)
                return status == 200 or status

            # Each informer retries with full-jitter backoff (at most 30 s; about 8 s after ~4 s down).
            took = await eventually(ready, "ready once the API server is reachable", provider, within=40.0)
            async with aiohttp.ClientSession() as session:
                initial = await provider.metric(
                    session, "countersign_kube_relists_total", {"reason": "initial", "resource": "verifiers"}
                )
            assert initial == 1, await _metrics_text(provider)
            print(f"ready {took:.1f}s after the API server became reachable")
    finally:
        provider.stop()
