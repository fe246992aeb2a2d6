"""A private registry for the pull-secret tests (the operator's and the workloads'): distribution requiring
Basic auth (htpasswd) for every read, an image in it signed by the real cosign, and the
``kubernetes.io/dockerconfigjson`` Secret that opens it."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support import cosign
from tests.support.auth_registries import (
    ConfiguredDistribution,
    htpasswd_entry,
    start_configured_distribution,
    write_docker_config,
)
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.images import PushedImage, push_image

__all__ = ["ALICE", "dockerconfigjson_secret", "htpasswd_distribution", "signed_private_image"]

#: The one user of the registries below: she pushes (and cosign signs as her).
ALICE = ("alice", "alice-secret")


@contextlib.contextmanager
def htpasswd_distribution(
    workdir: Path, credentials: tuple[str, str] = ALICE, realm: str = "countersign-test"
) -> Iterator[ConfiguredDistribution]:
    """distribution in ``workdir`` requiring Basic auth (htpasswd, one user: ``credentials``) for every
    read; stopped at exit."""
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(htpasswd_entry(*credentials) + "\n")
    registry = start_configured_distribution(
        workdir, auth={"htpasswd": {"realm": realm, "path": str(htpasswd)}}, credentials=credentials
    )
    with registry:
        yield registry


def signed_private_image(
    registry: ConfiguredDistribution,
    key: KeyPair,
    workdir: Path,
    repository: str,
    seed: str,
    credentials: tuple[str, str] = ALICE,
) -> PushedImage:
    """A new image ``repository:v1`` in ``registry``, signed with ``key`` by the real cosign, which logs in
    with ``credentials`` (from a cosign environment of its own in ``workdir``)."""
    with CosignEnv(workdir) as env:
        write_docker_config(env.docker_config / "config.json", {registry.host: credentials})
        image = push_image(registry, repository, "v1", seed=seed)
        cosign.sign_bundle(env, key, registry, image)
    return image


def dockerconfigjson_secret(
    name: str, namespace: str, host: str, credentials: tuple[str, str]
) -> dict[str, Any]:
    """A ``kubernetes.io/dockerconfigjson`` Secret holding ``credentials`` for ``host``."""
    auth = base64.b64encode(":".join(credentials).encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }
