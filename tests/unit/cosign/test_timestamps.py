"""RFC 3161 timestamps on simple-signing signatures, through the pure core (`verify_candidate`).

The timestamps are real: a module fixture runs sigstore's ``timestamp-server`` (tests/support/tsa.py) on
127.0.0.1 once, asks it to timestamp the signatures the tests need (SHA-256, SHA-384, SHA-512 imprints; a
second server instance puts the whole chain in its responses, in the non-DER order real TSAs use), and stops
it; the tests then run offline on the recorded bytes (the cosign conftest forbids any connection).

Times: the TSA stamps the real present (``T0``); keyless certificates are issued around it as each case needs,
log entries are integrated where each case needs, and the policies' "now" is an hour after ``T0``.

Decisions these tests pin (see `verifiers.cosign.keyless` step 4-5 and `verifiers.cosign.timestamp`):

* with the transparency log required (the default), a keyless signature still needs its log entry: a
  timestamp does not replace it (`TLOG_MISSING`);
* every verified signing time must fall in the certificate's validity, as cosign and sigstore-python
  require: a certificate that had expired when the log integrated the signature is `CERTIFICATE_EXPIRED`
  even though the timestamp is inside its validity, and the other way round;
* an invalid timestamp fails the signature even when no timestamp is required: a bad imprint or an altered
  token is `SIGNATURE_INVALID`, a TSA the trusted root does not list (or a genTime outside its window) is
  `UNTRUSTED_CHAIN`, unparseable material is `MALFORMED`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from rfc3161_client import decode_timestamp_response

from tests.support.private_sigstore import (
    DEFAULT_ISSUER,
    PrivateSigstore,
    hashedrekord_body_for,
    pem_public_key,
)
from tests.support.tools import require_tool
from tests.support.tsa import (
    TimestampServer,
    TsaCertificates,
    cosign_timestamp_annotation,
    timestamp_authority_entry,
    with_timestamp_authorities,
)
from tests.unit.cosign.conftest import DIGEST, SIGNER
from verifiers.cosign.common import Failure, rfc3339
from verifiers.cosign.core import verify_candidate
from verifiers.cosign.model import (
    CandidateResult,
    Identity,
    Reason,
    SimpleSigningCandidate,
    TrustedKey,
    TrustPolicy,
)
from verifiers.cosign.timestamp import parse_timestamp, verify_timestamp
from verifiers.cosign.trustroot import TrustRoot, load_trusted_root


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What the real TSA produced for this module, and what it was asked to stamp."""

    t0: datetime  # just before the first request
    tsa: TsaCertificates
    key: ec.EllipticCurvePrivateKey
    key_signature: SimpleSigningCandidate  # key-based, no log entry, no timestamp
    stamps: dict[str, bytes]  # name -> DER TimeStampResp
    keyless: dict[str, SimpleSigningCandidate]  # name -> keyless candidate (SET as the case needs)
    unsorted: bytes  # a response whose certificate SET is not in DER order (whole chain included)


