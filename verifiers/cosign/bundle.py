"""Sigstore bundles (v0.1-v0.3; cosign v3 stores v0.3 bundles as OCI referrers).

`verify_bundle(data, expected_digest, policy, now)` is the bundle layer on its own: it takes bundle bytes
and the digest the bundle must vouch for, so recorded bundles over files verify with the file's digest.

Content: a DSSE envelope (`application/vnd.in-toto+json`) whose in-toto statement must name the expected
digest among its subjects, or a message signature whose SHA-256 message digest must be the expected digest.

Certificate bundles (`verificationMaterial.certificate` / `x509CertificateChain`) are verified by
sigstore-python's `Verifier`, built offline from the policy's trusted root, with a policy object that checks
the policy's identities (see `verifiers.cosign.keyless` for the matching rules). sigstore-python's errors are
mapped to reasons: chain, SCT and certificate profile -> `UNTRUSTED_CHAIN`; the signing certificate not
valid at the signing time -> `CERTIFICATE_EXPIRED`; identity -> `IDENTITY_MISMATCH`; no log entry or no
source of signed time -> `TLOG_MISSING`; log entry, inclusion proof, checkpoint or inclusion promise ->
`TLOG_INVALID`; signature -> `SIGNATURE_INVALID`; unparseable -> `MALFORMED`. sigstore-python requires
exactly one transparency-log entry for certificate bundles, whatever `require_tlog` says.

Key bundles (`verificationMaterial.publicKey`, cosign v3 with `--key`) are verified here: the DSSE
signatures (over PAE) or the message signature against the policy's keys, then the transparency-log
entries (inclusion promise and/or inclusion proof with its checkpoint, and the entry body) as for simple
signing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from sigstore.errors import CertValidationError, Error, MetadataError, VerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, InvalidBundle
from sigstore.verify import Verifier
from sigstore_models.common.v1 import HashAlgorithm

from verifiers.cosign.anchors import find_key_signature, untrusted_failure
from verifiers.cosign.common import (
    LIMITS,
    Failure,
    Verified,
    b64decode,
    fail,
    get_int,
    get_list,
    get_obj,
    get_str,
    load_json,
    rfc3339,
)
from verifiers.cosign.dsse import Envelope, envelope_from_obj, statement_for
from verifiers.cosign.keyless import certificate_facts, match_identity
from verifiers.cosign.keys import verify_prehashed
from verifiers.cosign.model import Identity, Reason, TrustPolicy
from verifiers.cosign.rekor import LogEntry, Signed, entry_from_bundle, verify_log_evidence
from verifiers.cosign.trustroot import TrustRoot

__all__ = ["BUNDLE_MEDIA_TYPES", "verify_bundle"]

BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
)


def _expected_sha256(expected_digest: str) -> bytes:
    algorithm, _, hex_value = expected_digest.partition(":")
    if algorithm != "sha256":
        fail(
            Reason.DIGEST_MISMATCH,
            f"message signatures sign SHA-256 digests, cannot vouch for {expected_digest}",
        )
    return bytes.fromhex(hex_value)


def _message_digest(document: dict[str, Any], expected_digest: str) -> tuple[bytes, bytes]:
    """(signature, the SHA-256 digest it signs): the bundle's own messageDigest, else the expected digest."""
    message = get_obj(document, "messageSignature", "bundle")
    signature = b64decode(message.get("signature"), "bundle messageSignature.signature")
    if "messageDigest" not in message:
        return signature, _expected_sha256(expected_digest)
    digest = get_obj(message, "messageDigest", "bundle messageSignature")
    if get_str(digest, "algorithm", "bundle messageDigest") != "SHA2_256":
        fail(Reason.MALFORMED, "bundle messageDigest algorithm must be SHA2_256")
    value = b64decode(digest.get("digest"), "bundle messageDigest.digest")
    if len(value) != hashlib.sha256().digest_size:
        fail(Reason.MALFORMED, "bundle messageDigest is not a SHA-256 digest")
    return signature, value


