"""The plugin authors' kit: test a verifier without a registry, a cluster or Countersign's service.

    from verifiers.testing import InMemoryRegistry, make_context, make_subject
    from verifiers.testing.conformance import assert_conforms

    async def test_signed_image_passes() -> None:
        registry = InMemoryRegistry()
        subject = registry.push_image("registry.test/app:1", annotations={"org.example.reviewed": "yes"})
        registry.push_artifact(subject, "application/vnd.example.approval", [b'{"approved": true}'])
        report = await MyVerifier("mine", {}).verify(subject, make_context(registry, deadline_in=5))
        assert report.passed

- `InMemoryRegistry` (`verifiers.testing.registry`): a `RegistryReader` over content you push, answering
  (and failing) the way Countersign's registry client does, with faults to inject.
- `make_subject`, `make_context`, manifest builders and `digest_of` (`verifiers.testing.builders`).
- hostile content: `junk_manifests`, `junk_blobs` (`verifiers.testing.junk`).
- the conformance checker (`verifiers.testing.conformance`), also run by `countersign plugin check TYPE`.

Like everything under `verifiers/`, this package does not depend on Countersign's service.
"""

from verifiers.testing.builders import (
    DEFAULT_REGISTRY,
    EMPTY_CONFIG,
    artifact_manifest,
    descriptor_json,
    digest_of,
    image_config,
    image_manifest,
    make_context,
    make_subject,
)
from verifiers.testing.junk import ARTIFACT_TYPES, junk_blobs, junk_manifests
from verifiers.testing.registry import OPS, Fault, InMemoryRegistry, Request

__all__ = [
    "ARTIFACT_TYPES",
    "DEFAULT_REGISTRY",
    "EMPTY_CONFIG",
    "OPS",
    "Fault",
    "InMemoryRegistry",
    "Request",
    "artifact_manifest",
    "descriptor_json",
    "digest_of",
    "image_config",
    "image_manifest",
    "junk_blobs",
    "junk_manifests",
    "make_context",
    "make_subject",
]
