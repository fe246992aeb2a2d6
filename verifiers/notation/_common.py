"""Internals shared by the notation envelope modules: limits, the error type, strict decoders.

Not a public API: callers use `verifiers.notation.envelope`.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

from verifiers import strictjson
from verifiers.notation.reasons import EnvelopeReason

__all__ = [
    "LIMITS",
    "EnvelopeError",
    "EnvelopeReason",
    "Limits",
    "b64decode_std",
    "b64url_decode",
    "check_plain",
    "fail",
    "load_json",
    "parse_rfc3339",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the envelope layer enforces, in one place."""

    max_envelope_bytes: int = 4 * 1024 * 1024
    max_payload_bytes: int = 64 * 1024
    max_certificates: int = 10
    max_json_depth: int = 32
    max_cbor_depth: int = 32


LIMITS = Limits()


class EnvelopeError(ValueError):
    """The envelope was rejected: a stable `reason` code (see `EnvelopeReason`) and a sentence for humans."""

    def __init__(self, reason: EnvelopeReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def fail(reason: EnvelopeReason, message: str) -> NoReturn:
    raise EnvelopeError(reason, message)


def load_json(data: bytes, what: str, *, reason: EnvelopeReason = EnvelopeReason.MALFORMED) -> Any:
    """Strict JSON: UTF-8 without BOM, no duplicate keys, no NaN/Infinity, bounded depth."""
    try:
        return strictjson.loads(data, max_depth=LIMITS.max_json_depth)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        fail(reason, f"{what} is not valid JSON: {exc}")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_B64STD = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def b64url_decode(value: object, what: str) -> bytes:
    """base64url without padding (RFC 7515 section 2), canonical: no '=', no '+' or '/', no stray bits."""
    if not isinstance(value, str) or not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        fail(EnvelopeReason.MALFORMED, f"{what} is not unpadded base64url")
    try:
        decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        fail(EnvelopeReason.MALFORMED, f"{what} is not unpadded base64url: {exc}")
    if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode("ascii") != value:
        fail(EnvelopeReason.MALFORMED, f"{what} is not canonical base64url (non-zero padding bits)")
    return decoded


def b64decode_std(value: object, what: str) -> bytes:
    """Standard base64 with padding (how x5c and Go's []byte are written), canonical."""
    if not isinstance(value, str) or not _B64STD.fullmatch(value):
        fail(EnvelopeReason.MALFORMED, f"{what} is not padded standard base64")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        fail(EnvelopeReason.MALFORMED, f"{what} is not padded standard base64: {exc}")
    if base64.b64encode(decoded).decode("ascii") != value:
        fail(EnvelopeReason.MALFORMED, f"{what} is not canonical base64 (non-zero padding bits)")
    return decoded


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))", re.ASCII
)


def parse_rfc3339(value: object, what: str) -> datetime:
    """An RFC 3339 date-time with an explicit offset ("Z" or +hh:mm), as Go's time.RFC3339 writes it."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        fail(EnvelopeReason.MALFORMED, f"{what} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or "").ljust(6, "0")[:6]
    try:
        offset = timedelta(0)
        if match.group(8) != "Z":
            sign = -1 if match.group(9) == "-" else 1
            offset_h, offset_m = int(match.group(10)), int(match.group(11))
            if offset_h > 23 or offset_m > 59:
                raise ValueError("offset out of range")
            offset = sign * timedelta(hours=offset_h, minutes=offset_m)
        return datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=timezone(offset))
    except (ValueError, OverflowError) as exc:
        fail(EnvelopeReason.MALFORMED, f"{what} is not a valid date-time: {exc}")


_PLAIN_SCALARS = (str, bytes, int, float, bool, type(None), datetime)


def check_plain(value: Any, what: str, *, limit: int) -> None:
    """Reject anything but plain data (scalars, sequences, string/int-keyed maps), bounded in depth."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            fail(EnvelopeReason.MALFORMED, f"{what} is nested more than {limit} levels deep")
        if isinstance(item, float) and not math.isfinite(item):
            fail(EnvelopeReason.MALFORMED, f"{what} holds a non-finite number")
        if isinstance(item, _PLAIN_SCALARS):
            continue
        if isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str | int) or isinstance(key, bool):
                    fail(EnvelopeReason.MALFORMED, f"{what} has a map key that is not a string or an integer")
                stack.append((child, depth + 1))
        else:
            fail(EnvelopeReason.MALFORMED, f"{what} holds a value of unsupported type {type(item).__name__}")
