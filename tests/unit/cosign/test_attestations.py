"""Legacy `.att` attestations: DSSE envelopes with cosign's annotations (certificate, chain, Rekor bundle)."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.private_sigstore import (
    IN_TOTO_TYPE,
    PrivateKey,
    PrivateSigstore,
    dsse_envelope,
    dsse_pae,
    intoto_body,
    pem_public_key,
    sign,
    statement,
)
from tests.unit.cosign.conftest import DIGEST, NOW, OTHER_DIGEST
from verifiers.cosign.core import load_public_key, verify_candidate
from verifiers.cosign.model import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_RFC3161,
    BundleCandidate,
    CandidateResult,
    Identity,
    Reason,
    TrustPolicy,
)
from verifiers.cosign.trustroot import TrustRoot

PROVENANCE = "https://slsa.dev/provenance/v1"


def denied(result: CandidateResult, reason: str) -> str:
    assert not result.passed, result
    assert result.reason == reason, result
    return result.message


def key_policy(private: PrivateKey, root: TrustRoot | None, *, require_tlog: bool = True) -> TrustPolicy:
    return TrustPolicy(
        keys=(load_public_key(pem_public_key(private), "release"),),
        trusted_root=root,
        require_tlog=require_tlog,
        now=NOW,
    )


def annotated(candidate: BundleCandidate, **changes: str | None) -> BundleCandidate:
    annotations: dict[str, str] = dict(candidate.annotations)
    for name, value in changes.items():
        key = {
            "bundle": ANNOTATION_BUNDLE,
            "certificate": ANNOTATION_CERTIFICATE,
            "rfc3161": ANNOTATION_RFC3161,
        }[name]
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    return dataclasses.replace(candidate, annotations=annotations)


@pytest.mark.parametrize("entry_kind", ["intoto", "dsse"])
def test_key_attestation_verifies(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey, entry_kind: Any
) -> None:
    candidate = sigstore.legacy_attestation(DIGEST, key=signing_key, entry_kind=entry_kind)
    result = verify_candidate(candidate, DIGEST, key_policy(signing_key, root))
    assert result.passed, result
    assert result.format == "legacy-att"
    assert result.predicate_type == PROVENANCE
    assert result.details == {"key": "release", "logIndex": 4242, "integratedTime": "2024-06-01T12:01:00Z"}


@pytest.mark.parametrize("entry_kind", ["intoto", "dsse"])
def test_keyless_attestation_verifies(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, entry_kind: Any
) -> None:
    candidate = sigstore.legacy_attestation(DIGEST, leaf=sigstore.issue(), entry_kind=entry_kind)
    result = verify_candidate(candidate, DIGEST, keyless_policy)
    assert result.passed, result
    assert result.anchor == "signer"
    assert result.predicate_type == PROVENANCE


def test_attestation_for_another_image(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.legacy_attestation(OTHER_DIGEST, key=signing_key)
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.DIGEST_MISMATCH)


def test_attestation_wrong_key(sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey) -> None:
    candidate = sigstore.legacy_attestation(DIGEST, key=ec.generate_private_key(ec.SECP256R1()))
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.UNTRUSTED_KEY)


def test_attestation_tampered_payload(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.legacy_attestation(OTHER_DIGEST, key=signing_key)
    envelope = json.loads(candidate.bundle)
    envelope["payload"] = base64.b64encode(statement(DIGEST, PROVENANCE)).decode()
    tampered = dataclasses.replace(candidate, bundle=json.dumps(envelope).encode())
    denied(verify_candidate(tampered, DIGEST, key_policy(signing_key, root)), Reason.SIGNATURE_INVALID)


def test_attestation_log_entry(sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey) -> None:
    candidate = sigstore.legacy_attestation(DIGEST, key=signing_key, entry_kind="none")
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.TLOG_MISSING)
    assert verify_candidate(candidate, DIGEST, key_policy(signing_key, root, require_tlog=False)).passed
    # An intoto entry for another payload, properly logged.
    other_payload = statement(OTHER_DIGEST, PROVENANCE)
    signature = json.loads(candidate.bundle)["signatures"][0]["sig"]
    body = intoto_body(other_payload, b"{}", base64.b64decode(signature), pem_public_key(signing_key))
    wrong = annotated(candidate, bundle=sigstore.cosign_bundle_annotation(body).decode())
    assert "different DSSE payload" in denied(
        verify_candidate(wrong, DIGEST, key_policy(signing_key, root)), Reason.TLOG_INVALID
    )


def test_keyless_attestation_failures(
    sigstore: PrivateSigstore,
    other_sigstore: PrivateSigstore,
    keyless_policy: TrustPolicy,
    identity: Identity,
) -> None:
    candidate = sigstore.legacy_attestation(DIGEST, leaf=sigstore.issue())
    stranger = dataclasses.replace(identity, subject="stranger@example.test")
    denied(
        verify_candidate(candidate, DIGEST, dataclasses.replace(keyless_policy, identities=(stranger,))),
        Reason.IDENTITY_MISMATCH,
    )
    denied(verify_candidate(annotated(candidate, bundle=None), DIGEST, keyless_policy), Reason.TLOG_MISSING)
    timestamp_only = annotated(candidate, bundle=None, rfc3161='{"SignedRFC3161Timestamp": "MA=="}')
    assert "RFC 3161" in denied(verify_candidate(timestamp_only, DIGEST, keyless_policy), Reason.TLOG_MISSING)
    foreign = other_sigstore.legacy_attestation(DIGEST, leaf=other_sigstore.issue())
    denied(verify_candidate(foreign, DIGEST, keyless_policy), Reason.UNTRUSTED_CHAIN)
    denied(
        verify_candidate(
            sigstore.legacy_attestation(OTHER_DIGEST, leaf=sigstore.issue()), DIGEST, keyless_policy
        ),
        Reason.DIGEST_MISMATCH,
    )
    swapped = annotated(candidate, certificate=sigstore.issue().pem.decode())
    denied(verify_candidate(swapped, DIGEST, keyless_policy), Reason.SIGNATURE_INVALID)


@pytest.mark.parametrize(
    ("bundle", "needle"),
    [
        (b"not json", "not valid JSON"),
        (b"{}", "payloadType"),
        (json.dumps(dsse_envelope(b"x", [])).encode(), "no signatures"),
    ],
    ids=["not-json", "empty", "unsigned"],
)
def test_malformed_envelopes(root: TrustRoot, signing_key: PrivateKey, bundle: bytes, needle: str) -> None:
    candidate = BundleCandidate(format="legacy-att", manifest_digest="m", bundle=bundle)
    assert needle in denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.MALFORMED
    )


def test_multi_signature_envelope_uses_the_trusted_one(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    payload = statement(DIGEST, PROVENANCE)
    pae = dsse_pae(IN_TOTO_TYPE, payload)
    stranger = sign(ec.generate_private_key(ec.SECP256R1()), pae)
    envelope = dsse_envelope(payload, [stranger, sign(signing_key, pae)])
    candidate = BundleCandidate(
        format="legacy-att", manifest_digest="m", bundle=json.dumps(envelope).encode()
    )
    assert verify_candidate(candidate, DIGEST, key_policy(signing_key, root, require_tlog=False)).passed


def test_unknown_bundle_format(root: TrustRoot, signing_key: PrivateKey) -> None:
    candidate = BundleCandidate(format="oci-1.1", manifest_digest="m", bundle=b"{}")
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.MALFORMED)
