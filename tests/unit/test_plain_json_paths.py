"""`verifiers.base.plain_json` builds a value's path only when it fails: same messages, bounds and copies.

The oracle below is the implementation before that change (at 138d687), which formatted every value's path
(`details.a[2]`) as it walked. Generated values, good and bad, deep and wide, with keys that `_short`
bounds or escapes, must give the same copy or the same `error(where, message)` call as the oracle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifiers.base import (
    MAX_DETAILS_CHARS,
    MAX_DETAILS_DEPTH,
    MAX_DETAILS_NODES,
    InvalidReport,
    Report,
    _short,  # unchanged by the change the oracle checks
    check_report,
    plain_json,
)

FUZZ = settings(max_examples=400, derandomize=True, deadline=None, database=None)
_MAX_INT = 2**63


class _OracleWalk:
    """`verifiers.base._Walk` as of 138d687: the path of every value formatted on the way down."""

    def __init__(
        self, max_depth: int, max_nodes: int, max_chars: int, error: Callable[[str | None, str], Exception]
    ) -> None:
        self.max_depth, self.max_nodes, self.max_chars = max_depth, max_nodes, max_chars
        self.error = error
        self.nodes = 0
        self.chars = 0

    def copy(self, value: object, path: str, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise self.error(None, f"more than {self.max_nodes} values")
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if not -_MAX_INT <= value < _MAX_INT:
                raise self.error(path, "integer out of the 64-bit range")
            return int.__int__(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.error(path, f"{value} is not a JSON number")
            return float.__float__(value)
        if isinstance(value, str):
            self.chars += len(value)
            if self.chars > self.max_chars:
                raise self.error(None, f"more than {self.max_chars} characters of strings")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise self.error(path, "a string holds an unpaired surrogate") from None
            return str.__str__(value)
        if depth >= self.max_depth:
            raise self.error(path, f"nested more than {self.max_depth} levels deep")
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise self.error(path, f"a key is {type(key).__name__}, not a string")
                where = f"{path}.{_short(key)}"
                out[self.copy(key, where, depth)] = self.copy(item, where, depth + 1)
            return out
        if isinstance(value, list | tuple):
            return [self.copy(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        raise self.error(path, f"{type(value).__name__} is not a JSON value")


def _oracle(
    value: object,
    path: str = "details",
    *,
    max_depth: int = MAX_DETAILS_DEPTH,
    max_nodes: int = MAX_DETAILS_NODES,
    max_chars: int = MAX_DETAILS_CHARS,
    error: Callable[[str | None, str], Exception],
) -> Any:
    return _OracleWalk(max_depth, max_nodes, max_chars, error).copy(value, path, 0)


class _Recorded(Exception):
    """What an `error` callback made: the arguments it was called with."""

    def __init__(self, where: str | None, message: str) -> None:
        super().__init__(where, message)
        self.where, self.message = where, message


def _outcome(copy: Callable[..., Any], value: object, path: str, bounds: dict[str, int]) -> tuple[str, Any]:
    """The copy, or every call of `error` (there must be exactly one) when the value is refused."""
    calls: list[tuple[str | None, str]] = []

    def error(where: str | None, message: str) -> Exception:
        calls.append((where, message))
        return _Recorded(where, message)

    try:
        result = copy(value, path, error=error, **bounds)
    except _Recorded as e:
        assert calls == [(e.where, e.message)]
        return ("refused", calls)
    assert calls == []
    return ("copied", result)


class _Text(str):
    pass


class _Number(int):
    pass


class _Real(float):
    pass


_KEYS = st.one_of(
    st.text(max_size=6),
    st.text(min_size=38, max_size=50),  # around `_short`'s 40 characters
    st.sampled_from(["a.b", "a[0]", "", "\udc00", "é", "key with spaces", "x" * 41 + "\ud800", "\n"]),
    st.builds(_Text, st.text(max_size=4)),
)
_BAD_KEYS = st.one_of(st.integers(-2, 2), st.none(), st.booleans(), st.just((1, 2)), st.just(1.5))
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.sampled_from([_MAX_INT - 1, _MAX_INT, -_MAX_INT, -_MAX_INT - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["\udc00", "ok\ud800ok", "é" * 3]),
    st.builds(_Text, st.text(max_size=4)),
    st.builds(_Number, st.integers(-5, 5)),
    st.builds(_Real, st.floats(allow_nan=True)),
    st.sampled_from([b"raw", {1, 2}, frozenset(), object(), 1j]),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(_KEYS, children, max_size=5),
        st.builds(
            lambda d, k, v: {**d, k: v}, st.dictionaries(_KEYS, children, max_size=3), _BAD_KEYS, children
        ),
    )


_VALUES = st.recursive(_LEAVES, _containers, max_leaves=40)
_BOUNDS = st.fixed_dictionaries(
    {},
    optional={
        "max_depth": st.integers(0, 6),
        "max_nodes": st.integers(1, 60),
        "max_chars": st.integers(0, 80),
    },
)


@FUZZ
@given(_VALUES, st.sampled_from(["details", "config", "message", "x"]), _BOUNDS)
def test_same_copy_or_same_error_as_the_oracle(value: Any, path: str, bounds: dict[str, int]) -> None:
    got = _outcome(plain_json, value, path, bounds)
    assert got == _outcome(_oracle, value, path, bounds)
    if got[0] == "copied":
        _assert_plain(got[1], value)


def _assert_plain(copy: object, original: object) -> None:
    """Plain types only, and no container shared with the original."""
    if isinstance(copy, dict):
        assert type(copy) is dict and copy is not original
        assert isinstance(original, Mapping)
        for key, item in copy.items():
            assert type(key) is str
            _assert_plain(item, original[key])
    elif isinstance(copy, list):
        assert type(copy) is list and copy is not original
        assert isinstance(original, list | tuple)
        for item, before in zip(copy, original, strict=True):
            _assert_plain(item, before)
    else:
        assert copy is None or type(copy) in (bool, int, float, str)


def _deep(depth: int, leaf: object) -> Any:
    """`{"a": [{"a": [... leaf]}]}`: alternating mappings and lists, `depth` containers."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


