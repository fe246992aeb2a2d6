"""Notary Project signature envelopes (JWS and COSE_Sign1): parse, check and verify, without I/O.

`parse_and_verify(envelope, media_type)` returns a `VerifiedEnvelope` or raises `EnvelopeError` (a
`ValueError` with a stable `reason`, an `EnvelopeReason` of `verifiers.notation.reasons`). Passing it
means exactly this:

* the envelope is well-formed and within `Limits` (4 MiB envelope, 64 KiB payload, 10 certificates);
* its protected header follows the Notary Project signature specification: a supported `alg`, the notation
  payload content type, a known signing scheme with its signing time, and a `crit` list that names every
  header the spec requires to be critical, names only headers this layer understands, and names only present
  headers;
* the signature verifies with the public key of the *leaf* certificate in x5c / x5chain, under an algorithm
  bound to that key (PS* with RSA >= 2048 bits, ES256/384/512 with P-256/384/521; PSS salt = digest length);
* the payload is a notation payload whose `targetArtifact` is a well-formed descriptor.

It does NOT mean the signature is trusted. Nothing here looks at the chain beyond parsing it: issuers,
validity periods, key usage, trust stores, trust policy and the trusted identities, expiry (exposed, see
`is_expired`), the RFC 3161 timestamp (exposed raw), revocation, and whether the target is the artifact being
verified are all the caller's job.
"""

from __future__ import annotations

from datetime import datetime

from verifiers.notation._common import LIMITS, EnvelopeError, EnvelopeReason, Limits, fail
from verifiers.notation._cose import parse_cose
from verifiers.notation._headers import finish
from verifiers.notation._jws import parse_jws
from verifiers.notation.model import (
    NOTARY_PAYLOAD_MEDIA_TYPE,
    SIGNING_SCHEME_X509,
    SIGNING_SCHEME_X509_SIGNING_AUTHORITY,
    Descriptor,
    Payload,
    SignerInfo,
    VerifiedEnvelope,
)

__all__ = [
    "COSE_MEDIA_TYPE",
    "JWS_MEDIA_TYPE",
    "LIMITS",
    "NOTARY_PAYLOAD_MEDIA_TYPE",
    "SIGNING_SCHEME_X509",
    "SIGNING_SCHEME_X509_SIGNING_AUTHORITY",
    "Descriptor",
    "EnvelopeError",
    "EnvelopeReason",
    "Limits",
    "Payload",
    "SignerInfo",
    "VerifiedEnvelope",
    "is_expired",
    "parse_and_verify",
]

JWS_MEDIA_TYPE = "application/jose+json"
COSE_MEDIA_TYPE = "application/cose"


def parse_and_verify(
    envelope: bytes, media_type: str, *, understood_critical_headers: frozenset[str] = frozenset()
) -> VerifiedEnvelope:
    """Parse `envelope` (of `media_type`, the signature manifest's artifact/layer type) and verify it.

    `understood_critical_headers` names extended attributes the caller will process itself (for instance on
    behalf of a plugin); any other unknown name in `crit` is `unknown_critical_header`. Raises `EnvelopeError`
    and nothing else.
    """
    if not isinstance(envelope, bytes | bytearray | memoryview):
        fail(EnvelopeReason.MALFORMED, "envelope must be bytes")
    data = bytes(envelope)
    if len(data) > LIMITS.max_envelope_bytes:
        fail(
            EnvelopeReason.LIMIT_EXCEEDED,
            f"envelope is {len(data)} bytes, more than {LIMITS.max_envelope_bytes}",
        )
    if media_type == JWS_MEDIA_TYPE:
        raw = parse_jws(data)
    elif media_type == COSE_MEDIA_TYPE:
        raw = parse_cose(data)
    else:
        fail(EnvelopeReason.UNSUPPORTED_MEDIA_TYPE, f"envelope media type {media_type!r} is not supported")
    return finish(raw, frozenset(understood_critical_headers))


def is_expired(signer: SignerInfo, now: datetime) -> bool:
    """Whether the signature's own `io.cncf.notary.expiry` has passed at `now` (timezone-aware).

    A signature without an expiry never expires. What an expired signature means (fail or log) is the trust
    policy's verification level's decision, not this layer's.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be timezone-aware")
    return signer.expiry is not None and now > signer.expiry
