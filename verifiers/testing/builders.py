"""Building test values: digests, manifests, subjects and contexts.

Everything here is deterministic (the same arguments give the same bytes, so the same digests) and
needs no registry: `make_subject` gives a `Subject` for a manifest that lives nowhere, for verifiers that
only look at the subject; `InMemoryRegistry.push_image` gives one whose content can be read back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from verifiers import oci
from verifiers.base import Context, Descriptor, RegistryReader, Subject
from verifiers.cpu import INLINE, CpuRunner
from verifiers.reference import parse_reference

__all__ = [
    "DEFAULT_REGISTRY",
    "EMPTY_CONFIG",
    "artifact_manifest",
    "descriptor_json",
    "digest_of",
    "image_config",
    "image_manifest",
    "make_context",
    "make_subject",
]

#: The registry host test references use unless told otherwise (`.test` is reserved: never resolvable).
DEFAULT_REGISTRY = "registry.test"

#: The OCI empty descriptor (`{}`), the config of artifacts that have none.
EMPTY_CONFIG = Descriptor(
    media_type=oci.EMPTY_MEDIA_TYPE,
    digest="sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    size=2,
)

_IMAGE_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"


def digest_of(data: bytes) -> str:
    """The sha256 digest of `data`, as OCI writes it (`sha256:<hex>`)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def descriptor_json(descriptor: Descriptor) -> dict[str, Any]:
    """A descriptor as it is written in a manifest (`mediaType`, `digest`, `size`, and what is set)."""
    doc: dict[str, Any] = {
        "mediaType": descriptor.media_type,
        "digest": descriptor.digest,
        "size": descriptor.size,
    }
    if descriptor.artifact_type is not None:
        doc["artifactType"] = descriptor.artifact_type
    if descriptor.annotations:
        doc["annotations"] = dict(descriptor.annotations)
    return doc


def image_config(
    *, labels: Mapping[str, str] | None = None, architecture: str = "amd64", os: str = "linux"
) -> bytes:
    """An OCI image configuration (the config blob of an image), with `config.Labels` when given."""
    doc: dict[str, Any] = {
        "architecture": architecture,
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    if labels:
        doc["config"] = {"Labels": dict(labels)}
    return _dumps(doc)


def image_manifest(
    config: Descriptor,
    layers: Sequence[Descriptor] = (),
    *,
    annotations: Mapping[str, str] | None = None,
    artifact_type: str | None = None,
    subject: Descriptor | None = None,
    media_type: str = oci.OCI_MANIFEST,
) -> bytes:
    """The bytes of an OCI image manifest (compact JSON, fields in a fixed order)."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    doc["config"] = descriptor_json(config)
    doc["layers"] = [descriptor_json(layer) for layer in layers]
    if subject is not None:
        doc["subject"] = descriptor_json(
            Descriptor(media_type=subject.media_type, digest=subject.digest, size=subject.size)
        )
    if annotations:
        doc["annotations"] = dict(annotations)
    return _dumps(doc)


def artifact_manifest(
    subject: Descriptor | None,
    artifact_type: str | None,
    layers: Sequence[Descriptor] = (),
    *,
    annotations: Mapping[str, str] | None = None,
    config: Descriptor = EMPTY_CONFIG,
) -> bytes:
    """An OCI 1.1 artifact manifest (a signature, an SBOM, an attestation) naming `subject`.

    With `artifact_type=None` the artifact says what it is through its config's media type instead (as
    notation signatures do): pass `config=Descriptor(<the type>, EMPTY_CONFIG.digest, 2)`.
    """
    return image_manifest(
        config, layers, annotations=annotations, artifact_type=artifact_type, subject=subject
    )


def _default_manifest() -> bytes:
    config = image_config()
    return image_manifest(
        Descriptor(media_type=_IMAGE_CONFIG_MEDIA_TYPE, digest=digest_of(config), size=len(config))
    )


def make_subject(
    reference: str = f"{DEFAULT_REGISTRY}/app:1",
    manifest: bytes | None = None,
    *,
    media_type: str = oci.OCI_MANIFEST,
    namespace: str | None = None,
) -> Subject:
    """A `Subject` as Countersign hands it to a verifier, for `manifest` (default: a small image manifest).

    `reference` is parsed as a workload would write it (no registry means Docker Hub). The subject's
    digest is the manifest's; a reference that carries another digest is refused (`ValueError`), since
    Countersign only ever verifies what the reference's digest names.
    """
    data = _default_manifest() if manifest is None else manifest
    ref = parse_reference(reference)
    digest = digest_of(data)
    if ref.digest is not None and ref.digest != digest:
        raise ValueError(f"{reference} names {ref.digest}, but the manifest's digest is {digest}")
    return Subject(
        reference=ref,
        digest=digest,
        media_type=media_type,
        size=len(data),
        manifest=data,
        namespace=namespace,
    )


def make_context(registry: RegistryReader, *, deadline_in: float = 30.0, cpu: CpuRunner = INLINE) -> Context:
    """A `Context` whose deadline is `deadline_in` seconds from now (negative: already past).

    `cpu` runs the verifier's `context.run_cpu` work: by default on the calling thread; pass a
    `verifiers.cpu.CpuPool` (and close it) to run it on worker threads as Countersign does.

    For an `InMemoryRegistry` the context reads through `registry.reader(deadline)`, which keeps the
    deadline the way Countersign's registry client does: a read started after it raises `Unavailable`
    (`deadline_exceeded`), and a stalled read gives up at it. Every read is still recorded on `registry`.
    """
    from verifiers.testing.registry import InMemoryRegistry

    try:
        now = asyncio.get_running_loop().time()
    except RuntimeError:  # no loop yet: the default event loop's clock
        now = time.monotonic()
    deadline = now + deadline_in
    reader = registry.reader(deadline) if isinstance(registry, InMemoryRegistry) else registry
    return Context(registry=reader, deadline=deadline, cpu=cpu)
