"""Servers the test bed started and has not stopped yet: all stopped at interpreter exit as a last resort."""

from __future__ import annotations

import atexit
import contextlib
import threading
from typing import Generic, Protocol, TypeVar

__all__ = ["LiveProcesses"]


class Stoppable(Protocol):
    def stop(self, timeout: float = ...) -> None: ...


S = TypeVar("S", bound=Stoppable)


class LiveProcesses(Generic[S]):
    """A thread-safe set of running servers; whatever is still in it at exit is stopped (errors ignored)."""

    def __init__(self) -> None:
        self._items: set[S] = set()
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def add(self, item: S) -> None:
        with self._lock:
            self._items.add(item)

    def discard(self, item: S) -> None:
        with self._lock:
            self._items.discard(item)

    def stop_all(self) -> None:
        with self._lock:
            items = list(self._items)
        for item in items:
            with contextlib.suppress(Exception):
                item.stop(timeout=3)
