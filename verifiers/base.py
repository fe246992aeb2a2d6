"""The verifier interface: what a verifier receives, what it returns, and how it says "I cannot tell".

A verifier is an object with a `name` (the instance name from config), a `type` (the plugin type) and an
async `verify(subject, context) -> Report`. It is built by a factory, `factory(name, options)`, found by
its `type` among the entry points of the group `countersign.verifiers` (built-ins are registered the same
way). A factory validates its options and raises `OptionsError` naming the offending field.

A verifier may also define `bind(self, verifiers: Mapping[str, Verifier]) -> None`, called once after
every verifier is built and before any `verify`, with a read-only map of all verifiers by name — for an
option that names another verifier (the sbom verifier's `attestedBy` names an `AttestationSource`, such as
a cosign verifier). It raises
`OptionsError` for a bad reference, reported at `verifiers.<name>.options.<field>`.

An option that names a file or directory is resolved with `resolve_option_path(value)` in the factory (or
in `bind`): relative paths are relative to the configuration file's directory, like every other path in
the configuration, and `~` is expanded. Read the file there too: `verify` does no file I/O.

A verifier that holds its own connections (the notation verifier's OCSP/CRL client) may define
`async def aclose(self) -> None`; the engine awaits it at shutdown. The two optional hooks are the
runtime-checkable protocols `BindsVerifiers` and `HoldsResources`: the engine calls a hook when the verifier
is an instance of its protocol.

A verifier whose report never depends on the tag the key named (only on the subject's registry,
repository, digest, namespace and what the verification could read with the key's credentials) may say so
with a class or instance attribute `tag_independent = True` (the optional marker `TagIndependent`; read it
with `is_tag_independent`). When every verifier a key's policies name says so, the engine reuses the
verdict of another tag of the same digest instead of running them again. Absent (the default), a verifier
is taken to depend on the tag, as the exec verifier (which hands the tag to its program) and digest-pin
(whose `verifyTag` reads it) do.

Three outcomes, kept apart:

- `Report(passed=True, ...)`: verified.
- `Report(passed=False, ...)`: a definite failure (unsigned, wrong key, no SBOM, ...). Cacheable.
- `raise Undecided(...)`: the verifier could not decide (registry unreachable, rate limited, a responder
  down). The image is then left out of the verdicts Gatekeeper caches, and admission fails closed.
  Transient registry errors raised by the registry client are already `Undecided`.

Example::

    class AlwaysPass:
        type = "always-pass"

        def __init__(self, name: str, options: Mapping[str, object]) -> None:
            self.name = name

        async def verify(self, subject: Subject, context: Context) -> Report:
            return Report.ok("always_pass", f"{subject.reference} accepted without checks")
"""

from __future__ import annotations

import asyncio
import errno
import functools
import math
import os
import re
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from verifiers.cpu import INLINE, CpuRunner
from verifiers.errors import OptionsError, Undecided
from verifiers.reference import ImageReference

__all__ = [
    "MAX_DETAILS_CHARS",
    "MAX_DETAILS_DEPTH",
    "MAX_DETAILS_NODES",
    "MAX_MESSAGE_CHARS",
    "MAX_REASON_CHARS",
    "REASON_CODE",
    "AttestationSource",
    "BindsVerifiers",
    "Context",
    "Descriptor",
    "HoldsResources",
    "InvalidReport",
    "Memo",
    "OptionsError",
    "OutsideOptionBase",
    "RegistryReader",
    "Report",
    "Subject",
    "TagIndependent",
    "Undecided",
    "VerifiedAttestation",
    "Verifier",
    "VerifierFactory",
    "check_report",
    "is_tag_independent",
    "option_paths_relative_to",
    "plain_json",
    "resolve_option_path",
]


_T = TypeVar("_T")

# The directory relative option paths are resolved against while a configuration's verifiers are built;
# None outside of that (then the working directory).
_option_base: ContextVar[tuple[Path, bool] | None] = ContextVar("countersign_option_base", default=None)


