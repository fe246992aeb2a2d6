"""A private Sigstore instance for tests: Fulcio-like CAs, a Rekor-like log, a CT log, and a trusted root.

Everything is generated in memory with `cryptography`; nothing touches the network. ``PrivateSigstore()``
creates a P-384 root CA and intermediate (Fulcio's shape), a P-256 Rekor log key and a P-256 CT log key;
``trusted_root_json()`` lists them in a Sigstore trusted root (`application/vnd.dev.sigstore.trustedroot+json;
version=0.1`, the shape sigstore-python's ``TrustedRoot.from_file`` reads), and ``trust_root()`` parses it
with the core's loader.

``issue()`` makes Fulcio-like leaf certificates: empty subject, critical SAN (email or URI), digitalSignature
and codeSigning, the OIDC issuer in both Fulcio extensions (1.3.6.1.4.1.57264.1.1 raw, .1.8 DER UTF8String),
the GitHub workflow extensions (.1.2-.1.6) on request, and an embedded SCT from the CT log (RFC 6962
precertificate signature, so the core's SCT check has something real to verify).

The log side: entry bodies (``hashedrekord_body``, ``dsse_body``, ``intoto_body``), signed entry timestamps
(``cosign_bundle_annotation``: the ``dev.sigstore.cosign/bundle`` JSON) and bundle log entries with an
inclusion promise and/or an RFC 6962 inclusion proof and signed checkpoint (``tlog_entry``).

Candidates: ``keyless_signature`` / ``key_signature`` (simple signing), ``key_bundle_dsse`` /
``key_bundle_message`` (Sigstore bundle v0.3 with a public-key hint), ``legacy_attestation`` (a `.att` DSSE
layer with its annotations).

To store a simple-signing candidate in a registry as cosign does, ``cosign_layer_annotations`` gives its
layer's annotations (signature, certificate, chain, SET); ``hashedrekord_body_for`` gives its log entry body
(to sign a SET for it with another key, or at another time).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from tests.support import pki
from verifiers.cosign.model import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_RFC3161,
    ANNOTATION_SIGNATURE,
    ARTIFACT_TYPE_BUNDLE,
    PREDICATE_TYPE_SIGN,
    BundleCandidate,
    SimpleSigningCandidate,
)
from verifiers.cosign.trustroot import TRUSTED_ROOT_MEDIA_TYPE, TrustRoot, load_trusted_root

__all__ = [
    "DEFAULT_ISSUER",
    "EPOCH_2024",
    "GITHUB_OIDS",
    "IN_TOTO_TYPE",
    "Leaf",
    "PrivateKey",
    "PrivateSigstore",
    "cosign_layer_annotations",
    "dsse_body",
    "dsse_envelope",
    "dsse_pae",
    "hashedrekord_body",
    "hashedrekord_body_for",
    "hashedrekord_v002_body",
    "intoto_body",
    "merkle_audit_path",
    "merkle_leaf_hash",
    "merkle_tree_hash",
    "pem_certificate",
    "pem_public_key",
    "sign",
    "sign_digest",
    "simple_signing_payload",
    "statement",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

DEFAULT_ISSUER = "https://issuer.example.test"
IN_TOTO_TYPE = "application/vnd.in-toto+json"
#: The fixed "now" of generated material: CAs are valid around it, leaves are issued at it.
EPOCH_2024 = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)

OID_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
GITHUB_OIDS: dict[str, ObjectIdentifier] = {
    "trigger": ObjectIdentifier("1.3.6.1.4.1.57264.1.2"),
    "sha": ObjectIdentifier("1.3.6.1.4.1.57264.1.3"),
    "name": ObjectIdentifier("1.3.6.1.4.1.57264.1.4"),
    "repository": ObjectIdentifier("1.3.6.1.4.1.57264.1.5"),
    "ref": ObjectIdentifier("1.3.6.1.4.1.57264.1.6"),
}


# --- small helpers --------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"\x0c" + _der_length(len(raw)) + raw


def _der_octet_string(raw: bytes) -> bytes:
    return b"\x04" + _der_length(len(raw)) + raw


def pem_certificate(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def pem_public_key(key: Any) -> bytes:
    """PEM SubjectPublicKeyInfo of a private or public key."""
    public = key.public_key() if hasattr(key, "public_key") else key
    data: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def _spki_der(public: Any) -> bytes:
    data: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def _ec_hash(key: ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]


def sign(
    key: PrivateKey,
    data: bytes,
    *,
    rsa_padding: Literal["pkcs1v15", "pss", "pss-digest"] = "pkcs1v15",
    ec_hash: hashes.HashAlgorithm | None = None,
) -> bytes:
    """Sign like cosign: ECDSA with the curve's hash (DER), RSA SHA-256 (PKCS#1 v1.5, or PSS with the maximum
    salt length as Go signs, or ``pss-digest`` with a digest-length salt), Ed25519 pure."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(ec_hash or _ec_hash(key)))
    if isinstance(key, rsa.RSAPrivateKey):
        if rsa_padding == "pkcs1v15":
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        salt = padding.PSS.MAX_LENGTH if rsa_padding == "pss" else padding.PSS.DIGEST_LENGTH
        return key.sign(
            data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt), hashes.SHA256()
        )
    return key.sign(data)


