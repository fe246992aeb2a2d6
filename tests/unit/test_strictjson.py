"""`verifiers.strictjson`: one set of rules for every strict-JSON caller, each with its own error type."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from verifiers import strictjson
from verifiers.oci import ContentError
from verifiers.oci.boundedjson import load_json
from verifiers.sbom_formats import SPDX_JSON, SbomFormatError, parse_sbom

CALLERS: dict[str, tuple[Callable[[bytes], Any], type[ValueError]]] = {
    "registry content": (load_json, ContentError),
    "signed payload": (lambda data: strictjson.loads(data, max_depth=64), ValueError),
    "sbom": (lambda data: parse_sbom(data, SPDX_JSON), SbomFormatError),
}
REFUSED_BY_ALL = {
    "a duplicate key": b'{"a": 1, "a": 2}',
    "a nested duplicate key": b'{"x": [{"b": 1, "b": 1}]}',
    "NaN": b'{"a": NaN}',
    "Infinity": b'{"a": -Infinity}',
    "too deep": b'{"a": ' + b"[" * 65 + b"]" * 65 + b"}",
    "not UTF-8": b'{"a": "\xff"}',
    "a byte-order mark": b'\xef\xbb\xbf{"a": 1}',
    "a syntax error": b'{"a": 1',
    "an integer past the digit limit": b'{"a": ' + b"1" * 5000 + b"}",
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("data", REFUSED_BY_ALL.values(), ids=REFUSED_BY_ALL.keys())
def test_every_caller_refuses_what_the_rules_refuse(caller: str, data: bytes) -> None:
    parse, error_type = CALLERS[caller]
    with pytest.raises(error_type):
        parse(data)


def test_the_two_optional_refusals_are_the_callers() -> None:
    overflow, surrogate = b'{"a": 1e400}', b'{"a": "\\ud800"}'
    assert strictjson.loads(overflow, max_depth=8) == {"a": float("inf")}  # signed payloads: as before
    assert strictjson.loads(surrogate, max_depth=8) == {"a": "\ud800"}
    for data in (overflow, surrogate):
        with pytest.raises(ContentError):
            load_json(data)


def test_fail_fast_reports_the_first_violation_met_and_locate_the_first_in_document_order() -> None:
    text = '{"a": {"b": 1, "b": 2}, "a": 3}'  # the inner object is closed (and checked) first
    with pytest.raises(strictjson.StrictJSONError) as fast:
        strictjson.parse(text)
    assert fast.value.kind == strictjson.DUPLICATE_KEY and fast.value.detail == "b"
    with pytest.raises(strictjson.StrictJSONError) as located:
        strictjson.parse(text, locate=True)
    assert located.value.kind == strictjson.DUPLICATE_KEY and located.value.path == "a"
    with pytest.raises(strictjson.StrictJSONError) as syntax:
        strictjson.parse('{"a": NaN, "b": }', locate=True)  # a syntax error anywhere wins when locating
    assert syntax.value.kind == strictjson.SYNTAX and syntax.value.lineno == 1


@pytest.mark.parametrize("depth", [0, 1, 2, 63, 64, 65, 300])
def test_both_nesting_measures_agree_on_valid_json(depth: int) -> None:
    data = json.dumps({"k": json.loads("[" * depth + "]" * depth) if depth else 1, "s": '[[[\\"{'}).encode()
    actual = strictjson.nesting_depth(data)
    assert actual == depth + 1
    assert strictjson.nesting_exceeds(data, 64) == (actual > 64)
