"""Revocation of the timestamp authority's chain (notation-go's verifyTimestamp, step 5).

The recorded notation-go vectors carry RFC 3161 timestamps from GlobalSign's TSA, whose leaf and
intermediate name OCSP responders and CRLs: the chain is revocable. `evaluate` is pure, so it is driven here
with the outcomes a caller would fetch; the verifier is driven through the in-memory registry of
test_verifier.py and a fetcher that answers nothing (no request leaves the process). Real timestamps from a
local TSA with a local OCSP responder, and `notation verify` agreeing, are in
tests/integration/test_notation_timestamps.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.unit.notation.test_revocation import FakeFetcher
from tests.unit.notation.test_verifier import add_referrer
from verifiers.base import Context, Subject, Undecided
from verifiers.notation._timestamp import verify_countersignature
from verifiers.notation.envelope import JWS_MEDIA_TYPE, VerifiedEnvelope, parse_and_verify
from verifiers.notation.revocation import ChainStatus, RevocationChecker, crl_urls, ocsp_urls
from verifiers.notation.trust import Evaluation, TrustStores, evaluate, load_trust_store_dir
from verifiers.notation.trustpolicy import TrustPolicy, parse_trust_policy
from verifiers.notation.verifier import NotationVerifier
from verifiers.reference import parse_reference
from verifiers.testing import InMemoryRegistry

NOW = datetime.now(UTC)
TS_DIGEST = "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda"
TS_SIZE = 528
TS_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"
STORES = ["ca:valid-trust-store", "tsa:test-timestamp"]
GOOD = ChainStatus("good", "no certificate of the chain is revoked (OCSP/CRL)")
REVOKED = ChainStatus(
    "revoked", "certificate 'CN=Globalsign TSA' (serial 1) was revoked at 2024-07-01 (reason: keyCompromise)"
)
UNAVAILABLE = ChainStatus("unavailable", "the revocation status of 'CN=Globalsign TSA' is unavailable")


def _document(level: str = "strict", stores: list[str] | None = None, **verification: Any) -> dict[str, Any]:
    return {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "stamped",
                "registryScopes": ["*"],
                "signatureVerification": {"level": level, "verifyTimestamp": "always", **verification},
                "trustStores": STORES if stores is None else stores,
                "trustedIdentities": ["*"],
            }
        ],
    }


def _policy(level: str = "strict", stores: list[str] | None = None, **verification: Any) -> TrustPolicy:
    found = parse_trust_policy(_document(level, stores, **verification)).policy_for("registry.test/repo")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def stores(notation_testdata: Path) -> TrustStores:
    return load_trust_store_dir(notation_testdata / "truststore")


@pytest.fixture(scope="module")
def stamped_bytes(notation_testdata: Path) -> bytes:
    return (notation_testdata / "timestamp" / "jwsWithTimestamp.sig").read_bytes()


@pytest.fixture(scope="module")
def stamped(stamped_bytes: bytes) -> VerifiedEnvelope:
    return parse_and_verify(stamped_bytes, JWS_MEDIA_TYPE)


def _run(
    envelope: VerifiedEnvelope,
    policy: TrustPolicy,
    stores: TrustStores,
    timestamp_revocation: ChainStatus | None = None,
) -> Evaluation:
    return evaluate(
        envelope,
        TS_DIGEST,
        TS_SIZE,
        TS_MEDIA,
        policy,
        stores,
        NOW,
        timestamp_revocation=timestamp_revocation,
    )


def test_the_tsa_chain_is_rebuilt_to_the_trusted_root(stamped: VerifiedEnvelope, stores: TrustStores) -> None:
    [root] = stores[("tsa", "test-timestamp")]
    token = stamped.signer.timestamp_token
    assert token is not None
    verified = verify_countersignature(token, stamped.signer.signature, [root])
    subjects = [cert.subject.rfc4514_string() for cert in verified.chain]
    assert subjects[0].startswith("CN=Globalsign TSA for Advanced - G4")
    assert subjects[1].startswith("CN=GlobalSign Timestamping CA - SHA384 - G4")
    assert verified.chain[-1] == root and len(verified.chain) == 3
    # What makes it revocable: the leaf and the intermediate name OCSP responders and CRLs.
    assert all(ocsp_urls(cert) and crl_urls(cert) for cert in verified.chain[:-1])


def test_strict_asks_for_the_tsa_chain_status_and_applies_it(
    stamped: VerifiedEnvelope, stores: TrustStores
) -> None:
    policy = _policy()
    first = _run(stamped, policy, stores)
    assert (
        first.needs_timestamp_revocation and not first.needs_revocation
    )  # the signing leaf is not revocable
    assert first.timestamp_chain[0].subject.rfc4514_string().startswith("CN=Globalsign TSA")
    # Without an outcome nothing passes: undecided, not failed.
    assert not first.passed and first.failed is None and first.undecided is not None
    assert first.timestamp is None

    good = _run(stamped, policy, stores, GOOD)
    assert good.passed and good.timestamp is not None and good.timestamp.year == 2024
    assert "the TSA chain is not revoked" in good.results["authenticTimestamp"].message

    revoked = _run(stamped, policy, stores, REVOKED)
    assert revoked.failed is not None and revoked.failed.validation == "authenticTimestamp"
    assert "is not trusted: its timestamping chain is revoked" in revoked.failed.message
    assert "keyCompromise" in revoked.failed.message
    assert revoked.results["revocation"].passed is None  # not evaluated after the enforced failure
    assert revoked.timestamp is None

    unavailable = _run(stamped, policy, stores, UNAVAILABLE)
    assert not unavailable.passed and unavailable.failed is None
    assert unavailable.undecided is not None and "is unavailable" in unavailable.undecided
    result = unavailable.results["authenticTimestamp"]
    assert result.passed is None and result.unavailable
    assert unavailable.timestamp is None


def test_permissive_logs_a_revoked_or_unknown_tsa(stamped: VerifiedEnvelope, stores: TrustStores) -> None:
    policy = _policy("permissive")
    assert _run(stamped, policy, stores).needs_timestamp_revocation  # logged validations are checked too
    for outcome, unavailable in ((REVOKED, False), (UNAVAILABLE, True)):
        result = _run(stamped, policy, stores, outcome)
        assert result.passed, result.results
        [logged] = result.logged
        assert (logged.validation, logged.unavailable) == ("authenticTimestamp", unavailable)
        assert result.timestamp is None  # an untrusted timestamp is not reported


def test_the_tsa_check_belongs_to_authentic_timestamp(stamped: VerifiedEnvelope, stores: TrustStores) -> None:
    # Skipping `revocation` does not skip it (notation checks the TSA chain inside verifyTimestamp) ...
    no_revocation = _policy(override={"revocation": "skip"})
    assert _run(stamped, no_revocation, stores).needs_timestamp_revocation
    revoked = _run(stamped, no_revocation, stores, REVOKED)
    assert revoked.failed is not None and revoked.failed.validation == "authenticTimestamp"
    # ... skipping `authenticTimestamp` does, and so does a policy without a tsa store (no timestamp check).
    no_timestamp = _policy(override={"authenticTimestamp": "skip"})
    assert not _run(stamped, no_timestamp, stores).needs_timestamp_revocation
    assert _run(stamped, no_timestamp, stores).passed
    no_tsa = _policy(stores=["ca:valid-trust-store"])
    assert not _run(stamped, no_tsa, stores).needs_timestamp_revocation


# --- through the verifier: the TSA's responders cannot be reached ------------------------------------------


@pytest.fixture
def subject() -> Subject:
    return Subject(
        reference=parse_reference(f"registry.test/shop/app@{TS_DIGEST}"),
        digest=TS_DIGEST,
        media_type=TS_MEDIA,
        size=TS_SIZE,
        manifest=b"{}",
    )


def _verifier(notation_testdata: Path, fetcher: FakeFetcher, level: str) -> NotationVerifier:
    options = {"trustPolicy": _document(level), "trustStore": str(notation_testdata / "truststore")}
    return NotationVerifier("notary", options, revocation=RevocationChecker(fetcher))


async def test_verifier_tsa_status_unavailable_is_undecided(
    notation_testdata: Path, stamped_bytes: bytes, subject: Subject
) -> None:
    registry = InMemoryRegistry()
    add_referrer(registry, subject, stamped_bytes)
    fetcher = FakeFetcher({})  # every responder refuses the connection
    verifier = _verifier(notation_testdata, fetcher, "strict")
    with pytest.raises(Undecided) as caught:
        await verifier.verify(subject, Context(registry=registry, deadline=1e12))
    assert caught.value.reason == "revocation_unavailable"
    assert "timestamping chain" in caught.value.message and "connection refused" in caught.value.message
    # Both revocable TSA certificates were asked about (OCSP, then the CRL), the root never.
    urls = [url for url, _ in fetcher.calls]
    assert urls == [
        "http://ocsp.globalsign.com/ca/gstsacasha384g4",
        "http://crl.globalsign.com/ca/gstsacasha384g4.crl",
        "http://ocsp2.globalsign.com/rootr6",
        "http://crl.globalsign.com/root-r6.crl",
    ]


async def test_verifier_permissive_logs_an_unavailable_tsa_status(
    notation_testdata: Path, stamped_bytes: bytes, subject: Subject
) -> None:
    registry = InMemoryRegistry()
    add_referrer(registry, subject, stamped_bytes)
    verifier = _verifier(notation_testdata, FakeFetcher({}), "permissive")
    report = await verifier.verify(subject, Context(registry=registry, deadline=1e12))
    assert report.passed and report.reason == "notation_verified", report
    [entry] = report.details["signatures"]
    assert [(e["validation"], e["unavailable"]) for e in entry["logged"]] == [("authenticTimestamp", True)]
    assert entry["timestamp"] is None
