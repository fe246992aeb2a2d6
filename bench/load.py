"""The load generator for the warm scenario, run in its own process (multiprocessing, spawn).

``C`` workers, each with its own ``aiohttp.ClientSession`` holding one keep-alive TLS 1.3 connection (the
client context refuses anything older), post the same ProviderRequest back to back until the time is up.
Requests that start during the warm-up are not measured. Every response is checked: HTTP 200, no
systemError, one item per key, every verdict allowed; the first failures are reported and stop the run.

Only the standard library and aiohttp are imported here, so the process's peak RSS is the load generator's.
"""

from __future__ import annotations

import asyncio
import json
import resource
import ssl
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp

__all__ = [
    "LoadResult",
    "LoadSpec",
    "check_provider_response",
    "provider_request",
    "run_load",
    "tls13_client_context",
]

_REQUEST_TIMEOUT = 10.0
_MAX_FAILURES = 5


@dataclass(frozen=True, slots=True)
class LoadSpec:
    url: str  # https://127.0.0.1:PORT/v1/verify
    ca_pem: str  # the CA that issued the server certificate
    keys: tuple[str, ...]
    concurrency: int
    warmup: float  # seconds, not measured
    duration: float  # seconds, measured
    verdict_field: str = "allowed"  # the item value's field that must be true (Ratify: "isSuccess")
    # A peer provider's answer (Ratify): items in any order (it answers in completion order), and an empty
    # systemError may be left out (Gatekeeper's own type has omitempty). Countersign's must be exact.
    peer: bool = False


@dataclass(slots=True)
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, measured requests only
    measured_seconds: float = 0.0  # end of warm-up to the completion of the last measured request
    warmup_requests: int = 0
    connections_opened: int = 0
    tls_version: str = ""
    failures: list[str] = field(default_factory=list)
    peak_rss_kib: int = 0
    cpu_seconds: float = 0.0  # this process's CPU time during the run (warm-up included)
    wall_seconds: float = 0.0  # the run's wall time (warm-up included)


def provider_request(keys: Sequence[str]) -> bytes:
    """Gatekeeper's ProviderRequest for ``keys``, as JSON."""
    return json.dumps(
        {
            "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
            "kind": "ProviderRequest",
            "request": {"keys": list(keys)},
        }
    ).encode()


def tls13_client_context(ca_pem: str) -> ssl.SSLContext:
    """A client context trusting ``ca_pem`` that refuses anything older than TLS 1.3."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def check_provider_response(
    status: int,
    payload: bytes,
    keys: tuple[str, ...],
    verdict_field: str = "allowed",
    peer: bool = False,
) -> str | None:
    """``None`` when every key came back allowed (``verdict_field`` true), else what is wrong (for the
    failure report). With ``peer``, the items may come in any order (each key once) and an empty
    ``systemError`` may be left out."""
    if status != 200:
        return f"HTTP {status}: {payload[:300]!r}"
    try:
        reply = json.loads(payload)
        response = reply["response"]
        items = response["items"]
        system_error = response.get("systemError", "") if peer else response["systemError"]
    except (ValueError, KeyError, TypeError) as error:
        return f"malformed ProviderResponse ({error}): {payload[:300]!r}"
    if system_error:
        return f"systemError: {system_error}"
    answered = [item.get("key") for item in items]
    if (sorted(map(str, answered)) != sorted(keys)) if peer else (answered != list(keys)):
        return f"items do not match the keys: {answered}"
    for item in items:
        value = item.get("value")
        if not isinstance(value, dict) or value.get(verdict_field) is not True:
            return f"{item.get('key')}: not allowed: {json.dumps(item)[:500]}"
    return None


class _Run:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.result = LoadResult()
        self.body = provider_request(spec.keys)
        self.ssl = tls13_client_context(spec.ca_pem)
        self.warm_end = 0.0
        self.end = 0.0
        self.last_done = 0.0

    async def _connection_created(
        self, session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
    ) -> None:
        self.result.connections_opened += 1

    async def worker(self) -> None:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(self._connection_created)
        connector = aiohttp.TCPConnector(limit=1, ssl=self.ssl)
        timeout = aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT)
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trace_configs=[trace]
        ) as session:
            while not self.result.failures:
                started = time.perf_counter()
                if started >= self.end:
                    break
                async with session.post(self.spec.url, data=self.body, headers=headers) as resp:
                    payload = await resp.read()
                    status = resp.status
                done = time.perf_counter()
                problem = check_provider_response(
                    status, payload, self.spec.keys, self.spec.verdict_field, self.spec.peer
                )
                if problem is not None:
                    if len(self.result.failures) < _MAX_FAILURES:
                        self.result.failures.append(problem)
                    break
                if started >= self.warm_end:
                    self.result.latencies.append(done - started)
                    self.last_done = max(self.last_done, done)
                else:
                    self.result.warmup_requests += 1

    async def probe_tls_version(self) -> str:
        """The protocol a connection with this client's context negotiates (it refuses below TLS 1.3)."""
        address = urlsplit(self.spec.url)
        assert address.hostname is not None and address.port is not None
        _reader, writer = await asyncio.open_connection(
            address.hostname, address.port, ssl=self.ssl, server_hostname=address.hostname
        )
        try:
            sslobj = writer.get_extra_info("ssl_object")
            version = sslobj.version() if isinstance(sslobj, ssl.SSLObject) else None
            return version or "unknown"
        finally:
            writer.close()
            await writer.wait_closed()

    async def run(self) -> LoadResult:
        self.result.tls_version = await self.probe_tls_version()
        cpu_started = time.process_time()
        now = time.perf_counter()
        self.warm_end = now + self.spec.warmup
        self.end = self.warm_end + self.spec.duration
        outcomes = await asyncio.gather(
            *(self.worker() for _ in range(self.spec.concurrency)), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                self.result.failures.append(f"worker raised {type(outcome).__name__}: {outcome}")
        if self.result.latencies:
            self.result.measured_seconds = self.last_done - self.warm_end
        self.result.cpu_seconds = time.process_time() - cpu_started
        self.result.wall_seconds = time.perf_counter() - now
        return self.result


def _peak_rss_kib() -> int:
    """This process's own peak RSS in KiB: ``VmHWM`` of its address space.

    Not ``ru_maxrss``: Linux carries it over fork + exec (``signal->maxrss``), so a spawned process would
    report at least its parent's resident size at the time of the spawn.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_load(spec: LoadSpec, conn: Connection) -> None:
    """Process entry point: run the load, send one :class:`LoadResult` through ``conn``."""
    try:
        result = asyncio.run(_Run(spec).run())
    except BaseException as error:  # report anything to the parent, which fails the benchmark
        result = LoadResult(failures=[f"load generator crashed: {error!r}\n{traceback.format_exc()}"])
    result.peak_rss_kib = _peak_rss_kib()
    try:
        conn.send(result)
    finally:
        conn.close()
