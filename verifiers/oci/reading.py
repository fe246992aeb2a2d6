"""Reading a signature or SBOM manifest through a `RegistryReader` without parsing it twice.

A registry reader checks a manifest before a verifier sees it: its bytes against its digest, and (in
Countersign) its structure, with this package's model. A reader that keeps that parse offers it with the
optional method `checked_manifest` (`ChecksManifests`): the bytes, the media type, and the validated
document when it has one (`None`: the caller parses the bytes itself). `read_image_manifest` uses it
when the reader has it and parses the bytes otherwise, with the same result and the same errors as

    data, media_type = await registry.manifest(reference, digest)
    manifest = oci.parse_image_manifest(data, media_type, max_bytes=max_bytes)

(the size bound is checked on the bytes either way, and an index is refused either way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

from verifiers.base import RegistryReader
from verifiers.oci.model import (
    MAX_DOCUMENT_BYTES,
    ImageIndex,
    ImageManifest,
    check_document_size,
    image_manifest_only,
    parse_image_manifest,
)
from verifiers.reference import ImageReference

__all__ = ["CheckedManifest", "ChecksManifests", "read_image_manifest"]


@dataclass(frozen=True, slots=True)
class CheckedManifest:
    """A manifest as a reader checked it: its bytes (checked against its digest), the media type it was
    served as, and `document`, what `verifiers.oci.parse_manifest(data, media_type)` returns for them
    (without a size bound), or None when the reader does not hold it."""

    data: bytes
    media_type: str
    document: ImageManifest | ImageIndex | None = None


@runtime_checkable
class ChecksManifests(Protocol):
    """The optional `checked_manifest` method of a `RegistryReader` (see the module)."""

    async def checked_manifest(self, reference: ImageReference, digest: str) -> CheckedManifest: ...


async def read_image_manifest(
    registry: RegistryReader, reference: ImageReference, digest: str, *, max_bytes: int = MAX_DOCUMENT_BYTES
) -> tuple[bytes, ImageManifest]:
    """The manifest `digest` in `reference`'s repository: (its bytes, the image manifest they hold).

    Registry errors as `registry.manifest` raises them; `ContentError` when the bytes are over
    `max_bytes`, not a valid manifest, or an index (exactly as `parse_image_manifest`)."""
    checked = getattr(registry, "checked_manifest", None)
    if checked is None:
        data, media_type = await registry.manifest(reference, digest)
        return data, parse_image_manifest(data, media_type, max_bytes=max_bytes)
    found = cast("CheckedManifest", await checked(reference, digest))
    if found.document is None:
        return found.data, parse_image_manifest(found.data, found.media_type, max_bytes=max_bytes)
    check_document_size(found.data, max_bytes)
    return found.data, image_manifest_only(found.document)
