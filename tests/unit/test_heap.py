"""`provider.heap.settle`: collect, then freeze the survivors out of the collector's later walks."""

from __future__ import annotations

import gc
import weakref

from provider import heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_settle_collects_cycles_then_freezes_what_survives() -> None:
    try:
        kept = [_Node() for _ in range(100)]
        cycle = _Node()
        cycle.other = _Node()
        cycle.other.other = cycle
        dead = weakref.ref(cycle)
        del cycle
        assert dead() is not None  # only the collector can free a cycle
        heap.settle()
        assert dead() is None  # collected first
        frozen = gc.get_freeze_count()
        assert frozen >= len(kept)
        assert not any(kept[0] is o for o in gc.get_objects(generation=2))  # out of every generation
        # A cycle made among frozen objects waits for the next settle, which collects it.
        kept[0].other = kept[1]
        kept[1].other = kept[0]
        dead = weakref.ref(kept[0])
        del kept[:2]
        gc.collect()
        assert dead() is not None
        heap.settle()
        assert dead() is None
    finally:
        gc.unfreeze()


class _Cycle:
    """An object that refers to itself: only the collector frees it. Counts how many are alive."""

    __slots__ = ("me",)
    alive = 0

    def __init__(self) -> None:
        self.me: _Cycle | None = self
        _Cycle.alive += 1

    def __del__(self) -> None:
        _Cycle.alive -= 1


def test_loosen_raises_only_the_young_threshold_and_cycles_are_still_collected() -> None:
    before = gc.get_threshold()
    try:
        heap.loosen()
        assert gc.get_threshold() == (heap.GEN0_THRESHOLD, *before[1:])
        gc.collect()
        _Cycle.alive = 0
        peak = 0
        for _ in range(10 * heap.GEN0_THRESHOLD):
            _Cycle()
            peak = max(peak, _Cycle.alive)
        # Each cycle is one tracked object: the young collection frees them every GEN0_THRESHOLD or so.
        assert heap.GEN0_THRESHOLD // 2 < peak <= heap.GEN0_THRESHOLD + 100
        assert _Cycle.alive <= heap.GEN0_THRESHOLD + 100
        gc.collect()
        assert _Cycle.alive == 0
    finally:
        gc.set_threshold(*before)
