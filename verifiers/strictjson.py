"""Strict JSON for signed content: UTF-8, no duplicate keys, no NaN/Infinity, bounded nesting.

Two parsers that disagree on which of two duplicate keys wins is how signed content gets swapped; a
verifier must refuse such documents rather than pick one. The rules are those of registry content
(`verifiers.oci.boundedjson`: the same duplicate-key and constant hooks, the same nesting pre-scan, which is
exact for valid JSON), without its two extra refusals (lone surrogates, numbers that overflow a float):
adopting those for signed payloads would need checking against the reference verifiers first (Go decodes
a lone surrogate escape to U+FFFD and accepts it).
"""

from __future__ import annotations

import json
from typing import Any

from verifiers.oci.boundedjson import nesting_exceeds, no_constant, no_duplicates

__all__ = ["loads"]


def loads(data: bytes | str, *, max_depth: int) -> Any:
    """Parse strictly; any violation (including invalid UTF-8 or a byte-order mark) is a ValueError."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if nesting_exceeds(raw, max_depth):  # refused before json.loads can recurse 100,000 levels deep
        raise ValueError(f"nested more than {max_depth} levels deep")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except RecursionError as exc:
        raise ValueError("nested too deeply to parse") from exc
