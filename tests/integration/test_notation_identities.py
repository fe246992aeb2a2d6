"""Countersign and the real `notation verify` (1.3.2) agree on signer identities and on the inputs notation
reads loosely: the thumbprint annotation, `x509.subject:` trusted identities, leaf subjects it cannot parse.

Each case runs both on the same image, trust policy and trust store and asserts the same outcome.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes

from provider.config import parse_config
from provider.engine import Decided, Engine
from tests.support import notation
from tests.support.images import PushedImage, push_image
from tests.support.junk import push_manifest
from tests.support.notation import THUMBPRINT_ANNOTATION, NotationEnv, SigningChain
from tests.support.registries import Registry
from tests.support.tools import require_tool
from verifiers.notation.verifier import NotationVerifier

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[NotationEnv]:
    require_tool("notation")
    with NotationEnv(tmp_path / "notation") as made:
        yield made


async def _countersign(
    engines: Any, env: NotationEnv, registry: Registry, image: PushedImage
) -> dict[str, Any]:
    config = parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"notation": {"type": "digest-pin", "options": {}}},
            "policies": [{"scopes": ["*"], "allOf": ["notation"]}],
        }
    )
    engine: Engine = await engines(config)
    engine.verifiers["notation"] = NotationVerifier(
        "notation",
        {"trustPolicy": str(env.trust_policy_file), "trustStore": str(env.config_dir / "truststore")},
    )
    outcome = (await engine.verify([image.pinned], 30))[image.pinned]
    assert isinstance(outcome, Decided), outcome
    report: dict[str, Any] = outcome.value["verifiers"][0]
    return report


async def _signed(
    env: NotationEnv, registry: Registry, repo: str, chain: SigningChain, **kwargs: Any
) -> PushedImage:
    notation.install_key(env, "signer", chain.key_pem, chain.chain_pem, default=True)
    notation.add_trust_store(env, "ca", "shop", chain.root_pem)
    image = await asyncio.to_thread(push_image, registry, repo, "v1", seed=f"identities-{time.time_ns()}")
    await asyncio.to_thread(notation.sign, env, "signer", registry, image, **kwargs)
    return image


# --- 1. the thumbprint annotation ------------------------------------------------------------------------


def _upper_case_thumbprints(registry: Registry, image: PushedImage) -> str:
    """Re-push the image's one notation signature manifest with its thumbprint annotation in upper-case hex
    and point the `sha256-<hex>` referrers index at it instead of the original; the new manifest's digest."""
    repo = image.repository
    [signature] = notation.signature_artifacts(registry, repo, image.digest).signatures
    raw = json.loads(json.dumps(signature.manifest.raw))
    raw["annotations"][THUMBPRINT_ANNOTATION] = raw["annotations"][THUMBPRINT_ANNOTATION].upper()
    data = json.dumps(raw).encode()
    digest = push_manifest(registry.url, repo, data, MANIFEST)
    entry = {
        "mediaType": MANIFEST,
        "digest": digest,
        "size": len(data),
        "artifactType": notation.NOTARY_SIGNATURE_ARTIFACT_TYPE,
        "annotations": raw["annotations"],
    }
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]}
    tag = "sha256-" + image.digest.removeprefix("sha256:")
    push_manifest(registry.url, repo, json.dumps(index).encode(), INDEX, tag=tag)
    return digest


async def test_upper_case_thumbprints_verify_as_notation_verifies(
    env: NotationEnv, registry: Registry, repo_name: str, engines: Any
) -> None:
    chain = SigningChain(name="thumbprints")
    image = await _signed(env, registry, repo_name, chain, referrers="tag")
    digest = await asyncio.to_thread(_upper_case_thumbprints, registry, image)
    [signature] = notation.signature_artifacts(registry, image.repository, image.digest).signatures
    assert signature.referrer.digest == digest
    listed = json.loads(signature.manifest.annotations[THUMBPRINT_ANNOTATION])
    assert listed == [cert.fingerprint(hashes.SHA256()).hex().upper() for cert in chain.chain]

    notation.write_trust_policy(env, notation.trust_policy(["ca:shop"], [f"x509.subject: {chain.subject}"]))
    report = await _countersign(engines, env, registry, image)
    assert await notation.notation_accepts(env, registry, image)
    assert report["reason"] == "notation_verified", report
    assert report["details"]["signatures"][0]["signature"] == digest