class OutsideOptionBase(PermissionError):
    """A confined option path (`option_paths_relative_to(..., confined=True)`) that leaves its directory:
    absolute, `~`, or climbing out with `..`. An `OSError`, so a factory reports it at the option's field as
    it reports a file it cannot read."""


def resolve_option_path(value: str | os.PathLike[str]) -> Path:
    """The absolute path an option naming a file or directory stands for.

    `~` is expanded; an absolute path is returned as is; a relative one is joined to the directory of the
    configuration file whose verifiers are being built (`option_paths_relative_to`), or to the working
    directory when none is (a verifier constructed directly, as in a unit test). Call it from a factory or
    `bind`, not from `verify`. The path is neither normalized nor checked for existence.
    """
    base = _option_base.get()
    if base is not None and base[1]:
        return _confined(base[0], value)
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    return (path if base is None else base[0] / path).absolute()


def _confined(base: Path, value: str | os.PathLike[str]) -> Path:
    raw = os.fspath(value)
    if raw.startswith("~") or os.path.isabs(raw):
        raise OutsideOptionBase(errno.EACCES, f"{raw!r}: only paths relative to the verifier's files")
    normal = os.path.normpath(raw)
    if normal == ".." or normal.startswith("../"):
        raise OutsideOptionBase(errno.EACCES, f"{raw!r} leaves the verifier's files")
    return (base / normal).absolute()


@contextmanager
def option_paths_relative_to(directory: Path, *, confined: bool = False) -> Iterator[None]:
    """Within the block, `resolve_option_path` resolves relative paths against `directory`.

    `confined`: only relative paths that stay inside `directory` are allowed (an absolute path, `~` or a
    `..` that climbs out raises `OutsideOptionBase`): Countersign confines the options of a verifier
    defined as a Kubernetes resource to the files that resource names.

    Countersign wraps the building and binding of a configuration's verifiers in it; nesting restores the
    outer directory on exit.
    """
    token = _option_base.set((directory, confined))
    try:
        yield
    finally:
        _option_base.reset(token)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Subject:
    """The image being verified: how the workload named it and what it resolved to.

    `manifest` holds the raw manifest (or index) bytes, already checked against `digest`.
    """

    reference: ImageReference
    digest: str
    media_type: str
    size: int
    manifest: bytes
    namespace: str | None = None

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=self.size)


@dataclass(frozen=True, slots=True)
class Report:
    """One verifier's result for one image.

    `reason` is a stable machine code (snake_case) that Rego can match; `message` is a sentence for
    people; `details` carries structured facts (signer, format, timestamps) as JSON-compatible values.
    """

    passed: bool
    reason: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, reason: str, message: str, **details: Any) -> Report:
        return cls(True, reason, message, details)

    @classmethod
    def fail(cls, reason: str, message: str, **details: Any) -> Report:
        return cls(False, reason, message, details)


# Bounds on one report (a verifier's details reach Gatekeeper and every cache): generous for real reports.
MAX_REASON_CHARS = 64
MAX_MESSAGE_CHARS = 64 * 1024
MAX_DETAILS_DEPTH = 32
MAX_DETAILS_NODES = 50_000
MAX_DETAILS_CHARS = 1024 * 1024
_MAX_INT = 2**63
REASON_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
"""A reason code: snake_case, lower-case ASCII letters and digits, starting with a letter."""


class InvalidReport(ValueError):
    """What a verifier returned is not a valid `Report` (see `check_report`)."""


