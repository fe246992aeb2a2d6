"""The memory budget for registry responses: the parse-cost estimate, waiting, timeouts, accounts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import tracemalloc
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from provider.budget import ACCOUNT, Account, MemoryBudget, Overloaded, json_parse_cost
from tests.support.synthetic_registry import fat_manifest, small_manifest
from verifiers import oci
from verifiers.base import Undecided

T = TypeVar("T")

# --- the parse-cost estimate ---------------------------------------------------------------------------


def _spdx(packages: int) -> bytes:
    rng = random.Random(7)
    doc = {
        "spdxVersion": "SPDX-2.3",
        "packages": [
            {
                "name": f"pkg{i}",
                "SPDXID": f"SPDXRef-{i}",
                "versionInfo": "1.2.3",
                "downloadLocation": "NOASSERTION",
                "licenseConcluded": "MIT",
                "checksums": [{"algorithm": "SHA256", "checksumValue": f"{rng.getrandbits(256):064x}"}],
            }
            for i in range(packages)
        ],
    }
    return json.dumps(doc).encode()


def _array(item: bytes, count: int) -> bytes:
    return b"[" + b",".join([item] * count) + b"]"


SHAPES = {
    "small manifest": small_manifest(7),
    "fat manifest (layers)": fat_manifest(1, "layers", 400_000),
    "fat manifest (annotations)": fat_manifest(1, "annotations", 400_000),
    "SPDX SBOM": _spdx(2000),
    "empty objects": _array(b"{}", 100_000),
    "empty arrays": _array(b"[]", 100_000),
    "short strings": _array(b'"ab"', 80_000),
    "integers": _array(b"1000", 80_000),
    "floats": _array(b"1.5", 80_000),
    "objects of one member": _array(b'{"x":1}', 50_000),
    "distinct keys": b"{" + b",".join(b'"%d":1' % i for i in range(40_000)) + b"}",
}
ORDINARY = ("small manifest", "fat manifest (layers)", "SPDX SBOM")


def _real_cost(data: bytes) -> int:
    """The bytes plus tracemalloc's peak while they are parsed as registry content is (`verifiers.oci`:
    the strict, duplicate-checking JSON parse, then the manifest model when it is one) and while the
    result lives."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        document = oci.load_json(data)
        model = None
        if isinstance(document, dict):
            with contextlib.suppress(oci.ContentError):
                model = oci.manifest_from_json(document, "")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del document, model
    return len(data) + peak - before


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_estimate_covers_what_parsing_costs(shape: str) -> None:
    data = SHAPES[shape]
    real, estimate = _real_cost(data), json_parse_cost(data)
    assert estimate >= real, f"{shape}: estimated {estimate}, parsing took {real}"
    if shape in ORDINARY:  # not so pessimistic that ordinary content waits for nothing
        assert estimate <= 1.6 * real, f"{shape}: estimated {estimate}, parsing took {real}"


def test_the_estimate_of_binary_data_is_about_its_size() -> None:
    data = random.Random(1).randbytes(1 << 20)
    assert len(data) < json_parse_cost(data) < 4 * len(data)


# --- MemoryBudget ------------------------------------------------------------------------------------


async def _budget(capacity: int, used: int = 0) -> MemoryBudget:
    """A budget of ``capacity`` of which ``used`` is already acquired."""
    budget = MemoryBudget(capacity)
    if used:
        assert await budget.acquire(used, 0) == used
    return budget


async def _started(awaitable: Coroutine[Any, Any, T], settle: float = 0) -> asyncio.Task[T]:
    """``awaitable`` running as a task, given ``settle`` seconds (one turn of the loop by default) to get
    as far as it can (e.g. into the budget's queue)."""
    task = asyncio.create_task(awaitable)
    await asyncio.sleep(settle)
    return task


async def test_reservations_within_capacity_do_not_wait() -> None:
    budget = MemoryBudget(100)
    assert await budget.acquire(60, 0) == 60
    assert await budget.acquire(40, 0) == 40
    assert budget.used == 100
    with pytest.raises(TimeoutError):
        await budget.acquire(1, 0)
    budget.release(100)
    assert budget.used == 0


async def test_a_waiting_reservation_is_granted_on_release_in_order() -> None:
    budget = await _budget(100, used=90)
    order: list[str] = []

    async def take(name: str, n: int) -> None:
        await budget.acquire(n, 5)
        order.append(name)

    first = await _started(take("first", 50))
    second = await _started(take("second", 5), 0.01)  # would fit now, but waits its turn
    assert order == [] and budget.waiting == 2 and budget.used == 90
    budget.release(90)
    await asyncio.gather(first, second)
    assert order == ["first", "second"]
    assert budget.used == 55


