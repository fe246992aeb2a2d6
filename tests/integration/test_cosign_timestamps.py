"""RFC 3161 timestamps made by the real cosign2 with the real sigstore timestamp-server, verified end to end.

``cosign2 sign --key K --tlog-upload=false --timestamp-server-url http://127.0.0.1:PORT/api/v1/timestamp``
asks the TSA (tests/support/tsa.py: ``timestamp-server`` with a generated root -> intermediate -> TSA leaf
chain, on loopback) to timestamp the raw signature bytes and stores the DER response in the layer annotation
``dev.sigstore.cosign/rfc3161timestamp`` (legacy ``.sig`` tag, or OCI 1.1 referrer). The engine verifies the
image with a cosign verifier configured with the key, ``transparencyLog: skip`` and a ``trustedRoot`` whose
``timestampAuthorities`` lists that TSA; the signature's details then carry the timestamp.

Each verdict is also asked of ``cosign2 verify --key K --insecure-ignore-tlog=true
--timestamp-certificate-chain CHAIN --use-signed-timestamps`` (CHAIN: the PEM of
``GET /api/v1/timestamp/certchain``), which verifies the same annotation against that chain, so both tools
are shown to agree, on a trusted TSA and on an untrusted one.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rfc3161_client import decode_timestamp_response

from provider.config import Config, parse_config
from provider.engine import Engine
from provider.outcome import Decided, Outcome
from tests.support import cosign
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.images import PushedImage, push_image
from tests.support.private_sigstore import PrivateSigstore
from tests.support.registries import Registry
from tests.support.tools import require_tool
from tests.support.tsa import (
    TimestampServer,
    TsaCertificates,
    timestamp_authority_entry,
    with_timestamp_authorities,
    write_trusted_root,
)
from verifiers.cosign.model import ANNOTATION_RFC3161

pytestmark = pytest.mark.integration

FORMATS = ("legacy", "oci-1.1")


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosignEnv]:
    for tool in ("cosign", "cosign2"):  # CosignEnv writes its offline files with cosign v3
        require_tool(tool)
    with CosignEnv(tmp_path_factory.mktemp("cosign")) as cosign_env:
        yield cosign_env


@pytest.fixture(scope="module")
def signer(env: CosignEnv) -> KeyPair:
    return cosign.generate_key_pair(env, "signer", tool="cosign2")


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimestampServer]:
    require_tool("timestamp-server")
    certificates = TsaCertificates(intermediate=True)
    with TimestampServer(tmp_path_factory.mktemp("tsa"), certificates=certificates) as server:
        yield server


@pytest.fixture(scope="module")
def files(tsa: TimestampServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Trusted roots (this TSA; another one) and the matching PEM chains for cosign2."""
    directory = tmp_path_factory.mktemp("trust")
    sigstore = PrivateSigstore(name="countersign-private")  # the root's log and CA: unused by key signatures
    stranger = TsaCertificates(name="countersign-test-tsa", intermediate=True)  # same names, other keys
    document = sigstore.trusted_root_document()
    out = {
        "root": write_trusted_root(
            directory / "trusted_root.json", with_timestamp_authorities(document, [tsa.authority_entry()])
        ),
        "stranger_root": write_trusted_root(
            directory / "stranger_root.json",
            with_timestamp_authorities(document, [timestamp_authority_entry(stranger.chain)]),
        ),
        "chain": directory / "tsa-chain.pem",
        "stranger_chain": directory / "stranger-chain.pem",
    }
    out["chain"].write_bytes(tsa.certchain_pem())  # what the server publishes
    out["stranger_chain"].write_bytes(stranger.chain_pem)
    return out


# --- helpers ---------------------------------------------------------------------------------------------


def config_for(registry: Registry, key: KeyPair, trusted_root: Path) -> Config:
    options = cosign.key_options(key, trustedRoot=str(trusted_root))
    return parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"cosign": {"type": "cosign", "options": options}},
            "policies": [{"scopes": ["*"], "allOf": ["cosign"]}],
        }
    )


async def verdict(engine: Engine, image: PushedImage) -> dict[str, Any]:
    outcome: Outcome = (await engine.verify([image.pinned], 30))[image.pinned]
    assert isinstance(outcome, Decided), outcome
    report: dict[str, Any] = outcome.value["verifiers"][0]
    assert report["type"] == "cosign"
    return report


def sign_with_timestamp(
    env: CosignEnv, key: KeyPair, registry: Registry, image: PushedImage, tsa: TimestampServer, fmt: str
) -> None:
    """``cosign2 sign`` (key, no log upload) with the TSA; ``oci-1.1`` stores it as a referrer."""
    mode = ["--registry-referrers-mode=oci-1-1"] if fmt == "oci-1.1" else []
    env.run(
        "cosign2",
        "sign",
        "--key",
        str(key.private_path),
        "--tlog-upload=false",
        "--timestamp-server-url",
        tsa.timestamp_url,
        *mode,
        *cosign.registry_flags(registry),
        "-y",
        f"{registry.host}/{image.repository}@{image.digest}",
        extra_env={"COSIGN_EXPERIMENTAL": "1"} if fmt == "oci-1.1" else None,
    )


