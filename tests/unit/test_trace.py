"""The span recorder (provider/trace.py): nesting across tasks, waits by kind, the bound, nothing when off;
and the critical path computed from its export (bench/tracing.py)."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from typing import Any

import aiohttp
from aiohttp import web

import provider.trace as trace
from bench.tracing import TraceView
from provider.budget import MemoryBudget
from provider.cache import KeyedLocks, SingleFlight
from tests.support.http_servers import served


def _by(export: dict[str, Any], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [s for s in export["spans"] if s["kind"] == kind and (name is None or s["name"] == name)]


async def test_spans_nest_across_tasks_and_slot_waits_are_measured() -> None:
    recorder = trace.Recorder()
    slots = asyncio.Semaphore(1)

    async def image(n: int) -> None:
        with trace.span("image", "verify", n):
            async with trace.acquiring(slots, "slots"):
                with trace.span("http", "GET", f"/v2/{n}"):
                    await asyncio.sleep(0.03)

    with recorder.activate():
        with trace.span("batch", "verify", 2):
            await asyncio.gather(asyncio.create_task(image(1)), asyncio.create_task(image(2)))
    export = json.loads(json.dumps(recorder.export()))  # it is JSON
    (batch,) = _by(export, "batch")
    images = _by(export, "image")
    assert [i["parent"] for i in images] == [batch["id"], batch["id"]]
    waits = _by(export, "wait", "slots")
    assert sorted(w["parent"] for w in waits) == sorted(i["id"] for i in images)
    durations = sorted(w["end_us"] - w["start_us"] for w in waits)
    assert durations[0] < 5_000  # the first got the slot at once
    assert durations[1] >= 25_000  # the second waited for the first's 30 ms
    for http in _by(export, "http"):
        owner = next(i for i in images if i["id"] == http["parent"])
        assert http["detail"] == f"/v2/{owner['detail']}"
        assert owner["start_us"] <= http["start_us"] <= http["end_us"] <= owner["end_us"]
    assert not trace.active()  # the recorder is off outside its block


async def test_single_flight_joiners_budget_and_token_locks_record_waits() -> None:
    recorder = trace.Recorder()
    flights: SingleFlight[str, int] = SingleFlight()
    locks: KeyedLocks[str] = KeyedLocks("token")
    budget = MemoryBudget(100)

    async def read() -> int:
        with trace.span("registry", "manifest", "x"):
            await asyncio.sleep(0.02)
        return 7

    async def reader(n: int) -> int:
        with trace.span("verifier", "v", n):
            return await flights.do("k", read)

    async def locked(n: int) -> None:
        with trace.span("token", "challenge", n):
            async with locks.hold("registry"):
                await asyncio.sleep(0.02)

    async def reserve() -> None:
        with trace.span("image", "verify", "budget"):
            await budget.acquire(100, 5.0)

    with recorder.activate():
        assert list(await asyncio.gather(reader(1), reader(2))) == [7, 7]
        await asyncio.gather(locked(1), locked(2))
        assert await budget.acquire(100, 1.0) == 100
        waiting = asyncio.create_task(reserve())
        await asyncio.sleep(0.02)
        budget.release(100)
        await waiting
    export = recorder.export()
    verifiers = {s["detail"]: s["id"] for s in _by(export, "verifier")}
    (manifest,) = _by(export, "registry")  # one read, under the verifier that led it
    assert manifest["parent"] == verifiers["1"]
    (flight,) = _by(export, "wait", "flight")  # the other one waited for it
    assert flight["parent"] == verifiers["2"]
    assert flight["end_us"] - flight["start_us"] >= 15_000
    tokens = sorted(_by(export, "wait", "token"), key=lambda w: w["end_us"] - w["start_us"])
    assert len(tokens) == 2 and tokens[1]["end_us"] - tokens[1]["start_us"] >= 15_000
    (budget_wait,) = _by(export, "wait", "budget")
    assert budget_wait["parent"] == _by(export, "image")[0]["id"]
    assert budget_wait["end_us"] - budget_wait["start_us"] >= 15_000


async def test_aiohttp_pool_and_connect_waits() -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.03)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    recorder = trace.Recorder()
    async with served(app) as host:
        with recorder.activate():
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(
                connector=connector, trace_configs=[trace.aiohttp_trace_config()]
            ) as session:

                async def get(n: int) -> None:
                    with trace.span("http", "GET", n):
                        async with session.get(f"http://{host}/") as resp:
                            assert await resp.text() == "ok"

                await asyncio.gather(get(1), get(2))
    export = recorder.export()
    https = {s["detail"]: s["id"] for s in _by(export, "http")}
    pool = _by(export, "wait", "pool")
    assert len(pool) == 1 and pool[0]["end_us"] - pool[0]["start_us"] >= 20_000  # one waited for the other
    assert pool[0]["parent"] in https.values()
    assert len(_by(export, "wait", "connect")) == 1  # one connection, reused


def test_off_is_a_shared_no_op_and_allocates_nothing() -> None:
    lock = asyncio.Semaphore(1)
    assert not trace.active()
    assert trace.span("image", "verify", "x") is trace.span("http", "GET")
    assert trace.wait("flight") is trace.span("image", "verify")
    assert trace.acquiring(lock, "slots") is lock

    def events(count: int, off: bool = True) -> None:
        for _ in range(count):
            with trace.span("http", "GET", lock) as s:
                assert (s is None) is off
            with trace.wait("flight", lock):
                pass
            trace.acquiring(lock, "slots")

    events(10)  # warm: interned names, caches
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        events(10_000)
        _, peak_off = tracemalloc.get_traced_memory()
        recorder = trace.Recorder()
        with recorder.activate():
            tracemalloc.reset_peak()
            events(100, off=False)
            _, peak_on = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_off - before < 512  # 30,000 events off: no object kept, none made per event
    assert peak_on - before > 100 * 2 * 64  # the same, recorded: a span object each (the check can fail)
    assert len(recorder.spans) == 1 + 200


def test_the_recorder_is_bounded() -> None:
    recorder = trace.Recorder(max_spans=5)
    with recorder.activate():
        for n in range(10):
            with trace.span("http", "GET", n) as s:
                if n >= 4:
                    assert s is None  # over the cap: the no-op, nothing kept
    export = recorder.export()
    assert len(export["spans"]) == 5 and export["dropped"] == 6


def _span(i: int, parent: int, kind: str, name: str, start: float, end: float) -> dict[str, Any]:
    return {
        "id": i,
        "parent": parent,
        "kind": kind,
        "name": name,
        "detail": f"d{i}",
        "start_us": start,
        "end_us": end,
    }


def test_the_critical_path_follows_dependent_spans_not_concurrent_ones() -> None:
    # batch 0-100: image A 1-60 and image B 2-99 run side by side; B: manifest 3-20, then a slot wait
    # 20-30, then a verifier 30-95 whose http spans are 31-50 and 52-90 (sequential).
    doc = {
        "format": "countersign-trace/1",
        "dropped": 0,
        "spans": [
            _span(1, 0, "trace", "root", 0, 100),
            _span(2, 1, "batch", "verify", 0, 100),
            _span(3, 2, "image", "verify", 1, 60),
            _span(4, 2, "image", "verify", 2, 99),
            _span(5, 4, "http", "GET", 3, 20),
            _span(6, 4, "wait", "slots", 20, 30),
            _span(7, 4, "verifier", "cosign", 30, 95),
            _span(8, 7, "http", "GET", 31, 50),
            _span(9, 7, "http", "GET", 52, 90),
            _span(10, 3, "http", "GET", 5, 58),
        ],
    }
    view = TraceView(doc)
    batch = view.spans[2]
    path = view.critical_path(batch)
    assert [s.span.id for s in path] == [2, 4, 5, 6, 7, 8, 7, 9, 7, 4, 2]
    assert sum(s.duration for s in path) == 100  # the path covers the batch exactly once
    assert 3 not in {s.span.id for s in path}  # the image that ran alongside is not on it
    by = view.path_by_category(path)
    assert by["network"] == 17 + 19 + 38 and by["slots"] == 10
    assert view.round_trips(view.spans[4]) == (3, 0, 3)
    waits = view.waits()
    assert waits["slots"] == (1, 10, 10) and waits["network"][0] == 4
