"""Where Countersign and the real cosign CLIs once disagreed (issue 10, items 4 and 5), with both answers.

* ``cosign copy`` (v3 and v2) onto a registry without the referrers API writes the copied image manifest under
  the tag ``sha256-<hex>``, the referrers tag-schema name. cosign (go-containerregistry) reads a non-index
  there as "no referrers" and verifies the legacy ``.sig``; so must Countersign (cosign and sbom verifiers).
* A trusted legacy ``.sig`` beside a bundle by another key: cosign v3 ``verify`` (and cosign2's, as tested
  here) goes bundle-only as soon as one bundle referrer exists and denies; Countersign finds the trusted
  ``.sig`` and allows (a deliberate difference, named in docs/cosign.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provider.config import Config, parse_config
from provider.engine import Engine
from provider.outcome import Decided
from tests.support import cosign
from tests.support.cosign import CosignEnv, KeyPair, key_options
from tests.support.images import PushedImage, attach_sbom, push_image
from tests.support.registries import Registry, RegistryFactory
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

CLIS: tuple[cosign.Tool, ...] = ("cosign", "cosign2")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosignEnv]:
    for tool in ("cosign", "cosign2"):
        require_tool(tool)
    with CosignEnv(tmp_path_factory.mktemp("cosign-agreement")) as cosign_env:
        yield cosign_env


@pytest.fixture(scope="module")
def signer(env: CosignEnv) -> KeyPair:
    return cosign.generate_key_pair(env, "signer")


@pytest.fixture(scope="module")
def stranger(env: CosignEnv) -> KeyPair:
    return cosign.generate_key_pair(env, "stranger")


def config_for(registry: Registry, key: KeyPair) -> Config:
    return parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {
                "cosign": {"type": "cosign", "options": key_options(key)},
                "sbom": {"type": "sbom"},
            },
            "policies": [{"scopes": ["*"], "allOf": ["cosign", "sbom"]}],
        }
    )


async def reports(engine: Engine, image: str) -> dict[str, dict[str, Any]]:
    """Each verifier's report on ``image`` (``HOST/REPO@DIGEST``), by name."""
    outcome = (await engine.verify([image], 30))[image]
    assert isinstance(outcome, Decided), outcome
    return {report["name"]: report for report in outcome.value["verifiers"]}


def cosign_copy(env: CosignEnv, tool: cosign.Tool, source: Registry, image: PushedImage, target: str) -> None:
    """``tool copy SOURCE@DIGEST TARGET`` between two plain-HTTP loopback registries, offline.

    Both CLIs need only the plain-HTTP flags (no TUF, Rekor or Fulcio: the env's trap would say so); v3
    prints a deprecation notice and copies all the same.
    """
    env.run(
        tool,
        "copy",
        *cosign.registry_flags(source),
        f"{source.host}/{image.repository}@{image.digest}",
        target,
    )