def sign_digest(key: PrivateKey, digest: bytes) -> bytes:
    """A message signature over a SHA-256 digest (Sigstore's `messageSignature`)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    raise TypeError("Ed25519 cannot sign a digest")


def simple_signing_payload(
    digest: str,
    reference: str = "registry.example.test/app",
    *,
    kind: str = "cosign container image signature",
    optional: Mapping[str, Any] | None = None,
) -> bytes:
    document = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": kind,
        },
        "optional": dict(optional or {}),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def statement(
    digest: str,
    predicate_type: str = PREDICATE_TYPE_SIGN,
    *,
    statement_type: str = "https://in-toto.io/Statement/v1",
    predicate: Mapping[str, Any] | None = None,
) -> bytes:
    algorithm, _, hex_value = digest.partition(":")
    document = {
        "_type": statement_type,
        "subject": [{"name": "registry.example.test/app", "digest": {algorithm: hex_value}}],
        "predicateType": predicate_type,
        "predicate": dict(predicate or {}),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def dsse_pae(payload_type: str, payload: bytes) -> bytes:
    type_bytes = payload_type.encode()
    return (
        b"DSSEv1 "
        + str(len(type_bytes)).encode()
        + b" "
        + type_bytes
        + b" "
        + str(len(payload)).encode()
        + b" "
        + payload
    )


def dsse_envelope(
    payload: bytes, signatures: Sequence[bytes], payload_type: str = IN_TOTO_TYPE
) -> dict[str, Any]:
    return {
        "payloadType": payload_type,
        "payload": _b64(payload),
        "signatures": [{"keyid": "", "sig": _b64(sig)} for sig in signatures],
    }


# --- entry bodies ---------------------------------------------------------------------------------------


def hashedrekord_body(signature: bytes, content_sha256: bytes, verifier_pem: bytes) -> bytes:
    return rfc8785.dumps(
        {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": content_sha256.hex()}},
                "signature": {"content": _b64(signature), "publicKey": {"content": _b64(verifier_pem)}},
            },
        }
    )


def hashedrekord_v002_body(
    digest: bytes, signature: bytes, verifier_der: bytes, *, certificate: bool
) -> bytes:
    holder = "x509Certificate" if certificate else "publicKey"
    return rfc8785.dumps(
        {
            "apiVersion": "0.0.2",
            "kind": "hashedrekord",
            "spec": {
                "hashedRekordV002": {
                    "data": {"algorithm": "SHA2_256", "digest": _b64(digest)},
                    "signature": {
                        "content": _b64(signature),
                        "verifier": {
                            holder: {"rawBytes": _b64(verifier_der)},
                            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        },
                    },
                }
            },
        }
    )


def dsse_body(payload: bytes, envelope_json: bytes, signatures: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A Rekor `dsse` 0.0.1 body; `signatures` are (signature, verifier PEM) pairs."""
    return rfc8785.dumps(
        {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(envelope_json).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": _b64(sig), "verifier": _b64(pem)} for sig, pem in signatures],
            },
        }
    )


