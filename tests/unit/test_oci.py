"""The OCI content model (`verifiers.oci`): each junk shape is a ContentError naming its field, not a crash.

Property-based: arbitrary bytes, arbitrary JSON and structure-aware mutations of valid manifests and
referrer lists only ever give a model value or a `ContentError` (a ValueError), never IndexError,
KeyError, TypeError, AttributeError or RecursionError. Examples are derandomized (same ones every run).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider.registry.content import parse_descriptor as client_parse_descriptor
from tests.support import mutations
from verifiers import oci
from verifiers.errors import InvalidContent

D1 = "sha256:" + "a1" * 32
D2 = "sha256:" + "b2" * 32
D3 = "sha512:" + "c3" * 64
FUZZ = settings(max_examples=150, derandomize=True, deadline=None, database=None)


def descriptor(**extra: Any) -> dict[str, Any]:
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": D1, "size": 10, **extra}


def manifest(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.EMPTY_MEDIA_TYPE, "digest": D2, "size": 2},
        "layers": [descriptor()],
        "subject": {"mediaType": oci.OCI_MANIFEST, "digest": D3, "size": 481},
        "artifactType": "application/vnd.example+json",
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    doc.update(extra)
    return doc


def index(entries: list[Any]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": entries}


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


# --- valid content ------------------------------------------------------------------------------------------


def test_a_valid_manifest_is_read_into_frozen_values() -> None:
    parsed = oci.parse_image_manifest(encode(manifest()), oci.OCI_MANIFEST)
    assert parsed.media_type == oci.OCI_MANIFEST
    assert parsed.config == oci.Descriptor(oci.EMPTY_MEDIA_TYPE, D2, 2)
    assert [layer.digest for layer in parsed.layers] == [D1]
    assert parsed.subject is not None and parsed.refers_to(D3) and not parsed.refers_to(D1)
    assert parsed.kind == "application/vnd.example+json"
    assert dict(parsed.annotations) == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    with pytest.raises(TypeError):
        parsed.annotations["x"] = "y"  # type: ignore[index]
    with pytest.raises(AttributeError):
        parsed.layers = ()  # type: ignore[misc]


def test_kind_falls_back_to_the_config_media_type_and_empty_artifact_type_is_absent() -> None:
    parsed = oci.parse_image_manifest(encode(manifest(artifactType="")))
    assert parsed.artifact_type is None and parsed.kind == oci.EMPTY_MEDIA_TYPE


def test_media_type_is_inferred_from_the_content_type_or_the_shape() -> None:
    doc = manifest()
    del doc["mediaType"]
    assert oci.parse_manifest(encode(doc)).media_type == oci.OCI_MANIFEST
    assert oci.parse_manifest(encode(doc), oci.DOCKER_MANIFEST).media_type == oci.DOCKER_MANIFEST
    shaped = {"schemaVersion": 2, "manifests": [descriptor()]}
    assert isinstance(oci.parse_manifest(encode(shaped)), oci.ImageIndex)


def test_an_index_skips_invalid_entries_and_null_is_empty() -> None:
    parsed = oci.parse_index(encode(index([descriptor(), {"digest": "nope"}, 7, descriptor(digest=D2)])))
    assert [d.digest for d in parsed.manifests] == [D1, D2]
    assert parsed.skipped_count == 2
    assert [s.index for s in parsed.skipped] == [1, 2]
    assert oci.parse_index(encode({**index([]), "manifests": None})).manifests == ()


def test_a_referrer_list_skips_junk_entries_and_keeps_the_rest() -> None:
    entries: list[Any] = [
        descriptor(artifactType="application/vnd.dev.cosign.artifact.sig.v1+json"),
        {"mediaType": oci.OCI_MANIFEST, "digest": D2, "size": -1},
        "junk",
        descriptor(digest=D3, annotations={"a": 1}),
    ]
    listing = oci.parse_referrers(encode({"manifests": entries}))
    assert [d.digest for d in listing.referrers] == [D1]
    assert listing.skipped_count == 3
    assert [(s.index, s.digest) for s in listing.skipped] == [(1, D2), (2, None), (3, D3)]
    assert "manifests[1].size" in listing.skipped[0].reason
    assert oci.parse_referrers(b'{"manifests": null}').referrers == ()
    assert oci.parse_referrers(b"{}").referrers == ()


def test_skipped_notes_are_bounded() -> None:
    listing = oci.parse_referrers(encode({"manifests": [{"x": i} for i in range(100)]}))
    assert listing.skipped_count == 100 and len(listing.skipped) == oci.MAX_SKIPPED
    details = oci.skipped_details(listing.skipped, listing.skipped_count)
    assert details["skippedCount"] == 100 and len(details["skipped"]) == oci.MAX_SKIPPED
    assert oci.skipped_details([]) == {}


# --- junk: each shape a ContentError naming the field ------------------------------------------------------

JUNK_MANIFESTS: list[tuple[str, Any, str]] = [
    ("config a list", manifest(config=[descriptor()]), "config"),
    ("config missing", {k: v for k, v in manifest().items() if k != "config"}, "config"),
    ("layers not a list", manifest(layers={"0": descriptor()}), "layers"),
    ("layers null", manifest(layers=None), "layers"),
    ("a layer a string", manifest(layers=["sha256:x"]), "layers[0]"),
    ("subject a string", manifest(subject=D3), "subject"),
    (
        "subject without digest",
        manifest(subject={"mediaType": oci.OCI_MANIFEST, "size": 1}),
        "subject.digest",
    ),
    ("annotations a list", manifest(annotations=["a"]), "annotations"),
    ("annotation value a number", manifest(annotations={"a": 1}), "annotations['a']"),
    ("annotation value an object", manifest(annotations={"a": {"b": "c"}}), "annotations['a']"),
    (
        "layer annotation null value",
        manifest(layers=[descriptor(annotations={"a": None})]),
        "layers[0].annotations['a']",
    ),
    ("negative size", manifest(layers=[descriptor(size=-1)]), "layers[0].size"),
    ("huge size", manifest(layers=[descriptor(size=2**64)]), "layers[0].size"),
    ("bool size", manifest(layers=[descriptor(size=True)]), "layers[0].size"),
    ("float size", manifest(layers=[descriptor(size=1.5)]), "layers[0].size"),
    ("string size", manifest(layers=[descriptor(size="10")]), "layers[0].size"),
    ("digest upper case", manifest(layers=[descriptor(digest=D1.upper())]), "layers[0].digest"),
    ("digest short", manifest(layers=[descriptor(digest="sha256:abc")]), "layers[0].digest"),
    ("digest unknown algorithm", manifest(layers=[descriptor(digest="md5:" + "a" * 32)]), "layers[0].digest"),
    ("digest a number", manifest(layers=[descriptor(digest=5)]), "layers[0].digest"),
    ("mediaType a number", manifest(layers=[descriptor(mediaType=1)]), "layers[0].mediaType"),
    ("mediaType not a media type", manifest(layers=[descriptor(mediaType="x")]), "layers[0].mediaType"),
    ("mediaType with a newline", manifest(layers=[descriptor(mediaType="a/b\nc")]), "layers[0].mediaType"),
    ("top mediaType a list", manifest(mediaType=[oci.OCI_MANIFEST]), "mediaType"),
    ("top mediaType unknown", manifest(mediaType="application/json"), "mediaType"),
    ("artifactType a number", manifest(artifactType=3), "artifactType"),
    ("urls not strings", manifest(layers=[descriptor(urls=[1])]), "layers[0].urls"),
    ("platform a string", manifest(config=descriptor(platform="linux")), "config.platform"),
    ("schemaVersion 1", manifest(schemaVersion=1), "schemaVersion"),
    ("schemaVersion a string", manifest(schemaVersion="2"), "schemaVersion"),
    ("schemaVersion true", manifest(schemaVersion=True), "schemaVersion"),
    ("manifests a string in an index", index("x"), "manifests"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("doc", "path"), [(d, p) for _, d, p in JUNK_MANIFESTS], ids=[n for n, _, _ in JUNK_MANIFESTS]
)
def test_junk_manifest_is_a_content_error_with_its_path(doc: Any, path: str) -> None:
    with pytest.raises(oci.ContentError) as caught:
        oci.parse_manifest(encode(doc))
    assert caught.value.path == path, str(caught.value)
    assert str(caught.value).isascii()


JUNK_DOCUMENTS: list[tuple[str, bytes, str]] = [
    ("not JSON", b"{", "not valid JSON"),
    ("not UTF-8", b'{"a": "\xff"}', "not UTF-8"),
    ("a byte-order mark", b"\xef\xbb\xbf{}", "not valid JSON"),
    ("an array", b"[]", "expected a JSON object"),
    ("null", b"null", "expected a JSON object"),
    ("duplicate keys", b'{"schemaVersion": 2, "schemaVersion": 2}', "duplicate key"),
    ("NaN", b'{"a": NaN}', "NaN"),
    ("overflowing float", b'{"a": 1e999}', "out of range"),
    ("a 5000-digit integer", b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ("a lone surrogate", b'{"a": "\\ud800"}', "surrogate"),
    ("65 levels deep", b'{"a": ' + nested(64) + b"}", "nested more than 64"),
    ("100,000 levels deep", nested(100_000), "nested more than 64"),
    ("200,000 objects deep", b'{"a":' * 200_000 + b"1" + b"}" * 200_000, "nested more than 64"),
    ("deep and unbalanced", b"[" * 200_000, "nested more than 64"),
]


@pytest.mark.parametrize(
    ("data", "fragment"), [(d, f) for _, d, f in JUNK_DOCUMENTS], ids=[n for n, _, _ in JUNK_DOCUMENTS]
)
def test_junk_documents_are_content_errors(data: bytes, fragment: str) -> None:
    for parse in (oci.parse_manifest, oci.parse_referrers, oci.load_object):
        with pytest.raises(oci.ContentError) as caught:
            parse(data)
        assert fragment in str(caught.value)
        assert caught.value.path == ""


def test_nesting_at_the_limit_is_accepted() -> None:
    assert oci.load_json(nested(64)) == oci.load_json(nested(64))
    assert oci.load_json(b'{"a": "' + b"[" * 1000 + b'"}') == {"a": "[" * 1000}  # brackets in strings
    assert oci.load_json(b'["\\\\", ' + nested(63) + b"]")  # an escaped backslash before a quote
    with pytest.raises(oci.ContentError):
        oci.load_json(b'["\\"]]]]]]", ' + nested(64) + b"]")  # an escaped quote must not hide depth


def test_a_paired_surrogate_escape_is_fine() -> None:
    assert oci.load_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


def test_size_is_bounded() -> None:
    with pytest.raises(oci.ContentError, match="over the limit of 10"):
        oci.parse_manifest(encode(manifest()), max_bytes=10)


def test_a_manifest_is_not_an_index_and_back() -> None:
    with pytest.raises(oci.ContentError, match="expected an image manifest"):
        oci.parse_image_manifest(encode(index([])))
    with pytest.raises(oci.ContentError, match="expected an image index"):
        oci.parse_index(encode(manifest()))


def test_the_registry_client_keeps_its_descriptor_parser() -> None:
    assert client_parse_descriptor(descriptor(), "x").digest == D1
    with pytest.raises(InvalidContent, match=r"x\.size"):
        client_parse_descriptor(descriptor(size=-1), "x")


@pytest.mark.parametrize("shape", ["[", '{"a":'], ids=["arrays", "objects"])
def test_deep_nesting_is_refused_quickly(shape: str) -> None:
    """A 4 MiB document of openers costs a few C passes, not a recursion or a per-byte Python loop."""
    data = shape.encode() * (4 * 1024 * 1024 // len(shape))
    start = time.perf_counter()
    with pytest.raises(oci.ContentError):
        oci.load_json(data)
    assert time.perf_counter() - start < 1.0


# --- properties ------------------------------------------------------------------------------------------

json_values = mutations.json_values(max_text=20, max_items=4, max_key=8, max_leaves=20)
# Values worth planting in a manifest: every JSON type, descriptors good and bad, near-miss digests.
plants: st.SearchStrategy[Any] = (
    json_values
    | st.sampled_from(
        [D1, D2.upper(), "sha256:", -1, 2**63, 2**64, True, [], {}, None, "", "a/b", oci.OCI_INDEX]
    )
    | st.builds(descriptor)
    | st.builds(lambda size: descriptor(size=size), st.integers())
)
FIELDS = [
    "schemaVersion",
    "mediaType",
    "config",
    "layers",
    "subject",
    "artifactType",
    "annotations",
    "manifests",
]
DESCRIPTOR_FIELDS = ["mediaType", "digest", "size", "artifactType", "annotations", "urls", "platform", "data"]


def _expect_model_or_content_error(data: bytes) -> None:
    for parse in (oci.parse_manifest, oci.parse_referrers, oci.parse_index, oci.parse_image_manifest):
        try:
            parse(data)
        except oci.ContentError as e:
            assert isinstance(e.path, str) and isinstance(e.message, str)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    _expect_model_or_content_error(data)


@FUZZ
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    _expect_model_or_content_error(encode(value))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(FIELDS), plants), max_size=4), st.booleans())
def test_mutated_manifests(mutations: list[tuple[str, Any]], as_index: bool) -> None:
    doc = copy.deepcopy(index([descriptor(), descriptor(digest=D2)]) if as_index else manifest())
    for name, value in mutations:
        doc[name] = value
    _expect_model_or_content_error(encode(doc))


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(DESCRIPTOR_FIELDS), plants | st.just(...)), max_size=5
    )
)
def test_mutated_descriptors(mutations: list[tuple[int, str, Any]]) -> None:
    doc = manifest(layers=[descriptor(), descriptor(digest=D2), descriptor(digest=D3)])
    listing = index([descriptor(), descriptor(digest=D2), descriptor(digest=D3), descriptor()])
    for i, name, value in mutations:
        targets = [doc["config"], doc["subject"], *doc["layers"]]
        for target in (targets[i], listing["manifests"][i]):
            if value is ...:
                target.pop(name, None)
            else:
                target[name] = value
    _expect_model_or_content_error(encode(doc))
    _expect_model_or_content_error(encode(listing))
    try:
        parsed = oci.parse_referrers(encode(listing))
    except oci.ContentError as e:
        assert e.path == ""  # only the document as a whole (e.g. Infinity), never for one entry
    else:
        assert len(parsed.referrers) + parsed.skipped_count == 4


@FUZZ
@given(st.integers(1, 4000), st.sampled_from(["[", '{"k":']), st.binary(max_size=8))
def test_nesting_never_recurses(depth: int, opener: str, tail: bytes) -> None:
    closer = b"]" if opener == "[" else b"}"
    data = opener.encode() * depth + b"1" + tail + closer * depth
    try:
        oci.load_json(data)
    except oci.ContentError:
        assert depth > oci.MAX_DEPTH or tail


@FUZZ
@given(json_values)
def test_depth_scan_agrees_with_the_parsed_depth(value: Any) -> None:
    def depth(v: Any) -> int:
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        return 0

    data = encode(value)
    actual = depth(value)
    for limit in (max(actual - 1, 0), actual):
        assert oci.boundedjson.nesting_exceeds(data, limit) == (actual > limit)
