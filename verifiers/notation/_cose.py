"""The COSE envelope (`application/cose`): a tagged COSE_Sign1 (RFC 9052), as notation writes it.

    18([protected: bstr .cbor {1: alg, 2: crit, 3: cty, "io.cncf.notary.*": ...},
        unprotected: {33: x5chain, "io.cncf.notary.signingAgent": tstr,
                      "io.cncf.notary.timestampSignature": bstr},
        payload: bstr, signature: bstr])

The signature covers Sig_structure = ["Signature1", protected (the bstr as written), h'', payload]. Signed
times are CBOR tag 1 (epoch seconds). CBOR is decoded strictly: definite lengths only, no duplicate map keys,
bounded nesting, the whole input consumed, map labels only integers or text, no shared references.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import cbor2

from verifiers.notation._algorithms import COSE_ALGORITHMS
from verifiers.notation._common import LIMITS, EnvelopeReason, fail
from verifiers.notation._headers import SIGNING_AGENT, TIMESTAMP_SIGNATURE, RawEnvelope

__all__ = ["parse_cose"]

COSE_SIGN1_TAG = 18
_ALG, _CRIT, _CTY, _X5CHAIN = 1, 2, 3, 33


@dataclass(frozen=True, slots=True)
class _Epoch:
    """A CBOR tag 1 value, kept as written so that `_decode_time` can insist on a number."""

    value: object


def _epoch(value: object, immutable: bool) -> _Epoch:
    return _Epoch(value)


def _refuse(value: object, immutable: bool) -> NoReturn:
    raise ValueError("CBOR tag not allowed in a notation envelope")


# Built-in cbor2 tags that could alias values (shared references, string references) or decode text dates.
_SEMANTIC_DECODERS: dict[int, Any] = {
    0: _refuse,
    1: _epoch,
    25: _refuse,
    28: _refuse,
    29: _refuse,
    256: _refuse,
}


def _decode_cbor(data: bytes, what: str) -> Any:
    stream = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            stream,
            semantic_decoders=_SEMANTIC_DECODERS,
            max_depth=LIMITS.max_cbor_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
        value = decoder.decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        fail(EnvelopeReason.MALFORMED, f"{what} is not valid CBOR: {exc}")
    if stream.tell() != len(data):
        fail(EnvelopeReason.MALFORMED, f"{what} has {len(data) - stream.tell()} bytes after the CBOR item")
    return value


def _decode_time(value: object, what: str) -> datetime:
    if not isinstance(value, _Epoch):
        fail(EnvelopeReason.MALFORMED, f"{what} must be a CBOR tag 1 (epoch) date-time")
    seconds = value.value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        fail(EnvelopeReason.MALFORMED, f"{what} must be a number of seconds")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError) as exc:
        fail(EnvelopeReason.MALFORMED, f"{what} is out of range: {exc}")


def _header_map(value: object, what: str) -> Mapping[str | int, Any]:
    if not isinstance(value, Mapping):
        fail(EnvelopeReason.MALFORMED, f"{what} must be a CBOR map")
    for key in value:
        if type(key) not in (int, str):
            fail(EnvelopeReason.MALFORMED, f"{what} has a label that is neither an integer nor text")
    return value


def _x5chain(value: object) -> tuple[bytes, ...]:
    if isinstance(value, bytes):
        return (value,)
    if not isinstance(value, Sequence) or isinstance(value, str):
        fail(EnvelopeReason.MALFORMED, "x5chain must be a bstr or an array of bstr")
    if len(value) > LIMITS.max_certificates:
        fail(EnvelopeReason.LIMIT_EXCEEDED, f"x5chain holds more than {LIMITS.max_certificates} certificates")
    if not all(isinstance(item, bytes) for item in value):
        fail(EnvelopeReason.MALFORMED, "x5chain must be a bstr or an array of bstr")
    return tuple(value)


def _plain(value: object) -> object:
    """Extended attributes: a top-level tag 1 becomes a datetime; anything else odd is refused later."""
    return _decode_time(value, "extended attribute") if isinstance(value, _Epoch) else value


def parse_cose(envelope: bytes) -> RawEnvelope:
    item = _decode_cbor(envelope, "COSE envelope")
    if not isinstance(item, cbor2.CBORTag) or item.tag != COSE_SIGN1_TAG:
        fail(EnvelopeReason.MALFORMED, f"COSE envelope must be a COSE_Sign1 with CBOR tag {COSE_SIGN1_TAG}")
    body = item.value
    if not isinstance(body, Sequence) or isinstance(body, str | bytes) or len(body) != 4:
        fail(EnvelopeReason.MALFORMED, "COSE_Sign1 must be an array of four items")
    protected_bytes, unprotected_raw, payload, signature = body
    if not isinstance(protected_bytes, bytes):
        fail(EnvelopeReason.MALFORMED, "COSE_Sign1 protected header must be a bstr")
    if payload is None:
        fail(EnvelopeReason.MALFORMED, "COSE_Sign1 payload is detached; notation envelopes embed it")
    if not isinstance(payload, bytes):
        fail(EnvelopeReason.MALFORMED, "COSE_Sign1 payload must be a bstr")
    if len(payload) > LIMITS.max_payload_bytes:
        fail(
            EnvelopeReason.LIMIT_EXCEEDED,
            f"payload is {len(payload)} bytes, more than {LIMITS.max_payload_bytes}",
        )
    if not isinstance(signature, bytes) or not signature:
        fail(EnvelopeReason.MALFORMED, "COSE_Sign1 signature must be a non-empty bstr")

    protected = _header_map(
        _decode_cbor(protected_bytes, "COSE protected header") if protected_bytes else {},
        "COSE protected header",
    )
    unprotected = _header_map(unprotected_raw, "COSE unprotected header")
    if shared := sorted(map(str, set(protected) & set(unprotected))):
        fail(EnvelopeReason.MALFORMED, f"labels {shared} are both protected and unprotected")
    if _X5CHAIN in protected:
        fail(EnvelopeReason.MALFORMED, "x5chain belongs in the unprotected header")

    alg = protected.get(_ALG)
    if alg is None:
        fail(EnvelopeReason.MALFORMED, "COSE protected header has no alg (label 1)")
    if type(alg) is not int or alg not in COSE_ALGORITHMS:
        fail(EnvelopeReason.UNSUPPORTED_ALGORITHM, f"COSE algorithm {alg!r} is not supported")
    crit = protected.get(_CRIT, ())
    if not isinstance(crit, Sequence) or isinstance(crit, str | bytes):
        fail(EnvelopeReason.MALFORMED, "COSE crit (label 2) must be an array")
    if not all(type(label) in (int, str) for label in crit):
        fail(EnvelopeReason.MALFORMED, "COSE crit (label 2) must hold integer or text labels")
    if {_ALG, _CRIT, _CTY} & {label for label in crit if type(label) is int}:
        fail(EnvelopeReason.MALFORMED, "COSE crit must not list alg, crit or content type")

    agent = unprotected.get(SIGNING_AGENT)
    if agent is not None and not isinstance(agent, str):
        fail(EnvelopeReason.MALFORMED, f"{SIGNING_AGENT} must be a text string")
    token = unprotected.get(TIMESTAMP_SIGNATURE)
    if token is not None and not isinstance(token, bytes):
        fail(EnvelopeReason.MALFORMED, f"{TIMESTAMP_SIGNATURE} must be a bstr")
    certificates = _x5chain(unprotected[_X5CHAIN]) if _X5CHAIN in unprotected else ()

    attributes = {
        k: (v if k.startswith("io.cncf.notary.") else _plain(v))
        for k, v in protected.items()
        if isinstance(k, str)
    }
    return RawEnvelope(
        algorithm=COSE_ALGORITHMS[alg],
        content_type=protected.get(_CTY),
        critical=tuple(crit),
        attributes=attributes,
        decode_time=_decode_time,
        certificates=certificates,
        signing_agent=agent,
        timestamp_token=token,
        signature=signature,
        signing_input=cbor2.dumps(["Signature1", protected_bytes, b"", payload]),
        payload=payload,
    )
