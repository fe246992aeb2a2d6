"""Public keys: loading the ones a policy trusts, and checking signatures with them.

Accepted key types (the Sigstore algorithm registry, minus the weak ones):

- ECDSA P-256, P-384, P-521, DER (ASN.1) signatures, hashed with the curve's hash (SHA-256, SHA-384,
  SHA-512). Simple-signing signatures made by cosign v2 with an imported P-384/P-521 key are hashed with
  SHA-256 (cosign v2 hard-codes SHA-256 for file keys), so for those formats SHA-256 is accepted as well
  (`legacy_sha256=True`); bundles follow the registry strictly.
- RSA of 2048 bits or more, SHA-256, PKCS#1 v1.5 or PSS (per key). PSS salt length is detected from the
  signature, as Go's `rsa.VerifyPSS` with `PSSSaltLengthAuto` does for cosign and sigstore/sigstore: Go
  signers use the maximum salt length, OpenSSL-style signers the digest length; both verify.
- Ed25519 (pure, over the message itself).
"""

from __future__ import annotations

import hashlib
from typing import Literal

# `ec.ECDSA(...)` imports cryptography's OpenSSL backend on its first call: about 20 ms on the event loop
# in the first verification of a fresh process. Imported here, it is paid when the verifiers are built.
import cryptography.hazmat.backends.openssl.backend  # noqa: F401
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from verifiers.cosign.model import TrustedKey

__all__ = [
    "PublicKey",
    "check_key_type",
    "key_id",
    "load_public_key",
    "spki_der",
    "verify_prehashed",
    "verify_signature",
]

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384  # bounds verification cost


def check_key_type(key: object) -> PublicKey:
    """`key` if it is an accepted public key, else ValueError saying why not."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_HASH:
            raise ValueError(f"ECDSA curve {key.curve.name} is not accepted (use P-256, P-384 or P-521)")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is too small (at least {MIN_RSA_BITS})")
        if key.key_size > MAX_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits is too large (at most {MAX_RSA_BITS})")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise ValueError(f"{type(key).__name__} keys are not accepted (use ECDSA, RSA or Ed25519)")


def load_public_key(
    pem: bytes, name: str, rsa_padding: Literal["pkcs1v15", "pss"] = "pkcs1v15"
) -> TrustedKey:
    """Load a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) as a `TrustedKey` called `name`.

    Raises ValueError naming the key when the PEM is unreadable or the key type or size is not accepted.
    """
    if rsa_padding not in ("pkcs1v15", "pss"):
        raise ValueError(f"key {name!r}: rsa_padding must be 'pkcs1v15' or 'pss', not {rsa_padding!r}")
    if b"-----BEGIN PUBLIC KEY-----" not in pem:
        raise ValueError(f"key {name!r}: expected a PEM 'PUBLIC KEY' (SubjectPublicKeyInfo) block")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"key {name!r}: cannot parse the PEM public key: {exc}") from None
    except Exception as exc:  # cryptography's UnsupportedAlgorithm (e.g. DSA with odd parameters)
        raise ValueError(f"key {name!r}: unsupported public key: {exc}") from None
    try:
        accepted = check_key_type(key)
    except ValueError as exc:
        raise ValueError(f"key {name!r}: {exc}") from None
    return TrustedKey(name=name, key=accepted, rsa_padding=rsa_padding)


def spki_der(key: PublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of `key` (what Sigstore key IDs and log bodies are computed over)."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: PublicKey) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo (Rekor's log ID, CT's log ID)."""
    return hashlib.sha256(spki_der(key)).digest()


def _ecdsa_hashes(key: ec.EllipticCurvePublicKey, legacy_sha256: bool) -> list[hashes.HashAlgorithm]:
    preferred = _CURVE_HASH[key.curve.name]()
    if legacy_sha256 and not isinstance(preferred, hashes.SHA256):
        return [preferred, hashes.SHA256()]
    return [preferred]


def _rsa_padding(rsa_padding: str) -> padding.AsymmetricPadding:
    if rsa_padding == "pss":
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    return padding.PKCS1v15()


def verify_signature(
    key: object,
    signature: bytes,
    data: bytes,
    *,
    rsa_padding: str = "pkcs1v15",
    legacy_sha256: bool = False,
) -> bool:
    """Whether `signature` is a valid signature of `data` by `key` (algorithms: see the module docstring)."""
    try:
        accepted = check_key_type(key)
    except ValueError:
        return False
    try:
        if isinstance(accepted, ec.EllipticCurvePublicKey):
            for algorithm in _ecdsa_hashes(accepted, legacy_sha256):
                try:
                    accepted.verify(signature, data, ec.ECDSA(algorithm))
                    return True
                except InvalidSignature:
                    continue
            return False
        if isinstance(accepted, rsa.RSAPublicKey):
            accepted.verify(signature, data, _rsa_padding(rsa_padding), hashes.SHA256())
            return True
        accepted.verify(signature, data)
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_prehashed(key: object, signature: bytes, digest: bytes, *, rsa_padding: str = "pkcs1v15") -> bool:
    """Whether `signature` signs the SHA-256 `digest` (a Sigstore message signature over an artifact).

    ECDSA and RSA sign the digest directly. ECDSA keys whose registry hash is not SHA-256 cannot have signed
    a SHA-256 message digest, and Ed25519 signs messages, not digests: both are refused.
    """
    if len(digest) != hashlib.sha256().digest_size:
        return False
    try:
        accepted = check_key_type(key)
    except ValueError:
        return False
    algorithm = Prehashed(hashes.SHA256())
    try:
        if isinstance(accepted, ec.EllipticCurvePublicKey):
            if _CURVE_HASH[accepted.curve.name] is not hashes.SHA256:
                return False
            accepted.verify(signature, digest, ec.ECDSA(algorithm))
            return True
        if isinstance(accepted, rsa.RSAPublicKey):
            accepted.verify(signature, digest, _rsa_padding(rsa_padding), algorithm)
            return True
        return False
    except (InvalidSignature, ValueError):
        return False
