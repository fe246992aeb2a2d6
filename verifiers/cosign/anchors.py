"""Which configured key vouches for a signature, and what to say when none does."""

from __future__ import annotations

from collections.abc import Sequence

from verifiers.cosign.common import Failure
from verifiers.cosign.dsse import Envelope
from verifiers.cosign.keys import verify_signature
from verifiers.cosign.model import Reason, TrustedKey
from verifiers.cosign.rekor import names_signer

__all__ = ["find_key_signature", "untrusted_failure"]


def find_key_signature(
    envelope: Envelope, keys: Sequence[TrustedKey], *, legacy_sha256: bool = False
) -> tuple[TrustedKey, bytes] | None:
    """The first (key, signature) pair of the policy's keys and the envelope's signatures that verifies
    over the envelope's PAE (`legacy_sha256`: see `verifiers.cosign.keys`)."""
    message = envelope.pae()
    for key in keys:
        for signature in envelope.signatures:
            if verify_signature(
                key.key, signature.sig, message, rsa_padding=key.rsa_padding, legacy_sha256=legacy_sha256
            ):
                return key, signature.sig
    return None


def untrusted_failure(keys: Sequence[TrustedKey], bodies: list[bytes], has_certificate: bool) -> Failure:
    """`UNTRUSTED_KEY`, or `SIGNATURE_INVALID` when a log entry names a configured key (tampered content)."""
    for key in keys:
        if any(names_signer(body, key.key) for body in bodies):
            return Failure(
                Reason.SIGNATURE_INVALID,
                f"signature was made with key {key.name} (per its log entry) but does not verify over this "
                "content",
            )
    if keys:
        names = ", ".join(key.name for key in keys)
        return Failure(Reason.UNTRUSTED_KEY, f"no configured key verifies this signature (tried {names})")
    if has_certificate:
        return Failure(Reason.UNTRUSTED_KEY, "keyless signature, but the policy configures no identities")
    return Failure(Reason.UNTRUSTED_KEY, "signature has no certificate and the policy configures no keys")
