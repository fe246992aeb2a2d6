"""Internals shared by the cosign verification core: the failure type, size limits, strict JSON and base64.

Not a public API: the modules of this package use it; callers use `verifiers.cosign.core`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from verifiers import strictjson
from verifiers.cosign.model import Reason

__all__ = [
    "LIMITS",
    "Failure",
    "Limits",
    "Verified",
    "b64decode",
    "fail",
    "get_int",
    "get_list",
    "get_obj",
    "get_str",
    "load_json",
    "rfc3339",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the core enforces, in one place (checked where the bytes arrive)."""

    max_document_bytes: int = 4 * 1024 * 1024  # payloads, bundles, envelopes, annotations
    max_chain_certificates: int = 10  # intermediates and roots a signature may carry
    max_signatures: int = 16  # DSSE signatures in one envelope
    max_tlog_entries: int = 8  # transparency-log entries in one bundle
    max_subjects: int = 1024  # in-toto statement subjects
    max_json_depth: int = 64  # nesting of any JSON document we parse


LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Verified:
    """A candidate that verified: the key or identity that vouched for it, and what to report."""

    anchor: str
    message: str
    details: dict[str, Any]
    predicate_type: str | None = None


class Failure(Exception):
    """A definite verification failure: a `Reason` code and a sentence for humans."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def fail(reason: Reason, message: str) -> NoReturn:
    raise Failure(reason, message)


def load_json(data: bytes | str, what: str, *, reason: Reason = Reason.MALFORMED) -> Any:
    """Parse `data` as strict JSON (UTF-8, no duplicate keys, no NaN/Infinity), bounded in size and depth."""
    size = len(data)
    if size > LIMITS.max_document_bytes:
        fail(reason, f"{what} is {size} bytes, more than the {LIMITS.max_document_bytes}-byte limit")
    try:
        return strictjson.loads(data, max_depth=LIMITS.max_json_depth)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        fail(reason, f"{what} is not valid JSON: {exc}")


def b64decode(value: object, what: str, *, reason: Reason = Reason.MALFORMED) -> bytes:
    """Decode standard base64 (padding required, no stray characters); URL-safe input is rejected."""
    if not isinstance(value, str):
        fail(reason, f"{what} must be a base64 string")
    if len(value) > LIMITS.max_document_bytes * 2:
        fail(reason, f"{what} is larger than the {LIMITS.max_document_bytes}-byte limit")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        fail(reason, f"{what} is not valid base64: {exc}")


def get_obj(container: Any, key: str, what: str, *, reason: Reason = Reason.MALFORMED) -> dict[str, Any]:
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, dict):
        fail(reason, f"{what}: `{key}` must be a JSON object")
    return value


def get_list(container: Any, key: str, what: str, *, reason: Reason = Reason.MALFORMED) -> list[Any]:
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, list):
        fail(reason, f"{what}: `{key}` must be a JSON array")
    return value


def get_str(container: Any, key: str, what: str, *, reason: Reason = Reason.MALFORMED) -> str:
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, str):
        fail(reason, f"{what}: `{key}` must be a string")
    return value


def get_int(container: Any, key: str, what: str, *, reason: Reason = Reason.MALFORMED) -> int:
    """An integer field; protobuf JSON writes 64-bit integers as decimal strings, so those are accepted."""
    value = container.get(key) if isinstance(container, dict) else None
    if isinstance(value, bool):
        fail(reason, f"{what}: `{key}` must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    fail(reason, f"{what}: `{key}` must be an integer")


def rfc3339(moment: datetime) -> str:
    """`2024-01-02T03:04:05Z` (UTC, whole seconds)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
