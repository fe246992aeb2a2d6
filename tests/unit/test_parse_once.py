"""A manifest is parsed once: the registry client's checked parse travels with the bytes to the verifier.

The client validates every manifest it reads (`checked_manifest`); the `Manifest` it returns carries that
parse (`document`), the caches keep the bytes alone (`bare`), the verification that read it keeps the parse
(`ImageReader.checked_manifest`) and `oci.read_image_manifest` uses it instead of parsing again. What is
guaranteed here: the parse carried equals a fresh parse of the bytes as the media type the verifier is
given (for every content type a registry may send), a reader that holds it is not parsed again, and
`read_image_manifest` gives the same manifest or the same `ContentError` as
`registry.manifest` + `oci.parse_image_manifest` for every reader.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider.registry import content
from provider.registry.cached import CachedRegistry, ImageReader
from provider.registry.content import Manifest, checked_manifest, compute_digest
from verifiers import oci
from verifiers.base import Descriptor, Subject
from verifiers.errors import InvalidContent
from verifiers.oci import model as oci_model
from verifiers.reference import ImageReference, parse_reference

D1 = "sha256:" + "a1" * 32
D2 = "sha256:" + "b2" * 32
D3 = "sha512:" + "c3" * 64
REF = parse_reference("registry.example/team/app:v1")
CONTENT_TYPES = [
    "",
    oci.OCI_MANIFEST,
    oci.OCI_INDEX,
    oci.DOCKER_MANIFEST,
    "text/plain",
    f"{oci.OCI_INDEX}; x=y",
]


def _layer(**extra: Any) -> dict[str, Any]:
    return {
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "digest": D1,
        "size": 10,
        **extra,
    }


def _manifest(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.EMPTY_MEDIA_TYPE, "digest": D2, "size": 2},
        "layers": [_layer(annotations={"dev.cosignproject.cosign/signature": "MEUCIQ=="})],
        "subject": {"mediaType": oci.OCI_MANIFEST, "digest": D3, "size": 481},
        "artifactType": "application/vnd.cncf.notary.signature",
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    doc.update(extra)
    return {k: v for k, v in doc.items() if v is not ...}


def _index(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_INDEX,
        "manifests": [_layer(), {"digest": "junk"}, _layer(digest=D2, artifactType="application/x+json")],
    }
    doc.update(extra)
    return {k: v for k, v in doc.items() if v is not ...}


DOCUMENTS = [
    _manifest(),
    _manifest(mediaType=...),  # the media type from the Content-Type, else the shape
    _manifest(mediaType=oci.DOCKER_MANIFEST, subject=..., artifactType=...),
    _manifest(layers=[], annotations=None),
    _index(),
    _index(mediaType=...),
    _index(manifests=None, subject={"mediaType": oci.OCI_MANIFEST, "digest": D1, "size": 1}),
]


def _check(data: bytes, content_type: str) -> Manifest:
    return checked_manifest(REF, "v1", data, None, None, content_type)


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("doc", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_the_parse_carried_equals_a_fresh_parse(doc: dict[str, Any], content_type: str) -> None:
    data = json.dumps(doc).encode()
    try:
        manifest = _check(data, content_type)
    except InvalidContent:
        with pytest.raises(oci.ContentError):
            oci.parse_manifest(data, content_type)
        return
    assert manifest.document is not None
    # as the verifier is given it (the media type the client settled on) and as the registry served it
    assert manifest.document == oci.parse_manifest(data, manifest.media_type)
    assert manifest.document == oci.parse_manifest(data, content_type)
    assert manifest.document.media_type == manifest.media_type
    assert manifest.media_type in oci.MANIFEST_MEDIA_TYPES
    assert manifest.digest == compute_digest(data)


PLANTS = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.text(max_size=8),
    st.sampled_from([oci.OCI_MANIFEST, oci.OCI_INDEX, oci.DOCKER_MANIFEST_LIST, "", "x/y"]),
    st.lists(st.just(_layer()), max_size=2),
    st.just(_layer()),
    st.just({}),
)
FIELDS = ["schemaVersion", "mediaType", "config", "layers", "manifests", "subject", "artifactType"]


@settings(max_examples=200, derandomize=True, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.sampled_from(FIELDS), PLANTS), max_size=4),
    st.booleans(),
    st.sampled_from(CONTENT_TYPES),
)
def test_the_parse_carried_equals_a_fresh_parse_of_mutated_manifests(
    mutations: list[tuple[str, Any]], as_index: bool, content_type: str
) -> None:
    doc = copy.deepcopy(_index() if as_index else _manifest())
    for name, value in mutations:
        doc[name] = value
    data = json.dumps(doc).encode()
    try:
        manifest = _check(data, content_type)
    except InvalidContent as e:  # refused as before: what a fresh parse says, with the client's prefix
        with pytest.raises(oci.ContentError) as fresh:
            oci.parse_manifest(data, content_type)
        assert str(e).endswith(str(fresh.value))
        return
    assert manifest.document == oci.parse_manifest(data, manifest.media_type)
    if isinstance(manifest.document, oci.ImageIndex):  # the tag-schema listing reads the same entries
        assert content.listed_descriptors(manifest.document, "x") == content.index_descriptors(data, "x")


# --- the reader and read_image_manifest -------------------------------------------------------------------


class _Reader:
    """A RegistryReader over one manifest, with or without `checked_manifest`."""

    def __init__(self, data: bytes, media_type: str, document: oci.ImageManifest | oci.ImageIndex | None):
        self.data, self.media_type, self.document = data, media_type, document

    async def referrers(self, subject: Subject, artifact_type: str | None = None) -> Sequence[Descriptor]:
        return []

    async def manifest(self, reference: ImageReference, digest: str) -> tuple[bytes, str]:
        return self.data, self.media_type

    async def blob(self, reference: ImageReference, descriptor: Descriptor, max_bytes: int) -> bytes:
        raise AssertionError("not read")

    async def resolve(self, reference: ImageReference) -> Descriptor:
        raise AssertionError("not read")


class _CheckingReader(_Reader):
    async def checked_manifest(self, reference: ImageReference, digest: str) -> oci.CheckedManifest:
        return oci.CheckedManifest(self.data, self.media_type, self.document)


def _outcome(coro: Any) -> tuple[str, Any]:
    try:
        _, manifest = asyncio.run(coro)
    except oci.ContentError as e:
        return "error", (e.path, e.message)
    return "manifest", manifest


@pytest.mark.parametrize("max_bytes", [oci.MAX_DOCUMENT_BYTES, 100])
@pytest.mark.parametrize("doc", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_read_image_manifest_is_the_same_with_and_without_the_parse(
    doc: dict[str, Any], max_bytes: int
) -> None:
    data = json.dumps(doc).encode()
    manifest = _check(data, "")
    expected: tuple[str, Any]
    try:
        expected = ("manifest", oci.parse_image_manifest(data, manifest.media_type, max_bytes=max_bytes))
    except oci.ContentError as e:
        expected = ("error", (e.path, e.message))
    for reader in (
        _Reader(data, manifest.media_type, None),
        _CheckingReader(data, manifest.media_type, None),
        _CheckingReader(data, manifest.media_type, manifest.document),
    ):
        got = _outcome(oci.read_image_manifest(reader, REF, manifest.digest, max_bytes=max_bytes))
        assert got == expected, type(reader).__name__


def test_a_reader_that_holds_the_parse_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    data = json.dumps(_manifest()).encode()
    manifest = _check(data, oci.OCI_MANIFEST)

    def no_parse(*args: object, **kwargs: object) -> Any:
        raise AssertionError("parsed again")

    monkeypatch.setattr(oci_model, "load_object", no_parse)
    monkeypatch.setattr(oci_model, "manifest_from_json", no_parse)
    reader = _CheckingReader(data, manifest.media_type, manifest.document)
    got_data, got = asyncio.run(oci.read_image_manifest(reader, REF, manifest.digest))
    assert got is manifest.document and got_data is data
    with pytest.raises(AssertionError, match="parsed again"):  # without the parse, it is parsed
        asyncio.run(oci.read_image_manifest(_Reader(data, manifest.media_type, None), REF, manifest.digest))


# --- what the caches keep, what one verification keeps -----------------------------------------------------


class _Client:
    """The registry client's `get_manifest`, over checked bytes; counts reads."""

    def __init__(self, manifests: dict[str, tuple[bytes, str]]) -> None:
        self.manifests = manifests
        self.reads = 0

    async def get_manifest(self, ref: ImageReference, reference: str | None = None) -> Manifest:
        self.reads += 1
        data, content_type = self.manifests[reference or ref.reference]
        return checked_manifest(ref, reference or ref.reference, data, None, None, content_type)


