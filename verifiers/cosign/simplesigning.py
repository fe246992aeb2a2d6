"""Simple-signing signatures (the legacy `.sig` tag and cosign v2's OCI 1.1 referrers).

The signature covers the raw payload bytes, a JSON document::

    {"critical": {"identity": {"docker-reference": "..."},
                  "image": {"docker-manifest-digest": "sha256:..."},
                  "type": "cosign container image signature"},
     "optional": {...}}

Which anchor is tried (the same rule for every format):

- a configured key that verifies the signature wins (key-based result);
- otherwise, if the signature carries a certificate and the policy has identities, the keyless result;
- otherwise `UNTRUSTED_KEY` ("no configured key or identity vouches for this signature"), or
  `SIGNATURE_INVALID` when the signature's log entry names a configured key (the signature was made with a
  trusted key, over other bytes: a tampered payload).

RFC 3161 timestamps (`dev.sigstore.cosign/rfc3161timestamp`, cosign `--timestamp-server-url`): the TSA
timestamped the raw signature bytes. When present, the timestamp must verify against the trusted root's
timestamp authorities (`verifiers.cosign.timestamp`: `MALFORMED`, `SIGNATURE_INVALID` for an imprint over
other bytes or an altered token, `UNTRUSTED_CHAIN` for a TSA the root does not list), like a log entry that
is present must verify even when not required. Key-based: it is checked after the log entry and reported
(`timestamp`, `timestampAuthority`); with no trusted root at all there is nothing to check it with and it is
ignored, as log entries are. Keyless: it is a signing time (`verifiers.cosign.keyless`, step 4).

Only after the signature (and the log entry the policy requires) verified is the payload read: not JSON or
not a cosign simple-signing document is `MALFORMED`, another digest is `DIGEST_MISMATCH`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from cryptography import x509

from verifiers.cosign.anchors import untrusted_failure
from verifiers.cosign.common import LIMITS, Failure, Verified, fail, get_obj, get_str, load_json
from verifiers.cosign.keyless import verify_keyless
from verifiers.cosign.keys import PublicKey, verify_signature
from verifiers.cosign.model import Reason, SimpleSigningCandidate, TrustedKey, TrustPolicy
from verifiers.cosign.rekor import LogEntry, Signed, entry_from_cosign_bundle, verify_log_evidence
from verifiers.cosign.timestamp import verify_cosign_timestamp
from verifiers.cosign.trustroot import TrustRoot

__all__ = ["SIMPLE_SIGNING_TYPE", "parse_payload", "verify_simple_signing"]

SIMPLE_SIGNING_TYPE = "cosign container image signature"
_MAX_SIGNATURE_BYTES = 64 * 1024


def parse_payload(payload: bytes) -> tuple[str, str | None]:
    """(docker-manifest-digest, docker-reference) of a simple-signing payload; `MALFORMED` otherwise."""
    document = load_json(payload, "simple-signing payload")
    critical = get_obj(document, "critical", "simple-signing payload")
    kind = get_str(critical, "type", "simple-signing payload critical")
    if kind != SIMPLE_SIGNING_TYPE:
        fail(Reason.MALFORMED, f"simple-signing payload type is {kind!r}, not {SIMPLE_SIGNING_TYPE!r}")
    image = get_obj(critical, "image", "simple-signing payload critical")
    digest = get_str(image, "docker-manifest-digest", "simple-signing payload critical.image")
    identity = critical.get("identity")
    reference = identity.get("docker-reference") if isinstance(identity, dict) else None
    return digest, reference if isinstance(reference, str) else None


def _check_payload(payload: bytes, expected_digest: str, details: dict[str, Any]) -> None:
    digest, reference = parse_payload(payload)
    if reference is not None:
        details["dockerReference"] = reference
    if digest != expected_digest:
        fail(Reason.DIGEST_MISMATCH, f"signature is for {digest}, not {expected_digest}")


def _log_entries(candidate: SimpleSigningCandidate) -> list[LogEntry]:
    return [] if candidate.rekor_bundle is None else [entry_from_cosign_bundle(candidate.rekor_bundle)]


def _verify_with_key(
    key: TrustedKey,
    candidate: SimpleSigningCandidate,
    expected_digest: str,
    policy: TrustPolicy,
    now: datetime,
) -> Verified:
    details: dict[str, Any] = {"key": key.name}
    root = policy.trusted_root if isinstance(policy.trusted_root, TrustRoot) else None
    signed = Signed(
        signature=candidate.signature,
        public_key=key.key,
        artifact_sha256=hashlib.sha256(candidate.payload).digest(),
    )
    # Without a requirement and without a root to check it against, a log entry is not even parsed.
    entries = _log_entries(candidate) if policy.require_tlog or root is not None else []
    verified = verify_log_evidence(
        entries, signed, root=root, require=policy.require_tlog, need_time=False, now=now
    )
    if verified is not None:
        details.update(verified.details())
    if candidate.rfc3161_timestamp is not None and root is not None:
        stamp = verify_cosign_timestamp(candidate.rfc3161_timestamp, candidate.signature, root)
        details.update(stamp.details())
    _check_payload(candidate.payload, expected_digest, details)
    return Verified(anchor=key.name, message=f"signed with key {key.name}", details=details)


def verify_simple_signing(
    candidate: SimpleSigningCandidate, expected_digest: str, policy: TrustPolicy, now: datetime
) -> Verified:
    for blob, what in (
        (candidate.payload, "payload"),
        (candidate.rekor_bundle or b"", "Rekor bundle annotation"),
        (candidate.rfc3161_timestamp or b"", "RFC 3161 timestamp annotation"),
    ):
        if len(blob) > LIMITS.max_document_bytes:
            fail(Reason.MALFORMED, f"{what} is larger than {LIMITS.max_document_bytes} bytes")
    if not candidate.signature or len(candidate.signature) > _MAX_SIGNATURE_BYTES:
        fail(Reason.MALFORMED, f"signature is empty or larger than {_MAX_SIGNATURE_BYTES} bytes")

    # Key-based: the first configured key the signature verifies with.
    for key in policy.keys:
        if verify_signature(
            key.key, candidate.signature, candidate.payload, rsa_padding=key.rsa_padding, legacy_sha256=True
        ):
            return _verify_with_key(key, candidate, expected_digest, policy, now)

    if candidate.certificate is None or not policy.identities:
        bodies: list[bytes] = []
        if candidate.rekor_bundle is not None:
            try:
                bodies.append(entry_from_cosign_bundle(candidate.rekor_bundle).body)
            except Failure:
                pass
        raise untrusted_failure(policy.keys, bodies, candidate.certificate is not None)

    # Keyless.
    payload_sha256 = hashlib.sha256(candidate.payload).digest()

    def find_signature(key: PublicKey) -> bytes | None:
        ok = verify_signature(key, candidate.signature, candidate.payload, legacy_sha256=True)
        return candidate.signature if ok else None

    def signed_for(signature: bytes, leaf: x509.Certificate) -> Signed:
        return Signed(signature=signature, certificate=leaf, artifact_sha256=payload_sha256)

    outcome = verify_keyless(
        certificate_pem=candidate.certificate,
        chain_pem=candidate.chain,
        rekor_bundle=candidate.rekor_bundle,
        rfc3161_timestamp=candidate.rfc3161_timestamp,
        timestamped=candidate.signature,
        policy=policy,
        find_signature=find_signature,
        signed_for=signed_for,
        now=now,
    )
    details = dict(outcome.details)
    _check_payload(candidate.payload, expected_digest, details)
    return Verified(
        anchor=outcome.identity.name,
        message=f"signed by {details['subject']} ({details['issuer']}), identity {outcome.identity.name}",
        details=details,
    )
