"""RFC 3161 countersignatures of Notary Project signatures, checked against `tsa:` trust-store roots.

A thin adapter over `verifiers.cosign.timestamp.parse_timestamp` (strict DER, with its one leniency for
mis-ordered certificate SETs) and rfc3161-client's `Verifier` (CMS signature, the TSA chain at genTime with
the timeStamping purpose, the message imprint). Notation timestamps the raw signature bytes (the JWS
signature, the COSE_Sign1 signature), so those are the covered bytes. Pure, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from rfc3161_client import VerificationError, VerifierBuilder

from verifiers.cosign.common import Failure
from verifiers.cosign.timestamp import parse_timestamp

__all__ = ["TimestampError", "VerifiedCountersignature", "verify_countersignature"]

_HASHES: dict[str, Callable[[bytes], Any]] = {
    "2.16.840.1.101.3.4.2.1": hashlib.sha256,
    "2.16.840.1.101.3.4.2.2": hashlib.sha384,
    "2.16.840.1.101.3.4.2.3": hashlib.sha512,
}


class TimestampError(ValueError):
    """The countersignature is malformed, over other bytes, or not from a trusted TSA."""


@dataclass(frozen=True, slots=True)
class VerifiedCountersignature:
    time: datetime  # genTime
    accuracy: timedelta  # 0 when the token states none

    @property
    def earliest(self) -> datetime:
        return self.time - self.accuracy

    @property
    def latest(self) -> datetime:
        return self.time + self.accuracy


def _short(text: str, limit: int = 200) -> str:
    if "ErrorStack(" in text:
        reasons = [part.split('"')[1] for part in text.split("reason: ")[1:] if '"' in part]
        text = f"{text.split('ErrorStack(')[0].rstrip(': ')}: {', '.join(dict.fromkeys(reasons))}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verify_countersignature(
    token: bytes, signature: bytes, roots: Sequence[x509.Certificate]
) -> VerifiedCountersignature:
    """Verify the DER timestamp `token` over `signature` against the TSA `roots`; raise `TimestampError`."""
    try:
        response = parse_timestamp(token)
    except Failure as exc:
        raise TimestampError(exc.message) from None
    info = response.tst_info
    hash_function = _HASHES.get(info.message_imprint.hash_algorithm.dotted_string)
    if hash_function is None:
        raise TimestampError("the timestamp's imprint hash is not SHA-256, SHA-384 or SHA-512")
    digest: bytes = hash_function(signature).digest()
    if info.message_imprint.message != digest:
        raise TimestampError("the timestamp is over other data than this signature")
    if not roots:
        raise TimestampError("no timestamp authority root is trusted")
    errors: list[str] = []
    for root in roots:
        try:
            VerifierBuilder().add_root_certificate(root).build().verify(response, digest)
        except VerificationError as exc:
            errors.append(f"{root.subject.rfc4514_string()}: {_short(str(exc))}")
            continue
        except Exception as exc:  # hostile certificates inside the token
            raise TimestampError(
                f"the timestamp carries malformed certificates: {type(exc).__name__}"
            ) from None
        accuracy = timedelta()
        raw = info.accuracy
        if raw is not None:
            accuracy = timedelta(
                seconds=raw.seconds or 0, milliseconds=raw.millis or 0, microseconds=raw.micros or 0
            )
        return VerifiedCountersignature(time=info.gen_time, accuracy=accuracy)
    raise TimestampError(f"the timestamp is not signed by a trusted timestamp authority: {'; '.join(errors)}")
