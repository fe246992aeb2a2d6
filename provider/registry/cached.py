"""The cached, coalesced view of registries that the engine and the verifiers read through.

- manifests and blobs by (registry, repository, digest) in a byte-bounded LRU (content-addressed, so
  never stale);
- tag -> digest with a short TTL;
- concurrent reads of the same thing share one HTTP request;
- referrers are listed once per image verification (`ImageReader`) and filtered client-side per verifier.

A read made with workload credentials for its registry (provider/registry/workload.py) is cached and
coalesced under keys that also carry those credentials' identity, so what one namespace's pull secret
obtained is never served to a key without it or with another one.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import provider.trace as trace
from provider.cache import ByteLRU, SingleFlight, TTLCache, bytes_cost, slot_cost, ttl_slot_cost
from provider.metrics import Metrics
from provider.registry.client import RegistryClient
from provider.registry.content import Manifest
from provider.registry.workload import host_identity
from verifiers import oci
from verifiers.base import Descriptor, RegistryReader, Subject
from verifiers.oci import ChecksManifests
from verifiers.reference import ImageReference

__all__ = ["CachedRegistry", "ImageReader"]

# (registry, repository, digest or tag), and the workload credentials' identity when they make the read
_Key = tuple[str, ...]


def _key(ref: ImageReference, reference: str) -> _Key:
    identity = host_identity(ref.registry)
    if identity:
        return (ref.registry, ref.repository, reference, identity)
    return (ref.registry, ref.repository, reference)


MAX_TAGS = 50_000


def _size(value: Manifest | bytes) -> int:
    """What a cached manifest or blob really takes (its media type is a shared constant)."""
    if isinstance(value, Manifest):
        return sys.getsizeof(value) + bytes_cost(value.digest) + bytes_cost(value.data)
    return bytes_cost(value)


class CachedRegistry:
    def __init__(
        self,
        client: RegistryClient,
        *,
        content_bytes: int,
        tag_ttl: float,
        tag_bytes: int = 8 * 1024 * 1024,
        metrics: Metrics | None = None,
    ) -> None:
        self.client = client
        self._content: ByteLRU[_Key, Manifest | bytes] = ByteLRU(content_bytes, _size, slot_cost)
        self._tags: TTLCache[_Key, str] = TTLCache(
            tag_ttl, max_entries=MAX_TAGS, max_bytes=tag_bytes, size_of=bytes_cost, slot_of=ttl_slot_cost
        )
        self._manifest_flights: SingleFlight[_Key, Manifest] = SingleFlight()
        self._blob_flights: SingleFlight[_Key, bytes] = SingleFlight()
        self._referrer_flights: SingleFlight[_Key, list[Descriptor]] = SingleFlight()
        self._metrics = metrics

    def _hit(self, cache: str, hit: bool) -> None:
        if self._metrics is not None:
            self._metrics.cache_lookup(cache, hit)

    async def resolve(self, ref: ImageReference) -> Manifest:
        """The manifest the reference names now: by digest when it has one, else its tag (TTL-cached)."""
        if ref.digest is not None:
            return await self.manifest(ref, ref.digest)
        tag = ref.reference
        tag_key = _key(ref, tag)
        digest = self._tags.get(tag_key)
        self._hit("tag", digest is not None)
        if digest is not None:
            return await self.manifest(ref, digest)
        manifest = await self._manifest_flights.do(tag_key, lambda: self.client.get_manifest(ref, tag))
        self._tags.put(tag_key, manifest.digest)
        self._content.put(_key(ref, manifest.digest), manifest.bare())
        return manifest

    def cached_digest(self, ref: ImageReference) -> str | None:
        """The digest `resolve(ref)` would answer from the caches alone (the tag's digest, its manifest
        held), or None when it would read the registry. Counts nothing."""
        digest = ref.digest if ref.digest is not None else self._tags.get(_key(ref, ref.reference))
        if digest is None or not isinstance(self._content.get(_key(ref, digest)), Manifest):
            return None
        return digest

    async def manifest(self, ref: ImageReference, digest: str) -> Manifest:
        key = _key(ref, digest)
        cached = self._content.get(key)
        self._hit("content", isinstance(cached, Manifest))
        if isinstance(cached, Manifest):
            return cached
        manifest = await self._manifest_flights.do(key, lambda: self.client.get_manifest(ref, digest))
        self._content.put(key, manifest.bare())
        return manifest

    async def blob(self, ref: ImageReference, descriptor: Descriptor, max_bytes: int) -> bytes:
        key = _key(ref, descriptor.digest)
        cached = self._content.get(key)
        hit = isinstance(cached, bytes) and len(cached) == descriptor.size
        self._hit("content", hit)
        if hit:
            assert isinstance(cached, bytes)
            return cached
        data = await self._blob_flights.do(key, lambda: self.client.get_blob(ref, descriptor, max_bytes))
        self._content.put(key, data)
        return data

    async def referrers(self, ref: ImageReference, digest: str) -> list[Descriptor]:
        key = _key(ref, digest)
        return await self._referrer_flights.do(key, lambda: self.client.list_referrers(ref, digest))

    @property
    def memory(self) -> dict[str, int]:
        """The caches' costs in bytes, by cache."""
        return {"content": self._content.size, "tag": self._tags.size}

    async def close(self) -> None:
        for flights in (self._manifest_flights, self._blob_flights, self._referrer_flights):
            await flights.drain()


