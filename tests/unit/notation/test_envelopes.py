"""Envelopes signed here, in both formats: what verifies, and every rule that makes one fail."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.unit.notation.signing import (
    DIGEST,
    SIGNING_TIME,
    Spec,
    b64url,
    certificate,
    cose_protected,
    cose_protected_map,
    der,
    ec_key,
    ed25519_cert,
    jws_parts,
    make_cose,
    make_jws,
    payload_bytes,
    rsa_key,
)
from verifiers.notation.envelope import (
    COSE_MEDIA_TYPE,
    JWS_MEDIA_TYPE,
    LIMITS,
    EnvelopeError,
    VerifiedEnvelope,
    is_expired,
    parse_and_verify,
)

Maker = Callable[[Spec], bytes]
FORMATS: dict[str, tuple[Maker, str]] = {
    "jws": (make_jws, JWS_MEDIA_TYPE),
    "cose": (make_cose, COSE_MEDIA_TYPE),
}


@pytest.fixture(params=sorted(FORMATS))
def fmt(request: pytest.FixtureRequest) -> tuple[Maker, str]:
    return FORMATS[request.param]


def verify(fmt: tuple[Maker, str], spec: Spec, **kwargs: Any) -> VerifiedEnvelope:
    make, media_type = fmt
    return parse_and_verify(make(spec), media_type, **kwargs)


def reason(fmt: tuple[Maker, str], spec: Spec) -> str:
    with pytest.raises(EnvelopeError) as info:
        verify(fmt, spec)
    return info.value.reason


def cose_body(data: bytes) -> list[Any]:
    """A COSE_Sign1's four items, with a mutable unprotected header, for tampering."""
    body = list(cbor2.loads(data).value)
    body[1] = dict(body[1])
    return body


def cose_encode(body: list[Any]) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(18, body))


def reason_of(data: bytes, media_type: str) -> str:
    with pytest.raises(EnvelopeError) as info:
        parse_and_verify(data, media_type)
    return info.value.reason


KEYS = [
    ("PS256", lambda: rsa_key(2048)),
    ("PS384", lambda: rsa_key(3072)),
    ("PS512", lambda: rsa_key(4096)),
    ("ES256", lambda: ec_key("P-256")),
    ("ES384", lambda: ec_key("P-384")),
    ("ES512", lambda: ec_key("P-521")),
]


# -- what verifies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "key"), KEYS, ids=[f"{a}-{i}" for i, (a, _) in enumerate(KEYS)])
def test_generated_envelope_verifies(fmt: tuple[Maker, str], alg: str, key: Callable[[], Any]) -> None:
    spec = Spec(key=key(), alg=alg, timestamp=b"\x30\x03\x02\x01\x01")
    verified = verify(fmt, spec)
    assert verified.signer.algorithm == alg
    assert verified.signer.signing_scheme == "notary.x509"
    assert verified.signer.signing_time == SIGNING_TIME
    assert verified.signer.signing_agent == "countersign-tests/1"
    assert verified.signer.timestamp_token == b"\x30\x03\x02\x01\x01"
    assert verified.signer.certificate_chain == (certificate(spec.key),)
    assert verified.payload.raw == spec.payload
    assert verified.payload.target.digest == DIGEST and verified.payload.target.size == 1234