def _check_message_digest(digest: bytes, expected_digest: str) -> None:
    if "sha256:" + digest.hex() != expected_digest:
        fail(Reason.DIGEST_MISMATCH, f"message signature is for sha256:{digest.hex()}, not {expected_digest}")


def _tlog_entries(material: dict[str, Any]) -> list[Any]:
    if "tlogEntries" not in material:
        return []
    entries = get_list(material, "tlogEntries", "bundle verificationMaterial")
    if len(entries) > LIMITS.max_tlog_entries:
        fail(Reason.MALFORMED, f"bundle has more than {LIMITS.max_tlog_entries} transparency-log entries")
    return entries


# --- key bundles ----------------------------------------------------------------------------------------


def _verify_key_bundle(
    document: dict[str, Any],
    material: dict[str, Any],
    expected_digest: str,
    policy: TrustPolicy,
    now: datetime,
) -> Verified:
    raw_entries = _tlog_entries(material)
    root = policy.trusted_root if isinstance(policy.trusted_root, TrustRoot) else None

    def entries() -> list[LogEntry]:
        if not policy.require_tlog and root is None:
            return []
        return [entry_from_bundle(item, f"bundle tlogEntries[{i}]") for i, item in enumerate(raw_entries)]

    def bodies() -> list[bytes]:
        out: list[bytes] = []
        for item in raw_entries:
            try:
                out.append(entry_from_bundle(item).body)
            except Failure:
                continue
        return out

    envelope: Envelope | None = None
    if "dsseEnvelope" in document:
        envelope = envelope_from_obj(document["dsseEnvelope"], "bundle DSSE envelope")
        found = find_key_signature(envelope, policy.keys)
        if found is None:
            raise untrusted_failure(policy.keys, bodies(), has_certificate=False)
        key, signature = found
        signed = Signed(signature=signature, public_key=key.key, envelope=envelope)
    else:
        signature, digest = _message_digest(document, expected_digest)
        matched = [
            k for k in policy.keys if verify_prehashed(k.key, signature, digest, rsa_padding=k.rsa_padding)
        ]
        if not matched:
            raise untrusted_failure(policy.keys, bodies(), has_certificate=False)
        key = matched[0]
        signed = Signed(signature=signature, public_key=key.key, artifact_sha256=digest)

    details: dict[str, Any] = {"key": key.name}
    verified = verify_log_evidence(
        entries(), signed, root=root, require=policy.require_tlog, need_time=False, now=now
    )
    if verified is not None:
        details.update(verified.details())

    if envelope is not None:
        statement = statement_for(envelope, expected_digest)
        return Verified(
            anchor=key.name,
            message=f"bundle ({statement.predicate_type}) signed with key {key.name}",
            details=details,
            predicate_type=statement.predicate_type,
        )
    assert signed.artifact_sha256 is not None
    _check_message_digest(signed.artifact_sha256, expected_digest)
    return Verified(anchor=key.name, message=f"bundle message signature by key {key.name}", details=details)


# --- certificate bundles (sigstore-python) ----------------------------------------------------------------


class _IdentityMismatch(VerificationError):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class _IdentityPolicy:
    """A sigstore-python `VerificationPolicy`: the certificate must match one of the identities."""

    def __init__(self, identities: tuple[Identity, ...]) -> None:
        self._identities = identities
        self.matched: Identity | None = None

    def verify(self, cert: x509.Certificate) -> None:
        try:
            self.matched = match_identity(certificate_facts(cert), self._identities)
        except Failure as failure:
            raise _IdentityMismatch(failure) from None


