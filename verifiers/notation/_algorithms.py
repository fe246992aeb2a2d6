"""Signature algorithms of the Notary Project envelopes, bound to the leaf certificate's key.

PS256/PS384/PS512 are RSASSA-PSS with MGF1 over the same hash and a salt as long as the digest
(notation's rule; other salt lengths fail); they require an RSA key of at least `Limits.min_rsa_bits`.
ES256/ES384/ES512 are ECDSA on P-256/P-384/P-521 exactly, with the signature written as the fixed-width
big-endian r || s (JWS and COSE alike). Anything else is `algorithm_key_mismatch`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from verifiers.notation._common import LIMITS, Reason, fail

__all__ = ["ALGORITHMS", "COSE_ALGORITHMS", "Algorithm", "verify_signature"]


@dataclass(frozen=True, slots=True)
class Algorithm:
    name: str  # the JOSE name, e.g. "PS256"
    cose: int  # the COSE algorithm identifier
    hash: type[hashes.SHA256] | type[hashes.SHA384] | type[hashes.SHA512]
    curve: type[ec.EllipticCurve] | None  # None for RSASSA-PSS


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("PS256", -37, hashes.SHA256, None),
        Algorithm("PS384", -38, hashes.SHA384, None),
        Algorithm("PS512", -39, hashes.SHA512, None),
        Algorithm("ES256", -7, hashes.SHA256, ec.SECP256R1),
        Algorithm("ES384", -35, hashes.SHA384, ec.SECP384R1),
        Algorithm("ES512", -36, hashes.SHA512, ec.SECP521R1),
    )
}
COSE_ALGORITHMS: dict[int, Algorithm] = {a.cose: a for a in ALGORITHMS.values()}


def _verify_pss(key: rsa.RSAPublicKey, algorithm: Algorithm, signature: bytes, data: bytes) -> None:
    if not LIMITS.min_rsa_bits <= key.key_size <= LIMITS.max_rsa_bits:
        fail(
            Reason.UNSUPPORTED_KEY,
            f"{algorithm.name} needs an RSA key of {LIMITS.min_rsa_bits} to {LIMITS.max_rsa_bits} bits,"
            f" the signing certificate has {key.key_size}",
        )
    if len(signature) != (key.key_size + 7) // 8:
        fail(Reason.SIGNATURE_INVALID, f"{algorithm.name} signature has the wrong length for the key")
    digest = algorithm.hash()
    pss = padding.PSS(mgf=padding.MGF1(algorithm.hash()), salt_length=digest.digest_size)
    try:
        key.verify(signature, data, pss, digest)
    except InvalidSignature:
        fail(Reason.SIGNATURE_INVALID, f"{algorithm.name} signature does not verify with the leaf key")


def _verify_ecdsa(
    key: ec.EllipticCurvePublicKey, algorithm: Algorithm, signature: bytes, data: bytes
) -> None:
    assert algorithm.curve is not None
    if not isinstance(key.curve, algorithm.curve):
        fail(
            Reason.ALGORITHM_KEY_MISMATCH,
            f"{algorithm.name} needs an ECDSA {algorithm.curve.name} key, the signing certificate has"
            f" {key.curve.name}",
        )
    width = (key.curve.key_size + 7) // 8
    if len(signature) != 2 * width:
        fail(Reason.SIGNATURE_INVALID, f"{algorithm.name} signature must be {2 * width} bytes (r || s)")
    r = int.from_bytes(signature[:width], "big")
    s = int.from_bytes(signature[width:], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(algorithm.hash()))
    except InvalidSignature:
        fail(Reason.SIGNATURE_INVALID, f"{algorithm.name} signature does not verify with the leaf key")


def verify_signature(algorithm: Algorithm, leaf: x509.Certificate, signature: bytes, data: bytes) -> None:
    """Verify `signature` over `data` with the leaf certificate's public key, or raise `EnvelopeError`."""
    try:
        key = leaf.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        fail(Reason.UNSUPPORTED_KEY, f"the signing certificate's public key is not usable: {exc}")
    if algorithm.curve is None:
        if not isinstance(key, rsa.RSAPublicKey):
            fail(
                Reason.ALGORITHM_KEY_MISMATCH,
                f"{algorithm.name} needs an RSA key, the signing certificate has {type(key).__name__}",
            )
        _verify_pss(key, algorithm, signature, data)
    else:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            fail(
                Reason.ALGORITHM_KEY_MISMATCH,
                f"{algorithm.name} needs an ECDSA key, the signing certificate has {type(key).__name__}",
            )
        _verify_ecdsa(key, algorithm, signature, data)
