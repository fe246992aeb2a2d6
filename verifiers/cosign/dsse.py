"""DSSE envelopes and the in-toto statements they carry.

PAE (pre-authentication encoding, DSSE v1), the bytes every DSSE signature covers::

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

LEN is the length in bytes, in ASCII decimal, without leading zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from verifiers.cosign.common import LIMITS, b64decode, fail, get_list, get_obj, get_str, load_json
from verifiers.cosign.model import Reason

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "STATEMENT_TYPES",
    "Envelope",
    "EnvelopeSignature",
    "Statement",
    "envelope_from_json",
    "envelope_from_obj",
    "pae",
    "parse_statement",
    "statement_for",
]

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"})


def pae(payload_type: str, payload: bytes) -> bytes:
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True, slots=True)
class EnvelopeSignature:
    sig: bytes  # decoded
    sig_b64: str  # as written in the envelope
    keyid: str


@dataclass(frozen=True, slots=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)


def envelope_from_obj(document: Any, what: str = "DSSE envelope") -> Envelope:
    """A DSSE envelope from its parsed JSON (the `dsseEnvelope` of a bundle, or a `.att` layer)."""
    if not isinstance(document, dict):
        fail(Reason.MALFORMED, f"{what} must be a JSON object")
    payload_type = get_str(document, "payloadType", what)
    payload = b64decode(document.get("payload"), f"{what} payload")
    raw_signatures = get_list(document, "signatures", what)
    if not raw_signatures:
        fail(Reason.MALFORMED, f"{what} has no signatures")
    if len(raw_signatures) > LIMITS.max_signatures:
        fail(Reason.MALFORMED, f"{what} has more than {LIMITS.max_signatures} signatures")
    signatures: list[EnvelopeSignature] = []
    for index, item in enumerate(raw_signatures):
        sig_b64 = get_str(item, "sig", f"{what} signature {index}")
        sig = b64decode(sig_b64, f"{what} signature {index}")
        if not sig:
            fail(Reason.MALFORMED, f"{what} signature {index} is empty")
        keyid = item.get("keyid", "")
        signatures.append(
            EnvelopeSignature(sig=sig, sig_b64=sig_b64, keyid=keyid if isinstance(keyid, str) else "")
        )
    return Envelope(payload_type=payload_type, payload=payload, signatures=tuple(signatures))


def envelope_from_json(data: bytes, what: str = "DSSE envelope") -> Envelope:
    return envelope_from_obj(load_json(data, what), what)


@dataclass(frozen=True, slots=True)
class Statement:
    type: str
    predicate_type: str
    subject_digests: tuple[dict[str, str], ...]
    predicate: Any = field(default=None, compare=False, repr=False)  # parsed JSON; None when absent

    def names_digest(self, digest: str) -> bool:
        """Whether a subject carries `digest` (`algorithm:hex`), compared under the same algorithm."""
        algorithm, _, hex_value = digest.partition(":")
        if not algorithm or not hex_value:
            return False
        return any(item.get(algorithm, "").lower() == hex_value for item in self.subject_digests)


def parse_statement(envelope: Envelope) -> Statement:
    """The in-toto statement an envelope carries. MALFORMED unless it is one."""
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        fail(
            Reason.MALFORMED,
            f"DSSE payloadType is {envelope.payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}",
        )
    document = load_json(envelope.payload, "in-toto statement")
    if not isinstance(document, dict):
        fail(Reason.MALFORMED, "in-toto statement must be a JSON object")
    statement_type = get_str(document, "_type", "in-toto statement")
    if statement_type not in STATEMENT_TYPES:
        fail(Reason.MALFORMED, f"in-toto statement _type {statement_type!r} is not supported")
    predicate_type = get_str(document, "predicateType", "in-toto statement")
    subjects = get_list(document, "subject", "in-toto statement")
    if len(subjects) > LIMITS.max_subjects:
        fail(Reason.MALFORMED, f"in-toto statement has more than {LIMITS.max_subjects} subjects")
    digests: list[dict[str, str]] = []
    for index, subject in enumerate(subjects):
        digest = get_obj(subject, "digest", f"in-toto statement subject {index}")
        digests.append({str(k): v for k, v in digest.items() if isinstance(v, str)})
    return Statement(
        type=statement_type,
        predicate_type=predicate_type,
        subject_digests=tuple(digests),
        predicate=document.get("predicate"),
    )


def statement_for(envelope: Envelope, expected_digest: str) -> Statement:
    """The envelope's statement, which must name `expected_digest` among its subjects (`DIGEST_MISMATCH`)."""
    statement = parse_statement(envelope)
    if not statement.names_digest(expected_digest):
        fail(
            Reason.DIGEST_MISMATCH,
            f"in-toto statement ({statement.predicate_type}) does not name {expected_digest} as a subject",
        )
    return statement
