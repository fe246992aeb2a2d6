"""The adversarial test bed: a hostile registry (and a TLS twin), listeners that must never be contacted,
and one ``countersign serve`` under a ``*`` policy (cosign + sbom + digest-pin) that is attacked.

Real signatures: an image is pushed to a real olareg, signed by the real cosign CLI (a key pair, the
``sha256-<hex>.sig`` tag), given an SPDX SBOM with the real oras CLI, then copied byte for byte into the
hostile registry (``good/app``). That image must stay allowed after every case.

``make test`` runs this directory inside a loopback-only network namespace (``tools/netns-run.sh``);
:func:`isolated` tells whether we are in one.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.adversarial.harness import Countersign
from tests.support import cosign
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.hostile_registry import HostileRegistry, RecordingHttp, TcpListener, copy_image
from tests.support.images import PushedImage, attach_sbom, push_image
from tests.support.registries import LOOPBACK, Registry, free_port, start_olareg
from tests.support.tools import require_tool

ADVERSARIAL_TOOLS = ("olareg", "oras", "cosign")
#: Credentials of the hostile registry: they may go to its own origin, never to a realm elsewhere.
USERNAME = "countersign"
PASSWORD = "hostile-secret"


def isolated() -> bool:
    """Whether this process runs in a network namespace with only ``lo`` (no route anywhere else)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/adversarial/" in str(item.path):
            item.add_marker(pytest.mark.adversarial)


@pytest.fixture(scope="session")
def adversarial_tools() -> None:
    for tool in ADVERSARIAL_TOOLS:
        require_tool(tool)


@pytest.fixture(scope="session")
def source_registry(adversarial_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_olareg(tmp_path_factory.mktemp("olareg"), memory=True) as registry:
        yield registry


@pytest.fixture(scope="session")
def signed_image(source_registry: Registry, cosign_env: CosignEnv, trusted_key: KeyPair) -> PushedImage:
    """``apps/signed:v1`` in olareg: a legacy ``.sig`` signature by the trusted key, and an SPDX SBOM."""
    image = push_image(source_registry, "apps/signed", "v1", seed="adversarial-signed")
    cosign.sign_legacy(cosign_env, trusted_key, source_registry, image, tool="cosign")
    attach_sbom(source_registry, image)
    return image


@pytest.fixture(scope="session")
def hostile(source_registry: Registry, signed_image: PushedImage) -> Iterator[HostileRegistry]:
    """The hostile registry (plain HTTP, configured with credentials); ``good/app`` is the signed image."""
    with HostileRegistry() as registry:
        copy_image(source_registry, "apps/signed", signed_image.digest, registry, "good/app")
        yield registry


@dataclass(frozen=True)
class TlsHostile:
    registry: HostileRegistry
    ca_file: Path


@pytest.fixture(scope="session")
def hostile_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsHostile]:
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(LOOPBACK).configure_cert(context)
    ca_file = tmp_path_factory.mktemp("hostile-tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with HostileRegistry(ssl_context=context, name="hostile-tls") as registry:
        yield TlsHostile(registry, ca_file)


@dataclass
class Listeners:
    """Ports Countersign must never contact (``forbidden``, ``realm``) and reachable ones named under
    ``registries:`` (``banner``: open, not HTTP; ``closed``: nothing listens; ``realm_configured``)."""

    forbidden: TcpListener
    realm: RecordingHttp
    banner: TcpListener
    banner_tls: TcpListener
    closed_port: int
    closed_tls_port: int
    realm_configured: RecordingHttp
    unscoped: TcpListener  # named under registries: of the ``narrow`` server, which has no policy for it

    @property
    def closed(self) -> str:
        return f"{LOOPBACK}:{self.closed_port}"

    @property
    def closed_tls(self) -> str:
        return f"{LOOPBACK}:{self.closed_tls_port}"


@pytest.fixture(scope="session")
def listeners() -> Iterator[Listeners]:
    ssh = b"SSH-2.0-OpenSSH_9.6\r\n"
    tcp = [TcpListener(), TcpListener(banner=ssh), TcpListener(banner=ssh), TcpListener()]
    realm = RecordingHttp().start()
    realm_configured = RecordingHttp().start()
    forbidden, banner, banner_tls, unscoped = tcp
    try:
        yield Listeners(
            forbidden, realm, banner, banner_tls, free_port(), free_port(), realm_configured, unscoped
        )
    finally:
        for listener in tcp:
            listener.close()
        realm.stop()
        realm_configured.stop()


def base_config(trusted_key: KeyPair, scopes: list[str]) -> dict[str, object]:
    return {
        "apiVersion": "countersign.dev/v1alpha1",
        "server": {"deadlines": {"background": "8s"}},
        "verifiers": {
            "cosign": {"type": "cosign", "options": cosign.key_options(trusted_key)},
            "sbom": {"type": "sbom"},
            "pinned": {"type": "digest-pin"},
        },
        "policies": [{"name": "everything", "scopes": scopes, "allOf": ["cosign", "sbom", "pinned"]}],
    }


@pytest.fixture(scope="session")
def good_key(hostile: HostileRegistry, signed_image: PushedImage) -> str:
    return f"{hostile.host}/good/app@{signed_image.digest}"


@pytest.fixture(scope="session")
def countersign(
    tmp_path_factory: pytest.TempPathFactory,
    trusted_key: KeyPair,
    hostile: HostileRegistry,
    hostile_tls: TlsHostile,
    listeners: Listeners,
    good_key: str,
) -> Iterator[Countersign]:
    """The server under attack: ``*`` policy, verdict cache off (every case re-verifies)."""
    config = base_config(trusted_key, ["*"])
    config["cache"] = {"verdictTTL": 0}
    config["registries"] = {
        hostile.host: {"insecure": True, "username": USERNAME, "password": PASSWORD},
        hostile_tls.registry.host: {"caFile": str(hostile_tls.ca_file)},
        listeners.banner.host: {"insecure": True},
        listeners.closed: {"insecure": True},
        listeners.banner_tls.host: {"minTLS": "1.2"},
        listeners.closed_tls: {"minTLS": "1.2"},
        listeners.realm_configured.host: {"insecure": True},
    }
    with Countersign(tmp_path_factory.mktemp("countersign"), config, good_key=good_key) as server:
        yield server


@pytest.fixture
def healthy(countersign: Countersign) -> Countersign:
    """The server under attack, checked healthy before the test too (a failure names the culprit)."""
    countersign.assert_healthy()
    return countersign


@pytest.fixture(scope="session")
def narrow(
    tmp_path_factory: pytest.TempPathFactory,
    trusted_key: KeyPair,
    hostile: HostileRegistry,
    listeners: Listeners,
    good_key: str,
) -> Iterator[Countersign]:
    """A second server whose only policy covers the hostile registry (verdict cache on): for the
    fat-manifest memory case (its own process, so its peak RSS is that case's) and for keys no policy
    covers (``listeners.unscoped`` is named under ``registries:`` but no policy scope matches it)."""
    config = base_config(trusted_key, [f"{hostile.host}/*"])
    config["registries"] = {
        hostile.host: {"insecure": True},
        listeners.unscoped.host: {"insecure": True},
    }
    with Countersign(tmp_path_factory.mktemp("narrow"), config, good_key=good_key) as server:
        yield server
