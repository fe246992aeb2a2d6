"""The notation verifier end to end: real `notation sign` signatures, the engine, `notation verify` agreeing.

The engine is built with a placeholder verifier under the name `notation`, and a `NotationVerifier` with
each test's options (trust policy and stores written by the test) is swapped in before any verification.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import pytest

from provider.config import Config, parse_config
from provider.engine import Engine
from provider.outcome import Decided, Outcome
from tests.support import notation
from tests.support.images import PushedImage, push_image
from tests.support.notation import NotationEnv, SigningChain
from tests.support.registries import Registry
from tests.support.tools import require_tool
from verifiers.notation.verifier import NotationVerifier

Format = Literal["jws", "cose"]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[NotationEnv]:
    require_tool("notation")
    with NotationEnv(tmp_path / "notation") as made:
        yield made


@pytest.fixture(scope="module")
def chain() -> SigningChain:
    return SigningChain(name="countersign-notation-it")


@pytest.fixture(scope="module")
def stranger() -> SigningChain:
    return SigningChain(name="stranger", intermediate=False)


def _config(registry: Registry) -> Config:
    return parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"notation": {"type": "digest-pin", "options": {}}},
            "policies": [{"scopes": ["*"], "allOf": ["notation"]}],
        }
    )


def _setup(env: NotationEnv, chain: SigningChain, stranger: SigningChain) -> None:
    notation.install_key(env, "signer", chain.key_pem, chain.chain_pem, default=True)
    notation.add_trust_store(env, "ca", "shop", chain.root_pem)
    notation.add_trust_store(env, "ca", "other", stranger.root_pem)


def _policy(env: NotationEnv, store: str, identity: str = "*", level: Any = "strict") -> None:
    notation.write_trust_policy(env, notation.trust_policy([store], [identity], level=level))


async def _verdict(
    engines: Any,
    env: NotationEnv,
    registry: Registry,
    image: PushedImage,
    stores: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The notation report for ``image``; ``stores`` replaces the default (notation's own trust-store
    directory as ``trustStore``) with other ``trustStore``/``trustStores`` options."""
    engine: Engine = await engines(_config(registry))
    if stores is None:
        stores = {"trustStore": str(env.trust_store_dir("ca", "shop").parents[2])}
    engine.verifiers["notation"] = NotationVerifier(
        "notation", {"trustPolicy": str(env.trust_policy_file), **stores}
    )
    outcome: Outcome = (await engine.verify([image.pinned], 30))[image.pinned]
    assert isinstance(outcome, Decided), outcome
    report: dict[str, Any] = outcome.value["verifiers"][0]
    return report


async def _signed(env: NotationEnv, registry: Registry, repo: str, fmt: Format, **kwargs: Any) -> PushedImage:
    image = await asyncio.to_thread(push_image, registry, repo, "v1", seed=f"notation-{fmt}-{time.time_ns()}")
    await asyncio.to_thread(notation.sign, env, "signer", registry, image, signature_format=fmt, **kwargs)
    return image


async def _agree(env: NotationEnv, registry: Registry, image: PushedImage, report: dict[str, Any]) -> bool:
    accepted = await asyncio.to_thread(notation.notation_verify, env, registry, image)
    assert report["passed"] == accepted, report
    return accepted


@pytest.mark.parametrize("fmt", ["jws", "cose"])
async def test_trusted_untrusted_and_identity(
    env: NotationEnv,
    chain: SigningChain,
    stranger: SigningChain,
    registry: Registry,
    repo_name: str,
    engines: Any,
    fmt: Format,
) -> None:
    _setup(env, chain, stranger)
    image = await _signed(env, registry, repo_name, fmt)

    _policy(env, "ca:shop", f"x509.subject: {chain.subject}")
    report = await _verdict(engines, env, registry, image)
    assert await _agree(env, registry, image, report)
    assert report["reason"] == "notation_verified"

    _policy(env, "ca:other")
    report = await _verdict(engines, env, registry, image)
    assert not await _agree(env, registry, image, report)
    assert report["reason"] == "untrusted_signer"

    _policy(env, "ca:shop", "x509.subject: C=US, ST=WA, O=Someone Else")
    report = await _verdict(engines, env, registry, image)
    assert not await _agree(env, registry, image, report)
    assert report["reason"] == "untrusted_signer"