def test_signing_authority_scheme_with_expiry_and_extended_attributes(fmt: tuple[Maker, str]) -> None:
    expiry = SIGNING_TIME + timedelta(days=30)
    spec = Spec(
        key=ec_key("P-256"),
        alg="ES256",
        headers={
            "io.cncf.notary.signingScheme": "notary.x509.signingAuthority",
            "io.cncf.notary.authenticSigningTime": SIGNING_TIME,
            "io.cncf.notary.expiry": expiry,
            "com.example.note": "hello",
            "com.example.checked": "yes",
        },
        crit=[
            "io.cncf.notary.signingScheme",
            "io.cncf.notary.authenticSigningTime",
            "io.cncf.notary.expiry",
            "com.example.checked",
        ],
    )
    verified = verify(fmt, spec, understood_critical_headers=frozenset({"com.example.checked"}))
    signer = verified.signer
    assert signer.signing_scheme == "notary.x509.signingAuthority"
    assert signer.authentic_signing_time == SIGNING_TIME and signer.signing_time is None
    assert signer.expiry == expiry
    assert dict(signer.extended_attributes) == {"com.example.note": "hello", "com.example.checked": "yes"}
    assert not is_expired(signer, expiry)
    assert is_expired(signer, expiry + timedelta(seconds=1))
    with pytest.raises(ValueError):
        is_expired(signer, datetime(2030, 1, 1))  # naive


def test_chain_is_exposed_leaf_first_and_only_the_leaf_signs(fmt: tuple[Maker, str]) -> None:
    leaf, other = ec_key("P-256"), ec_key("P-384")
    chain = [certificate(leaf), certificate(other, "intermediate")]
    verified = verify(fmt, Spec(key=leaf, alg="ES256", chain=chain))
    assert verified.signer.certificate_chain == tuple(chain)
    # Same certificates, reversed: the first one's key did not sign.
    assert reason(fmt, Spec(key=leaf, alg="ES256", chain=chain[::-1])) == "algorithm_key_mismatch"


def test_payload_annotations_and_other_digests(fmt: tuple[Maker, str]) -> None:
    payload = payload_bytes(digest="sha512:" + "0f" * 64, size=0, annotations={"a": "b"})
    verified = verify(fmt, Spec(key=ec_key("P-256"), alg="ES256", payload=payload))
    assert verified.payload.target.annotations == {"a": "b"}
    assert verified.payload.target.digest.startswith("sha512:")


# -- signatures that do not verify ---------------------------------------------------------------------------


def test_signature_by_another_key(fmt: tuple[Maker, str]) -> None:
    spec = Spec(key=rsa_key(2048), alg="PS256", signing_key=rsa_key(3072))
    assert reason(fmt, spec) == "signature_invalid"
    spec = Spec(key=ec_key("P-256"), alg="ES256", signing_key=ec.generate_private_key(ec.SECP256R1()))
    assert reason(fmt, spec) == "signature_invalid"


def test_pkcs1v15_signature_under_ps256(fmt: tuple[Maker, str]) -> None:
    assert reason(fmt, Spec(key=rsa_key(2048), alg="PS256", pkcs1v15=True)) == "signature_invalid"


@pytest.mark.parametrize("salt", [0, 20, 64])
def test_pss_salt_must_equal_digest_length(fmt: tuple[Maker, str], salt: int) -> None:
    assert reason(fmt, Spec(key=rsa_key(2048), alg="PS256", salt=salt)) == "signature_invalid"


def test_tampered_jws_payload_and_header() -> None:
    spec = Spec(key=rsa_key(2048), alg="PS256")
    parts = jws_parts(spec)
    tampered = dict(parts, payload=b64url(payload_bytes(digest="sha256:" + "cd" * 32)))
    assert reason_of(json.dumps(tampered).encode(), JWS_MEDIA_TYPE) == "signature_invalid"
    header = json.loads(base64.urlsafe_b64decode(parts["protected"] + "=="))
    header["io.cncf.notary.signingTime"] = "2030-01-01T00:00:00Z"
    tampered = dict(parts, protected=b64url(json.dumps(header).encode()))
    assert reason_of(json.dumps(tampered).encode(), JWS_MEDIA_TYPE) == "signature_invalid"


