"""Bytes in flight: a process-wide budget for registry responses, and each verification's share of it.

Every registry response body (manifest, blob, referrers page, token response) is reserved before and while
it is read: `read_cost(length)` up front (its size and a typical parsing cost), and once read, exactly what
it and its parse may take (`json_parse_cost`: raised, or lowered), so a parse never starts on memory that was
not reserved. Reservations are held by the verification that read them (an `Account`, found in the `ACCOUNT`
context variable, which the engine sets per verification) until that verification ends: a verifier may keep
what it read, or parse it itself (an SBOM in a worker thread).

- The process budget (`MemoryBudget`, `server.limits.inFlightBytes`) is shared by every verification. A
  verification that holds nothing yet waits for room, first come first served, until its deadline, then is
  undecided (`overloaded`): never allowed, never cached.
- One that already holds memory and needs more waits only if it is the oldest holder (first in the queue):
  a younger one is undecided at once rather than wait while holding, so holders never wait on each other
  (no deadlock) and the oldest always gets through. A verification retried after giving way keeps its
  first seniority, so it becomes the oldest in turn (no starvation).
- A read waits holding its registry connection, so at most `MAX_WAITING_READS` first reads wait at once
  (the others are undecided at once): the holders always find a connection to finish with.
- A verification may hold at most `server.limits.verificationBytes`: past that it is undecided at once.

So at any time the registry responses being read or used, and the transient cost of parsing them, are at
most `inFlightBytes` (plus, for each open registry connection, its buffers: what aiohttp buffers before the
body is read, about 128 KiB, and over TLS asyncio's 256 KiB read buffer and OpenSSL's state; at most
`limits.maxConnections` connections). Cached content is bounded separately by the caches.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
from collections import deque

import provider.trace as trace
from verifiers.errors import Unavailable

__all__ = ["ACCOUNT", "Account", "MemoryBudget", "Overloaded", "json_parse_cost", "read_cost"]

OVERLOADED_REASON = "overloaded"


class Overloaded(Unavailable):
    """The memory budget for registry responses could not cover a read in time: undecided."""

    def __init__(self, message: str) -> None:
        super().__init__(message, OVERLOADED_REASON)


# What parsing registry JSON costs (CPython 3.11, 64-bit), fitted to tracemalloc's peak while it is parsed
# as the client parses it (`verifiers.oci`: the strict parse, whose duplicate-key hook builds a list of
# pairs per object, then the manifest model) over hostile and ordinary shapes, then rounded up
# (tests/unit/test_budget.py checks the estimate covers it, and is not over 1.6 times it for ordinary
# content): every value is a slot in its container plus possibly a new object, every member a dict entry
# with its key (a colon) and its pair, every object or array the container itself.
_COST_FIXED = 1536
_COST_OBJECT = 96
_COST_ARRAY = 32
_COST_QUOTE = 16
_COST_COMMA = 72
_COST_COLON = 160


def json_parse_cost(data: bytes) -> int:
    """An upper estimate of the memory `data` and its parsed JSON take together while it is parsed, in
    bytes: 1.0-1.6 times the real cost for manifests, SBOMs and hostile shapes (`[{},{},...]`).

    Counted at C speed (`bytes.count`), without parsing.
    """
    return (
        _COST_FIXED
        + len(data)
        + _COST_OBJECT * data.count(b"{")
        + _COST_ARRAY * data.count(b"[")
        + _COST_QUOTE * data.count(b'"')
        + _COST_COMMA * data.count(b",")
        + _COST_COLON * data.count(b":")
    )


# Reserved per byte before a body is read: its size and what parsing costs for ordinary content (manifests
# 5-8, SBOMs ~7 times their size); the exact figure replaces it once the body is read.
_TYPICAL_FACTOR = 8
# Reads that may wait for room at once (besides the oldest holder's): each holds a registry connection
# while it waits, and the client has at least 16 per registry host (`limits.maxConnectionsPerRegistry`).
MAX_WAITING_READS = 8


def read_cost(length: int) -> int:
    """What to reserve for a body of `length` bytes before it is read."""
    return _COST_FIXED + _TYPICAL_FACTOR * length


class MemoryBudget:
    """`capacity` bytes shared by reservations; waiters are served in order of arrival, except that the
    oldest holder (see the module) goes first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        # Seniorities of the accounts holding memory (a count per seniority), and a heap of them.
        self._holders: dict[int, int] = {}
        self._holder_heap: list[int] = []
        self._serial = itertools.count()
        self.waiting_reads = 0  # Account.reserve calls under way (see MAX_WAITING_READS)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def resize(self, capacity: int) -> None:
        """A new capacity (a reloaded configuration); reservations held keep counting."""
        self.capacity = capacity
        self._wake()

    def try_acquire(self, n: int) -> bool:
        n = min(n, self.capacity)
        if self._waiters or self.used + n > self.capacity:
            return False
        self.used += n
        return True

    async def acquire(self, n: int, patience: float, *, first: bool = False) -> int:
        """Reserve `n` bytes (at most the capacity: that much is then the whole budget); returns what was
        reserved. `first`: go ahead of every waiter. Raises TimeoutError when it could not within
        `patience` seconds."""
        n = min(n, self.capacity)
        if first and self.used + n <= self.capacity:
            self.used += n
            return n
        if self.try_acquire(n):
            return n
        if patience <= 0:
            raise TimeoutError
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, future)
        if first:
            self._waiters.appendleft(entry)
        else:
            self._waiters.append(entry)
        try:
            async with asyncio.timeout(patience):
                with trace.wait("budget"):
                    await future
        except BaseException:
            if future.done() and not future.cancelled():
                self.release(n)  # granted just as the wait ended
            else:
                future.cancel()
                try:
                    self._waiters.remove(entry)
                except ValueError:
                    pass
                self._wake()  # a large request leaving the head of the queue may let smaller ones in
            raise
        return n

    def release(self, n: int) -> None:
        self.used -= n
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            n, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self.used + n > self.capacity:
                return
            self._waiters.popleft()
            self.used += n
            future.set_result(None)

    # --- holders (for Account) ---------------------------------------------------------------------------

    def _hold(self, serial: int) -> None:
        count = self._holders.get(serial, 0)
        self._holders[serial] = count + 1
        if count == 0:
            heapq.heappush(self._holder_heap, serial)

    def _unhold(self, serial: int) -> None:
        count = self._holders.get(serial, 0)
        if count <= 1:
            self._holders.pop(serial, None)
        else:
            self._holders[serial] = count - 1

    def _is_oldest_holder(self, serial: int) -> bool:
        heap = self._holder_heap
        while heap and heap[0] not in self._holders:
            heapq.heappop(heap)  # left the holders: dropped lazily
        if len(heap) > 4 * len(self._holders) + 64:
            self._holder_heap = heap = sorted(self._holders)  # a heap once sorted; stale entries gone
        return bool(heap) and heap[0] == serial

    def seniority(self) -> int:
        """A new seniority, younger than every one handed out before."""
        return next(self._serial)


