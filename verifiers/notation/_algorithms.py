"""Signature algorithms of the Notary Project envelopes, bound to the leaf certificate's key.

The signing certificate's key decides the algorithm, as the Notary Project signature specification's
key-spec table does: RSA 2048 -> PS256, RSA 3072 -> PS384, RSA 4096 -> PS512, P-256 -> ES256, P-384 -> ES384,
P-521 -> ES512. Any other RSA size or curve is `unsupported_key`; an envelope whose `alg` is not the one its
key dictates is `algorithm_key_mismatch`. (notation-go enforces this binding for COSE; for JWS it lets
golang-jwt accept any listed algorithm for the key. The specification binds both, and so does Countersign:
notation never signs otherwise, so no signature it makes is refused.)

PS256/PS384/PS512 are RSASSA-PSS with MGF1 over the same hash and a salt as long as the digest
(notation's rule; other salt lengths fail). ES256/ES384/ES512 are ECDSA with the signature written as the
fixed-width big-endian r || s (JWS and COSE alike).
"""

from __future__ import annotations

from dataclasses import dataclass

# `ec.ECDSA(...)` imports cryptography's OpenSSL backend on its first call: about 20 ms on the event loop
# in the first verification of a fresh process. Imported here, it is paid when the verifiers are built.
import cryptography.hazmat.backends.openssl.backend  # noqa: F401
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from verifiers.notation._common import EnvelopeReason, fail

__all__ = ["ALGORITHMS", "COSE_ALGORITHMS", "RSA_ALGORITHMS", "Algorithm", "verify_signature"]


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


# The key spec -> algorithm table of the signature specification.
RSA_ALGORITHMS: dict[int, str] = {2048: "PS256", 3072: "PS384", 4096: "PS512"}


def _verify_pss(key: rsa.RSAPublicKey, algorithm: Algorithm, signature: bytes, data: bytes) -> None:
    expected = RSA_ALGORITHMS.get(key.key_size)
    if expected is None:
        fail(
            EnvelopeReason.UNSUPPORTED_KEY,
            f"the signing certificate has an RSA {key.key_size}-bit key; the Notary Project allows"
            f" {', '.join(str(bits) for bits in RSA_ALGORITHMS)} bits",
        )
    if expected != algorithm.name:
        fail(
            EnvelopeReason.ALGORITHM_KEY_MISMATCH,
            f"an RSA {key.key_size}-bit signing key signs with {expected}, not {algorithm.name}",
        )
    if len(signature) != (key.key_size + 7) // 8:
        fail(EnvelopeReason.SIGNATURE_INVALID, f"{algorithm.name} signature has the wrong length for the key")
    digest = algorithm.hash()
    pss = padding.PSS(mgf=padding.MGF1(algorithm.hash()), salt_length=digest.digest_size)
    try:
        key.verify(signature, data, pss, digest)
    except InvalidSignature:
        fail(
            EnvelopeReason.SIGNATURE_INVALID, f"{algorithm.name} signature does not verify with the leaf key"
        )


def _verify_ecdsa(
    key: ec.EllipticCurvePublicKey, algorithm: Algorithm, signature: bytes, data: bytes
) -> None:
    assert algorithm.curve is not None
    if not any(a.curve is not None and isinstance(key.curve, a.curve) for a in ALGORITHMS.values()):
        fail(
            EnvelopeReason.UNSUPPORTED_KEY,
            f"the signing certificate has an ECDSA {key.curve.name} key; the Notary Project allows P-256,"
            " P-384 and P-521",
        )
    if not isinstance(key.curve, algorithm.curve):
        fail(
            EnvelopeReason.ALGORITHM_KEY_MISMATCH,
            f"{algorithm.name} needs an ECDSA {algorithm.curve.name} key, the signing certificate has"
            f" {key.curve.name}",
        )
    width = (key.curve.key_size + 7) // 8
    if len(signature) != 2 * width:
        fail(
            EnvelopeReason.SIGNATURE_INVALID, f"{algorithm.name} signature must be {2 * width} bytes (r || s)"
        )
    r = int.from_bytes(signature[:width], "big")
    s = int.from_bytes(signature[width:], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(algorithm.hash()))
    except InvalidSignature:
        fail(
            EnvelopeReason.SIGNATURE_INVALID, f"{algorithm.name} signature does not verify with the leaf key"
        )


def verify_signature(algorithm: Algorithm, leaf: x509.Certificate, signature: bytes, data: bytes) -> None:
    """Verify `signature` over `data` with the leaf certificate's public key, or raise `EnvelopeError`."""
    try:
        key = leaf.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        fail(EnvelopeReason.UNSUPPORTED_KEY, f"the signing certificate's public key is not usable: {exc}")
    if algorithm.curve is None:
        if not isinstance(key, rsa.RSAPublicKey):
            fail(
                EnvelopeReason.ALGORITHM_KEY_MISMATCH,
                f"{algorithm.name} needs an RSA key, the signing certificate has {type(key).__name__}",
            )
        _verify_pss(key, algorithm, signature, data)
    else:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            fail(
                EnvelopeReason.ALGORITHM_KEY_MISMATCH,
                f"{algorithm.name} needs an ECDSA key, the signing certificate has {type(key).__name__}",
            )
        _verify_ecdsa(key, algorithm, signature, data)