def test_tampered_cose_payload_and_header() -> None:
    spec = Spec(key=ec_key("P-384"), alg="ES384")
    message = cbor2.loads(make_cose(spec))
    protected, unprotected, _, signature = message.value
    other = payload_bytes(digest="sha256:" + "cd" * 32)
    tampered = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, other, signature]))
    assert reason_of(tampered, COSE_MEDIA_TYPE) == "signature_invalid"
    header = cbor2.loads(protected)
    header["io.cncf.notary.signingTime"] = cbor2.CBORTag(1, 1_900_000_000)
    tampered = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps(header), unprotected, spec.payload, signature]))
    assert reason_of(tampered, COSE_MEDIA_TYPE) == "signature_invalid"


def test_ecdsa_signature_of_the_wrong_width(fmt: tuple[Maker, str]) -> None:
    # An ES384 (96-byte) signature under an ES256 header, by the right key: r || s must be 64 bytes.
    spec = Spec(key=ec_key("P-256"), alg="ES256", signing_alg="ES384")
    assert reason(fmt, spec) == "signature_invalid"


# -- algorithm bound to the key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "signing", "certified"),
    [
        ("ES256", "P-384", "P-384"),  # ES256 header, P-384 key
        ("ES384", "P-256", "P-256"),
        ("ES512", "P-384", "P-384"),
        ("PS256", "P-256", "P-256"),  # PS256 header, EC key
        ("ES256", "rsa", "rsa"),  # ES256 header, RSA key
        ("PS256", "rsa", "rsa3072"),  # an RSA 3072 key signs with PS384 only
        ("PS512", "rsa", "rsa"),  # an RSA 2048 key signs with PS256 only
        ("PS384", "rsa", "rsa4096"),
    ],
)
def test_algorithm_key_mismatch(fmt: tuple[Maker, str], alg: str, signing: str, certified: str) -> None:
    rsa_bits = {"rsa": 2048, "rsa3072": 3072, "rsa4096": 4096}
    key = rsa_key(rsa_bits[certified]) if certified in rsa_bits else ec_key(certified)
    # Sign with a key that fits the header (the certified key itself when it is RSA), so only the binding
    # can fail.
    if alg.startswith("PS"):
        signer = key if certified in rsa_bits else rsa_key(2048)
    else:
        signer = ec_key({"256": "P-256", "384": "P-384"}.get(alg[2:], "P-521"))
    spec = Spec(key=key, alg=alg, signing_key=signer)
    assert reason(fmt, spec) == "algorithm_key_mismatch"


def test_non_rsa_non_ec_leaf_is_a_mismatch(fmt: tuple[Maker, str]) -> None:
    spec = Spec(key=rsa_key(2048), alg="PS256", chain=[ed25519_cert()])
    assert reason(fmt, spec) == "algorithm_key_mismatch"


def test_rsa_key_below_2048_bits(fmt: tuple[Maker, str]) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert reason(fmt, Spec(key=small, alg="PS256")) == "unsupported_key"


def test_rsa_key_of_a_size_outside_the_key_spec_table(fmt: tuple[Maker, str]) -> None:
    # 2560 bits is strong enough, but the Notary Project's key specs are 2048, 3072 and 4096 only.
    assert reason(fmt, Spec(key=rsa_key(2560), alg="PS256")) == "unsupported_key"


def test_ecdsa_curve_outside_the_key_spec_table(fmt: tuple[Maker, str]) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    p224 = ec.generate_private_key(ec.SECP224R1())
    spec = Spec(key=p224, alg="ES256", signing_key=ec_key("P-256"))
    assert reason(fmt, spec) == "unsupported_key"


@pytest.mark.parametrize("alg", ["RS256", "EdDSA", "HS256", "none", "ES256K", "ps256"])
def test_unsupported_algorithm(fmt: tuple[Maker, str], alg: str) -> None:
    assert reason(fmt, Spec(key=rsa_key(2048), alg=alg, signing_alg="PS256")) == "unsupported_algorithm"


# -- critical headers ----------------------------------------------------------------------------------------


