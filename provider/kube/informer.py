"""Informers: the objects of one API collection, kept current by list + watch in a thread.

An `Informer` lists its collection (in pages), then watches it from the list's resourceVersion; a watch
the server ends is resumed from the last resourceVersion seen (bookmarks included), a 410 Gone relists,
and every `resync` seconds the collection is listed again from scratch. API errors back off exponentially
with full jitter (`Backoff`). After the first complete list, and after every change, the whole set of
objects (a new mapping; the objects themselves are never modified) is handed to `deliver` on the event
loop (`loop.call_soon_threadsafe`). More than `max_objects` objects is an error (reported, backed off,
retried), not a reason to grow without bound.

With `max_bytes` / `max_object_bytes` (the Secrets and ConfigMaps of the provider's namespace) the
objects are also bounded in bytes (their slimmed JSON size): an object larger than `max_object_bytes`, or
one that does not fit in what is left of `max_bytes` (taken in key order at a list), is LEFT OUT: its
key maps to a placeholder (its identity and `LEFT_OUT: reason`, no data), so whoever reads it learns why
it is missing instead of "not found", and a warning is logged once per object version. When something
left out for the total may now fit (an object was deleted or shrank) the collection is listed again.

The state machine (`Informer.step`) takes the API through a small protocol (`SyncApi`), so the unit tests
drive it with a fake; `KubeApi` is the real one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from provider.kube.api import KubeApiError

__all__ = ["LEFT_OUT", "Backoff", "Informer", "SyncApi", "left_out", "object_key", "object_size", "slim"]

log = logging.getLogger(__name__)

MAX_OBJECTS = 10_000
PAGE_SIZE = 250
WATCH_TIMEOUT = 300  # seconds the server keeps one watch open (it ends it after about this long)
LEFT_OUT = "countersign.dev/leftOut"  # a placeholder's field (no API object has it): why it is left out


class SyncApi(Protocol):
    """What an informer needs of `KubeApi` (blocking calls, from its thread): GET requests (list pages)
    and watches."""

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...

    def watch(
        self,
        path: str,
        resource_version: str,
        timeout_seconds: int,
        params: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]: ...


@dataclass
class Backoff:
    """Exponential backoff with full jitter: the n-th consecutive failure waits uniformly in
    [0, min(maximum, base * 2**n)]; `reset` after a success."""

    base: float = 0.5
    maximum: float = 30.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        ceiling = min(self.maximum, self.base * (2**self.failures))
        self.failures = min(self.failures + 1, 32)
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.failures = 0


def object_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name`, or `name` for a cluster-scoped object."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise KubeApiError(0, "an object without metadata.name")
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if isinstance(namespace, str) and namespace else metadata["name"]


_METADATA = ("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp")


def _identity(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata Countersign keeps of an object: who it is and which version."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    return {k: metadata[k] for k in _METADATA if k in metadata}


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """What Countersign reads of an object: its identity, `spec`, `status`, and a Secret's or ConfigMap's
    `type`, `data` and `binaryData` (managedFields, annotations and labels are dropped: less memory)."""
    kept: dict[str, Any] = {"metadata": _identity(obj)}
    for key in ("kind", "apiVersion", "spec", "status", "type", "data", "binaryData"):
        if key in obj:
            kept[key] = obj[key]
    return kept


def object_size(obj: Mapping[str, Any]) -> int:
    """What an object costs to hold, in bytes: the length of its (slimmed) compact JSON."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def left_out(obj: Mapping[str, Any]) -> str | None:
    """Why a placeholder's object was left out; None for an object held in full."""
    reason = obj.get(LEFT_OUT)
    return reason if isinstance(reason, str) else None


def _placeholder(obj: Mapping[str, Any], reason: str) -> dict[str, Any]:
    return {"metadata": _identity(obj), LEFT_OUT: reason}


