"""A long-running program the test bed starts on 127.0.0.1, waits for, and stops: etcd, kube-apiserver,
Gatekeeper's manager, ``countersign serve``.

A :class:`Daemon` is started with its output appended to a log file (shown in failures), is ready when
its ``ready`` probe returns true, stops with SIGTERM then SIGKILL, and can be restarted with the same
command. Every running daemon is also stopped at interpreter exit.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

from tests.support.processes import LiveProcesses, StartStop, start_logged, terminate

__all__ = ["Daemon", "DaemonError"]

_STOP_TIMEOUT = 10.0


class DaemonError(RuntimeError):
    """A daemon did not start, or died; the message carries the tail of its log."""


class Daemon(StartStop):
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        log_file: Path,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_file = log_file
        self._ready = ready
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while it runs (e.g. to read its memory from ``/proc/<pid>/status``)."""
        return self._process.pid if self._process is not None and self.running else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> Self:
        """Start the program and wait until it is ready; a no-op when it already runs."""
        if self.running:
            return self
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self._env} if self._env is not None else None
        self._process = start_logged(self.command, self.log_file, cwd=self._cwd, env=env)
        _live.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if not self.running:
                raise DaemonError(f"{self.name} exited while starting; its log ends:\n{self.log_tail()}")
            try:
                if self._ready():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise DaemonError(
                    f"{self.name} was not ready within {self.ready_timeout:.0f}s; its log ends:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; idempotent."""
        process, self._process = self._process, None
        _live.discard(self)
        if process is not None:
            terminate(process, timeout)

    def restart(self) -> Self:
        self.stop()
        return self.start()


_live: LiveProcesses[Daemon] = LiveProcesses()
