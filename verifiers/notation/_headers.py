"""What JWS and COSE have in common once unwrapped: the signed attributes, their crit rules, the chain.

A format module (`_jws`, `_cose`) turns its envelope into a `RawEnvelope` (format details resolved: the
algorithm named, times decoded, certificates as DER); `finish` applies the Notary Project rules to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from cryptography import x509

from verifiers.notation._algorithms import Algorithm, verify_signature
from verifiers.notation._common import LIMITS, EnvelopeReason, check_plain, fail
from verifiers.notation._payload import parse_payload
from verifiers.notation.model import (
    NOTARY_PAYLOAD_MEDIA_TYPE,
    SIGNING_SCHEME_X509,
    SIGNING_SCHEME_X509_SIGNING_AUTHORITY,
    SIGNING_SCHEMES,
    SignerInfo,
    VerifiedEnvelope,
)

__all__ = [
    "AUTHENTIC_SIGNING_TIME",
    "EXPIRY",
    "SIGNING_AGENT",
    "SIGNING_SCHEME",
    "SIGNING_TIME",
    "TIMESTAMP_SIGNATURE",
    "RawEnvelope",
    "finish",
]

SIGNING_SCHEME = "io.cncf.notary.signingScheme"
SIGNING_TIME = "io.cncf.notary.signingTime"
AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
EXPIRY = "io.cncf.notary.expiry"
SIGNING_AGENT = "io.cncf.notary.signingAgent"
TIMESTAMP_SIGNATURE = "io.cncf.notary.timestampSignature"

NOTARY_SIGNED_HEADERS = frozenset({SIGNING_SCHEME, SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY})


@dataclass(frozen=True, slots=True)
class RawEnvelope:
    algorithm: Algorithm
    content_type: object  # as found; must be the notation payload media type
    critical: tuple[str | int, ...]  # crit, as written (labels are strings in JWS, strings or ints in COSE)
    attributes: Mapping[str, Any]  # text-keyed protected headers other than alg, cty and crit
    decode_time: Callable[[object, str], datetime]  # the format's way of writing a signed time
    certificates: tuple[bytes, ...]  # DER, leaf first
    signing_agent: str | None
    timestamp_token: bytes | None
    signature: bytes
    signing_input: bytes  # the exact bytes the signature covers
    payload: bytes


def _check_critical(raw: RawEnvelope, understood: frozenset[str]) -> tuple[str, ...]:
    if not raw.critical:
        fail(EnvelopeReason.HEADER_NOT_CRITICAL, f"crit is missing or empty; it must list {SIGNING_SCHEME}")
    if len(set(raw.critical)) != len(raw.critical):
        fail(EnvelopeReason.MALFORMED, "crit lists a header more than once")
    names: list[str] = []
    for label in raw.critical:
        if not isinstance(label, str) or label not in NOTARY_SIGNED_HEADERS | understood:
            fail(
                EnvelopeReason.UNKNOWN_CRITICAL_HEADER,
                f"crit lists {label!r}, which this verifier does not understand",
            )
        names.append(label)
    for name in names:
        if name not in raw.attributes:
            fail(
                EnvelopeReason.CRITICAL_HEADER_ABSENT,
                f"crit lists {name!r}, which is not in the protected header",
            )
    return tuple(names)


def _require_critical(name: str, critical: tuple[str, ...]) -> None:
    if name not in critical:
        fail(EnvelopeReason.HEADER_NOT_CRITICAL, f"{name} is present but not listed in crit")


def _optional_time(raw: RawEnvelope, name: str) -> datetime | None:
    if name not in raw.attributes:
        return None
    return raw.decode_time(raw.attributes[name], name)


def _certificates(raw: RawEnvelope) -> tuple[x509.Certificate, ...]:
    if not raw.certificates:
        fail(EnvelopeReason.CERTIFICATE_CHAIN_MISSING, "the envelope carries no certificate chain")
    if len(raw.certificates) > LIMITS.max_certificates:
        fail(EnvelopeReason.LIMIT_EXCEEDED, f"certificate chain is longer than {LIMITS.max_certificates}")
    chain: list[x509.Certificate] = []
    for index, der in enumerate(raw.certificates):
        try:
            chain.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            fail(
                EnvelopeReason.CERTIFICATE_MALFORMED,
                f"certificate {index} is not a DER X.509 certificate: {exc}",
            )
    return tuple(chain)


def finish(raw: RawEnvelope, understood_critical: frozenset[str]) -> VerifiedEnvelope:
    """Apply the Notary Project rules, verify the signature with the leaf key, then parse the payload."""
    if raw.content_type != NOTARY_PAYLOAD_MEDIA_TYPE:
        fail(
            EnvelopeReason.UNSUPPORTED_CONTENT_TYPE,
            f"content type is {raw.content_type!r}, not {NOTARY_PAYLOAD_MEDIA_TYPE}",
        )
    critical = _check_critical(raw, understood_critical)

    scheme = raw.attributes.get(SIGNING_SCHEME)
    if scheme is None:
        fail(EnvelopeReason.MALFORMED, f"{SIGNING_SCHEME} is missing")
    if not isinstance(scheme, str) or scheme not in SIGNING_SCHEMES:
        fail(EnvelopeReason.UNSUPPORTED_SIGNING_SCHEME, f"signing scheme {scheme!r} is not supported")
    _require_critical(SIGNING_SCHEME, critical)

    signing_time = _optional_time(raw, SIGNING_TIME)
    authentic_signing_time = _optional_time(raw, AUTHENTIC_SIGNING_TIME)
    if scheme == SIGNING_SCHEME_X509:
        if signing_time is None:
            fail(EnvelopeReason.MALFORMED, f"{SIGNING_TIME} is required by the {scheme} signing scheme")
        if authentic_signing_time is not None:
            fail(EnvelopeReason.MALFORMED, f"{AUTHENTIC_SIGNING_TIME} must not be present under {scheme}")
    else:
        assert scheme == SIGNING_SCHEME_X509_SIGNING_AUTHORITY
        if authentic_signing_time is None:
            fail(
                EnvelopeReason.MALFORMED,
                f"{AUTHENTIC_SIGNING_TIME} is required by the {scheme} signing scheme",
            )
        _require_critical(AUTHENTIC_SIGNING_TIME, critical)
        if signing_time is not None:
            fail(EnvelopeReason.MALFORMED, f"{SIGNING_TIME} must not be present under {scheme}")
    expiry = _optional_time(raw, EXPIRY)
    if expiry is not None:
        _require_critical(EXPIRY, critical)

    extended = {k: v for k, v in raw.attributes.items() if k not in NOTARY_SIGNED_HEADERS}
    check_plain(extended, "extended attributes", limit=LIMITS.max_json_depth)

    chain = _certificates(raw)
    verify_signature(raw.algorithm, chain[0], raw.signature, raw.signing_input)
    payload = parse_payload(raw.payload)
    signer = SignerInfo(
        signing_scheme=scheme,
        algorithm=raw.algorithm.name,
        certificate_chain=chain,
        signing_time=signing_time,
        authentic_signing_time=authentic_signing_time,
        expiry=expiry,
        signing_agent=raw.signing_agent,
        timestamp_token=raw.timestamp_token,
        signature=raw.signature,
        critical=critical,
        extended_attributes=MappingProxyType(extended),
    )
    return VerifiedEnvelope(signer=signer, payload=payload)
