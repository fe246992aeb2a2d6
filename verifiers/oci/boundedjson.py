"""Bounded JSON for registry content: strict UTF-8, no duplicate keys, finite numbers, bounded nesting.

The rules are `verifiers.strictjson`'s (the one strict parser), with both of its optional refusals on:
numbers that overflow a double and strings holding an unpaired surrogate. Python's `json` recurses once
per nesting level, so the nesting of the raw bytes is measured first (a linear scan) and anything deeper
than `max_depth` is refused before `json.loads` sees it. Every failure is a `ContentError` with path ""
(the document as a whole); nothing else escapes.
"""

from __future__ import annotations

from typing import Any

from verifiers import strictjson
from verifiers.oci.errors import ContentError
from verifiers.strictjson import json_type, nesting_exceeds, no_constant, no_duplicates, show

__all__ = [
    "MAX_DEPTH",
    "json_type",
    "load_json",
    "load_object",
    "nesting_exceeds",
    "no_constant",
    "no_duplicates",
    "show",
]

#: The deepest nesting accepted in registry content (a manifest is 4 deep; a token response 2).
MAX_DEPTH = 64


def load_json(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse untrusted JSON; any problem (including nesting deeper than `max_depth`) is a ContentError.

    Refused: invalid UTF-8 (and a byte-order mark), duplicate keys, NaN/Infinity and numbers that
    overflow a float, integers longer than Python's digit limit, strings holding unpaired surrogates
    (RFC 7493), and nesting deeper than `max_depth`.
    """
    try:
        raw = data if isinstance(data, bytes) else data.encode("utf-8")
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        raise ContentError("", f"not UTF-8 (byte {e.start})") from None
    except UnicodeEncodeError:
        raise ContentError("", "the text holds an unpaired UTF-16 surrogate") from None
    if nesting_exceeds(raw, max_depth):
        raise ContentError("", f"JSON nested more than {max_depth} levels deep")
    try:
        value = strictjson.parse(text, finite_numbers=True)
    except strictjson.StrictJSONError as e:
        if e.kind == strictjson.RECURSION:  # not reachable for valid JSON after the scan
            raise ContentError("", f"JSON nested more than {max_depth} levels deep") from None
        if e.kind == strictjson.SYNTAX:
            raise ContentError("", f"not valid JSON: {e.msg} (line {e.lineno} column {e.colno})") from None
        raise ContentError("", f"not valid JSON: {e.message[:120]}") from None  # the rules, digit limits
    if strictjson.has_unpaired_surrogate(raw, value):
        raise ContentError("", "a JSON string holds an unpaired UTF-16 surrogate")
    return value


def load_object(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """`load_json`, and the top level must be an object."""
    value = load_json(data, max_depth=max_depth)
    if not isinstance(value, dict):
        raise ContentError("", f"expected a JSON object, got {json_type(value)}")
    return value