def check_report(report: object) -> Report:
    """The report, checked and copied as plain JSON; `InvalidReport` (a `ValueError`) when it is not valid.

    Valid: a `Report` whose `passed` is a bool; whose `reason` is a snake_case code (`REASON_CODE`) of at
    most `MAX_REASON_CHARS` characters (a `str`, so a `StrEnum` member is fine); whose `message` is a
    string of at most `MAX_MESSAGE_CHARS` characters; and whose `details` is a mapping of JSON values
    (`plain_json`: string keys, finite floats, 64-bit integers, UTF-8-encodable strings, bounded depth,
    count and size). The copy shares nothing with the report, so a verifier cannot change it afterwards.
    Countersign checks every report this way; a verifier whose report fails is undecided
    (`verifier_error`), never passed. Plugin authors can call it in their tests.
    """
    if not isinstance(report, Report):
        raise InvalidReport(f"returned {type(report).__name__}, not a Report")
    if not isinstance(report.passed, bool):
        raise InvalidReport(f"passed is {type(report.passed).__name__}, not a bool")
    reason = report.reason
    if not isinstance(reason, str) or not reason or len(reason) > MAX_REASON_CHARS:
        raise InvalidReport(f"reason must be a string of 1 to {MAX_REASON_CHARS} characters")
    if REASON_CODE.fullmatch(reason) is None:
        raise InvalidReport(f"reason {_short(reason)} is not a snake_case code ([a-z][a-z0-9]*, joined by _)")
    if not isinstance(report.message, str) or len(report.message) > MAX_MESSAGE_CHARS:
        raise InvalidReport(f"message must be a string of at most {MAX_MESSAGE_CHARS} characters")
    if not isinstance(report.details, Mapping):
        raise InvalidReport(f"details is {type(report.details).__name__}, not a mapping")
    return Report(
        report.passed,
        plain_json(reason, "reason"),
        plain_json(report.message, "message"),
        plain_json(report.details),
    )


def plain_json(
    value: object,
    path: str = "details",
    *,
    max_depth: int = MAX_DETAILS_DEPTH,
    max_nodes: int = MAX_DETAILS_NODES,
    max_chars: int = MAX_DETAILS_CHARS,
    error: Callable[[str | None, str], Exception] | None = None,
) -> Any:
    """A fresh copy of `value` as plain JSON (dict, list, str, int, float, bool, None), or `InvalidReport`.

    Strict: string keys only, finite floats, 64-bit integers, UTF-8-encodable strings, at most `max_depth`
    levels of containers below `value`, `max_nodes` values (keys count) and `max_chars` characters of
    strings (keys count); by default the bounds of a report's details (MAX_DETAILS_DEPTH, MAX_DETAILS_NODES,
    MAX_DETAILS_CHARS). The copy shares nothing with `value` (subclasses of str, int, float become the
    plain types).

    `path` names `value` in messages (`details.a[2]: ...`). `error(where, message)` makes the exception
    raised for the first problem found: `where` is the path of the offending value, or None when a bound
    on the whole value (`max_nodes`, `max_chars`) is exceeded; by default an `InvalidReport` with the text
    `where: message` (or `message`). The exec verifier uses it to report a configuration's `config` at
    its field path and a plugin's `details` as an invalid response, with their own bounds.
    """
    walk = _Walk(max_depth, max_nodes, max_chars, error or _invalid_report)
    try:
        return walk.copy(value, 0)
    except _Problem as e:
        problem = e  # raised below, outside this handler: the error does not chain to the _Problem
    raise walk.error(path + "".join(reversed(problem.steps)), problem.message)


def _invalid_report(where: str | None, message: str) -> Exception:
    return InvalidReport(message if where is None else f"{where}: {message}")


def _short(text: str, limit: int = 40) -> str:
    """A bounded, UTF-8-safe rendering of untrusted text for a message."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Problem(Exception):
    """A value `plain_json` refuses, on its way up the walk: each container it leaves adds its step to the
    path (`.key`, `[2]`, innermost first), so the path is built only when something fails."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.steps: list[str] = []


