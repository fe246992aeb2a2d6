"""What a verified Notary Project envelope yields: the signer's attributes and the signed payload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

__all__ = [
    "NOTARY_PAYLOAD_MEDIA_TYPE",
    "SIGNING_SCHEMES",
    "SIGNING_SCHEME_X509",
    "SIGNING_SCHEME_X509_SIGNING_AUTHORITY",
    "Descriptor",
    "Payload",
    "SignerInfo",
    "VerifiedEnvelope",
]

NOTARY_PAYLOAD_MEDIA_TYPE = "application/vnd.cncf.notary.payload.v1+json"
SIGNING_SCHEME_X509 = "notary.x509"
SIGNING_SCHEME_X509_SIGNING_AUTHORITY = "notary.x509.signingAuthority"
SIGNING_SCHEMES = frozenset({SIGNING_SCHEME_X509, SIGNING_SCHEME_X509_SIGNING_AUTHORITY})


@dataclass(frozen=True, slots=True)
class SignerInfo:
    """The signer's attributes. Everything but `timestamp_token`, `signing_agent` and the chain is signed.

    `certificate_chain` (leaf first) comes from the unprotected header: only the leaf's key has been used, and
    nothing about the chain (issuers, validity, trust, key usage) has been checked.
    """

    signing_scheme: str  # "notary.x509" | "notary.x509.signingAuthority"
    algorithm: str  # "PS256" ... "ES512"
    certificate_chain: tuple[x509.Certificate, ...]
    signing_time: datetime | None  # io.cncf.notary.signingTime (notary.x509; claimed, not proven)
    authentic_signing_time: datetime | None  # io.cncf.notary.authenticSigningTime (signingAuthority)
    expiry: datetime | None  # io.cncf.notary.expiry, exposed but not judged (see `is_expired`)
    signing_agent: str | None  # unsigned
    timestamp_token: bytes | None  # unsigned io.cncf.notary.timestampSignature: an RFC 3161 token, raw DER
    signature: bytes
    critical: tuple[str, ...]  # the crit list, as written
    extended_attributes: Mapping[str, Any]  # other (signed) protected headers, read-only

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificate_chain[0]


@dataclass(frozen=True, slots=True)
class Descriptor:
    """The payload's `targetArtifact`: an OCI descriptor of what was signed."""

    media_type: str
    digest: str  # "sha256:<64 hex>", "sha384:<96 hex>" or "sha512:<128 hex>", lower case
    size: int
    annotations: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Payload:
    target: Descriptor
    raw: bytes  # the signed payload bytes, as in the envelope


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """Well-formed, self-consistent and signed by its leaf certificate's key. Not "trusted"."""

    signer: SignerInfo
    payload: Payload
