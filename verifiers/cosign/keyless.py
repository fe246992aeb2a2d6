"""Keyless (Fulcio certificate) signatures: certificate chain, SCT, identity, and signing time.

`verify_keyless` runs the steps in this order, and each failure names its step's reason:

0. parse the leaf and the carried chain (`MALFORMED`; at most `LIMITS.max_chain_certificates`);
1. the leaf chains to a Fulcio CA of the trusted root that was issuing when the leaf was issued, the leaf
   has the digitalSignature key usage and the codeSigning extended key usage, and it carries an SCT from a
   CT log of the trusted root (`UNTRUSTED_CHAIN`);
2. the signature verifies with the leaf's public key (`SIGNATURE_INVALID`);
3. the leaf matches one of the policy's identities (`IDENTITY_MISMATCH`);
4. the signing time, from up to two sources, each of which must verify when it is present:
   - a transparency-log entry with a valid inclusion promise that records this signature by this
     certificate (`TLOG_MISSING` / `TLOG_INVALID`): its integrated time;
   - an RFC 3161 timestamp over the signature by a timestamp authority of the trusted root
     (`verifiers.cosign.timestamp`: `MALFORMED` / `SIGNATURE_INVALID` / `UNTRUSTED_CHAIN`): its genTime.
   The policy's transparency-log requirement (`require_tlog`, the default) makes the log entry mandatory
   whether or not a timestamp is present (`TLOG_MISSING`); without it, a timestamp alone is a signing time,
   and a signature with neither source is `TLOG_MISSING`;
5. the leaf was valid at *every* verified signing time (`CERTIFICATE_EXPIRED`), and so was its chain
   (`UNTRUSTED_CHAIN`). Every one, not any one: this is cosign's rule (`verifyInternal` checks the expiry
   against the timestamp and against the log entry, each an error) and sigstore-python's (step 6 of
   `Verifier._verify_common_signature`), so one time source can never outvote another: a log entry made
   after the certificate expired is not excused by a timestamp (a TSA, perhaps compromised) saying
   otherwise, and vice versa.

Timestamps are verified only for callers that pass the timestamp and the bytes it covers
(`rfc3161_timestamp` and `timestamped`: simple signing, where cosign timestamps the raw signature); a
caller that only says one is present (`has_rfc3161`: legacy `.att` attestations) gets `TLOG_MISSING` when
the timestamp would have to stand in for the log entry.

Identity matching (cosign's `--certificate-identity[-regexp]` and `--certificate-oidc-issuer[-regexp]`):
the subject is any SAN of type email, URI or Sigstore username (otherName 1.3.6.1.4.1.57264.1.7); the OIDC
issuer is Fulcio's extension 1.3.6.1.4.1.57264.1.8 (DER UTF8String) or, in older certificates, 1.3.6.1.4.1.
57264.1.1 (raw string); regular expressions must match the whole value. An identity must constrain both the
subject and the issuer; one that constrains neither would admit anyone with a Fulcio certificate, so it
never matches. GitHub claims, when the identity sets them, are compared exactly with Fulcio's GitHub
workflow extensions (raw strings, the ones cosign's `--certificate-github-workflow-*` flags check):

    github_workflow_trigger     1.3.6.1.4.1.57264.1.2
    github_workflow_sha         1.3.6.1.4.1.57264.1.3
    github_workflow_repository  1.3.6.1.4.1.57264.1.5
    github_workflow_ref         1.3.6.1.4.1.57264.1.6
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.certificate_transparency import SignatureAlgorithm, Version
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from verifiers.cosign.common import LIMITS, fail, rfc3339
from verifiers.cosign.keys import PublicKey, check_key_type
from verifiers.cosign.model import Identity, Reason, TrustPolicy
from verifiers.cosign.rekor import Signed, entry_from_cosign_bundle, verify_log_evidence
from verifiers.cosign.timestamp import VerifiedTimestamp, verify_cosign_timestamp
from verifiers.cosign.trustroot import TrustRoot

__all__ = [
    "OID_GITHUB_WORKFLOW_REF",
    "OID_GITHUB_WORKFLOW_REPOSITORY",
    "OID_GITHUB_WORKFLOW_SHA",
    "OID_GITHUB_WORKFLOW_TRIGGER",
    "OID_ISSUER_V1",
    "OID_ISSUER_V2",
    "OID_OTHERNAME_USERNAME",
    "CertificateFacts",
    "KeylessOutcome",
    "certificate_facts",
    "match_identity",
    "parse_certificate",
    "parse_chain",
    "verify_chain",
    "verify_keyless",
    "verify_sct",
]

OID_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_GITHUB_WORKFLOW_TRIGGER = ObjectIdentifier("1.3.6.1.4.1.57264.1.2")
OID_GITHUB_WORKFLOW_SHA = ObjectIdentifier("1.3.6.1.4.1.57264.1.3")
OID_GITHUB_WORKFLOW_NAME = ObjectIdentifier("1.3.6.1.4.1.57264.1.4")
OID_GITHUB_WORKFLOW_REPOSITORY = ObjectIdentifier("1.3.6.1.4.1.57264.1.5")
OID_GITHUB_WORKFLOW_REF = ObjectIdentifier("1.3.6.1.4.1.57264.1.6")
OID_OTHERNAME_USERNAME = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")
OID_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")

_GITHUB_CLAIMS: dict[str, ObjectIdentifier] = {
    "github_workflow_trigger": OID_GITHUB_WORKFLOW_TRIGGER,
    "github_workflow_sha": OID_GITHUB_WORKFLOW_SHA,
    "github_workflow_repository": OID_GITHUB_WORKFLOW_REPOSITORY,
    "github_workflow_ref": OID_GITHUB_WORKFLOW_REF,
}
_MAX_CERTIFICATE_PEM_BYTES = 64 * 1024
# Fulcio certificates are client certificates with the code-signing EKU instead of client-auth; the EKU is
# checked by `_profile`, every other WebPKI extension rule stays. Built once: the policies are immutable.
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca().may_be_present(
    x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
)
_EE_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
)


# --- parsing --------------------------------------------------------------------------------------------


def parse_certificate(pem: bytes) -> x509.Certificate:
    if len(pem) > _MAX_CERTIFICATE_PEM_BYTES:
        fail(Reason.MALFORMED, f"signing certificate is larger than {_MAX_CERTIFICATE_PEM_BYTES} bytes")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        fail(Reason.MALFORMED, f"signing certificate is not a PEM certificate: {exc}")
    if len(certificates) != 1:
        fail(Reason.MALFORMED, f"expected one signing certificate, found {len(certificates)}")
    return certificates[0]


def parse_chain(pem: bytes | None) -> tuple[x509.Certificate, ...]:
    if not pem or not pem.strip():
        return ()
    if len(pem) > _MAX_CERTIFICATE_PEM_BYTES * LIMITS.max_chain_certificates:
        fail(Reason.MALFORMED, "certificate chain is too large")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        fail(Reason.MALFORMED, f"certificate chain is not PEM certificates: {exc}")
    if len(certificates) > LIMITS.max_chain_certificates:
        fail(
            Reason.MALFORMED,
            f"certificate chain has {len(certificates)} certificates, "
            f"more than {LIMITS.max_chain_certificates}",
        )
    return tuple(certificates)


def _der_string(value: bytes) -> str | None:
    """A DER UTF8String (tag 0x0C), or None."""
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or len(value) < 2 + count:
            return None
        length, offset = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
    if offset + length != len(value):
        return None
    try:
        return value[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _raw_extension(certificate: x509.Certificate, oid: ObjectIdentifier) -> bytes | None:
    try:
        extension = certificate.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = extension.value
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _raw_string(certificate: x509.Certificate, oid: ObjectIdentifier) -> str | None:
    raw = _raw_extension(certificate, oid)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What a Fulcio certificate says about its holder."""

    sans: tuple[str, ...]
    issuer: str | None
    github: dict[str, str]
    serial: str

    def describe(self) -> str:
        subject = ", ".join(self.sans) or "no SAN"
        return f"certificate for {subject} issued on behalf of {self.issuer or 'an unknown OIDC issuer'}"


