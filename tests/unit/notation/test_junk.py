"""Junk referrers beside a notation signature: skipped and noted, never a crash, never hiding it."""

from __future__ import annotations

from pathlib import Path

from tests.support.junk import digest_of, junk_manifests
from tests.unit.notation.test_verifier import (  # noqa: F401  (fixtures)
    _verifier,
    _verify,
    add_referrer,
    leaf_store,
    recorded,
    store_dir,
    stranger_pem,
)
from verifiers import oci
from verifiers.base import Descriptor, Subject, check_report
from verifiers.notation.verifier import ARTIFACT_TYPE, THUMBPRINT_ANNOTATION
from verifiers.testing import InMemoryRegistry

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def registry() -> InMemoryRegistry:
    """Manifests handed over unchecked, so the junk reaches the verifier's own parse."""
    return InMemoryRegistry(check_manifests=False)


def add_junk(registry: InMemoryRegistry, subject: Subject) -> int:
    count = 0
    for listed in (ARTIFACT_TYPE, None):
        for data in junk_manifests(subject.digest, ARTIFACT_TYPE).values():
            data += b" " * count
            registry.push_manifest(subject, data)
            registry.list_referrer(
                subject, Descriptor(MANIFEST, digest_of(data), len(data), artifact_type=listed)
            )
            count += 1
    return count


async def test_a_signature_beside_junk_verifies(leaf_store: Path, recorded: tuple[bytes, Subject]) -> None:  # noqa: F811
    envelope, subject = recorded
    memory = registry()
    junk = add_junk(memory, subject)
    add_referrer(memory, subject, envelope)
    report = check_report(await _verify(_verifier(leaf_store), subject, memory))
    assert report.passed and report.reason == "notation_verified", report.message
    assert report.details["skippedCount"] == junk
    assert len(report.details["skipped"]) == oci.MAX_SKIPPED


async def test_junk_alone_is_no_signature_found(store_dir: Path, recorded: tuple[bytes, Subject]) -> None:  # noqa: F811
    _, subject = recorded
    memory = registry()
    junk = add_junk(memory, subject)
    report = check_report(await _verify(_verifier(store_dir), subject, memory))
    assert not report.passed and report.reason == "no_signature_found", report.message
    assert report.details["skippedCount"] == junk
    assert "malformed referrer" in report.message


async def test_a_deeply_nested_thumbprint_annotation_is_ignored(
    leaf_store: Path,  # noqa: F811
    recorded: tuple[bytes, Subject],  # noqa: F811
) -> None:
    """The thumbprint annotation holds JSON; nested 100,000 deep it is unreadable, so the blob is read."""
    envelope, subject = recorded
    memory = registry()
    add_referrer(memory, subject, envelope, annotations={THUMBPRINT_ANNOTATION: "[" * 100_000})
    report = check_report(await _verify(_verifier(leaf_store), subject, memory))
    assert report.passed, report.message
