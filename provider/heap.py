"""The garbage collector's view of the process: what start-up built is frozen out of its collections.

A started server holds ~80,000 long-lived objects (modules, the configuration, verifiers, trust stores,
the Kubernetes client's models). CPython's collector walks all of them at every full collection, and the
first batch of cold verifications allocates enough to trigger one: ~30 ms of event-loop time inside a
request. `settle` collects once, then moves every survivor to the permanent generation (`gc.freeze`),
so collections walk only what requests allocate. It is called when a configuration starts to serve and
after a replaced one is closed (its engine's cycles are collected then; nothing frozen stays garbage
for long). Reference counting frees frozen objects as usual; only cycles among them wait for the next
`settle`.

`loosen` raises the collector's generation-0 threshold from CPython's 700 to `GEN0_THRESHOLD`, once,
when serving starts: a cold image allocates enough container objects to trigger ~0.8 young collections,
most of which find nothing (what a verification builds is freed by reference counting). Cycles are
still collected, after `GEN0_THRESHOLD` net allocations instead of 700 (tests/unit/test_heap.py).
"""

from __future__ import annotations

import gc
import logging
import time

__all__ = ["GEN0_THRESHOLD", "loosen", "settle"]

log = logging.getLogger(__name__)

GEN0_THRESHOLD = 10_000
"""Net container allocations between young collections (CPython's default: 700); docs/performance.md."""


def loosen() -> None:
    """Raise the generation-0 threshold to `GEN0_THRESHOLD`; the older generations' stay as they are."""
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])


def settle() -> None:
    """Collect everything, then freeze the survivors out of later collections."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    elapsed = time.perf_counter() - started
    log.debug("heap settled in %.1f ms: %d objects frozen", elapsed * 1000, gc.get_freeze_count())