class TooManyObjects(KubeApiError):
    def __init__(self, path: str, limit: int) -> None:
        super().__init__(0, f"{path}: more than {limit} objects; refusing to hold them")


class Informer:
    """The objects of the collection at `path`, delivered to `deliver` (on `loop`) after every change."""

    def __init__(
        self,
        api: SyncApi,
        path: str,
        deliver: Callable[[Mapping[str, dict[str, Any]]], None],
        loop: asyncio.AbstractEventLoop | None,
        *,
        name: str = "",
        resync: float = 600.0,
        params: Mapping[str, str] | None = None,
        max_objects: int = MAX_OBJECTS,
        page_size: int = PAGE_SIZE,
        watch_timeout: int = WATCH_TIMEOUT,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[KubeApiError], None] | None = None,
        on_list: Callable[[str], None] | None = None,
        max_bytes: int | None = None,
        max_object_bytes: int | None = None,
    ) -> None:
        self.api = api
        self.path = path
        self.name = name or path
        self.deliver = deliver
        self.loop = loop
        self.resync = resync
        self.params = dict(params or {})
        self.max_objects = max_objects
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.on_error = on_error
        self.on_list = on_list  # called with the reason of every list: initial, gone, resync, error, budget
        self.max_bytes = max_bytes
        self.max_object_bytes = max_object_bytes
        self.objects: dict[str, dict[str, Any]] = {}
        self.sizes: dict[str, int] = {}  # key -> bytes of the objects held in full (with byte bounds)
        self.bytes = 0  # their sum
        self.resource_version = ""
        self.synced = False  # a complete list was delivered
        self.lists = 0
        self.errors = 0
        self.last_error: KubeApiError | None = None
        self._relist = True
        self._relist_reason = "initial"
        self._next_resync = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the thread -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"informer {self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (a watch under way ends when the API is closed or times out)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        while not self._stop.is_set():
            delay = self.step()
            if delay > 0:
                self._stop.wait(delay)

    # --- the state machine ----------------------------------------------------------------------------

    def step(self) -> float:
        """One list or one watch (until the server ends it); the seconds to wait before the next step."""
        try:
            if self._relist or self.clock() >= self._next_resync:
                self._list("" if self._relist else "resync")
            else:
                self._watch()
        except KubeApiError as e:
            if self._stop.is_set():
                return 0.0
            if e.gone:  # the resourceVersion is too old: list again at once
                log.info("informer %s: %s; listing again", self.name, e.reason)
                self._relist, self._relist_reason = True, "gone"
                return 0.0
            self.errors += 1
            self.last_error = e
            if isinstance(e, TooManyObjects):
                self._relist, self._relist_reason = True, "error"
            delay = self.backoff.next()
            log.warning("informer %s: %s; retrying in %.1fs", self.name, e, delay)
            if self.on_error is not None:
                self.on_error(e)
            return delay
        return 0.0

    def _list(self, reason: str) -> None:
        objects: dict[str, dict[str, Any]] = {}
        sizes: dict[str, int] = {}
        total = 0
        params = {**self.params, "limit": str(self.page_size)}
        resource_version = ""
        while True:
            page = self.api.request("GET", self.path, params)
            items = page.get("items")
            if not isinstance(items, list):
                raise KubeApiError(0, f"{self.path}: a list without items")
            for item in items:
                if isinstance(item, dict):
                    key = object_key(item)
                    total -= sizes.pop(key, 0)  # listed twice: the last one counts
                    objects[key], size = self._admit(key, slim(item), total, self.objects.get(key))
                    if size:
                        sizes[key] = size
                        total += size
            if len(objects) > self.max_objects:
                raise TooManyObjects(self.path, self.max_objects)
            metadata = page.get("metadata") if isinstance(page.get("metadata"), dict) else {}
            assert isinstance(metadata, dict)
            resource_version = str(metadata.get("resourceVersion") or resource_version)
            token = metadata.get("continue")
            if not token:
                break
            params = {**params, "continue": str(token)}
        self.objects, self.sizes, self.bytes = objects, sizes, total
        self.resource_version = resource_version
        if self.on_list is not None:
            self.on_list(reason or self._relist_reason)
        self._relist, self._relist_reason = False, "error"
        self._next_resync = self.clock() + self.resync
        self.lists += 1
        self.synced = True
        self.backoff.reset()
        self._deliver()

    def _watch(self) -> None:
        remaining = max(1, int(self._next_resync - self.clock()))
        timeout = min(self.watch_timeout, remaining)
        events = self.api.watch(self.path, self.resource_version, timeout, self.params or None)
        try:
            for event in events:
                if self._stop.is_set():
                    return
                self._apply(event)
                if self._relist:  # room was made for what was left out: list now, not at the resync
                    break
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # a generator: releases the connection now
        self.backoff.reset()  # the server ended the watch normally

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise KubeApiError(0, f"{self.path}: a watch event without an object")
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        assert isinstance(metadata, dict)
        version = metadata.get("resourceVersion")
        if kind == "BOOKMARK":
            if isinstance(version, str) and version:
                self.resource_version = version
            return
        key = object_key(obj)
        if kind in ("ADDED", "MODIFIED"):
            if key not in self.objects and len(self.objects) >= self.max_objects:
                raise TooManyObjects(self.path, self.max_objects)
            before = self.sizes.get(key, 0)
            held, size = self._admit(key, slim(obj), self.bytes - before, self.objects.get(key))
            if size < before:
                self._budget_freed()
            self.objects = {**self.objects, key: held}
            if size or before:
                self.sizes = {
                    **{k: v for k, v in self.sizes.items() if k != key},
                    **({key: size} if size else {}),
                }
                self.bytes += size - before
        elif kind == "DELETED":
            if key not in self.objects:
                return
            self.objects = {k: v for k, v in self.objects.items() if k != key}
            if key in self.sizes:
                self.bytes -= self.sizes[key]
                self.sizes = {k: v for k, v in self.sizes.items() if k != key}
                self._budget_freed()
        else:
            raise KubeApiError(0, f"{self.path}: unknown watch event type {kind!r}")
        if isinstance(version, str) and version:
            self.resource_version = version
        self._deliver()

    def _admit(
        self, key: str, obj: dict[str, Any], total: int, previous: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], int]:
        """`obj` and its size, or its placeholder and 0 when it is over the byte bounds (`total`: the
        bytes held of the other objects)."""
        if self.max_bytes is None and self.max_object_bytes is None:
            return obj, 0
        size = object_size(obj)
        reason = None
        if self.max_object_bytes is not None and size > self.max_object_bytes:
            reason = f"{size} bytes, more than the {self.max_object_bytes} bytes held of one object"
        elif self.max_bytes is not None and total + size > self.max_bytes:
            reason = f"over the {self.max_bytes} bytes held of this collection"
        if reason is None:
            return obj, size
        placeholder = _placeholder(obj, reason)
        if previous != placeholder:
            version = placeholder["metadata"].get("resourceVersion")
            log.warning("informer %s: %s (resourceVersion %s) left out: %s", self.name, key, version, reason)
        return placeholder, 0

    def _budget_freed(self) -> None:
        """Room was made: list again if something was left out for the collection's total."""
        if self.max_bytes is not None and any(
            (r := left_out(o)) is not None and r.startswith("over the") for o in self.objects.values()
        ):
            self._relist, self._relist_reason = True, "budget"

    def _deliver(self) -> None:
        snapshot = self.objects  # replaced, never changed in place: safe to hand over
        if self.loop is None:
            self.deliver(snapshot)
            return
        try:
            self.loop.call_soon_threadsafe(self.deliver, snapshot)
        except RuntimeError:  # the loop is closed: shutting down
            self._stop.set()
