"""The cosign verifier against signatures made by the real cosign v3, cosign v2 and skopeo CLIs.

Every case also asks `cosign verify` for its verdict, so each test states that both tools agree (or, where
they deliberately differ, why). Signing is key-based and offline (no Rekor or Fulcio on the test bed), so
the verifiers run with `transparencyLog: skip` unless a case is about the log requirement itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provider.config import Config, parse_config
from provider.engine import Engine
from provider.outcome import Decided, Outcome
from tests.support import cosign
from tests.support.cosign import CosignEnv, KeyPair, key_options
from tests.support.images import PushedImage, oras, push_image
from tests.support.registries import Registry
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosignEnv]:
    for tool in ("cosign", "cosign2"):
        require_tool(tool)
    with CosignEnv(tmp_path_factory.mktemp("cosign")) as cosign_env:
        yield cosign_env


@pytest.fixture(scope="module")
def signer(env: CosignEnv) -> KeyPair:
    return cosign.generate_key_pair(env, "signer")


@pytest.fixture(scope="module")
def second(env: CosignEnv) -> KeyPair:
    return cosign.generate_key_pair(env, "second")


@pytest.fixture(scope="module")
def stranger(env: CosignEnv) -> KeyPair:
    return cosign.generate_key_pair(env, "stranger", tool="cosign2")


def config_for(registry: Registry, options: dict[str, Any]) -> Config:
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


async def push(registry: Registry, repo: str, seed: str) -> PushedImage:
    return await asyncio.to_thread(push_image, registry, repo, "v1", seed=seed)


def cosign_accepts(env: CosignEnv, key: KeyPair, registry: Registry, image: PushedImage, fmt: str) -> bool:
    tools: tuple[cosign.Tool, ...] = ("cosign", "cosign2")
    return any(
        cosign.cosign_verify(
            env,
            tool,
            key.public_path,
            registry,
            image,
            experimental_oci11=fmt == "oci-1.1",
            digest_algorithm=key.digest_algorithm,
        )
        for tool in tools
    )


SIGNERS: dict[str, Callable[..., Any]] = {
    "bundle": cosign.sign_bundle,
    "legacy": cosign.sign_legacy,
    "oci-1.1": cosign.sign_oci11,
}


@pytest.mark.parametrize("fmt", ["bundle", "legacy", "oci-1.1"])
async def test_each_format_verifies_and_cosign_agrees(
    env: CosignEnv, signer: KeyPair, registry: Registry, repo_name: str, engines: Any, fmt: str
) -> None:
    image = await push(registry, repo_name, f"{fmt}-ok")
    await asyncio.to_thread(SIGNERS[fmt], env, signer, registry, image)
    engine = await engines(config_for(registry, key_options(signer)))
    report = await verdict(engine, image)
    assert report["passed"] is True, report
    assert report["reason"] == "cosign_verified"
    assert report["details"]["matched"] == ["signer"]
    assert [s["format"] for s in report["details"]["signatures"] if s["passed"]] == [fmt]
    assert await asyncio.to_thread(cosign_accepts, env, signer, registry, image, fmt)


@pytest.mark.parametrize("fmt", ["bundle", "legacy", "oci-1.1"])
async def test_wrong_key_is_untrusted_and_cosign_agrees(
    env: CosignEnv,
    signer: KeyPair,
    stranger: KeyPair,
    olareg_registry: Registry,
    repo_name: str,
    engines: Any,
    fmt: str,
) -> None:
    image = await push(olareg_registry, repo_name, f"{fmt}-stranger")
    await asyncio.to_thread(SIGNERS[fmt], env, stranger, olareg_registry, image)
    engine = await engines(config_for(olareg_registry, key_options(signer)))
    report = await verdict(engine, image)
    assert report["passed"] is False
    assert report["reason"] in ("untrusted_key", "signature_invalid"), report
    assert not await asyncio.to_thread(cosign_accepts, env, signer, olareg_registry, image, fmt)


async def test_unsigned_image(
    env: CosignEnv, signer: KeyPair, registry: Registry, repo_name: str, engines: Any
) -> None:
    image = await push(registry, repo_name, "unsigned")
    engine = await engines(config_for(registry, key_options(signer)))
    report = await verdict(engine, image)
    assert report["reason"] == "no_signature_found"
    assert not await asyncio.to_thread(cosign_accepts, env, signer, registry, image, "legacy")


async def test_signature_copied_from_another_image_never_passes(
    env: CosignEnv, signer: KeyPair, registry: Registry, repo_name: str, engines: Any
) -> None:
    signed = await push(registry, repo_name, "copied-from")
    target = await push(registry, repo_name, "copied-to")
    await asyncio.to_thread(cosign.sign_legacy, env, signer, registry, signed)
    source_tag = "sha256-" + signed.digest.split(":")[1] + ".sig"
    target_tag = "sha256-" + target.digest.split(":")[1] + ".sig"
    await asyncio.to_thread(
        oras,
        "cp",
        *registry.oras_flags("from-"),
        *registry.oras_flags("to-"),
        f"{registry.host}/{repo_name}:{source_tag}",
        f"{registry.host}/{repo_name}:{target_tag}",
    )
    engine = await engines(config_for(registry, key_options(signer)))
    report = await verdict(engine, target)
    assert report["passed"] is False
    assert report["reason"] == "signed_digest_mismatch", report
    assert not await asyncio.to_thread(cosign_accepts, env, signer, registry, target, "legacy")


async def test_threshold_counts_distinct_keys(
    env: CosignEnv, signer: KeyPair, second: KeyPair, olareg_registry: Registry, repo_name: str, engines: Any
) -> None:
    both = await push(olareg_registry, repo_name, "two-keys")
    one = await push(olareg_registry, repo_name, "one-key")
    await asyncio.to_thread(cosign.sign_bundle, env, signer, olareg_registry, both)
    await asyncio.to_thread(cosign.sign_legacy, env, second, olareg_registry, both)
    await asyncio.to_thread(cosign.sign_bundle, env, signer, olareg_registry, one)
    await asyncio.to_thread(cosign.sign_legacy, env, signer, olareg_registry, one)  # same key twice
    engine = await engines(config_for(olareg_registry, key_options(signer, second, threshold=2)))
    report = await verdict(engine, both)
    assert report["passed"] is True, report
    assert report["details"]["matched"] == ["second", "signer"]
    report = await verdict(engine, one)
    assert report["passed"] is False
    assert report["reason"] == "threshold_not_met"
    assert report["details"]["matched"] == ["signer"]


@pytest.mark.parametrize("kind", ["rsa-2048", "rsa-3072", "ecdsa-p384"])
@pytest.mark.parametrize("fmt", ["bundle", "legacy"])
async def test_imported_key_types(
    env: CosignEnv, olareg_registry: Registry, repo_name: str, engines: Any, kind: cosign.KeyKind, fmt: str
) -> None:
    key = await asyncio.to_thread(cosign.import_key_pair, env, f"imported-{kind}-{fmt}", kind)
    image = await push(olareg_registry, repo_name, f"{kind}-{fmt}")
    await asyncio.to_thread(SIGNERS[fmt], env, key, olareg_registry, image)
    engine = await engines(config_for(olareg_registry, key_options(key)))
    report = await verdict(engine, image)
    assert report["passed"] is True, report
    assert await asyncio.to_thread(cosign_accepts, env, key, olareg_registry, image, fmt)


async def test_transparency_log_is_required_by_default(
    env: CosignEnv, signer: KeyPair, olareg_registry: Registry, repo_name: str, engines: Any
) -> None:
    image = await push(olareg_registry, repo_name, "no-tlog")
    await asyncio.to_thread(cosign.sign_legacy, env, signer, olareg_registry, image)
    options = {"keys": [{"name": "signer", "path": str(signer.public_path)}]}
    engine = await engines(config_for(olareg_registry, options))
    report = await verdict(engine, image)
    assert report["passed"] is False
    assert report["reason"] == "tlog_missing", report


async def test_skopeo_signature_verifies(
    env: CosignEnv, signer: KeyPair, registry: Registry, repo_name: str, engines: Any
) -> None:
    image = await push(registry, repo_name, "skopeo")
    await asyncio.to_thread(cosign.skopeo_sign, env, signer, registry, image)
    engine = await engines(config_for(registry, key_options(signer)))
    report = await verdict(engine, image)
    assert report["passed"] is True, report
    assert await asyncio.to_thread(cosign_accepts, env, signer, registry, image, "legacy")


async def test_an_attestation_is_not_a_signature(
    env: CosignEnv, signer: KeyPair, olareg_registry: Registry, repo_name: str, engines: Any, tmp_path: Path
) -> None:
    image = await push(olareg_registry, repo_name, "attested-only")
    predicate = tmp_path / "predicate.json"
    predicate.write_text('{"purpose": "test"}')
    await asyncio.to_thread(cosign.attest_bundle, env, signer, olareg_registry, image, predicate, "custom")
    engine = await engines(config_for(olareg_registry, key_options(signer)))
    report = await verdict(engine, image)
    # cosign verify accepts any bundle signed by the key, attestations included; a signature policy
    # must not: an attestation says something about the image, it does not sign it.
    assert report["passed"] is False
    assert report["reason"] == "no_signature_found", report
