"""In-process caches (TTL + LRU, size-bounded LRU) and request coalescing (SingleFlight)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider.cache import (
    ByteLRU,
    KeyedLocks,
    PackedTTLCache,
    SingleFlight,
    TTLCache,
    bytes_cost,
    slot_cost,
    ttl_slot_cost,
)
from provider.registry.cached import _size as content_size
from provider.registry.content import Manifest
from tests.support.synthetic_registry import OCI_MANIFEST, small_manifest


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- TTLCache ---------------------------------------------------------------------------------------


def test_ttl_expiry() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(ttl=10, max_entries=100, clock=clock)
    cache.put("a", 1)
    clock.now += 9.999
    assert cache.get("a") == 1
    clock.now += 0.001  # exactly at the expiry: gone
    assert cache.get("a") is None
    assert len(cache) == 0  # an expired entry is dropped when seen


def test_per_entry_ttl() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(ttl=10, max_entries=100, clock=clock)
    cache.put("short", 1, ttl=1)
    cache.put("long", 2, ttl=100)
    cache.put("default", 3)
    clock.now += 5
    assert (cache.get("short"), cache.get("default"), cache.get("long")) == (None, 3, 2)
    clock.now += 10
    assert (cache.get("default"), cache.get("long")) == (None, 2)


def test_put_again_renews_the_expiry_and_the_value() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(ttl=10, max_entries=100, clock=clock)
    cache.put("a", 1)
    clock.now += 8
    cache.put("a", 2)
    clock.now += 8
    assert cache.get("a") == 2
    assert len(cache) == 1


def test_lru_eviction_past_max_entries() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=60, max_entries=3, clock=Clock())
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert cache.get("a") == 0  # "a" becomes the most recently used; "b" is now the oldest
    cache.put("d", 3)
    assert len(cache) == 3
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c"), cache.get("d")) == (0, 2, 3)
    cache.put("c", 20)  # a put also counts as a use: "a" is now the oldest
    cache.put("e", 4)
    assert cache.get("a") is None
    assert (cache.get("c"), cache.get("d"), cache.get("e")) == (20, 3, 4)


@pytest.mark.parametrize(
    ("ttl", "max_entries", "put_ttl"),
    [(0, 10, None), (-1, 10, None), (10, 0, None), (10, 10, 0), (10, 10, -5)],
)
def test_disabled(ttl: float, max_entries: int, put_ttl: float | None) -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=ttl, max_entries=max_entries, clock=Clock())
    cache.put("a", 1, ttl=put_ttl)
    assert cache.get("a") is None
    assert len(cache) == 0


def test_clear() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=10, max_entries=10, clock=Clock())
    cache.put("a", 1)
    cache.put("b", 2)
    cache.clear()
    assert len(cache) == 0
    assert cache.get("a") is None


def test_a_falsy_value_is_a_hit() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=10, max_entries=10, clock=Clock())
    cache.put("zero", 0)
    assert cache.get("zero") == 0


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["put", "get", "tick"]), st.integers(0, 6), st.floats(0, 20)),
        max_size=60,
    ),
    st.integers(1, 4),
)
def test_ttl_cache_against_a_model(ops: list[tuple[str, int, float]], max_entries: int) -> None:
    clock = Clock()
    cache: TTLCache[int, int] = TTLCache(ttl=10, max_entries=max_entries, clock=clock)
    model: dict[int, tuple[float, int]] = {}  # insertion order = recency order
    for i, (op, key, amount) in enumerate(ops):
        if op == "put":
            model.pop(key, None)
            model[key] = (clock.now + 10, i)
            while len(model) > max_entries:
                del model[next(iter(model))]
            cache.put(key, i)
        elif op == "get":
            entry = model.pop(key, None)
            expected = None
            if entry is not None and entry[0] > clock.now:
                model[key] = entry
                expected = entry[1]
            assert cache.get(key) == expected
        else:
            clock.now += amount
        assert len(cache) == len(model)


# --- ByteLRU ----------------------------------------------------------------------------------------


def lru(max_bytes: int = 100) -> ByteLRU[str, bytes]:
    return ByteLRU(max_bytes, len)


def test_size_accounting() -> None:
    cache = lru()
    cache.put("a", b"x" * 10)
    cache.put("b", b"x" * 20)
    assert (cache.size, len(cache)) == (30, 2)
    assert cache.get("a") == b"x" * 10
    assert cache.get("missing") is None


def test_eviction_is_least_recently_used_first() -> None:
    cache = lru(100)
    for key in "abcd":
        cache.put(key, key.encode() * 25)  # exactly a quarter: kept
    assert (cache.size, len(cache)) == (100, 4)
    assert cache.get("a") is not None  # "b" is now the oldest
    cache.put("e", b"e" * 25)
    assert cache.get("b") is None
    assert [k for k in "acde" if cache.get(k) is not None] == list("acde")
    cache.put("f", b"f" * 10)  # 110 > 100: the oldest ("a", after the reads above) goes
    assert cache.get("a") is None
    assert cache.size == 85
    assert len(cache) == 4


def test_an_item_over_a_quarter_is_not_stored() -> None:
    cache = lru(100)
    cache.put("small", b"s" * 10)
    cache.put("big", b"b" * 26)
    assert cache.get("big") is None
    assert (cache.size, len(cache)) == (10, 1)
    assert cache.get("small") == b"s" * 10  # nothing was flushed for it


def test_replacing_a_key_keeps_the_size_right() -> None:
    cache = lru(100)
    cache.put("a", b"x" * 10)
    cache.put("a", b"y" * 20)
    assert (cache.size, len(cache)) == (20, 1)
    assert cache.get("a") == b"y" * 20
    cache.put("a", b"z" * 5)
    assert (cache.size, len(cache)) == (5, 1)


def test_an_empty_value_is_stored() -> None:
    cache = lru(100)
    cache.put("empty", b"")
    assert cache.get("empty") == b""
    assert (cache.size, len(cache)) == (0, 1)


@settings(deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 9), st.integers(0, 40)), max_size=80),
    st.integers(4, 200),
)
def test_byte_lru_size_is_the_sum_of_what_it_holds(ops: list[tuple[bool, int, int]], max_bytes: int) -> None:
    cache: ByteLRU[int, bytes] = ByteLRU(max_bytes, len)
    for is_put, key, size in ops:
        if is_put:
            cache.put(key, bytes(size))
            if size <= max_bytes // 4:
                assert cache.get(key) == bytes(size)  # just put: never evicted by its own put
        else:
            cache.get(key)
        held = [v for v in (cache.get(k) for k in range(10)) if v is not None]
        assert cache.size == sum(len(v) for v in held)
        assert len(cache) == len(held)
        assert cache.size <= max_bytes


# --- SingleFlight -----------------------------------------------------------------------------------


class Work:
    """A factory whose runs are counted and which finishes when told to."""

    def __init__(self, result: str = "done", error: Exception | None = None) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = 0
        self.result = result
        self.error = error

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return f"{self.result}-{self.calls}"


async def test_concurrent_callers_share_one_run() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    waiters = [asyncio.create_task(flight.do("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    assert len(flight) == 1
    work.release.set()
    assert await asyncio.gather(*waiters) == ["done-1"] * 5
    assert work.calls == 1
    assert len(flight) == 0


async def test_task_returns_the_in_flight_task() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work, other = Work(), Work("other")
    first = flight.task("k", work)
    assert flight.task("k", other) is first  # the second factory is not used
    second = flight.task("j", other)
    assert second is not first
    work.release.set()
    other.release.set()
    assert await first == "done-1"
    assert await second == "other-1"
    assert other.calls == 1
    await asyncio.sleep(0)
    assert len(flight) == 0


async def test_different_keys_run_separately() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    work.release.set()
    assert list(await asyncio.gather(flight.do("a", work), flight.do("b", work))) == ["done-1", "done-2"]
    assert work.calls == 2


async def test_an_exception_reaches_every_waiter_and_the_next_call_runs_again() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work(error=RuntimeError("registry exploded"))
    waiters = [asyncio.create_task(flight.do("k", work)) for _ in range(3)]
    await asyncio.sleep(0)
    work.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and str(r) == "registry exploded" for r in results)
    assert work.calls == 1
    assert len(flight) == 0
    work.error = None
    assert await flight.do("k", work) == "done-2"
    assert work.calls == 2


async def test_an_unawaited_failure_is_not_reported_as_never_retrieved() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work(error=RuntimeError("nobody listens"))
    work.release.set()
    task = flight.task("k", work)
    await asyncio.wait({task})
    assert isinstance(task.exception(), RuntimeError)
    # filterwarnings=error plus the loop's exception handler would turn a "never retrieved" into a failure


async def test_a_cancelled_caller_does_not_cancel_the_shared_run() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    impatient = asyncio.create_task(flight.do("k", work))
    patient = asyncio.create_task(flight.do("k", work))
    await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    shared = flight.task("k", Work("unused"))
    assert not shared.done()
    work.release.set()
    assert await patient == "done-1"
    assert shared.result() == "done-1"
    assert work.cancelled == 0
    await asyncio.sleep(0)
    assert len(flight) == 0  # removed when done: the next call is a fresh run
    assert await flight.do("k", work) == "done-2"
    assert work.calls == 2


async def test_a_run_whose_only_caller_timed_out_finishes_in_the_background() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    work = Work()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await flight.do("k", work)
    assert len(flight) == 1
    shared = flight.task("k", Work("unused"))
    work.release.set()
    assert await shared == "done-1"
    assert work.cancelled == 0


async def test_drain_cancels_in_flight_runs() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    works = [Work(), Work()]
    waiter = asyncio.create_task(flight.do("a", works[0]))
    background = flight.task("b", works[1])
    async with asyncio.timeout(5):
        await asyncio.gather(*(w.started.wait() for w in works))
    assert len(flight) == 2
    await flight.drain()
    assert background.cancelled()
    assert [w.cancelled for w in works] == [1, 1]
    assert len(flight) == 0
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_drain_with_nothing_in_flight() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    await flight.drain()
    assert len(flight) == 0


# --- real costs ---------------------------------------------------------------------------------------


def _traced_growth_per_entry(fill: Callable[[int], None], count: int) -> float:
    """tracemalloc's growth per entry while `fill(i)` runs for i in range(count)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            fill(i)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / count