def cosign2_verify(
    env: CosignEnv, key: KeyPair, registry: Registry, image: PushedImage, chain: Path, fmt: str
) -> cosign.CommandResult:
    """``cosign2 verify`` with the key, no log, and the RFC 3161 timestamp checked against ``chain``."""
    oci11 = ["--experimental-oci11"] if fmt == "oci-1.1" else []
    return env.run(
        "cosign2",
        "verify",
        "--key",
        str(key.public_path),
        "--insecure-ignore-tlog=true",
        "--timestamp-certificate-chain",
        str(chain),
        "--use-signed-timestamps",
        *oci11,
        *cosign.registry_flags(registry),
        f"{registry.host}/{image.repository}@{image.digest}",
        check=False,
        extra_env={"COSIGN_EXPERIMENTAL": "1"} if fmt == "oci-1.1" else None,
    )


def stored_timestamp(registry: Registry, image: PushedImage, fmt: str) -> bytes:
    """The DER response in the signature layer's rfc3161timestamp annotation, as cosign2 stored it."""
    artifacts = cosign.signature_artifacts(registry, image.repository, image.digest)
    if fmt == "legacy":
        manifest = artifacts.cosign_tags[artifacts.signature_tag]
    else:
        (referrer,) = artifacts.referrers_of_type(cosign.COSIGN_SIG_ARTIFACT_TYPE)
        stored = cosign.fetch_manifest(registry, image.repository, referrer.digest)
        assert stored is not None
        manifest = stored
    (layer,) = manifest.raw["layers"]
    annotation = json.loads(layer["annotations"][ANNOTATION_RFC3161])
    return base64.b64decode(annotation["SignedRFC3161Timestamp"])


# --- tests -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_cosign2_timestamp_verifies_and_cosign_agrees(
    env: CosignEnv,
    signer: KeyPair,
    tsa: TimestampServer,
    files: dict[str, Path],
    olareg_registry: Registry,
    repo_name: str,
    engines: Any,
    fmt: str,
) -> None:
    image = await asyncio.to_thread(push_image, olareg_registry, repo_name, "v1", seed=f"tsa-{fmt}")
    before = datetime.now(UTC).replace(microsecond=0)
    await asyncio.to_thread(sign_with_timestamp, env, signer, olareg_registry, image, tsa, fmt)
    after = datetime.now(UTC)
    gen_time = decode_timestamp_response(stored_timestamp(olareg_registry, image, fmt)).tst_info.gen_time
    assert before - timedelta(seconds=1) <= gen_time <= after

    engine = await engines(config_for(olareg_registry, signer, files["root"]))
    report = await verdict(engine, image)
    assert report["passed"] is True, report
    (signature,) = [s for s in report["details"]["signatures"] if s["passed"]]
    assert signature["format"] == fmt
    assert signature["timestamp"] == gen_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert signature["timestampAuthority"] == tsa.certificates.subject

    result = await asyncio.to_thread(cosign2_verify, env, signer, olareg_registry, image, files["chain"], fmt)
    assert result.ok, result.describe()


@pytest.mark.parametrize("fmt", FORMATS)
async def test_untrusted_tsa_rejected_and_cosign_agrees(
    env: CosignEnv,
    signer: KeyPair,
    tsa: TimestampServer,
    files: dict[str, Path],
    olareg_registry: Registry,
    repo_name: str,
    engines: Any,
    fmt: str,
) -> None:
    """The key is trusted and no log is required, but the timestamp comes from a TSA the root does not list:
    a present timestamp must verify, so the signature fails (cosign2 agrees with the other TSA's chain)."""
    image = await asyncio.to_thread(push_image, olareg_registry, repo_name, "v1", seed=f"tsa-stranger-{fmt}")
    await asyncio.to_thread(sign_with_timestamp, env, signer, olareg_registry, image, tsa, fmt)

    engine = await engines(config_for(olareg_registry, signer, files["stranger_root"]))
    report = await verdict(engine, image)
    assert report["passed"] is False, report
    assert report["reason"] == "untrusted_chain", report
    (signature,) = report["details"]["signatures"]
    assert "timestamp authority" in signature["message"]

    result = await asyncio.to_thread(
        cosign2_verify, env, signer, olareg_registry, image, files["stranger_chain"], fmt
    )
    assert not result.ok, result.describe()
    # cosign2's OCI 1.1 path folds every rejection into "no signatures found"; the legacy path says why.
    expected = "no signatures found" if fmt == "oci-1.1" else "timestamp"
    assert expected in result.stderr.lower(), result.describe()
