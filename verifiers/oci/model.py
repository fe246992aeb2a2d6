"""Registry content as validated, frozen values: descriptors, image manifests, image indexes, referrer lists.

Parse registry bytes here, never by indexing into `json.loads` output: every field a verifier may read is
type-checked once, and whatever does not fit raises `ContentError` with the field's path. Unknown fields
are ignored (OCI image-spec: "MUST ignore unknown properties"); known ones must have their specified type.

What is checked:

- a descriptor: `mediaType` a media type (RFC 6838 `type/subtype`, optional parameters, printable ASCII,
  at most 255 characters), `digest` `sha256:<64 hex>` or `sha512:<128 hex>` (lower case), `size` an
  integer from 0 to 2^63-1 (not a boolean, not a float), `artifactType` a media type when present
  (an empty string counts as absent), `annotations` an object of strings, `urls` an array of strings,
  `platform` an object, `data` a string;
- an image manifest: `schemaVersion` 2, `config` a descriptor, `layers` an array of descriptors,
  optional `subject` (a descriptor), `artifactType`, `annotations`;
- an image index: `schemaVersion` 2, `manifests` an array (`null` or absent: none), optional `subject`,
  `artifactType`, `annotations`; an entry of `manifests` that is not a valid descriptor is skipped
  (`skipped` says which and why, for the first `MAX_SKIPPED`) rather than failing the index: anyone who
  can push may rewrite a `sha256-<hex>` tag-schema index, and one junk entry must not hide the others;
- a referrer list (one page of the referrers API, or the tag-schema index): only `manifests` is
  checked (an array, `null` or absent), entries as in an index;
- every document: at most `max_bytes`, strict JSON (`verifiers.oci.boundedjson.load_json`), nested at
  most `MAX_DEPTH` deep.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from verifiers.base import Descriptor
from verifiers.oci.boundedjson import MAX_DEPTH, json_type, load_object, show
from verifiers.oci.errors import ContentError

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EMPTY_MEDIA_TYPE",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MAX_DOCUMENT_BYTES",
    "MAX_SKIPPED",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "ImageIndex",
    "ImageManifest",
    "ReferrerList",
    "Skipped",
    "check_document_size",
    "image_manifest_only",
    "index_from_json",
    "manifest_from_json",
    "parse_descriptor",
    "parse_image_manifest",
    "parse_index",
    "parse_manifest",
    "parse_referrers",
    "referrers_from_json",
    "skipped_details",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
INDEX_MEDIA_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"

#: The largest document parsed unless the caller says otherwise (the registry client's manifest limit).
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
#: How many skipped referrer-list entries are kept with their reasons (the rest are only counted).
MAX_SKIPPED = 16
MAX_SIZE = 2**63 - 1

_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[\x20-\x7e]*)?")
_DIGEST = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A referrer-list entry (or a referrer) left out, and why. `digest` is None when it had none."""

    index: int
    digest: str | None
    reason: str

    def as_details(self) -> dict[str, Any]:
        return {"digest": self.digest, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """An OCI image manifest or Docker schema 2 manifest (signature and SBOM referrers are these too)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def kind(self) -> str:
        """What the artifact says it is: `artifactType`, else the config's media type (OCI 1.1 rule)."""
        return self.artifact_type or self.config.media_type

    def refers_to(self, digest: str) -> bool:
        """Whether this manifest's `subject` is `digest`."""
        return self.subject is not None and self.subject.digest == digest


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """An OCI image index or Docker manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    skipped: tuple[Skipped, ...] = ()
    skipped_count: int = 0


@dataclass(frozen=True, slots=True)
class ReferrerList:
    """The valid entries of a referrer listing, in order; the first `MAX_SKIPPED` invalid ones noted."""

    referrers: tuple[Descriptor, ...]
    skipped: tuple[Skipped, ...] = ()
    skipped_count: int = 0


def skipped_details(skipped: Sequence[Skipped], count: int | None = None) -> dict[str, Any]:
    """What a verifier's report `details` say about skipped referrers: `{}` when none, else
    `{"skipped": [{digest, reason}] (the first MAX_SKIPPED), "skippedCount": n}`."""
    total = len(skipped) if count is None else max(count, len(skipped))
    if not total:
        return {}
    return {"skipped": [s.as_details() for s in skipped[:MAX_SKIPPED]], "skippedCount": total}


# --- fields -----------------------------------------------------------------------------------------------


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _media_type(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ContentError(path, f"expected a media type string, got {json_type(value)}")
    if len(value) > 255 or _MEDIA_TYPE.fullmatch(value) is None:
        raise ContentError(path, f"{show(value)} is not a media type")
    return value


def _digest(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ContentError(path, f"expected a digest string, got {json_type(value)}")
    if _DIGEST.fullmatch(value) is None:
        raise ContentError(path, f"{show(value)} is not a sha256 or sha512 digest (lower-case hex)")
    return value


def _size(value: object, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ContentError(path, f"expected an integer, got {json_type(value)}")
    if not 0 <= value <= MAX_SIZE:
        raise ContentError(path, f"{show(value)} is not between 0 and 2^63-1")
    return value


def _annotations(value: object, path: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise ContentError(path, f"expected an object of strings, got {json_type(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise ContentError(f"{path}[{show(key)}]", f"expected a string, got {json_type(item)}")
    return MappingProxyType(dict(value))


def _artifact_type(value: object, path: str) -> str | None:
    if value is None or value == "":
        return None
    return _media_type(value, path)


def _schema_version(doc: Mapping[str, Any]) -> None:
    version = doc.get("schemaVersion")
    if not isinstance(version, int) or isinstance(version, bool) or version != 2:
        raise ContentError("schemaVersion", f"expected 2, got {show(version)} (schema 1 is not supported)")


def _list(value: object, path: str, *, null_is_empty: bool = False) -> list[Any]:
    if value is None and null_is_empty:
        return []
    if not isinstance(value, list):
        raise ContentError(path, f"expected an array, got {json_type(value)}")
    return value


def parse_descriptor(value: object, path: str = "") -> Descriptor:
    """Validate one descriptor from parsed JSON; `path` is where it sits, for the error."""
    if not isinstance(value, dict):
        raise ContentError(path, f"expected a descriptor object, got {json_type(value)}")
    media_type = _media_type(value.get("mediaType"), _join(path, "mediaType"))
    digest = _digest(value.get("digest"), _join(path, "digest"))
    size = _size(value.get("size"), _join(path, "size"))
    artifact_type = _artifact_type(value.get("artifactType"), _join(path, "artifactType"))
    annotations = _annotations(value.get("annotations"), _join(path, "annotations"))
    urls = value.get("urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise ContentError(_join(path, "urls"), "expected an array of strings")
    if value.get("platform") is not None and not isinstance(value["platform"], dict):
        raise ContentError(_join(path, "platform"), f"expected an object, got {json_type(value['platform'])}")
    if value.get("data") is not None and not isinstance(value["data"], str):
        raise ContentError(_join(path, "data"), f"expected a base64 string, got {json_type(value['data'])}")
    return Descriptor(
        media_type=media_type, digest=digest, size=size, artifact_type=artifact_type, annotations=annotations
    )


def _optional_descriptor(doc: Mapping[str, Any], name: str) -> Descriptor | None:
    value = doc.get(name)
    return None if value is None else parse_descriptor(value, name)


# --- documents --------------------------------------------------------------------------------------------


def _document_media_type(doc: Mapping[str, Any], content_type: str | None) -> str:
    """The media type of a manifest document: its `mediaType`, else the response's, else its shape."""
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ContentError("mediaType", f"expected a string, got {json_type(declared)}")
    content_type = content_type.split(";")[0].strip() if content_type else None
    if declared and content_type in MANIFEST_MEDIA_TYPES and declared != content_type:
        raise ContentError("mediaType", f"{show(declared)} but the registry said {content_type}")
    media_type = declared or (content_type if content_type in MANIFEST_MEDIA_TYPES else None)
    if media_type is None:  # OCI allows mediaType to be absent: the shape tells
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise ContentError("mediaType", f"unsupported manifest media type {show(media_type)}")
    return media_type


def manifest_from_json(doc: Mapping[str, Any], content_type: str | None = None) -> ImageManifest | ImageIndex:
    """An image manifest or index from a parsed JSON object (`content_type`: the registry's Content-Type)."""
    _schema_version(doc)
    media_type = _document_media_type(doc, content_type)
    if media_type in INDEX_MEDIA_TYPES:
        return _index(doc, media_type)
    if "config" not in doc:
        raise ContentError("config", "missing")
    config = parse_descriptor(doc["config"], "config")
    layers = tuple(
        parse_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(_list(doc.get("layers"), "layers"))
    )
    return ImageManifest(
        media_type=media_type,
        config=config,
        layers=layers,
        subject=_optional_descriptor(doc, "subject"),
        artifact_type=_artifact_type(doc.get("artifactType"), "artifactType"),
        annotations=_annotations(doc.get("annotations"), "annotations"),
    )


def index_from_json(doc: Mapping[str, Any], content_type: str | None = None) -> ImageIndex:
    manifest = manifest_from_json(doc, content_type)
    if not isinstance(manifest, ImageIndex):
        raise ContentError("mediaType", f"expected an image index, got {manifest.media_type}")
    return manifest


def _index(doc: Mapping[str, Any], media_type: str) -> ImageIndex:
    listing = referrers_from_json(doc)
    return ImageIndex(
        media_type=media_type,
        manifests=listing.referrers,
        subject=_optional_descriptor(doc, "subject"),
        artifact_type=_artifact_type(doc.get("artifactType"), "artifactType"),
        annotations=_annotations(doc.get("annotations"), "annotations"),
        skipped=listing.skipped,
        skipped_count=listing.skipped_count,
    )


def referrers_from_json(doc: Mapping[str, Any]) -> ReferrerList:
    """The entries of a referrer listing (a parsed index); invalid entries skipped, not fatal.

    Only `manifests` is required to be an array (`null` or absent: no referrers); the rest of the
    document is not checked, as registries differ in what they put around the list.
    """
    entries = _list(doc.get("manifests"), "manifests", null_is_empty=True)
    found: list[Descriptor] = []
    skipped: list[Skipped] = []
    count = 0
    for i, entry in enumerate(entries):
        try:
            found.append(parse_descriptor(entry, f"manifests[{i}]"))
        except ContentError as e:
            count += 1
            if len(skipped) < MAX_SKIPPED:
                digest = entry.get("digest") if isinstance(entry, dict) else None
                valid = isinstance(digest, str) and _DIGEST.fullmatch(digest) is not None
                skipped.append(Skipped(i, digest if valid else None, str(e)))
    return ReferrerList(tuple(found), tuple(skipped), count)


# --- from bytes -------------------------------------------------------------------------------------------


def check_document_size(data: bytes, max_bytes: int = MAX_DOCUMENT_BYTES) -> None:
    """ContentError when `data` is over `max_bytes` (what every `parse_*` here checks first)."""
    if len(data) > max_bytes:
        raise ContentError("", f"{len(data)} bytes, over the limit of {max_bytes}")


def _load(data: bytes, max_bytes: int) -> dict[str, Any]:
    check_document_size(data, max_bytes)
    return load_object(data, max_depth=MAX_DEPTH)


def parse_manifest(
    data: bytes, content_type: str | None = None, *, max_bytes: int = MAX_DOCUMENT_BYTES
) -> ImageManifest | ImageIndex:
    """An image manifest or index from registry bytes (`content_type`: the media type it was served as)."""
    return manifest_from_json(_load(data, max_bytes), content_type)


def parse_image_manifest(
    data: bytes, content_type: str | None = None, *, max_bytes: int = MAX_DOCUMENT_BYTES
) -> ImageManifest:
    """An image manifest (not an index) from registry bytes: what every signature or SBOM referrer is."""
    return image_manifest_only(parse_manifest(data, content_type, max_bytes=max_bytes))


def image_manifest_only(manifest: ImageManifest | ImageIndex) -> ImageManifest:
    """`manifest` when it is an image manifest; ContentError for an index (as `parse_image_manifest`)."""
    if not isinstance(manifest, ImageManifest):
        raise ContentError("mediaType", f"expected an image manifest, got {manifest.media_type}")
    return manifest


def parse_index(
    data: bytes, content_type: str | None = None, *, max_bytes: int = MAX_DOCUMENT_BYTES
) -> ImageIndex:
    return index_from_json(_load(data, max_bytes), content_type)


def parse_referrers(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> ReferrerList:
    """A referrer listing from registry bytes (one page of the referrers API, or the tag-schema index)."""
    return referrers_from_json(_load(data, max_bytes))
