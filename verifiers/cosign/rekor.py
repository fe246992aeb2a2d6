"""Rekor transparency-log evidence: signed entry timestamps, inclusion proofs, and entry bodies.

Three checks, each failing with `TLOG_INVALID`:

1. Inclusion promise (SET, Rekor v1): the RFC 8785 canonical JSON of
   ``{"body", "integratedTime", "logID", "logIndex"}`` (body base64, logID hex) is signed by the log key the
   trusted root lists under that log ID, and the integration time lies inside that key's validity window.
2. Inclusion proof (Rekor v1 and v2): the RFC 6962 leaf hash of the body, walked up the audit path
   (RFC 9162, section 2.1.3.2), gives the proof's root hash, and a checkpoint (a signed note) signed by the
   same log key commits to that root hash and tree size.
3. Body consistency: the entry describes *this* signature, by *this* signer, over *this* content (the
   defence against CVE-2022-36056-style entry swapping). Kinds: hashedrekord 0.0.1 and 0.0.2, dsse 0.0.1,
   intoto 0.0.2.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from verifiers.cosign.common import (
    Failure,
    b64decode,
    fail,
    get_int,
    get_list,
    get_obj,
    get_str,
    load_json,
    rfc3339,
)
from verifiers.cosign.dsse import Envelope
from verifiers.cosign.keys import PublicKey, spki_der, verify_signature
from verifiers.cosign.model import Reason
from verifiers.cosign.trustroot import LogKey, TrustRoot

__all__ = [
    "InclusionProof",
    "LogEntry",
    "Signed",
    "VerifiedEntry",
    "check_body",
    "entry_from_bundle",
    "entry_from_cosign_bundle",
    "names_signer",
    "root_from_inclusion_proof",
    "verify_entry",
    "verify_log_evidence",
]

_BAD = Reason.TLOG_INVALID
# Log clocks and ours may disagree a little; an entry integrated further in the future is forged.
_CLOCK_SKEW = timedelta(minutes=5)
_MAX_PROOF_HASHES = 64


@dataclass(frozen=True, slots=True)
class InclusionProof:
    log_index: int  # index in the log shard (may differ from the entry's global log index)
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A transparency-log entry as a signature carries it; nothing here is trusted yet."""

    log_id: bytes
    log_index: int
    body: bytes  # the canonicalized entry body
    integrated_time: int | None = None
    signed_entry_timestamp: bytes | None = None
    inclusion_proof: InclusionProof | None = None
    kind_version: tuple[str, str] | None = None  # as a bundle declares it; must match the body


@dataclass(frozen=True, slots=True)
class VerifiedEntry:
    log_index: int
    log_url: str
    integrated_time: datetime | None  # set only when a signed entry timestamp vouches for it
    evidence: tuple[str, ...]  # "inclusionPromise", "inclusionProof"

    def details(self) -> dict[str, Any]:
        """What a verified candidate reports: the log index, and the integrated time when one is signed."""
        details: dict[str, Any] = {"logIndex": self.log_index}
        if self.integrated_time is not None:
            details["integratedTime"] = rfc3339(self.integrated_time)
        return details


# --- parsing --------------------------------------------------------------------------------------------


def entry_from_cosign_bundle(data: bytes) -> LogEntry:
    """The `dev.sigstore.cosign/bundle` annotation: ``{"SignedEntryTimestamp", "Payload": {...}}``."""
    what = "Rekor bundle annotation"
    document = load_json(data, what, reason=_BAD)
    payload = get_obj(document, "Payload", what, reason=_BAD)
    log_id_hex = get_str(payload, "logID", what, reason=_BAD)
    try:
        log_id = bytes.fromhex(log_id_hex)
    except ValueError:
        fail(_BAD, f"{what}: logID is not hex")
    return LogEntry(
        log_id=log_id,
        log_index=get_int(payload, "logIndex", what, reason=_BAD),
        body=b64decode(payload.get("body"), f"{what} body", reason=_BAD),
        integrated_time=get_int(payload, "integratedTime", what, reason=_BAD),
        signed_entry_timestamp=b64decode(document.get("SignedEntryTimestamp"), f"{what} SET", reason=_BAD),
    )


