"""Junk referrers never crash a verifier nor hide a good one (cosign, sbom; notation: notation/test_junk.py).

Every junk shape of `verifiers.testing.junk` sits beside a valid signature (or SBOM), listed both with the
verifier's artifact type and with none (so the verifier must read the manifest to know what it is): the
good one verifies and the junk is noted in `details.skipped`. Junk alone is decided like nothing at all.
Every report passes the engine's JSON check.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.images import spdx_document
from tests.support.junk import EMPTY, OCI_MANIFEST, digest_of, junk_manifests
from tests.support.private_sigstore import pem_public_key, sign, simple_signing_payload
from verifiers import oci
from verifiers.base import Report, check_report
from verifiers.cosign.model import ANNOTATION_SIGNATURE, ARTIFACT_TYPE_COSIGN_SIG, SIMPLE_SIGNING_MEDIA_TYPE
from verifiers.cosign.verifier import CosignVerifier
from verifiers.errors import InvalidContent
from verifiers.sbom import SbomVerifier
from verifiers.testing import InMemoryRegistry, descriptor_json, make_context, make_subject

SUBJECT_BYTES = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
SUBJECT_DIGEST = digest_of(SUBJECT_BYTES)
SUBJECT = make_subject(f"registry.example.test/app@{SUBJECT_DIGEST}", SUBJECT_BYTES)
SIG_TAG = f"registry.example.test/app:sha256-{SUBJECT_DIGEST.removeprefix('sha256:')}.sig"
SPDX = "application/spdx+json"
KEY = ec.generate_private_key(ec.SECP256R1())


def new_registry() -> InMemoryRegistry:
    """Manifests handed over unchecked, so the junk reaches the verifiers' own parse."""
    return InMemoryRegistry(check_manifests=False)


