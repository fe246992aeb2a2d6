"""Hostile content, as anyone who can push to a repository could attach it to an image.

`junk_manifests(subject_digest, artifact_type)` gives malformed referrer manifests (most of them otherwise
valid, so only the junk makes them invalid); `junk_blobs()` gives blob contents a signature, SBOM or
attestation parser must refuse without crashing. The conformance checker attaches both to images; use them
in a verifier's own tests too.
"""

from __future__ import annotations

import json
from typing import Any

from verifiers import oci
from verifiers.testing.builders import EMPTY_CONFIG, descriptor_json, digest_of

__all__ = ["ARTIFACT_TYPES", "EMPTY", "LAYER", "LAYER_BYTES", "junk_blobs", "junk_manifests"]

#: Artifact types referrers commonly carry (cosign, sigstore bundles, notation, SBOMs, in-toto).
ARTIFACT_TYPES = (
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    "application/vnd.dev.cosign.artifact.att.v1+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.cncf.notary.signature",
    "application/spdx+json",
    "application/vnd.cyclonedx+json",
    "application/vnd.in-toto+json",
)

EMPTY = descriptor_json(EMPTY_CONFIG)
LAYER_BYTES = b"junk\n"
LAYER = {"mediaType": "application/octet-stream", "digest": digest_of(LAYER_BYTES), "size": len(LAYER_BYTES)}


def _manifest(subject_digest: str, artifact_type: str, **override: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": oci.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY,
        "layers": [LAYER],
        "subject": {"mediaType": oci.OCI_MANIFEST, "digest": subject_digest, "size": 100},
    }
    doc.update(override)
    return doc


def junk_manifests(subject_digest: str, artifact_type: str) -> dict[str, bytes]:
    """Each junk shape (name -> manifest bytes) naming `subject_digest`, claiming to be `artifact_type`.

    None of them is a valid OCI image manifest (`verifiers.oci.parse_image_manifest` refuses each).
    """

    def doc(**override: Any) -> bytes:
        return json.dumps(_manifest(subject_digest, artifact_type, **override)).encode()

    def deep(depth: int) -> bytes:  # in a member the OCI spec does not define (registries keep those)
        return doc(**{"org.example.extra": "X"}).replace(b'"X"', b"[" * depth + b"]" * depth)

    return {
        "config a list": doc(config=[EMPTY], artifactType=None),
        "layers not a list": doc(layers={"0": LAYER}),
        "subject a string": doc(subject=subject_digest),
        "annotations with a number": doc(annotations={"org.example": 1}),
        "layer with a negative size": doc(layers=[{**LAYER, "size": -1}]),
        "layer with a huge size": doc(layers=[{**LAYER, "size": 2**70}]),
        "layer with a boolean size": doc(layers=[{**LAYER, "size": True}]),
        "layer with a bad digest": doc(layers=[{**LAYER, "digest": "sha256:zz"}]),
        "mediaType not a string": doc(layers=[{**LAYER, "mediaType": ["application/octet-stream"]}]),
        "nested 100,000 deep": deep(100_000),
        "nested 9,000 deep": deep(9_000),  # Go's encoding/json (most registries) accepts up to 10,000
        "nested 65 deep": deep(65),
        "a lone surrogate": doc(annotations={"a": "X"}).replace(b'"X"', b'"\\udc00"'),
        "duplicate keys": doc().replace(b'"schemaVersion": 2', b'"schemaVersion": 2, "schemaVersion": 2'),
        "not JSON": b"{" + doc()[1:-1],
        "manifests null, no config": json.dumps(
            {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "manifests": None}
        ).encode(),
    }


def junk_blobs() -> dict[str, bytes]:
    """Blob contents no signature, envelope, statement or SBOM parser may accept (name -> bytes)."""
    return {
        "empty": b"",
        "not JSON": b"\x00\xffnot json at all",
        "JSON null": b"null",
        "a JSON array": b"[1, 2, 3]",
        "a JSON string": b'"payload"',
        "an empty object": b"{}",
        "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
        "nested objects 5,000 deep": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        "a lone surrogate": b'{"payload": "\\ud800", "payloadType": "\\udfff"}',
        "duplicate keys": b'{"payload": "e30=", "payload": "e30="}',
        "a huge number": b'{"size": 1' + b"0" * 5_000 + b"}",
        "NaN": b'{"value": NaN}',
        "invalid UTF-8": b'{"payload": "\xc3\x28"}',
        "truncated": b'{"payload": "e30=", "signatures": [{"sig": "',
    }