async def test_a_wait_past_its_patience_times_out_and_leaves_the_queue() -> None:
    budget = await _budget(100, used=100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await budget.acquire(10, 0.05)
    assert loop.time() - started >= 0.05
    assert budget.waiting == 0 and budget.used == 100


async def test_a_large_waiter_leaving_lets_smaller_ones_in() -> None:
    budget = await _budget(100, used=50)
    big = await _started(budget.acquire(80, 0.05))
    small = await _started(budget.acquire(10, 5))
    assert not small.done()  # behind the big one
    with pytest.raises(TimeoutError):
        await big
    assert await small == 10
    assert budget.used == 60


async def test_a_request_larger_than_the_capacity_takes_the_whole_budget() -> None:
    budget = MemoryBudget(100)
    assert await budget.acquire(1000, 0) == 100
    assert budget.used == 100


async def test_a_cancelled_waiter_gives_back_nothing_it_did_not_get() -> None:
    budget = await _budget(100, used=100)
    waiter = await _started(budget.acquire(30, 5))
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.waiting == 0
    budget.release(100)
    assert budget.used == 0


async def test_resize_lets_waiters_in() -> None:
    budget = await _budget(10, used=10)
    waiter = await _started(budget.acquire(8, 5))
    assert not waiter.done()
    budget.resize(40)
    assert await waiter == 8
    assert budget.used == 18


# --- Account ------------------------------------------------------------------------------------------


def _account(budget: MemoryBudget, limit: int, wait: float = 5.0) -> Account:
    return Account(budget, limit, asyncio.get_running_loop().time() + wait)


async def _old_and_young(budget: MemoryBudget, old_holds: int, young_holds: int) -> tuple[Account, Account]:
    """Two verifications holding some of ``budget``, the older one started (and reserved) first."""
    old = _account(budget, 100)
    young = _account(budget, 100)
    await old.reserve(old_holds, "manifest a")
    await young.reserve(young_holds, "manifest b")
    return old, young


async def _hog(budget: MemoryBudget, held: int) -> Account:
    """A verification holding ``held`` of ``budget`` (a fat manifest read)."""
    hog = _account(budget, 100)
    await hog.reserve(held, "fat manifest")
    return hog


async def test_an_account_holds_until_closed() -> None:
    budget = MemoryBudget(100)
    account = _account(budget, 80)
    await account.reserve(30, "manifest a")
    await account.reserve(20, "blob b")
    assert (account.held, budget.used) == (50, 50)
    account.close()
    assert (account.held, budget.used) == (0, 0)
    account.close()  # twice is harmless
    assert budget.used == 0


async def test_over_the_verification_limit_is_undecided_at_once() -> None:
    budget = MemoryBudget(100)
    account = _account(budget, 40)
    await account.reserve(30, "manifest a")
    with pytest.raises(Overloaded) as caught:
        await account.reserve(11, "blob b")
    assert isinstance(caught.value, Undecided)
    assert caught.value.reason == "overloaded"
    assert "verificationBytes" in caught.value.message
    assert budget.used == 30


async def test_an_exhausted_budget_waits_until_the_deadline_then_is_undecided() -> None:
    budget = MemoryBudget(100)
    await _hog(budget, 100)
    late = _account(budget, 100, wait=0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Overloaded) as caught:
        await late.reserve(10, "manifest x")
    assert 0.09 <= loop.time() - started < 2
    assert caught.value.reason == "overloaded"
    assert "inFlightBytes" in caught.value.message
    assert late.held == 0 and budget.used == 100


async def test_a_waiting_read_goes_on_when_another_verification_ends() -> None:
    budget = MemoryBudget(100)
    hog = await _hog(budget, 90)
    other = _account(budget, 100)
    waiting = await _started(other.reserve(50, "manifest y"), 0.01)
    assert not waiting.done()
    hog.close()
    await waiting
    assert (other.held, budget.used) == (50, 50)


async def test_a_read_granted_after_its_verification_ended_is_given_back() -> None:
    budget = MemoryBudget(100)
    hog = await _hog(budget, 100)
    other = _account(budget, 100)
    waiting = await _started(other.reserve(50, "manifest y"))
    other.close()
    hog.close()
    with pytest.raises(Overloaded):
        await waiting
    assert budget.used == 0


def test_no_account_outside_a_verification() -> None:
    assert ACCOUNT.get() is None


async def test_a_younger_holder_gives_way_at_once_and_the_oldest_waits() -> None:
    budget = MemoryBudget(100)
    old, young = await _old_and_young(budget, 40, 40)
    # Both need more than is left: the younger is undecided at once (no waiting while holding) ...
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Overloaded) as caught:
        await young.reserve(30, "blob b")
    assert loop.time() - started < 0.5
    assert "older verifications" in caught.value.message
    # ... the oldest waits, ahead of verifications that hold nothing yet, and gets it when memory is freed.
    newcomer = _account(budget, 100)
    queued = await _started(newcomer.reserve(35, "manifest c"))
    waiting = await _started(old.reserve(30, "blob a"), 0.01)
    assert not waiting.done() and not queued.done()
    young.close()
    await waiting
    assert old.held == 70
    assert not queued.done()  # 70 + 35 > 100
    old.close()
    await queued
    assert budget.used == 35