def _digest(i: int) -> str:
    return "sha256:" + hashlib.sha256(str(i).encode()).hexdigest()


def _check_counted(counted: float, real: float) -> None:
    assert counted >= 0.95 * real, f"counted {counted:.0f} bytes per entry, it takes {real:.0f}"
    assert counted <= 1.5 * real, f"counted {counted:.0f} bytes per entry, it takes only {real:.0f}"


def test_a_verdict_entry_is_counted_as_what_it_takes() -> None:
    cache: PackedTTLCache[bytes] = PackedTTLCache(3600, 10**6, 1 << 40)

    def fill(i: int) -> None:
        key = hashlib.blake2b(str(i).encode(), digest_size=16).digest()
        cache.put(key, os.urandom(150))  # a deflated digest-pin verdict

    real = _traced_growth_per_entry(fill, 20_000)
    _check_counted(cache.size / len(cache), real)


def test_a_content_entry_is_counted_as_what_it_takes() -> None:
    content: ByteLRU[tuple[str, str, str], Manifest | bytes] = ByteLRU(1 << 40, content_size, slot_cost)

    def fill(i: int) -> None:
        data = small_manifest(i)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        content.put(("127.0.0.1:5000", f"mem/small-{i}", digest), Manifest(digest, OCI_MANIFEST, data))

    real = _traced_growth_per_entry(fill, 20_000)
    _check_counted(content.size / len(content), real)


