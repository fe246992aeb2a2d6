"""verifiers.testing's in-memory registry answers a verifier the way Countersign's registry client does."""

from __future__ import annotations

import asyncio

import pytest

from verifiers import oci
from verifiers.base import Descriptor, RegistryReader
from verifiers.errors import ContentError, IntegrityError, InvalidContent, NotFound, TooLarge, Unavailable
from verifiers.reference import parse_reference
from verifiers.testing import (
    InMemoryRegistry,
    Request,
    artifact_manifest,
    digest_of,
    image_manifest,
    junk_manifests,
    make_context,
    make_subject,
)

SIG = "application/vnd.example.signature"


def test_it_is_a_registry_reader_and_so_is_its_deadline_view() -> None:
    registry = InMemoryRegistry()
    assert isinstance(registry, RegistryReader)
    assert isinstance(registry.reader(None), RegistryReader)


async def test_an_image_reads_back_by_tag_and_by_digest() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1", labels={"a": "b"}, annotations={"x": "y"})
    assert subject.reference == parse_reference("registry.test/app:1")
    assert subject.digest == digest_of(subject.manifest) and subject.size == len(subject.manifest)
    assert await registry.resolve(subject.reference) == subject.descriptor
    pinned = parse_reference(f"registry.test/app@{subject.digest}")
    assert (await registry.resolve(pinned)).digest == subject.digest
    data, media_type = await registry.manifest(subject.reference, subject.digest)
    assert (data, media_type) == (subject.manifest, oci.OCI_MANIFEST)
    manifest = oci.parse_image_manifest(data)
    assert manifest.annotations == {"x": "y"}
    config = await registry.blob(subject.reference, manifest.config, 1024)
    assert b'"Labels":{"a":"b"}' in config
    assert registry.requests == [
        Request("resolve", "registry.test/app:1"),
        Request("resolve", f"registry.test/app@{subject.digest}"),
        Request("manifest", subject.digest),
        Request("blob", manifest.config.digest),
    ]
    assert registry.faulted == [] and registry.active == 0


async def test_content_lives_in_its_repository() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    elsewhere = parse_reference("registry.test/other:1")
    with pytest.raises(NotFound):
        await registry.manifest(elsewhere, subject.digest)
    with pytest.raises(NotFound):
        await registry.resolve(elsewhere)
    config = oci.parse_image_manifest(subject.manifest).config
    with pytest.raises(NotFound):
        await registry.blob(elsewhere, config, 1024)


async def test_artifacts_are_listed_as_the_referrers_api_lists_them() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    signature = registry.push_artifact(
        subject, SIG, [("application/json", b"{}", {"sig": "abc"})], annotations={"k": "v"}
    )
    notation_style = registry.push_artifact(
        subject, None, [b"envelope"], config_media_type="application/vnd.cncf.notary.signature"
    )
    listed = await registry.referrers(subject)
    assert [d.digest for d in listed] == [signature.digest, notation_style.digest]
    assert listed[0].artifact_type == SIG and listed[0].annotations == {"k": "v"}
    assert listed[1].artifact_type == "application/vnd.cncf.notary.signature"  # the config's media type
    assert [d.digest for d in await registry.referrers(subject, SIG)] == [signature.digest]
    data, _ = await registry.manifest(subject.reference, signature.digest)
    [layer] = oci.parse_image_manifest(data).layers
    assert layer.annotations == {"sig": "abc"}
    assert await registry.blob(subject.reference, layer, 1024) == b"{}"
    other = registry.push_image("registry.test/app:2", layers=[b"other"])
    assert await registry.referrers(other) == []


async def test_blobs_are_checked_against_their_descriptor() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    blob = registry.push_blob(subject, b"0123456789")
    ref = subject.reference
    assert await registry.blob(ref, blob, 10) == b"0123456789"
    with pytest.raises(TooLarge):  # refused before anything is read
        await registry.blob(ref, blob, 9)
    with pytest.raises(IntegrityError, match="served more than"):
        await registry.blob(ref, Descriptor(blob.media_type, blob.digest, 5), 100)
    with pytest.raises(IntegrityError, match="expected 11 bytes"):
        await registry.blob(ref, Descriptor(blob.media_type, blob.digest, 11), 100)
    with pytest.raises(NotFound):
        await registry.blob(ref, Descriptor(blob.media_type, digest_of(b"absent"), 6), 100)
    registry.corrupt("blob", target=blob.digest, times=1)
    with pytest.raises(IntegrityError, match="hash to"):
        await registry.blob(ref, blob, 10)
    assert await registry.blob(ref, blob, 10) == b"0123456789"  # once only
    assert registry.faulted == [Request("blob", blob.digest)]