def entry_from_bundle(entry: Any, what: str = "bundle tlog entry") -> LogEntry:
    """One `verificationMaterial.tlogEntries[]` item of a Sigstore bundle (protobuf JSON)."""
    if not isinstance(entry, dict):
        fail(_BAD, f"{what} must be a JSON object")
    log_id = b64decode(get_obj(entry, "logId", what, reason=_BAD).get("keyId"), f"{what} logId", reason=_BAD)
    integrated_time: int | None = None
    if entry.get("integratedTime") not in (None, "0", 0):
        integrated_time = get_int(entry, "integratedTime", what, reason=_BAD)
    signed_entry_timestamp: bytes | None = None
    if "inclusionPromise" in entry:
        signed_entry_timestamp = b64decode(
            get_obj(entry, "inclusionPromise", what, reason=_BAD).get("signedEntryTimestamp"),
            f"{what} signedEntryTimestamp",
            reason=_BAD,
        )
    proof: InclusionProof | None = None
    if "inclusionProof" in entry:
        at = f"{what} inclusionProof"
        raw_proof = get_obj(entry, "inclusionProof", what, reason=_BAD)
        raw_hashes = get_list(raw_proof, "hashes", at, reason=_BAD) if "hashes" in raw_proof else []
        if len(raw_hashes) > _MAX_PROOF_HASHES:
            fail(_BAD, f"{at} has more than {_MAX_PROOF_HASHES} hashes")
        checkpoint = get_obj(raw_proof, "checkpoint", at, reason=_BAD)
        proof = InclusionProof(
            log_index=get_int(raw_proof, "logIndex", at, reason=_BAD) if "logIndex" in raw_proof else 0,
            tree_size=get_int(raw_proof, "treeSize", at, reason=_BAD),
            root_hash=b64decode(raw_proof.get("rootHash"), f"{at} rootHash", reason=_BAD),
            hashes=tuple(b64decode(h, f"{at} hash", reason=_BAD) for h in raw_hashes),
            checkpoint=get_str(checkpoint, "envelope", f"{at} checkpoint", reason=_BAD),
        )
    kind_version: tuple[str, str] | None = None
    if "kindVersion" in entry:
        declared = get_obj(entry, "kindVersion", what, reason=_BAD)
        kind_version = (
            get_str(declared, "kind", f"{what} kindVersion", reason=_BAD),
            get_str(declared, "version", f"{what} kindVersion", reason=_BAD),
        )
    return LogEntry(
        kind_version=kind_version,
        log_id=log_id,
        log_index=get_int(entry, "logIndex", what, reason=_BAD) if "logIndex" in entry else 0,
        body=b64decode(entry.get("canonicalizedBody"), f"{what} canonicalizedBody", reason=_BAD),
        integrated_time=integrated_time,
        signed_entry_timestamp=signed_entry_timestamp,
        inclusion_proof=proof,
    )


# --- log signatures -------------------------------------------------------------------------------------


def _log_key_verifies(log_key: LogKey, signature: bytes, data: bytes) -> bool:
    # ECDSA log keys sign with their curve's hash, Ed25519 log keys sign the data itself.
    return verify_signature(log_key.key, signature, data)


def _verify_set(entry: LogEntry, log_key: LogKey, now: datetime) -> datetime:
    if entry.integrated_time is None or entry.signed_entry_timestamp is None:
        fail(_BAD, "inclusion promise without an integrated time")
    canonical = rfc8785.dumps(
        {
            "body": base64.b64encode(entry.body).decode("ascii"),
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id.hex(),
            "logIndex": entry.log_index,
        }
    )
    if not _log_key_verifies(log_key, entry.signed_entry_timestamp, canonical):
        fail(_BAD, f"signed entry timestamp does not verify with the key of log {entry.log_id.hex()}")
    try:
        integrated = datetime.fromtimestamp(entry.integrated_time, tz=UTC)
    except (OverflowError, OSError, ValueError):
        fail(_BAD, f"integrated time {entry.integrated_time} is out of range")
    if not log_key.window.contains(integrated):
        fail(_BAD, f"log key {entry.log_id.hex()} was not valid at the integrated time {integrated}")
    if integrated > now + _CLOCK_SKEW:
        fail(_BAD, f"integrated time {rfc3339(integrated)} is in the future")
    return integrated