class _Walk:
    """One `plain_json` copy: its bounds, what it has used of them, and how it reports a problem.

    A problem at a value raises `_Problem`, which `plain_json` turns into `error(path, message)`; a bound
    on the whole value (nodes, characters) calls `error(None, message)` at once.
    """

    __slots__ = ("chars", "error", "max_chars", "max_depth", "max_nodes", "nodes")

    def __init__(
        self, max_depth: int, max_nodes: int, max_chars: int, error: Callable[[str | None, str], Exception]
    ) -> None:
        self.max_depth, self.max_nodes, self.max_chars = max_depth, max_nodes, max_chars
        self.error = error
        self.nodes = 0
        self.chars = 0

    def copy(self, value: object, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise self.error(None, f"more than {self.max_nodes} values")
        if isinstance(value, str):
            self.chars += len(value)
            if self.chars > self.max_chars:
                raise self.error(None, f"more than {self.max_chars} characters of strings")
            if not str.isascii(value):  # only non-ASCII text can hold a surrogate
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise _Problem("a string holds an unpaired surrogate") from None
            return str.__str__(value)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if not -_MAX_INT <= value < _MAX_INT:
                raise _Problem("integer out of the 64-bit range")
            return int.__int__(value)  # a plain int, whatever a subclass overrides
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _Problem(f"{value} is not a JSON number")
            return float.__float__(value)
        if depth >= self.max_depth:
            raise _Problem(f"nested more than {self.max_depth} levels deep")
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            key: object = None
            try:
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise _Problem(f"a key is {type(key).__name__}, not a string")
                    out[self.copy(key, depth)] = self.copy(item, depth + 1)
            except _Problem as e:
                if isinstance(key, str):  # not the key check itself, which is at this mapping's path
                    e.steps.append(f".{_short(key)}")
                raise
            return out
        if isinstance(value, list | tuple):
            items: list[Any] = []
            try:
                for item in value:
                    items.append(self.copy(item, depth + 1))
            except _Problem as e:
                e.steps.append(f"[{len(items)}]")  # the item that failed: the one after those copied
                raise
            return items
        raise _Problem(f"{type(value).__name__} is not a JSON value")


@runtime_checkable
class RegistryReader(Protocol):
    """The registry access a verifier gets. Every read is cached and checked against its digest.

    Errors: `verifiers.errors.NotFound`, `IntegrityError` and `TooLarge` are definite;
    `verifiers.errors.Unavailable` (a subclass of `Undecided`) is not, and propagates as such.
    """

    async def referrers(self, subject: Subject, artifact_type: str | None = None) -> Sequence[Descriptor]:
        """Manifests whose `subject` is this image, from the referrers API or the tag-schema fallback."""
        ...

    async def manifest(self, reference: ImageReference, digest: str) -> tuple[bytes, str]:
        """The manifest `digest` in the repository of `reference`: (verified bytes, media type)."""
        ...

    async def blob(self, reference: ImageReference, descriptor: Descriptor, max_bytes: int) -> bytes:
        """The blob named by `descriptor`, verified against its digest and size, at most `max_bytes`."""
        ...

    async def resolve(self, reference: ImageReference) -> Descriptor:
        """What the reference's tag (or digest) currently points to."""
        ...


class Memo:
    """Work shared by the verifiers of one image verification: each key's coroutine runs once.

    `await memo.once(key, factory)` runs `factory()` the first time `key` is asked for and gives every
    caller, concurrent or later, its result or its exception. A caller that stops waiting (its deadline,
    a cancellation) does not cancel the work another caller waits for. Work that failed (raised or was
    cancelled) is forgotten once it ends, so a later call runs it again. At most `max_entries` keys are
    kept; beyond that the oldest is forgotten (its waiters still get its outcome).

    Each image verification gets its own `Memo` (the `Context` does): it is never shared across images
    or requests, and it is dropped with the `Context`. A verifier keeps per-image state here, never on
    itself; keys should name the verifier (e.g. `(self, subject.digest)`) so that verifiers do not collide.
    """

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int = 256) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._entries: dict[Hashable, asyncio.Future[Any]] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    async def once(self, key: Hashable, factory: Callable[[], Awaitable[_T]]) -> _T:
        """The outcome of `factory()`, run once for `key` (see the class)."""
        future = self._entries.get(key)
        if future is None:
            while len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]
            future = asyncio.ensure_future(factory())
            self._entries[key] = future
            future.add_done_callback(functools.partial(self._done, key))
        return cast("_T", await asyncio.shield(future))

    def _done(self, key: Hashable, future: asyncio.Future[Any]) -> None:
        # Retrieved even when every caller has left, so a failure is never "never retrieved".
        if future.cancelled() or future.exception() is not None:
            if self._entries.get(key) is future:
                del self._entries[key]


