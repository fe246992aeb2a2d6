"""Gatekeeper's external-data wire format: ProviderRequest in, ProviderResponse out. Pure functions.

Request:  {"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest",
           "request": {"keys": ["..."]}}
Response: {"apiVersion": ..., "kind": "ProviderResponse",
           "response": {"idempotent": true, "items": [{"key", "value"} | {"key", "error"}],
                        "systemError": "..."}}

Every key is echoed exactly as received. Undecided keys are left out of `items` (so Gatekeeper does not
cache them) and named in `systemError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from provider.engine import Decided, Invalid, Outcome, UndecidedKey

__all__ = [
    "API_VERSIONS",
    "ProtocolError",
    "ProviderResponse",
    "RequestLimits",
    "encode_response",
    "error_response",
    "parse_request",
    "response_for",
]

API_VERSION = "externaldata.gatekeeper.sh/v1beta1"
API_VERSIONS = frozenset({API_VERSION, "externaldata.gatekeeper.sh/v1alpha1"})
MAX_SYSTEM_ERROR_KEYS = 20
MAX_SYSTEM_ERROR_CHARS = 8192


class Item(TypedDict):
    key: str
    value: NotRequired[Any]
    error: NotRequired[str]


class ResponseBody(TypedDict):
    idempotent: bool
    items: list[Item]
    systemError: str


class ProviderResponse(TypedDict):
    apiVersion: str
    kind: Literal["ProviderResponse"]
    response: ResponseBody


class ProtocolError(ValueError):
    """The request is malformed; the message goes into `systemError` of an HTTP 400 reply."""


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_keys: int = 1000
    max_key_bytes: int = 4096


def parse_request(body: bytes, limits: RequestLimits) -> tuple[str, list[str]]:
    """Validate a ProviderRequest body; return (apiVersion, keys) or raise ProtocolError."""
    try:
        doc = json.loads(body.decode("utf-8"))  # strictly UTF-8 (json.loads on bytes would guess UTF-16/32)
    except UnicodeDecodeError as e:
        raise ProtocolError(f"request body is not UTF-8: {e}") from e
    except json.JSONDecodeError as e:
        raise ProtocolError(f"request body is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except RecursionError as e:
        raise ProtocolError("request body is nested too deeply") from e
    if not isinstance(doc, dict):
        raise ProtocolError("request body must be a JSON object")
    api_version = doc.get("apiVersion")
    if not isinstance(api_version, str) or api_version not in API_VERSIONS:
        raise ProtocolError(f"apiVersion must be {API_VERSION!r}, got {api_version!r}")
    if doc.get("kind") != "ProviderRequest":
        raise ProtocolError(f"kind must be 'ProviderRequest', got {doc.get('kind')!r}")
    request = doc.get("request")
    if not isinstance(request, dict):
        raise ProtocolError("'request' must be an object with a 'keys' list")
    keys = request.get("keys")
    if not isinstance(keys, list):
        raise ProtocolError("'request.keys' must be a list of strings")
    if len(keys) > limits.max_keys:
        raise ProtocolError(f"too many keys: {len(keys)} (at most {limits.max_keys} per request)")
    for i, key in enumerate(keys):
        if not isinstance(key, str):
            raise ProtocolError(f"request.keys[{i}] must be a string, got {type(key).__name__}")
        if len(key.encode("utf-8", "surrogatepass")) > limits.max_key_bytes:
            raise ProtocolError(f"request.keys[{i}] is longer than {limits.max_key_bytes} bytes")
    return str(api_version), keys


def _envelope(api_version: str, items: list[Item], system_error: str) -> ProviderResponse:
    return {
        "apiVersion": api_version,
        "kind": "ProviderResponse",
        "response": {"idempotent": True, "items": items, "systemError": system_error},
    }


def error_response(message: str, api_version: str = API_VERSION) -> ProviderResponse:
    return _envelope(api_version, [], f"countersign: {message}")


def response_for(
    keys: Sequence[str], outcomes: Mapping[str, Outcome], api_version: str = API_VERSION
) -> ProviderResponse:
    """One item per received key (duplicates echoed each time); undecided keys only in systemError."""
    items: list[Item] = []
    undecided: list[tuple[str, UndecidedKey]] = []
    seen_undecided: set[str] = set()
    for key in keys:
        outcome = outcomes[key]
        if isinstance(outcome, Decided):
            items.append({"key": key, "value": outcome.value})
        elif isinstance(outcome, Invalid):
            items.append({"key": key, "error": outcome.error})
        elif key not in seen_undecided:
            seen_undecided.add(key)
            undecided.append((key, outcome))
    return _envelope(api_version, items, system_error(undecided))


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode_response(
    keys: Sequence[str], outcomes: Mapping[str, Outcome], api_version: str = API_VERSION
) -> bytes:
    """`response_for` serialized as compact UTF-8 JSON, byte for byte what
    `json.dumps(response_for(...), separators=(",", ":"), ensure_ascii=False).encode()` gives, with each
    decided value spliced in from its encoding (`Decided.encoded`) rather than serialized again."""
    parts: list[bytes] = []
    undecided: list[tuple[str, UndecidedKey]] = []
    seen_undecided: set[str] = set()
    for key in keys:
        outcome = outcomes[key]
        if isinstance(outcome, Decided):
            parts.append(b'{"key":' + _json(key).encode() + b',"value":' + outcome.encoded + b"}")
        elif isinstance(outcome, Invalid):
            parts.append(f'{{"key":{_json(key)},"error":{_json(outcome.error)}}}'.encode())
        elif key not in seen_undecided:
            seen_undecided.add(key)
            undecided.append((key, outcome))
    head = (
        f'{{"apiVersion":{_json(api_version)},"kind":"ProviderResponse",'
        '"response":{"idempotent":true,"items":['
    )
    tail = f'],"systemError":{_json(system_error(undecided))}}}}}'
    return head.encode() + b",".join(parts) + tail.encode()


def system_error(undecided: Sequence[tuple[str, UndecidedKey]]) -> str:
    if not undecided:
        return ""
    parts = [f"{key}: {u.message} [{u.reason}]" for key, u in undecided[:MAX_SYSTEM_ERROR_KEYS]]
    more = len(undecided) - MAX_SYSTEM_ERROR_KEYS
    text = f"countersign: {len(undecided)} key(s) undecided, admission must fail closed: " + "; ".join(parts)
    if more > 0:
        text += f"; and {more} more"
    if len(text) > MAX_SYSTEM_ERROR_CHARS:
        text = text[: MAX_SYSTEM_ERROR_CHARS - 3] + "..."
    return text
