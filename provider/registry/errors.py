"""Registry errors, split by what they mean for a verdict.

Definite (the image is decided, usually denied): `NotFound`, `IntegrityError`, `TooLarge`, `InvalidContent`.
Undecided (the key goes to `systemError` and nothing is cached): `Unavailable` and its subclasses.
"""

from __future__ import annotations

from verifiers.base import Undecided
from verifiers.oci.errors import ContentError

__all__ = [
    "AuthenticationFailed",
    "IntegrityError",
    "InvalidContent",
    "NotFound",
    "RateLimited",
    "RegistryError",
    "TooLarge",
    "Unavailable",
]


class RegistryError(Exception):
    """Base of every error the registry client raises."""


class NotFound(RegistryError):
    """The registry answered that the manifest, tag or blob does not exist."""


class IntegrityError(RegistryError):
    """The registry served bytes that do not match the digest or size they were asked for."""


class TooLarge(RegistryError):
    """The content is larger than the configured limit; it was not read past the limit."""


class InvalidContent(RegistryError, ContentError):
    """The content is not what its media type says (not JSON, wrong schema, unknown media type).

    Also a `verifiers.oci.ContentError`, so a verifier that skips malformed referrers (a `ContentError`
    from its own parse) skips those the registry client already refused the same way.
    """

    def __init__(self, message: str) -> None:
        ContentError.__init__(self, "", message)


class Unavailable(RegistryError, Undecided):
    """The registry could not answer now: network error, timeout, 5xx, or a deadline reached."""

    def __init__(self, message: str, reason: str = "registry_unavailable") -> None:
        Undecided.__init__(self, reason, message)


class RateLimited(Unavailable):
    """429 with a Retry-After later than the request's deadline allows."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="registry_rate_limited")


class AuthenticationFailed(Unavailable):
    """Credentials were refused or a token could not be obtained (treated as undecided: often transient)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="registry_auth_failed")
