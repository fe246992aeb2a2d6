"""Gatekeeper's external-data wire format: ProviderRequest in, ProviderResponse out. Pure functions.

Request:  {"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest",
           "request": {"keys": ["..."]}}
Response: {"apiVersion": ..., "kind": "ProviderResponse",
           "response": {"idempotent": true, "items": [{"key", "value"} | {"key", "error"}],
                        "systemError": "..."}}

Every key is echoed exactly as received. Undecided keys are left out of `items` (so Gatekeeper does not
cache them) and named in `systemError`.

A key that is not a valid Unicode string (a lone UTF-16 surrogate, e.g. `"\\ud800/x"`: legal JSON escapes,
but no UTF-8 encoding exists) is an error item for that key alone, echoed with U+FFFD in place of each lone
surrogate: that is the string Go's encoding/json (Gatekeeper) decodes from such an escape, so Gatekeeper
sees its own key again. Gatekeeper itself never sends one (Go's encoder only emits valid Unicode).
`encode_response` always produces valid UTF-8 JSON: an item that cannot be encoded becomes an error item
for its key, never a failure of the whole batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from provider.outcome import Decided, Invalid, Outcome, UndecidedKey, encode_value

__all__ = [
    "API_VERSIONS",
    "UNDECODABLE_KEY",
    "UNENCODABLE_VERDICT",
    "ProtocolError",
    "ProviderResponse",
    "RequestLimits",
    "encode_outcomes",
    "encode_response",
    "error_response",
    "is_well_formed",
    "parse_request",
    "response_for",
    "wire_key",
]

API_VERSION = "externaldata.gatekeeper.sh/v1beta1"
API_VERSIONS = frozenset({API_VERSION, "externaldata.gatekeeper.sh/v1alpha1"})
MAX_SYSTEM_ERROR_KEYS = 20
MAX_SYSTEM_ERROR_CHARS = 8192
UNDECODABLE_KEY = (
    "countersign: the key is not a valid Unicode string (it holds a lone UTF-16 surrogate, U+D800 to U+DFFF, "
    "here replaced by U+FFFD)"
)
UNENCODABLE_VERDICT = "countersign: the verdict for this key could not be encoded as JSON; not allowed"
NO_OUTCOME = UndecidedKey("internal_error", "no outcome was produced for this key")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


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


def is_well_formed(text: str) -> bool:
    """True when `text` has a UTF-8 encoding, i.e. holds no lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def wire_key(key: str) -> str:
    """`key` as echoed: unchanged when well formed, else with U+FFFD for each lone surrogate (what Go's
    encoding/json decodes a lone `\\uD8xx` escape or an invalid UTF-8 byte to)."""
    return key if is_well_formed(key) else _SURROGATE_RE.sub("\ufffd", key)


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
    """One item per received key (duplicates echoed each time); undecided keys only in systemError.

    A key that is not well formed is an error item whatever `outcomes` says (the engine need not see it);
    a well-formed key missing from `outcomes` is undecided (`internal_error`), never dropped silently.
    """
    items: list[Item] = []
    undecided: list[tuple[str, UndecidedKey]] = []
    seen_undecided: set[str] = set()
    for key in keys:
        if not is_well_formed(key):
            items.append({"key": wire_key(key), "error": UNDECODABLE_KEY})
            continue
        outcome = outcomes.get(key, NO_OUTCOME)
        if isinstance(outcome, Decided):
            items.append({"key": key, "value": outcome.value})
        elif isinstance(outcome, Invalid):
            items.append({"key": key, "error": outcome.error})
        elif key not in seen_undecided:
            seen_undecided.add(key)
            undecided.append((key, outcome))
    return _envelope(api_version, items, system_error(undecided))


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_outcomes(
    keys: Sequence[str], outcomes: Mapping[str, Outcome], api_version: str = API_VERSION
) -> bytes:
    """`encode_response(response_for(...))` without serialising decided values again.

    Byte for byte what `json.dumps(response_for(...), separators=(",", ":"), ensure_ascii=False)`
    gives, with each decided value spliced in from its encoding (`Decided.encoded`, made strict by the
    engine). Anything unusual (a key that is not valid Unicode, a value without an encoding, text that
    does not encode) takes the careful path, `encode_response`, which isolates a bad item to its key.
    """
    parts: list[bytes] = []
    undecided: list[tuple[str, UndecidedKey]] = []
    seen_undecided: set[str] = set()
    try:
        for key in keys:
            if not is_well_formed(key):
                raise ValueError("a key that is not valid Unicode")
            outcome = outcomes.get(key, NO_OUTCOME)
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
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return encode_response(response_for(keys, outcomes, api_version))


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


def _scrub(value: Any) -> Any:
    """`value` with U+FFFD for every lone surrogate in its strings (object keys included)."""
    if isinstance(value, str):
        return wire_key(value)
    if isinstance(value, dict):
        return {(_scrub(k) if isinstance(k, str) else k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _encodable_item(item: Item) -> Item:
    try:
        encode_value(item)
        return item
    except (ValueError, TypeError, RecursionError):
        pass
    try:
        scrubbed: Item = _scrub(item)  # text that was not valid Unicode: the verdict itself stands
        encode_value(scrubbed)
        return scrubbed
    except (ValueError, TypeError, RecursionError):
        return {"key": wire_key(item["key"]), "error": UNENCODABLE_VERDICT}


def encode_response(response: ProviderResponse) -> bytes:
    """The response as UTF-8 JSON, always: an item that cannot be encoded (text that is not valid Unicode
    is repaired with U+FFFD; a value that is not JSON at all, NaN, or nested too deeply is not) becomes an
    error item for its key alone, and the other items are unaffected."""
    try:
        return encode_value(response)
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        pass
    body = response["response"]
    items = [_encodable_item(item) for item in body["items"]]
    return encode_value(_envelope(wire_key(response["apiVersion"]), items, wire_key(body["systemError"])))