def test_unknown_critical_header(fmt: tuple[Maker, str]) -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    spec.headers["com.example.mustUnderstand"] = "x"
    spec.crit = ["io.cncf.notary.signingScheme", "com.example.mustUnderstand"]
    assert reason(fmt, spec) == "unknown_critical_header"
    # Declaring it understood is how a caller (e.g. for a plugin) takes responsibility for it.
    verified = verify(fmt, spec, understood_critical_headers=frozenset({"com.example.mustUnderstand"}))
    assert verified.signer.critical == ("io.cncf.notary.signingScheme", "com.example.mustUnderstand")


def test_critical_header_listed_but_absent(fmt: tuple[Maker, str]) -> None:
    spec = Spec(
        key=ec_key("P-256"), alg="ES256", crit=["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]
    )
    assert reason(fmt, spec) == "critical_header_absent"


@pytest.mark.parametrize("crit", [None, [], ["io.cncf.notary.signingTime"]])
def test_signing_scheme_must_be_critical(fmt: tuple[Maker, str], crit: list[str] | None) -> None:
    assert reason(fmt, Spec(key=ec_key("P-256"), alg="ES256", crit=crit)) == "header_not_critical"


def test_expiry_must_be_critical(fmt: tuple[Maker, str]) -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    spec.headers["io.cncf.notary.expiry"] = SIGNING_TIME + timedelta(days=1)
    assert reason(fmt, spec) == "header_not_critical"


def test_authentic_signing_time_must_be_critical(fmt: tuple[Maker, str]) -> None:
    spec = Spec(
        key=ec_key("P-256"),
        alg="ES256",
        headers={
            "io.cncf.notary.signingScheme": "notary.x509.signingAuthority",
            "io.cncf.notary.authenticSigningTime": SIGNING_TIME,
        },
    )
    assert reason(fmt, spec) == "header_not_critical"


def test_duplicate_crit_entry(fmt: tuple[Maker, str]) -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256", crit=["io.cncf.notary.signingScheme"] * 2)
    assert reason(fmt, spec) == "envelope_malformed"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no signing scheme
        {"io.cncf.notary.signingScheme": "notary.x509"},  # no signing time
        {
            "io.cncf.notary.signingScheme": "notary.x509.signingAuthority",
            "io.cncf.notary.signingTime": SIGNING_TIME,
        },
        {
            "io.cncf.notary.signingScheme": "notary.x509",
            "io.cncf.notary.signingTime": SIGNING_TIME,
            "io.cncf.notary.authenticSigningTime": SIGNING_TIME,
        },
        {"io.cncf.notary.signingScheme": "notary.x509", "io.cncf.notary.signingTime": "yesterday"},
    ],
)
def test_signing_scheme_and_time_rules(fmt: tuple[Maker, str], headers: dict[str, Any]) -> None:
    crit = ["io.cncf.notary.signingScheme"] if "io.cncf.notary.signingScheme" in headers else None
    spec = Spec(key=ec_key("P-256"), alg="ES256", headers=headers, crit=crit)
    assert reason(fmt, spec) in {"envelope_malformed", "header_not_critical"}
    if crit:
        assert reason(fmt, spec) == "envelope_malformed"


def test_unknown_signing_scheme(fmt: tuple[Maker, str]) -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    spec.headers["io.cncf.notary.signingScheme"] = "notary.default.x509"
    assert reason(fmt, spec) == "unsupported_signing_scheme"


# -- content, chain, payload ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cty", [None, "application/json", "application/vnd.cncf.notary.payload.v2+json"])
def test_wrong_content_type(fmt: tuple[Maker, str], cty: str | None) -> None:
    assert reason(fmt, Spec(key=ec_key("P-256"), alg="ES256", cty=cty)) == "unsupported_content_type"


def test_missing_certificate_chain(fmt: tuple[Maker, str]) -> None:
    assert (
        reason(fmt, Spec(key=ec_key("P-256"), alg="ES256", include_chain=False))
        == "certificate_chain_missing"
    )
    assert reason(fmt, Spec(key=ec_key("P-256"), alg="ES256", chain=[])) in {
        "certificate_chain_missing",
        "envelope_malformed",
    }