def _hash_children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(
    leaf_index: int, tree_size: int, leaf_hash: bytes, path: tuple[bytes, ...]
) -> bytes:
    """The root an RFC 9162 (section 2.1.3.2) inclusion proof leads to; Failure if the proof is ill-formed."""
    if not 0 <= leaf_index < tree_size:
        fail(_BAD, f"inclusion proof index {leaf_index} is outside a tree of size {tree_size}")
    fn, sn, node = leaf_index, tree_size - 1, leaf_hash
    for sibling in path:
        if sn == 0:
            fail(_BAD, "inclusion proof has too many hashes")
        if fn & 1 or fn == sn:
            node = _hash_children(sibling, node)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            node = _hash_children(node, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        fail(_BAD, "inclusion proof has too few hashes")
    return node


def _verify_checkpoint(text: str, proof: InclusionProof, log_key: LogKey) -> None:
    """A signed note (c2sp.org/signed-note) committing to the proof's tree size and root hash."""
    if text.count("\n\n") != 1 or not text.endswith("\n"):
        fail(_BAD, "checkpoint is not a signed note (one blank line, then signature lines)")
    note, _, signature_block = text.partition("\n\n")
    if not signature_block.strip():
        fail(_BAD, "checkpoint has no signature lines")
    note += "\n"
    lines = note.split("\n")
    if len(lines) < 4 or not lines[0]:
        fail(_BAD, "checkpoint note needs an origin, a tree size and a root hash")
    if lines[1] != str(proof.tree_size):
        fail(_BAD, f"checkpoint tree size {lines[1]!r} differs from the inclusion proof's {proof.tree_size}")
    try:
        root = base64.b64decode(lines[2].encode("ascii"), validate=True)
    except ValueError:
        fail(_BAD, "checkpoint root hash is not base64")
    if root != proof.root_hash:
        fail(_BAD, "checkpoint root hash differs from the inclusion proof's")
    hint = log_key.log_id[:4]
    for line in signature_block.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            fail(_BAD, f"checkpoint signature line is malformed: {line[:80]!r}")
        try:
            blob = base64.b64decode(parts[2].encode("ascii"), validate=True)
        except ValueError:
            fail(_BAD, "checkpoint signature is not base64")
        if len(blob) > 4 and blob[:4] == hint and _log_key_verifies(log_key, blob[4:], note.encode("utf-8")):
            return
    fail(_BAD, f"checkpoint carries no valid signature by log {log_key.log_id.hex()}")


def _verify_inclusion(entry: LogEntry, proof: InclusionProof, log_key: LogKey) -> None:
    leaf_hash = hashlib.sha256(b"\x00" + entry.body).digest()
    if (
        root_from_inclusion_proof(proof.log_index, proof.tree_size, leaf_hash, proof.hashes)
        != proof.root_hash
    ):
        fail(_BAD, "inclusion proof does not lead to its root hash")
    _verify_checkpoint(proof.checkpoint, proof, log_key)


def verify_entry(entry: LogEntry, root: TrustRoot, *, now: datetime) -> VerifiedEntry:
    """Check a log entry's inclusion promise and/or inclusion proof against the trusted root's log keys.

    `TLOG_MISSING` when the entry carries neither; `TLOG_INVALID` when anything present fails.
    The body is *not* checked here (see `check_body`).
    """
    log_key = root.tlogs.get(entry.log_id)
    if log_key is None:
        fail(_BAD, f"log {entry.log_id.hex()} is not a transparency log of the trusted root")
    if entry.signed_entry_timestamp is None and entry.inclusion_proof is None:
        fail(Reason.TLOG_MISSING, "the log entry has neither an inclusion promise nor an inclusion proof")
    evidence: list[str] = []
    integrated: datetime | None = None
    if entry.signed_entry_timestamp is not None:
        integrated = _verify_set(entry, log_key, now)
        evidence.append("inclusionPromise")
    if entry.inclusion_proof is not None:
        _verify_inclusion(entry, entry.inclusion_proof, log_key)
        evidence.append("inclusionProof")
    # Without an inclusion promise, only the proof's index is authenticated (by the checkpoint).
    index = entry.log_index
    if entry.signed_entry_timestamp is None and entry.inclusion_proof is not None:
        index = entry.inclusion_proof.log_index
    return VerifiedEntry(
        log_index=index,
        log_url=log_key.base_url,
        integrated_time=integrated,
        evidence=tuple(evidence),
    )


# --- entry bodies ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signed:
    """What a log entry's body must describe: one signature, its signer, and what it signs."""

    signature: bytes
    certificate: x509.Certificate | None = None  # keyless: the leaf must be the logged verifier
    public_key: PublicKey | None = None  # key-based: the logged verifier must carry this key
    artifact_sha256: bytes | None = None  # simple signing / message signature: the signed content's digest
    envelope: Envelope | None = None  # DSSE: the envelope whose signature this is


def _signer_matches(verifier: bytes, signed: Signed, *, der: bool = False) -> bool:
    """Whether a logged verifier (PEM, or DER with `der`; a certificate or a public key) is this signer.

    Keyless: the logged certificate must be the signing certificate itself. Key-based: the logged public
    key, or the logged certificate's public key, must be the key.
    """
    certificate_der: bytes | None = None
    key_der: bytes | None = None
    try:
        if der:
            try:
                certificate = x509.load_der_x509_certificate(verifier)
            except ValueError:
                key_der = spki_der(serialization.load_der_public_key(verifier))  # type: ignore[arg-type]
                certificate = None
        elif b"CERTIFICATE-----" in verifier:
            certificate = x509.load_pem_x509_certificate(verifier)
        else:
            key_der = spki_der(serialization.load_pem_public_key(verifier))  # type: ignore[arg-type]
            certificate = None
        if certificate is not None:
            certificate_der = certificate.public_bytes(serialization.Encoding.DER)
            if signed.certificate is None:
                key_der = spki_der(certificate.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError, UnsupportedAlgorithm):
        return False
    if signed.certificate is not None:
        return certificate_der == signed.certificate.public_bytes(serialization.Encoding.DER)
    if signed.public_key is None or key_der is None:
        return False
    return key_der == spki_der(signed.public_key)


def _hex_hash(container: Any, what: str) -> bytes:
    algorithm = get_str(container, "algorithm", what, reason=_BAD)
    if algorithm != "sha256":
        fail(_BAD, f"{what} uses {algorithm!r}, only sha256 is supported")
    try:
        return bytes.fromhex(get_str(container, "value", what, reason=_BAD))
    except ValueError:
        fail(_BAD, f"{what} value is not hex")


def _hashedrekord_v001(spec: Any, signed: Signed) -> None:
    if signed.artifact_sha256 is None:
        fail(_BAD, "a hashedrekord 0.0.1 entry cannot describe a DSSE signature")
    data_hash = _hex_hash(
        get_obj(get_obj(spec, "data", "hashedrekord", reason=_BAD), "hash", "data", reason=_BAD),
        "hashedrekord data hash",
    )
    if data_hash != signed.artifact_sha256:
        fail(_BAD, "log entry records the digest of different content")
    signature = get_obj(spec, "signature", "hashedrekord", reason=_BAD)
    if b64decode(signature.get("content"), "hashedrekord signature", reason=_BAD) != signed.signature:
        fail(_BAD, "log entry records a different signature")
    public_key = get_obj(signature, "publicKey", "hashedrekord signature", reason=_BAD)
    if not _signer_matches(
        b64decode(public_key.get("content"), "hashedrekord publicKey", reason=_BAD), signed
    ):
        fail(_BAD, "log entry records a different signer")


_V2_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "SHA2_256": hashes.SHA256,
    "SHA2_384": hashes.SHA384,
    "SHA2_512": hashes.SHA512,
}