def intoto_body(payload: bytes, envelope_json: bytes, signature: bytes, verifier_pem: bytes) -> bytes:
    """A Rekor `intoto` 0.0.2 body (the envelope's base64 signature text is base64-encoded once more)."""
    return rfc8785.dumps(
        {
            "apiVersion": "0.0.2",
            "kind": "intoto",
            "spec": {
                "content": {
                    "envelope": {
                        "payloadType": IN_TOTO_TYPE,
                        "signatures": [
                            {"sig": _b64(_b64(signature).encode()), "publicKey": _b64(verifier_pem)}
                        ],
                    },
                    "hash": {"algorithm": "sha256", "value": hashlib.sha256(envelope_json).hexdigest()},
                    "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                }
            },
        }
    )


# --- Merkle trees (RFC 6962) ----------------------------------------------------------------------------


def merkle_leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    k = 1
    while k * 2 < size:
        k *= 2
    return k


def merkle_tree_hash(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node_hash(merkle_tree_hash(leaves[:k]), merkle_tree_hash(leaves[k:]))


def merkle_audit_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*merkle_audit_path(index, leaves[:k]), merkle_tree_hash(leaves[k:])]
    return [*merkle_audit_path(index - k, leaves[k:]), merkle_tree_hash(leaves[:k])]


# --- the instance ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return pem_certificate(self.certificate)


@dataclass
class PrivateSigstore:
    """A throw-away Sigstore: Fulcio-like CAs, a Rekor-like log key, a CT log key."""

    name: str = "private-sigstore"
    ca_not_before: datetime = EPOCH_2024 - timedelta(days=365)
    ca_not_after: datetime = EPOCH_2024 + timedelta(days=3650)
    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    intermediate_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    rekor_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    ct_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    root_cert: x509.Certificate = field(init=False)
    intermediate_cert: x509.Certificate = field(init=False)
    _serial: int = field(default=1000, init=False)

    def __post_init__(self) -> None:
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} root"),
            ]
        )
        builder = pki.base_builder(
            root_name, root_name, self.root_key.public_key(), self.ca_not_before, self.ca_not_after
        )
        builder = pki.with_ca_extensions(builder, self.root_key.public_key(), self.root_key.public_key(), 1)
        self.root_cert = builder.sign(self.root_key, hashes.SHA384())
        intermediate_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.name),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} intermediate"),
            ]
        )
        builder = pki.base_builder(
            intermediate_name,
            root_name,
            self.intermediate_key.public_key(),
            self.ca_not_before,
            self.ca_not_after,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        builder = pki.with_ca_extensions(
            builder, self.intermediate_key.public_key(), self.root_key.public_key(), 0
        )
        self.intermediate_cert = builder.sign(self.root_key, hashes.SHA384())

    # -- identifiers --

    @property
    def log_id(self) -> bytes:
        return hashlib.sha256(_spki_der(self.rekor_key.public_key())).digest()

    @property
    def ct_log_id(self) -> bytes:
        return hashlib.sha256(_spki_der(self.ct_key.public_key())).digest()

    @property
    def chain_pem(self) -> bytes:
        """The `dev.sigstore.cosign/chain` annotation: intermediate then root."""
        return pem_certificate(self.intermediate_cert) + pem_certificate(self.root_cert)

    # -- trusted root --

    def trusted_root_document(
        self,
        *,
        ca_window: tuple[datetime, datetime | None] | None = None,
        log_window: tuple[datetime, datetime | None] | None = None,
        include_ct: bool = True,
        include_ca: bool = True,
    ) -> dict[str, Any]:
        def window(value: tuple[datetime, datetime | None] | None, default_start: datetime) -> dict[str, str]:
            start, end = value if value is not None else (default_start, None)
            out = {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ")}
            if end is not None:
                out["end"] = end.strftime("%Y-%m-%dT%H:%M:%SZ")
            return out

        def log(
            key: ec.EllipticCurvePrivateKey, url: str, log_id: bytes, valid: dict[str, str]
        ) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": _b64(_spki_der(key.public_key())),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": valid,
                },
                "logId": {"keyId": _b64(log_id)},
            }

        document: dict[str, Any] = {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [
                log(
                    self.rekor_key,
                    f"https://rekor.{self.name}.test",
                    self.log_id,
                    window(log_window, self.ca_not_before),
                )
            ],
            "certificateAuthorities": [],
            "ctlogs": [],
            "timestampAuthorities": [],
        }
        if include_ca:
            document["certificateAuthorities"].append(
                {
                    "subject": {"organization": self.name, "commonName": self.name},
                    "uri": f"https://fulcio.{self.name}.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))}
                            for c in (self.intermediate_cert, self.root_cert)
                        ]
                    },
                    "validFor": window(ca_window, self.ca_not_before),
                }
            )
        if include_ct:
            document["ctlogs"].append(
                log(
                    self.ct_key,
                    f"https://ctfe.{self.name}.test",
                    self.ct_log_id,
                    window(None, self.ca_not_before),
                )
            )
        return document

    def trusted_root_json(self, **options: Any) -> bytes:
        return json.dumps(self.trusted_root_document(**options), indent=2).encode()

    def write_trusted_root(self, path: Path, **options: Any) -> Path:
        path.write_bytes(self.trusted_root_json(**options))
        return path

    def trust_root(self, **options: Any) -> TrustRoot:
        return load_trusted_root(self.trusted_root_json(**options))

    # -- Fulcio --

    def issue(
        self,
        *,
        email: str | None = "signer@example.test",
        uri: str | None = None,
        issuer: str | None = DEFAULT_ISSUER,
        issuer_v1: bool = True,
        issuer_v2: bool = True,
        github: Mapping[str, str] | None = None,
        not_before: datetime = EPOCH_2024,
        lifetime: timedelta = timedelta(minutes=10),
        code_signing: bool = True,
        sct: bool = True,
        sct_key: ec.EllipticCurvePrivateKey | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> Leaf:
        """A Fulcio-like code-signing certificate for `email` or `uri`, issued by the intermediate."""
        leaf_key = key or ec.generate_private_key(ec.SECP256R1())
        self._serial += 1
        names: list[x509.GeneralName] = []
        if email is not None:
            names.append(x509.RFC822Name(email))
        if uri is not None:
            names.append(x509.UniformResourceIdentifier(uri))
        builder = (
            pki.base_builder(
                x509.Name([]),
                self.intermediate_cert.subject,
                leaf_key.public_key(),
                not_before,
                not_before + lifetime,
                serial=self._serial,
            )
            .add_extension(pki.SIGNING_KEY_USAGE, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [
                        ExtendedKeyUsageOID.CODE_SIGNING
                        if code_signing
                        else ExtendedKeyUsageOID.EMAIL_PROTECTION
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
        )
        if issuer is not None and issuer_v1:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(OID_ISSUER_V1, issuer.encode()), critical=False
            )
        for claim, value in (github or {}).items():
            builder = builder.add_extension(
                x509.UnrecognizedExtension(GITHUB_OIDS[claim], value.encode()), critical=False
            )
        if issuer is not None and issuer_v2:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(OID_ISSUER_V2, _der_utf8(issuer)), critical=False
            )
        if sct:
            precertificate = builder.sign(self.intermediate_key, hashes.SHA384())
            extension = self._sct_extension(
                precertificate.tbs_certificate_bytes, not_before, sct_key or self.ct_key
            )
            builder = builder.add_extension(extension, critical=False)
        certificate = builder.sign(self.intermediate_key, hashes.SHA384())
        if sct:
            assert certificate.tbs_precertificate_bytes == precertificate.tbs_certificate_bytes
        return Leaf(certificate=certificate, key=leaf_key)

    def _sct_extension(
        self, tbs: bytes, moment: datetime, ct_key: ec.EllipticCurvePrivateKey
    ) -> x509.UnrecognizedExtension:
        timestamp = int(moment.timestamp() * 1000)
        issuer_key_hash = hashlib.sha256(_spki_der(self.intermediate_key.public_key())).digest()
        signed = (
            struct.pack(">BBQH", 0, 0, timestamp, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack(">H", 0)
        )
        signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            struct.pack(">B", 0)
            + self.ct_log_id
            + struct.pack(">QH", timestamp, 0)
            + struct.pack(">BBH", 4, 3, len(signature))  # sha256, ecdsa
            + signature
        )
        listing = struct.pack(">H", len(sct)) + sct
        return x509.UnrecognizedExtension(
            OID_SCT_LIST, _der_octet_string(struct.pack(">H", len(listing)) + listing)
        )

    # -- Rekor --

    def signed_entry_timestamp(
        self,
        body: bytes,
        *,
        integrated_time: int,
        log_index: int,
        log_id: bytes | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        canonical = rfc8785.dumps(
            {
                "body": _b64(body),
                "integratedTime": integrated_time,
                "logID": (log_id or self.log_id).hex(),
                "logIndex": log_index,
            }
        )
        return (key or self.rekor_key).sign(canonical, ec.ECDSA(hashes.SHA256()))

    def cosign_bundle_annotation(
        self,
        body: bytes,
        *,
        integrated_time: datetime = EPOCH_2024 + timedelta(minutes=1),
        log_index: int = 4242,
        log_id: bytes | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        """The `dev.sigstore.cosign/bundle` annotation (a signed entry timestamp and its payload)."""
        seconds = int(integrated_time.timestamp())
        signature = self.signed_entry_timestamp(
            body, integrated_time=seconds, log_index=log_index, log_id=log_id, key=key
        )
        return json.dumps(
            {
                "SignedEntryTimestamp": _b64(signature),
                "Payload": {
                    "body": _b64(body),
                    "integratedTime": seconds,
                    "logIndex": log_index,
                    "logID": (log_id or self.log_id).hex(),
                },
            }
        ).encode()

    def checkpoint(
        self, tree_size: int, root_hash: bytes, *, key: ec.EllipticCurvePrivateKey | None = None
    ) -> str:
        origin = f"rekor.{self.name}.test - 1234567890"
        note = f"{origin}\n{tree_size}\n{_b64(root_hash)}\n"
        signature = (key or self.rekor_key).sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        return note + "\n" + f"\u2014 rekor.{self.name}.test {_b64(self.log_id[:4] + signature)}\n"

    def tlog_entry(
        self,
        body: bytes,
        *,
        kind: str,
        version: str,
        integrated_time: datetime | None = EPOCH_2024 + timedelta(minutes=1),
        log_index: int = 4242,
        promise: bool = True,
        proof: bool = True,
        tree_size: int = 11,
        leaf_index: int = 6,
    ) -> dict[str, Any]:
        """A bundle `tlogEntries[]` item with an inclusion promise and/or an inclusion proof + checkpoint."""
        entry: dict[str, Any] = {
            "logIndex": str(log_index),
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": kind, "version": version},
            "canonicalizedBody": _b64(body),
        }
        if integrated_time is not None:
            entry["integratedTime"] = str(int(integrated_time.timestamp()))
        if promise:
            assert integrated_time is not None
            entry["inclusionPromise"] = {
                "signedEntryTimestamp": _b64(
                    self.signed_entry_timestamp(
                        body, integrated_time=int(integrated_time.timestamp()), log_index=log_index
                    )
                )
            }
        if proof:
            leaves = [merkle_leaf_hash(f"filler {i}".encode()) for i in range(tree_size)]
            leaves[leaf_index] = merkle_leaf_hash(body)
            root_hash = merkle_tree_hash(leaves)
            entry["inclusionProof"] = {
                "logIndex": str(leaf_index),
                "rootHash": _b64(root_hash),
                "treeSize": str(tree_size),
                "hashes": [_b64(h) for h in merkle_audit_path(leaf_index, leaves)],
                "checkpoint": {"envelope": self.checkpoint(tree_size, root_hash)},
            }
        return entry

    # -- candidates: simple signing --

    def keyless_signature(
        self,
        digest: str,
        *,
        leaf: Leaf | None = None,
        payload: bytes | None = None,
        with_set: bool = True,
        integrated_time: datetime = EPOCH_2024 + timedelta(minutes=1),
        chain: bytes | None = None,
        format: Literal["legacy", "oci-1.1"] = "legacy",
    ) -> SimpleSigningCandidate:
        """A cosign keyless simple-signing signature: certificate, chain and a hashedrekord SET."""
        leaf = leaf or self.issue()
        payload = payload if payload is not None else simple_signing_payload(digest)
        signature = sign(leaf.key, payload)
        bundle = None
        if with_set:
            body = hashedrekord_body(signature, hashlib.sha256(payload).digest(), leaf.pem)
            bundle = self.cosign_bundle_annotation(body, integrated_time=integrated_time)
        return SimpleSigningCandidate(
            format=format,
            manifest_digest="sha256:" + hashlib.sha256(payload + signature).hexdigest(),
            payload=payload,
            signature=signature,
            certificate=leaf.pem,
            chain=self.chain_pem if chain is None else chain,
            rekor_bundle=bundle,
        )

    def key_signature(
        self,
        key: PrivateKey,
        digest: str,
        *,
        payload: bytes | None = None,
        with_set: bool = False,
        rsa_padding: Literal["pkcs1v15", "pss", "pss-digest"] = "pkcs1v15",
        format: Literal["legacy", "oci-1.1"] = "legacy",
    ) -> SimpleSigningCandidate:
        """A cosign key-based simple-signing signature, with or without a hashedrekord SET."""
        payload = payload if payload is not None else simple_signing_payload(digest)
        signature = sign(key, payload, rsa_padding=rsa_padding)
        bundle = None
        if with_set:
            body = hashedrekord_body(signature, hashlib.sha256(payload).digest(), pem_public_key(key))
            bundle = self.cosign_bundle_annotation(body)
        return SimpleSigningCandidate(
            format=format,
            manifest_digest="sha256:" + hashlib.sha256(payload + signature).hexdigest(),
            payload=payload,
            signature=signature,
            rekor_bundle=bundle,
        )

    # -- candidates: bundles --

    def key_bundle_dsse(
        self,
        key: PrivateKey,
        digest: str,
        *,
        predicate_type: str = PREDICATE_TYPE_SIGN,
        payload: bytes | None = None,
        rekor: Literal["v1", "v2", "none"] = "v1",
        promise: bool = True,
        proof: bool = True,
        rsa_padding: Literal["pkcs1v15", "pss", "pss-digest"] = "pkcs1v15",
    ) -> BundleCandidate:
        """A bundle v0.3 with a DSSE envelope signed by `key` (cosign v3 `sign`/`attest --key`)."""
        payload = payload if payload is not None else statement(digest, predicate_type)
        signature = sign(key, dsse_pae(IN_TOTO_TYPE, payload), rsa_padding=rsa_padding)
        envelope = dsse_envelope(payload, [signature])
        entries: list[dict[str, Any]] = []
        if rekor == "v1":
            body = dsse_body(payload, json.dumps(envelope).encode(), [(signature, pem_public_key(key))])
            entries.append(self.tlog_entry(body, kind="dsse", version="0.0.1", promise=promise, proof=proof))
        elif rekor == "v2":
            pae_digest = hashlib.sha256(dsse_pae(IN_TOTO_TYPE, payload)).digest()
            body = hashedrekord_v002_body(
                pae_digest, signature, _spki_der(key.public_key()), certificate=False
            )
            entries.append(
                self.tlog_entry(
                    body, kind="hashedrekord", version="0.0.2", integrated_time=None, promise=False
                )
            )
        document = {
            "mediaType": ARTIFACT_TYPE_BUNDLE,
            "verificationMaterial": {
                "publicKey": {"hint": _b64(hashlib.sha256(pem_public_key(key)).digest())},
                "tlogEntries": entries,
            },
            "dsseEnvelope": envelope,
        }
        data = json.dumps(document).encode()
        return BundleCandidate(
            format="bundle", manifest_digest="sha256:" + hashlib.sha256(data).hexdigest(), bundle=data
        )

    def key_bundle_message(self, key: PrivateKey, digest: str, *, with_tlog: bool = True) -> BundleCandidate:
        """A bundle v0.3 with a message signature over the image digest (hashedrekord 0.0.1 entry)."""
        raw_digest = bytes.fromhex(digest.partition(":")[2])
        signature = sign_digest(key, raw_digest)
        entries = []
        if with_tlog:
            body = hashedrekord_body(signature, raw_digest, pem_public_key(key))
            entries.append(self.tlog_entry(body, kind="hashedrekord", version="0.0.1"))
        document = {
            "mediaType": ARTIFACT_TYPE_BUNDLE,
            "verificationMaterial": {"publicKey": {"hint": "k"}, "tlogEntries": entries},
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(raw_digest)},
                "signature": _b64(signature),
            },
        }
        data = json.dumps(document).encode()
        return BundleCandidate(
            format="bundle", manifest_digest="sha256:" + hashlib.sha256(data).hexdigest(), bundle=data
        )

    def keyless_bundle(
        self,
        digest: str,
        *,
        leaf: Leaf | None = None,
        message: bool = False,
        predicate_type: str = PREDICATE_TYPE_SIGN,
        integrated_time: datetime = EPOCH_2024 + timedelta(minutes=1),
        promise: bool = True,
    ) -> BundleCandidate:
        """A keyless bundle v0.3 (Fulcio-like certificate, Rekor v1 entry with promise and proof): a DSSE
        statement about `digest`, or with `message` a message signature over it."""
        leaf = leaf or self.issue()
        material: dict[str, Any] = {
            "certificate": {"rawBytes": _b64(leaf.certificate.public_bytes(serialization.Encoding.DER))}
        }
        document: dict[str, Any] = {"mediaType": ARTIFACT_TYPE_BUNDLE, "verificationMaterial": material}
        if message:
            raw_digest = bytes.fromhex(digest.partition(":")[2])
            signature = sign_digest(leaf.key, raw_digest)
            body = hashedrekord_body(signature, raw_digest, leaf.pem)
            kind, version = "hashedrekord", "0.0.1"
            document["messageSignature"] = {
                "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(raw_digest)},
                "signature": _b64(signature),
            }
        else:
            payload = statement(digest, predicate_type)
            signature = sign(leaf.key, dsse_pae(IN_TOTO_TYPE, payload))
            envelope = dsse_envelope(payload, [signature])
            body = dsse_body(payload, json.dumps(envelope).encode(), [(signature, leaf.pem)])
            kind, version = "dsse", "0.0.1"
            document["dsseEnvelope"] = envelope
        material["tlogEntries"] = [
            self.tlog_entry(
                body, kind=kind, version=version, integrated_time=integrated_time, promise=promise
            )
        ]
        data = json.dumps(document).encode()
        return BundleCandidate(
            format="bundle", manifest_digest="sha256:" + hashlib.sha256(data).hexdigest(), bundle=data
        )

    # -- candidates: legacy attestations --

    def legacy_attestation(
        self,
        digest: str,
        *,
        key: PrivateKey | None = None,
        leaf: Leaf | None = None,
        predicate_type: str = "https://slsa.dev/provenance/v1",
        entry_kind: Literal["intoto", "dsse", "none"] = "intoto",
    ) -> BundleCandidate:
        """A cosign v2 `.att` layer: a DSSE envelope, signed with `key` or keyless with `leaf`."""
        payload = statement(digest, predicate_type)
        signer: PrivateKey = key if key is not None else (leaf or self.issue()).key
        if key is None and leaf is None:
            raise ValueError("pass a key or a leaf")
        signature = sign(signer, dsse_pae(IN_TOTO_TYPE, payload))
        envelope_json = json.dumps(dsse_envelope(payload, [signature])).encode()
        verifier = pem_public_key(key) if key is not None else leaf.pem  # type: ignore[union-attr]
        annotations: dict[str, str] = {}
        if leaf is not None and key is None:
            annotations[ANNOTATION_CERTIFICATE] = leaf.pem.decode()
            annotations[ANNOTATION_CHAIN] = self.chain_pem.decode()
        if entry_kind == "intoto":
            body = intoto_body(payload, envelope_json, signature, verifier)
            annotations[ANNOTATION_BUNDLE] = self.cosign_bundle_annotation(body).decode()
        elif entry_kind == "dsse":
            body = dsse_body(payload, envelope_json, [(signature, verifier)])
            annotations[ANNOTATION_BUNDLE] = self.cosign_bundle_annotation(body).decode()
        return BundleCandidate(
            format="legacy-att",
            manifest_digest="sha256:" + hashlib.sha256(envelope_json).hexdigest(),
            bundle=envelope_json,
            annotations=annotations,
        )


# --- storing candidates as cosign does ------------------------------------------------------------------


def hashedrekord_body_for(candidate: SimpleSigningCandidate, verifier_pem: bytes | None = None) -> bytes:
    """The hashedrekord 0.0.1 body Rekor records for a simple-signing candidate: its signature over the
    payload's SHA-256, with the signing certificate (keyless) or ``verifier_pem`` (a public key)."""
    verifier = verifier_pem if verifier_pem is not None else candidate.certificate
    if verifier is None:
        raise ValueError("a key-based candidate needs verifier_pem (the public key's PEM)")
    return hashedrekord_body(candidate.signature, hashlib.sha256(candidate.payload).digest(), verifier)


def cosign_layer_annotations(candidate: SimpleSigningCandidate) -> dict[str, str]:
    """The annotations cosign writes on a simple-signing layer (``.sig`` tag or OCI 1.1 referrer), sorted by
    key as Go marshals them: the base64 signature, and when present the certificate and chain (PEM), the
    ``dev.sigstore.cosign/bundle`` SET JSON and the RFC 3161 timestamp JSON."""
    annotations = {ANNOTATION_SIGNATURE: _b64(candidate.signature)}
    for name, value in (
        (ANNOTATION_CERTIFICATE, candidate.certificate),
        (ANNOTATION_CHAIN, candidate.chain),
        (ANNOTATION_BUNDLE, candidate.rekor_bundle),
        (ANNOTATION_RFC3161, candidate.rfc3161_timestamp),
    ):
        if value is not None:
            annotations[name] = value.decode()
    return dict(sorted(annotations.items()))