def test_a_tag_entry_is_counted_as_what_it_takes() -> None:
    tags: TTLCache[tuple[str, str, str], str] = TTLCache(
        3600, 10**6, max_bytes=1 << 40, size_of=bytes_cost, slot_of=ttl_slot_cost
    )

    def fill(i: int) -> None:
        tags.put(("ghcr.io", f"org/app-{i}", f"v{i}.0"), _digest(i))

    real = _traced_growth_per_entry(fill, 20_000)
    _check_counted(tags.size / len(tags), real)


def test_the_byte_bound_evicts_by_real_cost() -> None:
    cache: TTLCache[bytes, bytes] = TTLCache(
        3600, 10**6, max_bytes=1 << 20, size_of=bytes_cost, slot_of=ttl_slot_cost
    )
    value = b"v" * 600
    per_entry = bytes_cost(value) + ttl_slot_cost(bytes(32))
    for i in range(10_000):
        cache.put(hashlib.sha256(str(i).encode()).digest(), value)
        assert cache.size <= 1 << 20
    assert len(cache) == (1 << 20) // per_entry  # far fewer than 1 MiB / 600 bytes
    assert cache.get(hashlib.sha256(b"9999").digest()) == value  # the newest stay
    assert cache.get(hashlib.sha256(b"0").digest()) is None


