"""Legacy cosign attestations: the `sha256-<hex>.att` tag's layers, each a DSSE envelope.

The layer's annotations carry what a `.sig` layer carries: the certificate and chain (keyless) and the Rekor
bundle (an `intoto` 0.0.2 or `dsse` 0.0.1 entry with its signed entry timestamp). The anchor rule and the
order of checks are those of simple signing (see `verifiers.cosign.simplesigning`); the content check is
the in-toto statement's subjects instead of the simple-signing payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography import x509

from verifiers.cosign.anchors import find_key_signature, untrusted_failure
from verifiers.cosign.common import Failure, Verified, fail
from verifiers.cosign.dsse import envelope_from_json, statement_for
from verifiers.cosign.keyless import verify_keyless
from verifiers.cosign.keys import PublicKey, verify_signature
from verifiers.cosign.model import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_RFC3161,
    Reason,
    TrustPolicy,
)
from verifiers.cosign.rekor import Signed, entry_from_cosign_bundle, verify_log_evidence
from verifiers.cosign.trustroot import TrustRoot

__all__ = ["verify_legacy_attestation"]


def _annotation(annotations: Mapping[str, str], name: str) -> bytes | None:
    value = annotations.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        fail(Reason.MALFORMED, f"annotation {name} must be a string")
    return value.encode("utf-8")


def verify_legacy_attestation(
    envelope_bytes: bytes,
    annotations: Mapping[str, str],
    expected_digest: str,
    policy: TrustPolicy,
    now: datetime,
) -> Verified:
    envelope = envelope_from_json(envelope_bytes, "attestation envelope")
    certificate = _annotation(annotations, ANNOTATION_CERTIFICATE)
    rekor_bundle = _annotation(annotations, ANNOTATION_BUNDLE)
    root = policy.trusted_root if isinstance(policy.trusted_root, TrustRoot) else None

    found = find_key_signature(envelope, policy.keys, legacy_sha256=True)
    if found is not None:
        key, signature = found
        details: dict[str, Any] = {"key": key.name}
        parse = rekor_bundle is not None and (policy.require_tlog or root is not None)
        entries = [entry_from_cosign_bundle(rekor_bundle)] if parse and rekor_bundle is not None else []
        verified = verify_log_evidence(
            entries,
            Signed(signature=signature, public_key=key.key, envelope=envelope),
            root=root,
            require=policy.require_tlog,
            need_time=False,
            now=now,
        )
        if verified is not None:
            details.update(verified.details())
        statement = statement_for(envelope, expected_digest)
        return Verified(
            anchor=key.name,
            message=f"attestation ({statement.predicate_type}) signed with key {key.name}",
            details=details,
            predicate_type=statement.predicate_type,
        )

    if certificate is None or not policy.identities:
        bodies: list[bytes] = []
        if rekor_bundle is not None:
            try:
                bodies.append(entry_from_cosign_bundle(rekor_bundle).body)
            except Failure:
                pass
        raise untrusted_failure(policy.keys, bodies, certificate is not None)

    message = envelope.pae()

    def find_signature(leaf_key: PublicKey) -> bytes | None:
        for item in envelope.signatures:
            if verify_signature(leaf_key, item.sig, message, legacy_sha256=True):
                return item.sig
        return None

    def signed_for(signature: bytes, leaf: x509.Certificate) -> Signed:
        return Signed(signature=signature, certificate=leaf, envelope=envelope)

    outcome = verify_keyless(
        certificate_pem=certificate,
        chain_pem=_annotation(annotations, ANNOTATION_CHAIN),
        rekor_bundle=rekor_bundle,
        has_rfc3161=ANNOTATION_RFC3161 in annotations,
        policy=policy,
        find_signature=find_signature,
        signed_for=signed_for,
        now=now,
    )
    statement = statement_for(envelope, expected_digest)
    details = dict(outcome.details)
    return Verified(
        anchor=outcome.identity.name,
        message=(
            f"attestation ({statement.predicate_type}) signed by {details['subject']} ({details['issuer']}), "
            f"identity {outcome.identity.name}"
        ),
        details=details,
        predicate_type=statement.predicate_type,
    )
