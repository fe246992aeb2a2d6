"""The configuration in service, reloaded while serving (`ConfigReloader`).

When the configuration file's contents change, or on SIGHUP, a new engine is built from it and swapped in;
a configuration that does not load leaves the old one in service. A request keeps the `Generation`
(configuration and engine) it started on; `provider.watch.file_digest` says whether watched files changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from aiohttp import web

from provider import heap
from provider.config import Config, ConfigError, ServerConfig, load_config
from provider.engine import Engine
from provider.metrics import Metrics
from provider.watch import file_digest

__all__ = ["ConfigReloader", "Generation", "Loaded", "Loader"]

log = logging.getLogger(__name__)


# Settings bound to the listening sockets (and the certificate watcher), and the start-up warm-up: a reload
# keeps the old values.
_RESTART_ONLY = {
    "address": "address",
    "port": "port",
    "health_port": "healthPort",
    "tls": "tls",
    "warm_up": "warmUp",
}


@dataclasses.dataclass(eq=False)
class Generation:
    """One configuration and the engine built from it. A request keeps the generation it started on."""

    config: Config
    engine: Engine
    owned: bool = True  # an engine handed to build_app is closed by whoever made it
    requests: int = 0
    closed: bool = False

    @property
    def busy(self) -> bool:
        """Requests still using it, or verifications still running on its engine (in the background too)."""
        # A retired engine gets no new work, so its in-flight count only shrinks.
        return self.requests > 0 or self.engine.in_flight > 0


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    """What a loader made: a configuration, its engine, and whether it asked for a restart-only change."""

    config: Config
    engine: Engine
    restart_required: bool = False


# Builds the next generation from whatever it reads (the file; the Kubernetes resources too); the
# generation in service (None: the first) lends it the restart-only settings and the memory budget.
Loader = Callable[["Generation | None"], Awaitable[Loaded]]


class ConfigReloader:
    """The configuration in service, and its replacement when the file changes or on SIGHUP.

    A new configuration is loaded and validated by `load_config`, and its engine built by `Engine.create`,
    exactly as at start-up, before anything is swapped: a failure logs the offending field, counts in
    `countersign_config_reloads_total{result="failure"}` and leaves the old generation serving. After a
    swap new requests get the new generation; the old one is closed once its requests and background
    verifications are done, or after a grace period (its longest deadline plus one second).

    Settings in `_RESTART_ONLY` cannot change while serving: a reload keeps their old values and warns.

    With a `loader` (the Kubernetes source's: file + resources) the first generation is not built by
    `start` but by the first `reload`, which its owner calls when it has everything it needs; until then
    `current` is None (not ready). The file is still watched: a change makes the loader run again.
    """

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        *,
        path: Path | None = None,
        engine: Engine | None = None,
        loader: Loader | None = None,
    ) -> None:
        self.path = path
        self._loader: Loader = loader or self._load_file
        self.deferred = loader is not None and engine is None
        self.metrics = metrics
        self._initial = config
        self._engine = engine
        self.current: Generation | None = None
        self.reloads = 0
        self.failures = 0
        self._digest = ""
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[object]] = set()  # the watcher, SIGHUP reloads, retiring generations

    @property
    def server(self) -> ServerConfig:
        """The server settings in service (the initial ones before `start`)."""
        return (self.current.config if self.current is not None else self._initial).server

    async def start(self) -> None:
        """Build the first engine (inside the running loop) and, with a file, start watching it."""
        if self.path is not None:
            self._digest = await asyncio.to_thread(file_digest, self.path, *self._initial.credential_files)
        if not self.deferred:  # deferred: the owner's first reload builds it
            engine = self._engine or await Engine.create(self._initial, self.metrics)
            self.current = Generation(self._initial, engine, owned=self._engine is None)
            self.metrics.config_last_reload_successful.set(1)
            self.metrics.config_last_reload_success.set_to_current_time()
        if self.path is not None:
            self._spawn(self._watch())

    async def stop(self) -> None:
        """Finish a reload under way, then close every generation (background work is cancelled); none is
        current any more (a request is answered 503, and nothing here keeps the closed engine)."""
        self._stop.set()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.current is not None:
            await self._close(self.current)
            self.current = None

    @contextmanager
    def use(self) -> Iterator[Generation]:
        """The generation a request runs on from start to end, whatever is swapped in meanwhile."""
        generation = self.current
        if generation is None:
            raise web.HTTPServiceUnavailable(text="starting\n")
        generation.requests += 1
        try:
            yield generation
        finally:
            generation.requests -= 1

    def request_reload(self) -> None:
        """SIGHUP: reload now, even when the file did not change (e.g. a rotated key file it names)."""
        if self.path is None and not self.deferred:
            log.warning("SIGHUP: no configuration file to reload")
            return
        self._spawn(self.reload(force=True))

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.server.config_reload_interval)
            except TimeoutError:
                await self.reload()

    async def reload(self, *, force: bool = False) -> bool | None:
        """Reload when the file changed (always with `force`): True when swapped, False when it failed,
        None when there was nothing to do."""
        if self.path is None and not self.deferred:
            return None
        async with self._lock:
            if self._stop.is_set() or (self.current is None and not self.deferred):
                return None
            old = self.current
            if self.path is not None:
                # The files the serving configuration read besides itself: a rotated docker config or
                # password file (a Secret) is picked up like a changed configuration.
                watched = (old.config if old is not None else self._initial).credential_files
                digest = await asyncio.to_thread(file_digest, self.path, *watched)
                if digest == self._digest and not force:
                    return None
                # Recorded before loading: a broken file is reported once, not at every check.
                self._digest = digest
            elif not force:
                return None
            try:
                loaded = await self._loader(old)
            except Exception as e:  # whatever fails, the old configuration keeps serving
                self._failed(e, old.config if old is not None else None)
                return False
            config, engine, restart = loaded.config, loaded.engine, loaded.restart_required
            self.current = Generation(config, engine)
            engine.memory.resize(config.server.in_flight_bytes)
            if self.path is not None:
                # Over the files this configuration reads (the set may have changed with it).
                self._digest = await asyncio.to_thread(file_digest, self.path, *config.credential_files)
            self.reloads += 1
            self.metrics.config_reloads.labels("success").inc()
            self.metrics.config_last_reload_successful.set(1)
            self.metrics.config_last_reload_success.set_to_current_time()
            self.metrics.config_restart_required.set(1 if restart else 0)
            log.info(
                "configuration %s reloaded: fingerprint %s (was %s)",
                self.path,
                config.fingerprint,
                old.config.fingerprint if old is not None else "none",
            )
            if old is not None:
                self._spawn(self._retire(old))
            else:  # the first engine of a deferred start (the Kubernetes source): nothing served yet
                heap.settle()
            return True

    async def _load_file(self, old: Generation | None) -> Loaded:
        """The default loader: the file, as at start-up."""
        assert self.path is not None
        config = await asyncio.to_thread(load_config, self.path)
        restart = False
        if old is not None:
            config, restart = self.keep_restart_only(config, old.config)
        # One budget for registry responses in the process: the new engine shares the old one's.
        engine = await Engine.create(config, self.metrics, memory=old.engine.memory if old else None)
        return Loaded(config, engine, restart)

    def _failed(self, error: Exception, active: Config | None) -> None:
        self.failures += 1
        self.metrics.config_reloads.labels("failure").inc()
        self.metrics.config_last_reload_successful.set(0)
        if isinstance(error, ConfigError):
            # Every problem on the one line, as `config validate` lists them.
            problems = "; ".join(f"{path or '(file)'}: {message}" for path, message in error.errors)
            log.error(
                "configuration %s not reloaded, %d problem(s): %s; still serving fingerprint %s",
                self.path,
                len(error.errors),
                problems,
                active.fingerprint if active is not None else "none",
            )
        else:
            log.error(
                "configuration %s not reloaded: %s: %s; still serving fingerprint %s",
                self.path,
                type(error).__name__,
                error,
                active.fingerprint if active is not None else "none",
                exc_info=not isinstance(error, ValueError | OSError),  # a bug deserves its traceback
            )

    def keep_restart_only(self, new: Config, active: Config) -> tuple[Config, bool]:
        """`new` with the restart-only settings of `active` (warned about), and whether any differed."""
        changed = {
            field: getattr(active.server, field)
            for field in _RESTART_ONLY
            if getattr(new.server, field) != getattr(active.server, field)
        }
        for field, kept in changed.items():
            log.warning(
                "configuration %s: server.%s changed (to %s) but only a restart applies it; keeping %s",
                self.path,
                _RESTART_ONLY[field],
                getattr(new.server, field),
                kept,
            )
        if not changed:
            return new, False
        return dataclasses.replace(new, server=dataclasses.replace(new.server, **changed)), True

    async def _retire(self, old: Generation) -> None:
        server = old.config.server
        loop = asyncio.get_running_loop()
        grace = max(server.background_timeout, server.verify_deadline, server.mutate_deadline) + 1.0
        deadline = loop.time() + grace
        while old.busy and loop.time() < deadline and not self._stop.is_set():
            with suppress(TimeoutError):  # the engine has no "idle" event to wait on: poll it
                await asyncio.wait_for(self._stop.wait(), 0.05)
        if old.busy and not self._stop.is_set():
            log.warning("closing the previous configuration's engine with work still in flight (grace over)")
        await self._close(old)
        if not self._stop.is_set():
            heap.settle()  # the closed engine's cycles collected; the new one's objects frozen

    async def _close(self, generation: Generation) -> None:
        if generation.closed or not generation.owned:
            return
        generation.closed = True
        try:
            await generation.engine.close()
        except Exception:
            log.exception("closing the engine of configuration %s failed", generation.config.fingerprint)
