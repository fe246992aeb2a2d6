"""The errors verifiers and the registry client share, in one leaf module (it imports nothing of Countersign).

- `FieldError`: the base of every "this field is wrong" error (`path`, `message`, and `errors`, all of them):
  `OptionsError`, `PluginError`, the configuration's `ConfigError`, `ContentError`, the SBOM and notation
  trust-policy/trust-store errors.
- `Undecided`: a verifier could not reach a decision for a reason that may pass; the image is undecided.
- `ContentError`: registry content that does not fit the OCI model (`verifiers.oci`).
- The registry errors, split by what they mean for a verdict. Definite (the image is decided, usually
  denied): `NotFound`, `IntegrityError`, `TooLarge`, `InvalidContent`. Undecided (the key goes to
  `systemError` and nothing is cached): `Unavailable` and its subclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Self

__all__ = [
    "AuthenticationFailed",
    "ContentError",
    "FieldError",
    "IntegrityError",
    "InvalidContent",
    "NotFound",
    "OptionsError",
    "RateLimited",
    "RegistryError",
    "TooLarge",
    "Unavailable",
    "Undecided",
    "join_path",
]


class FieldError(ValueError):
    """Invalid input, each problem named by the path of its field: `FieldError(path, message)`.

    `errors` lists every problem found, `(path, message)` each, in the order found; `path` and `message` are
    the first one's. A path is in the configuration's notation (`policies[1].allOf[0]`,
    `registries['reg.example.com'].minTLS`, `verifiers.sbom.options.maxAge`), "" for the input as a whole.
    `str()` is `path: message`, one line per problem, the first one first. Subclasses keep
    their own names, so callers catch the kind of input they care about.
    """

    def __init__(self, path: str, message: str, *, errors: Sequence[tuple[str, str]] = ()) -> None:
        found = list(errors) or [(path, message)]
        super().__init__(self._render(found))
        self.path, self.message = found[0]
        self.errors: list[tuple[str, str]] = found

    @classmethod
    def of(cls, errors: Iterable[tuple[str, str]]) -> Self:
        """An error carrying every `(path, message)` of `errors` (at least one)."""
        found = list(errors)
        if not found:
            raise ValueError("FieldError.of needs at least one error")
        return cls(*found[0], errors=found)

    @classmethod
    def within(cls, prefix: str, error: FieldError) -> Self:
        """`error`'s problems with their paths under `prefix` (`options` + `maxAge` is `options.maxAge`)."""
        return cls.of((join_path(prefix, path), message) for path, message in error.errors)

    @classmethod
    def _line(cls, path: str, message: str) -> str:
        return f"{path}: {message}" if path else message

    @classmethod
    def _render(cls, errors: Sequence[tuple[str, str]]) -> str:
        return "\n".join(cls._line(path, message) for path, message in errors)


def join_path(prefix: str, path: str) -> str:
    """`prefix` and a path relative to it: `a` + `b` is `a.b`, `a` + `[0]` is `a[0]`, either may be ""."""
    if not prefix or not path:
        return prefix or path
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


class OptionsError(FieldError):
    """A verifier's options are invalid. `path` names the field, relative to the verifier's `options`
    (`verifiers.options.parse_options` reports every problem at once, in `errors`)."""


class Undecided(Exception):
    """The verifier could not reach a decision for a reason that may pass (network, rate limit, deadline)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ContentError(FieldError):
    """Registry content that does not fit the model: not JSON, too deep, or the wrong shape.

    `path` names the offending field from the document's top level (`layers[2].digest`,
    `manifests[0].annotations`), or is "" when the problem is the document as a whole (encoding, syntax,
    nesting depth, size). `message` says what is wrong, with untrusted values shown short and ASCII-only.
    A `FieldError`, so a `ValueError`: code that treats malformed input as `ValueError` keeps working.
    """


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