def test_too_many_certificates(fmt: tuple[Maker, str]) -> None:
    key = ec_key("P-256")
    chain = [certificate(key)] * (LIMITS.max_certificates + 1)
    assert reason(fmt, Spec(key=key, alg="ES256", chain=chain)) == "limit_exceeded"


def test_certificate_that_is_not_der(fmt: tuple[Maker, str]) -> None:
    key = ec_key("P-256")
    spec = Spec(key=key, alg="ES256")
    _, media_type = fmt
    if media_type == JWS_MEDIA_TYPE:
        parts = jws_parts(spec)
        parts["header"]["x5c"] = [base64.b64encode(b"not a certificate").decode()]
        data = json.dumps(parts).encode()
    else:
        body = cose_body(make_cose(spec))
        body[1][33] = b"not a certificate"
        data = cose_encode(body)
    assert reason_of(data, media_type) == "certificate_malformed"


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b'{"targetArtifact": []}',
        payload_bytes(digest="sha256:" + "AB" * 32),
        payload_bytes(digest="sha1:" + "ab" * 20),
        payload_bytes(digest="sha256:" + "ab" * 31),
        payload_bytes(size=-1),
        payload_bytes(size=1.5),  # type: ignore[arg-type]
        payload_bytes(size=True),
        payload_bytes(annotations={"a": 1}),
        json.dumps({"targetArtifact": {"digest": DIGEST, "size": 1}}).encode(),
        b'{"targetArtifact": {"mediaType": "a/b", "digest": "'
        + DIGEST.encode()
        + b'", "size": 1, "size": 2}}',
        b'{"targetArtifact": {"mediaType": "a/b", "digest": "' + DIGEST.encode() + b'", "size": NaN}}',
        b"\xff\xfe",
    ],
)
def test_malformed_payload(fmt: tuple[Maker, str], payload: bytes) -> None:
    assert reason(fmt, Spec(key=ec_key("P-256"), alg="ES256", payload=payload)) == "payload_malformed"


def test_payload_size_limit(fmt: tuple[Maker, str]) -> None:
    payload = payload_bytes(annotations={"pad": "x" * LIMITS.max_payload_bytes})
    assert reason(fmt, Spec(key=ec_key("P-256"), alg="ES256", payload=payload)) == "limit_exceeded"


def test_envelope_size_limit() -> None:
    huge = b" " * (LIMITS.max_envelope_bytes + 1)
    assert reason_of(huge, JWS_MEDIA_TYPE) == "limit_exceeded"
    assert reason_of(huge, COSE_MEDIA_TYPE) == "limit_exceeded"


def test_unsupported_media_type() -> None:
    data = make_jws(Spec(key=ec_key("P-256"), alg="ES256"))
    assert reason_of(data, "application/json") == "unsupported_media_type"


# -- JWS encoding --------------------------------------------------------------------------------------------


@pytest.fixture
def jws() -> dict[str, Any]:
    return jws_parts(Spec(key=ec_key("P-256"), alg="ES256"))


def _padded(value: str) -> str:
    return value + "=" * (-len(value) % 4)


@pytest.mark.parametrize("member", ["payload", "protected", "signature"])
def test_jws_base64url_is_strict(jws: dict[str, Any], member: str) -> None:
    value = jws[member]
    standard = base64.b64encode(base64.urlsafe_b64decode(_padded(value))).decode()
    variants = [
        _padded(value) + ("=" if len(value) % 4 == 0 else ""),
        standard,
        value + "\n",
        value[:-1] + "!",
    ]
    for variant in variants:
        if variant == value:
            continue
        assert reason_of(json.dumps(dict(jws, **{member: variant})).encode(), JWS_MEDIA_TYPE) in {
            "envelope_malformed"
        }, variant