@dataclass(frozen=True, slots=True)
class Context:
    """Per-image-verification context: registry access, the time budget left (`deadline`, in loop time),
    a `memo` for work the verifiers of this one image share (a fresh `Memo` unless one is given) and `cpu`,
    where `run_cpu` runs CPU-heavy work (the calling thread by default; the engine's bounded worker pool
    when it has one)."""

    registry: RegistryReader
    deadline: float
    memo: Memo = field(default_factory=Memo)
    cpu: CpuRunner = field(default=INLINE)

    async def run_cpu(self, fn: Callable[..., _T], /, *args: object) -> _T:
        """`fn(*args)` where the engine runs CPU-heavy work (inline, or its worker pool); its result or
        exception.

        For synchronous work that does no I/O and takes more than about 0.1 ms: a signature's verification,
        a certificate chain's, parsing a large document. `fn` and its arguments must be safe to use from
        another thread (no event-loop objects, nothing another task mutates meanwhile). Waits (without
        blocking the event loop) while the pool is full; a cancelled caller's queued call is dropped, a
        running one finishes in its thread. See `verifiers.cpu` and docs/plugins.md.
        """
        return await self.cpu.run(fn, *args)


class Verifier(Protocol):
    name: str
    type: str

    async def verify(self, subject: Subject, context: Context) -> Report: ...


class VerifierFactory(Protocol):
    def __call__(self, name: str, options: Mapping[str, Any]) -> Verifier: ...


@runtime_checkable
class BindsVerifiers(Protocol):
    """The optional `bind` hook: called once after every verifier is built, before any `verify`, with a
    read-only map of all verifiers by name (for an option naming another verifier). Raises `OptionsError`."""

    def bind(self, verifiers: Mapping[str, Verifier]) -> None: ...


@dataclass(frozen=True, slots=True)
class VerifiedAttestation:
    """An attestation that verified under an `AttestationSource`'s policy, statement subject included.

    `predicate` is the statement's predicate as JSON bytes (compact; `null` when absent), read from the
    verified statement; `anchor` names the key or identity that signed it; `format` says where it was found
    (cosign: `bundle` or `legacy-att`); `manifest_digest` is the referrer or manifest that carried it.
    """

    predicate_type: str
    predicate: bytes
    anchor: str
    format: str
    manifest_digest: str

    def as_details(self) -> dict[str, Any]:
        return {
            "predicateType": self.predicate_type,
            "format": self.format,
            "matched": self.anchor,
            "signature": self.manifest_digest,
        }


@runtime_checkable
class AttestationSource(Protocol):
    """A verifier that yields the attestations of an image that verified under its own policy (cosign's).

    Another verifier that names it in an option (the sbom verifier's `attestedBy`) finds it in `bind` by
    this protocol, never by its class. `verified_attestations` raises `Undecided` when it cannot tell; with
    the same `Context` it may share its work with the source's own `verify` (through `Context.memo`).
    """

    async def verified_attestations(
        self, subject: Subject, context: Context
    ) -> Sequence[VerifiedAttestation]: ...


@runtime_checkable
class HoldsResources(Protocol):
    """The optional `aclose` hook: a verifier that holds connections closes them (awaited at shutdown)."""

    async def aclose(self) -> None: ...


@runtime_checkable
class TagIndependent(Protocol):
    """The optional marker `tag_independent = True`: this verifier's report (passed, reason, message, details)
    depends only on the subject's registry, repository and digest (and its namespace, and what the key's
    credentials and the configuration let it read), never on the tag the key named.

    A promise, not a hint: the engine then serves a verdict made for `repo:v1` to `repo:v2` of the same
    digest without calling `verify`, with only the verdict's `reference` changed. So no message or detail
    may name `subject.reference`'s tag (name `subject.reference.name` and `subject.digest`). Absent, or any
    value but `True`: the verifier runs for every tag (the safe default for plugins).
    """

    tag_independent: bool


def is_tag_independent(verifier: object) -> bool:
    """Whether `verifier` declares the `TagIndependent` marker (exactly `True`; anything else: no)."""
    return isinstance(verifier, TagIndependent) and verifier.tag_independent is True