def _hashedrekord_v002(spec: Any, signed: Signed) -> None:
    inner = get_obj(spec, "hashedRekordV002", "hashedrekord 0.0.2", reason=_BAD)
    data = get_obj(inner, "data", "hashedrekord 0.0.2", reason=_BAD)
    algorithm = _V2_HASHES.get(get_str(data, "algorithm", "hashedrekord 0.0.2 data", reason=_BAD))
    if algorithm is None:
        fail(_BAD, "hashedrekord 0.0.2 entry uses an unsupported digest algorithm")
    digest = b64decode(data.get("digest"), "hashedrekord 0.0.2 digest", reason=_BAD)
    if signed.envelope is not None:
        hasher = hashes.Hash(algorithm())
        hasher.update(signed.envelope.pae())
        expected = hasher.finalize()
    elif algorithm is hashes.SHA256 and signed.artifact_sha256 is not None:
        expected = signed.artifact_sha256
    else:
        fail(_BAD, "hashedrekord 0.0.2 entry digest algorithm does not match the signed content")
    if digest != expected:
        fail(_BAD, "log entry records the digest of different content")
    signature = get_obj(inner, "signature", "hashedrekord 0.0.2", reason=_BAD)
    if b64decode(signature.get("content"), "hashedrekord 0.0.2 signature", reason=_BAD) != signed.signature:
        fail(_BAD, "log entry records a different signature")
    verifier = get_obj(signature, "verifier", "hashedrekord 0.0.2 signature", reason=_BAD)
    holder = verifier.get("x509Certificate") or verifier.get("publicKey")
    raw = b64decode(holder.get("rawBytes") if isinstance(holder, dict) else None, "verifier", reason=_BAD)
    if not _signer_matches(raw, signed, der=True):
        fail(_BAD, "log entry records a different signer")