def _signing_time(document: dict[str, Any]) -> datetime | None:
    """The (unverified) integrated time, for telling an expired certificate from an untrusted chain."""
    try:
        entry = entry_from_bundle(_tlog_entries(get_obj(document, "verificationMaterial", "bundle"))[0])
    except (Failure, IndexError):
        return None
    if entry.integrated_time is None:
        return None
    try:
        return _utc(entry.integrated_time)
    except (OverflowError, OSError, ValueError):
        return None


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _reason_for(exc: Exception, bundle: Bundle, document: dict[str, Any]) -> Failure:
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, _IdentityMismatch):
        return exc.failure
    if isinstance(exc, CertValidationError):
        leaf = bundle.signing_certificate
        moment = _signing_time(document)
        if moment is not None and not leaf.not_valid_before_utc <= moment <= leaf.not_valid_after_utc:
            return Failure(
                Reason.CERTIFICATE_EXPIRED,
                f"signing certificate was valid {rfc3339(leaf.not_valid_before_utc)} to "
                f"{rfc3339(leaf.not_valid_after_utc)}, but the signature was logged at {rfc3339(moment)}",
            )
        return Failure(
            Reason.UNTRUSTED_CHAIN, f"signing certificate does not chain to a trusted Fulcio CA: {text}"
        )
    if isinstance(exc, MetadataError):
        return Failure(Reason.UNTRUSTED_CHAIN, f"trusted root cannot verify this bundle: {text}")
    if "expired at time of signing" in lowered:
        return Failure(
            Reason.CERTIFICATE_EXPIRED, f"signing certificate was not valid at the signing time: {text}"
        )
    if "sct" in lowered or "usage" in lowered:
        return Failure(Reason.UNTRUSTED_CHAIN, f"signing certificate rejected: {text}")
    if "sources of verified time" in lowered:
        return Failure(
            Reason.TLOG_MISSING, f"no signed signing time (inclusion promise or timestamp): {text}"
        )
    if any(
        word in lowered
        for word in (
            "log entry",
            "transparency log",
            "inclusion",
            "checkpoint",
            "set:",
            "integrated time",
            "timestamp",
            "entry type",
        )
    ):
        return Failure(Reason.TLOG_INVALID, f"transparency-log evidence rejected: {text}")
    if "digest mismatch" in lowered:
        return Failure(Reason.DIGEST_MISMATCH, text)
    return Failure(Reason.SIGNATURE_INVALID, f"signature rejected by sigstore-python: {text}")


def _parse_bundle(data: bytes, material: dict[str, Any]) -> Bundle:
    if not _tlog_entries(material):
        fail(Reason.TLOG_MISSING, "certificate bundle has no transparency-log entry")
    try:
        return Bundle.from_json(data)
    except InvalidBundle as exc:
        text = str(exc)
        if "inclusion promise" in text or "inclusion proof" in text or "checkpoint" in text:
            fail(Reason.TLOG_MISSING, f"certificate bundle lacks transparency-log evidence: {text}")
        fail(Reason.MALFORMED, f"invalid Sigstore bundle: {text}")
    except Exception as exc:  # pydantic validation, base64, DER errors from the bundle's models
        fail(Reason.MALFORMED, f"invalid Sigstore bundle: {exc}")


def _logged(material: dict[str, Any]) -> tuple[int, int | None]:
    """(logIndex, integratedTime when an inclusion promise vouches for it) of a verified bundle's entry.

    Read from the bundle's own protobuf JSON (the bytes sigstore-python parsed and verified, which holds
    exactly one entry), not from sigstore-python's private model of it.
    """
    entries = _tlog_entries(material)
    if len(entries) != 1:  # sigstore-python accepts exactly one; unreachable after its verification
        fail(Reason.MALFORMED, f"bundle has {len(entries)} transparency-log entries, not 1")
    entry = entries[0]
    what = "bundle transparency-log entry"
    log_index = get_int(entry, "logIndex", what)
    integrated = get_int(entry, "integratedTime", what) if "integratedTime" in entry else 0
    promised = isinstance(entry, dict) and entry.get("inclusionPromise") is not None
    return log_index, (integrated if integrated and promised else None)


