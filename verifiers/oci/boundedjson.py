"""Bounded JSON for registry content: strict UTF-8, no duplicate keys, finite numbers, bounded nesting.

Python's `json` recurses once per nesting level; a document nested 200,000 deep raises `RecursionError`
(or worse, takes the stack with it). `load_json` first measures the nesting of the raw bytes with a
linear, allocation-light scan (no recursion, no Python loop per byte) and refuses anything deeper than
`max_depth` before `json.loads` sees it. Every failure is a `ContentError`; nothing else escapes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from verifiers.oci.errors import ContentError

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

_KEEP_BRACKETS = bytes(range(256)).translate(bytes.maketrans(b"{}", b"[]"))
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_RUNS = re.compile(rb"\[+|\]+")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def nesting_exceeds(data: bytes, limit: int) -> bool:
    """Whether the JSON text `data` nests arrays/objects more than `limit` deep (exact for valid JSON).

    Strings are removed first (escaped backslashes, then escaped quotes, then every other quoted span),
    then everything but brackets; a few passes drop innermost `[]` pairs (one level each), and a regex
    over runs of brackets measures what is left. Linear in `len(data)`, a few C passes.
    """
    s = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    if b'"' in s:
        s = b"".join(s.split(b'"')[::2])
    s = s.translate(_KEEP_BRACKETS, _NOT_BRACKETS)
    for _ in range(8):
        if len(s) <= 2 * limit:
            break
        shorter = s.replace(b"[]", b"")
        if len(shorter) == len(s):
            break
        s = shorter
        limit -= 1  # each pass removes exactly the innermost level
        if limit < 0:
            return True
    if s.count(b"[") <= limit:
        return False
    depth = 0
    for run in _RUNS.finditer(s):
        if s[run.start()] == 0x5B:  # "["
            depth += run.end() - run.start()
            if depth > limit:
                return True
        else:
            depth -= run.end() - run.start()
    return False


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {show(key)}")
            seen.add(key)
    return out


def no_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


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
        value = json.loads(
            text, object_pairs_hook=no_duplicates, parse_constant=no_constant, parse_float=_finite
        )
    except RecursionError:  # not reachable for valid JSON after the scan; invalid JSON may still recurse
        raise ContentError("", f"JSON nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as e:
        raise ContentError("", f"not valid JSON: {e.msg} (line {e.lineno} column {e.colno})") from None
    except ValueError as e:  # the hooks above, and int digit limits
        raise ContentError("", f"not valid JSON: {str(e)[:120]}") from None
    if _SURROGATE_ESCAPE.search(raw) is not None and _lone_surrogate(value):
        raise ContentError("", "a JSON string holds an unpaired UTF-16 surrogate")
    return value


def load_object(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """`load_json`, and the top level must be an object."""
    value = load_json(data, max_depth=max_depth)
    if not isinstance(value, dict):
        raise ContentError("", f"expected a JSON object, got {json_type(value)}")
    return value


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def show(value: object, limit: int = 80) -> str:
    """A short, ASCII-only rendering of an untrusted value for an error message (never the whole value)."""
    if isinstance(value, str):
        text = ascii(value[:limit]) + ("..." if len(value) > limit else "")
        return text
    if isinstance(value, bool | int | float) or value is None:
        text = json.dumps(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge number"
        return text[:limit]
    return json_type(value)
