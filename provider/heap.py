"""The garbage collector's view of the process: what start-up built is frozen out of its collections.

A started server holds ~80,000 long-lived objects (modules, the configuration, verifiers, trust stores,
the Kubernetes client's models). CPython's collector walks all of them at every full collection, and the
first batch of cold verifications allocates enough to trigger one: ~30 ms of event-loop time inside a
request. `settle` collects once, then moves every survivor to the permanent generation (`gc.freeze`),
so collections walk only what requests allocate. It is called when a configuration starts to serve and
after a replaced one is closed (its engine's cycles are collected then; nothing frozen stays garbage
for long). Reference counting frees frozen objects as usual; only cycles among them wait for the next
`settle`.
"""

from __future__ import annotations

import gc
import logging
import time

__all__ = ["settle"]

log = logging.getLogger(__name__)


def settle() -> None:
    """Collect everything, then freeze the survivors out of later collections."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    elapsed = time.perf_counter() - started
    log.debug("heap settled in %.1f ms: %d objects frozen", elapsed * 1000, gc.get_freeze_count())
