"""Memory stays bounded whatever keys arrive: the real server under fat manifests, and the budget's outcomes.

The manifests come from a registry on 127.0.0.1 that generates them from the repository name
(tests/support/synthetic_registry.py): valid OCI manifests, each distinct, just under the 4 MiB limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from provider.config import parse_config
from provider.engine import Engine
from provider.outcome import Decided, UndecidedKey
from tests.support.provider_process import start_provider
from tests.support.registries import LOOPBACK
from tests.support.synthetic_registry import SyntheticRegistry, provider_config

pytestmark = pytest.mark.integration

MiB = 1 << 20


@pytest.fixture
async def synthetic() -> AsyncIterator[tuple[SyntheticRegistry, str]]:
    """The generating registry, its costliest shape to parse (many short annotations), and its host."""
    registry = SyntheticRegistry(fat_shape="annotations")
    async with registry.served() as host:
        yield registry, host


async def test_rss_stays_bounded_with_many_fat_manifests(
    synthetic: tuple[SyntheticRegistry, str], tmp_path: Path
) -> None:
    registry, host = synthetic
    in_flight, content = 96 * MiB, 16 * MiB
    provider = await asyncio.to_thread(
        start_provider,
        provider_config(host, ["pinned", "sbom"], {"contentBytes": content}),
        tmp_path,
        server={"limits": {"inFlightBytes": in_flight, "verificationBytes": in_flight}},
    )
    try:
        start = provider.rss_mib()
        keys = [registry.reference(host, "fat", i) for i in range(40)]
        decided: set[str] = set()
        outcomes: dict[str, str] = {}
        deadline = time.monotonic() + 25
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            while len(decided) < len(keys) and time.monotonic() < deadline:
                reply = await provider.post(session, [k for k in keys if k not in decided])
                for item in reply["response"]["items"]:
                    value = item["value"]
                    assert value["allowed"] is False, item  # never allowed: there is no SBOM
                    decided.add(item["key"])
                    outcomes[item["key"]] = value["reason"]
                system_error = reply["response"]["systemError"]
                assert "internal_error" not in system_error
            memory = provider.memory_kib()
            async with session.get(f"http://{LOOPBACK}:{provider.health_port}/healthz") as resp:
                assert resp.status == 200
            # Every verification gives its reservations back once it ends; one still finishing in the
            # background when the last reply came (a loaded machine) ends within its own deadline.
            released_by = time.monotonic() + 30
            for _ in range(150):
                in_flight_now = await provider.metric(
                    session, "countersign_memory_bytes", {"pool": "in_flight"}
                )
                if not in_flight_now or time.monotonic() > released_by:
                    break
                await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(provider.stop)
    peak = memory["VmHWM"] / 1024
    # 40 manifests of 3.9 MB, each ~54 MB to parse, would be 2 GB held at once without the budget.
    bound = start + (in_flight + content) / MiB + 48  # the rest: aiohttp buffers, caches' slack, the heap
    assert peak <= bound, f"peak RSS {peak:.1f} MiB, over {bound:.1f} MiB\n{provider.log_tail()}"
    assert peak <= 256
    assert len(decided) >= 8, f"only {len(decided)} of {len(keys)} keys decided within the time"
    assert set(outcomes.values()) == {"policy_not_satisfied"}
    assert in_flight_now == 0  # every verification gave its reservations back


@asynccontextmanager
async def _engine(host: str, *, in_flight: int, per_verification: int) -> AsyncIterator[Engine]:
    """An engine whose digest-pin policy covers ``host``, with these memory limits (bytes)."""
    doc = provider_config(host, ["pinned"], {})
    doc["server"] = {"limits": {"inFlightBytes": in_flight, "verificationBytes": per_verification}}
    engine = await Engine.create(parse_config(doc))
    try:
        yield engine
    finally:
        await engine.close()


async def test_a_manifest_over_the_verification_budget_is_overloaded_and_never_cached(
    synthetic: tuple[SyntheticRegistry, str],
) -> None:
    registry, host = synthetic
    async with _engine(host, in_flight=64 * MiB, per_verification=8 * MiB) as engine:
        fat, small = registry.reference(host, "fat", 1), registry.reference(host, "small", 1)
        for _ in range(2):  # not cached: the second time is fetched (and refused) again
            before = registry.manifest_requests
            results = await engine.verify([fat, small], 10)
            outcome = results[fat]
            assert isinstance(outcome, UndecidedKey), outcome
            assert outcome.reason == "overloaded"
            assert "verificationBytes" in outcome.message
            assert registry.manifest_requests > before
            small_outcome = results[small]
            assert isinstance(small_outcome, Decided) and small_outcome.allowed
        assert engine.memory.used == 0


async def test_a_full_budget_makes_reads_wait_then_they_go_on(
    synthetic: tuple[SyntheticRegistry, str],
) -> None:
    registry, host = synthetic
    async with _engine(host, in_flight=4 * MiB, per_verification=4 * MiB) as engine:
        key = registry.reference(host, "small", 2)
        held = await engine.memory.acquire(4 * MiB, 0)  # someone else holds the whole budget
        first = await engine.verify([key], 0.3)
        waiting = first[key]
        assert isinstance(waiting, UndecidedKey) and waiting.reason == "deadline_exceeded"
        assert engine.memory.waiting == 1  # its read waits in the background for room
        engine.memory.release(held)
        second = await engine.verify([key], 5)
        decided = second[key]
        assert isinstance(decided, Decided) and decided.allowed
