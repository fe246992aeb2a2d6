"""`Context.run_cpu` and the engine's bounded CPU pool (verifiers/cpu.py).

The work runs on a pool thread, never on the event loop's; at most `workers` calls run and `queue` more
wait; exceptions reach the caller; a cancelled caller's queued call never runs and a running one frees its
place only when it ends; the engine gives its verifiers the pool through their `Context`.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable

import pytest

from provider.config import Config, Policy
from provider.engine import Engine
from provider.outcome import Decided
from tests.support.engine_registry import EngineRegistry
from verifiers.base import Context, Report, Subject
from verifiers.cpu import INLINE, CpuPool, CpuRunner, default_workers
from verifiers.testing import InMemoryRegistry, make_context

_WAIT = 5.0


def _context(cpu: CpuRunner = INLINE) -> Context:
    return make_context(InMemoryRegistry(), cpu=cpu)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(int(_WAIT / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not true within {_WAIT} s")


def test_run_cpu_runs_off_the_event_loop_thread() -> None:
    async def main() -> tuple[int, int]:
        pool = CpuPool(workers=2, queue=2)
        try:
            return threading.get_ident(), await _context(pool).run_cpu(threading.get_ident)
        finally:
            pool.close()

    loop_thread, worker = asyncio.run(main())
    assert worker != loop_thread


def test_the_default_context_runs_inline_on_the_calling_thread() -> None:
    async def main() -> tuple[int, int]:
        context = _context()
        assert context.cpu is INLINE
        return threading.get_ident(), await context.run_cpu(threading.get_ident)

    loop_thread, ran_on = asyncio.run(main())
    assert ran_on == loop_thread


def test_arguments_result_and_context_variables_reach_the_worker() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")

    def work(a: int, b: int) -> tuple[int, str]:
        return a * b, marker.get()

    async def main() -> tuple[int, str]:
        pool = CpuPool(workers=1, queue=0)
        marker.set("caller's")
        try:
            return await _context(pool).run_cpu(work, 6, 7)
        finally:
            pool.close()

    assert asyncio.run(main()) == (42, "caller's")


def test_an_exception_in_the_work_reaches_the_caller() -> None:
    class Boom(ValueError):
        pass

    def work() -> None:
        raise Boom("bad signature bytes")

    async def main() -> None:
        pool = CpuPool(workers=1, queue=1)
        try:
            with pytest.raises(Boom, match="bad signature bytes"):
                await _context(pool).run_cpu(work)
            assert pool.busy == 0
            assert await _context(pool).run_cpu(int, "5") == 5  # the pool still works
        finally:
            pool.close()

    asyncio.run(main())


def test_the_pool_is_bounded_and_the_loop_stays_free() -> None:
    """workers=1, queue=1: one call runs, one waits in the pool, the others wait outside it."""
    gate = threading.Event()
    started: list[int] = []
    running = 0
    most = 0
    lock = threading.Lock()

    def work(index: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            started.append(index)
        gate.wait(_WAIT)
        with lock:
            running -= 1
        return index

    async def main() -> list[int]:
        pool = CpuPool(workers=1, queue=1)
        context = _context(pool)
        try:
            calls = [asyncio.create_task(context.run_cpu(work, i)) for i in range(5)]
            await _until(lambda: len(started) == 1)
            ticks = 0
            for _ in range(10):  # the event loop keeps running while the pool is full
                await asyncio.sleep(0.01)
                ticks += 1
            assert ticks == 10
            assert pool.busy == 2  # one running, one queued in the pool; three waiting for room
            assert len(started) == 1
            gate.set()
            return await asyncio.gather(*calls)
        finally:
            pool.close()

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert most == 1
    assert sorted(started) == [0, 1, 2, 3, 4]


def test_cancelling_a_queued_call_drops_it_and_a_running_call_keeps_its_place_until_it_ends() -> None:
    gate = threading.Event()
    ran: list[str] = []

    def work(name: str) -> str:
        ran.append(name)
        gate.wait(_WAIT)
        return name

    async def main() -> None:
        pool = CpuPool(workers=1, queue=1)
        context = _context(pool)
        try:
            running = asyncio.create_task(context.run_cpu(work, "running"))
            await _until(lambda: ran == ["running"])
            queued = asyncio.create_task(context.run_cpu(work, "queued"))
            await _until(lambda: pool.busy == 2)
            queued.cancel()
            running.cancel()
            for task in (queued, running):
                with pytest.raises(asyncio.CancelledError):
                    await task
            await _until(lambda: pool.busy == 1)  # the queued call is gone; the running one is not
            assert ran == ["running"]
            gate.set()
            await _until(lambda: pool.busy == 0)  # its place is freed when its thread is done
            assert await context.run_cpu(work, "after") == "after"
            assert ran == ["running", "after"]
        finally:
            pool.close()

    asyncio.run(main())


def test_a_closed_pool_refuses_work_and_bad_sizes_are_refused() -> None:
    async def main() -> None:
        pool = CpuPool(workers=1, queue=0)
        pool.close()
        with pytest.raises(RuntimeError, match="closed"):
            await _context(pool).run_cpu(int, "1")

    asyncio.run(main())
    with pytest.raises(ValueError):
        CpuPool(workers=0)
    with pytest.raises(ValueError):
        CpuPool(workers=1, queue=-1)
    assert CpuPool().workers == default_workers() >= 1


class _Threaded:
    """A verifier that reports which thread its `run_cpu` work ran on."""

    type = "threaded"
    name = "threaded"

    async def verify(self, subject: Subject, context: Context) -> Report:
        worker = await context.run_cpu(threading.get_ident)
        return Report.ok("ok", "ran", loop=threading.get_ident(), worker=worker)


@pytest.mark.parametrize("workers", [0, 2])
def test_the_engine_runs_verifiers_cpu_work_inline_or_on_its_own_pool(workers: int) -> None:
    async def main() -> tuple[object, Engine]:
        policy = Policy("p", ("*",), None, "allOf", ("threaded",), 1)
        config = Config(policies=(policy,), fingerprint="t")
        verifiers = {"threaded": _Threaded()}
        engine = Engine(config, EngineRegistry("reg.test/app:1"), verifiers, cpu_workers=workers)  # type: ignore[arg-type]
        try:
            results = await engine.verify(["reg.test/app:1"], 5.0)
        finally:
            await engine.close()
        return results["reg.test/app:1"], engine

    outcome, engine = asyncio.run(main())
    assert isinstance(outcome, Decided), outcome
    details = outcome.value["verifiers"][0]["details"]
    assert outcome.value["allowed"] is True
    if workers == 0:
        assert engine.cpu is INLINE
        assert details["worker"] == details["loop"]
        return
    assert isinstance(engine.cpu, CpuPool) and engine.cpu.workers == workers
    assert details["worker"] != details["loop"]
    with pytest.raises(RuntimeError, match="closed"):  # closed with the engine
        asyncio.run(_context(engine.cpu).run_cpu(int, "1"))
