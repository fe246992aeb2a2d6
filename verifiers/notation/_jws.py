"""The JWS envelope (`application/jose+json`): RFC 7515 flattened JSON serialization, as notation writes it.

    {"payload": b64url, "protected": b64url(JSON header), "header": {unprotected}, "signature": b64url}

The signature covers ASCII(protected + "." + payload), the two strings exactly as written. The unprotected
header may carry only `x5c` (standard base64 DER, leaf first), `io.cncf.notary.signingAgent` and
`io.cncf.notary.timestampSignature` (standard base64 DER); other unprotected members are ignored, never
exposed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from verifiers.notation._algorithms import ALGORITHMS
from verifiers.notation._common import (
    LIMITS,
    EnvelopeReason,
    b64decode_std,
    b64url_decode,
    fail,
    load_json,
    parse_rfc3339,
)
from verifiers.notation._headers import SIGNING_AGENT, TIMESTAMP_SIGNATURE, RawEnvelope

__all__ = ["parse_jws"]

_TOP_LEVEL = frozenset({"payload", "protected", "header", "signature"})
# Registered JOSE headers that would change which key or what bytes the signature is about; notation never
# puts them in the protected header, and an extended attribute must not shadow them.
_FORBIDDEN_PROTECTED = frozenset({"b64", "zip", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "enc"})


def _decode_time(value: object, what: str) -> datetime:
    return parse_rfc3339(value, what)


def _unprotected(header: Any) -> tuple[tuple[bytes, ...], str | None, bytes | None]:
    if header is None:
        return (), None, None
    if not isinstance(header, dict):
        fail(EnvelopeReason.MALFORMED, "JWS `header` must be a JSON object")
    x5c = header.get("x5c")
    certificates: tuple[bytes, ...] = ()
    if x5c is not None:
        if not isinstance(x5c, list):
            fail(EnvelopeReason.MALFORMED, "JWS header `x5c` must be an array")
        if len(x5c) > LIMITS.max_certificates:
            fail(EnvelopeReason.LIMIT_EXCEEDED, f"x5c holds more than {LIMITS.max_certificates} certificates")
        certificates = tuple(b64decode_std(item, f"x5c[{i}]") for i, item in enumerate(x5c))
    agent = header.get(SIGNING_AGENT)
    if agent is not None and not isinstance(agent, str):
        fail(EnvelopeReason.MALFORMED, f"{SIGNING_AGENT} must be a string")
    token_b64 = header.get(TIMESTAMP_SIGNATURE)
    token = None if token_b64 is None else b64decode_std(token_b64, TIMESTAMP_SIGNATURE)
    return certificates, agent, token


def parse_jws(envelope: bytes) -> RawEnvelope:
    document = load_json(envelope, "JWS envelope")
    if not isinstance(document, dict):
        fail(EnvelopeReason.MALFORMED, "JWS envelope must be a JSON object")
    if unexpected := sorted(set(document) - _TOP_LEVEL):
        fail(
            EnvelopeReason.MALFORMED,
            f"JWS envelope has unexpected members {unexpected} (only flattened JSON is allowed)",
        )
    protected_b64 = document.get("protected")
    payload_b64 = document.get("payload")
    if not isinstance(protected_b64, str) or not isinstance(payload_b64, str):
        fail(EnvelopeReason.MALFORMED, "JWS `protected` and `payload` must be strings")
    protected_bytes = b64url_decode(protected_b64, "JWS protected header")
    payload = b64url_decode(payload_b64, "JWS payload")
    if len(payload) > LIMITS.max_payload_bytes:
        fail(
            EnvelopeReason.LIMIT_EXCEEDED,
            f"payload is {len(payload)} bytes, more than {LIMITS.max_payload_bytes}",
        )
    signature = b64url_decode(document.get("signature"), "JWS signature")
    if not signature:
        fail(EnvelopeReason.MALFORMED, "JWS signature is empty")

    protected = load_json(protected_bytes, "JWS protected header")
    if not isinstance(protected, dict):
        fail(EnvelopeReason.MALFORMED, "JWS protected header must be a JSON object")
    header = document.get("header")
    if isinstance(header, dict) and (shared := sorted(set(header) & set(protected))):
        fail(EnvelopeReason.MALFORMED, f"headers {shared} are both protected and unprotected")
    if forbidden := sorted(set(protected) & _FORBIDDEN_PROTECTED):
        fail(EnvelopeReason.MALFORMED, f"protected header must not carry {forbidden}")

    alg = protected.get("alg")
    if alg is None:
        fail(EnvelopeReason.MALFORMED, "JWS protected header has no `alg`")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        fail(EnvelopeReason.UNSUPPORTED_ALGORITHM, f"JWS algorithm {alg!r} is not supported")
    crit = protected.get("crit", [])
    if not isinstance(crit, list) or not all(isinstance(item, str) for item in crit):
        fail(EnvelopeReason.MALFORMED, "JWS `crit` must be an array of strings")
    if {"alg", "cty", "crit"} & set(crit):
        fail(EnvelopeReason.MALFORMED, "JWS `crit` must not list headers defined by JWS itself")
    certificates, agent, token = _unprotected(header)
    return RawEnvelope(
        algorithm=ALGORITHMS[alg],
        content_type=protected.get("cty"),
        critical=tuple(crit),
        attributes={k: v for k, v in protected.items() if k not in {"alg", "cty", "crit"}},
        decode_time=_decode_time,
        certificates=certificates,
        signing_agent=agent,
        timestamp_token=token,
        signature=signature,
        signing_input=f"{protected_b64}.{payload_b64}".encode("ascii"),
        payload=payload,
    )
