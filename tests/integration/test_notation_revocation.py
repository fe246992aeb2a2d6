"""Notation revocation end to end: real `notation sign` signatures whose leaf names a local OCSP responder and
CRL, verified through the engine and by `notation verify` against the same responder (on 127.0.0.1).

Every test has its own chain, responder and notation environment (notation caches CRLs in its cache dir).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from cryptography import x509

from provider.config import Config, parse_config
from provider.outcome import Outcome, UndecidedKey
from tests.support import notation
from tests.support.images import PushedImage, push_image
from tests.support.notation import NotationEnv, SigningChain
from tests.support.registries import Registry
from tests.support.revocation import RevocationServers, Revoked
from tests.support.tools import require_tool
from verifiers.notation.verifier import NotationVerifier

Level = Literal["strict", "permissive"]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[NotationEnv]:
    require_tool("notation")
    with NotationEnv(tmp_path / "notation") as made:
        yield made


@pytest.fixture
def servers() -> Iterator[RevocationServers]:
    with RevocationServers() as made:
        yield made


@pytest.fixture
def chain(servers: RevocationServers) -> SigningChain:
    made = SigningChain(name="countersign-revocation-it", ocsp_url=servers.ocsp_url, crl_url=servers.crl_url)
    assert made.intermediate_cert is not None and made.intermediate_key is not None
    servers.bind(made.intermediate_cert, made.intermediate_key)
    return made


@pytest.fixture
async def verifiers() -> AsyncIterator[list[NotationVerifier]]:
    made: list[NotationVerifier] = []
    yield made
    for verifier in made:
        await verifier.aclose()


def _config(registry: Registry) -> Config:
    return parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"notation": {"type": "digest-pin", "options": {}}},
            "policies": [{"scopes": ["*"], "allOf": ["notation"]}],
        }
    )


async def _signed(
    env: NotationEnv, chain: SigningChain, registry: Registry, repo: str, level: Level
) -> PushedImage:
    notation.install_key(env, "signer", chain.key_pem, chain.chain_pem, default=True)
    notation.add_trust_store(env, "ca", "shop", chain.root_pem)
    notation.write_trust_policy(env, notation.trust_policy(["ca:shop"], ["*"], level=level))
    image = await asyncio.to_thread(push_image, registry, repo, "v1", seed=f"revocation-{time.time_ns()}")
    await asyncio.to_thread(notation.sign, env, "signer", registry, image, signature_format="jws")
    return image


async def _outcome(
    engines: Any, verifiers: list[NotationVerifier], env: NotationEnv, registry: Registry, image: PushedImage
) -> Outcome:
    return await notation.engine_outcome(await engines(_config(registry)), verifiers, env, image)


async def test_good_then_revoked(
    env: NotationEnv,
    chain: SigningChain,
    servers: RevocationServers,
    registry: Registry,
    repo_name: str,
    engines: Any,
    verifiers: list[NotationVerifier],
) -> None:
    image = await _signed(env, chain, registry, repo_name, "strict")
    report = notation.report_of(await _outcome(engines, verifiers, env, registry, image))
    assert report["passed"] and report["reason"] == "notation_verified", report
    assert servers.ocsp_requests == ["POST"] and servers.crl_requests == 0
    assert await notation.notation_accepts(env, registry, image)
    assert len(servers.ocsp_requests) > 1  # notation asked the same responder

    servers.revoke(chain.leaf_cert.serial_number)
    report = notation.report_of(await _outcome(engines, verifiers, env, registry, image))
    assert not report["passed"] and report["reason"] == "certificate_revoked", report
    assert "revoked" in report["message"] and "keyCompromise" in report["message"]
    assert not await notation.notation_accepts(env, registry, image)


async def test_ocsp_down_falls_back_to_crl(
    env: NotationEnv,
    chain: SigningChain,
    servers: RevocationServers,
    registry: Registry,
    repo_name: str,
    engines: Any,
    verifiers: list[NotationVerifier],
) -> None:
    image = await _signed(env, chain, registry, repo_name, "strict")
    servers.revoke(chain.leaf_cert.serial_number)
    servers.stop_ocsp()
    report = notation.report_of(await _outcome(engines, verifiers, env, registry, image))
    assert report["reason"] == "certificate_revoked" and "by CRL" in report["message"], report
    assert servers.crl_requests >= 1
    assert not await notation.notation_accepts(env, registry, image)


async def test_ocsp_down_crl_good(
    env: NotationEnv,
    chain: SigningChain,
    servers: RevocationServers,
    registry: Registry,
    repo_name: str,
    engines: Any,
    verifiers: list[NotationVerifier],
) -> None:
    image = await _signed(env, chain, registry, repo_name, "strict")
    servers.stop_ocsp()
    report = notation.report_of(await _outcome(engines, verifiers, env, registry, image))
    assert report["passed"], report
    assert await notation.notation_accepts(env, registry, image)


async def test_everything_down_is_undecided(
    env: NotationEnv,
    chain: SigningChain,
    servers: RevocationServers,
    registry: Registry,
    repo_name: str,
    engines: Any,
    verifiers: list[NotationVerifier],
) -> None:
    image = await _signed(env, chain, registry, repo_name, "strict")
    servers.stop_ocsp()
    servers.stop_crl()
    outcome = await _outcome(engines, verifiers, env, registry, image)
    assert isinstance(outcome, UndecidedKey), outcome
    assert outcome.reason == "revocation_unavailable", outcome
    assert not await notation.notation_accepts(env, registry, image)


async def test_permissive_logs_a_revoked_certificate(
    env: NotationEnv,
    chain: SigningChain,
    servers: RevocationServers,
    registry: Registry,
    repo_name: str,
    engines: Any,
    verifiers: list[NotationVerifier],
) -> None:
    image = await _signed(env, chain, registry, repo_name, "permissive")
    servers.revoke(chain.leaf_cert.serial_number)
    report = notation.report_of(await _outcome(engines, verifiers, env, registry, image))
    assert report["passed"] and report["reason"] == "notation_verified", report
    logged = report["details"]["signatures"][0]["logged"]
    assert [entry["validation"] for entry in logged] == ["revocation"]
    assert "revoked" in logged[0]["message"] and not logged[0]["unavailable"]
    assert await notation.notation_accepts(env, registry, image)


def _forget_crls(env: NotationEnv) -> None:
    """Empty notation's CRL cache (it keeps a base and delta CRL until their nextUpdate, an hour here)."""
    cache = env.cache_dir / "crl"
    assert cache.is_dir(), f"notation cached no CRL in {cache}"
    shutil.rmtree(cache)