@pytest.fixture(scope="module")
def recorded(sigstore: PrivateSigstore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    require_tool("timestamp-server")
    directory: Path = tmp_path_factory.mktemp("tsa")
    t0 = datetime.now(UTC).replace(microsecond=0)
    tsa = TsaCertificates(intermediate=True)
    key = ec.generate_private_key(ec.SECP256R1())
    key_signature = sigstore.key_signature(key, DIGEST)

    keyless = {
        # valid around T0; the log integrated the signature a minute in.
        "valid": sigstore.keyless_signature(
            DIGEST,
            leaf=sigstore.issue(not_before=t0 - timedelta(minutes=2)),
            integrated_time=t0 - timedelta(minutes=1),
        ),
        # valid at T0 (the timestamp) but the log integrated it half an hour later, after expiry.
        "logged_late": sigstore.keyless_signature(
            DIGEST,
            leaf=sigstore.issue(not_before=t0 - timedelta(minutes=2)),
            integrated_time=t0 + timedelta(minutes=30),
        ),
        # expired at T0 (the timestamp) but logged in time.
        "stamped_late": sigstore.keyless_signature(
            DIGEST,
            leaf=sigstore.issue(not_before=t0 - timedelta(hours=1)),
            integrated_time=t0 - timedelta(minutes=55),
        ),
        # no log entry at all: valid at T0, and expired at T0.
        "unlogged": sigstore.keyless_signature(
            DIGEST, leaf=sigstore.issue(not_before=t0 - timedelta(minutes=2)), with_set=False
        ),
        "unlogged_expired": sigstore.keyless_signature(
            DIGEST, leaf=sigstore.issue(not_before=t0 - timedelta(hours=1)), with_set=False
        ),
    }
    stamps: dict[str, bytes] = {}
    with TimestampServer(directory / "leaf-only", certificates=tsa) as server:
        for algorithm in ("sha256", "sha384", "sha512"):
            digest = hashlib.new(algorithm, key_signature.signature).digest()
            stamps[algorithm] = server.timestamp(digest, algorithm)
        stamps["other"] = server.timestamp(hashlib.sha256(b"some other signature").digest())
        stamps["no_certificates"] = server.timestamp(
            hashlib.sha256(key_signature.signature).digest(), cert_req=False
        )
        for name, candidate in keyless.items():
            stamps[name] = server.timestamp(hashlib.sha256(candidate.signature).digest())
    with TimestampServer(directory / "whole-chain", certificates=tsa, include_chain=True) as server:
        unsorted = server.timestamp(hashlib.sha256(key_signature.signature).digest())
    yield Recorded(
        t0=t0,
        tsa=tsa,
        key=key,
        key_signature=key_signature,
        stamps=stamps,
        keyless={name: stamped(candidate, stamps[name]) for name, candidate in keyless.items()},
        unsorted=unsorted,
    )


# --- helpers ---------------------------------------------------------------------------------------------


def stamped(candidate: SimpleSigningCandidate, response: bytes) -> SimpleSigningCandidate:
    return dataclasses.replace(candidate, rfc3161_timestamp=cosign_timestamp_annotation(response))


def annotated(candidate: SimpleSigningCandidate, annotation: bytes) -> SimpleSigningCandidate:
    return dataclasses.replace(candidate, rfc3161_timestamp=annotation)


def root_with(sigstore: PrivateSigstore, *entries: dict[str, object]) -> TrustRoot:
    document = with_timestamp_authorities(sigstore.trusted_root_document(), entries)
    return load_trusted_root(json.dumps(document).encode())


def passed(result: CandidateResult) -> dict[str, object]:
    assert result.passed, result
    assert result.reason == Reason.VERIFIED
    return dict(result.details)


def denied(result: CandidateResult, reason: str) -> str:
    assert not result.passed, result
    assert result.reason == reason, result
    assert result.message
    return result.message


def gen_time(response: bytes) -> datetime:
    return decode_timestamp_response(response).tst_info.gen_time


@pytest.fixture(scope="module")
def tsa_root(sigstore: PrivateSigstore, recorded: Recorded) -> TrustRoot:
    return root_with(sigstore, timestamp_authority_entry(recorded.tsa.chain))


@pytest.fixture(scope="module")
def now(recorded: Recorded) -> datetime:
    return recorded.t0 + timedelta(hours=1)


def key_policy(recorded: Recorded, root: TrustRoot | None, now: datetime) -> TrustPolicy:
    return TrustPolicy(
        keys=(TrustedKey(name="release", key=recorded.key.public_key()),),
        trusted_root=root,
        require_tlog=False,
        now=now,
    )


def keyless_policy(root: TrustRoot, now: datetime, *, require_tlog: bool = True) -> TrustPolicy:
    identity = Identity(name="signer", subject=SIGNER, issuer=DEFAULT_ISSUER)
    return TrustPolicy(identities=(identity,), trusted_root=root, require_tlog=require_tlog, now=now)


# --- key-based -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_key_signature_with_a_timestamp(
    recorded: Recorded, tsa_root: TrustRoot, now: datetime, algorithm: str
) -> None:
    response = recorded.stamps[algorithm]
    candidate = stamped(recorded.key_signature, response)
    details = passed(verify_candidate(candidate, DIGEST, key_policy(recorded, tsa_root, now)))
    assert details["timestamp"] == rfc3339(gen_time(response))
    assert details["timestampAuthority"] == recorded.tsa.subject
    assert recorded.t0 <= gen_time(response) <= datetime.now(UTC)
    assert "logIndex" not in details


