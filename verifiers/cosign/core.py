"""The cosign verification core: bytes and policy in, a `CandidateResult` out, no I/O.

Example::

    from verifiers.cosign.core import load_public_key, public_good_trusted_root, verify_candidate
    from verifiers.cosign.model import Identity, TrustPolicy

    policy = TrustPolicy(
        keys=(load_public_key(pem, "release-key"),),
        identities=(Identity(name="ci", subject="ci@example.com", issuer="https://accounts.google.com"),),
        trusted_root=public_good_trusted_root(),
    )
    result = verify_candidate(candidate, "sha256:<hex>", policy)  # never raises for bad signatures

`verify_candidate` fails closed: `passed` is True only when every check of the candidate's format passed.
Each failure carries one `Reason` code (the first check that failed, in the order each format documents):

- `verifiers.cosign.simplesigning`: legacy `.sig` and OCI 1.1 simple-signing signatures;
- `verifiers.cosign.attestation`: legacy `.att` DSSE attestations;
- `verifiers.cosign.bundle`: Sigstore bundles (certificate bundles through sigstore-python, key bundles
  here); `verify_bundle` is that layer on its own, usable on bundles over files;
- `verifiers.cosign.keyless`, `verifiers.cosign.rekor`: certificates and identities, log entries.

Malformed input of any kind is a `MALFORMED` result, not an exception; only a malformed `expected_digest`
(the caller's own value) raises ValueError.

Reasons, in every format:

- `UNTRUSTED_KEY`: no configured key verifies the signature, or the policy has no anchor of the kind the
  signature needs (a keyless signature and no identities, a key signature and no keys);
- `SIGNATURE_INVALID`: the certificate's key does not verify the signature, or the signature's own log
  entry names a configured key that does not verify it (content changed after signing), or an RFC 3161
  timestamp's imprint or CMS signature does not verify;
- `UNTRUSTED_CHAIN`: the certificate does not chain to a Fulcio CA of the trusted root that was issuing at
  the time, lacks codeSigning/digitalSignature, has no SCT from a trusted CT log; or there is no trusted root;
  or an RFC 3161 timestamp does not chain to a timestamp authority of the trusted root;
- `IDENTITY_MISMATCH`: the certificate matches none of the identities (SAN, OIDC issuer, GitHub claims);
- `TLOG_MISSING`: no log entry where one is required (the default); keyless without any signing time (no
  log entry and no verified RFC 3161 timestamp) is always missing one;
- `TLOG_INVALID`: a log entry that is present does not verify (signed entry timestamp, inclusion proof,
  checkpoint, log not in the trusted root, log key not valid then) or does not record this signature;
- `CERTIFICATE_EXPIRED`: the certificate was not valid at every verified signing time (the log's
  integration time, an RFC 3161 timestamp's genTime);
- `MALFORMED`: unparseable or oversized material, or a verified signature over something that is not a
  cosign payload / in-toto statement;
- `DIGEST_MISMATCH`: a signature that verified in every other respect vouches for another digest.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from verifiers.cosign.attestation import verify_legacy_attestation
from verifiers.cosign.bundle import verify_bundle
from verifiers.cosign.common import Failure, Verified, fail
from verifiers.cosign.keys import load_public_key
from verifiers.cosign.model import (
    BundleCandidate,
    Candidate,
    CandidateResult,
    Reason,
    SimpleSigningCandidate,
    TrustPolicy,
)
from verifiers.cosign.simplesigning import verify_simple_signing
from verifiers.cosign.trustroot import (
    TrustRoot,
    load_trusted_root,
    public_good_trusted_root,
    staging_trusted_root,
)

__all__ = [
    "TrustRoot",
    "load_public_key",
    "load_trusted_root",
    "public_good_trusted_root",
    "staging_trusted_root",
    "verify_bundle",
    "verify_candidate",
]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")


def _verify(candidate: Candidate, expected_digest: str, policy: TrustPolicy, now: datetime) -> Verified:
    if isinstance(candidate, SimpleSigningCandidate):
        if candidate.format not in ("legacy", "oci-1.1"):
            fail(Reason.MALFORMED, f"a simple-signing candidate cannot have format {candidate.format!r}")
        return verify_simple_signing(candidate, expected_digest, policy, now)
    if isinstance(candidate, BundleCandidate):
        if candidate.format == "bundle":
            return verify_bundle(candidate.bundle, expected_digest, policy, now)
        if candidate.format == "legacy-att":
            return verify_legacy_attestation(
                candidate.bundle, candidate.annotations, expected_digest, policy, now
            )
        fail(Reason.MALFORMED, f"a bundle candidate cannot have format {candidate.format!r}")
    raise TypeError(f"not a cosign candidate: {type(candidate).__name__}")


def verify_candidate(candidate: Candidate, expected_digest: str, policy: TrustPolicy) -> CandidateResult:
    """Decide one signature or attestation for the image `expected_digest` (`sha256:<hex>`)."""
    if not _DIGEST.fullmatch(expected_digest):
        raise ValueError(f"expected_digest must be sha256:<64 hex> (lowercase), not {expected_digest!r}")
    now = policy.now or datetime.now(UTC)
    try:
        verified = _verify(candidate, expected_digest, policy, now)
    except Failure as failure:
        return CandidateResult(
            passed=False,
            reason=failure.reason,
            message=failure.message,
            format=candidate.format,
            manifest_digest=candidate.manifest_digest,
        )
    except (
        ValueError,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
        UnsupportedAlgorithm,
    ) as exc:
        # cryptography parses certificates lazily and reports hostile DER when a field is first read.
        return CandidateResult(
            passed=False,
            reason=Reason.MALFORMED,
            message=f"malformed signature material: {exc}",
            format=candidate.format,
            manifest_digest=candidate.manifest_digest,
        )
    return CandidateResult(
        passed=True,
        reason=Reason.VERIFIED,
        message=verified.message,
        format=candidate.format,
        manifest_digest=candidate.manifest_digest,
        anchor=verified.anchor,
        predicate_type=verified.predicate_type,
        details=verified.details,
    )
