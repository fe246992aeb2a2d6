"""A tiny JWS / COSE_Sign1 signer for notation envelopes, written for these tests only.

It signs whatever it is given, so tests can build envelopes that break one rule at a time.
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

DIGEST = "sha256:" + "ab" * 32
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
SIGNING_TIME = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
COSE_ALG = {"PS256": -37, "PS384": -38, "PS512": -39, "ES256": -7, "ES384": -35, "ES512": -36}
HASHES: dict[str, type[hashes.SHA256] | type[hashes.SHA384] | type[hashes.SHA512]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


@functools.cache
def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_key(curve_name: str) -> ec.EllipticCurvePrivateKey:
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[curve_name]
    return ec.generate_private_key(curve)


@functools.cache
def ed25519_cert() -> x509.Certificate:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    return _certificate(key, "ed25519", None)


def _certificate(key: Any, cn: str, algorithm: hashes.SHA256 | None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, algorithm)
    )


@functools.cache
def certificate(key: PrivateKey, cn: str = "signer") -> x509.Certificate:
    return _certificate(key, cn, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def sign(key: PrivateKey, alg: str, data: bytes, *, pkcs1v15: bool = False, salt: int | None = None) -> bytes:
    """A raw JOSE/COSE signature: PSS (salt = digest length unless told) or r || s for ECDSA."""
    digest = HASHES[alg[2:]]()
    if isinstance(key, rsa.RSAPrivateKey):
        if pkcs1v15:
            return key.sign(data, padding.PKCS1v15(), digest)
        pss = padding.PSS(
            mgf=padding.MGF1(HASHES[alg[2:]]()), salt_length=digest.digest_size if salt is None else salt
        )
        return key.sign(data, pss, digest)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    width = (key.curve.key_size + 7) // 8
    return r.to_bytes(width, "big") + s.to_bytes(width, "big")


def payload_bytes(digest: str = DIGEST, size: int = 1234, **extra: Any) -> bytes:
    target: dict[str, Any] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest}
    target["size"] = size
    target.update(extra)
    return json.dumps({"targetArtifact": target}, separators=(",", ":")).encode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Spec:
    """What to put in an envelope. `headers` are the notation headers (text-labelled), beside alg/cty/crit."""

    key: PrivateKey
    alg: str
    chain: list[x509.Certificate] | None = None  # default: a self-signed certificate of `key`
    headers: dict[str, Any] = field(
        default_factory=lambda: {
            "io.cncf.notary.signingScheme": "notary.x509",
            "io.cncf.notary.signingTime": SIGNING_TIME,
        }
    )
    crit: list[Any] | None = field(default_factory=lambda: ["io.cncf.notary.signingScheme"])
    cty: Any = PAYLOAD_TYPE
    payload: bytes = field(default_factory=payload_bytes)
    signing_agent: str | None = "countersign-tests/1"
    timestamp: bytes | None = None
    include_chain: bool = True
    pkcs1v15: bool = False
    salt: int | None = None
    signing_key: PrivateKey | None = None  # sign with another key than the certificate's
    signing_alg: str | None = None  # sign with another algorithm than the header names

    def certificates(self) -> list[x509.Certificate]:
        return self.chain if self.chain is not None else [certificate(self.key)]

    def raw_signature(self, data: bytes) -> bytes:
        key = self.signing_key or self.key
        return sign(key, self.signing_alg or self.alg, data, pkcs1v15=self.pkcs1v15, salt=self.salt)


def _jws_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def jws_parts(spec: Spec) -> dict[str, Any]:
    """The JWS envelope as a dict (so tests can still tamper with it), correctly signed."""
    protected: dict[str, Any] = {"alg": spec.alg}
    if spec.crit is not None:
        protected["crit"] = spec.crit
    if spec.cty is not None:
        protected["cty"] = spec.cty
    protected.update({k: _jws_value(v) for k, v in spec.headers.items()})
    protected_b64 = b64url(json.dumps(protected).encode())
    payload_b64 = b64url(spec.payload)
    signature = spec.raw_signature(f"{protected_b64}.{payload_b64}".encode())
    header: dict[str, Any] = {}
    if spec.include_chain:
        header["x5c"] = [base64.b64encode(der(c)).decode() for c in spec.certificates()]
    if spec.signing_agent is not None:
        header["io.cncf.notary.signingAgent"] = spec.signing_agent
    if spec.timestamp is not None:
        header["io.cncf.notary.timestampSignature"] = base64.b64encode(spec.timestamp).decode()
    return {
        "payload": payload_b64,
        "protected": protected_b64,
        "header": header,
        "signature": b64url(signature),
    }


def make_jws(spec: Spec) -> bytes:
    return json.dumps(jws_parts(spec)).encode()


def _cose_value(value: Any) -> Any:
    return cbor2.CBORTag(1, int(value.timestamp())) if isinstance(value, datetime) else value


def cose_protected(spec: Spec) -> bytes:
    return cbor2.dumps(cose_protected_map(spec))


def cose_protected_map(spec: Spec) -> dict[Any, Any]:
    """The protected header before encoding (times as tag 1), for tests to edit."""
    protected: dict[Any, Any] = {1: COSE_ALG.get(spec.alg, spec.alg)}
    if spec.crit is not None:
        protected[2] = spec.crit
    if spec.cty is not None:
        protected[3] = spec.cty
    protected.update({k: _cose_value(v) for k, v in spec.headers.items()})
    return protected


def make_cose(spec: Spec, *, protected: bytes | None = None, tag: int | None = 18) -> bytes:
    protected_bytes = cose_protected(spec) if protected is None else protected
    to_sign = cbor2.dumps(["Signature1", protected_bytes, b"", spec.payload])
    unprotected: dict[Any, Any] = {}
    if spec.include_chain:
        certs = [der(c) for c in spec.certificates()]
        unprotected[33] = certs[0] if len(certs) == 1 else certs
    if spec.signing_agent is not None:
        unprotected["io.cncf.notary.signingAgent"] = spec.signing_agent
    if spec.timestamp is not None:
        unprotected["io.cncf.notary.timestampSignature"] = spec.timestamp
    body = [protected_bytes, unprotected, spec.payload, spec.raw_signature(to_sign)]
    return cbor2.dumps(body if tag is None else cbor2.CBORTag(tag, body))