def _payload_hash_matches(container: Any, what: str, signed: Signed) -> None:
    assert signed.envelope is not None
    recorded = _hex_hash(get_obj(container, "payloadHash", what, reason=_BAD), f"{what} payloadHash")
    if recorded != hashlib.sha256(signed.envelope.payload).digest():
        fail(_BAD, "log entry records the hash of a different DSSE payload")


def _dsse_v001(spec: Any, signed: Signed) -> None:
    if signed.envelope is None:
        fail(_BAD, "a dsse entry cannot describe a simple signature")
    _payload_hash_matches(spec, "dsse entry", signed)
    for item in get_list(spec, "signatures", "dsse entry", reason=_BAD):
        if not isinstance(item, dict):
            continue
        try:
            signature = b64decode(item.get("signature"), "dsse entry signature", reason=_BAD)
            verifier = b64decode(item.get("verifier"), "dsse entry verifier", reason=_BAD)
        except Failure:
            continue
        if signature == signed.signature and _signer_matches(verifier, signed):
            return
    fail(_BAD, "log entry does not record this signature by this signer")


def _intoto_v002(spec: Any, signed: Signed) -> None:
    if signed.envelope is None:
        fail(_BAD, "an intoto entry cannot describe a simple signature")
    content = get_obj(spec, "content", "intoto entry", reason=_BAD)
    # content.hash (of the envelope as Rekor saw it) is not checked: the payload hash plus the signature
    # (which covers the payload type and payload) already bind the entry to this envelope.
    _payload_hash_matches(content, "intoto entry", signed)
    envelope = get_obj(content, "envelope", "intoto entry", reason=_BAD)
    if envelope.get("payloadType") != signed.envelope.payload_type:
        fail(_BAD, "log entry records a different DSSE payload type")
    for item in get_list(envelope, "signatures", "intoto entry envelope", reason=_BAD):
        if not isinstance(item, dict):
            continue
        try:
            # Rekor stores the envelope's base64 signature text base64-encoded once more.
            logged = b64decode(item.get("sig"), "intoto entry signature", reason=_BAD)
            verifier = b64decode(item.get("publicKey"), "intoto entry publicKey", reason=_BAD)
        except Failure:
            continue
        candidates = {logged}
        try:
            candidates.add(base64.b64decode(logged, validate=True))
        except ValueError:
            pass
        if signed.signature in candidates and _signer_matches(verifier, signed):
            return
    fail(_BAD, "log entry does not record this signature by this signer")


