"""Transparency-log evidence on its own: Merkle inclusion proofs, checkpoints, entry bodies."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.private_sigstore import (
    IN_TOTO_TYPE,
    PrivateSigstore,
    dsse_body,
    hashedrekord_body,
    hashedrekord_v002_body,
    merkle_audit_path,
    merkle_leaf_hash,
    merkle_tree_hash,
    pem_public_key,
)
from tests.unit.cosign.conftest import NOW
from verifiers.cosign.common import Failure
from verifiers.cosign.dsse import Envelope, EnvelopeSignature, pae
from verifiers.cosign.model import Reason
from verifiers.cosign.rekor import (
    InclusionProof,
    LogEntry,
    Signed,
    check_body,
    entry_from_bundle,
    entry_from_cosign_bundle,
    names_signer,
    root_from_inclusion_proof,
    verify_entry,
)
from verifiers.cosign.trustroot import TrustRoot


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1)))
)
def test_merkle_proofs_of_every_shape_verify(shape: tuple[int, int]) -> None:
    size, index = shape
    leaves = [merkle_leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    path = tuple(merkle_audit_path(index, leaves))
    assert root_from_inclusion_proof(index, size, leaves[index], path) == merkle_tree_hash(leaves)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=2, max_value=100).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n - 1), st.integers(0, n - 1))
    )
)
def test_merkle_proofs_bind_the_leaf_and_its_position(shape: tuple[int, int, int]) -> None:
    size, index, other = shape
    leaves = [merkle_leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    root = merkle_tree_hash(leaves)
    path = tuple(merkle_audit_path(index, leaves))
    assert root_from_inclusion_proof(index, size, leaves[other], path) != root or other == index
    try:
        moved = root_from_inclusion_proof(other, size, leaves[index], path)
    except Failure:
        return
    assert moved != root or other == index


def test_merkle_proof_edge_cases() -> None:
    leaf = merkle_leaf_hash(b"only")
    assert root_from_inclusion_proof(0, 1, leaf, ()) == leaf
    for index, size in ((1, 1), (-1, 4), (0, 0)):
        with pytest.raises(Failure, match="outside"):
            root_from_inclusion_proof(index, size, leaf, ())


def _v2_entry(sigstore: PrivateSigstore, body: bytes) -> LogEntry:
    raw = sigstore.tlog_entry(body, kind="hashedrekord", version="0.0.2", integrated_time=None, promise=False)
    return entry_from_bundle(raw)


def test_proof_only_entry_with_another_body(sigstore: PrivateSigstore, root: TrustRoot) -> None:
    entry = _v2_entry(sigstore, b'{"kind": "a"}')
    assert verify_entry(entry, root, now=NOW).integrated_time is None
    swapped = LogEntry(
        log_id=entry.log_id,
        log_index=entry.log_index,
        body=b'{"kind": "b"}',
        inclusion_proof=entry.inclusion_proof,
    )
    with pytest.raises(Failure, match="root hash") as caught:
        verify_entry(swapped, root, now=NOW)
    assert caught.value.reason == Reason.TLOG_INVALID


@pytest.mark.parametrize(
    ("checkpoint", "needle"),
    [
        ("origin\n11\nAAAA\n\n", "no signature lines"),
        ("origin\n11\n\n\u2014 a b\n", "origin, a tree size and a root hash"),
        ("origin\n11\n!!!\n\n\u2014 a b\n", "not base64"),
        ("origin\n11\nAAAA\n\n\u2014 a b\n", "differs"),
        ("a\n\nb\n\nc\n", "signed note"),
    ],
)
def test_malformed_checkpoints(
    sigstore: PrivateSigstore, root: TrustRoot, checkpoint: str, needle: str
) -> None:
    entry = _v2_entry(sigstore, b"{}")
    assert entry.inclusion_proof is not None
    proof = InclusionProof(
        log_index=entry.inclusion_proof.log_index,
        tree_size=entry.inclusion_proof.tree_size,
        root_hash=entry.inclusion_proof.root_hash,
        hashes=entry.inclusion_proof.hashes,
        checkpoint=checkpoint,
    )
    broken = LogEntry(log_id=entry.log_id, log_index=0, body=b"{}", inclusion_proof=proof)
    with pytest.raises(Failure, match=needle):
        verify_entry(broken, root, now=NOW)


def test_entry_without_evidence(sigstore: PrivateSigstore, root: TrustRoot) -> None:
    with pytest.raises(Failure) as caught:
        verify_entry(LogEntry(log_id=sigstore.log_id, log_index=1, body=b"{}"), root, now=NOW)
    assert caught.value.reason == Reason.TLOG_MISSING


# --- bodies ---------------------------------------------------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
SIGNATURE = b"\x30\x06\x02\x01\x01\x02\x01\x01"
PAYLOAD = b'{"_type": "https://in-toto.io/Statement/v1"}'
ENVELOPE = Envelope(
    payload_type=IN_TOTO_TYPE, payload=PAYLOAD, signatures=(EnvelopeSignature(SIGNATURE, "", ""),)
)


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("body", "signed", "ok"),
    [
        (
            hashedrekord_body(SIGNATURE, b"\x01" * 32, pem_public_key(KEY)),
            Signed(SIGNATURE, public_key=KEY.public_key(), artifact_sha256=b"\x01" * 32),
            True,
        ),
        (
            hashedrekord_body(SIGNATURE, b"\x01" * 32, pem_public_key(KEY)),
            Signed(SIGNATURE, public_key=OTHER_KEY.public_key(), artifact_sha256=b"\x01" * 32),
            False,
        ),
        (
            hashedrekord_body(SIGNATURE, b"\x01" * 32, pem_public_key(KEY)),
            Signed(SIGNATURE, public_key=KEY.public_key(), envelope=ENVELOPE),
            False,
        ),
        (
            dsse_body(PAYLOAD, b"{}", [(SIGNATURE, pem_public_key(KEY))]),
            Signed(SIGNATURE, public_key=KEY.public_key(), envelope=ENVELOPE),
            True,
        ),
        (
            dsse_body(PAYLOAD, b"{}", [(SIGNATURE, pem_public_key(KEY))]),
            Signed(b"other", public_key=KEY.public_key(), envelope=ENVELOPE),
            False,
        ),
        (
            dsse_body(PAYLOAD, b"{}", [(SIGNATURE, pem_public_key(KEY))]),
            Signed(SIGNATURE, public_key=KEY.public_key(), artifact_sha256=b"\x01" * 32),
            False,
        ),
        (
            hashedrekord_v002_body(
                hashlib.sha256(pae(IN_TOTO_TYPE, PAYLOAD)).digest(), SIGNATURE, _spki(KEY), certificate=False
            ),
            Signed(SIGNATURE, public_key=KEY.public_key(), envelope=ENVELOPE),
            True,
        ),
        (
            hashedrekord_v002_body(
                hashlib.sha256(PAYLOAD).digest(), SIGNATURE, _spki(KEY), certificate=False
            ),
            Signed(SIGNATURE, public_key=KEY.public_key(), envelope=ENVELOPE),
            False,
        ),
        (
            hashedrekord_v002_body(b"\x01" * 32, SIGNATURE, _spki(KEY), certificate=False),
            Signed(SIGNATURE, public_key=KEY.public_key(), artifact_sha256=b"\x01" * 32),
            True,
        ),
        (
            hashedrekord_v002_body(b"\x01" * 32, SIGNATURE, _spki(OTHER_KEY), certificate=False),
            Signed(SIGNATURE, public_key=KEY.public_key(), artifact_sha256=b"\x01" * 32),
            False,
        ),
        (
            b'{"kind": "rekord", "apiVersion": "0.0.1", "spec": {}}',
            Signed(SIGNATURE, public_key=KEY.public_key()),
            False,
        ),
        (b"[]", Signed(SIGNATURE, public_key=KEY.public_key()), False),
    ],
    ids=[
        "hashedrekord",
        "hashedrekord-other-key",
        "hashedrekord-for-dsse",
        "dsse",
        "dsse-other-signature",
        "dsse-for-message",
        "hashedrekord-v2-dsse",
        "hashedrekord-v2-dsse-wrong-digest",
        "hashedrekord-v2-message",
        "hashedrekord-v2-other-key",
        "unknown-kind",
        "not-an-object",
    ],
)
def test_entry_bodies(body: bytes, signed: Signed, ok: bool) -> None:
    if ok:
        check_body(body, signed)
        if signed.public_key is not None:
            assert names_signer(body, signed.public_key)
        return
    with pytest.raises(Failure) as caught:
        check_body(body, signed)
    assert caught.value.reason == Reason.TLOG_INVALID


def test_names_signer_is_best_effort() -> None:
    assert not names_signer(b"junk", KEY.public_key())
    assert not names_signer(hashedrekord_body(SIGNATURE, b"\x01" * 32, b"not pem"), KEY.public_key())
    body = dsse_body(
        PAYLOAD, b"{}", [(SIGNATURE, pem_public_key(OTHER_KEY)), (SIGNATURE, pem_public_key(KEY))]
    )
    assert names_signer(body, KEY.public_key())


def test_bundle_entry_parsing_errors(sigstore: PrivateSigstore) -> None:
    raw = sigstore.tlog_entry(b"{}", kind="dsse", version="0.0.1")
    changes: tuple[dict[str, Any], ...] = (
        {"logId": {}},
        {"canonicalizedBody": "%%"},
        {"logIndex": "-1"},
        {"inclusionPromise": {"signedEntryTimestamp": 5}},
        {
            "inclusionProof": {
                "treeSize": "1",
                "rootHash": "",
                "hashes": ["AA=="] * 65,
                "checkpoint": {"envelope": ""},
            }
        },
    )
    for change in changes:
        with pytest.raises(Failure) as caught:
            entry_from_bundle({**raw, **change})
        assert caught.value.reason == Reason.TLOG_INVALID


def test_integrated_time_out_of_range(sigstore: PrivateSigstore, root: TrustRoot) -> None:
    body = b"{}"
    huge = 10**15
    entry = LogEntry(
        log_id=sigstore.log_id,
        log_index=1,
        body=body,
        integrated_time=huge,
        signed_entry_timestamp=sigstore.signed_entry_timestamp(body, integrated_time=huge, log_index=1),
    )
    with pytest.raises(Failure, match="out of range"):
        verify_entry(entry, root, now=NOW + timedelta(0))


def test_set_canonical_form_uses_standard_base64(sigstore: PrivateSigstore, root: TrustRoot) -> None:
    body = b"\xfb\xff body with bytes that differ in url-safe base64"
    annotation = sigstore.cosign_bundle_annotation(body)
    assert "+" in base64.b64encode(body).decode() or "/" in base64.b64encode(body).decode()
    verified = verify_entry(entry_from_cosign_bundle(annotation), root, now=NOW)
    assert verified.evidence == ("inclusionPromise",)
