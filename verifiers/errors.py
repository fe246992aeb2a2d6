"""The errors verifiers and the registry client share, in one leaf module (it imports nothing of Countersign).

- `Undecided`: a verifier could not reach a decision for a reason that may pass; the image is undecided.
- `ContentError`: registry content that does not fit the OCI model (`verifiers.oci`).
- The registry errors, split by what they mean for a verdict. Definite (the image is decided, usually
  denied): `NotFound`, `IntegrityError`, `TooLarge`, `InvalidContent`. Undecided (the key goes to
  `systemError` and nothing is cached): `Unavailable` and its subclasses.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "ContentError",
    "IntegrityError",
    "InvalidContent",
    "NotFound",
    "RateLimited",
    "RegistryError",
    "TooLarge",
    "Unavailable",
    "Undecided",
]


class Undecided(Exception):
    """The verifier could not reach a decision for a reason that may pass (network, rate limit, deadline)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ContentError(ValueError):
    """Registry content that does not fit the model: not JSON, too deep, or the wrong shape.

    `path` names the offending field from the document's top level (`layers[2].digest`,
    `manifests[0].annotations`), or is "" when the problem is the document as a whole (encoding, syntax,
    nesting depth, size). `message` says what is wrong, with untrusted values shown short and ASCII-only.
    A `ValueError`, so code that already treats malformed input as `ValueError` keeps working.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


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