class Account:
    """One verification's reservations: at most `limit` bytes, from `budget`, waiting until `deadline`
    (event-loop time) when the rules in the module allow; all released by `close`."""

    def __init__(
        self, budget: MemoryBudget, limit: int, deadline: float, seniority: int | None = None
    ) -> None:
        self.budget = budget
        self.limit = limit
        self.deadline = deadline
        self.held = 0
        self.closed = False
        # Lower is older. A retry of a verification that gave way keeps its first seniority (the engine
        # remembers it), so it cannot be starved by ever newer ones.
        self._serial = budget.seniority() if seniority is None else seniority
        self._holding = False

    async def reserve(self, n: int, what: str) -> None:
        if n <= 0:
            return
        if self.closed:
            raise Overloaded(f"{what}: read after its verification ended")
        if self.held + n > self.limit:
            raise Overloaded(
                f"{what}: the verification would hold more than {self.limit} bytes of registry responses "
                "(server.limits.verificationBytes)"
            )
        budget = self.budget
        remaining = self.deadline - asyncio.get_running_loop().time()
        why = "before the deadline"
        if self.held > 0 and budget._is_oldest_holder(self._serial):
            patience, first = remaining, True
        elif self.held > 0:
            patience, first = 0.0, False  # holding memory, younger than another holder: never wait
            why = "while older verifications hold it"
        elif budget.waiting_reads >= MAX_WAITING_READS:
            # A waiting read holds its registry connection: a few may, or the verifications that hold
            # the memory could find no connection to finish with.
            patience, first = 0.0, False
            why = f"and {MAX_WAITING_READS} reads wait already"
        else:
            patience, first = remaining, False
        budget.waiting_reads += 1
        try:
            got = await budget.acquire(n, patience, first=first)
        except TimeoutError:
            raise Overloaded(
                f"{what}: no room in the memory budget for registry responses "
                f"({budget.capacity} bytes, server.limits.inFlightBytes) {why}"
            ) from None
        finally:
            budget.waiting_reads -= 1
        if self.closed:  # closed while this read waited
            budget.release(got)
            raise Overloaded(f"{what}: read after its verification ended")
        self._credit(got)

    def try_reserve(self, n: int) -> bool:
        """`reserve(n)` when it would be granted at once (not closed, within the limit, no waiter ahead and
        room in the budget: `MemoryBudget.try_acquire`): reserved, True. Otherwise nothing is done and
        False: call `reserve`, which waits or refuses by the rules above. Synchronous: a read's
        reservations cost no coroutine when the budget has room (the usual case)."""
        if n <= 0:
            return True
        if self.closed or self.held + n > self.limit or not self.budget.try_acquire(n):
            return False
        self._credit(min(n, self.budget.capacity))
        return True

    def _credit(self, got: int) -> None:
        """Count `got` bytes the budget granted as held by this account."""
        self.held += got
        if not self._holding:
            self._holding = True
            self.budget._hold(self._serial)

    def give_back(self, n: int) -> None:
        """Release `n` of the bytes held (a read turned out to need less than was reserved for it)."""
        n = min(n, self.held)
        if n > 0:
            self.held -= n
            if self.held == 0 and self._holding:
                self._holding = False
                self.budget._unhold(self._serial)
            self.budget.release(n)

    @property
    def seniority(self) -> int:
        return self._serial

    @property
    def room(self) -> int:
        """What this verification may still reserve (its limit less what it holds)."""
        return self.limit - self.held

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._holding:
                self._holding = False
                self.budget._unhold(self._serial)
            self.budget.release(self.held)
            self.held = 0


ACCOUNT: contextvars.ContextVar[Account | None] = contextvars.ContextVar("countersign_account", default=None)