@pytest.mark.parametrize("tool", ["cosign", "cosign2"])
async def test_cosign_copy_onto_a_registry_without_referrers_api(
    env: CosignEnv,
    signer: KeyPair,
    registry_factory: RegistryFactory,
    repo_name: str,
    engines: Any,
    tool: cosign.Tool,
) -> None:
    source, target = registry_factory("distribution"), registry_factory("distribution")
    image = await asyncio.to_thread(push_image, source, repo_name, "v1")
    await asyncio.to_thread(cosign.sign_legacy, env, signer, source, image)  # cosign2: the .sig tag
    await asyncio.to_thread(attach_sbom, source, image)  # the sha256-<hex> referrers index at the source
    source_reports = await reports(await engines(config_for(source, signer)), image.pinned)
    assert source_reports["cosign"]["passed"] is True, source_reports
    assert source_reports["sbom"]["reason"] == "sbom_verified", source_reports

    await asyncio.to_thread(cosign_copy, env, tool, source, image, f"{target.host}/{repo_name}:v1")
    copied = f"{target.host}/{repo_name}@{image.digest}"

    # What made Countersign deny: the copied image itself under the referrers tag-schema name.
    hex_part = image.digest.removeprefix("sha256:")
    under_tag = await asyncio.to_thread(cosign.fetch_manifest, target, repo_name, f"sha256-{hex_part}")
    assert under_tag is not None and under_tag.digest == image.digest, under_tag
    assert under_tag.media_type == "application/vnd.oci.image.manifest.v1+json"
    artifacts = await asyncio.to_thread(cosign.signature_artifacts, target, repo_name, image.digest)
    assert artifacts.referrers == () and artifacts.signature_tag in artifacts.cosign_tags

    # Both cosign CLIs accept the copy (the legacy .sig came along) ...
    for verifier in CLIS:
        assert await asyncio.to_thread(
            cosign.cosign_verify, env, verifier, signer.public_path, target, f"{repo_name}@{image.digest}"
        ), verifier
    # ... and so does Countersign; cosign copy does not carry OCI referrers, so the SBOM stays behind:
    # the sbom verifier says there is none (not content_invalid).
    copy_reports = await reports(await engines(config_for(target, signer)), copied)
    assert copy_reports["cosign"]["passed"] is True, copy_reports
    assert copy_reports["cosign"]["reason"] == "cosign_verified"
    assert [s["format"] for s in copy_reports["cosign"]["details"]["signatures"] if s["passed"]] == ["legacy"]
    assert "problems" not in copy_reports["cosign"]["details"], copy_reports  # the tag is no listing problem
    assert copy_reports["sbom"]["passed"] is False
    assert copy_reports["sbom"]["reason"] == "sbom_not_found", copy_reports


async def test_trusted_legacy_signature_beside_a_strangers_bundle(
    env: CosignEnv,
    signer: KeyPair,
    stranger: KeyPair,
    registry: Registry,
    repo_name: str,
    engines: Any,
    tmp_path: Path,
) -> None:
    """A deliberate difference (docs/cosign.md): cosign v3 and v2 `verify` deny, Countersign allows."""
    image = await asyncio.to_thread(push_image, registry, repo_name, "v1")
    await asyncio.to_thread(cosign.sign_legacy, env, signer, registry, image)  # cosign2, trusted key
    predicate = tmp_path / "predicate.json"
    predicate.write_text('{"purpose": "a stranger attests"}')
    await asyncio.to_thread(cosign.attest_bundle, env, stranger, registry, image, predicate, "custom")
    artifacts = await asyncio.to_thread(cosign.signature_artifacts, registry, image.repository, image.digest)
    assert artifacts.referrer_artifact_types == [cosign.BUNDLE_ARTIFACT_TYPE], artifacts
    assert artifacts.signature_tag in artifacts.cosign_tags

    # Both CLIs see a bundle referrer, read bundles only, and find none by the trusted key ...
    for tool in CLIS:
        assert not await asyncio.to_thread(
            cosign.cosign_verify, env, tool, signer.public_path, registry, image
        ), tool
    # ... though the same .sig alone (another image, no bundle beside it) is accepted by both.
    control = await asyncio.to_thread(push_image, registry, repo_name, "control")
    await asyncio.to_thread(cosign.sign_legacy, env, signer, registry, control)
    for tool in CLIS:
        assert await asyncio.to_thread(
            cosign.cosign_verify, env, tool, signer.public_path, registry, control
        ), tool

    # Countersign: a valid signature by a trusted key over this exact digest exists, so allowed.
    report = (await reports(await engines(config_for(registry, signer)), image.pinned))["cosign"]
    assert report["passed"] is True, report
    assert report["reason"] == "cosign_verified"
    assert report["details"]["matched"] == ["signer"]
    assert [s["format"] for s in report["details"]["signatures"] if s["passed"]] == ["legacy"]
