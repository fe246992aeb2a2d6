"""Property-based fuzzing of signature envelopes: only the module's documented error types, ever.

- JWS and COSE_Sign1 (`verifiers.notation.envelope.parse_and_verify`): `EnvelopeError`;
- DSSE envelopes and the in-toto statements in them (`verifiers.cosign.dsse`): `Failure`;
- simple-signing payloads (`verifiers.cosign.simplesigning.parse_payload`): `Failure`.

Mutations are structure-aware: any member of a valid envelope (or of its protected header, or of the
payload it carries) replaced by any JSON/CBOR value, or by a value nested 100,000 deep. Random-byte fuzzing
of the same entry points lives in notation/test_robustness.py and cosign/test_robustness.py. Every test is
derandomized (the same examples every run) and small: together they take a few seconds.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import mutations
from tests.support.private_sigstore import dsse_envelope, simple_signing_payload, statement
from tests.unit.notation.signing import Spec, ec_key, make_cose, make_jws
from verifiers.cosign.common import Failure
from verifiers.cosign.dsse import envelope_from_json, parse_statement, statement_for
from verifiers.cosign.simplesigning import parse_payload
from verifiers.notation.envelope import COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, EnvelopeError, parse_and_verify

DIGEST = "sha256:" + "ab" * 32
FUZZ = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DEEP = 100_000

JWS = make_jws(Spec(key=ec_key("P-256"), alg="ES256"))
COSE = make_cose(Spec(key=ec_key("P-256"), alg="ES256"))
STATEMENT = statement(DIGEST, "https://slsa.dev/provenance/v1")
DSSE = json.dumps(dsse_envelope(STATEMENT, [b"\x01" * 64])).encode()
SIMPLE = simple_signing_payload(DIGEST)


class _Deep:
    """Stands for a value nested DEEP levels (spliced into the encoded text, as no encoder would write it)."""


DEEP_JSON = "[" * DEEP + "]" * DEEP
json_values = mutations.json_values(max_text=12, max_items=3, max_key=8, max_leaves=12)
replacements = json_values | st.just(_Deep()) | st.sampled_from(["", "AAAA", "!", 2**64, -1, [], {}])


def _dumps(document: Any) -> bytes:
    marker = "\x00deep\x00"
    text = json.dumps(document, default=lambda o: marker if isinstance(o, _Deep) else str(o))
    return text.replace(json.dumps(marker), DEEP_JSON).encode()


def _mutate_json(data: st.DataObject, document: Any) -> bytes:
    path = data.draw(st.sampled_from(mutations.json_paths(document)))
    return _dumps(mutations.replaced(document, path, data.draw(replacements)))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _only(error: type[Exception], call: Any, *args: Any) -> None:
    try:
        call(*args)
    except error as exc:
        assert str(exc)


# --- JWS ----------------------------------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_jws_any_member_replaced(data: st.DataObject) -> None:
    _only(EnvelopeError, parse_and_verify, _mutate_json(data, json.loads(JWS)), JWS_MEDIA_TYPE)


def _jws_with_encoded_member_mutated(data: st.DataObject, name: str) -> bytes:
    """The JWS with one member of the base64url-encoded JSON in ``name`` replaced."""
    envelope = json.loads(JWS)
    decoded = json.loads(base64.urlsafe_b64decode(envelope[name] + "=="))
    envelope[name] = _b64url(_mutate_json(data, decoded))
    return json.dumps(envelope).encode()


@FUZZ
@given(st.data())
def test_jws_any_protected_header_member_replaced(data: st.DataObject) -> None:
    _only(
        EnvelopeError, parse_and_verify, _jws_with_encoded_member_mutated(data, "protected"), JWS_MEDIA_TYPE
    )


@FUZZ
@given(st.data())
def test_jws_any_payload_member_replaced(data: st.DataObject) -> None:
    _only(EnvelopeError, parse_and_verify, _jws_with_encoded_member_mutated(data, "payload"), JWS_MEDIA_TYPE)


# --- COSE_Sign1 ---------------------------------------------------------------------------------------------

cbor_keys = st.integers(-40, 40) | st.text(max_size=8)
cbor_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.binary(max_size=16),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(cbor_keys, children, max_size=3)
        | st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 18, 24, 28, 29, 256, 55799]), children)
    ),
    max_leaves=10,
)
DEEP_CBOR = b"\x81" * DEEP + b"\x00"  # an array of an array of ... of 0


def _cose_parts() -> tuple[Any, dict[Any, Any], dict[Any, Any]]:
    tag = cbor2.loads(COSE)
    return tag, dict(cbor2.loads(tag.value[0])), dict(tag.value[1])


@FUZZ
@given(st.integers(0, 3), cbor_values)
def test_cose_any_element_replaced(index: int, value: Any) -> None:
    tag, _, _ = _cose_parts()
    elements = list(tag.value)
    elements[index] = value
    _only(EnvelopeError, parse_and_verify, cbor2.dumps(cbor2.CBORTag(18, elements)), COSE_MEDIA_TYPE)


@FUZZ
@given(st.booleans(), cbor_keys, cbor_values | st.just(_Deep()))
def test_cose_any_header_label_set(protected: bool, label: Any, value: Any) -> None:
    tag, protected_map, unprotected_map = _cose_parts()
    target = protected_map if protected else unprotected_map
    target[label] = "\x00deep" if isinstance(value, _Deep) else value
    encoded_protected = cbor2.dumps(protected_map)
    elements = [encoded_protected, unprotected_map, *tag.value[2:]]
    data = cbor2.dumps(cbor2.CBORTag(18, elements))
    if isinstance(value, _Deep):
        if protected:  # splice the deep value into the protected bstr, fixing its length prefix
            deep_protected = encoded_protected.replace(cbor2.dumps("\x00deep"), DEEP_CBOR)
            data = data.replace(cbor2.dumps(encoded_protected), cbor2.dumps(deep_protected))
        else:
            data = data.replace(cbor2.dumps("\x00deep"), DEEP_CBOR)
    _only(EnvelopeError, parse_and_verify, data, COSE_MEDIA_TYPE)


def test_cose_deep_nesting_everywhere() -> None:
    for data in (DEEP_CBOR, b"\xd2" + DEEP_CBOR, b"\xd2\x84" + DEEP_CBOR * 4, b"\xa1\x01" * DEEP + b"\x00"):
        with pytest.raises(EnvelopeError):
            parse_and_verify(data, COSE_MEDIA_TYPE)


# --- DSSE and in-toto statements ----------------------------------------------------------------------------


def _statement_checks(data: bytes) -> None:
    try:
        envelope = envelope_from_json(data)
    except Failure:
        return
    _only(Failure, parse_statement, envelope)
    _only(Failure, statement_for, envelope, DIGEST)


@FUZZ
@given(st.data())
def test_dsse_any_member_replaced(data: st.DataObject) -> None:
    _statement_checks(_mutate_json(data, json.loads(DSSE)))


@FUZZ
@given(st.data())
def test_dsse_any_statement_member_replaced(data: st.DataObject) -> None:
    envelope = json.loads(DSSE)
    envelope["payload"] = base64.b64encode(_mutate_json(data, json.loads(STATEMENT))).decode()
    _statement_checks(json.dumps(envelope).encode())


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_dsse_arbitrary_input(data: bytes) -> None:
    _statement_checks(data)


# --- simple signing -----------------------------------------------------------------------------------------


@FUZZ
@given(st.data())
def test_simple_signing_any_member_replaced(data: st.DataObject) -> None:
    _only(Failure, parse_payload, _mutate_json(data, json.loads(SIMPLE)))


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_simple_signing_arbitrary_input(data: bytes) -> None:
    _only(Failure, parse_payload, data)


@pytest.mark.parametrize(
    "data",
    [DEEP_JSON.encode(), b'{"critical": ' + DEEP_JSON.encode() + b"}", b'{"a":' * DEEP + b"1" + b"}" * DEEP],
    ids=["arrays", "in critical", "objects"],
)
def test_deep_json_everywhere(data: bytes) -> None:
    with pytest.raises(Failure):
        parse_payload(data)
    with pytest.raises(Failure):
        envelope_from_json(data)
    with pytest.raises(EnvelopeError):
        parse_and_verify(data, JWS_MEDIA_TYPE)
