"""cosign attestations, end to end: made by the real cosign v3 (`attest`, bundle v0.3 referrers) and cosign v2
(`attest`, the legacy `sha256-<hex>.att` tag), verified by the engine's cosign verifier (its `attestations`
details and option) and by the sbom verifier's `attestedBy`.

Every positive case also asks `cosign verify-attestation --type ...` (v3 and v2) for its verdict. Signing is
key-based and offline, so the cosign verifiers run with `transparencyLog: skip`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from provider.config import Config, parse_config
from provider.engine import Engine
from provider.outcome import Decided, Outcome
from tests.support import cosign
from tests.support.cosign import ATTESTATION_PREDICATE_TYPES, CosignEnv, KeyPair
from tests.support.images import (
    DEFAULT_PACKAGES,
    PushedImage,
    attach_sbom,
    cyclonedx_document,
    push_image,
    spdx_document,
)
from tests.support.registries import Registry
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

SPDX = "https://spdx.dev/Document"
CYCLONEDX = "https://cyclonedx.org/bom"
CUSTOM = "https://cosign.sigstore.dev/attestation/v1"
Where = Literal["bundle", "legacy"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosignEnv]:
    for tool in ("cosign", "cosign2"):
        require_tool(tool)
    with CosignEnv(tmp_path_factory.mktemp("cosign-attest")) as cosign_env:
        yield cosign_env


@pytest.fixture(scope="module")
def signer(env: CosignEnv) -> KeyPair:
    return cosign.generate_key_pair(env, "signer")


@pytest.fixture(scope="module")
def stranger(env: CosignEnv) -> KeyPair:
    return cosign.generate_key_pair(env, "stranger", tool="cosign2")


def config_for(
    registry: Registry,
    key: KeyPair,
    *,
    attestations: list[str] | None = None,
    sbom: dict[str, Any] | None = None,
    require: tuple[str, ...] = ("release",),
) -> Config:
    options = cosign.key_options(key)
    if attestations is not None:
        options["attestations"] = attestations
    verifiers: dict[str, Any] = {"release": {"type": "cosign", "options": options}}
    if sbom is not None:
        verifiers["sbom"] = {"type": "sbom", "options": sbom}
    return parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": verifiers,
            "policies": [{"scopes": ["*"], "allOf": list(require)}],
        }
    )


async def reports(engine: Engine, image: PushedImage) -> dict[str, dict[str, Any]]:
    outcome: Outcome = (await engine.verify([image.pinned], 60))[image.pinned]
    assert isinstance(outcome, Decided), outcome
    return {report["name"]: report for report in outcome.value["verifiers"]}


async def push(registry: Registry, repo: str, seed: str) -> PushedImage:
    return await asyncio.to_thread(push_image, registry, repo, "v1", seed=seed)


def predicate_file(tmp_path: Path, kind: str, image: PushedImage, document: bytes | None = None) -> Path:
    path = tmp_path / f"predicate-{kind}.json"
    if document is None:
        if kind == "spdxjson":
            document = spdx_document(image.reference)
        elif kind == "cyclonedx":
            document = cyclonedx_document(image.reference)
        else:
            document = json.dumps({"built-by": "countersign tests", "image": image.reference}).encode()
    path.write_bytes(document)
    return path


async def attest(
    env: CosignEnv,
    key: KeyPair,
    registry: Registry,
    image: PushedImage,
    where: Where,
    kind: str,
    predicate: Path,
) -> None:
    """cosign v3 `attest` (bundle referrer) or cosign v2 `attest` (the .att tag)."""
    attester = cosign.attest_bundle if where == "bundle" else cosign.attest_legacy
    await asyncio.to_thread(attester, env, key, registry, image, predicate, kind)


async def cosign_accepts_attestation(
    env: CosignEnv, key: KeyPair, registry: Registry, image: PushedImage, kind: str
) -> dict[str, bool]:
    """`verify-attestation --type kind` of cosign v3 and v2 (both look in bundles and the .att tag)."""
    tools: tuple[cosign.Tool, ...] = ("cosign", "cosign2")
    verdicts = await asyncio.gather(
        *(
            asyncio.to_thread(
                cosign.cosign_verify, env, tool, key.public_path, registry, image, attestation_type=kind
            )
            for tool in tools
        )
    )
    return dict(zip(tools, verdicts, strict=True))


FORMAT = {"bundle": "bundle", "legacy": "legacy-att"}
SIGNERS: dict[Where, Callable[..., Any]] = {"bundle": cosign.sign_bundle, "legacy": cosign.sign_legacy}
CASES: list[tuple[Where, str]] = [
    ("bundle", "spdxjson"),
    ("bundle", "cyclonedx"),
    ("legacy", "spdxjson"),
    ("legacy", "cyclonedx"),
]


@pytest.mark.parametrize(("where", "kind"), CASES, ids=[f"{w}-{k}" for w, k in CASES])
async def test_attested_sbom_is_reported_and_accepted(
    env: CosignEnv,
    signer: KeyPair,
    registry: Registry,
    repo_name: str,
    engines: Any,
    tmp_path: Path,
    where: Where,
    kind: str,
) -> None:
    image = await push(registry, repo_name, f"{where}-{kind}")
    # Each CLI generation's own workflow: v3 signs and attests as bundles, v2 in the .sig and .att tags
    # (see test_legacy_attestation_beside_a_bundle_signature for a mix).
    await asyncio.to_thread(SIGNERS[where], env, signer, registry, image)
    await attest(env, signer, registry, image, where, kind, predicate_file(tmp_path, kind, image))
    predicate_type = SPDX if kind == "spdxjson" else CYCLONEDX
    assert ATTESTATION_PREDICATE_TYPES[kind] == predicate_type  # what cosign writes for --type

    engine = await engines(
        config_for(
            registry,
            signer,
            attestations=[predicate_type],
            sbom={"attestedBy": "release"},
            require=("release", "sbom"),
        )
    )
    found = await reports(engine, image)
    release = found["release"]
    assert release["passed"] is True, release
    assert release["reason"] == "cosign_verified"
    [attestation] = release["details"]["attestations"]
    assert attestation["predicateType"] == predicate_type
    assert attestation["format"] == FORMAT[where]
    assert attestation["matched"] == "signer"
    assert attestation["signature"].startswith("sha256:")
    # The attestation is not counted as a signature: only the signature is.
    assert [s["format"] for s in release["details"]["signatures"] if s["passed"]] == [where]

    sbom = found["sbom"]
    assert sbom["passed"] is True, sbom
    assert sbom["reason"] == "sbom_verified"
    assert sbom["details"]["attestedBy"] == "release"
    assert sbom["details"]["matched"] == "signer"
    assert sbom["details"]["format"] == ("spdx" if kind == "spdxjson" else "cyclonedx")
    assert sbom["details"]["packageCount"] == len(DEFAULT_PACKAGES)
    assert sbom["details"]["predicateType"] == predicate_type
    assert sbom["details"]["signature"] == attestation["signature"]

    assert await cosign_accepts_attestation(env, signer, registry, image, kind) == {
        "cosign": True,
        "cosign2": True,
    }


@pytest.mark.parametrize("where", ["bundle", "legacy"])
async def test_required_attestation_present_or_missing(
    env: CosignEnv,
    signer: KeyPair,
    registry: Registry,
    repo_name: str,
    engines: Any,
    tmp_path: Path,
    where: Where,
) -> None:
    spdx = await push(registry, repo_name, f"required-spdx-{where}")
    custom = await push(registry, repo_name, f"required-custom-{where}")
    for image in (spdx, custom):
        await asyncio.to_thread(cosign.sign_legacy, env, signer, registry, image)
    await attest(env, signer, registry, spdx, where, "spdxjson", predicate_file(tmp_path, "spdxjson", spdx))
    await attest(env, signer, registry, custom, where, "custom", predicate_file(tmp_path, "custom", custom))
    engine = await engines(config_for(registry, signer, attestations=[SPDX]))

    present = (await reports(engine, spdx))["release"]
    assert present["passed"] is True, present
    assert [a["predicateType"] for a in present["details"]["attestations"]] == [SPDX]
    assert await cosign_accepts_attestation(env, signer, registry, spdx, "spdxjson") == {
        "cosign": True,
        "cosign2": True,
    }

    missing = (await reports(engine, custom))["release"]
    assert missing["passed"] is False
    assert missing["reason"] == "attestation_missing", missing
    assert missing["details"]["missingAttestations"] == [SPDX]
    assert missing["details"]["matched"] == ["signer"]  # the signature itself verified
    assert [a["predicateType"] for a in missing["details"]["attestations"]] == [CUSTOM]
    assert await cosign_accepts_attestation(env, signer, registry, custom, "spdxjson") == {
        "cosign": False,
        "cosign2": False,
    }
    assert await cosign_accepts_attestation(env, signer, registry, custom, "custom") == {
        "cosign": True,
        "cosign2": True,
    }


async def test_attestations_signed_by_another_key_are_not_reported(
    env: CosignEnv,
    signer: KeyPair,
    stranger: KeyPair,
    registry: Registry,
    repo_name: str,
    engines: Any,
    tmp_path: Path,
) -> None:
    image = await push(registry, repo_name, "stranger-attests")
    await asyncio.to_thread(cosign.sign_bundle, env, signer, registry, image)
    await attest(
        env, stranger, registry, image, "bundle", "spdxjson", predicate_file(tmp_path, "spdx", image)
    )
    await attest(
        env, stranger, registry, image, "legacy", "cyclonedx", predicate_file(tmp_path, "cdx", image)
    )
    await attest(env, signer, registry, image, "bundle", "custom", predicate_file(tmp_path, "custom", image))
    engine = await engines(
        config_for(
            registry,
            signer,
            attestations=[SPDX],
            sbom={"attestedBy": "release"},
            require=("release", "sbom"),
        )
    )
    found = await reports(engine, image)
    release = found["release"]
    assert release["details"]["matched"] == ["signer"]
    assert [a["predicateType"] for a in release["details"]["attestations"]] == [CUSTOM]
    assert all(a["matched"] == "signer" for a in release["details"]["attestations"])
    assert release["reason"] == "attestation_missing", release
    # The stranger's .att layer is known to be an attestation: it is listed as rejected.
    [rejected] = release["details"]["rejectedAttestations"]
    assert rejected["format"] == "legacy-att" and rejected["reason"] == "untrusted_key"
    sbom = found["sbom"]
    assert sbom["passed"] is False
    assert sbom["reason"] == "sbom_not_found", sbom
    assert sbom["details"]["attestations"] == [CUSTOM]
    for kind in ("spdxjson", "cyclonedx"):
        assert await cosign_accepts_attestation(env, signer, registry, image, kind) == {
            "cosign": False,
            "cosign2": False,
        }


async def test_sbom_attached_without_attestation_does_not_count(
    env: CosignEnv, signer: KeyPair, registry: Registry, repo_name: str, engines: Any
) -> None:
    attached = await push(registry, repo_name, "plain-sbom")
    bare = await push(registry, repo_name, "no-sbom")
    for image in (attached, bare):
        await asyncio.to_thread(cosign.sign_bundle, env, signer, registry, image)
    await asyncio.to_thread(attach_sbom, registry, attached)
    config = config_for(registry, signer, sbom={"attestedBy": "release"}, require=("sbom",))
    engine = await engines(config)

    report = (await reports(engine, attached))["sbom"]
    assert report["passed"] is False
    assert report["reason"] == "sbom_not_attested", report
    assert len(report["details"]["sbomReferrers"]) == 1
    report = (await reports(engine, bare))["sbom"]
    assert report["reason"] == "sbom_not_found", report

    # The same SBOM satisfies the sbom verifier without attestedBy.
    plain = await engines(config_for(registry, signer, sbom={}, require=("sbom",)))
    assert (await reports(plain, attached))["sbom"]["reason"] == "sbom_verified"


@pytest.mark.parametrize("where", ["bundle", "legacy"])
async def test_malformed_sbom_predicate_is_invalid(
    env: CosignEnv,
    signer: KeyPair,
    registry: Registry,
    repo_name: str,
    engines: Any,
    tmp_path: Path,
    where: Where,
) -> None:
    image = await push(registry, repo_name, f"malformed-{where}")
    document = json.dumps({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "x"}).encode()
    await attest(
        env, signer, registry, image, where, "spdxjson", predicate_file(tmp_path, "bad", image, document)
    )
    engine = await engines(config_for(registry, signer, sbom={"attestedBy": "release"}, require=("sbom",)))
    report = (await reports(engine, image))["sbom"]
    assert report["passed"] is False
    assert report["reason"] == "sbom_invalid", report
    assert "SPDX" in report["message"] or "dataLicense" in report["message"], report
    # cosign checks the signature and the predicate type only, not that the predicate is an SBOM.
    assert await cosign_accepts_attestation(env, signer, registry, image, "spdxjson") == {
        "cosign": True,
        "cosign2": True,
    }


async def test_legacy_attestation_beside_a_bundle_signature(
    env: CosignEnv, signer: KeyPair, registry: Registry, repo_name: str, engines: Any, tmp_path: Path
) -> None:
    image = await push(registry, repo_name, "mixed")
    await asyncio.to_thread(cosign.sign_bundle, env, signer, registry, image)
    await attest(
        env, signer, registry, image, "legacy", "spdxjson", predicate_file(tmp_path, "spdxjson", image)
    )
    engine = await engines(
        config_for(
            registry, signer, attestations=[SPDX], sbom={"attestedBy": "release"}, require=("release", "sbom")
        )
    )
    found = await reports(engine, image)
    assert found["release"]["passed"] is True, found["release"]
    assert [a["format"] for a in found["release"]["details"]["attestations"]] == ["legacy-att"]
    assert found["sbom"]["reason"] == "sbom_verified", found["sbom"]
    # Deliberate difference, pinned: once an image has bundle referrers, `cosign verify-attestation` (v3 and
    # v2) looks only at them and never at the .att tag ("none of the attestations matched the predicate
    # type ..., found: https://sigstore.dev/cosign/sign/v1"). Countersign looks in both places; what it
    # finds there must verify all the same.
    assert await cosign_accepts_attestation(env, signer, registry, image, "spdxjson") == {
        "cosign": False,
        "cosign2": False,
    }