_BODIES = {
    ("hashedrekord", "0.0.1"): _hashedrekord_v001,
    ("hashedrekord", "0.0.2"): _hashedrekord_v002,
    ("dsse", "0.0.1"): _dsse_v001,
    ("intoto", "0.0.2"): _intoto_v002,
}


def check_body(body: bytes, signed: Signed, declared: tuple[str, str] | None = None) -> None:
    """`TLOG_INVALID` unless the entry body records `signed` (signature, signer and signed content), and is
    of the kind and version the entry declares (when it declares one)."""
    document = load_json(body, "log entry body", reason=_BAD)
    kind = get_str(document, "kind", "log entry body", reason=_BAD)
    version = get_str(document, "apiVersion", "log entry body", reason=_BAD)
    if declared is not None and declared != (kind, version):
        fail(_BAD, f"log entry declares {declared[0]} {declared[1]} but its body is {kind} {version}")
    checker = _BODIES.get((kind, version))
    if checker is None:
        fail(_BAD, f"log entry kind {kind} {version} is not supported")
    checker(get_obj(document, "spec", "log entry body", reason=_BAD), signed)


def verify_log_evidence(
    entries: Sequence[LogEntry],
    signed: Signed,
    *,
    root: TrustRoot | None,
    require: bool,
    need_time: bool,
    now: datetime,
) -> VerifiedEntry | None:
    """The first of `entries` that verifies and records `signed`; None when there is nothing to check.

    - No entries: `TLOG_MISSING` when `require` (or `need_time`), else None.
    - Entries but no trusted root: `TLOG_INVALID` when required, else None (nothing to check them with).
    - Entries present: one must verify and match, even when not required (a forged log entry is never
      silently accepted); `need_time` (keyless) also requires a signed integration time.
    """
    if not entries:
        if require or need_time:
            fail(Reason.TLOG_MISSING, "no transparency-log entry accompanies the signature")
        return None
    if root is None:
        if require or need_time:
            fail(_BAD, "the policy has no trusted root to verify transparency-log entries with")
        return None
    first: Failure | None = None
    for entry in entries:
        try:
            verified = verify_entry(entry, root, now=now)
            check_body(entry.body, signed, entry.kind_version)
            if need_time and verified.integrated_time is None:
                fail(
                    Reason.TLOG_MISSING,
                    "the log entry has no inclusion promise, so it gives no signed signing time",
                )
            return verified
        except Failure as failure:
            first = first or failure
    assert first is not None
    raise first


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def names_signer(body: bytes, public_key: PublicKey) -> bool:
    """Best effort, for diagnostics only: whether an unverified entry body names `public_key` as signer."""
    try:
        document = load_json(body, "log entry body", reason=_BAD)
        spec = get_obj(document, "spec", "log entry body", reason=_BAD)
    except Failure:
        return False
    blobs: list[tuple[Any, bool]] = []
    signature = spec.get("signature")
    if isinstance(signature, dict) and isinstance(signature.get("publicKey"), dict):
        blobs.append((signature["publicKey"].get("content"), False))
    for item in _list(spec.get("signatures")):
        if isinstance(item, dict):
            blobs.append((item.get("verifier"), False))
    content = spec.get("content")
    envelope = content.get("envelope") if isinstance(content, dict) else None
    for item in _list(envelope.get("signatures") if isinstance(envelope, dict) else None):
        if isinstance(item, dict):
            blobs.append((item.get("publicKey"), False))
    inner = spec.get("hashedRekordV002")
    signature_v2 = inner.get("signature") if isinstance(inner, dict) else None
    verifier = signature_v2.get("verifier") if isinstance(signature_v2, dict) else None
    if isinstance(verifier, dict):
        for holder in (verifier.get("publicKey"), verifier.get("x509Certificate")):
            if isinstance(holder, dict):
                blobs.append((holder.get("rawBytes"), True))
    probe = Signed(signature=b"", public_key=public_key)
    for blob, der in blobs:
        try:
            raw = b64decode(blob, "verifier", reason=_BAD)
        except Failure:
            continue
        if _signer_matches(raw, probe, der=der):
            return True
    return False