def referrer(artifact_type: str, layer: dict[str, Any]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY,
        "layers": [layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": SUBJECT_DIGEST, "size": len(SUBJECT_BYTES)},
    }
    return json.dumps(doc).encode()


def add_blob(registry: InMemoryRegistry, data: bytes, media_type: str, **annotations: str) -> dict[str, Any]:
    """A blob in the subject's repository, as the layer that names it is written."""
    return descriptor_json(
        dataclasses.replace(registry.push_blob(SUBJECT, data, media_type), annotations=annotations)
    )


def add_referrer(registry: InMemoryRegistry, data: bytes, listed: str | None) -> str:
    """A manifest listed as a referrer of the subject with artifact type `listed` (as a registry would copy
    it, or not); its digest."""
    pushed = registry.push_manifest(SUBJECT, data, OCI_MANIFEST, listed=False)
    registry.list_referrer(SUBJECT, dataclasses.replace(pushed, artifact_type=listed))
    return pushed.digest


def add_signature(registry: InMemoryRegistry) -> str:
    payload = simple_signing_payload(SUBJECT_DIGEST)
    signature = base64.b64encode(sign(KEY, payload)).decode()
    layer = add_blob(registry, payload, SIMPLE_SIGNING_MEDIA_TYPE, **{ANNOTATION_SIGNATURE: signature})
    return add_referrer(registry, referrer(ARTIFACT_TYPE_COSIGN_SIG, layer), ARTIFACT_TYPE_COSIGN_SIG)


def add_sbom(registry: InMemoryRegistry) -> str:
    layer = add_blob(registry, spdx_document("registry.example.test/app"), SPDX)
    return add_referrer(registry, referrer(SPDX, layer), SPDX)


def add_junk(registry: InMemoryRegistry, artifact_type: str) -> int:
    """Every junk shape twice: listed with `artifact_type`, and listed without one."""
    count = 0
    for listed in (artifact_type, None):
        for data in junk_manifests(SUBJECT_DIGEST, artifact_type).values():
            # Two listings of the same bytes would be one manifest: make each one distinct.
            add_referrer(registry, data + b" " * count, listed)
            count += 1
    return count


def cosign() -> CosignVerifier:
    pem = pem_public_key(KEY).decode()
    return CosignVerifier("cosign", {"keys": [{"name": "release", "pem": pem}], "transparencyLog": "skip"})


async def verify(verifier: CosignVerifier | SbomVerifier, registry: InMemoryRegistry) -> Report:
    report = await verifier.verify(SUBJECT, make_context(registry, deadline_in=600))
    return check_report(report)  # what the engine does: the report is plain JSON


def test_every_junk_shape_is_junk_to_the_model() -> None:
    for name, data in junk_manifests(SUBJECT_DIGEST, SPDX).items():
        with pytest.raises(oci.ContentError):
            oci.parse_image_manifest(data, OCI_MANIFEST)
        assert name


# --- cosign -------------------------------------------------------------------------------------------------


async def test_cosign_a_good_signature_beside_junk_verifies() -> None:
    registry = new_registry()
    junk = add_junk(registry, ARTIFACT_TYPE_COSIGN_SIG)
    good = add_signature(registry)  # listed last, after all the junk
    report = await verify(cosign(), registry)
    assert report.passed and report.reason == "cosign_verified", report.message
    assert [s["signature"] for s in report.details["signatures"] if s["passed"]] == [good]
    assert report.details["skippedCount"] == junk
    assert len(report.details["skipped"]) == oci.MAX_SKIPPED
    assert all(set(s) == {"digest", "reason"} for s in report.details["skipped"])


async def test_cosign_junk_alone_is_the_same_verdict_as_nothing() -> None:
    empty = await verify(cosign(), new_registry())
    registry = new_registry()
    junk = add_junk(registry, ARTIFACT_TYPE_COSIGN_SIG)
    report = await verify(cosign(), registry)
    assert not report.passed and report.reason == empty.reason == "no_signature_found"
    assert report.details["skippedCount"] == junk and "malformed referrer" in report.message


@pytest.mark.parametrize("name", list(junk_manifests(SUBJECT_DIGEST, "x/y")))
async def test_cosign_junk_in_the_legacy_sig_tag_is_skipped(name: str) -> None:
    registry = new_registry()
    data = junk_manifests(SUBJECT_DIGEST, ARTIFACT_TYPE_COSIGN_SIG)[name]
    registry.push_manifest(SUBJECT, data, OCI_MANIFEST, tag=SIG_TAG.rsplit(":", 1)[1])
    report = await verify(cosign(), registry)
    assert report.reason == "no_signature_found"
    assert report.details["skipped"][0]["digest"] == digest_of(data)
    add_signature(registry)
    assert (await verify(cosign(), registry)).passed


def broken_listing(client: bool) -> Exception:
    """What reading a referrers listing nested 100,000 deep raises: the client's error, or the model's."""
    try:
        oci.parse_referrers(b"[" * 100_000)
    except oci.ContentError as e:
        return InvalidContent(str(e)) if client else e
    raise AssertionError


@pytest.mark.parametrize("client", [True, False], ids=["InvalidContent", "ContentError"])
async def test_cosign_a_junk_listing_still_reads_the_legacy_tags(client: bool) -> None:
    registry = new_registry()
    registry.fail("referrers", error=broken_listing(client))
    report = await verify(cosign(), registry)
    assert report.reason == "no_signature_found"
    assert "nested more than 64" in report.details["problems"][0]["message"]
    registry.tag(SIG_TAG, add_signature(registry))
    assert (await verify(cosign(), registry)).passed


async def test_cosign_problems_are_bounded_in_the_report() -> None:
    """Well-formed signature manifests naming another image are problems: listed up to 16, all counted."""
    registry = new_registry()
    other = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "0f" * 32, "size": 1}
    for i in range(40):
        layer = add_blob(registry, b"payload %d" % i, SIMPLE_SIGNING_MEDIA_TYPE)
        doc = json.loads(referrer(ARTIFACT_TYPE_COSIGN_SIG, layer))
        add_referrer(registry, json.dumps({**doc, "subject": other}).encode(), ARTIFACT_TYPE_COSIGN_SIG)
    report = await verify(cosign(), registry)
    assert report.reason == "no_signature_found"
    assert report.details["problemCount"] == 40 and len(report.details["problems"]) == 16


# --- sbom ---------------------------------------------------------------------------------------------------


async def test_sbom_a_good_sbom_beside_junk_verifies() -> None:
    registry = new_registry()
    junk = add_junk(registry, SPDX)
    good = add_sbom(registry)
    report = await verify(SbomVerifier("sbom", {}), registry)
    assert report.passed and report.reason == "sbom_verified", report.message
    assert report.details["referrer"] == good
    # Only the junk listed as an SBOM is read (the rest is not an SBOM candidate): half of it.
    assert report.details["skippedCount"] == junk // 2


async def test_sbom_junk_alone_is_sbom_not_found() -> None:
    registry = new_registry()
    junk = add_junk(registry, SPDX)
    report = await verify(SbomVerifier("sbom", {}), registry)
    assert not report.passed and report.reason == "sbom_not_found", report.message
    assert report.details["skippedCount"] == junk // 2
    assert len(report.details["skipped"]) <= oci.MAX_SKIPPED


async def test_sbom_many_junk_referrers_do_not_hide_a_good_one() -> None:
    """More junk than the 16 candidates examined: junk does not use up the candidate budget."""
    registry = new_registry()
    for i in range(40):
        add_referrer(registry, junk_manifests(SUBJECT_DIGEST, SPDX)["subject a string"] + b" " * i, SPDX)
    add_sbom(registry)
    report = await verify(SbomVerifier("sbom", {}), registry)
    assert report.passed and report.details["skippedCount"] == 40