def test_key_signature_with_a_timestamp_and_a_log_entry(
    sigstore: PrivateSigstore, recorded: Recorded, tsa_root: TrustRoot, now: datetime
) -> None:
    body = hashedrekord_body_for(recorded.key_signature, pem_public_key(recorded.key))
    logged = dataclasses.replace(
        recorded.key_signature,
        rekor_bundle=sigstore.cosign_bundle_annotation(body, integrated_time=recorded.t0),
    )
    candidate = stamped(logged, recorded.stamps["sha256"])
    policy = dataclasses.replace(key_policy(recorded, tsa_root, now), require_tlog=True)
    details = passed(verify_candidate(candidate, DIGEST, policy))
    assert details["integratedTime"] == rfc3339(recorded.t0)
    assert details["timestamp"] == rfc3339(gen_time(recorded.stamps["sha256"]))


def test_key_signature_without_a_timestamp_reports_none(
    recorded: Recorded, tsa_root: TrustRoot, now: datetime
) -> None:
    details = passed(verify_candidate(recorded.key_signature, DIGEST, key_policy(recorded, tsa_root, now)))
    assert "timestamp" not in details and "timestampAuthority" not in details


def test_timestamp_over_other_bytes(recorded: Recorded, tsa_root: TrustRoot, now: datetime) -> None:
    candidate = stamped(recorded.key_signature, recorded.stamps["other"])
    message = denied(
        verify_candidate(candidate, DIGEST, key_policy(recorded, tsa_root, now)), Reason.SIGNATURE_INVALID
    )
    assert "other data" in message


def test_timestamp_of_another_signature(recorded: Recorded, tsa_root: TrustRoot, now: datetime) -> None:
    """A genuine timestamp lifted from another signature (here a keyless one) does not cover this one."""
    candidate = stamped(recorded.key_signature, recorded.stamps["valid"])
    denied(verify_candidate(candidate, DIGEST, key_policy(recorded, tsa_root, now)), Reason.SIGNATURE_INVALID)


def test_tsa_not_in_the_trusted_root(
    sigstore: PrivateSigstore, recorded: Recorded, root: TrustRoot, now: datetime
) -> None:
    candidate = stamped(recorded.key_signature, recorded.stamps["sha256"])
    # A root without any timestamp authority.
    message = denied(
        verify_candidate(candidate, DIGEST, key_policy(recorded, root, now)), Reason.UNTRUSTED_CHAIN
    )
    assert "lists no timestamp authority" in message
    # A root with another authority only (same names, other keys).
    stranger = root_with(sigstore, timestamp_authority_entry(TsaCertificates(intermediate=True).chain))
    message = denied(
        verify_candidate(candidate, DIGEST, key_policy(recorded, stranger, now)), Reason.UNTRUSTED_CHAIN
    )
    assert "not signed by a timestamp authority of the trusted root" in message


def test_tsa_root_trusted_without_the_leaf_pinned(
    sigstore: PrivateSigstore, recorded: Recorded, now: datetime
) -> None:
    """An authority listed by its CA certificates only: the token's own leaf must chain to them."""
    ca_only = root_with(sigstore, timestamp_authority_entry(recorded.tsa.chain[1:]))
    candidate = stamped(recorded.key_signature, recorded.stamps["sha256"])
    details = passed(verify_candidate(candidate, DIGEST, key_policy(recorded, ca_only, now)))
    assert details["timestampAuthority"] == recorded.tsa.subject
    # Without certificates in the token there is nothing to chain; with the leaf pinned there is.
    bare = stamped(recorded.key_signature, recorded.stamps["no_certificates"])
    denied(verify_candidate(bare, DIGEST, key_policy(recorded, ca_only, now)), Reason.UNTRUSTED_CHAIN)
    pinned = root_with(sigstore, timestamp_authority_entry(recorded.tsa.chain))
    passed(verify_candidate(bare, DIGEST, key_policy(recorded, pinned, now)))