def certificate_facts(certificate: x509.Certificate) -> CertificateFacts:
    sans: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        sans.extend(san.get_values_for_type(x509.RFC822Name))
        sans.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == OID_OTHERNAME_USERNAME:
                name = _der_string(other.value)
                if name is not None:
                    sans.append(name)
    issuer: str | None = None
    raw_v2 = _raw_extension(certificate, OID_ISSUER_V2)
    if raw_v2 is not None:
        issuer = _der_string(raw_v2)
    if issuer is None:
        issuer = _raw_string(certificate, OID_ISSUER_V1)
    github = {
        field: value
        for field, oid in _GITHUB_CLAIMS.items()
        if (value := _raw_string(certificate, oid)) is not None
    }
    return CertificateFacts(
        sans=tuple(sans), issuer=issuer, github=github, serial=format(certificate.serial_number, "x")
    )


# --- chain ----------------------------------------------------------------------------------------------


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _profile(leaf: x509.Certificate) -> None:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        fail(Reason.UNTRUSTED_CHAIN, "signing certificate lacks key usage or extended key usage")
    if not usage.digital_signature:
        fail(Reason.UNTRUSTED_CHAIN, "signing certificate's key usage lacks digitalSignature")
    if ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        fail(Reason.UNTRUSTED_CHAIN, "signing certificate's extended key usage lacks codeSigning")


