"""Running a :class:`~tests.support.podspec.PodPlan` the way a kubelet runs a Pod, with podman.

* :class:`PodNetwork`: the Pod's own network namespace (``ip netns add``, loopback only, as a Pod sandbox
  holds one), which outlives container restarts. In it the container listens on the chart's ports
  (0.0.0.0:8443 and :8080) without touching the host's. Two kinds of forwarding, done in this process:
  *egress* (the Pod's 127.0.0.1:PORT reaches the host's 127.0.0.1:PORT: the test bed's registry) and a
  *Service* (the host's 127.0.0.1:PORT reaches the Pod's port, open only while the Pod is ready, as a
  Service routes only to ready endpoints: a stopped Pod's port refuses connections).
* :class:`Pod`: the volumes laid out as the kubelet lays them (``..data`` symlinks, tests/support/
  container.py's :class:`~tests.support.container.KubeletVolume`), ``podman run`` with the plan's options,
  then the probes executed inside the Pod's network namespace as the kubelet executes them (startup, then
  readiness until it succeeds; liveness once ready) before the Service opens.

Needs root (network namespaces, podman) and the container configuration of tools/system-packages.sh.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import http.client
import json
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

from tests.support.container import Container, KubeletVolume
from tests.support.podspec import FilesVolume, HttpProbe, MemoryVolume, PodPlan
from tests.support.processes import StartStop
from tests.support.registries import LOOPBACK

__all__ = ["Pod", "PodNetwork", "PodNotReady", "pipe"]

_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class PodNotReady(RuntimeError):
    pass


def _enter_netns(path: str) -> None:
    """Move the calling thread (only it) into the network namespace at ``path``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({path}): {os.strerror(error)}")
    finally:
        os.close(fd)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until the end or a connection error; ``writer`` closed after."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _close(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


async def _cancel_connections() -> None:
    """Cancel the forwarding of connections still open (e.g. Gatekeeper's kept-alive ones)."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class PodNetwork:
    """A network namespace of the Pod's own, with loopback up; :meth:`delete` removes it."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"countersign-pod-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self.path = f"/run/netns/{self.name}"
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True)
        # Sockets belong to the namespace they are created in: this one thread creates the Pod's.
        self._inside = ThreadPoolExecutor(
            1, f"{self.name}-ns", initializer=_enter_netns, initargs=(self.path,)
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{self.name}-fwd", daemon=True)
        self._thread.start()
        self._services: dict[int, asyncio.Server] = {}
        self._egress: list[asyncio.Server] = []

    @property
    def podman_network(self) -> str:
        return f"ns:{self.path}"

    def pod_socket(self) -> socket.socket:
        """A TCP socket in the Pod's network namespace."""
        return self._inside.submit(socket.socket, socket.AF_INET, socket.SOCK_STREAM).result()

    def _run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``make()`` on the forwarding loop; its result."""

        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(30)

    async def _forward(
        self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter], sock: socket.socket, port: int
    ) -> None:
        reader, writer = client
        sock.setblocking(False)
        try:
            await self._loop.sock_connect(sock, (LOOPBACK, port))
        except OSError:
            sock.close()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(sock=sock)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def egress(
        self,
        ports: Sequence[int],
        make_socket: Callable[[], socket.socket] | None = None,
        address: str = LOOPBACK,
    ) -> None:
        """The Pod's ``address``:PORT (127.0.0.1 by default) forwards to the host's 127.0.0.1:PORT, for each
        of ``ports`` (``make_socket`` makes the listening sockets in another namespace than this network's
        Pod)."""
        for port in ports:
            listener = (make_socket or self.pod_socket)()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((address, port))
            listener.listen(128)
            listener.setblocking(False)

            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, port: int = port) -> None:
                await self._forward((r, w), socket.socket(socket.AF_INET, socket.SOCK_STREAM), port)

            self._egress.append(self._run(functools.partial(asyncio.start_server, handle, sock=listener)))

    def open_service(self, host_port: int, pod_port: int) -> None:
        """The host's 127.0.0.1:host_port forwards to the Pod's pod_port (until :meth:`close_service`)."""
        if host_port in self._services:
            return

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            sock = await self._loop.run_in_executor(self._inside, socket.socket)
            await self._forward((r, w), sock, pod_port)

        self._services[host_port] = self._run(
            lambda: asyncio.start_server(handle, LOOPBACK, host_port, reuse_address=True)
        )

    def close_service(self, host_port: int) -> None:
        server = self._services.pop(host_port, None)
        if server is not None:
            self._run(functools.partial(_close, server))

    def http_get(self, port: int, path: str, timeout: float) -> int:
        """GET http://<pod>:port/path from inside the Pod's network namespace: the status."""
        sock = self.pod_socket()
        sock.settimeout(timeout)
        try:
            sock.connect((LOOPBACK, port))
            connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
            connection.sock = sock
            connection.request("GET", path, headers={"User-Agent": "kube-probe/1.36"})
            return connection.getresponse().status
        finally:
            sock.close()

    def delete(self) -> None:
        for port in list(self._services):
            self.close_service(port)
        for server in self._egress:
            self._run(functools.partial(_close, server))
        self._egress.clear()
        self._run(_cancel_connections)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._inside.shutdown()
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)