def test_tsa_pinned_leaf_differs(sigstore: PrivateSigstore, recorded: Recorded, now: datetime) -> None:
    """The trusted root pins another TSA certificate under the same CA: the token's signer is not it."""
    other_leaf = dataclasses.replace(
        recorded.tsa, leaf_key=ec.generate_private_key(ec.SECP256R1())
    ).leaf_cert  # same CA keys, a new leaf
    chain = (other_leaf, *recorded.tsa.chain[1:])
    root = root_with(sigstore, timestamp_authority_entry(chain))
    candidate = stamped(recorded.key_signature, recorded.stamps["sha256"])
    denied(verify_candidate(candidate, DIGEST, key_policy(recorded, root, now)), Reason.UNTRUSTED_CHAIN)


def test_gen_time_outside_the_authority_window(
    sigstore: PrivateSigstore, recorded: Recorded, now: datetime
) -> None:
    window = (recorded.t0 - timedelta(days=2), recorded.t0 - timedelta(days=1))
    root = root_with(sigstore, timestamp_authority_entry(recorded.tsa.chain, window=window))
    candidate = stamped(recorded.key_signature, recorded.stamps["sha256"])
    message = denied(
        verify_candidate(candidate, DIGEST, key_policy(recorded, root, now)), Reason.UNTRUSTED_CHAIN
    )
    assert "window" in message


def test_altered_token(recorded: Recorded, tsa_root: TrustRoot, now: datetime) -> None:
    """A byte of the TSA's ECDSA signature (the end of the token) flipped: trusted signer, bad signature."""
    response = bytearray(recorded.stamps["sha256"])
    response[-5] ^= 0x01
    candidate = stamped(recorded.key_signature, bytes(response))
    message = denied(
        verify_candidate(candidate, DIGEST, key_policy(recorded, tsa_root, now)), Reason.SIGNATURE_INVALID
    )
    assert "CMS signature" in message


def test_bare_token_accepted(recorded: Recorded, tsa_root: TrustRoot, now: datetime) -> None:
    """A TimeStampToken without its TimeStampResp wrapper (what notation and some clients store)."""
    token = parse_timestamp(recorded.stamps["sha256"]).time_stamp_token()
    candidate = stamped(recorded.key_signature, token)
    details = passed(verify_candidate(candidate, DIGEST, key_policy(recorded, tsa_root, now)))
    assert details["timestamp"] == rfc3339(gen_time(recorded.stamps["sha256"]))


def test_unsorted_certificate_set(recorded: Recorded, tsa_root: TrustRoot, now: datetime) -> None:
    """timestamp-server --include-chain-in-response writes the certificates SET out of DER order;
    rfc3161-client's strict parser rejects that, the verifier sorts that one SET and verifies."""
    with pytest.raises(ValueError, match="InvalidSetOrdering"):
        decode_timestamp_response(recorded.unsorted)
    candidate = stamped(recorded.key_signature, recorded.unsorted)
    details = passed(verify_candidate(candidate, DIGEST, key_policy(recorded, tsa_root, now)))
    assert details["timestampAuthority"] == recorded.tsa.subject


def test_key_signature_timestamp_ignored_without_a_trusted_root(recorded: Recorded, now: datetime) -> None:
    """Like a log entry that is not required: no root, nothing to check it with, nothing reported."""
    candidate = annotated(recorded.key_signature, b"not even JSON")
    details = passed(verify_candidate(candidate, DIGEST, key_policy(recorded, None, now)))
    assert "timestamp" not in details


def _response(status: int) -> bytes:
    return bytes([0x30, 0x05, 0x30, 0x03, 0x02, 0x01, status])


