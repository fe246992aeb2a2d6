"""In-process caches and request coalescing.

- `TTLCache`: entries expire after a time to live; least recently used evicted past a count and, when
  given `max_bytes`, past a total cost.
- `ByteLRU`: content-addressed bytes (manifests, blobs) bounded by total cost.
- `SingleFlight`: concurrent callers of the same key share one computation.

Costs are what an entry really takes in this process, not the length of its payload: `entry_cost` adds the
cache's own slot (an OrderedDict entry and its node), the key (a tuple and its strings, or a bytes digest)
and the value's object headers. tests/unit/test_cache.py checks these figures against tracemalloc.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import provider.trace as trace

__all__ = [
    "ENTRY_OVERHEAD",
    "ByteLRU",
    "KeyedLocks",
    "PackedTTLCache",
    "SingleFlight",
    "TTLCache",
    "bytes_cost",
    "object_cost",
    "slot_cost",
    "ttl_slot_cost",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# One OrderedDict entry: the dict's entry and index slot, the linked-list node and its slot in the node
# array, with the tables' spare room (they are between 1/3 and 2/3 full) amortized: ~110 bytes measured.
ENTRY_OVERHEAD = 128
# A TTLCache value is stored as (expiry, value): a 2-tuple and a float.
_TTL_SLOT = sys.getsizeof((0.0, None)) + sys.getsizeof(0.0)
# malloc's own header and rounding for objects past pymalloc's 512-byte limit.
_MALLOC_OVERHEAD = 16


def bytes_cost(data: bytes | str) -> int:
    """A bytes or str object's real size: its header and payload (`sys.getsizeof`) and malloc's share."""
    size = sys.getsizeof(data)
    return size + (_MALLOC_OVERHEAD if size > 512 else 0)


def object_cost(obj: object) -> int:
    """Bytes, strings and tuples of them (cache keys) as they are held; anything else by `getsizeof`."""
    if isinstance(obj, bytes | str):
        return bytes_cost(obj)
    if isinstance(obj, tuple):
        return sys.getsizeof(obj) + sum(object_cost(item) for item in obj)
    return sys.getsizeof(obj)


def slot_cost(key: object) -> int:
    """What an entry of an LRU cache costs besides its value: the OrderedDict slot and the key."""
    return ENTRY_OVERHEAD + object_cost(key)


def ttl_slot_cost(key: object) -> int:
    """What an entry of a `TTLCache` costs besides its value: `slot_cost` and the (expiry, value) pair."""
    return slot_cost(key) + _TTL_SLOT


class TTLCache(Generic[K, V]):
    """At most `max_entries` entries and, with `size_of`, at most `max_bytes` in total, an entry costing
    `size_of(value)` plus `slot_of(key)` (`ttl_slot_cost` counts what the entry really takes)."""

    def __init__(
        self,
        ttl: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bytes: int | None = None,
        size_of: Callable[[V], int] | None = None,
        slot_of: Callable[[K], int] | None = None,
    ) -> None:
        if (max_bytes is None) != (size_of is None):
            raise ValueError("max_bytes and size_of go together")
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = 0  # total entry cost (0 without size_of)
        self._size_of = size_of
        self._slot_of = slot_of
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def _cost(self, key: K, value: V) -> int:
        if self._size_of is None:
            return 0
        return self._size_of(value) + (0 if self._slot_of is None else self._slot_of(key))

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self._clock():
            self._remove(key)
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        ttl = self.ttl if ttl is None else ttl
        cost = self._cost(key, value)
        too_big = self.max_bytes is not None and cost > self.max_bytes // 4
        if ttl <= 0 or self.max_entries <= 0 or too_big:
            self._remove(key)  # never leave an older value behind
            return
        self._remove(key)
        self._data[key] = (self._clock() + ttl, value)
        self.size += cost
        while len(self._data) > self.max_entries or (
            self.max_bytes is not None and self.size > self.max_bytes
        ):
            evicted, (_, old) = self._data.popitem(last=False)
            self.size -= self._cost(evicted, old)

    def _remove(self, key: K) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self.size -= self._cost(key, item[1])

    def clear(self) -> None:
        self._data.clear()
        self.size = 0

    def __len__(self) -> int:
        return len(self._data)


class PackedTTLCache(Generic[K]):
    """A `TTLCache` of bytes values that keeps each expiry inside its value (8 bytes, not a tuple and a
    float: 72 bytes less per entry), bounded by count and by real cost (`slot_cost` + the stored bytes)."""

    def __init__(
        self, ttl: float, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = 0
        self._clock = clock
        self._data: OrderedDict[K, bytes] = OrderedDict()

    @staticmethod
    def _cost(key: K, stored: bytes) -> int:
        return slot_cost(key) + bytes_cost(stored)

    def get(self, key: K) -> bytes | None:
        found = self.get_expiring(key)
        return None if found is None else found[0]

    def get_expiring(self, key: K) -> tuple[bytes, float] | None:
        """As `get`, with the value's expiry (on this cache's clock): to copy it under another key no
        later than it expires (`put(..., expires=)`)."""
        stored = self._data.get(key)
        if stored is None:
            return None
        (expires,) = _EXPIRY.unpack_from(stored)
        if expires <= self._clock():
            self._remove(key)
            return None
        self._data.move_to_end(key)
        return stored[_EXPIRY.size :], expires

    def put(self, key: K, value: bytes, *, expires: float | None = None) -> None:
        """Keep `value` for `ttl` seconds, or until `expires` (this cache's clock) when that is sooner."""
        self._remove(key)  # never leave an older value behind
        until = self._clock() + self.ttl
        stored = _EXPIRY.pack(until if expires is None else min(until, expires)) + value
        cost = self._cost(key, stored)
        if self.ttl <= 0 or self.max_entries <= 0 or cost > self.max_bytes // 4:
            return
        self._data[key] = stored
        self.size += cost
        while len(self._data) > self.max_entries or self.size > self.max_bytes:
            evicted, old = self._data.popitem(last=False)
            self.size -= self._cost(evicted, old)

    def _remove(self, key: K) -> None:
        stored = self._data.pop(key, None)
        if stored is not None:
            self.size -= self._cost(key, stored)

    def __len__(self) -> int:
        return len(self._data)


_EXPIRY = struct.Struct("<d")


class ByteLRU(Generic[K, V]):
    """Values keyed by content address, at most `max_bytes` in total, an entry costing `size_of(value)`
    plus `slot_of(key)` (`slot_cost` counts what the entry really takes).

    An item costing more than a quarter of the cache is not kept, so one large blob cannot flush everything.
    """

    def __init__(
        self, max_bytes: int, size_of: Callable[[V], int], slot_of: Callable[[K], int] | None = None
    ) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._size_of = size_of
        self._slot_of = slot_of
        self._data: OrderedDict[K, V] = OrderedDict()

    def _cost(self, key: K, value: V) -> int:
        return self._size_of(value) + (0 if self._slot_of is None else self._slot_of(key))

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        size = self._cost(key, value)
        if size > self.max_bytes // 4:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.size -= self._cost(key, old)
        self._data[key] = value
        self.size += size
        while self.size > self.max_bytes:
            evicted, value = self._data.popitem(last=False)
            self.size -= self._cost(evicted, value)

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
        existing = self._tasks.get(key)
        if existing is not None:  # another task leads this read: waiting for it is a `flight` wait
            with trace.wait("flight"):
                return await asyncio.shield(existing)
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


class KeyedLocks(Generic[K]):
    """One lock per key, kept only while someone holds it or waits for it (keys come from the network)."""

    def __init__(self, wait: str = "lock") -> None:
        self._locks: dict[K, tuple[asyncio.Lock, int]] = {}
        self._wait = wait  # what a traced wait for one of these locks is called (provider/trace.py)

    @asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with trace.acquiring(lock, self._wait):
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