@pytest.mark.parametrize("fmt", ["jws", "cose"])
async def test_expired_signature_by_level(
    env: NotationEnv,
    chain: SigningChain,
    stranger: SigningChain,
    olareg_registry: Registry,
    repo_name: str,
    engines: Any,
    fmt: Format,
) -> None:
    _setup(env, chain, stranger)
    image = await _signed(env, olareg_registry, repo_name, fmt, expiry="1s")
    await asyncio.sleep(2.1)
    _policy(env, "ca:shop")
    report = await _verdict(engines, env, olareg_registry, image)
    assert not await _agree(env, olareg_registry, image, report)
    assert report["reason"] == "signature_expired"
    _policy(env, "ca:shop", level="permissive")
    report = await _verdict(engines, env, olareg_registry, image)
    assert await _agree(env, olareg_registry, image, report)


async def test_audit_logs_an_untrusted_signer(
    env: NotationEnv,
    chain: SigningChain,
    stranger: SigningChain,
    olareg_registry: Registry,
    repo_name: str,
    engines: Any,
) -> None:
    _setup(env, chain, stranger)
    image = await _signed(env, olareg_registry, repo_name, "jws")
    _policy(env, "ca:other", level="audit")
    report = await _verdict(engines, env, olareg_registry, image)
    assert await _agree(env, olareg_registry, image, report)
    assert report["reason"] == "notation_verified"
    logged = report["details"]["signatures"][0]["logged"]
    assert [entry["validation"] for entry in logged] == ["authenticity"]


@pytest.mark.parametrize("fmt", ["jws", "cose"])
async def test_inline_trust_stores_agree_with_notation(
    env: NotationEnv,
    chain: SigningChain,
    stranger: SigningChain,
    olareg_registry: Registry,
    repo_name: str,
    engines: Any,
    fmt: Format,
) -> None:
    """The certificates notation reads from its directory, given inline: the same verdicts as `notation
    verify` (with its directory) and as Countersign reading that directory."""
    _setup(env, chain, stranger)
    image = await _signed(env, olareg_registry, repo_name, fmt)
    inline = {
        "trustStores": [
            {"name": "ca:shop", "pem": chain.root_pem.decode()},
            {"name": "ca:other", "pem": stranger.root_pem.decode()},
        ]
    }
    cases = [
        ("ca:shop", f"x509.subject: {chain.subject}", "notation_verified"),
        ("ca:other", "*", "untrusted_signer"),
        ("ca:shop", "x509.subject: C=US, ST=WA, O=Someone Else", "untrusted_signer"),
    ]
    for store, identity, reason in cases:
        _policy(env, store, identity)
        report = await _verdict(engines, env, olareg_registry, image, inline)
        assert await _agree(env, olareg_registry, image, report) is (reason == "notation_verified")
        assert report["reason"] == reason
        assert report == await _verdict(engines, env, olareg_registry, image)


async def test_directory_and_inline_stores_together(
    env: NotationEnv,
    chain: SigningChain,
    stranger: SigningChain,
    olareg_registry: Registry,
    repo_name: str,
    engines: Any,
    tmp_path: Path,
) -> None:
    """`ca:other` from a directory, `ca:shop` inline: a policy naming both finds the signer in either."""
    _setup(env, chain, stranger)
    image = await _signed(env, olareg_registry, repo_name, "jws")
    directory = tmp_path / "countersign-truststore"
    (directory / "x509" / "ca").mkdir(parents=True)
    shutil.copytree(env.trust_store_dir("ca", "other"), directory / "x509" / "ca" / "other")
    mixed = {
        "trustStore": str(directory),
        "trustStores": [{"name": "ca:shop", "pem": chain.root_pem.decode()}],
    }

    notation.write_trust_policy(env, notation.trust_policy(["ca:other", "ca:shop"]))
    report = await _verdict(engines, env, olareg_registry, image, mixed)
    assert await _agree(env, olareg_registry, image, report)
    assert report["reason"] == "notation_verified"

    _policy(env, "ca:other")
    report = await _verdict(engines, env, olareg_registry, image, mixed)
    assert not await _agree(env, olareg_registry, image, report)
    assert report["reason"] == "untrusted_signer"
