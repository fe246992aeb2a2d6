"""The cosign verifier's data model: what discovery hands the I/O-free core, and what the core returns.

Discovery (async, registry reads) turns an image digest into `Candidate`s: every cosign signature or
attestation it found, with the bytes already fetched and checked against their digests. The core
(`verifiers.cosign.core.verify_candidate`) decides each candidate against a `TrustPolicy` with no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "ARTIFACT_TYPE_BUNDLE",
    "ARTIFACT_TYPE_COSIGN_SIG",
    "ATTESTATION_FORMATS",
    "REASON_PRIORITY",
    "BundleCandidate",
    "Candidate",
    "CandidateResult",
    "Format",
    "Identity",
    "Reason",
    "SimpleSigningCandidate",
    "TrustPolicy",
    "TrustedKey",
]

ARTIFACT_TYPE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
ARTIFACT_TYPE_COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
ARTIFACT_TYPE_COSIGN_ATT = "application/vnd.dev.cosign.artifact.att.v1+json"
SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
PREDICATE_TYPE_SIGN = "https://sigstore.dev/cosign/sign/v1"

ANNOTATION_SIGNATURE = "dev.cosignproject.cosign/signature"
ANNOTATION_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANNOTATION_CHAIN = "dev.sigstore.cosign/chain"
ANNOTATION_BUNDLE = "dev.sigstore.cosign/bundle"
ANNOTATION_RFC3161 = "dev.sigstore.cosign/rfc3161timestamp"

# Where a candidate came from:
#   bundle      Sigstore bundle v0.3 referrer (cosign v3 default; signatures and attestations)
#   oci-1.1     cosign v2 `--registry-referrers-mode=oci-1-1` referrer (simple signing layers)
#   legacy      the `sha256-<hex>.sig` tag (simple signing layers with annotations)
#   legacy-att  the `sha256-<hex>.att` tag (DSSE envelopes with in-toto statements)
Format = Literal["bundle", "oci-1.1", "legacy", "legacy-att"]
ATTESTATION_FORMATS: frozenset[str] = frozenset({"legacy-att"})


class Reason(StrEnum):
    """Stable reason codes (the `reason` field Rego matches). Undecided cases raise `Undecided`.

    Members are `str`s (the value is the code), so reports carry them unchanged on the wire.
    """

    VERIFIED = "cosign_verified"
    NO_SIGNATURE = "no_signature_found"
    SIGNATURE_INVALID = "signature_invalid"
    DIGEST_MISMATCH = "signed_digest_mismatch"
    UNTRUSTED_KEY = "untrusted_key"
    IDENTITY_MISMATCH = "identity_mismatch"
    UNTRUSTED_CHAIN = "untrusted_chain"
    TLOG_MISSING = "tlog_missing"
    TLOG_INVALID = "tlog_invalid"
    CERTIFICATE_EXPIRED = "certificate_expired"
    MALFORMED = "signature_malformed"
    THRESHOLD_NOT_MET = "threshold_not_met"
    ATTESTATION_MISSING = "attestation_missing"  # a predicate type the `attestations` option requires


# When candidates fail for different reasons, the report names the most telling one: a signature that
# verified cryptographically but names the wrong digest says more than an unknown key.
REASON_PRIORITY: tuple[Reason, ...] = (
    Reason.DIGEST_MISMATCH,
    Reason.IDENTITY_MISMATCH,
    Reason.CERTIFICATE_EXPIRED,
    Reason.TLOG_INVALID,
    Reason.TLOG_MISSING,
    Reason.UNTRUSTED_CHAIN,
    Reason.SIGNATURE_INVALID,
    Reason.UNTRUSTED_KEY,
    Reason.MALFORMED,
)


@dataclass(frozen=True, slots=True)
class SimpleSigningCandidate:
    """One simple-signing layer (legacy `.sig` tag or cosign v2 OCI 1.1 referrer)."""

    format: Format
    manifest_digest: str  # the signature manifest's digest (for reports)
    payload: bytes  # the simple-signing JSON payload (the layer blob), digest-checked
    signature: bytes  # decoded from the base64 `dev.cosignproject.cosign/signature` annotation
    certificate: bytes | None = None  # PEM, keyless
    chain: bytes | None = None  # PEM, intermediates then root
    rekor_bundle: bytes | None = None  # JSON of the `dev.sigstore.cosign/bundle` annotation (SET)
    rfc3161_timestamp: bytes | None = None  # JSON of the `dev.sigstore.cosign/rfc3161timestamp` annotation


@dataclass(frozen=True, slots=True)
class BundleCandidate:
    """A Sigstore bundle (v0.3 referrer) or a legacy `.att` DSSE envelope."""

    format: Format
    manifest_digest: str
    bundle: bytes  # bundle JSON (format "bundle") or DSSE envelope JSON (format "legacy-att")
    annotations: Mapping[str, str] = field(default_factory=dict)


Candidate = SimpleSigningCandidate | BundleCandidate


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key signatures may be made with. `key` is a cryptography public key object."""

    name: str
    key: Any
    rsa_padding: Literal["pkcs1v15", "pss"] = "pkcs1v15"


@dataclass(frozen=True, slots=True)
class Identity:
    """A keyless identity: certificate SAN and OIDC issuer, exact or regular expression (full match)."""

    name: str
    issuer: str | None = None
    issuer_regexp: re.Pattern[str] | None = None
    subject: str | None = None
    subject_regexp: re.Pattern[str] | None = None
    # Optional GitHub workflow claims (Fulcio extensions), exact match each when set.
    github_workflow_repository: str | None = None
    github_workflow_ref: str | None = None
    github_workflow_trigger: str | None = None
    github_workflow_sha: str | None = None


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    keys: tuple[TrustedKey, ...] = ()
    identities: tuple[Identity, ...] = ()
    # Parsed Sigstore trusted root (Fulcio CAs, Rekor keys, TSA certs); opaque to discovery.
    trusted_root: Any = None
    require_tlog: bool = True
    now: datetime | None = None  # tests pin "now"; None means the current time


@dataclass(frozen=True, slots=True)
class CandidateResult:
    """One candidate's outcome. `anchor` names the key or identity that verified it (for thresholds)."""

    passed: bool
    reason: Reason
    message: str
    format: str
    manifest_digest: str
    anchor: str | None = None
    predicate_type: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_details(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "signature": self.manifest_digest,
            "passed": self.passed,
            "reason": self.reason,
            "message": self.message,
        }
        if self.anchor is not None:
            out["matched"] = self.anchor
        if self.predicate_type is not None:
            out["predicateType"] = self.predicate_type
        out.update(self.details)
        return out
