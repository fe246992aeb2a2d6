"""OCI registry content: one validated model for everything read from a registry.

Verifiers and the registry client parse manifests, indexes and referrer lists only through this package:

    from verifiers import oci

    manifest = oci.parse_image_manifest(data, media_type)   # ImageManifest, or ContentError
    if not manifest.refers_to(subject.digest): ...
    for layer in manifest.layers: ...                        # verifiers.base.Descriptor values

Every error is a `ContentError` (a `ValueError`) whose `path` names the offending field; JSON is parsed
with bounded nesting (`MAX_DEPTH`), so hostile documents cannot raise RecursionError, KeyError,
AttributeError or TypeError. `load_json` / `load_object` are the same bounded parser for any other
untrusted JSON (token responses, annotation values holding JSON).

A verifier reading a referrer's manifest through its `Context` calls
`data, manifest = await oci.read_image_manifest(context.registry, subject.reference, digest)`: the same as
`registry.manifest` then `parse_image_manifest`, without parsing again what the reader already checked
(`verifiers.oci.reading`).

This package must not import `provider` (verifiers are usable as a library).
"""

from verifiers.base import Descriptor
from verifiers.oci.boundedjson import MAX_DEPTH, load_json, load_object, show
from verifiers.oci.errors import ContentError
from verifiers.oci.model import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    EMPTY_MEDIA_TYPE,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MAX_DOCUMENT_BYTES,
    MAX_SKIPPED,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageIndex,
    ImageManifest,
    ReferrerList,
    Skipped,
    check_document_size,
    image_manifest_only,
    index_from_json,
    manifest_from_json,
    parse_descriptor,
    parse_image_manifest,
    parse_index,
    parse_manifest,
    parse_referrers,
    referrers_from_json,
    skipped_details,
)
from verifiers.oci.reading import CheckedManifest, ChecksManifests, read_image_manifest

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EMPTY_MEDIA_TYPE",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_SKIPPED",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "CheckedManifest",
    "ChecksManifests",
    "ContentError",
    "Descriptor",
    "ImageIndex",
    "ImageManifest",
    "ReferrerList",
    "Skipped",
    "check_document_size",
    "image_manifest_only",
    "index_from_json",
    "load_json",
    "load_object",
    "manifest_from_json",
    "parse_descriptor",
    "parse_image_manifest",
    "parse_index",
    "parse_manifest",
    "parse_referrers",
    "read_image_manifest",
    "referrers_from_json",
    "show",
    "skipped_details",
]
