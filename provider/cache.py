"""In-process caches and request coalescing.

- `TTLCache`: entries expire after a time to live; least recently used evicted past a count.
- `ByteLRU`: content-addressed bytes (manifests, blobs) bounded by total size.
- `SingleFlight`: concurrent callers of the same key share one computation.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ByteLRU", "SingleFlight", "TTLCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        ttl = self.ttl if ttl is None else ttl
        if ttl <= 0 or self.max_entries <= 0:
            self._data.pop(key, None)  # never leave an older value behind
            return
        self._data[key] = (self._clock() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class ByteLRU(Generic[K, V]):
    """Values keyed by content address, at most `max_bytes` in total as measured by `size_of`.

    An item larger than a quarter of the cache is not kept, so one large blob cannot flush everything.
    """

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._size_of = size_of
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        size = self._size_of(value)
        if size > self.max_bytes // 4:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.size -= self._size_of(old)
        self._data[key] = value
        self.size += size
        while self.size > self.max_bytes:
            _, evicted = self._data.popitem(last=False)
            self.size -= self._size_of(evicted)

    def __len__(self) -> int:
        return len(self._data)


class SingleFlight(Generic[K, V]):
    """One in-flight computation per key; later callers await the same task.

    The task is not cancelled when a caller stops waiting (a request's deadline passing): it finishes in
    the background, so its result can fill the caches.
    """

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def task(self, key: K, factory: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        existing = self._tasks.get(key)
        if existing is not None:
            return existing

        async def run() -> V:
            return await factory()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks[key] = task

        def done(t: asyncio.Task[V]) -> None:
            if self._tasks.get(key) is t:
                del self._tasks[key]
            if not t.cancelled():
                t.exception()  # retrieved: an unawaited failure is not "never retrieved"

        task.add_done_callback(done)
        return task

    async def do(self, key: K, factory: Callable[[], Awaitable[V]]) -> V:
        return await asyncio.shield(self.task(key, factory))

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    async def drain(self) -> None:
        """Cancel and await every in-flight task (at shutdown)."""
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
