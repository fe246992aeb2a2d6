"""Tracing where a batch's time goes: spans (an image, a verifier, a registry read, one HTTP exchange) and
the waits inside them (a connection from aiohttp's pool, a token lock, the engine's concurrency bound, the
memory budget, another task's single-flight read), with their parents.

Off by default and then close to free: the current span lives in a context variable (`_CURRENT`), and with
no recorder active every hook is one `ContextVar.get()` returning a shared no-op (no object is allocated per
event; tests/unit/test_trace.py checks it). On, a `Recorder` keeps at most `max_spans` spans (the rest are
counted as dropped) and exports them as JSON (`Recorder.export`); bench/tracing.py computes the critical path
and the waits by kind from that export.

Context variables are copied into every task a traced task creates, so the spans of an image's verifiers,
and of the reads they start, are its children wherever they run. A single-flight read started by one image
and joined by another appears once, under the image that started it; the joiner records a `flight` wait.

Kinds of span: batch, image, verifier, registry (one logical read: manifest, blob, referrers), http (one
exchange with a registry or token service), read (a response body), token (obtaining a token), and wait,
whose name is what was waited for (see `WAIT_KINDS`).
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from types import SimpleNamespace, TracebackType
from typing import Any

__all__ = [
    "WAIT_KINDS",
    "Recorder",
    "Span",
    "acquiring",
    "active",
    "aiohttp_trace_config",
    "span",
    "wait",
]

# What a wait span's name may be: aiohttp's pool and new connections (TCP and TLS), DNS, a token lock, the
# engine's concurrency bound (`_slots`), the memory budget, a single-flight read another task leads.
WAIT_KINDS = ("pool", "connect", "dns", "token", "slots", "budget", "flight")

DEFAULT_MAX_SPANS = 200_000

_clock = time.perf_counter_ns


class Span:
    """One span: times are `time.perf_counter_ns()`; `end` is 0 while it is open."""

    __slots__ = ("detail", "end", "id", "kind", "name", "parent", "recorder", "start", "status")

    def __init__(
        self, recorder: Recorder, parent: int, kind: str, name: str, detail: object, start: int
    ) -> None:
        self.recorder = recorder
        self.id = 0
        self.parent = parent
        self.kind = kind
        self.name = name
        self.detail = detail  # rendered with str() only when exported: nothing is formatted per event
        self.start = start
        self.end = 0
        self.status: object = None

    def as_dict(self, origin: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent,
            "kind": self.kind,
            "name": self.name,
            "detail": "" if self.detail is None else str(self.detail),
            "start_us": (self.start - origin) / 1000,
            "end_us": (self.end - origin) / 1000 if self.end else None,
            **({"status": str(self.status)} if self.status is not None else {}),
        }


_CURRENT: contextvars.ContextVar[Span | None] = contextvars.ContextVar("countersign_trace", default=None)


class Recorder:
    """Collects the spans of everything run while `activate()` is in effect (in this context and the tasks
    it creates); at most `max_spans`, the rest counted in `dropped`."""

    def __init__(self, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        if max_spans < 1:
            raise ValueError("max_spans must be at least 1")
        self.max_spans = max_spans
        self.spans: list[Span] = []
        self.dropped = 0
        self.origin = _clock()
        self.root = Span(self, 0, "trace", "root", None, self.origin)
        self._add(self.root)

    def _add(self, span: Span) -> bool:
        if len(self.spans) >= self.max_spans:
            self.dropped += 1
            return False
        span.id = len(self.spans) + 1
        self.spans.append(span)
        return True

    @contextmanager
    def activate(self) -> Iterator[Recorder]:
        """Record what runs in this context (and in tasks created from it) until the block ends."""
        token = _CURRENT.set(self.root)
        try:
            yield self
        finally:
            _CURRENT.reset(token)
            self.root.end = _clock()

    def add_wait(self, parent: Span, name: str, detail: object, start: int, end: int) -> None:
        """A wait measured elsewhere (aiohttp's hooks), under `parent`."""
        child = Span(self, parent.id, "wait", name, detail, start)
        child.end = end
        self._add(child)

    def export(self) -> dict[str, Any]:
        """The spans as JSON-ready data: times in microseconds since the recorder was made."""
        end = self.root.end or _clock()
        spans = [s.as_dict(self.origin) for s in self.spans]
        spans[0]["end_us"] = (end - self.origin) / 1000
        return {"format": "countersign-trace/1", "dropped": self.dropped, "spans": spans}


class _Noop:
    """The shared do-nothing context manager of every hook when no recorder is active."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


_NOOP = _Noop()


class _Open:
    """An open span: the current one for what runs inside it (unless it is a wait)."""

    __slots__ = ("_current", "_span", "_token")

    def __init__(self, span: Span, current: bool) -> None:
        self._span = span
        self._current = current
        self._token: contextvars.Token[Span | None] | None = None

    def __enter__(self) -> Span:
        if self._current:
            self._token = _CURRENT.set(self._span)
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._span.end = _clock()
        if kind is not None and self._span.status is None:
            self._span.status = kind.__name__
        if self._token is not None:
            _CURRENT.reset(self._token)


def active() -> bool:
    """Whether a recorder records what runs in this context."""
    return _CURRENT.get() is not None


def span(kind: str, name: str, detail: object = None) -> Any:
    """`with span(kind, name, detail) as s:` records a span, the parent of what runs inside it; `s` is the
    `Span` (set `s.status`), or None when no recorder is active. Pass `detail` unformatted."""
    return _open(kind, name, detail, True)


def wait(name: str, detail: object = None) -> Any:
    """`with wait(name):` around an await that only waits (`name` one of `WAIT_KINDS`)."""
    return _open("wait", name, detail, False)


def _open(kind: str, name: str, detail: object, current: bool) -> Any:
    """A child of the current span (the current one inside it when `current`); the shared no-op when no
    recorder is active or it is full."""
    parent = _CURRENT.get()
    if parent is None:
        return _NOOP
    recorder = parent.recorder
    child = Span(recorder, parent.id, kind, name, detail, _clock())
    if not recorder._add(child):
        return _NOOP
    return _Open(child, current)


class _TimedAcquire:
    __slots__ = ("_lock", "_name")

    def __init__(self, lock: AbstractAsyncContextManager[Any], name: str) -> None:
        self._lock = lock
        self._name = name

    async def __aenter__(self) -> None:
        with wait(self._name):
            await self._lock.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._lock.__aexit__(kind, exc, tb)


def acquiring(lock: Any, name: str) -> Any:
    """`async with acquiring(semaphore, "slots"):`: the semaphore itself when no recorder is active, else
    the same with the time to acquire it recorded as a wait."""
    if _CURRENT.get() is None:
        return lock
    return _TimedAcquire(lock, name)


# --- aiohttp's connection pool ---------------------------------------------------------------------------


# aiohttp calls a hook as `hook(session, trace_config_ctx, params)`; `name` is bound with functools.partial.
async def _mark(name: str, _session: object, ctx: SimpleNamespace, _params: object) -> None:
    setattr(ctx, name, _clock())


async def _waited(name: str, _session: object, ctx: SimpleNamespace, _params: object) -> None:
    parent = _CURRENT.get()
    started = getattr(ctx, name, None)
    if parent is not None and started is not None:
        parent.recorder.add_wait(parent, name, None, started, _clock())


def aiohttp_trace_config() -> Any:
    """An `aiohttp.TraceConfig` recording, under the current span, the waits for a connection from the pool
    (`pool`), for a new connection (`connect`: TCP and TLS) and for DNS (`dns`). aiohttp runs these hooks on
    every request of a session given it, so the registry client installs it only when it is created while a
    recorder is active."""
    import aiohttp

    config = aiohttp.TraceConfig()

    for name, started, ended in (
        ("pool", config.on_connection_queued_start, config.on_connection_queued_end),
        ("connect", config.on_connection_create_start, config.on_connection_create_end),
        ("dns", config.on_dns_resolvehost_start, config.on_dns_resolvehost_end),
    ):
        started.append(functools.partial(_mark, name))
        ended.append(functools.partial(_waited, name))
    return config