async def test_delta_crl(
    env: NotationEnv,
    chain: SigningChain,
    servers: RevocationServers,
    olareg_registry: Registry,
    repo_name: str,
    engines: Any,
    verifiers: list[NotationVerifier],
) -> None:
    """The base CRL names a delta CRL (Freshest CRL); OCSP is down, so the CRLs decide, for both."""
    registry, leaf = olareg_registry, chain.leaf_cert.serial_number
    image = await _signed(env, chain, registry, repo_name, "strict")
    servers.stop_ocsp()

    # Revoked in the delta only: revoked.
    servers.delta = {
        leaf: Revoked(datetime.now(UTC) - timedelta(seconds=20), x509.ReasonFlags.key_compromise)
    }
    report = notation.report_of(await _outcome(engines, verifiers, env, registry, image))
    assert report["reason"] == "certificate_revoked" and "by CRL" in report["message"], report
    assert servers.delta_requests == 1
    assert not await notation.notation_accepts(env, registry, image)
    assert servers.delta_requests == 2  # notation fetched it too

    # On hold in the base CRL, taken off hold (removeFromCRL) in the delta: good, for both.
    _forget_crls(env)
    servers.revoke(leaf, x509.ReasonFlags.certificate_hold)
    servers.delta = {
        leaf: Revoked(datetime.now(UTC) - timedelta(seconds=5), x509.ReasonFlags.remove_from_crl)
    }
    report = notation.report_of(await _outcome(engines, verifiers, env, registry, image))
    assert report["passed"], report
    assert await notation.notation_accepts(env, registry, image)
    # Without the delta's word, the hold revokes.
    _forget_crls(env)
    servers.delta = {}
    report = notation.report_of(await _outcome(engines, verifiers, env, registry, image))
    assert report["reason"] == "certificate_revoked" and "certificateHold" in report["message"], report
    assert not await notation.notation_accepts(env, registry, image)

    # The delta CRL unavailable (the base CRL still served): notation's CRL fetch fails, so it rejects;
    # Countersign does not fall back on the base CRL alone either, and is undecided.
    _forget_crls(env)
    servers.revoked.clear()
    servers.delta_available = False
    outcome = await _outcome(engines, verifiers, env, registry, image)
    assert isinstance(outcome, UndecidedKey), outcome
    assert outcome.reason == "revocation_unavailable" and "delta CRL is unavailable" in outcome.message
    assert not await notation.notation_accepts(env, registry, image)