async def test_holders_never_deadlock() -> None:
    """Many verifications, each reading a body then needing more for its parse: all end (decided or
    overloaded), none waits forever."""
    budget = MemoryBudget(100)

    async def verification(i: int) -> bool:
        account = _account(budget, 100, wait=2.0)
        try:
            await account.reserve(30, f"manifest {i}")
            await asyncio.sleep(0.001)
            await account.reserve(40, f"parse {i}")
            await asyncio.sleep(0.001)
            return True
        except Overloaded:
            return False
        finally:
            account.close()

    async with asyncio.timeout(10):
        results = await asyncio.gather(*(verification(i) for i in range(50)))
    assert any(results)
    assert budget.used == 0 and budget.waiting == 0


async def test_giving_back_everything_makes_an_account_a_newcomer_again() -> None:
    budget = MemoryBudget(100)
    old, young = await _old_and_young(budget, 10, 10)
    old.give_back(10)
    assert old.held == 0
    await budget.acquire(90, 0)  # the budget is full
    waiting = await _started(young.reserve(5, "c"), 0.01)  # now the oldest holder: it may wait
    assert not waiting.done()
    budget.release(90)
    await waiting
    assert young.held == 15


def _state(budget: MemoryBudget, *accounts: Account) -> tuple[Any, ...]:
    return (
        budget.used,
        budget.waiting,
        budget.waiting_reads,
        dict(budget._holders),
        tuple((a.held, a.closed, a._holding) for a in accounts),
    )


@pytest.mark.parametrize("seed", range(400))
def test_try_reserve_does_what_reserve_does_when_it_would_not_wait(seed: int) -> None:
    """`Account.try_reserve` (the registry client's fast path) reserves exactly what `reserve` would when
    `reserve` grants at once; otherwise it changes nothing, and `reserve` decides. The deadline has
    passed, so `reserve` never waits: it grants at once or refuses."""

    async def scenario(fast: bool) -> tuple[str, tuple[Any, ...]]:
        rng = random.Random(seed)
        budget = MemoryBudget(rng.randint(1, 1000))
        deadline = asyncio.get_running_loop().time() - 1.0
        older = Account(budget, 10_000, deadline)
        account = Account(budget, rng.randint(1, 1500), deadline)
        for holder in (older, account):
            if rng.random() < 0.6:
                budget.used += (n := min(rng.randint(1, 400), budget.capacity - budget.used))
                holder.held += n
                if n > 0:
                    holder._holding = True
                    budget._hold(holder._serial)
        if rng.random() < 0.3:  # a read waits for room ahead of us
            budget._waiters.append((budget.capacity, asyncio.get_running_loop().create_future()))
        if rng.random() < 0.1:
            account.close()
        n = rng.randint(-1, 800)
        if fast:
            before = _state(budget, older, account)
            if account.try_reserve(n):
                return "granted", _state(budget, older, account)
            assert _state(budget, older, account) == before  # nothing done: `reserve` decides
        try:
            await account.reserve(n, "x")
        except Overloaded:
            return "refused", _state(budget, older, account)
        return ("granted" if not fast else "granted by reserve"), _state(budget, older, account)

    slow = asyncio.run(scenario(False))
    fast = asyncio.run(scenario(True))
    assert fast[1] == slow[1]
    assert fast[0] == slow[0] or (fast[0], slow[0]) == ("granted by reserve", "granted")
