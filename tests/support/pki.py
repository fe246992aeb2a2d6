"""Small X.509 building blocks shared by the test PKIs (notation's signing chain, the TSA's chain, the
private Sigstore's Fulcio-like CAs).

Each helper adds extensions in a fixed order, so a certificate built with them has the same extensions,
in the same order, as the hand-written builders it replaces.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ObjectIdentifier

__all__ = [
    "CA_KEY_USAGE",
    "SIGNING_KEY_USAGE",
    "base_builder",
    "with_ca_extensions",
    "with_leaf_extensions",
    "with_revocation_urls",
]


def _key_usage(*, digital_signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


CA_KEY_USAGE = _key_usage(digital_signature=False, cert_sign=True)
"""keyCertSign + cRLSign: what a CA's (critical) key usage holds."""

SIGNING_KEY_USAGE = _key_usage(digital_signature=True, cert_sign=False)
"""digitalSignature only: what a signing leaf's (critical) key usage holds."""


def base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificateIssuerPublicKeyTypes,
    not_before: datetime,
    not_after: datetime,
    serial: int | None = None,
) -> x509.CertificateBuilder:
    """A builder with names, key, serial (random unless given) and validity, and no extension yet."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def with_ca_extensions(
    builder: x509.CertificateBuilder,
    public_key: CertificateIssuerPublicKeyTypes,
    issuer_public_key: CertificateIssuerPublicKeyTypes,
    path_length: int | None,
) -> x509.CertificateBuilder:
    """Adds basicConstraints CA (critical), CA key usage (critical), subject and authority key ids."""
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False)
    )


def with_leaf_extensions(
    builder: x509.CertificateBuilder,
    public_key: CertificateIssuerPublicKeyTypes,
    issuer_public_key: CertificateIssuerPublicKeyTypes,
    extended_key_usage: ObjectIdentifier,
    *,
    eku_critical: bool = False,
) -> x509.CertificateBuilder:
    """Adds basicConstraints not-CA (critical), digitalSignature (critical), one extended key usage,
    subject and authority key ids."""
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(SIGNING_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([extended_key_usage]), critical=eku_critical)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False)
    )


def with_revocation_urls(
    builder: x509.CertificateBuilder, ocsp_url: str | None, crl_url: str | None
) -> x509.CertificateBuilder:
    """Adds an OCSP responder (authorityInfoAccess) and a CRL distribution point, each when given."""
    if ocsp_url is not None:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    if crl_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder
