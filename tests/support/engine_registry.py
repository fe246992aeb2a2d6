"""The engine's registry for unit tests of the engine: `resolve` gives the manifest, read from the kit's
in-memory registry (`content`), and resolutions are counted. Tests of the engine alone use it where the
server would have `provider.registry.cached.CachedRegistry`."""

from __future__ import annotations

from typing import Self

from provider.registry.content import Manifest
from verifiers.reference import ImageReference
from verifiers.testing import InMemoryRegistry

__all__ = ["EngineRegistry"]


class EngineRegistry:
    """The engine's registry over an `InMemoryRegistry` holding ``images`` (references, each pushed with
    the kit's default content); ``resolved`` counts resolutions."""

    def __init__(self, *images: str) -> None:
        self.content = InMemoryRegistry()
        for image in images:
            self.content.push_image(image)
        self.resolved = 0
        self.memory = {"content": 0, "tag": 0}  # what the engine's memory gauges read

    @property
    def client(self) -> Self:  # the engine closes its registry's client too
        return self

    def cached_digest(self, ref: ImageReference) -> str | None:
        """No caches here: every key takes the engine's full path (its `resolve`)."""
        return None

    async def resolve(self, ref: ImageReference) -> Manifest:
        self.resolved += 1
        descriptor = await self.content.resolve(ref)
        data, media_type = await self.content.manifest(ref, descriptor.digest)
        return Manifest(digest=descriptor.digest, media_type=media_type, data=data)

    async def close(self) -> None:
        pass
