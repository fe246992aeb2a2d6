"""Structure-aware mutation of JSON documents, for property-based tests of parsers fed hostile input.

* :func:`json_values`: a Hypothesis strategy for any JSON value (sizes chosen by the caller);
* :func:`json_paths`: every place in a document (the document itself, each member, each element);
* :func:`replaced`: a copy of a document with the value at one of those places replaced.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

__all__ = ["json_paths", "json_values", "replaced"]


def json_values(
    *, max_text: int, max_items: int, max_key: int, max_leaves: int, floats: bool = True
) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars (finite floats if ``floats``; strings up to ``max_text``), nested in lists
    and objects of up to ``max_items`` entries (keys up to ``max_key`` characters), ``max_leaves`` in all."""
    scalars: st.SearchStrategy[Any] = st.none() | st.booleans() | st.integers()
    if floats:
        scalars = scalars | st.floats(allow_nan=False)
    scalars = scalars | st.text(max_size=max_text)
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=max_items)
            | st.dictionaries(st.text(max_size=max_key), children, max_size=max_items)
        ),
        max_leaves=max_leaves,
    )


def json_paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path in ``document`` (keys and indexes from the top), the empty path (the whole) first."""
    out = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            out.extend(json_paths(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            out.extend(json_paths(value, (*prefix, index)))
    return out


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``document`` with the value at ``path`` replaced by ``value`` (``document`` is unchanged)."""
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy
