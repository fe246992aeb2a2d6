"""Simple-signing signatures (legacy `.sig` and OCI 1.1): key-based and keyless, every way they can fail."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support.private_sigstore import (
    DEFAULT_ISSUER,
    EPOCH_2024,
    PrivateKey,
    PrivateSigstore,
    hashedrekord_body,
    pem_public_key,
    simple_signing_payload,
)
from tests.unit.cosign.conftest import DIGEST, NOW, OTHER_DIGEST, SIGNER
from verifiers.cosign.core import load_public_key, verify_candidate
from verifiers.cosign.model import CandidateResult, Identity, Reason, SimpleSigningCandidate, TrustPolicy
from verifiers.cosign.trustroot import TrustRoot


def denied(result: CandidateResult, reason: str) -> str:
    assert not result.passed, result
    assert result.reason == reason, result
    assert result.message
    assert result.anchor is None
    return result.message


def key_policy(
    private: PrivateKey, root: TrustRoot | None, *, require_tlog: bool = False, **kw: Any
) -> TrustPolicy:
    return TrustPolicy(
        keys=(load_public_key(pem_public_key(private), "release", **kw),),
        trusted_root=root,
        require_tlog=require_tlog,
        now=NOW,
    )


# --- key-based ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("private", "padding"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "pkcs1v15"),
        (ec.generate_private_key(ec.SECP384R1()), "pkcs1v15"),
        (ec.generate_private_key(ec.SECP521R1()), "pkcs1v15"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "pkcs1v15"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "pss"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "pss-digest"),
        (ed25519.Ed25519PrivateKey.generate(), "pkcs1v15"),
    ],
    ids=["p256", "p384", "p521", "rsa-pkcs1v15", "rsa-pss-max-salt", "rsa-pss-digest-salt", "ed25519"],
)
@pytest.mark.parametrize("fmt", ["legacy", "oci-1.1"])
def test_key_signature_verifies(
    sigstore: PrivateSigstore, root: TrustRoot, private: PrivateKey, padding: str, fmt: str
) -> None:
    candidate = sigstore.key_signature(private, DIGEST, rsa_padding=padding, format=fmt)  # type: ignore[arg-type]
    policy = key_policy(private, root, rsa_padding="pkcs1v15" if padding == "pkcs1v15" else "pss")
    result = verify_candidate(candidate, DIGEST, policy)
    assert result.passed, result
    assert result.reason == Reason.VERIFIED
    assert result.anchor == "release"
    assert result.format == fmt
    assert result.manifest_digest == candidate.manifest_digest
    assert result.details == {"key": "release", "dockerReference": "registry.example.test/app"}
    json.dumps(result.as_details())  # JSON-compatible


def test_key_signature_with_required_log_entry(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST, with_set=True)
    result = verify_candidate(candidate, DIGEST, key_policy(signing_key, root, require_tlog=True))
    assert result.passed, result
    assert result.details["logIndex"] == 4242
    assert result.details["integratedTime"] == "2024-06-01T12:01:00Z"


def test_wrong_key_is_untrusted(sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey) -> None:
    candidate = sigstore.key_signature(ec.generate_private_key(ec.SECP256R1()), DIGEST)
    message = denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.UNTRUSTED_KEY)
    assert "release" in message


def test_rsa_key_with_the_wrong_padding_is_untrusted(sigstore: PrivateSigstore, root: TrustRoot) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    candidate = sigstore.key_signature(private, DIGEST, rsa_padding="pss")
    denied(verify_candidate(candidate, DIGEST, key_policy(private, root)), Reason.UNTRUSTED_KEY)


def test_tampered_payload(sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST)
    tampered = dataclasses.replace(
        candidate, payload=candidate.payload.replace(b"registry", b"evil-registry")
    )
    denied(verify_candidate(tampered, DIGEST, key_policy(signing_key, root)), Reason.UNTRUSTED_KEY)


def test_tampered_payload_whose_log_entry_names_the_key(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST, with_set=True)
    tampered = dataclasses.replace(candidate, payload=candidate.payload + b" ")
    message = denied(
        verify_candidate(tampered, DIGEST, key_policy(signing_key, root)), Reason.SIGNATURE_INVALID
    )
    assert "release" in message


def test_signature_copied_from_another_image(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_signature(signing_key, OTHER_DIGEST, with_set=True)
    message = denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, root, require_tlog=True)),
        Reason.DIGEST_MISMATCH,
    )
    assert OTHER_DIGEST in message and DIGEST in message


def test_unverified_signature_over_another_digest_is_not_a_digest_mismatch(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_signature(ec.generate_private_key(ec.SECP256R1()), OTHER_DIGEST)
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.UNTRUSTED_KEY)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"not json", "not valid JSON"),
        (b'{"critical": {}}', "`type` must be a string"),
        (simple_signing_payload(DIGEST, kind="atomic container signature"), "not 'cosign container image"),
        (
            b'{"critical": {"type": "cosign container image signature", "image": {}}}',
            "docker-manifest-digest",
        ),
        (
            b'{"critical": {"type": "cosign container image signature", "image": '
            b'{"docker-manifest-digest": "sha256:a", "docker-manifest-digest": "sha256:b"}}}',
            "duplicate key",
        ),
        (b'{"critical": NaN}', "NaN"),
    ],
    ids=["not-json", "no-type", "wrong-type", "no-digest", "duplicate-keys", "nan"],
)
def test_verified_signature_over_a_malformed_payload(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey, payload: bytes, needle: str
) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST, payload=payload)
    message = denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.MALFORMED)
    assert needle in message


def test_required_log_entry_missing(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST)
    denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, root, require_tlog=True)),
        Reason.TLOG_MISSING,
    )


def test_required_log_entry_without_a_trusted_root(
    sigstore: PrivateSigstore, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST, with_set=True)
    message = denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, None, require_tlog=True)),
        Reason.TLOG_INVALID,
    )
    assert "trusted root" in message


def _with_annotation(candidate: SimpleSigningCandidate, annotation: bytes) -> SimpleSigningCandidate:
    return dataclasses.replace(candidate, rekor_bundle=annotation)


def _key_body(candidate: SimpleSigningCandidate, key: PrivateKey) -> bytes:
    return hashedrekord_body(
        candidate.signature, hashlib.sha256(candidate.payload).digest(), pem_public_key(key)
    )


def test_set_signed_by_another_key(
    sigstore: PrivateSigstore, other_sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST)
    forged = sigstore.cosign_bundle_annotation(
        _key_body(candidate, signing_key), key=other_sigstore.rekor_key
    )
    message = denied(
        verify_candidate(
            _with_annotation(candidate, forged), DIGEST, key_policy(signing_key, root, require_tlog=True)
        ),
        Reason.TLOG_INVALID,
    )
    assert "signed entry timestamp does not verify" in message


def test_set_from_a_log_outside_the_trusted_root(
    sigstore: PrivateSigstore, other_sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST)
    foreign = other_sigstore.cosign_bundle_annotation(_key_body(candidate, signing_key))
    message = denied(
        verify_candidate(
            _with_annotation(candidate, foreign), DIGEST, key_policy(signing_key, root, require_tlog=True)
        ),
        Reason.TLOG_INVALID,
    )
    assert "not a transparency log of the trusted root" in message


@pytest.mark.parametrize("mismatch", ["signature", "content", "key"])
def test_set_body_not_matching_the_signature(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey, mismatch: str
) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST)
    other = sigstore.key_signature(signing_key, OTHER_DIGEST)
    signature, content, key = candidate.signature, hashlib.sha256(candidate.payload).digest(), signing_key
    if mismatch == "signature":
        signature = other.signature
    elif mismatch == "content":
        content = hashlib.sha256(other.payload).digest()
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    annotation = sigstore.cosign_bundle_annotation(hashedrekord_body(signature, content, pem_public_key(key)))
    message = denied(
        verify_candidate(
            _with_annotation(candidate, annotation), DIGEST, key_policy(signing_key, root, require_tlog=True)
        ),
        Reason.TLOG_INVALID,
    )
    assert "log entry records" in message


def test_invalid_set_fails_even_when_not_required(
    sigstore: PrivateSigstore, other_sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST)
    forged = sigstore.cosign_bundle_annotation(
        _key_body(candidate, signing_key), key=other_sigstore.rekor_key
    )
    denied(
        verify_candidate(_with_annotation(candidate, forged), DIGEST, key_policy(signing_key, root)),
        Reason.TLOG_INVALID,
    )
    # Without a trusted root and without a requirement, there is nothing to check it with.
    result = verify_candidate(_with_annotation(candidate, forged), DIGEST, key_policy(signing_key, None))
    assert result.passed, result
    assert "logIndex" not in result.details


def test_set_integrated_in_the_future(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_signature(signing_key, DIGEST)
    future = sigstore.cosign_bundle_annotation(
        _key_body(candidate, signing_key), integrated_time=NOW + timedelta(hours=1)
    )
    message = denied(
        verify_candidate(
            _with_annotation(candidate, future), DIGEST, key_policy(signing_key, root, require_tlog=True)
        ),
        Reason.TLOG_INVALID,
    )
    assert "future" in message


def test_set_outside_the_log_key_validity(sigstore: PrivateSigstore, signing_key: PrivateKey) -> None:
    root = sigstore.trust_root(log_window=(EPOCH_2024 + timedelta(days=2), None))
    candidate = sigstore.key_signature(signing_key, DIGEST, with_set=True)
    message = denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, root, require_tlog=True)),
        Reason.TLOG_INVALID,
    )
    assert "was not valid at the integrated time" in message


@pytest.mark.parametrize(
    "annotation",
    [b"not json", b"{}", b'{"Payload": {"body": "", "integratedTime": 1, "logIndex": 1, "logID": "zz"}}'],
    ids=["not-json", "empty", "bad-log-id"],
)
def test_malformed_set_annotation(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey, annotation: bytes
) -> None:
    candidate = _with_annotation(sigstore.key_signature(signing_key, DIGEST), annotation)
    denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, root, require_tlog=True)),
        Reason.TLOG_INVALID,
    )


def test_policy_without_anchors(sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey) -> None:
    policy = TrustPolicy(trusted_root=root, now=NOW)
    denied(
        verify_candidate(sigstore.key_signature(signing_key, DIGEST), DIGEST, policy), Reason.UNTRUSTED_KEY
    )
    denied(verify_candidate(sigstore.keyless_signature(DIGEST), DIGEST, policy), Reason.UNTRUSTED_KEY)


# --- keyless --------------------------------------------------------------------------------------------


def test_keyless_signature_verifies(sigstore: PrivateSigstore, keyless_policy: TrustPolicy) -> None:
    result = verify_candidate(sigstore.keyless_signature(DIGEST), DIGEST, keyless_policy)
    assert result.passed, result
    assert result.anchor == "signer"
    assert result.details["subject"] == SIGNER
    assert result.details["issuer"] == DEFAULT_ISSUER
    assert result.details["logIndex"] == 4242
    assert result.details["integratedTime"] == "2024-06-01T12:01:00Z"
    assert re.fullmatch(r"[0-9a-f]+", result.details["certificateSerial"])
    json.dumps(result.as_details())


def test_keyless_with_uri_san_and_regular_expressions(sigstore: PrivateSigstore, root: TrustRoot) -> None:
    workflow = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
    leaf = sigstore.issue(email=None, uri=workflow, issuer="https://token.actions.githubusercontent.com")
    candidate = sigstore.keyless_signature(DIGEST, leaf=leaf)
    identity = Identity(
        name="acme-release",
        subject_regexp=re.compile(
            r"https://github\.com/acme/[^/]+/\.github/workflows/release\.yml@refs/heads/main"
        ),
        issuer_regexp=re.compile(r"https://token\.actions\.githubusercontent\.com"),
    )
    policy = TrustPolicy(identities=(identity,), trusted_root=root, now=NOW)
    assert verify_candidate(candidate, DIGEST, policy).passed
    # Regular expressions must match the whole value.
    partial = dataclasses.replace(identity, subject_regexp=re.compile(r"https://github\.com/acme/"))
    denied(
        verify_candidate(candidate, DIGEST, dataclasses.replace(policy, identities=(partial,))),
        Reason.IDENTITY_MISMATCH,
    )


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "someone-else@example.test"},
        {"issuer": "https://accounts.example.test"},
        {"issuer": None, "issuer_regexp": re.compile(r"https://issuer\.example")},
        {"subject": None, "subject_regexp": re.compile(r"signer@example\.tes")},
        {"issuer": None},
        {"subject": None},
    ],
    ids=["subject", "issuer", "issuer-regexp-partial", "subject-regexp-partial", "no-issuer", "no-subject"],
)
def test_wrong_identity(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, identity: Identity, change: dict[str, Any]
) -> None:
    policy = dataclasses.replace(keyless_policy, identities=(dataclasses.replace(identity, **change),))
    message = denied(
        verify_candidate(sigstore.keyless_signature(DIGEST), DIGEST, policy), Reason.IDENTITY_MISMATCH
    )
    assert SIGNER in message


def test_any_of_several_identities(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, identity: Identity
) -> None:
    stranger = dataclasses.replace(identity, name="stranger", subject="stranger@example.test")
    policy = dataclasses.replace(keyless_policy, identities=(stranger, identity))
    assert verify_candidate(sigstore.keyless_signature(DIGEST), DIGEST, policy).anchor == "signer"


@pytest.mark.parametrize(("v1", "v2"), [(True, False), (False, True)], ids=["legacy-oid", "utf8string-oid"])
def test_issuer_from_either_fulcio_extension(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, v1: bool, v2: bool
) -> None:
    leaf = sigstore.issue(issuer_v1=v1, issuer_v2=v2)
    assert verify_candidate(sigstore.keyless_signature(DIGEST, leaf=leaf), DIGEST, keyless_policy).passed


def test_certificate_without_issuer(sigstore: PrivateSigstore, keyless_policy: TrustPolicy) -> None:
    leaf = sigstore.issue(issuer=None)
    message = denied(
        verify_candidate(sigstore.keyless_signature(DIGEST, leaf=leaf), DIGEST, keyless_policy),
        Reason.IDENTITY_MISMATCH,
    )
    assert "no OIDC issuer" in message


GITHUB = {
    "trigger": "push",
    "sha": "a" * 40,
    "repository": "acme/app",
    "ref": "refs/heads/main",
    "name": "release",
}


@pytest.mark.parametrize(
    ("field", "value", "passes"),
    [
        ("github_workflow_repository", "acme/app", True),
        ("github_workflow_ref", "refs/heads/main", True),
        ("github_workflow_trigger", "push", True),
        ("github_workflow_sha", "a" * 40, True),
        ("github_workflow_repository", "acme/other", False),
        ("github_workflow_ref", "refs/tags/v1", False),
        ("github_workflow_trigger", "pull_request", False),
        ("github_workflow_sha", "b" * 40, False),
    ],
)
def test_github_claims(
    sigstore: PrivateSigstore,
    keyless_policy: TrustPolicy,
    identity: Identity,
    field: str,
    value: str,
    passes: bool,
) -> None:
    candidate = sigstore.keyless_signature(DIGEST, leaf=sigstore.issue(github=GITHUB))
    claim: dict[str, Any] = {field: value}
    policy = dataclasses.replace(keyless_policy, identities=(dataclasses.replace(identity, **claim),))
    result = verify_candidate(candidate, DIGEST, policy)
    if passes:
        assert result.passed, result
        assert result.details["githubWorkflowRepository"] == "acme/app"
    else:
        denied(result, Reason.IDENTITY_MISMATCH)


def test_github_claim_required_but_absent(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, identity: Identity
) -> None:
    policy = dataclasses.replace(
        keyless_policy, identities=(dataclasses.replace(identity, github_workflow_repository="acme/app"),)
    )
    denied(verify_candidate(sigstore.keyless_signature(DIGEST), DIGEST, policy), Reason.IDENTITY_MISMATCH)


def test_untrusted_chain(other_sigstore: PrivateSigstore, keyless_policy: TrustPolicy) -> None:
    message = denied(
        verify_candidate(other_sigstore.keyless_signature(DIGEST), DIGEST, keyless_policy),
        Reason.UNTRUSTED_CHAIN,
    )
    assert "Fulcio CA" in message


def test_untrusted_chain_even_with_a_trusted_chain_annotation(
    sigstore: PrivateSigstore, other_sigstore: PrivateSigstore, keyless_policy: TrustPolicy
) -> None:
    candidate = other_sigstore.keyless_signature(DIGEST, chain=sigstore.chain_pem)
    denied(verify_candidate(candidate, DIGEST, keyless_policy), Reason.UNTRUSTED_CHAIN)


def test_ca_outside_its_issuing_window(sigstore: PrivateSigstore, identity: Identity) -> None:
    root = sigstore.trust_root(ca_window=(EPOCH_2024 - timedelta(days=30), EPOCH_2024 - timedelta(days=1)))
    policy = TrustPolicy(identities=(identity,), trusted_root=root, now=NOW)
    message = denied(
        verify_candidate(sigstore.keyless_signature(DIGEST), DIGEST, policy), Reason.UNTRUSTED_CHAIN
    )
    assert "was issuing" in message


@pytest.mark.parametrize(
    "issue",
    [{"code_signing": False}, {"sct": False}, {"sct_key": ec.generate_private_key(ec.SECP256R1())}],
    ids=["no-code-signing", "no-sct", "sct-by-unknown-log"],
)
def test_certificate_profile_and_sct(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, issue: dict[str, Any]
) -> None:
    candidate = sigstore.keyless_signature(DIGEST, leaf=sigstore.issue(**issue))
    denied(verify_candidate(candidate, DIGEST, keyless_policy), Reason.UNTRUSTED_CHAIN)


def test_trusted_root_without_ct_logs(sigstore: PrivateSigstore, identity: Identity) -> None:
    policy = TrustPolicy(identities=(identity,), trusted_root=sigstore.trust_root(include_ct=False), now=NOW)
    message = denied(
        verify_candidate(sigstore.keyless_signature(DIGEST), DIGEST, policy), Reason.UNTRUSTED_CHAIN
    )
    assert "SCT" in message


def test_keyless_without_trusted_root(sigstore: PrivateSigstore, identity: Identity) -> None:
    policy = TrustPolicy(identities=(identity,), now=NOW)
    denied(verify_candidate(sigstore.keyless_signature(DIGEST), DIGEST, policy), Reason.UNTRUSTED_CHAIN)


def test_keyless_tampered_payload(sigstore: PrivateSigstore, keyless_policy: TrustPolicy) -> None:
    candidate = sigstore.keyless_signature(DIGEST)
    tampered = dataclasses.replace(candidate, payload=candidate.payload + b"\n")
    denied(verify_candidate(tampered, DIGEST, keyless_policy), Reason.SIGNATURE_INVALID)


def test_keyless_signature_copied_from_another_image(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy
) -> None:
    denied(
        verify_candidate(sigstore.keyless_signature(OTHER_DIGEST), DIGEST, keyless_policy),
        Reason.DIGEST_MISMATCH,
    )


@pytest.mark.parametrize("require_tlog", [True, False])
def test_keyless_needs_a_log_entry_whatever_the_policy(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, require_tlog: bool
) -> None:
    policy = dataclasses.replace(keyless_policy, require_tlog=require_tlog)
    denied(
        verify_candidate(sigstore.keyless_signature(DIGEST, with_set=False), DIGEST, policy),
        Reason.TLOG_MISSING,
    )


def test_keyless_with_only_an_rfc3161_timestamp(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy
) -> None:
    candidate = dataclasses.replace(
        sigstore.keyless_signature(DIGEST, with_set=False),
        rfc3161_timestamp=b'{"SignedRFC3161Timestamp": "MA=="}',
    )
    message = denied(verify_candidate(candidate, DIGEST, keyless_policy), Reason.TLOG_MISSING)
    assert "RFC 3161" in message


def test_keyless_set_signed_by_another_key(
    sigstore: PrivateSigstore, other_sigstore: PrivateSigstore, keyless_policy: TrustPolicy
) -> None:
    leaf = sigstore.issue()
    candidate = sigstore.keyless_signature(DIGEST, leaf=leaf)
    body = hashedrekord_body(candidate.signature, hashlib.sha256(candidate.payload).digest(), leaf.pem)
    forged = sigstore.cosign_bundle_annotation(body, key=other_sigstore.rekor_key)
    denied(verify_candidate(_with_annotation(candidate, forged), DIGEST, keyless_policy), Reason.TLOG_INVALID)


def test_keyless_set_body_names_another_certificate(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy
) -> None:
    candidate = sigstore.keyless_signature(DIGEST)
    body = hashedrekord_body(
        candidate.signature, hashlib.sha256(candidate.payload).digest(), sigstore.issue().pem
    )
    annotation = sigstore.cosign_bundle_annotation(body)
    message = denied(
        verify_candidate(_with_annotation(candidate, annotation), DIGEST, keyless_policy), Reason.TLOG_INVALID
    )
    assert "different signer" in message


@pytest.mark.parametrize(
    "logged_at",
    [EPOCH_2024 + timedelta(minutes=11), EPOCH_2024 - timedelta(minutes=1)],
    ids=["after", "before"],
)
def test_certificate_expired_at_the_log_entry(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, logged_at: Any
) -> None:
    candidate = sigstore.keyless_signature(DIGEST, integrated_time=logged_at)
    message = denied(verify_candidate(candidate, DIGEST, keyless_policy), Reason.CERTIFICATE_EXPIRED)
    assert "logged at" in message


def test_keyless_signature_with_only_keys_configured(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    message = denied(
        verify_candidate(sigstore.keyless_signature(DIGEST), DIGEST, key_policy(signing_key, root)),
        Reason.UNTRUSTED_KEY,
    )
    assert "no configured key" in message


def test_key_wins_when_both_anchors_are_configured(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, signing_key: PrivateKey
) -> None:
    policy = dataclasses.replace(
        keyless_policy, keys=(load_public_key(pem_public_key(signing_key), "release"),), require_tlog=False
    )
    assert verify_candidate(sigstore.key_signature(signing_key, DIGEST), DIGEST, policy).anchor == "release"
    assert verify_candidate(sigstore.keyless_signature(DIGEST), DIGEST, policy).anchor == "signer"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"certificate": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
            "PEM certificate",
        ),
        ({"certificate": b"not pem"}, "PEM certificate"),
        ({"chain": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, "chain"),
    ],
    ids=["bad-der", "not-pem", "bad-chain"],
)
def test_malformed_certificates(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, change: dict[str, Any], needle: str
) -> None:
    candidate = dataclasses.replace(sigstore.keyless_signature(DIGEST), **change)
    assert needle in denied(verify_candidate(candidate, DIGEST, keyless_policy), Reason.MALFORMED)


def test_chain_length_is_bounded(sigstore: PrivateSigstore, keyless_policy: TrustPolicy) -> None:
    candidate = dataclasses.replace(sigstore.keyless_signature(DIGEST), chain=sigstore.chain_pem * 6)
    assert "more than 10" in denied(verify_candidate(candidate, DIGEST, keyless_policy), Reason.MALFORMED)


def test_two_certificates_in_the_certificate_annotation(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy
) -> None:
    candidate = sigstore.keyless_signature(DIGEST)
    doubled = dataclasses.replace(candidate, certificate=candidate.certificate + candidate.certificate)  # type: ignore[operator]
    denied(verify_candidate(doubled, DIGEST, keyless_policy), Reason.MALFORMED)


def test_oversized_payload(sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey) -> None:
    payload = simple_signing_payload(DIGEST, optional={"pad": "x" * (4 * 1024 * 1024)})
    candidate = sigstore.key_signature(signing_key, DIGEST, payload=payload)
    assert "larger than" in denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.MALFORMED
    )


def test_empty_signature(sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey) -> None:
    candidate = dataclasses.replace(sigstore.key_signature(signing_key, DIGEST), signature=b"")
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.MALFORMED)


def test_expected_digest_is_validated(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    with pytest.raises(ValueError, match="expected_digest"):
        verify_candidate(
            sigstore.key_signature(signing_key, DIGEST), DIGEST.upper(), key_policy(signing_key, root)
        )


def test_wrong_format_for_the_candidate_type(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = dataclasses.replace(sigstore.key_signature(signing_key, DIGEST), format="bundle")
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.MALFORMED)


def test_certificate_with_a_duplicate_extension(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy
) -> None:
    leaf = sigstore.issue(github={"trigger": "push", "ref": "main"})
    der = leaf.certificate.public_bytes(serialization.Encoding.DER)
    # Rename the workflow-ref extension (1.3.6.1.4.1.57264.1.6) into a second workflow-trigger one (.1.2).
    ref_oid, trigger_oid = (
        bytes.fromhex("060a2b0601040183bf300106"),
        bytes.fromhex("060a2b0601040183bf300102"),
    )
    forged = x509.load_der_x509_certificate(der.replace(ref_oid, trigger_oid))
    candidate = dataclasses.replace(
        sigstore.keyless_signature(DIGEST, leaf=leaf),
        certificate=forged.public_bytes(serialization.Encoding.PEM),
    )
    assert "duplicate extension" in denied(
        verify_candidate(candidate, DIGEST, keyless_policy), Reason.UNTRUSTED_CHAIN
    )


def test_chain_must_be_valid_at_the_signing_time(identity: Identity) -> None:
    # The CAs expire five minutes after the leaf is issued; the log records the signature after that, while
    # the leaf itself is still valid. The path is sound at issuance, but not at the signing time.
    short_lived = PrivateSigstore(name="short-lived-ca", ca_not_after=EPOCH_2024 + timedelta(minutes=5))
    policy = TrustPolicy(identities=(identity,), trusted_root=short_lived.trust_root(), now=NOW)
    logged_in_time = short_lived.keyless_signature(DIGEST, integrated_time=EPOCH_2024 + timedelta(minutes=1))
    assert verify_candidate(logged_in_time, DIGEST, policy).passed
    logged_late = short_lived.keyless_signature(DIGEST, integrated_time=EPOCH_2024 + timedelta(minutes=6))
    message = denied(verify_candidate(logged_late, DIGEST, policy), Reason.UNTRUSTED_CHAIN)
    assert "was not valid at" in message
