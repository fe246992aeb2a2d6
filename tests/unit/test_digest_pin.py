"""digest-pin: pinned, exempt, not pinned, and (with verifyTag) whether the tag still points there."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifiers.base import Context, OptionsError, RegistryReader, Report, Undecided
from verifiers.digest_pin import DigestPinVerifier
from verifiers.errors import RateLimited, Unavailable
from verifiers.reference import parse_reference
from verifiers.testing import EMPTY_CONFIG, InMemoryRegistry, Request, digest_of, image_manifest, make_subject

# Two images; the tests name them by digest.
M1 = image_manifest(EMPTY_CONFIG, annotations={"image": "1"})
M2 = image_manifest(EMPTY_CONFIG, annotations={"image": "2"})
D1, D2 = digest_of(M1), digest_of(M2)
MANIFESTS = {D1: M1, D2: M2}


def registry_with(
    tags: Mapping[str, str] | None = None, errors: Mapping[str, Exception] | None = None
) -> InMemoryRegistry:
    """`tags` maps a tagged reference to the digest (D1 or D2) it points to; resolving one of `errors`
    raises that exception."""
    registry = InMemoryRegistry()
    for reference, digest in (tags or {}).items():
        registry.push_manifest(reference, MANIFESTS[digest], tag=parse_reference(reference).tag)
    for reference, error in (errors or {}).items():
        registry.fail("resolve", target=reference, error=error)
    return registry


def test_the_kit_registry_is_a_registry_reader() -> None:
    assert isinstance(InMemoryRegistry(), RegistryReader)


async def verify(
    text: str, options: Mapping[str, Any] | None = None, registry: InMemoryRegistry | None = None
) -> Report:
    reference = parse_reference(text)
    subject = make_subject(text, MANIFESTS[reference.digest or D1])
    verifier = DigestPinVerifier("pinned", options or {})
    registry = registry or InMemoryRegistry()
    try:
        return await verifier.verify(subject, Context(registry=registry, deadline=0.0))
    finally:  # digest-pin reads no referrers, manifests or blobs: at most the tag
        assert {request.op for request in registry.requests} <= {"resolve"}


# --- pinning ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "suggested"),
    [
        ("reg.example.com/app:1", f"reg.example.com/app@{D1}"),
        ("reg.example.com/team/app", f"reg.example.com/team/app@{D1}"),  # implicit :latest
        ("nginx:1.25", f"docker.io/library/nginx@{D1}"),
        ("localhost:5000/x:v1", f"localhost:5000/x@{D1}"),
    ],
)
async def test_a_tag_only_reference_is_not_pinned(text: str, suggested: str) -> None:
    report = await verify(text)
    assert report.passed is False
    assert report.reason == "not_pinned"
    assert report.details == {"suggested": suggested}
    assert suggested in report.message


@pytest.mark.parametrize("text", [f"reg.example.com/app@{D1}", f"reg.example.com/app:1@{D1}", f"nginx@{D2}"])
async def test_a_digest_reference_is_pinned(text: str) -> None:
    registry = InMemoryRegistry()
    report = await verify(text, registry=registry)
    assert report.passed is True
    assert report.reason == "pinned"
    assert report.details == {"digest": parse_reference(text).digest}
    assert registry.requests == []  # without verifyTag, the tag is not looked at


EXEMPT = {"exempt": ["reg.example.com/base/*", "localhost:5000", "docker.io", "*.internal/mirror/*"]}


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("reg.example.com/base/alpine:3", "reg.example.com/base/*"),
        ("reg.example.com/base/deep/er:3", "reg.example.com/base/*"),
        ("localhost:5000/x:1", "localhost:5000/*"),  # a bare registry means all of it
        ("nginx:1.25", "docker.io/*"),
        (f"localhost:5000/x@{D1}", "localhost:5000/*"),  # the first check: exempt even when pinned
        ("cache.internal/mirror/app:1", "*.internal/mirror/*"),
    ],
)
async def test_exempt(text: str, pattern: str) -> None:
    report = await verify(text, EXEMPT)
    assert report.passed is True
    assert report.reason == "exempt"
    assert report.details == {"pattern": pattern}


@pytest.mark.parametrize(
    "text",
    [
        "reg.example.com/app:1",
        "reg.example.com/base:1",  # the repository `base` itself is not under `base/*`
        "localhost:5001/x:1",
        "localhost/x:1",
        "registry-1.docker.io/library/nginx:1",  # another registry, as for the runtimes
        "quay.io/docker.io/x:1",
    ],
)
async def test_not_exempt(text: str) -> None:
    report = await verify(text, EXEMPT)
    assert report.reason == "not_pinned"


# --- verifyTag --------------------------------------------------------------------------------------

TAGGED = f"reg.example.com/app:1@{D1}"
VERIFY_TAG = {"verifyTag": True}


async def test_verify_tag_still_there() -> None:
    registry = registry_with({"reg.example.com/app:1": D1})
    report = await verify(TAGGED, VERIFY_TAG, registry)
    assert (report.passed, report.reason) == (True, "pinned")
    assert registry.requests == [Request("resolve", "reg.example.com/app:1")]  # by tag, not by digest


async def test_verify_tag_moved() -> None:
    registry = registry_with({"reg.example.com/app:1": D2})
    report = await verify(TAGGED, VERIFY_TAG, registry)
    assert (report.passed, report.reason) == (False, "tag_digest_mismatch")
    assert report.details == {"tag": "1", "pinned": D1, "current": D2}
    assert D2 in report.message


async def test_verify_tag_gone() -> None:
    report = await verify(TAGGED, VERIFY_TAG, InMemoryRegistry())
    assert (report.passed, report.reason) == (False, "tag_not_found")
    assert report.details == {"tag": "1", "digest": D1}


@pytest.mark.parametrize(
    "error",
    [Unavailable("connection refused"), RateLimited("429 Too Many Requests")],
    ids=["unavailable", "rate-limited"],
)
async def test_verify_tag_with_the_registry_unavailable_is_undecided(error: Unavailable) -> None:
    registry = registry_with(errors={"reg.example.com/app:1": error})
    with pytest.raises(Undecided) as info:
        await verify(TAGGED, VERIFY_TAG, registry)
    assert info.value is error
    assert info.value.reason == error.reason


@pytest.mark.parametrize(
    "text", [f"reg.example.com/app@{D1}", "reg.example.com/base/app:1", f"reg.example.com/base/app:1@{D1}"]
)
async def test_verify_tag_needs_a_tag_and_a_digest_outside_the_exemptions(text: str) -> None:
    registry = registry_with({"reg.example.com/base/app:1": D2})
    report = await verify(text, {"verifyTag": True, "exempt": ["reg.example.com/base/*"]}, registry)
    assert report.passed is True
    assert registry.requests == []


async def test_verify_tag_does_not_excuse_a_tag_only_reference() -> None:
    registry = registry_with({"reg.example.com/app:1": D1})
    report = await verify("reg.example.com/app:1", VERIFY_TAG, registry)
    assert report.reason == "not_pinned"


# --- options ----------------------------------------------------------------------------------------


def test_construction() -> None:
    verifier = DigestPinVerifier("pin", {"exempt": ["reg.example.com", "x.io/a/*"], "verifyTag": True})
    assert (verifier.name, verifier.type, verifier.verify_tag) == ("pin", "digest-pin", True)
    assert verifier.exempt == ("reg.example.com/*", "x.io/a/*")
    defaults = DigestPinVerifier("pin", {})
    assert (defaults.exempt, defaults.verify_tag) == ((), False)


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"exempt": "localhost:5000"}, "exempt"),
        ({"exempt": None}, "exempt"),
        ({"exempt": [""]}, "exempt"),
        ({"exempt": ["ok", 1]}, "exempt"),
        ({"exempt": {"a": 1}}, "exempt"),
        ({"verifyTag": "yes"}, "verifyTag"),
        ({"verifyTag": 1}, "verifyTag"),
        ({"verifyTag": None}, "verifyTag"),
        ({"exmpt": []}, "exmpt"),
        ({"verify_tag": True, "zzz": 1}, "verify_tag"),  # the first unknown, sorted
    ],
)
def test_bad_options(options: dict[str, Any], path: str) -> None:
    with pytest.raises(OptionsError) as info:
        DigestPinVerifier("pin", options)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")


_component = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,15}", fullmatch=True)


@settings(deadline=None, max_examples=50)
@given(
    registry=st.sampled_from(["reg.example.com", "localhost:5000", "docker.io", "[::1]:5000"]),
    path=st.lists(_component, min_size=1, max_size=3),
    tag=_tag,
)
def test_suggested_reference_is_a_pinned_reference_of_the_same_repository(
    registry: str, path: list[str], tag: str
) -> None:
    text = f"{registry}/{'/'.join(path)}:{tag}"
    report = asyncio.run(verify(text))
    assert report.reason == "not_pinned"
    suggested = parse_reference(str(report.details["suggested"]))
    original = parse_reference(text)
    assert (suggested.name, suggested.digest, suggested.tag) == (original.name, D1, None)
