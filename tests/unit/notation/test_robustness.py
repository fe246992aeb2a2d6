"""Whatever bytes arrive, parse_and_verify returns or raises EnvelopeError, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.notation.signing import Spec, ec_key, make_cose, make_jws, rsa_key
from verifiers.notation.envelope import COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, EnvelopeError, parse_and_verify

VALID = {
    JWS_MEDIA_TYPE: [
        make_jws(Spec(key=ec_key("P-256"), alg="ES256")),
        make_jws(Spec(key=rsa_key(2048), alg="PS256")),
    ],
    COSE_MEDIA_TYPE: [
        make_cose(Spec(key=ec_key("P-256"), alg="ES256")),
        make_cose(Spec(key=rsa_key(2048), alg="PS256")),
    ],
}
MEDIA_TYPES = st.sampled_from([JWS_MEDIA_TYPE, COSE_MEDIA_TYPE])


def _only_envelope_errors(data: bytes, media_type: str) -> None:
    try:
        parse_and_verify(data, media_type)
    except EnvelopeError as exc:
        assert exc.reason and exc.message
    # A successful parse is fine too (a mutation may be harmless, e.g. in an unsigned, ignored member).


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512), media_type=MEDIA_TYPES)
def test_random_bytes(data: bytes, media_type: str) -> None:
    _only_envelope_errors(data, media_type)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=256).map(lambda b: b"\xd2\x84" + b), media_type=st.just(COSE_MEDIA_TYPE))
def test_random_cose_sign1_bodies(data: bytes, media_type: str) -> None:
    _only_envelope_errors(data, media_type)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, str]:
    media_type = draw(MEDIA_TYPES)
    original = bytearray(draw(st.sampled_from(VALID[media_type])))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        index = draw(st.integers(0, max(len(original) - 1, 0)))
        if action == "flip" and original:
            original[index] ^= 1 << draw(st.integers(0, 7))
        elif action == "delete" and original:
            del original[index]
        elif action == "insert":
            original.insert(index, draw(st.integers(0, 255)))
        else:
            del original[index:]
    return bytes(original), media_type


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_mutated_valid_envelopes(case: tuple[bytes, str]) -> None:
    _only_envelope_errors(*case)


@settings(max_examples=200, deadline=None)
@given(
    text=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_documents(text: object) -> None:
    import json

    _only_envelope_errors(json.dumps(text).encode(), JWS_MEDIA_TYPE)