@pytest.mark.parametrize(
    ("annotation", "needle"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b"{}", "SignedRFC3161Timestamp"),
        (b'{"SignedRFC3161Timestamp": 7}', "SignedRFC3161Timestamp"),
        (b'{"SignedRFC3161Timestamp": "not base64!"}', "not valid base64"),
        (b'{"SignedRFC3161Timestamp": "MA=="}', "not a DER TimeStampResp or TimeStampToken"),
        (cosign_timestamp_annotation(_response(2)), "status is 2, not granted"),
        (cosign_timestamp_annotation(_response(0)), "no usable token"),
    ],
)
def test_malformed_timestamps(
    recorded: Recorded, tsa_root: TrustRoot, now: datetime, annotation: bytes, needle: str
) -> None:
    candidate = annotated(recorded.key_signature, annotation)
    message = denied(
        verify_candidate(candidate, DIGEST, key_policy(recorded, tsa_root, now)), Reason.MALFORMED
    )
    assert needle in message


def test_truncated_or_padded_response(recorded: Recorded, tsa_root: TrustRoot) -> None:
    response = recorded.stamps["sha256"]
    for bad in (response[:-1], response + b"\x00", response[:40], b"\x30\x80" + response[2:]):
        with pytest.raises(Failure) as raised:
            verify_timestamp(bad, recorded.key_signature.signature, tsa_root)
        assert raised.value.reason == Reason.MALFORMED


def test_timestamp_annotation_encoding_is_cosigns(recorded: Recorded) -> None:
    """The annotation is JSON with the standard-base64 DER response, as cosign's bundle package writes it."""
    annotation = json.loads(cosign_timestamp_annotation(recorded.stamps["sha256"]))
    assert list(annotation) == ["SignedRFC3161Timestamp"]
    assert base64.b64decode(annotation["SignedRFC3161Timestamp"]) == recorded.stamps["sha256"]


# --- keyless ---------------------------------------------------------------------------------------------


def test_keyless_with_a_log_entry_and_a_timestamp(
    recorded: Recorded, tsa_root: TrustRoot, now: datetime
) -> None:
    candidate = recorded.keyless["valid"]
    details = passed(verify_candidate(candidate, DIGEST, keyless_policy(tsa_root, now)))
    assert details["integratedTime"] == rfc3339(recorded.t0 - timedelta(minutes=1))
    assert details["timestamp"] == rfc3339(gen_time(recorded.stamps["valid"]))
    assert details["timestampAuthority"] == recorded.tsa.subject
    assert details["subject"] == SIGNER


def test_keyless_logged_after_expiry_but_stamped_in_time(
    recorded: Recorded, tsa_root: TrustRoot, now: datetime
) -> None:
    """Decision: every verified time must lie in the validity (cosign, sigstore-python). The timestamp is
    inside it, the log's integration time is not: the log is not outvoted by the TSA."""
    candidate = recorded.keyless["logged_late"]
    message = denied(
        verify_candidate(candidate, DIGEST, keyless_policy(tsa_root, now)), Reason.CERTIFICATE_EXPIRED
    )
    assert "logged at" in message
    # Without the timestamp it is the same verdict: the timestamp neither helps nor hurts here.
    plain = dataclasses.replace(candidate, rfc3161_timestamp=None)
    denied(verify_candidate(plain, DIGEST, keyless_policy(tsa_root, now)), Reason.CERTIFICATE_EXPIRED)


def test_keyless_stamped_after_expiry(recorded: Recorded, tsa_root: TrustRoot, now: datetime) -> None:
    """Logged in time, but the TSA saw the signature only after the certificate expired."""
    candidate = recorded.keyless["stamped_late"]
    message = denied(
        verify_candidate(candidate, DIGEST, keyless_policy(tsa_root, now)), Reason.CERTIFICATE_EXPIRED
    )
    assert "no valid timestamp covers the signing time" in message
    assert rfc3339(gen_time(recorded.stamps["stamped_late"])) in message
    # The same signature without its timestamp verifies on the log's time alone.
    plain = dataclasses.replace(candidate, rfc3161_timestamp=None)
    passed(verify_candidate(plain, DIGEST, keyless_policy(tsa_root, now)))


