"""Informers: the objects of one API collection, kept current by list + watch in a thread.

An `Informer` lists its collection (in pages), then watches it from the list's resourceVersion; a watch
the server ends is resumed from the last resourceVersion seen (bookmarks included), a 410 Gone relists,
and every `resync` seconds the collection is listed again from scratch. API errors back off exponentially
with full jitter (`Backoff`). After the first complete list, and after every change, the whole set of
objects (a new mapping; the objects themselves are never modified) is handed to `deliver` on the event
loop (`loop.call_soon_threadsafe`). More than `max_objects` objects is an error (reported, backed off,
retried), not a reason to grow without bound.

The state machine (`Informer.step`) takes the API through a small protocol (`SyncApi`), so the unit tests
drive it with a fake; `KubeApi` is the real one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from provider.kube.api import KubeApiError

__all__ = ["Backoff", "Informer", "SyncApi", "object_key", "slim"]

log = logging.getLogger(__name__)

MAX_OBJECTS = 10_000
PAGE_SIZE = 250
WATCH_TIMEOUT = 300  # seconds the server keeps one watch open (it ends it after about this long)


class SyncApi(Protocol):
    """What an informer needs of `KubeApi` (blocking calls, from its thread)."""

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str | None = None,
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


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """What Countersign reads of an object: its identity, `spec`, `status`, and a Secret's or ConfigMap's
    `type`, `data` and `binaryData` (managedFields, annotations and labels are dropped: less memory)."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    kept: dict[str, Any] = {"metadata": {k: metadata[k] for k in _METADATA if k in metadata}}
    for key in ("kind", "apiVersion", "spec", "status", "type", "data", "binaryData"):
        if key in obj:
            kept[key] = obj[key]
    return kept


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
        self.objects: dict[str, dict[str, Any]] = {}
        self.resource_version = ""
        self.synced = False  # a complete list was delivered
        self.lists = 0
        self.errors = 0
        self.last_error: KubeApiError | None = None
        self._relist = True
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
                self._list()
            else:
                self._watch()
        except KubeApiError as e:
            if self._stop.is_set():
                return 0.0
            if e.gone:  # the resourceVersion is too old: list again at once
                log.info("informer %s: %s; listing again", self.name, e.reason)
                self._relist = True
                return 0.0
            self.errors += 1
            self.last_error = e
            if isinstance(e, TooManyObjects):
                self._relist = True
            delay = self.backoff.next()
            log.warning("informer %s: %s; retrying in %.1fs", self.name, e, delay)
            if self.on_error is not None:
                self.on_error(e)
            return delay
        return 0.0

    def _list(self) -> None:
        objects: dict[str, dict[str, Any]] = {}
        params = {**self.params, "limit": str(self.page_size)}
        resource_version = ""
        while True:
            page = self.api.request("GET", self.path, params)
            items = page.get("items")
            if not isinstance(items, list):
                raise KubeApiError(0, f"{self.path}: a list without items")
            for item in items:
                if isinstance(item, dict):
                    objects[object_key(item)] = slim(item)
            if len(objects) > self.max_objects:
                raise TooManyObjects(self.path, self.max_objects)
            metadata = page.get("metadata") if isinstance(page.get("metadata"), dict) else {}
            assert isinstance(metadata, dict)
            resource_version = str(metadata.get("resourceVersion") or resource_version)
            token = metadata.get("continue")
            if not token:
                break
            params = {**params, "continue": str(token)}
        self.objects = objects
        self.resource_version = resource_version
        self._relist = False
        self._next_resync = self.clock() + self.resync
        self.lists += 1
        self.synced = True
        self.backoff.reset()
        self._deliver()

    def _watch(self) -> None:
        remaining = max(1, int(self._next_resync - self.clock()))
        timeout = min(self.watch_timeout, remaining)
        for event in self.api.watch(self.path, self.resource_version, timeout, self.params or None):
            if self._stop.is_set():
                return
            self._apply(event)
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
            self.objects = {**self.objects, key: slim(obj)}
        elif kind == "DELETED":
            if key not in self.objects:
                return
            self.objects = {k: v for k, v in self.objects.items() if k != key}
        else:
            raise KubeApiError(0, f"{self.path}: unknown watch event type {kind!r}")
        if isinstance(version, str) and version:
            self.resource_version = version
        self._deliver()

    def _deliver(self) -> None:
        snapshot = self.objects  # replaced, never changed in place: safe to hand over
        if self.loop is None:
            self.deliver(snapshot)
            return
        try:
            self.loop.call_soon_threadsafe(self.deliver, snapshot)
        except RuntimeError:  # the loop is closed: shutting down
            self._stop.set()
