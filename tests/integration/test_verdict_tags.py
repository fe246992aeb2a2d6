"""A new tag of an already verified image is not verified again: real signatures in a real registry.

An image in olareg, signed by the real cosign v2 (legacy `.sig`) and notation (JWS referrer), with an SBOM
attached by oras, is verified under `v1`; the same digest under `t2` then reuses that verdict (no verifier
runs) and it is, byte for byte, the verdict a fresh engine makes for `t2`. With digest-pin in the policy
(not tag-independent), `t2` is verified again.
"""

from __future__ import annotations

from typing import Any

import pytest

from provider.config import parse_config
from provider.engine import Engine
from provider.outcome import Decided
from tests.integration.conftest import EngineFactory
from tests.support.dual_signing import DualSigner
from tests.support.images import attach_sbom, push_image
from tests.support.registries import Registry

pytestmark = pytest.mark.integration

SEED = "countersign-verdict-tags"


def runs(engine: Engine) -> float:
    """How many verifier runs the engine counted (every verifier, every outcome)."""
    return sum(
        sample.value
        for metric in engine.metrics.verifier_results.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def digest_hits(engine: Engine) -> float:
    value = engine.metrics.registry.get_sample_value(
        "countersign_cache_requests_total", {"cache": "verdict_digest", "result": "hit"}
    )
    return value or 0.0


async def verdict(engine: Engine, key: str) -> Decided:
    outcome = (await engine.verify([key], 30.0))[key]
    assert isinstance(outcome, Decided), outcome
    return outcome


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
async def test_a_new_tag_of_a_verified_image_reuses_its_verdict(
    olareg_registry: Registry, repo_name: str, dual_signer: DualSigner, engines: EngineFactory, signed: bool
) -> None:
    registry = olareg_registry
    image = push_image(registry, repo_name, "v1", seed=SEED)
    again = push_image(registry, repo_name, "t2", seed=SEED)
    assert again.digest == image.digest
    if signed:
        dual_signer.sign(registry, image)
        attach_sbom(registry, image)
    verifiers: dict[str, Any] = {**dual_signer.verifiers(), "sbom": {"type": "sbom"}}
    config = parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": verifiers,
            "policies": [{"name": "default", "scopes": ["*"], "allOf": ["cosign", "notation", "sbom"]}],
        }
    )
    name = f"{registry.host}/{repo_name}"
    reusing, fresh = await engines(config), await engines(config)
    first = await verdict(reusing, f"[team]{name}:v1")
    assert first.value["allowed"] is signed, first.value
    assert runs(reusing) == 3
    reused = await verdict(reusing, f"[team]{name}:t2")
    assert runs(reusing) == 3 and digest_hits(reusing) == 1  # no verifier ran for t2
    made = await verdict(fresh, f"[team]{name}:t2")
    assert runs(fresh) == 3
    assert reused.encoded == made.encoded  # the reports, reasons and policies: all the same bytes
    assert made.value["reference"] == f"{name}:t2" and made.value["namespace"] == "team"
    # notation names what it verified, never the key's tag
    notation = next(v for v in made.value["verifiers"] if v["name"] == "notation")
    assert f"{name}@{image.digest}" in notation["message"], notation
    assert ":t2" not in notation["message"] and ":v1" not in notation["message"]
    # and the verdict made for v1 differs from them only by its reference
    assert {**first.value, "reference": made.value["reference"]} == made.value


async def test_digest_pin_in_the_policy_makes_a_new_tag_verify_again(
    olareg_registry: Registry, repo_name: str, dual_signer: DualSigner, engines: EngineFactory
) -> None:
    registry = olareg_registry
    image = push_image(registry, repo_name, "v1", seed=SEED)
    push_image(registry, repo_name, "t2", seed=SEED)
    dual_signer.sign(registry, image)
    verifiers: dict[str, Any] = {**dual_signer.verifiers(), "pinned": {"type": "digest-pin"}}
    config = parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": verifiers,
            "policies": [{"name": "default", "scopes": ["*"], "anyOf": ["cosign", "pinned"]}],
        }
    )
    engine = await engines(config)
    name = f"{registry.host}/{repo_name}"
    assert (await verdict(engine, f"{name}:v1")).value["allowed"] is True
    assert runs(engine) == 2
    assert (await verdict(engine, f"{name}:t2")).value["allowed"] is True
    assert runs(engine) == 4 and digest_hits(engine) == 0
