"""Strict JSON for signed content: UTF-8, no duplicate keys, no NaN/Infinity, bounded nesting.

Two parsers that disagree on which of two duplicate keys wins is how signed content gets swapped; a
verifier must refuse such documents rather than pick one.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from verifiers.oci.boundedjson import nesting_exceeds

__all__ = ["loads"]


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def _too_deep(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def loads(data: bytes | str, *, max_depth: int) -> Any:
    """Parse strictly; any violation (including invalid UTF-8 or a byte-order mark) is a ValueError."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if nesting_exceeds(raw, max_depth):  # refused before json.loads can recurse 100,000 levels deep
        raise ValueError(f"nested more than {max_depth} levels deep")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("nested too deeply to parse") from exc
    if _too_deep(value, max_depth):
        raise ValueError(f"nested more than {max_depth} levels deep")
    return value