def verify_chain(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], root: TrustRoot, at: datetime
) -> list[x509.Certificate]:
    """The path from the leaf to a Fulcio CA of `root` that issued it (in its window), valid at `at`."""
    issued = leaf.not_valid_before_utc
    errors: list[str] = []
    for authority in root.certificate_authorities:
        if not authority.window.contains(issued):
            continue
        verifier = (
            PolicyBuilder()
            .store(Store(list(authority.certificates)))
            .time(at)
            .max_chain_depth(LIMITS.max_chain_certificates)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
            .build_client_verifier()
        )
        try:
            return list(verifier.verify(leaf, list(intermediates)).chain)
        except (VerificationError, x509.UnsupportedGeneralNameType, ValueError) as exc:
            errors.append(str(exc))
    if not errors:
        fail(Reason.UNTRUSTED_CHAIN, f"no Fulcio CA of the trusted root was issuing at {rfc3339(issued)}")
    fail(Reason.UNTRUSTED_CHAIN, f"signing certificate does not chain to a trusted Fulcio CA: {errors[0]}")


def _sct_timestamp_ms(moment: datetime) -> int:
    delta = moment.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def verify_sct(leaf: x509.Certificate, issuer: x509.Certificate, root: TrustRoot) -> None:
    """An embedded SCT (RFC 6962, precertificate entry) by a CT log of `root` verifies (`UNTRUSTED_CHAIN`)."""
    try:
        scts = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    except x509.ExtensionNotFound:
        fail(Reason.UNTRUSTED_CHAIN, "signing certificate carries no SCT (certificate transparency proof)")
    issuer_key_hash = hashlib.sha256(_spki(issuer)).digest()
    tbs = leaf.tbs_precertificate_bytes
    for sct in scts:
        log = root.ctlogs.get(sct.log_id)
        if log is None or sct.version != Version.v1:
            continue
        if not log.window.contains(sct.timestamp.replace(tzinfo=UTC)):
            continue  # the CT log key was not in service when it (supposedly) logged the certificate
        extensions = sct.extension_bytes
        signed = (
            struct.pack(">BBQH", 0, 0, _sct_timestamp_ms(sct.timestamp), 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack(">H", len(extensions))
            + extensions
        )
        algorithm = sct.signature_hash_algorithm
        if not isinstance(algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
            continue
        try:
            if sct.signature_algorithm == SignatureAlgorithm.ECDSA and isinstance(
                log.key, ec.EllipticCurvePublicKey
            ):
                log.key.verify(sct.signature, signed, ec.ECDSA(algorithm))
            elif sct.signature_algorithm == SignatureAlgorithm.RSA and isinstance(log.key, rsa.RSAPublicKey):
                log.key.verify(sct.signature, signed, padding.PKCS1v15(), algorithm)
            else:
                continue
        except InvalidSignature:
            continue
        return
    fail(
        Reason.UNTRUSTED_CHAIN, "no SCT on the signing certificate verifies with a CT log of the trusted root"
    )


# --- identity -------------------------------------------------------------------------------------------


def _identity_mismatch(identity: Identity, facts: CertificateFacts) -> str | None:
    """Why `facts` do not satisfy `identity`, or None when they do."""
    if identity.subject is None and identity.subject_regexp is None:
        return "it constrains no subject"
    if identity.issuer is None and identity.issuer_regexp is None:
        return "it constrains no OIDC issuer"
    if identity.subject is not None and identity.subject not in facts.sans:
        return f"subject is not {identity.subject!r}"
    if identity.subject_regexp is not None and not any(
        identity.subject_regexp.fullmatch(san) for san in facts.sans
    ):
        return f"subject does not match {identity.subject_regexp.pattern!r}"
    if facts.issuer is None:
        return "the certificate names no OIDC issuer"
    if identity.issuer is not None and facts.issuer != identity.issuer:
        return f"issuer is not {identity.issuer!r}"
    if identity.issuer_regexp is not None and not identity.issuer_regexp.fullmatch(facts.issuer):
        return f"issuer does not match {identity.issuer_regexp.pattern!r}"
    for field in _GITHUB_CLAIMS:
        expected = getattr(identity, field)
        if expected is not None and facts.github.get(field) != expected:
            return f"{field} is {facts.github.get(field)!r}, not {expected!r}"
    return None


def match_identity(facts: CertificateFacts, identities: Sequence[Identity]) -> Identity:
    """The first identity `facts` satisfy; `IDENTITY_MISMATCH` naming why each one did not."""
    reasons: list[str] = []
    for identity in identities:
        why = _identity_mismatch(identity, facts)
        if why is None:
            return identity
        reasons.append(f"{identity.name}: {why}")
    fail(Reason.IDENTITY_MISMATCH, f"{facts.describe()} matches no trusted identity ({'; '.join(reasons)})")


# --- the keyless flow -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeylessOutcome:
    identity: Identity
    details: dict[str, Any]


def verify_keyless(
    *,
    certificate_pem: bytes,
    chain_pem: bytes | None,
    rekor_bundle: bytes | None,
    has_rfc3161: bool = False,
    rfc3161_timestamp: bytes | None = None,
    timestamped: bytes | None = None,
    policy: TrustPolicy,
    find_signature: Callable[[PublicKey], bytes | None],
    signed_for: Callable[[bytes, x509.Certificate], Signed],
    now: datetime,
) -> KeylessOutcome:
    """Steps 0-5 of the module docstring, for a signature carried with cosign's annotations.

    `rekor_bundle` is the `dev.sigstore.cosign/bundle` annotation (JSON); `find_signature(key)` returns the
    signature bytes that verify with the leaf's key (or None); `signed_for(signature, leaf)` describes that
    signature for the log-entry check. `rfc3161_timestamp` is the `dev.sigstore.cosign/rfc3161timestamp`
    annotation (JSON) and `timestamped` the bytes it must cover; `has_rfc3161` says that a timestamp is
    present that this caller cannot have verified.
    """
    if rfc3161_timestamp is not None and timestamped is None:
        raise ValueError("an RFC 3161 timestamp needs the bytes it covers (`timestamped`)")
    root = policy.trusted_root
    if not isinstance(root, TrustRoot):
        fail(Reason.UNTRUSTED_CHAIN, "keyless signature, but the policy has no Sigstore trusted root")
    # (0) parse.
    leaf = parse_certificate(certificate_pem)
    intermediates = parse_chain(chain_pem)
    try:
        leaf_key = check_key_type(leaf.public_key())
    except (ValueError, UnsupportedAlgorithm) as exc:
        fail(Reason.UNTRUSTED_CHAIN, f"signing certificate key: {exc}")
    # (1) chain, profile, SCT; at the leaf's issuance (the signing time is not established yet).
    chain = verify_chain(leaf, intermediates, root, leaf.not_valid_before_utc)
    if len(chain) < 2:
        fail(Reason.UNTRUSTED_CHAIN, "the signing certificate itself is listed as a CA in the trusted root")
    _profile(leaf)
    verify_sct(leaf, chain[1], root)
    # (2) signature.
    signature = find_signature(leaf_key)
    if signature is None:
        fail(Reason.SIGNATURE_INVALID, "signature does not verify with the signing certificate's key")
    # (3) identity.
    facts = certificate_facts(leaf)
    identity = match_identity(facts, policy.identities)
    # (4) the signing time: the log entry and/or the RFC 3161 timestamp, each verified when present.
    entries = [] if rekor_bundle is None else [entry_from_cosign_bundle(rekor_bundle)]
    if not entries:
        if rfc3161_timestamp is None and has_rfc3161:
            fail(
                Reason.TLOG_MISSING,
                "keyless signature has an RFC 3161 timestamp but no transparency-log entry; "
                "timestamps are not supported as the signing time for this format",
            )
        if policy.require_tlog and rfc3161_timestamp is not None:
            fail(
                Reason.TLOG_MISSING,
                "keyless signature has an RFC 3161 timestamp but no transparency-log entry, and the policy "
                "requires one (a timestamp does not replace the log)",
            )
        if rfc3161_timestamp is None:
            fail(
                Reason.TLOG_MISSING,
                "no transparency-log entry (nor RFC 3161 timestamp) gives the keyless signature a "
                "signing time",
            )
    # (moment, what it is, whether it is the timestamp's) for step 5.
    times: list[tuple[datetime, str, bool]] = []
    verified = None
    if entries:
        verified = verify_log_evidence(
            entries, signed_for(signature, leaf), root=root, require=True, need_time=True, now=now
        )
        assert verified is not None and verified.integrated_time is not None
        times.append((verified.integrated_time, "the signature was logged at", False))
    stamp: VerifiedTimestamp | None = None
    if rfc3161_timestamp is not None:
        assert timestamped is not None
        stamp = verify_cosign_timestamp(rfc3161_timestamp, timestamped, root)
        times.append((stamp.time, f"its RFC 3161 timestamp (by {stamp.authority}) is", True))
    # (5) validity at every signing time.
    for moment, what, from_timestamp in times:
        if not leaf.not_valid_before_utc <= moment <= leaf.not_valid_after_utc:
            fail(
                Reason.CERTIFICATE_EXPIRED,
                f"signing certificate was valid {rfc3339(leaf.not_valid_before_utc)} to "
                f"{rfc3339(leaf.not_valid_after_utc)}, but {what} {rfc3339(moment)}"
                + (": no valid timestamp covers the signing time" if from_timestamp else ""),
            )
    # The path was verified in step 1 (signatures, constraints, the CA's window); what changes with the
    # moment is only whether each CA certificate on it was within its validity then.
    for moment, _, _ in times:
        for certificate in chain[1:]:
            if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
                fail(
                    Reason.UNTRUSTED_CHAIN,
                    f"chain certificate {certificate.subject.rfc4514_string()} "
                    f"was not valid at {rfc3339(moment)}",
                )
    details: dict[str, Any] = {
        "subject": facts.sans[0] if facts.sans else "",
        "issuer": facts.issuer or "",
        "certificateSerial": facts.serial,
    }
    if verified is not None:
        assert verified.integrated_time is not None  # need_time: keyless reports both
        details.update(verified.details())
    if stamp is not None:
        details.update(stamp.details())
    details.update({_camel(k): v for k, v in facts.github.items()})
    return KeylessOutcome(identity=identity, details=details)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
