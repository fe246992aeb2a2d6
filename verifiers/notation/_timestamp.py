"""RFC 3161 countersignatures of Notary Project signatures, checked against `tsa:` trust-store roots.

A thin adapter over `verifiers.rfc3161.parse_timestamp_response` (strict DER, with its one leniency for
mis-ordered certificate SETs; the cosign verifier parses with it too) and rfc3161-client's `Verifier`
(CMS signature, the TSA chain at genTime with the timeStamping purpose, the message imprint). Notation
timestamps the raw signature bytes (the JWS signature, the COSE_Sign1 signature), so those are the
covered bytes. Pure, no I/O.

The verified result carries the TSA's certificate chain (leaf first, the trusted root last), rebuilt from
the token's certificates once rfc3161-client has verified it (which does not return the chain it built):
the signer is the certificate the SignerInfo names, and each certificate's issuer is the one that signed
it, the trusted root preferred. That chain is what notation-go checks for revocation (the caller does:
`verifiers.notation.revocation`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from rfc3161_client import TimeStampResponse, VerificationError, VerifierBuilder

from verifiers.rfc3161 import IMPRINT_HASHES, TimestampFormatError, parse_timestamp_response

__all__ = ["TimestampError", "VerifiedCountersignature", "verify_countersignature"]

MAX_TSA_CHAIN = 10


class TimestampError(ValueError):
    """The countersignature is malformed, over other bytes, or not from a trusted TSA."""


@dataclass(frozen=True, slots=True)
class VerifiedCountersignature:
    time: datetime  # genTime
    accuracy: timedelta  # 0 when the token states none
    chain: tuple[x509.Certificate, ...] = ()  # the TSA's chain: leaf first, the trusted root last

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


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _chain(response: TimeStampResponse, root: x509.Certificate) -> tuple[x509.Certificate, ...]:
    """The TSA chain of a verified `response` up to `root` (leaf first); `TimestampError` when not found."""
    try:
        embedded = [x509.load_der_x509_certificate(der) for der in response.signed_data.certificates]
        signers = list(response.signed_data.signer_infos)
    except ValueError as exc:
        raise TimestampError(f"the timestamp carries malformed certificates: {exc}") from None
    if len(signers) != 1:
        raise TimestampError(f"the timestamp has {len(signers)} signers, not 1")
    signer = signers[0]
    leaf = next(
        (c for c in embedded if c.issuer == signer.issuer and c.serial_number == signer.serial_number), None
    )
    if leaf is None:
        raise TimestampError("the timestamp does not carry the certificate of its signer")
    chain = [leaf]
    while chain[-1] != root:
        if len(chain) >= MAX_TSA_CHAIN:
            raise TimestampError(f"the timestamping chain is longer than {MAX_TSA_CHAIN} certificates")
        current = chain[-1]
        issuer = next(
            (c for c in (root, *embedded) if c not in chain and _issued_by(current, c)),
            None,
        )
        if issuer is None:
            raise TimestampError(
                f"the timestamping chain from {leaf.subject.rfc4514_string()!r} does not reach the trusted "
                f"root {root.subject.rfc4514_string()!r}"
            )
        chain.append(issuer)
    return tuple(chain)


def verify_countersignature(
    token: bytes, signature: bytes, roots: Sequence[x509.Certificate]
) -> VerifiedCountersignature:
    """Verify the DER timestamp `token` over `signature` against the TSA `roots`; raise `TimestampError`.

    The outcome depends on nothing but its arguments (the TSA chain is judged at the token's genTime), so
    successes are memoized (bounded): a signature evaluated twice, before and after its revocation
    outcome is known, pays for the CMS verification once.
    """
    return _verify_countersignature(token, signature, tuple(roots))


@functools.lru_cache(maxsize=256)
def _verify_countersignature(
    token: bytes, signature: bytes, roots: tuple[x509.Certificate, ...]
) -> VerifiedCountersignature:
    try:
        response = parse_timestamp_response(token)
    except TimestampFormatError as exc:
        raise TimestampError(exc.message) from None
    info = response.tst_info
    hash_function = IMPRINT_HASHES.get(info.message_imprint.hash_algorithm.dotted_string)
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
        return VerifiedCountersignature(time=info.gen_time, accuracy=accuracy, chain=_chain(response, root))
    raise TimestampError(f"the timestamp is not signed by a trusted timestamp authority: {'; '.join(errors)}")
