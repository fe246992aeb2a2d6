"""The notation payload: ``{"targetArtifact": <OCI descriptor>}`` as strict JSON."""

from __future__ import annotations

import re
from types import MappingProxyType

from verifiers.notation._common import LIMITS, EnvelopeReason, fail, load_json
from verifiers.notation.model import Descriptor, Payload

__all__ = ["parse_payload"]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128}", re.ASCII)
# RFC 6838 type/subtype (restricted-name), optionally with +suffix; parameters are not allowed.
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}", re.ASCII
)
_MAX_SIZE = 2**63 - 1


def parse_payload(raw: bytes) -> Payload:
    """Parse the signed payload: `payload_malformed` unless a notation payload with a sound descriptor."""
    if len(raw) > LIMITS.max_payload_bytes:
        fail(
            EnvelopeReason.LIMIT_EXCEEDED,
            f"payload is {len(raw)} bytes, more than {LIMITS.max_payload_bytes}",
        )
    document = load_json(raw, "payload", reason=EnvelopeReason.PAYLOAD_MALFORMED)
    if not isinstance(document, dict):
        fail(EnvelopeReason.PAYLOAD_MALFORMED, "payload must be a JSON object")
    target = document.get("targetArtifact")
    if not isinstance(target, dict):
        fail(EnvelopeReason.PAYLOAD_MALFORMED, "payload: `targetArtifact` must be a JSON object")
    media_type = target.get("mediaType")
    if not isinstance(media_type, str) or not _MEDIA_TYPE.fullmatch(media_type):
        fail(EnvelopeReason.PAYLOAD_MALFORMED, "targetArtifact: `mediaType` must be a media type")
    digest = target.get("digest")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        fail(
            EnvelopeReason.PAYLOAD_MALFORMED,
            "targetArtifact: `digest` must be sha256/sha384/sha512 in lower-case hex",
        )
    size = target.get("size")
    if type(size) is not int or not 0 <= size <= _MAX_SIZE:
        fail(EnvelopeReason.PAYLOAD_MALFORMED, "targetArtifact: `size` must be a non-negative integer")
    annotations = target.get("annotations", {})
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        fail(EnvelopeReason.PAYLOAD_MALFORMED, "targetArtifact: `annotations` must map strings to strings")
    descriptor = Descriptor(
        media_type=media_type, digest=digest, size=size, annotations=MappingProxyType(dict(annotations))
    )
    return Payload(target=descriptor, raw=raw)
