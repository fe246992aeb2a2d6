"""Discovery reads its sources concurrently; an outage in any of them is undecided, never a verdict."""

from __future__ import annotations

import pytest

from verifiers.base import Subject
from verifiers.cosign.discovery import discover
from verifiers.errors import Unavailable
from verifiers.testing import InMemoryRegistry, make_context


def image(*, referrers_down: bool = False, tags_down: bool = False) -> tuple[InMemoryRegistry, Subject]:
    """An unsigned image in an in-memory registry, failing where told to."""
    registry = InMemoryRegistry()
    subject = registry.push_image("reg.example/app:1")
    if referrers_down:
        registry.fail("referrers", error=Unavailable("registry down"))
    if tags_down:
        registry.fail("resolve", error=Unavailable("registry down", reason="registry_timeout"))
    return registry, subject


def sources(registry: InMemoryRegistry, subject: Subject) -> list[str]:
    """What was read: "referrers", or "tag <name>"."""
    return [
        "referrers" if op == "referrers" else f"tag {target.rpartition(':')[2]}"
        for op, target in registry.requests
    ]


def tag(subject: Subject, suffix: str) -> str:
    return f"tag sha256-{subject.digest.removeprefix('sha256:')}.{suffix}"


async def test_nothing_found_reads_every_source() -> None:
    registry, subject = image()
    found = await discover(subject, make_context(registry))
    assert found.candidates == [] and found.problems == []
    assert sorted(sources(registry, subject)) == ["referrers", tag(subject, "att"), tag(subject, "sig")]


@pytest.mark.parametrize(
    ("down", "reason"),
    [({"referrers_down": True}, "registry_unavailable"), ({"tags_down": True}, "registry_timeout")],
    ids=["referrers down", "tags down"],
)
async def test_an_outage_in_any_source_is_undecided(down: dict[str, bool], reason: str) -> None:
    registry, subject = image(**down)
    with pytest.raises(Unavailable) as info:  # not an ExceptionGroup: the engine maps Undecided precisely
        await discover(subject, make_context(registry))
    assert info.value.reason == reason


async def test_formats_limit_the_sources_read() -> None:
    registry, subject = image()
    await discover(subject, make_context(registry), formats={"legacy"})
    assert sources(registry, subject) == [tag(subject, "sig")]
