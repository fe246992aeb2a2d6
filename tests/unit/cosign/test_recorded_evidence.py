"""The core's own checks (not sigstore-python's) against evidence recorded from the real Sigstore services.

Certificate bundles are verified through sigstore-python; these tests feed the same recorded certificates
and log entries to the code paths that verify simple-signing and legacy attestation signatures: the Fulcio
chain and SCT, the identity extensions, Rekor v1 signed entry timestamps, Rekor v1 and v2 inclusion proofs
and checkpoints (ECDSA and Ed25519 log keys), and entry bodies.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.unit.cosign.conftest import NOW
from verifiers.cosign.common import Failure
from verifiers.cosign.dsse import envelope_from_obj
from verifiers.cosign.keyless import certificate_facts, verify_chain, verify_sct
from verifiers.cosign.model import Reason
from verifiers.cosign.rekor import Signed, check_body, entry_from_bundle, verify_entry
from verifiers.cosign.trustroot import TrustRoot, load_trusted_root, staging_trusted_root


def _bundle(testdata: Path, *parts: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(testdata.joinpath(*parts).read_bytes())
    return document


def _leaf(document: dict[str, Any]) -> x509.Certificate:
    raw = document["verificationMaterial"]["certificate"]["rawBytes"]
    return x509.load_der_x509_certificate(base64.b64decode(raw))


@pytest.fixture(scope="module")
def pgi_root(testdata: Path) -> TrustRoot:
    return load_trusted_root((testdata / "cosign" / "trusted_root_pgi.json").read_bytes())


def test_public_good_fulcio_certificate(testdata: Path, pgi_root: TrustRoot) -> None:
    leaf = _leaf(_bundle(testdata, "cosign", "oci-attestation.sigstore.json"))
    chain = verify_chain(leaf, [], pgi_root, leaf.not_valid_before_utc)
    verify_sct(leaf, chain[1], pgi_root)
    facts = certificate_facts(leaf)
    assert facts.sans == ("cody@soyland.com",)
    assert facts.issuer == "https://github.com/login/oauth"
    # The staging instance vouches for none of it.
    with pytest.raises(Failure) as caught:
        verify_chain(leaf, [], staging_trusted_root(), leaf.not_valid_before_utc)
    assert caught.value.reason == Reason.UNTRUSTED_CHAIN


def test_public_good_rekor_v1_entry(testdata: Path, pgi_root: TrustRoot) -> None:
    document = _bundle(testdata, "cosign", "oci-attestation.sigstore.json")
    entry = entry_from_bundle(document["verificationMaterial"]["tlogEntries"][0])
    verified = verify_entry(entry, pgi_root, now=NOW.replace(year=2026))
    assert verified.evidence == ("inclusionPromise", "inclusionProof")
    assert verified.log_index == 175508996
    assert verified.integrated_time is not None and verified.integrated_time.year == 2025
    envelope = envelope_from_obj(document["dsseEnvelope"])
    leaf = _leaf(document)
    check_body(
        entry.body, Signed(envelope.signatures[0].sig, certificate=leaf, envelope=envelope), ("dsse", "0.0.1")
    )
    with pytest.raises(Failure, match="different DSSE payload"):
        other = envelope_from_obj({**document["dsseEnvelope"], "payload": base64.b64encode(b"{}").decode()})
        check_body(entry.body, Signed(envelope.signatures[0].sig, certificate=leaf, envelope=other))


def test_staging_rekor_v2_entry_and_fulcio_certificate(testdata: Path) -> None:
    root = staging_trusted_root()
    document = _bundle(testdata, "sigstore", "a.dsse.staging-rekor-v2.txt.sigstore.json")
    entry = entry_from_bundle(document["verificationMaterial"]["tlogEntries"][0])
    verified = verify_entry(entry, root, now=NOW)
    assert verified.evidence == ("inclusionProof",)  # Ed25519-signed checkpoint, no promise
    assert verified.integrated_time is None
    leaf = _leaf(document)
    envelope = envelope_from_obj(document["dsseEnvelope"])
    check_body(entry.body, Signed(envelope.signatures[0].sig, certificate=leaf, envelope=envelope))
    chain = verify_chain(leaf, [], root, leaf.not_valid_before_utc)
    verify_sct(leaf, chain[1], root)
    facts = certificate_facts(leaf)
    assert facts.issuer == "https://token.actions.githubusercontent.com"
    assert (
        facts.github["github_workflow_repository"]
        == "sigstore-conformance/extremely-dangerous-public-oidc-beacon"
    )
    assert facts.github["github_workflow_ref"] == "refs/heads/main"


def test_cve_2022_36056_entry_is_valid_but_for_another_artifact(testdata: Path) -> None:
    document = _bundle(testdata, "sigstore", "bundle_cve_2022_36056.txt.sigstore")
    entry = entry_from_bundle(document["verificationMaterial"]["tlogEntries"][0])
    verify_entry(entry, staging_trusted_root(), now=NOW)  # a genuine log entry...
    message = document["messageSignature"]
    artifact = hashlib.sha256((testdata / "sigstore" / "bundle_cve_2022_36056.txt").read_bytes()).digest()
    signed = Signed(
        base64.b64decode(message["signature"]), certificate=_leaf(document), artifact_sha256=artifact
    )
    with pytest.raises(Failure) as caught:  # ...that records another signature and artifact
        check_body(entry.body, signed)
    assert caught.value.reason == Reason.TLOG_INVALID