def test_keyless_timestamp_only_with_the_log_required(
    recorded: Recorded, tsa_root: TrustRoot, now: datetime
) -> None:
    message = denied(
        verify_candidate(recorded.keyless["unlogged"], DIGEST, keyless_policy(tsa_root, now)),
        Reason.TLOG_MISSING,
    )
    assert "RFC 3161" in message and "requires" in message


def test_keyless_timestamp_only_with_the_log_not_required(
    recorded: Recorded, tsa_root: TrustRoot, now: datetime
) -> None:
    policy = keyless_policy(tsa_root, now, require_tlog=False)
    details = passed(verify_candidate(recorded.keyless["unlogged"], DIGEST, policy))
    assert details["timestamp"] == rfc3339(gen_time(recorded.stamps["unlogged"]))
    assert "logIndex" not in details and "integratedTime" not in details
    message = denied(
        verify_candidate(recorded.keyless["unlogged_expired"], DIGEST, policy), Reason.CERTIFICATE_EXPIRED
    )
    assert "no valid timestamp covers the signing time" in message
    # Neither a log entry nor a timestamp: no signing time at all.
    bare = dataclasses.replace(recorded.keyless["unlogged"], rfc3161_timestamp=None)
    denied(verify_candidate(bare, DIGEST, policy), Reason.TLOG_MISSING)


def test_keyless_both_sources_must_verify(
    sigstore: PrivateSigstore,
    other_sigstore: PrivateSigstore,
    recorded: Recorded,
    tsa_root: TrustRoot,
    root: TrustRoot,
    now: datetime,
) -> None:
    candidate = recorded.keyless["valid"]
    # A forged log entry is not excused by a valid timestamp, even when the log is not required.
    body = hashedrekord_body_for(candidate)
    forged = dataclasses.replace(
        candidate,
        rekor_bundle=sigstore.cosign_bundle_annotation(
            body, integrated_time=recorded.t0, key=other_sigstore.rekor_key
        ),
    )
    for require_tlog in (True, False):
        denied(
            verify_candidate(forged, DIGEST, keyless_policy(tsa_root, now, require_tlog=require_tlog)),
            Reason.TLOG_INVALID,
        )
    # A valid log entry does not excuse a timestamp that does not verify.
    denied(verify_candidate(candidate, DIGEST, keyless_policy(root, now)), Reason.UNTRUSTED_CHAIN)
    other = stamped(candidate, recorded.stamps["other"])
    denied(verify_candidate(other, DIGEST, keyless_policy(tsa_root, now)), Reason.SIGNATURE_INVALID)
    malformed = annotated(candidate, b'{"SignedRFC3161Timestamp": "MA=="}')
    denied(verify_candidate(malformed, DIGEST, keyless_policy(tsa_root, now)), Reason.MALFORMED)


@pytest.mark.parametrize("source", ["sha256", "unsorted"])
def test_mutated_tokens_never_raise_nor_change_what_is_reported(
    recorded: Recorded, tsa_root: TrustRoot, now: datetime, source: str
) -> None:
    """Random byte mutations: always a result (warnings are errors here: hostile certificates included),
    and a mutated token that still verifies (unsigned parts: CMS version, untrusted copies of the CA
    certificates, the signature algorithm identifier) reports the original time and authority."""
    response = recorded.unsorted if source == "unsorted" else recorded.stamps["sha256"]
    policy = key_policy(recorded, tsa_root, now)
    original = passed(verify_candidate(stamped(recorded.key_signature, response), DIGEST, policy))
    rng = random.Random(3161)
    for _ in range(400):
        mutated = bytearray(response)
        for _ in range(rng.choice((1, 1, 2, 4))):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        result = verify_candidate(stamped(recorded.key_signature, bytes(mutated)), DIGEST, policy)
        if result.passed:
            assert result.details == original
        else:
            assert result.reason in (Reason.MALFORMED, Reason.SIGNATURE_INVALID, Reason.UNTRUSTED_CHAIN)
