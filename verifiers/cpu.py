"""Where a verifier's CPU-heavy work runs: `Context.run_cpu(fn, *args)` (see verifiers/base.py).

Two runners:

- `INLINE` runs `fn(*args)` on the calling thread, at once: the `Context` default, so a verifier built and
  called directly (a unit test, a script) needs no pool;
- `CpuPool(workers, queue)`: a bounded pool of threads, owned by Countersign's engine when it is built
  with `cpu_workers` > 0 (by default the engine runs verifiers' work inline: measured, see
  docs/performance.md). At most `workers` calls run at once and at most `queue` more wait in it; a caller
  beyond that waits (asynchronously, its event loop free) for room. `fn` runs in a copy of the caller's
  context variables; its exception is raised to the caller.

Threads give a second core to work that releases the GIL: OpenSSL through `cryptography` (ECDSA, RSA
signature verification, measured with cryptography 50), `hashlib` over more than 2 KiB. Python code and
`json.loads` hold it: in a worker they only take turns with the event loop (a long `json.loads` still
stalls it). Measured on the 2-core test machine: one hop to the pool and back costs about 20 to 35 us of
event-loop CPU and 30 to 55 us of process CPU, so hand it whole units of work (a signature's
verification, an envelope's parse, verification and evaluation), not single calls of a few microseconds.

Cancellation: a caller cancelled while its call waits in the queue removes it; a call already running
finishes in its thread (a thread cannot be interrupted) and its result is dropped; its place is freed
when it ends, so the bound always counts the threads really busy.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar

__all__ = ["INLINE", "CpuPool", "CpuRunner", "Inline", "default_workers"]

_T = TypeVar("_T")


class CpuRunner(Protocol):
    """Runs a synchronous, I/O-free function and gives its result (or raises its exception)."""

    async def run(self, fn: Callable[..., _T], /, *args: object) -> _T: ...


class Inline:
    """`fn(*args)` on the calling thread (the event loop's): no pool, no hop."""

    __slots__ = ()

    async def run(self, fn: Callable[..., _T], /, *args: object) -> _T:
        return fn(*args)


INLINE = Inline()


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not every platform has an affinity mask
        return max(1, os.cpu_count() or 1)


class CpuPool:
    """A bounded thread pool for CPU-heavy verification work (see the module)."""

    def __init__(self, workers: int | None = None, queue: int | None = None) -> None:
        self.workers = workers if workers is not None else default_workers()
        self.queue = queue if queue is not None else 4 * self.workers
        if self.workers < 1 or self.queue < 0:
            raise ValueError("a CpuPool needs at least one worker and a queue of at least 0")
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="countersign-cpu")
        self._room: asyncio.Semaphore | None = None  # made in the loop of the first call
        self._busy = 0  # calls submitted and not yet ended (running or queued in the executor)
        self._closed = False

    @property
    def busy(self) -> int:
        """Calls in the pool now: running, or waiting in its queue (never more than workers + queue)."""
        return self._busy

    async def run(self, fn: Callable[..., _T], /, *args: object) -> _T:
        if self._closed:
            raise RuntimeError("the CPU pool is closed")
        loop = asyncio.get_running_loop()
        if self._room is None:
            self._room = asyncio.Semaphore(self.workers + self.queue)
        room = self._room
        await room.acquire()
        try:
            call = functools.partial(contextvars.copy_context().run, fn, *args)
            submitted: Future[_T] = self._executor.submit(call)
        except BaseException:
            room.release()
            raise
        self._busy += 1
        submitted.add_done_callback(functools.partial(self._ended, loop, room))
        return await asyncio.wrap_future(submitted, loop=loop)

    def _ended(self, loop: asyncio.AbstractEventLoop, room: asyncio.Semaphore, _: Future[object]) -> None:
        # Runs in the worker thread (or in the caller's, for a call cancelled before it started).
        try:
            loop.call_soon_threadsafe(self._free, room)
        except RuntimeError:  # the loop is closed: nobody is left to wait for room
            pass

    def _free(self, room: asyncio.Semaphore) -> None:
        self._busy -= 1
        room.release()

    def close(self) -> None:
        """Refuse new calls, drop the queued ones; running calls finish in their threads."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
