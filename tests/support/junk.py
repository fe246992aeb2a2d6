"""Malformed referrer manifests, as anyone who can push could attach them, and an in-memory registry.

`junk_manifests(subject_digest, artifact_type)` (from the plugin authors' kit, `verifiers.testing.junk`)
gives each junk shape as raw manifest bytes (most of them otherwise valid, so only the junk makes them
invalid). `MemoryRegistry` is a `RegistryReader` over dicts,
for unit tests of verifiers; the integration tests push the same bytes to a real registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from verifiers import oci
from verifiers.base import Descriptor, Subject
from verifiers.errors import IntegrityError, NotFound
from verifiers.reference import ImageReference
from verifiers.testing import digest_of
from verifiers.testing.junk import EMPTY, LAYER, LAYER_BYTES, junk_manifests

__all__ = ["EMPTY", "LAYER", "LAYER_BYTES", "OCI_MANIFEST", "MemoryRegistry", "digest_of", "junk_manifests"]

OCI_MANIFEST = oci.OCI_MANIFEST


class MemoryRegistry:
    """A `RegistryReader` over dicts: referrers, manifests, blobs and tags; reads are recorded."""

    def __init__(self) -> None:
        self.listing: list[Descriptor] = []
        self.manifests: dict[str, bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.tags: dict[str, str] = {}
        self.reads: list[str] = []

    # --- filling it ---

    def add_blob(
        self, data: bytes, media_type: str = "application/octet-stream", **extra: Any
    ) -> dict[str, Any]:
        digest = digest_of(data)
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def add_manifest(self, data: bytes) -> str:
        digest = digest_of(data)
        self.manifests[digest] = data
        return digest

    def add_referrer(self, data: bytes, artifact_type: str | None) -> str:
        """A manifest listed as a referrer (the listing says `artifact_type`, as a registry would copy it)."""
        digest = self.add_manifest(data)
        self.listing.append(Descriptor(OCI_MANIFEST, digest, len(data), artifact_type=artifact_type))
        return digest

    # --- RegistryReader ---

    async def referrers(self, subject: Subject, artifact_type: str | None = None) -> Sequence[Descriptor]:
        self.reads.append("referrers")
        return [d for d in self.listing if artifact_type is None or d.artifact_type == artifact_type]

    async def manifest(self, reference: ImageReference, digest: str) -> tuple[bytes, str]:
        self.reads.append(f"manifest {digest}")
        if digest not in self.manifests:
            raise NotFound(f"manifest {digest} not found")
        return self.manifests[digest], OCI_MANIFEST

    async def blob(self, reference: ImageReference, descriptor: Descriptor, max_bytes: int) -> bytes:
        self.reads.append(f"blob {descriptor.digest}")
        data = self.blobs.get(descriptor.digest)
        if data is None:
            raise NotFound(f"blob {descriptor.digest} not found")
        if len(data) != descriptor.size:
            raise IntegrityError(f"blob {descriptor.digest}: size {len(data)}, not {descriptor.size}")
        return data

    async def resolve(self, reference: ImageReference) -> Descriptor:
        self.reads.append(f"resolve {reference.tag}")
        digest = self.tags.get(reference.tag or "")
        if digest is None:
            raise NotFound(f"{reference} not found")
        return Descriptor(OCI_MANIFEST, digest, len(self.manifests[digest]))


# --- pushing raw content to a real registry (plain HTTP test registries) ------------------------------------


def _request(method: str, url: str, data: bytes | None = None, content_type: str | None = None) -> Any:
    import urllib.request

    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    return urllib.request.urlopen(request, timeout=30)  # a test registry on 127.0.0.1


def push_blob(base_url: str, repo: str, data: bytes) -> str:
    """Upload `data` as a blob (monolithic POST + PUT); its digest."""
    from urllib.parse import urljoin

    digest = digest_of(data)
    with _request("POST", f"{base_url}/v2/{repo}/blobs/uploads/") as response:
        location = urljoin(f"{base_url}/", response.headers["Location"])
    separator = "&" if "?" in location else "?"
    with _request("PUT", f"{location}{separator}digest={digest}", data, "application/octet-stream"):
        pass
    return digest


def push_manifest(
    base_url: str, repo: str, data: bytes, media_type: str = OCI_MANIFEST, *, tag: str | None = None
) -> str:
    """PUT raw manifest bytes by digest (or under `tag`); raises urllib.error.HTTPError when the registry
    refuses them. Returns the digest."""
    digest = digest_of(data)
    with _request("PUT", f"{base_url}/v2/{repo}/manifests/{tag or digest}", data, media_type):
        pass
    return digest


def push_referenced_blobs(base_url: str, repo: str) -> None:
    """The blobs the junk manifests name (an empty config and a 5-byte layer), so a registry finds them."""
    assert push_blob(base_url, repo, b"{}") == EMPTY["digest"]
    assert push_blob(base_url, repo, LAYER_BYTES) == LAYER["digest"]
