"""The warm-up's sample: a tiny image signed at start-up by cosign's and notation's rules, as bytes.

Nothing here does I/O. `make_sample` builds the image (an OCI manifest, its config and one empty layer)
and, for each kind asked for, a signature by fresh keys and the verifier that trusts exactly those:

- cosign: the legacy `sha256-<hex>.sig` tag holding a simple-signing payload, ECDSA P-256 (cosign's
  default key);
- notation: a JWS envelope (PS256, notation's default RSA-2048 leaf under an ECDSA P-256 root) in an
  artifact manifest whose subject is the image, listed by the referrers API; strict trust policy.

The policy requires every one of them. The private keys are dropped once used and never written.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["KINDS", "REPOSITORY", "TAG", "Sample", "make_sample"]

REPOSITORY = "countersign/warm-up"
TAG = "v1"
#: The signatures a sample can carry, by the type of the verifier that checks them.
KINDS = ("cosign", "notation")

_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_INDEX = "application/vnd.oci.image.index.v1+json"
_EMPTY = "application/vnd.oci.empty.v1+json"
_NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature"
_NOTATION_PAYLOAD = "application/vnd.cncf.notary.payload.v1+json"
_SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
_EMPTY_TAR = bytes(1024)  # two zero blocks: a tar archive with no entries
# The leaf's subject; notation's `x509.subject:` identities need C, ST and O.
_SUBJECT = "C=ZZ, ST=Start-up, O=Countersign, CN=countersign warm-up"


def _json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data), **extra}


@dataclass(frozen=True, slots=True)
class Sample:
    """What the warm-up registry serves and what the warm-up configuration trusts."""

    host: str
    digest: str  # the image manifest's
    manifests: Mapping[str, tuple[str, bytes]]  # tag or digest -> (media type, bytes)
    blobs: Mapping[str, bytes]  # digest -> bytes
    referrers: Mapping[str, bytes]  # subject digest -> the referrers index
    verifiers: Mapping[str, Any]  # the configuration's `verifiers`
    policies: list[dict[str, Any]]  # the configuration's `policies`: every verifier required

    @property
    def key(self) -> str:
        """What the warm-up verifies: the tag when signed (the tag is resolved), else the pinned digest."""
        return self.pinned if set(self.verifiers) == {"pinned"} else self.tagged

    @property
    def tagged(self) -> str:
        return f"{self.host}/{REPOSITORY}:{TAG}"

    @property
    def pinned(self) -> str:
        return f"{self.host}/{REPOSITORY}@{self.digest}"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "ZZ"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Start-up"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Countersign"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _chain(now: datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate, x509.Certificate]:
    """(leaf key, leaf, root): a code-signing chain valid from a minute ago for an hour."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start, end = now - timedelta(minutes=1), now + timedelta(hours=1)
    root_name = _name("countersign warm-up root")

    def builder(subject: x509.Name, public: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(root_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
            )
        )

    usage = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "crl_sign"), False
    )
    root = (
        builder(root_name, root_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, key_cert_sign=True, encipher_only=False, decipher_only=False, **usage
            ),
            critical=True,
        )
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        builder(_name("countersign warm-up"), leaf_key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, encipher_only=False, decipher_only=False, **usage
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return leaf_key, leaf, root


def _jws(
    leaf_key: rsa.RSAPrivateKey, chain: tuple[x509.Certificate, ...], target: dict[str, Any], now: datetime
) -> bytes:
    """A notation JWS envelope (notary.x509, PS256) over `target`, the image's descriptor."""
    protected = _b64url(
        _json(
            {
                "alg": "PS256",
                "crit": ["io.cncf.notary.signingScheme"],
                "cty": _NOTATION_PAYLOAD,
                "io.cncf.notary.signingScheme": "notary.x509",
                "io.cncf.notary.signingTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    )
    payload = _b64url(_json({"targetArtifact": target}))
    signature = leaf_key.sign(
        f"{protected}.{payload}".encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    header = {
        "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain],
        "io.cncf.notary.signingAgent": "countersign warm-up",
    }
    return _json(
        {"payload": payload, "protected": protected, "header": header, "signature": _b64url(signature)}
    )


class _Builder:
    """The sample's content as it is added: blobs, and manifests under their digest and tags."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.referrers: dict[str, bytes] = {}

    def blob(self, media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
        self.blobs[_digest(data)] = data
        return _descriptor(media_type, data, **extra)

    def manifest(self, doc: dict[str, Any], *tags: str) -> dict[str, Any]:
        data = _json({"schemaVersion": 2, "mediaType": _MANIFEST, **doc})
        for reference in (_digest(data), *tags):
            self.manifests[reference] = (_MANIFEST, data)
        return _descriptor(_MANIFEST, data)

    def image(self) -> dict[str, Any]:
        config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
        return self.manifest(
            {
                "config": self.blob("application/vnd.oci.image.config.v1+json", _json(config)),
                "layers": [self.blob("application/vnd.oci.image.layer.v1.tar", _EMPTY_TAR)],
            },
            TAG,
        )

    def cosign(self, host: str, image: dict[str, Any]) -> dict[str, Any]:
        """The simple-signing payload signed by a fresh key, the layer of the `.sig` tag's manifest; the
        verifier trusting that key."""
        key = ec.generate_private_key(ec.SECP256R1())
        digest = image["digest"]
        payload = _json(
            {
                "critical": {
                    "identity": {"docker-reference": f"{host}/{REPOSITORY}"},
                    "image": {"docker-manifest-digest": digest},
                    "type": "cosign container image signature",
                },
                "optional": None,
            }
        )
        signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
        config = {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [_digest(payload)]},
        }
        annotations = {"dev.cosignproject.cosign/signature": signature}
        self.manifest(
            {
                "config": self.blob("application/vnd.oci.image.config.v1+json", _json(config)),
                "layers": [self.blob(_SIMPLE_SIGNING, payload, annotations=annotations)],
            },
            digest.replace(":", "-") + ".sig",
        )
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "type": "cosign",
            "options": {"keys": [{"name": "warm-up", "pem": pem.decode()}], "transparencyLog": "skip"},
        }

    def notation(self, image: dict[str, Any], now: datetime) -> dict[str, Any]:
        """The JWS envelope of a fresh chain in an artifact manifest whose subject is the image, listed as
        its referrer; the verifier trusting that chain's root for the leaf's subject (strict)."""
        leaf_key, leaf, root = _chain(now)
        envelope = _jws(leaf_key, (leaf, root), image, now)
        thumbprints = [
            hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest() for c in (leaf, root)
        ]
        annotations = {"io.cncf.notary.x509chain.thumbprint#S256": json.dumps(thumbprints)}
        signature = self.manifest(
            {
                "artifactType": _NOTATION_SIGNATURE,
                "config": self.blob(_EMPTY, b"{}"),
                "layers": [self.blob("application/jose+json", envelope)],
                "subject": image,
                "annotations": annotations,
            }
        )
        listed = {**signature, "artifactType": _NOTATION_SIGNATURE, "annotations": annotations}
        self.referrers[image["digest"]] = _json(
            {"schemaVersion": 2, "mediaType": _INDEX, "manifests": [listed]}
        )
        trust_policy = {
            "version": "1.0",
            "trustPolicies": [
                {
                    "name": "warm-up",
                    "registryScopes": ["*"],
                    "signatureVerification": {"level": "strict"},
                    "trustStores": ["ca:warm-up"],
                    "trustedIdentities": [f"x509.subject: {_SUBJECT}"],
                }
            ],
        }
        root_pem = root.public_bytes(serialization.Encoding.PEM).decode()
        return {
            "type": "notation",
            "options": {
                "trustPolicy": trust_policy,
                "trustStores": [{"name": "ca:warm-up", "pem": root_pem}],
            },
        }


def make_sample(host: str, now: datetime, kinds: Collection[str] = KINDS) -> Sample:
    """A sample image in a registry at `host` (`127.0.0.1:port`), signed now (an aware datetime) for each
    of `kinds` (of `KINDS`), all of them required; with none, the digest-pin verifier is."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"no sample signature of kind {sorted(unknown)}; known: {list(KINDS)}")
    content = _Builder()
    image = content.image()
    verifiers: dict[str, Any] = {}
    if "cosign" in kinds:
        verifiers["cosign"] = content.cosign(host, image)
    if "notation" in kinds:
        verifiers["notation"] = content.notation(image, now)
    if not verifiers:
        verifiers["pinned"] = {"type": "digest-pin"}
    policies = [{"name": "warm-up", "scopes": ["*"], "allOf": list(verifiers)}]
    return Sample(
        host, image["digest"], content.manifests, content.blobs, content.referrers, verifiers, policies
    )
