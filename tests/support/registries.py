"""Real OCI registries on 127.0.0.1, started on free ports in a scratch directory and stopped afterwards.

Two kinds, chosen for what they exercise:

* ``olareg`` (pinned, built by ``tools/install.sh``): OCI distribution-spec 1.1 with the referrers API;
* ``distribution`` (Debian's ``docker-registry``, distribution 2.8): no referrers API, so clients fall back to
  the ``sha256-<hex>`` referrers tag schema.

Usage::

    with start_olareg(tmp_path) as registry:          # a Registry, started and answering GET /v2/
        ...registry.url, registry.host...
        registry.stop()                               # outage: connections are refused
        registry.start()                              # same port, same data, same content

A :class:`Registry` can also be frozen (SIGSTOP): it then accepts TCP connections but never answers, which
is how tests provoke client time-outs. Every started registry is also stopped at interpreter exit.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Self

import yaml

from tests.support.processes import LiveProcesses, StartStop, start_logged, terminate
from tests.support.tools import ensure_tool

__all__ = [
    "LOOPBACK",
    "Registry",
    "RegistryError",
    "RegistryFactory",
    "RegistryKind",
    "TlsFiles",
    "free_port",
    "free_ports",
    "start_distribution",
    "start_olareg",
    "start_registry",
    "write_tls_files",
]

LOOPBACK = "127.0.0.1"
RegistryKind = Literal["olareg", "distribution"]

_READY_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0


class RegistryError(RuntimeError):
    """A registry failed to start or to stop; the message carries the tail of its log."""


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate chain and key (PEM) for 127.0.0.1, and the CA that clients must trust."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def write_tls_files(
    ca: Any, directory: Path, *, hosts: tuple[str, ...] = (LOOPBACK, "localhost")
) -> TlsFiles:
    """Issue a server certificate for ``hosts`` from ``ca`` (a ``trustme.CA``) and write the PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    cert = ca.issue_cert(*hosts)
    files = TlsFiles(
        cert_file=directory / "server-chain.pem",
        key_file=directory / "server-key.pem",
        ca_file=directory / "ca.pem",
    )
    files.cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    files.key_file.write_bytes(cert.private_key_pem.bytes())
    files.key_file.chmod(0o600)
    files.ca_file.write_bytes(ca.cert_pem.bytes())
    return files


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` (with SO_REUSEADDR, like the registries bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, chosen below the kernel's ephemeral range.

    A port handed out by the OS (bind to port 0) comes from the ephemeral range, which outgoing connections
    draw from too: between picking a port and the server binding it, a client connection (e.g. the API
    server's to etcd) may take it. Ports below the range are never used that way.
    """
    low, _ = _ephemeral_range()
    if low > 20000:
        for _ in range(64):
            port = secrets.randbelow(low - 20000) + 20000
            if port_is_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that are free now (see :func:`free_port`)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


_live: LiveProcesses[Registry] = LiveProcesses()


@dataclass(eq=False)
class Registry(StartStop):
    """One registry process. ``start()``/``stop()``/``restart()`` keep the port and the data directory."""

    kind: RegistryKind
    workdir: Path
    port: int = field(default_factory=free_port)
    tls_files: TlsFiles | None = None
    #: olareg only: keep content in memory (lost on stop) instead of in ``data_dir``.
    memory: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _secret: str = field(default_factory=lambda: secrets.token_hex(16), init=False, repr=False)
    _frozen: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.memory and self.kind != "olareg":
            raise ValueError("only olareg can keep its content in memory")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)

    # --- what clients need -------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` or ``https://127.0.0.1:PORT``."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def tls(self) -> bool:
        return self.tls_files is not None

    @property
    def ca_file(self) -> Path | None:
        """The CA (PEM) that verifies this registry's certificate, when it serves HTTPS."""
        return self.tls_files.ca_file if self.tls_files else None

    @property
    def referrers_api(self) -> bool:
        """Whether ``GET /v2/<repo>/referrers/<digest>`` exists (else: the ``sha256-<hex>`` tag schema)."""
        return self.kind == "olareg"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context trusting only this registry's CA; ``None`` for plain HTTP."""
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))

    def oras_flags(self, prefix: str = "") -> list[str]:
        """Connection flags for the oras CLI (``prefix="to-"`` for ``oras cp`` destinations)."""
        if self.ca_file is None:
            return [f"--{prefix}plain-http"]
        return [f"--{prefix}ca-file", str(self.ca_file)]

    def oras_distribution_spec(self) -> str:
        """The ``--distribution-spec`` value that matches this registry's referrers support."""
        return "v1.1-referrers-api" if self.referrers_api else "v1.1-referrers-tag"

    # --- files -------------------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        return self.workdir / f"{self.kind}.log"

    @property
    def config_file(self) -> Path:
        return self.workdir / "config.yml"

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the registry's output (it is appended to across restarts)."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    # --- lifecycle ---------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    def start(self, timeout: float = _READY_TIMEOUT) -> Self:
        """Start the process and wait until ``GET /v2/`` answers 200; a no-op when already running."""
        if self.running:
            return self
        if not port_is_free(self.port):
            # Checked first: otherwise GET /v2/ could be answered by whatever holds the port.
            raise RegistryError(f"cannot start {self.kind}: {self.host}: address already in use")
        command = self._command()
        self._process = start_logged(command, self.log_file, cwd=self.workdir)
        self._frozen = False
        _live.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after ``timeout``) and reap it; idempotent."""
        process, self._process = self._process, None
        _live.discard(self)
        if process is None:
            return
        if process.poll() is None and self._frozen:
            self._signal(process, signal.SIGCONT)
        terminate(process, timeout)
        self._frozen = False

    def restart(self, timeout: float = _READY_TIMEOUT) -> Self:
        """Stop, then start again on the same port with the same data directory."""
        self.stop()
        return self.start(timeout)

    def freeze(self) -> None:
        """SIGSTOP the process: the kernel still accepts connections, but nothing answers (time-outs)."""
        if self._process is None or not self.running:
            raise RegistryError(f"{self.kind} at {self.host} is not running")
        self._signal(self._process, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """Undo :meth:`freeze`."""
        if self._process is not None and self._frozen:
            self._signal(self._process, signal.SIGCONT)
        self._frozen = False

    # --- internals ---------------------------------------------------------------------------------------

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)

    def _command(self) -> list[str]:
        if self.kind == "olareg":
            command = [
                str(ensure_tool("olareg")),
                "--verbosity",
                "info",
                "serve",
                "--addr",
                LOOPBACK,
                "--port",
                str(self.port),
                "--api-delete",
                # No background garbage collection while tests run ("-1" alone is rejected: it needs a unit).
                "--gc-frequency=-1s",
            ]
            if self.memory:
                command += ["--store-type", "mem"]
            else:
                command += ["--dir", str(self.data_dir)]
            if self.tls_files:
                command += [
                    "--tls-cert",
                    str(self.tls_files.cert_file),
                    "--tls-key",
                    str(self.tls_files.key_file),
                ]
            return command
        self._write_distribution_config()
        return [str(ensure_tool("docker-registry")), "serve", str(self.config_file)]

    def _write_distribution_config(self) -> None:
        http_section: dict[str, Any] = {
            "addr": self.host,
            # Fixed per Registry, so uploads survive a restart and no "No HTTP secret" warning is logged.
            "secret": self._secret,
        }
        if self.tls_files:
            http_section["tls"] = {
                "certificate": str(self.tls_files.cert_file),
                "key": str(self.tls_files.key_file),
            }
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.data_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http_section,
            "health": {"storagedriver": {"enabled": False}},
        }
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    def _probe(self) -> int:
        connection: http.client.HTTPConnection
        if self.tls:
            connection = http.client.HTTPSConnection(
                LOOPBACK, self.port, timeout=2, context=self.ssl_context()
            )
        else:
            connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2)
        try:
            connection.request("GET", "/v2/")
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                # olareg exits with status 0 when its port is taken, so "exited" is the failure, not the code.
                code = None if process is None else process.returncode
                raise RegistryError(
                    f"{self.kind} exited during start-up (status {code}) on {self.host}; "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            try:
                status = self._probe()
            except (OSError, http.client.HTTPException) as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                if status == 200 and process.poll() is None:
                    return
                last_error = f"GET /v2/ answered {status}"
            if time.monotonic() >= deadline:
                raise RegistryError(
                    f"{self.kind} did not answer GET {self.url}/v2/ within {timeout:.0f}s ({last_error}); "
                    f"log {self.log_file}:\n{self.log_tail()}"
                )
            time.sleep(0.05)


class RegistryFactory(Protocol):
    """What the ``registry_factory`` fixture returns: starts a registry owned by the calling test."""

    def __call__(self, kind: RegistryKind, *, tls: bool = False, memory: bool = False) -> Registry: ...


def start_registry(
    kind: RegistryKind,
    workdir: Path,
    *,
    tls: TlsFiles | None = None,
    memory: bool = False,
    timeout: float = _READY_TIMEOUT,
) -> Registry:
    """Start a registry of ``kind`` in ``workdir`` on a free port; use it as a context manager to stop it.

    The port is chosen just before the process binds it; if another process takes it in between, the
    start is retried on a new port (only for a first start: a restart keeps its port).
    """
    attempts = 3
    for attempt in range(1, attempts + 1):
        registry = Registry(kind=kind, workdir=workdir, tls_files=tls, memory=memory)
        try:
            return registry.start(timeout)
        except RegistryError as error:
            if attempt == attempts or "address already in use" not in str(error):
                raise
    raise AssertionError("unreachable")


def start_olareg(
    workdir: Path, tls: TlsFiles | None = None, *, memory: bool = False, timeout: float = _READY_TIMEOUT
) -> Registry:
    """Start olareg (OCI 1.1, referrers API) in ``workdir``; HTTPS when ``tls`` is given."""
    return start_registry("olareg", workdir, tls=tls, memory=memory, timeout=timeout)


def start_distribution(
    workdir: Path, tls: TlsFiles | None = None, *, timeout: float = _READY_TIMEOUT
) -> Registry:
    """Start distribution 2.8 (``docker-registry``, no referrers API) in ``workdir``; HTTPS with ``tls``."""
    return start_registry("distribution", workdir, tls=tls, timeout=timeout)
