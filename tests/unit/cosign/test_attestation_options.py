"""Attestation options: the cosign verifier's `attestations`, the sbom verifier's `attestedBy`, binding.

Mistakes are refused with the field that is wrong, through `build_verifiers` (what `countersign config
validate` and the server run). Also, without a registry: the verified statement is read only from a result
that passed, one scan serves every call of one verification, and an attested SBOM is checked like a
referrer's (format, version, size).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provider.cli import main
from provider.config import ConfigError, parse_config
from provider.engine import build_verifiers
from tests.support.images import cyclonedx_document, spdx_document
from tests.support.private_sigstore import PrivateKey, PrivateSigstore, pem_public_key
from tests.unit.cosign.conftest import DIGEST, NOW, OTHER_DIGEST
from verifiers.base import AttestationSource, Context, OptionsError, Report, Subject, Verifier
from verifiers.cosign.common import Failure
from verifiers.cosign.core import load_public_key, verify_candidate
from verifiers.cosign.model import Reason, TrustPolicy
from verifiers.cosign.statements import attested_statement
from verifiers.cosign.verifier import CosignVerifier, VerifiedAttestation
from verifiers.errors import Unavailable
from verifiers.reference import parse_reference
from verifiers.sbom import SbomVerifier
from verifiers.testing import InMemoryRegistry

SPDX_TYPE = "https://spdx.dev/Document"
CYCLONEDX_TYPE = "https://cyclonedx.org/bom"


@pytest.fixture(scope="module")
def pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def cosign_options(pem: str, **extra: Any) -> dict[str, Any]:
    return {"keys": [{"name": "release", "pem": pem}], "transparencyLog": "skip", **extra}


def config(verifiers: dict[str, Any]) -> Any:
    return parse_config(
        {"verifiers": verifiers, "policies": [{"scopes": ["*"], "allOf": sorted(verifiers)[:1]}]}
    )


def config_error(verifiers: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_verifiers(config(verifiers))
    return info.value


# --- options -------------------------------------------------------------------------------------------


def test_attested_by_binds_to_the_named_cosign_verifier(pem: str) -> None:
    built = build_verifiers(
        config(
            {
                "release": {"type": "cosign", "options": cosign_options(pem)},
                "sbom": {"type": "sbom", "options": {"attestedBy": "release"}},
                "plain": {"type": "sbom"},
            }
        )
    )
    sbom = built["sbom"]
    assert isinstance(sbom, SbomVerifier)
    assert sbom.attested_by == "release"
    release: object = built["release"]
    assert sbom._attester is release
    plain = built["plain"]
    assert isinstance(plain, SbomVerifier) and plain._attester is None


@pytest.mark.parametrize(
    ("attested_by", "others", "fragment"),
    [
        (
            "missing",
            {},
            "no verifier named 'missing' is configured "
            + "(verifiers that yield attestations, such as cosign: release)",
        ),
        ("pin", {"pin": {"type": "digest-pin"}}, "verifier 'pin' is of type 'digest-pin', not cosign"),
        ("sbom", {}, "verifier 'sbom' is of type 'sbom', not cosign"),
    ],
    ids=["missing", "digest-pin", "itself"],
)
def test_attested_by_must_name_a_cosign_verifier(
    pem: str, attested_by: str, others: dict[str, Any], fragment: str
) -> None:
    error = config_error(
        {
            "release": {"type": "cosign", "options": cosign_options(pem)},
            "sbom": {"type": "sbom", "options": {"attestedBy": attested_by}},
            **others,
        }
    )
    assert error.path == "verifiers.sbom.options.attestedBy"
    assert fragment in error.message


@pytest.mark.parametrize("value", ["", 3, ["release"], True])
def test_attested_by_must_be_a_name(pem: str, value: object) -> None:
    error = config_error(
        {
            "release": {"type": "cosign", "options": cosign_options(pem)},
            "sbom": {"type": "sbom", "options": {"attestedBy": value}},
        }
    )
    assert error.path == "verifiers.sbom.options.attestedBy"
    assert "name of a cosign verifier" in error.message


@pytest.mark.parametrize("value", ["https://slsa.dev/provenance/v1", [1], [""], ["ok", None], {"a": 1}])
def test_attestations_must_be_a_list_of_predicate_types(pem: str, value: object) -> None:
    with pytest.raises(OptionsError) as direct:
        CosignVerifier("c", cosign_options(pem, attestations=value))
    assert direct.value.path == "attestations"
    error = config_error({"release": {"type": "cosign", "options": cosign_options(pem, attestations=value)}})
    assert error.path == "verifiers.release.options.attestations"
    assert "list of predicate types" in error.message


def test_attestations_option(pem: str) -> None:
    verifier = CosignVerifier("c", cosign_options(pem, attestations=[SPDX_TYPE, SPDX_TYPE, CYCLONEDX_TYPE]))
    assert verifier.required_attestations == (SPDX_TYPE, CYCLONEDX_TYPE)
    assert CosignVerifier("c", cosign_options(pem)).required_attestations == ()
    assert CosignVerifier("c", cosign_options(pem, attestations=[])).required_attestations == ()


def test_attestation_formats_follow_the_signature_formats(pem: str) -> None:
    assert CosignVerifier("c", cosign_options(pem))._discovery_formats == {
        "bundle",
        "oci-1.1",
        "legacy",
        "legacy-att",
    }
    assert CosignVerifier("c", cosign_options(pem, formats=["bundle"]))._discovery_formats == {"bundle"}


def test_a_binding_plugin_bug_is_a_config_error(pem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: SbomVerifier, verifiers: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(SbomVerifier, "bind", broken)
    error = config_error({"sbom": {"type": "sbom"}})
    assert error.path == "verifiers.sbom.type"
    assert "failed to bind: KeyError" in error.message


def test_config_validate_reports_a_bad_attested_by(pem: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        json.dumps(
            {
                "verifiers": {
                    "release": {"type": "cosign", "options": cosign_options(pem)},
                    "sbom": {"type": "sbom", "options": {"attestedBy": "relase"}},
                },
                "policies": [{"scopes": ["*"], "allOf": ["sbom"]}],
            }
        )
    )
    out, err = io.StringIO(), io.StringIO()
    assert main(["config", "validate", str(path)], out=out, err=err) == 2
    assert "verifiers.sbom.options.attestedBy: no verifier named 'relase'" in err.getvalue()


async def test_an_unbound_attested_by_is_never_a_verdict(pem: str) -> None:
    sbom = SbomVerifier("sbom", {"attestedBy": "release"})
    with pytest.raises(RuntimeError, match="not bound"):
        await sbom.verify(subject(), Context(registry=empty_registry(), deadline=0.0))


# --- the verified statement ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def attester_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def policy_for(key: PrivateKey) -> TrustPolicy:
    return TrustPolicy(keys=(load_public_key(pem_public_key(key), "release"),), require_tlog=False, now=NOW)


def in_toto(digest: str, predicate_type: str, predicate: object) -> bytes:
    algorithm, _, hex_value = digest.partition(":")
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"name": "registry.example.test/app", "digest": {algorithm: hex_value}}],
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    ).encode()


def test_statement_of_a_verified_attestation(sigstore: PrivateSigstore, attester_key: PrivateKey) -> None:
    document = json.loads(spdx_document())
    candidate = sigstore.key_bundle_dsse(
        attester_key, DIGEST, payload=in_toto(DIGEST, SPDX_TYPE, document), rekor="none"
    )
    result = verify_candidate(candidate, DIGEST, policy_for(attester_key))
    assert result.passed and result.predicate_type == SPDX_TYPE, result
    statement = attested_statement(candidate, result, DIGEST)
    assert statement.predicate_type == SPDX_TYPE
    assert statement.statement_type == "https://in-toto.io/Statement/v0.1"
    assert json.loads(statement.predicate) == document


def test_statement_is_never_read_from_an_unverified_result(
    sigstore: PrivateSigstore, attester_key: PrivateKey
) -> None:
    candidate = sigstore.key_bundle_dsse(
        attester_key, DIGEST, payload=in_toto(DIGEST, SPDX_TYPE, {}), rekor="none"
    )
    stranger = ec.generate_private_key(ec.SECP256R1())
    failed = verify_candidate(candidate, DIGEST, policy_for(stranger))
    assert not failed.passed
    with pytest.raises(Failure, match="only an attestation that verified"):
        attested_statement(candidate, failed, DIGEST)
    passed = verify_candidate(candidate, DIGEST, policy_for(attester_key))
    other = sigstore.key_bundle_dsse(
        attester_key, DIGEST, payload=in_toto(DIGEST, SPDX_TYPE, 1), rekor="none"
    )
    with pytest.raises(Failure, match="another candidate"):
        attested_statement(other, passed, DIGEST)
    with pytest.raises(Failure) as info:
        attested_statement(candidate, passed, OTHER_DIGEST)
    assert info.value.reason == Reason.DIGEST_MISMATCH
    with pytest.raises(Failure, match="not the verified"):
        attested_statement(candidate, dataclasses.replace(passed, predicate_type=CYCLONEDX_TYPE), DIGEST)


# --- one scan per verification, attested SBOMs -------------------------------------------------------------


def empty_registry() -> InMemoryRegistry:
    """No referrers, no tags; listing the referrers yields to the event loop once, as a real read does."""
    registry = InMemoryRegistry()
    registry.delay(0, "referrers")
    return registry


def listings(registry: InMemoryRegistry) -> int:
    return sum(1 for request in registry.requests if request.op == "referrers")


def failing_registry() -> InMemoryRegistry:
    """Every referrers listing fails as a registry outage would."""
    registry = empty_registry()
    registry.fail("referrers", error=Unavailable("registry down"))
    return registry


def subject(digest: str = DIGEST) -> Subject:
    return Subject(
        reference=parse_reference(f"registry.example.test/app@{digest}"),
        digest=digest,
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=2,
        manifest=b"{}",
    )


async def test_one_scan_serves_every_call_of_one_verification(pem: str) -> None:
    verifier = CosignVerifier("release", cosign_options(pem))
    registry = empty_registry()
    loop = asyncio.get_running_loop()
    context = Context(registry=registry, deadline=loop.time() + 5)
    report, attestations, again = await asyncio.gather(
        verifier.verify(subject(), context),
        verifier.verified_attestations(subject(), context),
        verifier.verified_attestations(subject(), context),
    )
    assert report.reason == Reason.NO_SIGNATURE and report.details["attestations"] == []
    assert attestations == again == []
    assert listings(registry) == 1
    await verifier.verified_attestations(subject(), context)  # later in the same verification
    assert listings(registry) == 1
    await verifier.verified_attestations(subject(OTHER_DIGEST), context)  # another image
    assert listings(registry) == 2
    await verifier.verified_attestations(subject(), Context(registry=registry, deadline=0.0))  # another one
    assert listings(registry) == 3
    # A finished verification's scan is not kept: its deadline has passed.
    await verifier.verified_attestations(subject(), Context(registry=registry, deadline=0.0))
    assert listings(registry) == 4
    assert len(context.memo) == 2  # the two images scanned under the first verification's context
    assert not any("scan" in name for name in vars(verifier))  # the verifier itself keeps none


async def test_a_failed_scan_is_shared_then_forgotten(pem: str) -> None:
    verifier = CosignVerifier("release", cosign_options(pem))
    registry = failing_registry()
    context = Context(registry=registry, deadline=0.0)
    first, second = await asyncio.gather(
        verifier.verified_attestations(subject(), context),
        verifier.verified_attestations(subject(), context),
        return_exceptions=True,
    )
    assert isinstance(first, Unavailable) and first is second  # one scan, its exception shared
    assert listings(registry) == 1
    with pytest.raises(Unavailable):
        await verifier.verified_attestations(subject(), context)  # run again, not a remembered failure
    assert listings(registry) == 2
    assert len(context.memo) == 0


def bound_sbom(pem: str, attestations: list[VerifiedAttestation], **options: Any) -> SbomVerifier:
    cosign = CosignVerifier("release", cosign_options(pem))

    async def verified(subject: Subject, context: Context) -> list[VerifiedAttestation]:
        return attestations

    cosign.verified_attestations = verified  # type: ignore[method-assign]
    sbom = SbomVerifier("sbom", {"attestedBy": "release", **options})
    sbom.bind(cast(Mapping[str, Verifier], {"release": cosign, "sbom": sbom}))
    return sbom


def attested(predicate_type: str, document: bytes, *, as_string: bool = False) -> VerifiedAttestation:
    value: object = document.decode() if as_string else json.loads(document)
    return VerifiedAttestation(
        predicate_type=predicate_type,
        predicate=json.dumps(value, separators=(",", ":")).encode(),
        anchor="release",
        format="bundle",
        manifest_digest=OTHER_DIGEST,
    )


async def sbom_report(sbom: SbomVerifier) -> Report:
    return await sbom.verify(subject(), Context(registry=empty_registry(), deadline=0.0))


@pytest.mark.parametrize(
    ("predicate_type", "document", "as_string", "fmt"),
    [
        (SPDX_TYPE, spdx_document(), False, "spdx"),
        (SPDX_TYPE + "/v2.3", spdx_document(), False, "spdx"),
        (SPDX_TYPE, spdx_document(), True, "spdx"),
        (CYCLONEDX_TYPE, cyclonedx_document(), False, "cyclonedx"),
        (CYCLONEDX_TYPE + "/v1.5", cyclonedx_document(), False, "cyclonedx"),
    ],
    ids=["spdx", "spdx-versioned", "spdx-string", "cyclonedx", "cyclonedx-versioned"],
)
async def test_an_attested_sbom_passes(
    pem: str, predicate_type: str, document: bytes, as_string: bool, fmt: str
) -> None:
    report = await sbom_report(bound_sbom(pem, [attested(predicate_type, document, as_string=as_string)]))
    assert report.passed, report
    assert report.reason == "sbom_verified"
    assert report.details["format"] == fmt
    assert report.details["attestedBy"] == "release"
    assert report.details["matched"] == "release"
    assert report.details["predicateType"] == predicate_type


@pytest.mark.parametrize(
    ("attestation", "options", "reason"),
    [
        (attested(SPDX_TYPE + "/v2.2", spdx_document()), {}, "sbom_invalid"),  # declared version disagrees
        (attested(SPDX_TYPE, cyclonedx_document()), {}, "sbom_invalid"),  # declared format disagrees
        (attested(SPDX_TYPE, b'{"spdxVersion": "SPDX-2.3"}'), {}, "sbom_invalid"),
        (attested(SPDX_TYPE, spdx_document()), {"maxBytes": 100}, "sbom_invalid"),
        (attested(SPDX_TYPE, spdx_document()), {"maxAge": "1h"}, "sbom_too_old"),
        (
            attested(SPDX_TYPE, spdx_document()),
            {"artifactTypes": ["application/vnd.cyclonedx+json"]},
            "sbom_not_found",
        ),
        (attested("https://spdx.dev/Documents", spdx_document()), {}, "sbom_not_found"),
        (attested("https://cosign.sigstore.dev/attestation/v1", spdx_document()), {}, "sbom_not_found"),
    ],
    ids=[
        "version",
        "format",
        "malformed",
        "max-bytes",
        "max-age",
        "artifact-types",
        "near-miss-type",
        "custom-type",
    ],
)
async def test_an_attested_sbom_is_checked(
    pem: str, attestation: VerifiedAttestation, options: dict[str, Any], reason: str
) -> None:
    report = await sbom_report(bound_sbom(pem, [attestation], **options))
    assert not report.passed
    assert report.reason == reason, report
    assert report.details["attestedBy"] == "release"


class _OtherSource:
    """A verifier of another type that yields verified attestations: attestedBy accepts it by protocol."""

    type = "other-attester"

    def __init__(self, attestations: list[VerifiedAttestation]) -> None:
        self.name = "other"
        self.attestations = attestations

    async def verify(self, subject: Subject, context: Context) -> Report:
        return Report.ok("ok", "fine")

    async def verified_attestations(self, subject: Subject, context: Context) -> list[VerifiedAttestation]:
        return self.attestations


async def test_attested_by_takes_any_attestation_source() -> None:
    source = _OtherSource([attested(SPDX_TYPE, spdx_document())])
    assert isinstance(source, AttestationSource)
    assert not isinstance(SbomVerifier("plain", {}), AttestationSource)
    sbom = SbomVerifier("sbom", {"attestedBy": "other"})
    sbom.bind(cast(Mapping[str, Verifier], {"other": source, "sbom": sbom}))
    report = await sbom_report(sbom)
    assert report.passed and report.details["matched"] == "release"
    assert report.details["attestedBy"] == "other"


def _tags_read(registry: InMemoryRegistry) -> set[str]:
    """The `sha256-<hex>.<suffix>` suffixes whose tags were resolved."""
    return {
        request.target.rpartition(".")[2]
        for request in registry.requests
        if request.op == "resolve" and ":sha256-" in request.target
    }


@pytest.mark.parametrize(
    ("extra", "tags"),
    [
        ({}, {"sig", "att"}),
        ({"legacyAttestations": True}, {"sig", "att"}),
        ({"legacyAttestations": False}, {"sig"}),
        ({"formats": ["bundle"]}, set()),
    ],
    ids=["default", "true", "false", "no-legacy-format"],
)
async def test_the_legacy_att_tag_is_read_unless_legacy_attestations_is_false(
    pem: str, extra: dict[str, Any], tags: set[str]
) -> None:
    verifier = CosignVerifier("release", cosign_options(pem, **extra))
    registry = empty_registry()
    report = await verifier.verify(subject(), Context(registry=registry, deadline=0.0))
    assert report.reason == Reason.NO_SIGNATURE
    assert _tags_read(registry) == tags


@pytest.mark.parametrize("value", ["false", 0, None, []])
def test_legacy_attestations_must_be_a_boolean(pem: str, value: object) -> None:
    error = config_error(
        {"release": {"type": "cosign", "options": cosign_options(pem, legacyAttestations=value)}}
    )
    assert error.path == "verifiers.release.options.legacyAttestations"
    assert "expected true or false" in error.message
