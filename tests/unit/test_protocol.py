"""Gatekeeper's external-data wire format: request validation and response construction."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider.engine import pack_verdict, unpack_verdict
from provider.outcome import Decided, Invalid, Outcome, UndecidedKey, encode_value
from provider.protocol import (
    API_VERSIONS,
    MAX_SYSTEM_ERROR_CHARS,
    MAX_SYSTEM_ERROR_KEYS,
    UNDECODABLE_KEY,
    UNENCODABLE_VERDICT,
    ProtocolError,
    RequestLimits,
    encode_outcomes,
    encode_response,
    error_response,
    is_well_formed,
    parse_request,
    response_for,
    wire_key,
)

V1BETA1 = "externaldata.gatekeeper.sh/v1beta1"
V1ALPHA1 = "externaldata.gatekeeper.sh/v1alpha1"
LIMITS = RequestLimits()


def body(
    keys: Any = None, *, api_version: Any = V1BETA1, kind: Any = "ProviderRequest", **extra: Any
) -> bytes:
    doc: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "request": {"keys": keys or []}, **extra}
    return json.dumps(doc).encode()


# --- parse_request ----------------------------------------------------------------------------------


def test_both_api_versions_are_known() -> None:
    assert frozenset({V1BETA1, V1ALPHA1}) == API_VERSIONS


@pytest.mark.parametrize("api_version", [V1BETA1, V1ALPHA1])
@pytest.mark.parametrize(
    "keys",
    [
        [],
        ["nginx:1.25"],
        ["[prod]reg.example.com/app:1", "nginx", "nginx", " not a reference ", "é"],
    ],
)
def test_valid_requests(api_version: str, keys: list[str]) -> None:
    assert parse_request(body(keys, api_version=api_version), LIMITS) == (api_version, keys)


def test_extra_fields_are_ignored() -> None:
    raw = json.dumps(
        {"apiVersion": V1BETA1, "kind": "ProviderRequest", "request": {"keys": ["a"], "x": 1}, "metadata": {}}
    ).encode()
    assert parse_request(raw, LIMITS) == (V1BETA1, ["a"])


def test_limits_are_inclusive() -> None:
    limits = RequestLimits(max_keys=3, max_key_bytes=4)
    keys = ["abcd", "éé", "€a"]  # 4 bytes each: 4 ASCII, 2 x 2, 3 + 1
    assert parse_request(body(keys), limits) == (V1BETA1, keys)


def _raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


BAD: list[tuple[str, bytes, RequestLimits, str]] = [
    ("not JSON", b"not json", LIMITS, "request body is not JSON: Expecting value at line 1 column 1"),
    ("truncated JSON", b'{"apiVersion": ', LIMITS, "request body is not JSON"),
    ("empty body", b"", LIMITS, "request body is not JSON"),
    ("not UTF-8", b'{"apiVersion": "\xff"}', LIMITS, "request body is not UTF-8"),
    ("truncated UTF-8", b'["\xc3"]', LIMITS, "request body is not UTF-8"),
    ("a list", b"[]", LIMITS, "request body must be a JSON object"),
    ("a string", b'"keys"', LIMITS, "request body must be a JSON object"),
    ("null", b"null", LIMITS, "request body must be a JSON object"),
    (
        "wrong apiVersion",
        body(["a"], api_version="externaldata.gatekeeper.sh/v1"),
        LIMITS,
        "apiVersion must be 'externaldata.gatekeeper.sh/v1beta1', got 'externaldata.gatekeeper.sh/v1'",
    ),
    (
        "missing apiVersion",
        _raw({"kind": "ProviderRequest", "request": {"keys": []}}),
        LIMITS,
        "apiVersion must be 'externaldata.gatekeeper.sh/v1beta1', got None",
    ),
    (
        "numeric apiVersion",
        body(["a"], api_version=1),
        LIMITS,
        "apiVersion must be 'externaldata.gatekeeper.sh/v1beta1', got 1",
    ),
    (
        "wrong kind",
        body(["a"], kind="ProviderResponse"),
        LIMITS,
        "kind must be 'ProviderRequest', got 'ProviderResponse'",
    ),
    (
        "missing kind",
        _raw({"apiVersion": V1BETA1, "request": {"keys": []}}),
        LIMITS,
        "kind must be 'ProviderRequest', got None",
    ),
    (
        "missing request",
        _raw({"apiVersion": V1BETA1, "kind": "ProviderRequest"}),
        LIMITS,
        "'request' must be an object with a 'keys' list",
    ),
    (
        "request a list",
        _raw({"apiVersion": V1BETA1, "kind": "ProviderRequest", "request": [["a"]]}),
        LIMITS,
        "'request' must be an object with a 'keys' list",
    ),
    (
        "keys missing",
        _raw({"apiVersion": V1BETA1, "kind": "ProviderRequest", "request": {}}),
        LIMITS,
        "'request.keys' must be a list of strings",
    ),
    (
        "keys a string",
        _raw({"apiVersion": V1BETA1, "kind": "ProviderRequest", "request": {"keys": "nginx"}}),
        LIMITS,
        "'request.keys' must be a list of strings",
    ),
    (
        "keys an object",
        _raw({"apiVersion": V1BETA1, "kind": "ProviderRequest", "request": {"keys": {"a": 1}}}),
        LIMITS,
        "'request.keys' must be a list of strings",
    ),
    ("a number key", body(["a", 1]), LIMITS, "request.keys[1] must be a string, got int"),
    ("a null key", body([None]), LIMITS, "request.keys[0] must be a string, got NoneType"),
    ("a list key", body(["a", "b", ["c"]]), LIMITS, "request.keys[2] must be a string, got list"),
    (
        "too many keys",
        body(["a", "b", "c"]),
        RequestLimits(max_keys=2),
        "too many keys: 3 (at most 2 per request)",
    ),
    (
        "a key over the limit",
        body(["ok", "abcde"]),
        RequestLimits(max_key_bytes=4),
        "request.keys[1] is longer than 4 bytes",
    ),
    (
        "multi-byte chars count as bytes",
        body(["ééé"]),
        RequestLimits(max_key_bytes=5),
        "request.keys[0] is longer than 5 bytes",
    ),
    (
        "a 4-byte char",
        body(["ab😀"]),
        RequestLimits(max_key_bytes=5),
        "request.keys[0] is longer than 5 bytes",
    ),
    ("nested arrays", b"[" * 100_000, LIMITS, "request body is nested too deeply"),
    ("nested objects", b'{"a":' * 100_000, LIMITS, "request body is nested too deeply"),
]


@pytest.mark.parametrize(("raw", "limits", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests(raw: bytes, limits: RequestLimits, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(raw, limits)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("api_version", [["x"], {"v": 1}])
def test_an_unhashable_api_version_is_a_protocol_error(api_version: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(body(["a"], api_version=api_version), LIMITS)
    assert str(info.value) == f"apiVersion must be {V1BETA1!r}, got {api_version!r}"


def test_too_many_keys_is_checked_before_the_keys_themselves() -> None:
    with pytest.raises(ProtocolError, match="too many keys"):
        parse_request(body([1, 2, 3]), RequestLimits(max_keys=2))


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_either_parse_or_raise_protocol_error(raw: bytes) -> None:
    try:
        api_version, keys = parse_request(raw, LIMITS)
    except ProtocolError as e:
        assert str(e)
    else:
        assert api_version in API_VERSIONS
        assert all(isinstance(k, str) for k in keys)


# --- response_for -----------------------------------------------------------------------------------

VALUE = {"schemaVersion": 1, "allowed": True}


def test_every_key_is_echoed_once_per_occurrence() -> None:
    keys = ["nginx", "bad ref", "nginx", "[prod]app", "down", "down", "NGINX", "slow"]
    outcomes: dict[str, Outcome] = {
        "nginx": Decided(VALUE),
        "bad ref": Invalid("invalid image reference"),
        "[prod]app": Decided("reg.example.com/app@sha256:x"),
        "down": UndecidedKey("registry_unavailable", "connection refused"),
        "NGINX": Invalid("repository name must be lowercase"),
        "slow": UndecidedKey("deadline_exceeded", "not finished"),
    }
    response = response_for(keys, outcomes)
    assert response["apiVersion"] == V1BETA1
    assert response["kind"] == "ProviderResponse"
    assert response["response"]["idempotent"] is True
    assert response["response"]["items"] == [
        {"key": "nginx", "value": VALUE},
        {"key": "bad ref", "error": "invalid image reference"},
        {"key": "nginx", "value": VALUE},
        {"key": "[prod]app", "value": "reg.example.com/app@sha256:x"},
        {"key": "NGINX", "error": "repository name must be lowercase"},
    ]
    system_error = response["response"]["systemError"]
    assert system_error == (
        "countersign: 2 key(s) undecided, admission must fail closed: "
        "down: connection refused [registry_unavailable]; slow: not finished [deadline_exceeded]"
    )
    assert system_error.count("down:") == 1


@pytest.mark.parametrize("api_version", [V1BETA1, V1ALPHA1])
def test_no_undecided_key_means_no_system_error(api_version: str) -> None:
    response = response_for(["a", "b"], {"a": Decided(VALUE), "b": Invalid("x")}, api_version)
    assert response["apiVersion"] == api_version
    assert response["response"] == {
        "idempotent": True,
        "items": [{"key": "a", "value": VALUE}, {"key": "b", "error": "x"}],
        "systemError": "",
    }


def test_no_keys() -> None:
    response = response_for([], {})
    assert response["response"] == {"idempotent": True, "items": [], "systemError": ""}


def test_a_falsy_value_is_still_a_value() -> None:
    response = response_for(["k"], {"k": Decided(None)})
    assert response["response"]["items"] == [{"key": "k", "value": None}]
    assert json.loads(json.dumps(response))["response"]["items"][0] == {"key": "k", "value": None}


@pytest.mark.parametrize(
    ("count", "more"), [(1, None), (MAX_SYSTEM_ERROR_KEYS, None), (21, 1), (25, 5), (300, 280)]
)
def test_system_error_lists_at_most_20_keys(count: int, more: int | None) -> None:
    keys = [f"k{i:03}" for i in range(count)]
    outcomes: dict[str, Outcome] = {k: UndecidedKey("registry_unavailable", "down") for k in keys}
    text = response_for(keys, outcomes)["response"]["systemError"]
    assert text.startswith(f"countersign: {count} key(s) undecided, admission must fail closed: ")
    listed = [k for k in keys if f"{k}: down [registry_unavailable]" in text]
    assert listed == keys[:MAX_SYSTEM_ERROR_KEYS]
    if more is None:
        assert "more" not in text
    else:
        assert text.endswith(f"; and {more} more")


def test_system_error_is_capped_in_characters() -> None:
    keys = [f"k{i}" for i in range(30)]
    outcomes: dict[str, Outcome] = {k: UndecidedKey("r", "m" * 1000) for k in keys}
    response = response_for(keys, outcomes)
    text = response["response"]["systemError"]
    assert len(text) == MAX_SYSTEM_ERROR_CHARS
    assert text.endswith("...")
    assert text.startswith("countersign: 30 key(s) undecided")
    assert response["response"]["items"] == []


def test_system_error_just_under_the_cap_is_not_cut() -> None:
    prefix = "countersign: 1 key(s) undecided, admission must fail closed: k: "
    message = "m" * (MAX_SYSTEM_ERROR_CHARS - len(prefix) - len(" [r]"))
    text = response_for(["k"], {"k": UndecidedKey("r", message)})["response"]["systemError"]
    assert len(text) == MAX_SYSTEM_ERROR_CHARS
    assert text.endswith(" [r]")


_OUTCOMES: dict[str, Outcome] = {
    "a": Decided(VALUE),
    "b": Invalid("bad"),
    "c": UndecidedKey("registry_unavailable", "down"),
    "d": Decided("x@sha256:1"),
    "e": UndecidedKey("deadline_exceeded", "slow"),
}


@settings(deadline=None)
@given(st.lists(st.sampled_from(sorted(_OUTCOMES)), max_size=30))
def test_items_follow_the_keys(keys: list[str]) -> None:
    response = response_for(keys, _OUTCOMES)
    body_ = response["response"]
    assert body_["idempotent"] is True
    assert [item["key"] for item in body_["items"]] == [k for k in keys if k not in ("c", "e")]
    for item in body_["items"]:
        outcome = _OUTCOMES[item["key"]]
        if isinstance(outcome, Decided):
            assert item == {"key": item["key"], "value": outcome.value}
        else:
            assert isinstance(outcome, Invalid)
            assert item == {"key": item["key"], "error": outcome.error}
    undecided = [k for k in dict.fromkeys(keys) if k in ("c", "e")]
    if undecided:
        assert body_["systemError"].startswith(f"countersign: {len(undecided)} key(s) undecided")
        for k in undecided:
            assert body_["systemError"].count(f"{k}: ") == 1
    else:
        assert body_["systemError"] == ""


@pytest.mark.parametrize("api_version", [V1BETA1, V1ALPHA1])
def test_error_response(api_version: str) -> None:
    assert error_response("request body is not JSON", api_version) == {
        "apiVersion": api_version,
        "kind": "ProviderResponse",
        "response": {"idempotent": True, "items": [], "systemError": "countersign: request body is not JSON"},
    }


def test_error_response_defaults_to_v1beta1() -> None:
    assert error_response("x")["apiVersion"] == V1BETA1


# --- hostile input: keys that are not Unicode, values that are not JSON, fuzzed requests --------------

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\udc80"])
# Any code point, lone surrogates included (st.text leaves them out, whatever its alphabet).
any_text = st.lists(st.characters(exclude_categories=()) | SURROGATES, max_size=12).map("".join)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def test_lone_surrogates_are_error_items_for_their_keys_alone() -> None:
    raw = (
        b'{"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest", '
        b'"request": {"keys": ["\\ud800/x", "ok", "\\ud83d\\ude00", "\\ude00\\ud83d"]}}'
    )
    _, keys = parse_request(raw, LIMITS)
    assert keys == ["\ud800/x", "ok", "\U0001f600", "\ude00\ud83d"]  # a proper pair is one character
    assert [is_well_formed(k) for k in keys] == [False, True, True, False]
    outcomes: dict[str, Outcome] = {"ok": Decided(VALUE), "\U0001f600": Invalid("bad")}
    encoded = encode_response(response_for(keys, outcomes))
    items = json.loads(encoded.decode("utf-8"))["response"]["items"]
    assert items == [
        {"key": "\ufffd/x", "error": UNDECODABLE_KEY},
        {"key": "ok", "value": VALUE},
        {"key": "\U0001f600", "error": "bad"},
        {"key": "\ufffd\ufffd", "error": UNDECODABLE_KEY},
    ]


def test_wire_key_is_what_go_decodes() -> None:
    # Go's encoding/json decodes a lone \uD800 escape to U+FFFD, one per lone surrogate.
    assert wire_key("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    assert wire_key("caf\u00e9 \u2028 \x00") == "caf\u00e9 \u2028 \x00"  # valid: untouched


def test_a_value_that_is_not_json_is_an_error_for_its_key_only() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    outcomes: dict[str, Outcome] = {
        "nan": Decided({"allowed": True, "score": float("nan")}),
        "object": Decided({"allowed": True, "details": object()}),
        "deep": Decided(deep),
        "surrogate": Decided({"allowed": False, "reason": "bad \ud800 text", "\udfff": 1}),
        "good": Decided(VALUE),
        "undecided": UndecidedKey("registry_unavailable", "down \ud800"),
    }
    keys = list(outcomes)
    encoded = encode_response(response_for(keys, outcomes))
    body_ = json.loads(encoded.decode("utf-8"))["response"]
    assert body_["items"] == [
        {"key": "nan", "error": UNENCODABLE_VERDICT},
        {"key": "object", "error": UNENCODABLE_VERDICT},
        {"key": "deep", "error": UNENCODABLE_VERDICT},
        # text that is not Unicode is repaired; the verdict stands
        {"key": "surrogate", "value": {"allowed": False, "reason": "bad \ufffd text", "\ufffd": 1}},
        {"key": "good", "value": VALUE},
    ]
    assert "undecided: down \ufffd [registry_unavailable]" in body_["systemError"]


def test_a_key_without_an_outcome_is_undecided_not_a_crash() -> None:
    response = response_for(["a", "b"], {"a": Decided(VALUE)})
    assert response["response"]["items"] == [{"key": "a", "value": VALUE}]
    assert "b: no outcome was produced for this key [internal_error]" in response["response"]["systemError"]


@st.composite
def request_documents(draw: st.DrawFn) -> Any:
    """ProviderRequest documents: half of them valid, the others wrong in one part."""
    broken = draw(st.sampled_from([None, None, None, None, "doc", "apiVersion", "kind", "request", "keys"]))
    if broken == "doc":
        return draw(json_values)
    keys: Any = draw(st.lists(any_text, max_size=8))
    if broken == "keys":
        keys = draw(st.lists(any_text | json_values, min_size=1, max_size=8) | json_values)
    doc: dict[str, Any] = {
        "apiVersion": draw(json_values if broken == "apiVersion" else st.sampled_from(sorted(API_VERSIONS))),
        "kind": draw(json_values) if broken == "kind" else "ProviderRequest",
        "request": draw(json_values) if broken == "request" else {"keys": keys},
    }
    doc.update(draw(st.dictionaries(any_text.filter(lambda k: k not in doc), json_values, max_size=2)))
    return doc


def _encode_any(doc: Any, ascii_escapes: bool) -> bytes:
    if ascii_escapes:  # lone surrogates as \uXXXX escapes: valid JSON text
        return json.dumps(doc, ensure_ascii=True).encode()
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")  # not UTF-8 when they occur


@settings(deadline=None, max_examples=150)
@given(request_documents(), st.booleans(), st.integers(1, 10), st.integers(1, 64))
def test_property_parse_request_only_raises_protocol_error(
    doc: Any, ascii_escapes: bool, max_keys: int, max_key_bytes: int
) -> None:
    raw = _encode_any(doc, ascii_escapes)
    limits = RequestLimits(max_keys=max_keys, max_key_bytes=max_key_bytes)
    try:
        api_version, keys = parse_request(raw, limits)
    except ProtocolError as e:
        assert str(e)
        return
    assert api_version in API_VERSIONS
    assert len(keys) <= max_keys
    for key in keys:
        assert isinstance(key, str)
        assert len(key.encode("utf-8", "surrogatepass")) <= max_key_bytes
    # exactly the strings sent (a high surrogate escape then a low one is one character, as in Go)
    assert keys == json.loads(json.dumps(doc["request"]["keys"]))


outcome_values = st.one_of(
    json_values.map(Decided),
    any_text.map(Invalid),
    st.builds(UndecidedKey, any_text, any_text),
    # Fresh objects each draw (a Decided caches its encoding): values no encoder accepts.
    st.sampled_from(["nan", "object", "inf"]).map(
        lambda kind: Decided({"x": object()} if kind == "object" else float(kind))
    ),
)


@settings(deadline=None, max_examples=150)
@given(st.lists(any_text, max_size=10), st.data())
def test_property_response_is_valid_utf8_json_echoing_every_key(keys: list[str], data: st.DataObject) -> None:
    outcomes: dict[str, Outcome] = {k: data.draw(outcome_values) for k in dict.fromkeys(keys)}
    encoded = encode_response(response_for(keys, outcomes, V1BETA1))
    # What the server sends (decided verdicts spliced from their encodings) is exactly the same bytes.
    assert encode_outcomes(keys, outcomes, V1BETA1) == encoded

    def no_constants(name: str) -> Any:
        raise AssertionError(f"{name} in the response: Go's encoding/json rejects it")

    reply = json.loads(encoded.decode("utf-8"), parse_constant=no_constants)  # strict UTF-8
    for string in _strings(reply):
        assert is_well_formed(string)
    assert reply["apiVersion"] == V1BETA1
    body_ = reply["response"]
    answered = [k for k in keys if not is_well_formed(k) or not isinstance(outcomes[k], UndecidedKey)]
    assert [item["key"] for item in body_["items"]] == [wire_key(k) for k in answered]
    for key, item in zip(answered, body_["items"], strict=True):
        outcome = outcomes[key]
        assert set(item) in ({"key", "value"}, {"key", "error"})
        if not is_well_formed(key):
            assert item["error"] == UNDECODABLE_KEY
        elif isinstance(outcome, Invalid):
            assert item["error"] == wire_key(outcome.error)
        elif "value" in item:
            assert isinstance(outcome, Decided)
            try:
                clean = json.loads(json.dumps(outcome.value, allow_nan=False)) == outcome.value
            except (TypeError, ValueError):
                clean = False
            if clean and all(is_well_formed(s) for s in _strings(outcome.value)):
                assert item["value"] == outcome.value
        else:
            assert item["error"] == UNENCODABLE_VERDICT
    undecided = [
        k for k in dict.fromkeys(keys) if is_well_formed(k) and isinstance(outcomes[k], UndecidedKey)
    ]
    if undecided:
        assert body_["systemError"].startswith(f"countersign: {len(undecided)} key(s) undecided")
    else:
        assert body_["systemError"] == ""


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


# --- encode_outcomes: verdicts spliced from their encoding ---------------------------------------------


def _reference_encoding(keys: list[str], outcomes: dict[str, Outcome], api_version: str) -> bytes:
    """What the server sent before verdicts were spliced: the whole response through json.dumps."""
    return json.dumps(
        response_for(keys, outcomes, api_version), separators=(",", ":"), ensure_ascii=False
    ).encode()


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_OUTCOME = st.one_of(
    _JSON.map(Decided),
    _JSON.map(lambda v: Decided(encoded=encode_value(v))),  # as from the verdict cache
    _TEXT.map(Invalid),
    st.tuples(_TEXT, _TEXT).map(lambda t: UndecidedKey(*t)),
)


@settings(deadline=None, max_examples=300)
@given(
    st.dictionaries(_TEXT, _OUTCOME, max_size=8),
    st.lists(st.integers(0, 20), max_size=12),
    st.sampled_from(sorted(API_VERSIONS)),
)
def test_spliced_responses_are_byte_for_byte_what_json_dumps_gives(
    outcomes: dict[str, Outcome], picks: list[int], api_version: str
) -> None:
    names = sorted(outcomes)
    keys = [names[i % len(names)] for i in picks] if names else []
    assert encode_outcomes(keys, outcomes, api_version) == _reference_encoding(keys, outcomes, api_version)


def test_a_spliced_verdict_is_the_same_document() -> None:
    value = {"schemaVersion": 1, "allowed": True, "reason": "verified", "reference": "ghcr.io/a/b@sha256:1é"}
    cached = Decided(encoded=unpack_verdict(pack_verdict(encode_value(value))))
    body_ = encode_outcomes(["k", "k"], {"k": cached})
    doc = json.loads(body_)
    assert doc["response"] == {
        "idempotent": True,
        "items": [{"key": "k", "value": value}] * 2,
        "systemError": "",
    }
    assert cached.value == value and cached == Decided(value)


def test_allowed_is_read_from_the_head_of_an_encoding() -> None:
    allowed = {"schemaVersion": 1, "allowed": True, "reason": "verified"}
    denied = {"schemaVersion": 1, "allowed": False, "reason": "no_policy"}
    assert Decided(encoded=encode_value(allowed)).allowed is True
    assert Decided(encoded=encode_value(denied)).allowed is False
    assert Decided(allowed).allowed is True
    assert Decided(denied).allowed is False
    assert Decided("x@sha256:1").allowed is False  # a mutation, not a verdict
    with pytest.raises(TypeError):
        Decided()


def test_verdicts_pack_small() -> None:
    digest = "sha256:" + "3f" * 32
    value = {
        "schemaVersion": 1,
        "allowed": True,
        "reason": "verified",
        "reference": f"127.0.0.1:5000/mem/small-1@{digest}",
        "digest": digest,
        "namespace": "",
        "policy": "all",
        "namespacePolicy": "",
        "verifiers": [
            {
                "name": "pinned",
                "type": "digest-pin",
                "passed": True,
                "reason": "pinned",
                "message": f"127.0.0.1:5000/mem/small-1 is pinned to {digest}",
                "details": {"digest": digest},
            }
        ],
        "reasons": [],
    }
    encoded = encode_value(value)
    packed = pack_verdict(encoded)
    assert unpack_verdict(packed) == encoded
    assert len(packed) < len(encoded) / 2
    big = encode_value({**value, "reasons": ["x" * 100_000]})
    assert unpack_verdict(pack_verdict(big)) == big
