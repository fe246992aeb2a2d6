"""Every reason code of the notation verifier, in one place.

`Reason` is what a report (and each entry of its `details.signatures`) carries: the codes Rego matches,
listed in docs/notation.md. `EnvelopeReason` is the envelope layer's finer code, carried by
`verifiers.notation.envelope.EnvelopeError.reason`; the verifier reports an envelope it refuses as
`Reason.INTEGRITY`, with the envelope code at the start of the message (`envelope_malformed: ...`).

Members are `str`s whose value is the code, so the wire format is the code itself.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EnvelopeReason", "Reason"]


class Reason(StrEnum):
    """The notation verifier's report codes (`Report.reason`, `details.signatures[].reason`)."""

    VERIFIED = "notation_verified"
    NO_SIGNATURE = "no_signature_found"
    INTEGRITY = "integrity_failed"
    UNTRUSTED = "untrusted_signer"
    EXPIRED = "signature_expired"
    TIMESTAMP = "timestamp_invalid"
    REVOCATION = "revocation_unavailable"  # undecided: raised as `Undecided`, never a report's reason
    REVOKED = "certificate_revoked"
    NO_POLICY = "no_trust_policy"
    SKIPPED = "verification_skipped"


class EnvelopeReason(StrEnum):
    """Why the envelope layer refused an envelope (`EnvelopeError.reason`)."""

    MALFORMED = "envelope_malformed"  # not a well-formed envelope of the announced kind
    LIMIT_EXCEEDED = "limit_exceeded"  # a size or count bound of `Limits` is exceeded
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # neither application/jose+json nor application/cose
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"  # cty is not the notation payload type
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"  # alg is not PS256/384/512 or ES256/384/512
    UNSUPPORTED_SIGNING_SCHEME = "unsupported_signing_scheme"
    UNKNOWN_CRITICAL_HEADER = "unknown_critical_header"  # crit names a header this layer does not understand
    CRITICAL_HEADER_ABSENT = "critical_header_absent"  # crit names a header the protected header lacks
    HEADER_NOT_CRITICAL = "header_not_critical"  # a header the spec requires to be critical is not in crit
    CERTIFICATE_CHAIN_MISSING = "certificate_chain_missing"  # no x5c / x5chain, or an empty one
    CERTIFICATE_MALFORMED = "certificate_malformed"  # a chain entry is not a DER X.509 certificate
    UNSUPPORTED_KEY = "unsupported_key"  # leaf key is not RSA 2048/3072/4096 or P-256/384/521
    ALGORITHM_KEY_MISMATCH = "algorithm_key_mismatch"  # alg does not fit the leaf key's type or curve
    SIGNATURE_INVALID = "signature_invalid"
    PAYLOAD_MALFORMED = "payload_malformed"  # the signed payload is not a valid notation payload
