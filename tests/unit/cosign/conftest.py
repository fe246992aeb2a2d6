"""Fixtures for the cosign core's unit tests: a private Sigstore, policies, recorded vectors, no network.

The recorded vectors live in ``../shared/testdata`` (relative to the repository root) and are read in
place. When that directory is missing, the tests that need it skip, or fail under ``CI=true``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.private_sigstore import DEFAULT_ISSUER, EPOCH_2024, PrivateSigstore
from tests.support.tools import in_ci
from verifiers.cosign.model import Identity, TrustPolicy
from verifiers.cosign.trustroot import TrustRoot

REPO_ROOT = Path(__file__).resolve().parents[3]
TESTDATA = REPO_ROOT.parent / "shared" / "testdata"
#: A digest the generated signatures vouch for, and another one.
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
NOW = EPOCH_2024 + timedelta(days=1)
SIGNER = "signer@example.test"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Verification is offline: any connection attempt (TUF, Rekor, Fulcio) fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted during an offline test: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.fixture(scope="session")
def testdata() -> Path:
    """``../shared/testdata`` (recorded vectors); skip when absent, fail under ``CI=true``."""
    if not TESTDATA.is_dir():
        message = f"recorded test vectors not found at {TESTDATA}"
        if in_ci():
            pytest.fail(f"{message} (CI=true: missing test data fails the run)", pytrace=False)
        pytest.skip(message)
    return TESTDATA


@pytest.fixture(scope="session")
def sigstore() -> PrivateSigstore:
    return PrivateSigstore()


@pytest.fixture(scope="session")
def other_sigstore() -> PrivateSigstore:
    """An unrelated instance: its CAs and log keys are trusted by nobody."""
    return PrivateSigstore(name="other-sigstore")


@pytest.fixture(scope="session")
def root(sigstore: PrivateSigstore) -> TrustRoot:
    return sigstore.trust_root()


@pytest.fixture(scope="session")
def identity() -> Identity:
    return Identity(name="signer", subject=SIGNER, issuer=DEFAULT_ISSUER)


@pytest.fixture(scope="session")
def keyless_policy(root: TrustRoot, identity: Identity) -> TrustPolicy:
    return TrustPolicy(identities=(identity,), trusted_root=root, now=NOW)


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())