async def test_manifests_are_checked_as_the_client_checks_them() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    junk = junk_manifests(subject.digest, SIG)
    not_json = registry.push_manifest(subject, junk["not JSON"])
    deep = registry.push_manifest(subject, junk["nested 100,000 deep"])
    for descriptor in (not_json, deep):
        with pytest.raises(InvalidContent) as info:
            await registry.manifest(subject.reference, descriptor.digest)
        assert isinstance(info.value, ContentError)  # skipped by verifiers like their own parse errors
    raw = InMemoryRegistry(check_manifests=False)
    raw_descriptor = raw.push_manifest(subject, junk["not JSON"])
    assert (await raw.manifest(subject.reference, raw_descriptor.digest))[0] == junk["not JSON"]
    registry.corrupt("manifest")
    with pytest.raises(IntegrityError):
        await registry.manifest(subject.reference, subject.digest)
    assert (await registry.resolve(subject.reference)).digest == subject.digest  # another operation
    registry.corrupt("resolve")
    with pytest.raises(IntegrityError):
        await registry.resolve(subject.reference)
    small = InMemoryRegistry(max_manifest_bytes=10)
    small_subject = small.push_image("registry.test/app:1")
    with pytest.raises(TooLarge):
        await small.manifest(small_subject.reference, small_subject.digest)


async def test_a_referrer_can_be_listed_whatever_it_points_to() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    bogus = Descriptor(oci.OCI_MANIFEST, digest_of(b"nothing"), 7, artifact_type=SIG)
    registry.list_referrer(subject, bogus)
    assert list(await registry.referrers(subject)) == [bogus]
    with pytest.raises(NotFound):
        await registry.manifest(subject.reference, bogus.digest)
    registry.max_referrers = 0
    with pytest.raises(TooLarge):
        await registry.referrers(subject)


async def test_an_unlisted_artifact_is_stored_but_listed_only_as_the_test_lists_it() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    hidden = registry.push_artifact(subject, SIG, [b"payload"], annotations={"k": "v"}, listed=False)
    raw = artifact_manifest(subject.descriptor, SIG)
    hidden_raw = registry.push_manifest(subject, raw, listed=False)
    assert await registry.referrers(subject) == []
    data, _ = await registry.manifest(subject.reference, hidden.digest)
    assert oci.parse_image_manifest(data).refers_to(subject.digest)  # still readable, still a referrer
    assert (await registry.manifest(subject.reference, hidden_raw.digest))[0] == raw
    lying = Descriptor(hidden.media_type, hidden.digest, hidden.size, artifact_type="x/other", annotations={})
    registry.list_referrer(subject, lying)
    assert list(await registry.referrers(subject)) == [lying]
    assert list(await registry.referrers(subject, SIG)) == []
    shown = registry.push_artifact(subject, SIG, [b"payload 2"])  # the default: listed
    assert [d.digest for d in await registry.referrers(subject, SIG)] == [shown.digest]


async def test_fail_raises_the_given_error_for_matching_reads_only() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    error = Unavailable("down", reason="registry_rate_limited")
    registry.fail("resolve", target="registry.test/app:1", error=error)
    with pytest.raises(Unavailable) as info:
        await registry.resolve(subject.reference)
    assert info.value is error
    assert (await registry.manifest(subject.reference, subject.digest))[0] == subject.manifest
    registry.clear_faults()
    registry.fail(times=1)
    with pytest.raises(Unavailable) as default:
        await registry.referrers(subject)
    assert default.value.reason == "registry_unavailable"
    assert await registry.referrers(subject) == []
    with pytest.raises(ValueError, match="unknown operation"):
        registry.fail("tags")


async def test_a_read_after_the_deadline_is_unavailable() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    context = make_context(registry, deadline_in=-1)
    with pytest.raises(Unavailable) as info:
        await context.registry.referrers(subject)
    assert info.value.reason == "deadline_exceeded"
    assert registry.faulted == [Request("referrers", subject.digest)]


async def test_a_stalled_read_gives_up_at_the_deadline() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    registry.stall("manifest")
    context = make_context(registry, deadline_in=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(Unavailable) as info:
        await context.registry.manifest(subject.reference, subject.digest)
    assert info.value.reason == "registry_timeout"
    assert 0.15 <= loop.time() - start < 1.0
    assert registry.active == 0


async def test_a_stalled_read_without_a_deadline_waits_until_cancelled() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    registry.stall()
    task = asyncio.ensure_future(registry.referrers(subject))
    await registry.read_started.wait()
    assert registry.active == 1 and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert registry.active == 0


async def test_delay_answers_late() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1")
    registry.delay(0.1, "referrers")
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await registry.referrers(subject) == []
    assert loop.time() - start >= 0.09
    assert registry.faulted == []  # late is not hostile


def test_make_subject() -> None:
    subject = make_subject("registry.test/app:1")
    assert subject.digest == digest_of(subject.manifest)
    assert oci.parse_image_manifest(subject.manifest).layers == ()
    data = image_manifest(subject.descriptor)
    pinned = make_subject(f"registry.test/app@{digest_of(data)}", data, namespace="ns")
    assert pinned.reference.digest == pinned.digest and pinned.namespace == "ns"
    with pytest.raises(ValueError, match="manifest's digest"):
        make_subject(f"registry.test/app@{subject.digest}", data)


async def test_make_context_keeps_other_readers_as_they_are() -> None:
    registry = InMemoryRegistry()
    view = make_context(registry, deadline_in=5).registry
    assert view is not registry
    other = make_context(view, deadline_in=5)
    assert other.registry is view
    assert other.deadline - asyncio.get_running_loop().time() == pytest.approx(5, abs=0.5)