def test_caches_keep_bytes_and_the_verification_keeps_the_parse() -> None:
    data = json.dumps(_manifest()).encode()
    digest = compute_digest(data)
    client = _Client({"sha256-x.sig": (data, ""), digest: (data, "")})
    registry = CachedRegistry(client, content_bytes=1 << 20, tag_ttl=60)  # type: ignore[arg-type]
    sig = parse_reference("registry.example/team/app:sha256-x.sig")

    async def run() -> None:
        reader = ImageReader(registry)
        assert (await reader.resolve(sig)).digest == digest  # cosign's `.sig` tag: read and parsed
        cached = await registry.manifest(REF, digest)
        assert cached.document is None and cached == Manifest(digest, oci.OCI_MANIFEST, data)
        checked = await reader.checked_manifest(REF, digest)  # by digest: from the caches, parse kept
        assert client.reads == 1
        assert checked.document is not None and checked.document == oci.parse_manifest(
            data, checked.media_type
        )
        assert (checked.data, checked.media_type) == (data, oci.OCI_MANIFEST)
        # another verification did not read it: it gets the bytes alone, and parses them itself
        assert (await ImageReader(registry).checked_manifest(REF, digest)).document is None

    asyncio.run(run())


def test_a_kept_parse_is_not_given_for_the_bytes_served_as_another_media_type() -> None:
    doc = _manifest(mediaType=...)  # no mediaType: what the registry says decides
    data = json.dumps(doc).encode()
    digest = compute_digest(data)
    as_index = Manifest(digest, oci.OCI_INDEX, data)
    registry = CachedRegistry(_Client({}), content_bytes=1 << 20, tag_ttl=60)  # type: ignore[arg-type]
    reader = ImageReader(registry)
    fresh = checked_manifest(REF, "v1", data, None, None, oci.OCI_MANIFEST)
    assert reader._keep(REF, fresh) is fresh.document
    assert reader._keep(REF, fresh.bare()) is fresh.document
    assert reader._keep(REF, as_index) is None
    assert oci.parse_manifest(data, oci.OCI_INDEX) != fresh.document  # it would be another document
