"""Discovery reads its sources concurrently; an outage in any of them is undecided, never a verdict."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from verifiers.base import Context, Descriptor, Subject
from verifiers.cosign.discovery import discover
from verifiers.errors import NotFound, Unavailable
from verifiers.reference import ImageReference

DIGEST = "sha256:" + "ab" * 32


class Reader:
    """An in-memory registry reader: a unit-test stand-in, failing where told to."""

    def __init__(self, *, referrers_down: bool = False, tags_down: bool = False) -> None:
        self.referrers_down = referrers_down
        self.tags_down = tags_down
        self.calls: list[str] = []

    async def referrers(self, subject: Subject, artifact_type: str | None = None) -> Sequence[Descriptor]:
        self.calls.append("referrers")
        if self.referrers_down:
            raise Unavailable("registry down")
        return []

    async def manifest(self, reference: ImageReference, digest: str) -> tuple[bytes, str]:
        raise NotFound(digest)

    async def blob(self, reference: ImageReference, descriptor: Descriptor, max_bytes: int) -> bytes:
        raise NotFound(descriptor.digest)

    async def resolve(self, reference: ImageReference) -> Descriptor:
        self.calls.append(f"tag {reference.tag}")
        if self.tags_down:
            raise Unavailable("registry down", reason="registry_timeout")
        raise NotFound(str(reference))


def subject() -> Subject:
    ref = ImageReference(registry="reg.example", repository="app", digest=DIGEST)
    return Subject(
        reference=ref,
        digest=DIGEST,
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=2,
        manifest=b"{}",
    )


async def test_nothing_found_reads_every_source() -> None:
    reader = Reader()
    found = await discover(subject(), Context(registry=reader, deadline=0.0))
    assert found.candidates == [] and found.problems == []
    assert sorted(reader.calls) == ["referrers", f"tag sha256-{'ab' * 32}.att", f"tag sha256-{'ab' * 32}.sig"]


@pytest.mark.parametrize(
    ("reader", "reason"),
    [(Reader(referrers_down=True), "registry_unavailable"), (Reader(tags_down=True), "registry_timeout")],
    ids=["referrers down", "tags down"],
)
async def test_an_outage_in_any_source_is_undecided(reader: Reader, reason: str) -> None:
    with pytest.raises(Unavailable) as info:  # not an ExceptionGroup: the engine maps Undecided precisely
        await discover(subject(), Context(registry=reader, deadline=0.0))
    assert info.value.reason == reason


async def test_formats_limit_the_sources_read() -> None:
    reader = Reader()
    await discover(subject(), Context(registry=reader, deadline=0.0), formats={"legacy"})
    assert reader.calls == [f"tag sha256-{'ab' * 32}.sig"]