def test_the_count_bound_still_holds_with_a_byte_bound() -> None:
    cache: TTLCache[int, bytes] = TTLCache(3600, 3, max_bytes=1 << 20, size_of=bytes_cost, slot_of=slot_cost)
    for i in range(5):
        cache.put(i, b"x")
    assert len(cache) == 3
    assert cache.size == 3 * (bytes_cost(b"x") + slot_cost(0))


def test_a_ttl_entry_over_a_quarter_of_the_byte_bound_is_not_kept_and_replaces_nothing() -> None:
    cache: TTLCache[str, bytes] = TTLCache(3600, 100, max_bytes=4000, size_of=len)
    cache.put("k", b"small")
    cache.put("k", b"x" * 1001)  # over 4000 // 4: dropped, and the older value with it
    assert cache.get("k") is None
    assert (len(cache), cache.size) == (0, 0)


def test_expiry_and_clear_keep_the_byte_count_right() -> None:
    clock = Clock()
    cache: TTLCache[str, bytes] = TTLCache(10, 100, clock=clock, max_bytes=10_000, size_of=len)
    cache.put("a", b"x" * 10)
    cache.put("b", b"x" * 20, ttl=100)
    assert cache.size == 30
    clock.now += 11
    assert cache.get("a") is None
    assert cache.size == 20
    cache.clear()
    assert cache.size == 0


def test_max_bytes_needs_a_size() -> None:
    with pytest.raises(ValueError):
        TTLCache(1, 1, max_bytes=10)


# --- KeyedLocks ------------------------------------------------------------------------------------------


async def test_keyed_locks_exclude_per_key_and_are_dropped_when_unused() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    inside: list[str] = []
    release = asyncio.Event()

    async def hold(key: str, name: str) -> None:
        async with locks.hold(key):
            inside.append(name)
            await release.wait()

    a1 = asyncio.create_task(hold("a", "a1"))
    a2 = asyncio.create_task(hold("a", "a2"))
    b1 = asyncio.create_task(hold("b", "b1"))
    await asyncio.sleep(0.01)
    assert sorted(inside) == ["a1", "b1"]  # a2 waits for a1
    assert len(locks) == 2
    release.set()
    await asyncio.gather(a1, a2, b1)
    assert inside[-1] == "a2"
    assert len(locks) == 0  # nothing kept for keys nobody uses


async def test_keyed_locks_are_dropped_when_a_waiter_is_cancelled() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    release = asyncio.Event()

    async def hold() -> None:
        async with locks.hold("k"):
            await release.wait()

    first = asyncio.create_task(hold())
    await asyncio.sleep(0)
    second = asyncio.create_task(hold())
    await asyncio.sleep(0)
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    release.set()
    await first
    assert len(locks) == 0


def test_packed_ttl_cache_expires_evicts_and_counts() -> None:
    clock = Clock()
    cache: PackedTTLCache[str] = PackedTTLCache(10, 3, 100_000, clock=clock)
    cache.put("a", b"1")
    clock.now += 5
    cache.put("b", b"22")
    assert cache.get("a") == b"1"  # now the most recently used
    cache.put("c", b"333")
    cache.put("d", b"4444")  # over 3 entries: "b" goes
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [b"1", b"333", b"4444"]
    assert cache.size == sum(
        slot_cost(k) + bytes_cost(bytes(8) + v) for k, v in [("a", b"1"), ("c", b"333"), ("d", b"4444")]
    )
    clock.now += 5  # "a" was put 10 s ago: expired
    assert cache.get("a") is None
    assert len(cache) == 2
    cache.put("c", b"x" * 30_000)  # over a quarter of the bytes: not kept, and the old value is gone
    assert cache.get("c") is None
    assert cache.size == slot_cost("d") + bytes_cost(bytes(8) + b"4444")


def test_packed_ttl_cache_is_bounded_by_bytes() -> None:
    cache: PackedTTLCache[bytes] = PackedTTLCache(3600, 10**6, 1 << 20)
    for i in range(20_000):
        cache.put(i.to_bytes(16, "big"), bytes(150))
        assert cache.size <= 1 << 20
    per_entry = slot_cost(bytes(16)) + bytes_cost(bytes(158))
    assert len(cache) == (1 << 20) // per_entry


def test_a_disabled_packed_cache_keeps_nothing() -> None:
    for cache in (PackedTTLCache[str](0, 10, 1000), PackedTTLCache[str](10, 0, 1000)):
        cache.put("k", b"v")
        assert cache.get("k") is None and len(cache) == 0 and cache.size == 0
