"""Sigstore bundles: key bundles (verified here), certificate bundles (sigstore-python), recorded bundles."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support.private_sigstore import (
    EPOCH_2024,
    IN_TOTO_TYPE,
    PrivateKey,
    PrivateSigstore,
    dsse_body,
    dsse_envelope,
    dsse_pae,
    pem_public_key,
    sign,
    statement,
)
from tests.unit.cosign.conftest import DIGEST, NOW, OTHER_DIGEST
from verifiers.cosign.common import Failure
from verifiers.cosign.core import (
    load_public_key,
    load_trusted_root,
    staging_trusted_root,
    verify_bundle,
    verify_candidate,
)
from verifiers.cosign.model import (
    ARTIFACT_TYPE_BUNDLE,
    PREDICATE_TYPE_SIGN,
    BundleCandidate,
    CandidateResult,
    Identity,
    Reason,
    TrustPolicy,
)
from verifiers.cosign.trustroot import TrustRoot

ATTESTATION = "https://slsa.dev/provenance/v1"


def denied(result: CandidateResult, reason: str) -> str:
    assert not result.passed, result
    assert result.reason == reason, result
    assert result.message
    return result.message


def key_policy(
    private: PrivateKey, root: TrustRoot | None, *, require_tlog: bool = True, **kw: Any
) -> TrustPolicy:
    return TrustPolicy(
        keys=(load_public_key(pem_public_key(private), "release", **kw),),
        trusted_root=root,
        require_tlog=require_tlog,
        now=NOW,
    )


def edit(candidate: BundleCandidate, change: Callable[[dict[str, Any]], None]) -> BundleCandidate:
    document = json.loads(candidate.bundle)
    change(document)
    return dataclasses.replace(candidate, bundle=json.dumps(document).encode())


def entry(document: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = document["verificationMaterial"]["tlogEntries"][0]
    return value


# --- key bundles ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rekor", "promise", "proof", "has_time"),
    [
        ("v1", True, True, True),
        ("v1", True, False, True),
        ("v1", False, True, False),
        ("v2", False, True, False),
    ],
    ids=["v1-promise-and-proof", "v1-promise", "v1-proof", "v2-proof"],
)
def test_key_bundle_verifies(
    sigstore: PrivateSigstore,
    root: TrustRoot,
    signing_key: PrivateKey,
    rekor: Any,
    promise: bool,
    proof: bool,
    has_time: bool,
) -> None:
    candidate = sigstore.key_bundle_dsse(signing_key, DIGEST, rekor=rekor, promise=promise, proof=proof)
    result = verify_candidate(candidate, DIGEST, key_policy(signing_key, root))
    assert result.passed, result
    assert result.anchor == "release"
    assert result.predicate_type == PREDICATE_TYPE_SIGN
    # Without an inclusion promise, the authenticated index is the proof's (the leaf's place in the tree).
    assert result.details["logIndex"] == (4242 if promise else 6)
    assert ("integratedTime" in result.details) is has_time


@pytest.mark.parametrize(
    ("private", "padding"),
    [
        (ec.generate_private_key(ec.SECP384R1()), "pkcs1v15"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "pkcs1v15"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "pss"),
        (ed25519.Ed25519PrivateKey.generate(), "pkcs1v15"),
    ],
    ids=["p384", "rsa-pkcs1v15", "rsa-pss", "ed25519"],
)
def test_key_bundle_key_types(
    sigstore: PrivateSigstore, root: TrustRoot, private: PrivateKey, padding: str
) -> None:
    candidate = sigstore.key_bundle_dsse(private, DIGEST, rsa_padding=padding)  # type: ignore[arg-type]
    policy = key_policy(private, root, rsa_padding=padding)
    assert verify_candidate(candidate, DIGEST, policy).passed


def test_key_bundle_p384_with_sha256_is_not_the_registry_algorithm(
    sigstore: PrivateSigstore, root: TrustRoot
) -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    payload = statement(DIGEST)
    signature = sign(private, dsse_pae(IN_TOTO_TYPE, payload), ec_hash=hashes.SHA256())
    candidate = sigstore.key_bundle_dsse(private, DIGEST, rekor="none")
    bad = edit(candidate, lambda d: d.update(dsseEnvelope=dsse_envelope(payload, [signature])))
    denied(verify_candidate(bad, DIGEST, key_policy(private, root, require_tlog=False)), Reason.UNTRUSTED_KEY)


def test_key_bundle_attestation_predicate(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_bundle_dsse(signing_key, DIGEST, predicate_type=ATTESTATION)
    assert verify_candidate(candidate, DIGEST, key_policy(signing_key, root)).predicate_type == ATTESTATION


def test_key_bundle_without_log_entry(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_bundle_dsse(signing_key, DIGEST, rekor="none")
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.TLOG_MISSING)
    result = verify_candidate(candidate, DIGEST, key_policy(signing_key, root, require_tlog=False))
    assert result.passed, result
    assert result.details == {"key": "release"}


def test_key_bundle_wrong_key(sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey) -> None:
    candidate = sigstore.key_bundle_dsse(ec.generate_private_key(ec.SECP256R1()), DIGEST)
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.UNTRUSTED_KEY)


def test_key_bundle_tampered_statement(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_bundle_dsse(signing_key, OTHER_DIGEST)
    forged = base64.b64encode(statement(DIGEST)).decode()
    tampered = edit(candidate, lambda d: d["dsseEnvelope"].update(payload=forged))
    # The log entry names the trusted key: a trusted key's signature over other bytes.
    denied(verify_candidate(tampered, DIGEST, key_policy(signing_key, root)), Reason.SIGNATURE_INVALID)


def test_key_bundle_for_another_image(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    candidate = sigstore.key_bundle_dsse(signing_key, OTHER_DIGEST)
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.DIGEST_MISMATCH)


@pytest.mark.parametrize(
    ("payload", "payload_type", "needle"),
    [
        (statement(DIGEST), "application/json", "payloadType"),
        (statement(DIGEST, statement_type="https://in-toto.io/Statement/v2"), IN_TOTO_TYPE, "_type"),
        (b"[]", IN_TOTO_TYPE, "JSON object"),
        (
            b'{"_type": "https://in-toto.io/Statement/v1", "predicateType": "x", "subject": {}}',
            IN_TOTO_TYPE,
            "array",
        ),
    ],
    ids=["payload-type", "statement-type", "not-object", "subjects-not-array"],
)
def test_key_bundle_malformed_statement(
    sigstore: PrivateSigstore,
    root: TrustRoot,
    signing_key: PrivateKey,
    payload: bytes,
    payload_type: str,
    needle: str,
) -> None:
    signature = sign(signing_key, dsse_pae(payload_type, payload))
    candidate = sigstore.key_bundle_dsse(signing_key, DIGEST, rekor="none")
    bad = edit(candidate, lambda d: d.update(dsseEnvelope=dsse_envelope(payload, [signature], payload_type)))
    assert needle in denied(
        verify_candidate(bad, DIGEST, key_policy(signing_key, root, require_tlog=False)), Reason.MALFORMED
    )


def _flip(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _resign_checkpoint(
    sigstore: PrivateSigstore, key: ec.EllipticCurvePrivateKey
) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        proof = entry(document)["inclusionProof"]
        proof["checkpoint"]["envelope"] = sigstore.checkpoint(
            int(proof["treeSize"]), base64.b64decode(proof["rootHash"]), key=key
        )

    return change


TLOG_TAMPERING: dict[str, Callable[[PrivateSigstore, PrivateSigstore], Callable[[dict[str, Any]], None]]] = {
    "set-signature": lambda s, o: (
        lambda d: entry(d)["inclusionPromise"].update(
            signedEntryTimestamp=_flip(entry(d)["inclusionPromise"]["signedEntryTimestamp"])
        )
    ),
    "integrated-time": lambda s, o: (
        lambda d: entry(d).update(integratedTime=str(int(entry(d)["integratedTime"]) + 1))
    ),
    "log-index": lambda s, o: lambda d: entry(d).update(logIndex="4243"),
    "proof-hash": lambda s, o: (
        lambda d: entry(d)["inclusionProof"]["hashes"].__setitem__(
            0, _flip(entry(d)["inclusionProof"]["hashes"][0])
        )
    ),
    "proof-missing-hash": lambda s, o: lambda d: entry(d)["inclusionProof"]["hashes"].pop(),
    "proof-extra-hash": lambda s, o: (
        lambda d: entry(d)["inclusionProof"]["hashes"].append(entry(d)["inclusionProof"]["hashes"][0])
    ),
    "proof-index": lambda s, o: lambda d: entry(d)["inclusionProof"].update(logIndex="5"),
    "proof-index-outside": lambda s, o: lambda d: entry(d)["inclusionProof"].update(logIndex="11"),
    "root-hash": lambda s, o: (
        lambda d: entry(d)["inclusionProof"].update(rootHash=_flip(entry(d)["inclusionProof"]["rootHash"]))
    ),
    "checkpoint-by-other-key": lambda s, o: _resign_checkpoint(s, o.rekor_key),
    "checkpoint-size": lambda s, o: lambda d: entry(d)["inclusionProof"].update(treeSize="12"),
    "checkpoint-garbled": lambda s, o: (
        lambda d: entry(d)["inclusionProof"]["checkpoint"].update(envelope="x\n")
    ),
    "log-id": lambda s, o: lambda d: entry(d)["logId"].update(keyId=base64.b64encode(o.log_id).decode()),
    "body": lambda s, o: (
        lambda d: entry(d).update(canonicalizedBody=base64.b64encode(dsse_body(b"other", b"{}", [])).decode())
    ),
}


@pytest.mark.parametrize("tampering", sorted(TLOG_TAMPERING))
def test_key_bundle_tampered_log_entry(
    sigstore: PrivateSigstore,
    other_sigstore: PrivateSigstore,
    root: TrustRoot,
    signing_key: PrivateKey,
    tampering: str,
) -> None:
    candidate = edit(
        sigstore.key_bundle_dsse(signing_key, DIGEST), TLOG_TAMPERING[tampering](sigstore, other_sigstore)
    )
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.TLOG_INVALID)


def test_key_bundle_log_entry_for_another_signature(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    other = json.loads(sigstore.key_bundle_dsse(signing_key, OTHER_DIGEST).bundle)
    candidate = edit(
        sigstore.key_bundle_dsse(signing_key, DIGEST),
        lambda d: d["verificationMaterial"].update(tlogEntries=other["verificationMaterial"]["tlogEntries"]),
    )
    assert "DSSE payload" in denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.TLOG_INVALID
    )


def test_key_message_signature_bundle(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey
) -> None:
    result = verify_candidate(
        sigstore.key_bundle_message(signing_key, DIGEST), DIGEST, key_policy(signing_key, root)
    )
    assert result.passed, result
    assert result.predicate_type is None
    denied(
        verify_candidate(
            sigstore.key_bundle_message(signing_key, OTHER_DIGEST), DIGEST, key_policy(signing_key, root)
        ),
        Reason.DIGEST_MISMATCH,
    )
    denied(
        verify_candidate(
            sigstore.key_bundle_message(signing_key, DIGEST, with_tlog=False),
            DIGEST,
            key_policy(signing_key, root),
        ),
        Reason.TLOG_MISSING,
    )


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d.update(mediaType="application/json"), "media type"),
        (lambda d: d.pop("verificationMaterial"), "verificationMaterial"),
        (lambda d: d["verificationMaterial"].pop("publicKey"), "neither a certificate nor a public key"),
        (lambda d: d.update(messageSignature={}), "exactly one"),
        (lambda d: d.pop("dsseEnvelope"), "exactly one"),
        (lambda d: d["dsseEnvelope"].update(signatures=[]), "no signatures"),
        (lambda d: d["dsseEnvelope"].update(signatures=[{"sig": "!!"}]), "base64"),
        (lambda d: d["dsseEnvelope"].update(signatures=[{"sig": "AA=="}] * 17), "more than 16"),
        (lambda d: d["dsseEnvelope"].update(payload=None), "base64"),
        (lambda d: d["verificationMaterial"].update(tlogEntries=[{}] * 9), "more than 8"),
    ],
    ids=[
        "media-type",
        "no-material",
        "no-key",
        "both-contents",
        "no-content",
        "no-signatures",
        "bad-signature",
        "too-many-signatures",
        "no-payload",
        "too-many-entries",
    ],
)
def test_malformed_key_bundles(
    sigstore: PrivateSigstore, root: TrustRoot, signing_key: PrivateKey, change: Any, needle: str
) -> None:
    candidate = edit(sigstore.key_bundle_dsse(signing_key, DIGEST), change)
    assert needle in denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.MALFORMED
    )


@pytest.mark.parametrize("data", [b"", b"null", b"[1]", b"{", b'{"mediaType": 1}', b"\x00" * 10])
def test_bundle_bytes_that_are_not_bundles(root: TrustRoot, signing_key: PrivateKey, data: bytes) -> None:
    candidate = BundleCandidate(format="bundle", manifest_digest="sha256:" + "0" * 64, bundle=data)
    denied(verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.MALFORMED)


def test_oversized_bundle(root: TrustRoot, signing_key: PrivateKey) -> None:
    data = json.dumps({"mediaType": ARTIFACT_TYPE_BUNDLE, "pad": "x" * (4 * 1024 * 1024)}).encode()
    candidate = BundleCandidate(format="bundle", manifest_digest="sha256:" + "0" * 64, bundle=data)
    assert "limit" in denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, root)), Reason.MALFORMED
    )


# --- certificate bundles (sigstore-python, private instance) ---------------------------------------------


@pytest.mark.parametrize("message", [False, True], ids=["dsse", "message-signature"])
def test_keyless_bundle_verifies(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, message: bool
) -> None:
    result = verify_candidate(sigstore.keyless_bundle(DIGEST, message=message), DIGEST, keyless_policy)
    assert result.passed, result
    assert result.anchor == "signer"
    assert result.details["integratedTime"] == "2024-06-01T12:01:00Z"
    assert result.predicate_type == (None if message else PREDICATE_TYPE_SIGN)


def test_keyless_bundle_wrong_identity(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, identity: Identity
) -> None:
    policy = dataclasses.replace(
        keyless_policy, identities=(dataclasses.replace(identity, issuer="https://x.test"),)
    )
    denied(verify_candidate(sigstore.keyless_bundle(DIGEST), DIGEST, policy), Reason.IDENTITY_MISMATCH)


def test_keyless_bundle_untrusted_chain(other_sigstore: PrivateSigstore, keyless_policy: TrustPolicy) -> None:
    denied(
        verify_candidate(other_sigstore.keyless_bundle(DIGEST), DIGEST, keyless_policy),
        Reason.UNTRUSTED_CHAIN,
    )


def test_keyless_bundle_certificate_expired(sigstore: PrivateSigstore, keyless_policy: TrustPolicy) -> None:
    candidate = sigstore.keyless_bundle(DIGEST, integrated_time=EPOCH_2024 + timedelta(minutes=30))
    denied(verify_candidate(candidate, DIGEST, keyless_policy), Reason.CERTIFICATE_EXPIRED)


@pytest.mark.parametrize("message", [False, True], ids=["dsse", "message-signature"])
def test_keyless_bundle_for_another_image(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, message: bool
) -> None:
    denied(
        verify_candidate(sigstore.keyless_bundle(OTHER_DIGEST, message=message), DIGEST, keyless_policy),
        Reason.DIGEST_MISMATCH,
    )


def test_keyless_bundle_tampered_payload(sigstore: PrivateSigstore, keyless_policy: TrustPolicy) -> None:
    forged = base64.b64encode(statement(DIGEST, ATTESTATION)).decode()
    candidate = edit(sigstore.keyless_bundle(DIGEST), lambda d: d["dsseEnvelope"].update(payload=forged))
    denied(verify_candidate(candidate, DIGEST, keyless_policy), Reason.SIGNATURE_INVALID)


def test_keyless_bundle_log_evidence(sigstore: PrivateSigstore, keyless_policy: TrustPolicy) -> None:
    no_promise = sigstore.keyless_bundle(DIGEST, promise=False)
    denied(verify_candidate(no_promise, DIGEST, keyless_policy), Reason.TLOG_MISSING)
    no_entries = edit(
        sigstore.keyless_bundle(DIGEST), lambda d: d["verificationMaterial"].update(tlogEntries=[])
    )
    denied(
        verify_candidate(no_entries, DIGEST, dataclasses.replace(keyless_policy, require_tlog=False)),
        Reason.TLOG_MISSING,
    )
    bad_set = edit(sigstore.keyless_bundle(DIGEST), TLOG_TAMPERING["set-signature"](sigstore, sigstore))
    denied(verify_candidate(bad_set, DIGEST, keyless_policy), Reason.TLOG_INVALID)
    bad_proof = edit(sigstore.keyless_bundle(DIGEST), TLOG_TAMPERING["proof-hash"](sigstore, sigstore))
    denied(verify_candidate(bad_proof, DIGEST, keyless_policy), Reason.TLOG_INVALID)


def test_keyless_bundle_policy_gaps(
    sigstore: PrivateSigstore, keyless_policy: TrustPolicy, signing_key: PrivateKey
) -> None:
    candidate = sigstore.keyless_bundle(DIGEST)
    denied(
        verify_candidate(candidate, DIGEST, key_policy(signing_key, keyless_policy.trusted_root)),
        Reason.UNTRUSTED_KEY,
    )
    denied(
        verify_candidate(candidate, DIGEST, dataclasses.replace(keyless_policy, trusted_root=None)),
        Reason.UNTRUSTED_CHAIN,
    )


def test_keyless_bundle_garbled_certificate(sigstore: PrivateSigstore, keyless_policy: TrustPolicy) -> None:
    candidate = edit(
        sigstore.keyless_bundle(DIGEST),
        lambda d: d["verificationMaterial"]["certificate"].update(
            rawBytes=base64.b64encode(b"junk").decode()
        ),
    )
    denied(verify_candidate(candidate, DIGEST, keyless_policy), Reason.MALFORMED)


# --- recorded bundles -----------------------------------------------------------------------------------

CODY = Identity(name="cody", subject="cody@soyland.com", issuer="https://github.com/login/oauth")


def _subject_digest(bundle: bytes) -> str:
    document = json.loads(bundle)
    payload = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
    subject: dict[str, str] = payload["subject"][0]["digest"]
    return "sha256:" + subject["sha256"]


@pytest.fixture(scope="module")
def cosign_bundle(testdata: Path) -> bytes:
    return (testdata / "cosign" / "oci-attestation.sigstore.json").read_bytes()


@pytest.fixture(scope="module")
def pgi_root(testdata: Path) -> TrustRoot:
    return load_trusted_root((testdata / "cosign" / "trusted_root_pgi.json").read_bytes())


def test_recorded_cosign_attestation_verifies_offline(cosign_bundle: bytes, pgi_root: TrustRoot) -> None:
    digest = _subject_digest(cosign_bundle)
    assert digest.startswith("sha256:73211227") and digest.endswith("aa4")
    candidate = BundleCandidate(format="bundle", manifest_digest="sha256:" + "1" * 64, bundle=cosign_bundle)
    result = verify_candidate(candidate, digest, TrustPolicy(identities=(CODY,), trusted_root=pgi_root))
    assert result.passed, result
    assert result.anchor == "cody"
    assert result.predicate_type == "https://cosign.sigstore.dev/attestation/v1"
    assert result.details["subject"] == "cody@soyland.com"
    assert result.details["issuer"] == "https://github.com/login/oauth"
    assert result.details["logIndex"] == 175508996
    assert result.details["integratedTime"] == "2025-02-28T19:18:11Z"


@pytest.mark.parametrize(
    "other",
    [
        Identity(name="x", subject="someone@soyland.com", issuer="https://github.com/login/oauth"),
        Identity(name="x", subject="cody@soyland.com", issuer="https://accounts.google.com"),
        Identity(
            name="x", subject_regexp=re.compile(r"cody@soyland\.co"), issuer="https://github.com/login/oauth"
        ),
        Identity(
            name="x",
            subject="cody@soyland.com",
            issuer="https://github.com/login/oauth",
            github_workflow_ref="main",
        ),
    ],
    ids=["subject", "issuer", "partial-regexp", "github-claim"],
)
def test_recorded_cosign_attestation_other_identity(
    cosign_bundle: bytes, pgi_root: TrustRoot, other: Identity
) -> None:
    candidate = BundleCandidate(format="bundle", manifest_digest="m", bundle=cosign_bundle)
    policy = TrustPolicy(identities=(other,), trusted_root=pgi_root)
    denied(verify_candidate(candidate, _subject_digest(cosign_bundle), policy), Reason.IDENTITY_MISMATCH)


def test_recorded_cosign_attestation_failures(cosign_bundle: bytes, pgi_root: TrustRoot) -> None:
    policy = TrustPolicy(identities=(CODY,), trusted_root=pgi_root)
    digest = _subject_digest(cosign_bundle)
    candidate = BundleCandidate(format="bundle", manifest_digest="m", bundle=cosign_bundle)
    denied(verify_candidate(candidate, DIGEST, policy), Reason.DIGEST_MISMATCH)
    denied(
        verify_candidate(candidate, digest, dataclasses.replace(policy, trusted_root=staging_trusted_root())),
        Reason.UNTRUSTED_CHAIN,
    )
    body = edit(candidate, lambda d: entry(d).update(canonicalizedBody=_flip(entry(d)["canonicalizedBody"])))
    denied(verify_candidate(body, digest, policy), Reason.TLOG_INVALID)
    envelope = edit(
        candidate,
        lambda d: d["dsseEnvelope"]["signatures"][0].update(
            sig=_flip(d["dsseEnvelope"]["signatures"][0]["sig"])
        ),
    )
    assert not verify_candidate(envelope, digest, policy).passed


def test_recorded_bundle_layer_directly(cosign_bundle: bytes, pgi_root: TrustRoot) -> None:
    verified = verify_bundle(
        cosign_bundle,
        _subject_digest(cosign_bundle),
        TrustPolicy(identities=(CODY,), trusted_root=pgi_root),
        NOW,
    )
    assert verified.anchor == "cody"
    with pytest.raises(Failure) as caught:
        verify_bundle(
            cosign_bundle, OTHER_DIGEST, TrustPolicy(identities=(CODY,), trusted_root=pgi_root), NOW
        )
    assert caught.value.reason == Reason.DIGEST_MISMATCH


BEACON = Identity(
    name="beacon",
    subject=(
        "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/"
        "extremely-dangerous-oidc-beacon.yml@refs/heads/main"
    ),
    issuer="https://token.actions.githubusercontent.com",
    github_workflow_repository="sigstore-conformance/extremely-dangerous-public-oidc-beacon",
)


def test_recorded_rekor_v2_dsse_bundle_verifies_against_staging(testdata: Path) -> None:
    data = (testdata / "sigstore" / "a.dsse.staging-rekor-v2.txt.sigstore.json").read_bytes()
    candidate = BundleCandidate(format="bundle", manifest_digest="m", bundle=data)
    policy = TrustPolicy(identities=(BEACON,), trusted_root=staging_trusted_root())
    result = verify_candidate(candidate, _subject_digest(data), policy)
    assert result.passed, result
    assert result.predicate_type == "https://slsa.dev/provenance/v1"
    assert "integratedTime" not in result.details  # Rekor v2: the time comes from the timestamp authority
    assert result.details["timestamp"].startswith("20")
    assert result.details["timestampAuthority"]
    other = dataclasses.replace(BEACON, github_workflow_repository="sigstore-conformance/other")
    denied(
        verify_candidate(candidate, _subject_digest(data), dataclasses.replace(policy, identities=(other,))),
        Reason.IDENTITY_MISMATCH,
    )


def _file_digest(testdata: Path, name: str) -> str:
    return "sha256:" + hashlib.sha256((testdata / "sigstore" / name).read_bytes()).hexdigest()


ANYONE = Identity(name="anyone", subject_regexp=re.compile(".*"), issuer_regexp=re.compile(".*"))


@pytest.mark.parametrize("require_tlog", [True, False])
def test_recorded_cve_2022_36056_bundle_fails(testdata: Path, require_tlog: bool) -> None:
    data = (testdata / "sigstore" / "bundle_cve_2022_36056.txt.sigstore").read_bytes()
    candidate = BundleCandidate(format="bundle", manifest_digest="m", bundle=data)
    policy = TrustPolicy(identities=(ANYONE,), trusted_root=staging_trusted_root(), require_tlog=require_tlog)
    result = verify_candidate(candidate, _file_digest(testdata, "bundle_cve_2022_36056.txt"), policy)
    assert "inconsistent" in denied(result, Reason.TLOG_INVALID)


@pytest.mark.parametrize("require_tlog", [True, False])
def test_recorded_bundle_without_log_entry_fails(testdata: Path, require_tlog: bool) -> None:
    data = (testdata / "sigstore" / "bundle_no_log_entry.txt.sigstore").read_bytes()
    candidate = BundleCandidate(format="bundle", manifest_digest="m", bundle=data)
    policy = TrustPolicy(identities=(ANYONE,), trusted_root=staging_trusted_root(), require_tlog=require_tlog)
    denied(
        verify_candidate(candidate, _file_digest(testdata, "bundle_no_log_entry.txt"), policy),
        Reason.TLOG_MISSING,
    )