def _verify_certificate_bundle(
    data: bytes, document: dict[str, Any], material: dict[str, Any], expected_digest: str, policy: TrustPolicy
) -> Verified:
    if not policy.identities:
        fail(Reason.UNTRUSTED_KEY, "keyless bundle, but the policy configures no identities")
    root = policy.trusted_root
    if not isinstance(root, TrustRoot):
        fail(Reason.UNTRUSTED_CHAIN, "keyless bundle, but the policy has no Sigstore trusted root")
    bundle = _parse_bundle(data, material)
    identity_policy = _IdentityPolicy(policy.identities)
    is_dsse = "dsseEnvelope" in document
    digest: bytes | None = None
    try:
        verifier = Verifier(trusted_root=root.sigstore)
        if is_dsse:
            payload_type, payload = verifier.verify_dsse(bundle, identity_policy)
        else:
            _, digest = _message_digest(document, expected_digest)
            hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest)
            verifier.verify_artifact(hashed, bundle, identity_policy)
    except Failure:
        raise
    except (Error, ValueError, TypeError) as exc:
        raise _reason_for(exc, bundle, document) from None
    except Exception as exc:  # anything else sigstore-python lets through on hostile input
        raise Failure(Reason.SIGNATURE_INVALID, f"signature rejected by sigstore-python: {exc}") from None
    identity = identity_policy.matched
    if identity is None:  # sigstore-python always consults the policy; never pass without it
        fail(Reason.IDENTITY_MISMATCH, "the certificate's identity was not checked")

    facts = certificate_facts(bundle.signing_certificate)
    details: dict[str, Any] = {
        "subject": facts.sans[0] if facts.sans else "",
        "issuer": facts.issuer or "",
        "certificateSerial": facts.serial,
    }
    log_index, integrated_time = _logged(material)
    details["logIndex"] = log_index
    if integrated_time is not None:
        details["integratedTime"] = rfc3339(_utc(integrated_time))
    timestamps = bundle.verification_material.timestamp_verification_data
    if timestamps is not None and timestamps.rfc3161_timestamps:
        details["timestamp"] = rfc3339(timestamps.rfc3161_timestamps[0].tst_info.gen_time)
        authorities = [a.uri for a in root.timestamp_authorities]
        details["timestampAuthority"] = authorities[0] if len(authorities) == 1 else ", ".join(authorities)

    if is_dsse:
        envelope = Envelope(payload_type=payload_type, payload=payload, signatures=())
        statement = statement_for(envelope, expected_digest)
        return Verified(
            anchor=identity.name,
            message=(
                f"bundle ({statement.predicate_type}) signed by {details['subject']} ({details['issuer']}), "
                f"identity {identity.name}"
            ),
            details=details,
            predicate_type=statement.predicate_type,
        )
    assert digest is not None
    _check_message_digest(digest, expected_digest)
    return Verified(
        anchor=identity.name,
        message=(
            f"bundle message signature by {details['subject']} ({details['issuer']}), "
            f"identity {identity.name}"
        ),
        details=details,
    )


# --- entry point ----------------------------------------------------------------------------------------


def verify_bundle(data: bytes, expected_digest: str, policy: TrustPolicy, now: datetime) -> Verified:
    """Verify a Sigstore bundle (JSON bytes) as vouching for `expected_digest` under `policy`.

    Raises `Failure` with the reason; returns what verified it.
    """
    document = load_json(data, "Sigstore bundle")
    if not isinstance(document, dict):
        fail(Reason.MALFORMED, "Sigstore bundle must be a JSON object")
    media_type = get_str(document, "mediaType", "Sigstore bundle")
    if media_type not in BUNDLE_MEDIA_TYPES:
        fail(Reason.MALFORMED, f"unsupported Sigstore bundle media type {media_type!r}")
    material = get_obj(document, "verificationMaterial", "Sigstore bundle")
    if ("dsseEnvelope" in document) == ("messageSignature" in document):
        fail(Reason.MALFORMED, "a Sigstore bundle carries exactly one of dsseEnvelope and messageSignature")
    if "certificate" in material or "x509CertificateChain" in material:
        return _verify_certificate_bundle(data, document, material, expected_digest, policy)
    if "publicKey" in material:
        get_obj(material, "publicKey", "Sigstore bundle verificationMaterial")  # a hint, never trusted
        return _verify_key_bundle(document, material, expected_digest, policy, now)
    fail(Reason.MALFORMED, "Sigstore bundle has neither a certificate nor a public key")