@pytest.mark.parametrize(
    ("details", "message"),
    [
        (
            {"sigs": [{"ok": 1}, {"ok": 2, "key.with[dots]": [0, 1, {"n": math.nan}]}]},
            "details.sigs[1].key.with[dots][2].n: nan is not a JSON number",
        ),
        ({"a": {"b": [[], [None, b"x"]]}}, "details.a.b[1][1]: bytes is not a JSON value"),
        ({"k" * 45: {"z": 2**63}}, f"details.{'k' * 40}....z: integer out of the 64-bit range"),
        (
            {"é\udc00": 1, "ok": [1, {"x": "\ud800"}]},
            "details.é\\udc00: a string holds an unpaired surrogate",
        ),
        ({"a": [{"b": {3: 1}}]}, "details.a[0].b: a key is int, not a string"),
        ({"a": (0, 1, (2, {"b": {"c": -math.inf}}))}, "details.a[2][1].b.c: -inf is not a JSON number"),
        (_deep(33, 0), "details" + ".a[0]" * 16 + ": nested more than 32 levels deep"),
        ({"a": [0] * 49_999, "b": 1}, "more than 50000 values"),
    ],
)
def test_messages_at_deep_paths(details: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidReport) as raised:
        check_report(Report(False, "no", "no", details))
    assert str(raised.value) == message
    oracle_calls: list[tuple[str | None, str]] = []

    def record(where: str | None, text: str) -> Exception:
        oracle_calls.append((where, text))
        return InvalidReport(text if where is None else f"{where}: {text}")

    with pytest.raises(InvalidReport) as expected:
        _oracle(details, error=record)
    assert str(expected.value) == message


def test_the_error_is_not_chained_to_the_walk() -> None:
    with pytest.raises(InvalidReport) as raised:
        plain_json({"a": [1, b"x"]})
    assert raised.value.__cause__ is None and raised.value.__context__ is None
