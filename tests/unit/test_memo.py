"""`Context.memo`: per-image-verification work that runs once per key, shared with every caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from verifiers.base import Context, Descriptor, Memo, Subject
from verifiers.reference import ImageReference


class _NoRegistry:
    async def referrers(self, subject: Subject, artifact_type: str | None = None) -> Sequence[Descriptor]:
        raise AssertionError("not used")

    async def manifest(self, reference: ImageReference, digest: str) -> tuple[bytes, str]:
        raise AssertionError("not used")

    async def blob(self, reference: ImageReference, descriptor: Descriptor, max_bytes: int) -> bytes:
        raise AssertionError("not used")

    async def resolve(self, reference: ImageReference) -> Descriptor:
        raise AssertionError("not used")


async def test_concurrent_and_later_callers_share_one_run() -> None:
    memo, runs = Memo(), []
    gate = asyncio.Event()

    async def work() -> list[int]:
        runs.append(1)
        await gate.wait()
        return [len(runs)]

    waiting = [asyncio.ensure_future(memo.once("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiting)
    assert runs == [1] and all(r is results[0] for r in results)
    assert await memo.once("k", work) is results[0]  # later, same verification
    assert await memo.once("other", work) == [2]  # another key runs its own
    assert len(memo) == 2 and "k" in memo


async def test_an_exception_is_shared_then_forgotten() -> None:
    memo, runs = Memo(), []

    async def work() -> int:
        runs.append(1)
        await asyncio.sleep(0)
        raise ValueError(f"run {len(runs)}")

    first, second = await asyncio.gather(memo.once("k", work), memo.once("k", work), return_exceptions=True)
    assert isinstance(first, ValueError) and first is second and str(first) == "run 1"
    assert "k" not in memo
    with pytest.raises(ValueError, match="run 2"):
        await memo.once("k", work)


async def test_a_caller_that_gives_up_does_not_cancel_the_others() -> None:
    memo = Memo()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "done"

    impatient = asyncio.ensure_future(memo.once("k", work))
    patient = asyncio.ensure_future(memo.once("k", work))
    await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    gate.set()
    assert await patient == "done"
    assert await memo.once("k", work) == "done"  # kept: it succeeded


async def test_bounded_oldest_forgotten() -> None:
    memo, runs = Memo(max_entries=2), []

    async def work() -> int:
        runs.append(1)
        return len(runs)

    for key in ("a", "b", "c"):
        await memo.once(key, work)
    assert len(memo) == 2 and "a" not in memo
    assert await memo.once("a", work) == 4  # run again
    with pytest.raises(ValueError):
        Memo(max_entries=0)


def test_each_context_has_its_own_memo() -> None:
    one, two = Context(registry=_NoRegistry(), deadline=0.0), Context(registry=_NoRegistry(), deadline=0.0)
    assert isinstance(one.memo, Memo) and one.memo is not two.memo
