"""The end-to-end test bed: a real kube-apiserver with the real Gatekeeper in front of it, Countersign with
mutual TLS, and an OCI registry holding images signed by the real cosign and notation CLIs.

Countersign is its image (``make image``), run as the Helm chart's Deployment runs it: the values an operator
would install with, rendered by ``helm template``, the Pod template translated into ``podman run``
(tests/support/podspec.py: every field applied or refused), its volumes in the kubelet's layout, its probes
executed until ready, in a network namespace of its own behind a Service port (tests/support/pod.py).
The image is built once into the cache (a no-op when it holds this work tree's image), or into
$COUNTERSIGN_IMAGE_OUT when that is set.

Everything is started once per session on 127.0.0.1 (tests/support/kube.py) and stopped at the end. The
shipped manifests of gatekeeper-templates/ are applied as an operator would apply them; only the Provider
URLs and caBundles are filled in for this machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import notation
from tests.support.admission import Admission, Images, Provider, install, push_images, start_countersign_pod
from tests.support.container import BuiltImage, build_image, container_env, load_image, require_image_building
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.kube import Cluster
from tests.support.notation import NotationEnv
from tests.support.registries import Registry, start_olareg
from tests.support.tools import require_tool

E2E_TOOLS = (
    "etcd",
    "kube-apiserver",
    "kubectl",
    "gatekeeper-manager",
    "cosign",
    "notation",
    "oras",
    "olareg",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for tool in E2E_TOOLS:
        require_tool(tool)
    started = Cluster.start(tmp_path_factory.mktemp("cluster"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_olareg(tmp_path_factory.mktemp("registry")) as started:
        yield started


@pytest.fixture(scope="session")
def notation_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotationEnv]:
    with NotationEnv(tmp_path_factory.mktemp("notation")) as env:
        notation.generate_test_key(env, "e2e-signer")
        notation.write_trust_policy(env, notation.trust_policy(["ca:e2e-signer"], registry_scopes=["*"]))
        yield env


@pytest.fixture(scope="session")
def images(
    registry: Registry, cosign_env: CosignEnv, trusted_key: KeyPair, notation_env: NotationEnv
) -> Images:
    return push_images(registry, cosign_env, trusted_key, notation_env)


@dataclass(frozen=True)
class LoadedImage:
    built: BuiltImage
    #: ``localhost/countersign@sha256:...``: what the chart's values name and podman's storage holds.
    reference: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def countersign_image() -> LoadedImage:
    require_image_building()
    out = os.environ.get("COUNTERSIGN_IMAGE_OUT")
    built = build_image(Path(out) if out else None)
    env = container_env()
    load_image(built, env)
    return LoadedImage(built, f"localhost/countersign@{built.digest}", env)


@pytest.fixture(scope="session")
def provider(
    tmp_path_factory: pytest.TempPathFactory,
    cluster: Cluster,
    registry: Registry,
    trusted_key: KeyPair,
    notation_env: NotationEnv,
    countersign_image: LoadedImage,
) -> Iterator[Provider]:
    started = start_countersign_pod(
        tmp_path_factory.mktemp("countersign"),
        cluster,
        registry,
        trusted_key,
        notation_env,
        image=countersign_image.reference,
        env=countersign_image.env,
    )
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="session")
def admission(cluster: Cluster, provider: Provider, registry: Registry, images: Images) -> Admission:
    return install(cluster, provider, registry, images)