class Pod(StartStop):
    """One Pod: its volumes, its container (restartable), its probes and its Service ports."""

    def __init__(
        self,
        plan: PodPlan,
        directory: Path,
        network: PodNetwork,
        env: Mapping[str, str],
        *,
        services: Mapping[int, int] | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.plan, self.directory, self.network, self.env = plan, directory, network, env
        self.services = dict(services or {})
        self.ready_timeout = ready_timeout
        self.log_file = directory / "pod.log"
        self.container: Container | None = None
        self.volumes: dict[str, KubeletVolume] = {}
        self.ready_after: float | None = None
        directory.mkdir(parents=True, exist_ok=True)
        for name, volume in plan.volumes.items():
            if isinstance(volume, FilesVolume):
                files = KubeletVolume(directory / "volumes" / name, mode=volume.mode, group=volume.group)
                files.write(volume.files)
                self.volumes[name] = files

    def run_args(self, name: str) -> list[str]:
        """The whole ``podman run`` command line (after ``podman``)."""
        # This host's facts (tools/system-packages.sh): runc (crun fails on the hybrid cgroup layout) and
        # the host's ulimits (podman's defaults are refused).
        args = ["run", "--rm", "--name", name, "--runtime", "runc", "--ulimit", "host"]
        args += ["--network", self.network.podman_network, *self.plan.options]
        args += ["--stop-timeout", str(self.plan.grace_seconds)]
        for mount in self.plan.mounts:
            volume = self.plan.volumes[mount.volume]
            if isinstance(volume, MemoryVolume):
                size = f",size={volume.size_bytes}" if volume.size_bytes is not None else ""
                args += ["--tmpfs", f"{mount.path}:rw,nosuid,nodev,mode=1777{size}"]
            else:
                access = "ro" if mount.read_only else "rw"
                args += ["--volume", f"{self.volumes[mount.volume].directory}:{mount.path}:{access}"]
        if self.plan.entrypoint is not None:
            args += ["--entrypoint", json.dumps(self.plan.entrypoint)]
        return [*args, self.plan.image, *self.plan.args]

    def start(self) -> Self:
        name = f"countersign-pod-{secrets.token_hex(4)}"
        command = ["podman", *self.run_args(name)]
        began = time.monotonic()
        with self.log_file.open("ab") as log:
            log.write(f"--- starting: {' '.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=dict(self.env)
            )
        self.container = Container(name, process, self.log_file, self.env)
        try:
            self._probe_until_ready(began)
        except BaseException:
            self.container.stop(timeout=2)
            self.container = None
            raise
        self.ready_after = time.monotonic() - began
        for host_port, pod_port in self.services.items():
            self.network.open_service(host_port, pod_port)
        return self

    def stop(self) -> None:
        for host_port in self.services:
            self.network.close_service(host_port)
        if self.container is not None:
            self.container.stop(timeout=self.plan.grace_seconds)
            self.container = None

    def log_tail(self, lines: int = 40) -> str:
        return self.container.log_tail(lines) if self.container else ""

    def _probe(self, probe: HttpProbe) -> bool:
        try:
            return 200 <= self.network.http_get(probe.port, probe.path, probe.timeout) < 400
        except OSError:
            return False

    def _probe_until_ready(self, began: float) -> None:
        """The kubelet's order: the startup probe until it succeeds (liveness and readiness wait for it),
        then readiness every period from its initial delay until successThreshold successes in a row."""
        assert self.container is not None
        deadline = began + self.ready_timeout
        for kind in ("startupProbe", "readinessProbe"):
            probe = self.plan.probes.get(kind)
            if probe is None:
                continue
            next_at, successes = time.monotonic() + probe.initial_delay, 0
            while successes < probe.success_threshold:
                if self.container.process.poll() is not None:
                    raise PodNotReady(f"the container exited ({self.container.process.returncode}) "
                                      f"before its {kind} succeeded:\n{self.log_tail()}")  # fmt: skip
                if time.monotonic() > deadline:
                    raise PodNotReady(
                        f"{kind} not successful within {self.ready_timeout}s:\n{self.log_tail()}"
                    )
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at = time.monotonic() + probe.period
                successes = successes + 1 if self._probe(probe) else 0
        liveness = self.plan.probes.get("livenessProbe")
        if liveness is not None and not self._probe(liveness):
            raise PodNotReady(f"ready, but the liveness probe fails:\n{self.log_tail()}")

    @contextlib.contextmanager
    def running(self) -> Iterator[Self]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