def test_jws_noncanonical_base64url_trailing_bits(jws: dict[str, Any]) -> None:
    sig = jws["signature"]  # 64 bytes -> 86 chars, the last one carries 2 unused bits
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(sig[-1])
    flipped = sig[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    assert (
        reason_of(json.dumps(dict(jws, signature=flipped)).encode(), JWS_MEDIA_TYPE) == "envelope_malformed"
    )


def test_jws_x5c_must_be_padded_standard_base64(jws: dict[str, Any]) -> None:
    cert = der(certificate(ec_key("P-256")))
    for variant in [b64url(cert), base64.b64encode(cert).decode().rstrip("=") + "==="]:
        jws["header"]["x5c"] = [variant]
        data = json.dumps(jws).encode()
        assert reason_of(data, JWS_MEDIA_TYPE) == "envelope_malformed"


@pytest.mark.parametrize(
    "document",
    [
        b'{"payload": "e30", "payload": "e30", "protected": "e30", "header": {}, "signature": "AA"}',
        b"[]",
        b"",
        b"\xef\xbb\xbf{}",
    ],
)
def test_jws_not_strict_json(document: bytes) -> None:
    assert reason_of(document, JWS_MEDIA_TYPE) == "envelope_malformed"


def test_jws_duplicate_keys_in_protected_header() -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    parts = jws_parts(spec)
    header = base64.urlsafe_b64decode(_padded(parts["protected"])).decode()
    duplicated = header[:-1] + ', "alg": "ES256"}'
    protected_b64 = b64url(duplicated.encode())
    signature = spec.raw_signature(f"{protected_b64}.{parts['payload']}".encode())
    data = json.dumps(dict(parts, protected=protected_b64, signature=b64url(signature))).encode()
    assert reason_of(data, JWS_MEDIA_TYPE) == "envelope_malformed"


def test_jws_general_serialization_and_extra_members(jws: dict[str, Any]) -> None:
    assert reason_of(json.dumps(dict(jws, signatures=[])).encode(), JWS_MEDIA_TYPE) == "envelope_malformed"


def test_jws_header_both_protected_and_unprotected(jws: dict[str, Any]) -> None:
    jws["header"]["alg"] = "ES256"
    assert reason_of(json.dumps(jws).encode(), JWS_MEDIA_TYPE) == "envelope_malformed"


@pytest.mark.parametrize("name", ["b64", "x5c", "jwk", "kid"])
def test_jws_protected_header_must_not_redirect_the_key_or_encoding(name: str) -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    spec.headers[name] = False
    assert reason((make_jws, JWS_MEDIA_TYPE), spec) == "envelope_malformed"


@pytest.mark.parametrize(
    "moment",
    ["2024-05-06T07:08:09", "2024-05-06 07:08:09Z", "2024-13-06T07:08:09Z", "2024-05-06T07:08:09+25:00", 17],
)
def test_jws_signing_time_must_be_rfc3339(moment: object) -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    spec.headers["io.cncf.notary.signingTime"] = moment
    assert reason((make_jws, JWS_MEDIA_TYPE), spec) == "envelope_malformed"


def test_jws_signing_time_with_nanoseconds() -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    spec.headers["io.cncf.notary.signingTime"] = "2024-05-06T07:08:09.123456789-07:00"
    signing_time = verify((make_jws, JWS_MEDIA_TYPE), spec).signer.signing_time
    assert signing_time == datetime(2024, 5, 6, 14, 8, 9, 123456, tzinfo=UTC)


# -- COSE encoding -------------------------------------------------------------------------------------------


def test_cose_without_tag_18() -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    assert reason_of(make_cose(spec, tag=None), COSE_MEDIA_TYPE) == "envelope_malformed"
    assert reason_of(make_cose(spec, tag=98), COSE_MEDIA_TYPE) == "envelope_malformed"
    assert reason_of(make_cose(spec, tag=17), COSE_MEDIA_TYPE) == "envelope_malformed"


def test_cose_trailing_bytes() -> None:
    data = make_cose(Spec(key=ec_key("P-256"), alg="ES256"))
    assert reason_of(data + b"\x00", COSE_MEDIA_TYPE) == "envelope_malformed"


def test_cose_duplicate_protected_label() -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    protected = bytearray(make_cose_protected_with_duplicate(spec))
    assert reason_of(make_cose(spec, protected=bytes(protected)), COSE_MEDIA_TYPE) == "envelope_malformed"


def make_cose_protected_with_duplicate(spec: Spec) -> bytes:
    encoded = cose_protected(spec)
    count = encoded[0] & 0x1F
    return bytes([0xA0 | (count + 1)]) + encoded[1:] + cbor2.dumps(1) + cbor2.dumps(-7)


def test_cose_time_must_be_tag_1(fmt: tuple[Maker, str]) -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    spec.headers["io.cncf.notary.signingTime"] = cbor2.CBORTag(0, "2024-05-06T07:08:09Z")
    assert reason((make_cose, COSE_MEDIA_TYPE), spec) == "envelope_malformed"
    spec.headers["io.cncf.notary.signingTime"] = 1_714_979_289
    assert reason((make_cose, COSE_MEDIA_TYPE), spec) == "envelope_malformed"


def test_cose_alg_label_types() -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    for alg in ["ES256", -8, True]:
        decoded = cose_protected_map(spec)
        decoded[1] = alg
        assert reason_of(make_cose(spec, protected=cbor2.dumps(decoded)), COSE_MEDIA_TYPE) == (
            "unsupported_algorithm"
        )


def test_cose_x5chain_as_array_and_in_wrong_places() -> None:
    key = ec_key("P-256")
    spec = Spec(key=key, alg="ES256")
    body = cose_body(make_cose(spec))
    body[1][33] = [der(certificate(key))]
    assert parse_and_verify(cose_encode(body), COSE_MEDIA_TYPE).signer.certificate_chain == (
        certificate(key),
    )
    body[1][33] = "text"
    assert reason_of(cose_encode(body), COSE_MEDIA_TYPE) == "envelope_malformed"
    protected = cose_protected_map(spec)
    protected[33] = der(certificate(key))
    assert (
        reason_of(make_cose(spec, protected=cbor2.dumps(protected)), COSE_MEDIA_TYPE) == "envelope_malformed"
    )


def test_cose_detached_payload_and_bad_shapes() -> None:
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    original = cose_body(make_cose(spec))
    cases: list[tuple[int, object]] = [(2, None), (2, "text"), (0, {}), (1, []), (3, b"")]
    for index, value in cases:
        body = list(original)
        body[index] = value
        assert reason_of(cose_encode(body), COSE_MEDIA_TYPE) == "envelope_malformed"
    assert reason_of(cose_encode(original[:3]), COSE_MEDIA_TYPE) == "envelope_malformed"


def test_cose_indefinite_length_and_shared_references() -> None:
    assert reason_of(b"\xd2\x9f\xff", COSE_MEDIA_TYPE) == "envelope_malformed"
    assert reason_of(b"\xd2\xd8\x1c\x84\x40\xa0\xf6\x40", COSE_MEDIA_TYPE) == "envelope_malformed"


def test_cose_bool_label_is_not_alg() -> None:
    """`true` must not be read as label 1 (Python's True == 1)."""
    spec = Spec(key=ec_key("P-256"), alg="ES256")
    protected = cose_protected_map(spec)
    del protected[1]
    encoded = cbor2.dumps(protected)
    forged = bytes([encoded[0] + 1]) + encoded[1:] + b"\xf5\x26"  # true: -7
    assert reason_of(make_cose(spec, protected=forged), COSE_MEDIA_TYPE) == "envelope_malformed"
