"""Loading trusted public keys, and which signatures they accept."""

from __future__ import annotations

from typing import Literal

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from tests.support.private_sigstore import PrivateKey, pem_public_key, sign
from verifiers.cosign.keys import load_public_key, verify_prehashed, verify_signature

MESSAGE = b"the bytes that were signed"


def _pem(key: object) -> bytes:
    return pem_public_key(key)


@pytest.mark.parametrize(
    "private",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ec.generate_private_key(ec.SECP521R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=3072),
        ed25519.Ed25519PrivateKey.generate(),
    ],
    ids=["p256", "p384", "p521", "rsa2048", "rsa3072", "ed25519"],
)
def test_accepted_keys_load_and_verify(private: PrivateKey) -> None:
    trusted = load_public_key(_pem(private), "k")
    assert trusted.name == "k"
    assert trusted.rsa_padding == "pkcs1v15"
    assert verify_signature(trusted.key, sign(private, MESSAGE), MESSAGE)
    assert not verify_signature(trusted.key, sign(private, MESSAGE), MESSAGE + b"!")


@pytest.mark.parametrize(
    ("private", "needle"),
    [
        (ec.generate_private_key(ec.SECP192R1()), "secp192r1"),
        (ec.generate_private_key(ec.SECP256K1()), "secp256k1"),
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "1024 bits is too small"),
        (dsa.generate_private_key(key_size=2048), "DSAPublicKey keys are not accepted"),
    ],
    ids=["p192", "secp256k1", "rsa1024", "dsa"],
)
def test_weak_or_foreign_keys_are_rejected(private: object, needle: str) -> None:
    with pytest.raises(ValueError, match="key 'weak'") as caught:
        load_public_key(_pem(private), "weak")
    assert needle in str(caught.value)


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a key",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    ],
    ids=["empty", "garbage", "bad-der", "private-key"],
)
def test_unreadable_pem_is_a_value_error(pem: bytes) -> None:
    with pytest.raises(ValueError, match="key 'k'"):
        load_public_key(pem, "k")


def test_rsa_padding_is_validated() -> None:
    pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(ValueError, match="rsa_padding"):
        load_public_key(pem, "k", rsa_padding="oaep")  # type: ignore[arg-type]


def test_rsa_pss_accepts_digest_and_maximum_salt_lengths() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    trusted = load_public_key(_pem(private), "k", rsa_padding="pss")
    modes: tuple[Literal["pss", "pss-digest"], ...] = ("pss", "pss-digest")
    for mode in modes:
        signature = sign(private, MESSAGE, rsa_padding=mode)
        assert verify_signature(trusted.key, signature, MESSAGE, rsa_padding="pss")
        # A PSS key never accepts PKCS#1 v1.5 signatures, and the other way round.
        assert not verify_signature(trusted.key, signature, MESSAGE, rsa_padding="pkcs1v15")
    assert not verify_signature(trusted.key, sign(private, MESSAGE), MESSAGE, rsa_padding="pss")


def test_ecdsa_uses_the_curve_hash_and_sha256_only_for_legacy_formats() -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    key = private.public_key()
    assert verify_signature(key, sign(private, MESSAGE), MESSAGE)  # SHA-384
    sha256_signature = sign(private, MESSAGE, ec_hash=hashes.SHA256())
    assert not verify_signature(key, sha256_signature, MESSAGE)
    assert verify_signature(key, sha256_signature, MESSAGE, legacy_sha256=True)
    # Never another hash than those two.
    assert not verify_signature(
        key, sign(private, MESSAGE, ec_hash=hashes.SHA512()), MESSAGE, legacy_sha256=True
    )


def test_ecdsa_signatures_must_be_der() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    der = sign(private, MESSAGE)
    assert not verify_signature(private.public_key(), der[:-1], MESSAGE)
    assert not verify_signature(private.public_key(), b"\x00" * 64, MESSAGE)


def test_unsupported_key_objects_never_verify() -> None:
    private = ec.generate_private_key(ec.SECP192R1())
    assert not verify_signature(
        private.public_key(), sign(private, MESSAGE, ec_hash=hashes.SHA256()), MESSAGE
    )
    assert not verify_signature("not a key", b"sig", MESSAGE)


def test_prehashed_message_signatures() -> None:
    import hashlib

    digest = hashlib.sha256(MESSAGE).digest()
    p256 = ec.generate_private_key(ec.SECP256R1())
    assert verify_prehashed(p256.public_key(), sign(p256, MESSAGE), digest)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert verify_prehashed(rsa_key.public_key(), sign(rsa_key, MESSAGE), digest)
    # Wrong digest length, P-384 (its registry hash is SHA-384) and Ed25519 (no prehash) are refused.
    assert not verify_prehashed(p256.public_key(), sign(p256, MESSAGE), digest[:31])
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert not verify_prehashed(p384.public_key(), sign(p384, MESSAGE, ec_hash=hashes.SHA256()), digest)
    ed = ed25519.Ed25519PrivateKey.generate()
    assert not verify_prehashed(ed.public_key(), sign(ed, digest), digest)
