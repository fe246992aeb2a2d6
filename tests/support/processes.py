"""Servers the test bed started and has not stopped yet: all stopped at interpreter exit as a last resort.

Also :class:`StartStop`, what makes every server of the test bed usable as ``with server: ...``.
"""

from __future__ import annotations

import atexit
import contextlib
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

__all__ = ["LiveProcesses", "StartStop", "start_logged", "terminate"]


class StartStop:
    """A server used as ``with server: ...``: started on entry, stopped on exit. Subclasses define
    ``start()`` (returning the server) and ``stop()``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_logged(
    command: Sequence[str], log_file: Path, *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own (a Ctrl-C in the terminal is for pytest), its output
    appended to ``log_file`` after a ``--- starting: ...`` line."""
    with log_file.open("ab") as log:
        log.write(f"--- starting: {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM ``process`` if it still runs, then SIGKILL after ``timeout``, and reap it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


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