# Parsed manifests one image verification keeps (`ImageReader`): its verifiers read a few each.
MAX_DOCUMENTS = 64


class ImageReader(RegistryReader, ChecksManifests):
    """What one image's verifiers read through: referrers listed once, then filtered per verifier; the
    manifests it read, with their parse (`checked_manifest`), so that a verifier does not parse again."""

    def __init__(self, registry: CachedRegistry) -> None:
        self._registry = registry
        self._referrers: dict[tuple[str, str], asyncio.Task[list[Descriptor]]] = {}
        # The validated parse of manifests this verification read fresh from the registry (by repository
        # and digest; the caches keep bytes only): a tag resolved, then read by its digest (cosign's `.sig`),
        # is parsed once. Its memory was reserved with the read, in this verification's account.
        self._documents: dict[tuple[str, str], oci.ImageManifest | oci.ImageIndex] = {}

    def _keep(
        self, reference: ImageReference, manifest: Manifest
    ) -> oci.ImageManifest | oci.ImageIndex | None:
        """`manifest`'s parse: the one it carries (kept for a later read of it), else one kept before."""
        key = (reference.name, manifest.digest)
        document = manifest.document
        if document is None:
            kept = self._documents.get(key)
            # the same bytes served as another media type (a registry may) parse as that type: not this
            return kept if kept is not None and kept.media_type == manifest.media_type else None
        if key not in self._documents:
            if len(self._documents) >= MAX_DOCUMENTS:
                del self._documents[next(iter(self._documents))]
            self._documents[key] = document
        return document

    async def referrers(self, subject: Subject, artifact_type: str | None = None) -> Sequence[Descriptor]:
        key = (subject.reference.name, subject.digest)
        task = self._referrers.get(key)
        if task is None:
            task = asyncio.ensure_future(self._registry.referrers(subject.reference, subject.digest))
            # retrieve a failure even when every waiter has gone (deadline): no "never retrieved" noise
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._referrers[key] = task
            found = await asyncio.shield(task)
        else:  # another verifier of this image lists them: a `flight` wait
            with trace.wait("flight"):
                found = await asyncio.shield(task)
        if artifact_type is None:
            return list(found)
        return [d for d in found if d.artifact_type == artifact_type]

    async def manifest(self, reference: ImageReference, digest: str) -> tuple[bytes, str]:
        m = await self._registry.manifest(reference, digest)
        return m.data, m.media_type

    async def checked_manifest(self, reference: ImageReference, digest: str) -> oci.CheckedManifest:
        m = await self._registry.manifest(reference, digest)
        return oci.CheckedManifest(m.data, m.media_type, self._keep(reference, m))

    async def blob(self, reference: ImageReference, descriptor: Descriptor, max_bytes: int) -> bytes:
        return await self._registry.blob(reference, descriptor, max_bytes)

    async def resolve(self, reference: ImageReference) -> Descriptor:
        manifest = await self._registry.resolve(reference)
        self._keep(reference, manifest)
        return manifest.descriptor
