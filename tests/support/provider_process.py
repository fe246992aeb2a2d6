"""``python -m provider.cli serve`` in a subprocess, as a user runs it, with its memory read from /proc.

:func:`start_provider` writes a trustme certificate and the configuration (the ``server`` section is
filled in: TLS, a health port), starts the server with this checkout first on ``PYTHONPATH`` and waits for
``/readyz``. :class:`ProviderProcess` posts ProviderRequests to it and reads ``VmRSS`` / ``VmHWM``.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import trustme
import yaml

from tests.support.processes import start_logged, terminate
from tests.support.registries import LOOPBACK, free_port, write_tls_files

__all__ = ["ProviderProcess", "read_memory_kib", "start_provider"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM`` (peak RSS) and the other ``Vm*`` lines of /proc/<pid>/status, in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Vm"):
                name, _, rest = line.partition(":")
                out[name] = int(rest.split()[0])
    return out


@dataclass
class ProviderProcess:
    process: subprocess.Popen[bytes]
    port: int
    health_port: int
    ssl: ssl.SSLContext
    log_file: Path

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def memory_kib(self) -> dict[str, int]:
        return read_memory_kib(self.process.pid)

    def rss_mib(self) -> float:
        return self.memory_kib()["VmRSS"] / 1024

    def peak_rss_mib(self) -> float:
        return self.memory_kib()["VmHWM"] / 1024

    async def post(
        self, session: aiohttp.ClientSession, keys: Sequence[str], endpoint: str = "verify"
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
            "kind": "ProviderRequest",
            "request": {"keys": list(keys)},
        }
        async with session.post(f"{self.url}/v1/{endpoint}", json=body, ssl=self.ssl) as resp:
            payload = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {payload[:300]!r}")
        reply: dict[str, Any] = json.loads(payload)
        return reply

    async def metric(self, session: aiohttp.ClientSession, name: str, labels: Mapping[str, str]) -> float:
        """The value of one sample of ``/metrics`` (0 when absent)."""
        async with session.get(f"http://{LOOPBACK}:{self.health_port}/metrics") as resp:
            text = await resp.text()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(f"{name}{{{want}}} "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        terminate(self.process, timeout)


def start_provider(
    config: Mapping[str, Any],
    workdir: Path,
    *,
    server: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
    wait_ready: bool = True,
    env: Mapping[str, str] | None = None,
    log_level: str = "warning",
) -> ProviderProcess:
    """Start the provider with ``config`` (``server`` merged with TLS and ports); wait until it is ready
    (with ``wait_ready``; otherwise until its health port answers). ``env`` adds environment variables;
    ``log_level`` is the provider's ``--log-level``."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    tls = write_tls_files(ca, workdir / "tls")
    port, health_port = free_port(), free_port()
    doc = dict(config)
    doc["server"] = {
        **dict(server or {}),
        "address": LOOPBACK,
        "port": port,
        "healthPort": health_port,
        "tls": {"certFile": str(tls.cert_file), "keyFile": str(tls.key_file)},
    }
    config_file = workdir / "countersign.yaml"
    config_file.write_text(yaml.safe_dump(doc))
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        **dict(env or {}),
    }
    log_file = workdir / "provider.log"
    process = start_logged(
        [
            sys.executable,
            "-m",
            "provider.cli",
            "--log-level",
            log_level,
            "serve",
            "--config",
            str(config_file),
        ],
        log_file,
        cwd=REPO_ROOT,
        env=environment,
    )
    ctx = ssl.create_default_context(cafile=str(tls.ca_file))
    provider = ProviderProcess(process, port, health_port, ctx, log_file)
    deadline = time.monotonic() + timeout
    import urllib.error
    import urllib.request

    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the provider exited with {process.returncode}:\n{provider.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{health_port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return provider
        except urllib.error.HTTPError:
            if not wait_ready:
                return provider  # the health port answers (503: not ready)
        except OSError:
            pass
        if time.monotonic() > deadline:
            provider.stop()
            raise RuntimeError(f"the provider was not ready within {timeout:g}s:\n{provider.log_tail()}")
        time.sleep(0.1)
