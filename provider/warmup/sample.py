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
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from verifiers import oci
from verifiers.base import Descriptor
from verifiers.testing.builders import (
    EMPTY_CONFIG,
    artifact_manifest,
    descriptor_json,
    digest_of,
    image_config,
    image_manifest,
)

__all__ = ["KINDS", "REPOSITORY", "TAG", "Sample", "make_sample"]

REPOSITORY = "countersign/warm-up"
TAG = "v1"
#: The signatures a sample can carry, by the type of the verifier that checks them.
KINDS = ("cosign", "notation")

_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
_LAYER = "application/vnd.oci.image.layer.v1.tar"
_EMPTY_TAR = bytes(1024)  # two zero blocks: a tar archive with no entries
# The leaf's subject; notation's `x509.subject:` identities need C, ST and O.
_SUBJECT = "C=ZZ, ST=Start-up, O=Countersign, CN=countersign warm-up"


def _json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


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
    leaf_key: rsa.RSAPrivateKey, chain: tuple[x509.Certificate, ...], target: Descriptor, now: datetime
) -> bytes:
    """A notation JWS envelope (notary.x509, PS256) over `target`, the image's descriptor."""
    from verifiers.notation.model import NOTARY_PAYLOAD_MEDIA_TYPE  # see _Builder.notation

    protected = _b64url(
        _json(
            {
                "alg": "PS256",
                "crit": ["io.cncf.notary.signingScheme"],
                "cty": NOTARY_PAYLOAD_MEDIA_TYPE,
                "io.cncf.notary.signingScheme": "notary.x509",
                "io.cncf.notary.signingTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    )
    payload = _b64url(_json({"targetArtifact": descriptor_json(target)}))
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
    """The sample's content as it is added: blobs, and manifests under their digest and tags. The manifests
    are the plugin kit's (`verifiers.testing.builders`: compact JSON, fields in a fixed order); the cosign
    and notation names are their verifiers' own, imported when that kind is signed (a configuration without
    the verifier never loads its code)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {EMPTY_CONFIG.digest: b"{}"}
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.referrers: dict[str, bytes] = {}

    def blob(self, media_type: str, data: bytes, annotations: Mapping[str, str] | None = None) -> Descriptor:
        digest = digest_of(data)
        self.blobs[digest] = data
        return Descriptor(media_type, digest, len(data), annotations=dict(annotations or {}))

    def manifest(self, data: bytes, *tags: str) -> Descriptor:
        digest = digest_of(data)
        for reference in (digest, *tags):
            self.manifests[reference] = (oci.OCI_MANIFEST, data)
        return Descriptor(oci.OCI_MANIFEST, digest, len(data))

    def image(self) -> Descriptor:
        config = self.blob(_IMAGE_CONFIG, image_config())
        return self.manifest(image_manifest(config, [self.blob(_LAYER, _EMPTY_TAR)]), TAG)

    def cosign(self, host: str, image: Descriptor) -> dict[str, Any]:
        """The simple-signing payload signed by a fresh key, the layer of the `.sig` tag's manifest; the
        verifier trusting that key."""
        from verifiers.cosign.model import ANNOTATION_SIGNATURE, SIMPLE_SIGNING_MEDIA_TYPE

        key = ec.generate_private_key(ec.SECP256R1())
        payload = _json(
            {
                "critical": {
                    "identity": {"docker-reference": f"{host}/{REPOSITORY}"},
                    "image": {"docker-manifest-digest": image.digest},
                    "type": "cosign container image signature",
                },
                "optional": None,
            }
        )
        signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
        # cosign's own config of a `.sig` manifest: the payload as the one layer's diff id
        rootfs = {"type": "layers", "diff_ids": [digest_of(payload)]}
        config = self.blob(
            _IMAGE_CONFIG, _json({"architecture": "", "os": "", "config": {}, "rootfs": rootfs})
        )
        layer = self.blob(SIMPLE_SIGNING_MEDIA_TYPE, payload, {ANNOTATION_SIGNATURE: signature})
        self.manifest(image_manifest(config, [layer]), image.digest.replace(":", "-") + ".sig")
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "type": "cosign",
            "options": {"keys": [{"name": "warm-up", "pem": pem.decode()}], "transparencyLog": "skip"},
        }

    def notation(self, image: Descriptor, now: datetime) -> dict[str, Any]:
        """The JWS envelope of a fresh chain in an artifact manifest whose subject is the image, listed as
        its referrer; the verifier trusting that chain's root for the leaf's subject (strict)."""
        from verifiers.notation.envelope import JWS_MEDIA_TYPE
        from verifiers.notation.verifier import ARTIFACT_TYPE, THUMBPRINT_ANNOTATION

        leaf_key, leaf, root = _chain(now)
        envelope = self.blob(JWS_MEDIA_TYPE, _jws(leaf_key, (leaf, root), image, now))
        thumbprints = [c.fingerprint(hashes.SHA256()).hex() for c in (leaf, root)]
        annotations = {THUMBPRINT_ANNOTATION: json.dumps(thumbprints)}
        signature = self.manifest(
            artifact_manifest(image, ARTIFACT_TYPE, [envelope], annotations=annotations)
        )
        listed = Descriptor(
            signature.media_type, signature.digest, signature.size, ARTIFACT_TYPE, annotations
        )
        index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [descriptor_json(listed)]}
        self.referrers[image.digest] = _json(index)
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
        host, image.digest, content.manifests, content.blobs, content.referrers, verifiers, policies
    )
