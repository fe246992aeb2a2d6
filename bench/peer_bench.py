"""``make bench-peers``: Countersign and Ratify v1.4.6 side by side (bench/peers.py is the entry point).

The test bed is bench/peer_setup.py: 100 tiny images in one olareg on 127.0.0.1, each signed by cosign v2
(key, legacy ``.sig``) and notation (JWS, test certificate); both providers require both signatures. Each
provider runs as its own process serving TLS 1.3 on 127.0.0.1 (Countersign: ``python -m provider.cli
serve``; Ratify: ``ratify serve --cert-dir DIR --cache-enabled``), is sent Gatekeeper's ProviderRequest
(``/v1/verify``; ``/ratify/gatekeeper/v1/verify``) with plain image references as keys, and the two
alternate (which one goes first flips every run).

Scenarios:

1. cold 1/10/50/100 keys: a fresh process per sample (empty caches; for Ratify also an empty on-disk oras
   cache); one request on a new TLS connection, timed from the POST to the parsed answer (handshake
   included); median of ``--runs`` (``--runs-large`` for 50 and 100). The server's CPU time for the
   100-key request is read from /proc (utime + stime of all its threads, 10 ms ticks).
2. the same 100-key batch with the registry behind bench/delay_proxy.py (+10 ms each way: +20 ms RTT).
3. warm: one process per provider, its cache filled with one request, then ``--clients`` keep-alive TLS
   1.3 connections posting the same 10-key request back to back for ``--duration`` s (bench/load.py, its
   own process); keys answered per second of the server's CPU, and the p99 latency.
4. memory: the same process is then sent 10,000 distinct keys (100 images x 100 tags), 100 per request,
   2 requests at a time, every one allowed; the wall time that took, its VmRSS after, and VmHWM (peak)
   over its whole life.
5. agreement: good, unsigned, other keys, only one signature (each kind), missing image: both must give
   the same allow/deny (a mismatch is printed loudly and fails the run).

Ratify's defaults that would distort the comparison, set as an operator would: its verdict cache is off
unless ``--cache-enabled`` (on), its TTL is 10 s (``--cache-ttl 1h``, as Countersign's ``verdictTTL``);
the oras store's referrer cache TTL is 10 s (``ttl: 3600``); its on-disk oras cache survives restarts
(a fresh ``localCachePath`` per process). Its log level is error (``RATIFY_LOG_LEVEL``): at warning it
logs "Digest should be used instead of tagged reference" for every tag key of every request, cache hits
included; Countersign's at warning logs nothing on this path. Both verify deadlines are 29 s.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.client
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import trustme

from bench.delay_proxy import DelayProxy
from bench.load import LoadResult, LoadSpec, check_provider_response, provider_request, tls13_client_context
from bench.peer_setup import (
    TestBed,
    countersign_config,
    countersign_server,
    ensure_bed_tools,
    ratify_config,
    served_test_bed,
)
from bench.read_floor import floor_samples
from bench.stats import nearest_rank
from tests.support.processes import start_logged, terminate
from tests.support.provider_process import read_memory_kib, start_provider
from tests.support.registries import LOOPBACK, free_port, write_tls_files
from tests.support.tools import ToolNotFoundError, tools_bin

__all__ = ["main"]

_T = TypeVar("_T")

log = logging.getLogger("bench.peers")

_REQUEST_TIMEOUT = 60.0
_START_TIMEOUT = 60.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: The cold size of issue 14's 2x target, whose reads alone bench-peers also measures (bench.read_floor).
_FLOOR_SIZE = 10
#: A registry no policy of the bench allows (a loopback address Countersign refuses unless configured).
_REFUSED_HOST = "127.0.0.2:1"
COUNTERSIGN, RATIFY = "Countersign", "Ratify"
PEERS = (COUNTERSIGN, RATIFY)


class PeersError(RuntimeError):
    """A measurement would be meaningless (a process failed, a key was not allowed)."""


# --- the two servers ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Running:
    name: str
    process: subprocess.Popen[bytes]
    url: str  # the verify endpoint
    ca_pem: str
    log_file: Path
    verdict_field: str
    stop: Callable[[], None]

    def cpu_seconds(self) -> float:
        """utime + stime of every thread (and reaped children) so far, from /proc/PID/stat."""
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        # fields[0] is the state (field 3); utime, stime, cutime, cstime are fields 14 to 17.
        return sum(int(value) for value in fields[11:15]) / _CLK_TCK

    def memory_mib(self) -> dict[str, float]:
        """``VmRSS`` and ``VmHWM`` (peak), in MiB."""
        kib = read_memory_kib(self.process.pid)
        return {name: kib[name] / 1024 for name in ("VmRSS", "VmHWM")}

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def post(session: aiohttp.ClientSession, server: Running, keys: Sequence[str]) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    async with session.post(server.url, data=provider_request(keys), headers=headers) as resp:
        return resp.status, await resp.read()


def new_session(server: Running, connections: int = 1) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, ssl=tls13_client_context(server.ca_pem))
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT))


def start_countersign(
    bed: TestBed, hosts: Sequence[str], workdir: Path, server: Mapping[str, Any] | None = None
) -> Running:
    """Countersign on the bed; ``server``: settings over bench-peers' own (``countersign_server``)."""
    settings = {**countersign_server(), **(server or {})}
    provider = start_provider(
        countersign_config(bed, hosts), workdir, server=settings, timeout=_START_TIMEOUT
    )
    return Running(
        COUNTERSIGN,
        provider.process,
        f"{provider.url}/v1/verify",
        (workdir / "tls" / "ca.pem").read_text(),
        provider.log_file,
        "allowed",
        provider.stop,
    )


def ratify_binary() -> Path:
    """The pinned Ratify in the tools cache (never one on PATH: the version is part of the comparison)."""
    path = tools_bin() / "ratify"
    if not os.access(path, os.X_OK):
        raise ToolNotFoundError("ratify")
    return path


def start_ratify(bed: TestBed, workdir: Path) -> Running:
    """``ratify serve`` with a fresh HOME, certificate directory and on-disk oras cache; ready once an
    empty ProviderRequest is answered with HTTP 200 over TLS."""
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    # notation's default trust store directory: without it, every notation verification logs that it is
    # missing (verificationCerts below is where the certificate is).
    (home / ".ratify" / "ratify-certs" / "notation" / "truststore").mkdir(parents=True, exist_ok=True)
    tls = write_tls_files(trustme.CA(), workdir / "tls")
    cert_dir = workdir / "certs"
    cert_dir.mkdir(exist_ok=True)
    (cert_dir / "tls.crt").write_bytes(tls.cert_file.read_bytes())
    (cert_dir / "tls.key").write_bytes(tls.key_file.read_bytes())
    config_file = workdir / "config.json"
    config_file.write_text(json.dumps(ratify_config(bed, workdir / "oras-cache"), indent=2))
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        # error, not warning: at warning Ratify logs "Digest should be used instead of tagged reference"
        # for every tag key of every request, cache hits included (about a third of its warm CPU time).
        "RATIFY_LOG_LEVEL": "error",
    }
    command = [
        str(ratify_binary()),
        "serve",
        "--config",
        str(config_file),
        "--http",
        f"{LOOPBACK}:{port}",
        "--cert-dir",
        str(cert_dir),
        "--cache-enabled",
        "--cache-ttl",
        "1h",
    ]
    log_file = workdir / "ratify.log"
    process = start_logged(command, log_file, cwd=workdir, env=env)
    running = Running(
        RATIFY,
        process,
        f"https://{LOOPBACK}:{port}/ratify/gatekeeper/v1/verify",
        tls.ca_file.read_text(),
        log_file,
        "isSuccess",
        lambda: terminate(process, 10.0),
    )
    context = tls13_client_context(running.ca_pem)
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise PeersError(f"ratify exited with {process.returncode}:\n{running.log_tail()}")
        try:
            connection = http.client.HTTPSConnection(LOOPBACK, port, context=context, timeout=2)
            try:
                connection.request("POST", "/ratify/gatekeeper/v1/verify", provider_request([]))
                if connection.getresponse().status == 200:
                    return running
            finally:
                connection.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            running.stop()
            raise PeersError(f"ratify was not ready within {_START_TIMEOUT:g}s:\n{running.log_tail()}")
        time.sleep(0.05)


# --- answers ---------------------------------------------------------------------------------------------


def verdicts(server: Running, status: int, payload: bytes, keys: Sequence[str]) -> dict[str, str]:
    """Each key's outcome: ``allow``, ``deny`` (decided, not allowed) or ``error: ...`` (an item error, an
    undecided key, a system error)."""
    if status != 200:
        return {key: f"error: HTTP {status}" for key in keys}
    response = json.loads(payload)["response"]
    system_error = response.get("systemError") or ""
    out = {key: f"error: not answered ({system_error[:120]})" for key in keys}
    for item in response.get("items") or []:
        key = item.get("key")
        value = item.get("value")
        if item.get("error"):
            out[key] = f"error: {str(item['error'])[:160]}"
        elif isinstance(value, dict):
            out[key] = "allow" if value.get(server.verdict_field) is True else "deny"
        else:
            out[key] = f"error: value {json.dumps(value)[:120]}"
    return out


def require_allowed(server: Running, status: int, payload: bytes, keys: Sequence[str]) -> None:
    problem = check_provider_response(status, payload, tuple(keys), server.verdict_field, peer=True)
    if problem is not None:
        raise PeersError(f"{server.name}: {problem}\n{server.log_tail()}")


# --- scenarios -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Results:
    cold: dict[str, dict[int, list[float]]] = field(default_factory=dict)  # peer -> keys -> seconds
    cold_cpu: dict[str, list[float]] = field(default_factory=dict)  # peer -> CPU s of the 100-key batch
    delayed: dict[str, list[float]] = field(default_factory=dict)
    warm: dict[str, dict[str, float]] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    agreement: list[dict[str, str]] = field(default_factory=list)
    load: list[tuple[float, float]] = field(default_factory=list)  # (time, 1-minute load average)
    #: the reads alone (bench.read_floor, a bare aiohttp client): scenario ("cold10", "delayed") -> seconds
    floor: dict[str, list[float]] = field(default_factory=dict)
    #: Countersign's answer alone: a fresh process's first request of keys that need no registry (seconds)
    answer: list[float] = field(default_factory=list)


def start(name: str, bed: TestBed, hosts: Sequence[str], workdir: Path) -> Running:
    if name == COUNTERSIGN:
        return start_countersign(bed, hosts, workdir)
    return start_ratify(bed, workdir)


async def _timed_post(server: Running, keys: Sequence[str]) -> tuple[float, float, int, bytes]:
    """One request on a new connection: wall seconds, server CPU seconds, status and body."""
    async with new_session(server) as session:
        cpu = server.cpu_seconds()
        started = time.perf_counter()
        status, payload = await post(session, server, keys)
        elapsed = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu
    return elapsed, cpu, status, payload


async def timed_batch(server: Running, keys: Sequence[str]) -> tuple[float, float]:
    """One request on a new connection: (wall seconds, server CPU seconds); every key must be allowed."""
    elapsed, cpu, status, payload = await _timed_post(server, keys)
    require_allowed(server, status, payload, keys)
    return elapsed, cpu


async def _answer_alone(server: Running, size: int) -> float:
    """Wall seconds of one request of ``size`` keys the policy refuses before any registry read (a host
    it does not allow), on a new connection: what answering costs, without verifying."""
    keys = [f"{_REFUSED_HOST}/peers/none-{index:03d}:v1" for index in range(size)]
    elapsed, _, status, payload = await _timed_post(server, keys)
    outcomes = verdicts(server, status, payload, keys)
    if "allow" in outcomes.values():
        raise PeersError(f"{server.name}: the refused keys were answered {outcomes}")
    return elapsed


def fresh_processes(
    starters: Mapping[str, Callable[[Path], Running]],
    runs: int,
    workdir: Path,
    measure: Callable[[Running, int], _T],
) -> dict[str, list[_T]]:
    """``runs`` rounds of one fresh process per starter, in alternating order (forward, then backward),
    each measured by ``measure(server, run)``, then stopped: each starter's measurements in run order. A
    process's directory is ``workdir/<the starter's position>-<run>``."""
    names = list(starters)
    out: dict[str, list[_T]] = {name: [] for name in names}
    for run in range(runs):
        for name in names if run % 2 == 0 else names[::-1]:
            server = starters[name](workdir / f"{names.index(name)}-{run}")
            try:
                out[name].append(measure(server, run))
            finally:
                server.stop()
    return out


def answer_samples(bed: TestBed, hosts: Sequence[str], size: int, runs: int, workdir: Path) -> list[float]:
    """``runs`` fresh Countersign processes, each's first request: :func:`_answer_alone`."""

    def answer(server: Running, run: int) -> float:
        return asyncio.run(_answer_alone(server, size))

    starter = functools.partial(start, COUNTERSIGN, bed, hosts)
    return fresh_processes({COUNTERSIGN: starter}, runs, workdir / "answer", answer)[COUNTERSIGN]


def cold_samples(
    bed: TestBed,
    keys: Sequence[str],
    hosts: Sequence[str],
    runs: int,
    workdir: Path,
    label: str,
    peers: Sequence[str] = PEERS,
) -> dict[str, list[tuple[float, float]]]:
    """``runs`` fresh processes per provider (of ``peers``), alternating, one batch of ``keys`` each."""

    def batch(server: Running, run: int) -> tuple[float, float]:
        return asyncio.run(timed_batch(server, keys))

    starters = {name: functools.partial(start, name, bed, hosts) for name in peers}
    out = fresh_processes(starters, runs, workdir / label, batch)
    for name in peers:
        median_ms = statistics.median(s for s, _ in out[name]) * 1000
        log.warning("%s %s: median %.1f ms over %d runs", label, name, median_ms, runs)
    return out


def run_load_process(spec: LoadSpec) -> LoadResult:
    from bench.scenarios import run_load_process as run

    return asyncio.run(run(spec))


async def fill_memory(server: Running, keys: Sequence[str], batch: int, parallel: int) -> None:
    """Send ``keys`` ``batch`` at a time, ``parallel`` requests at once; every key must be allowed."""
    chunks = [keys[i : i + batch] for i in range(0, len(keys), batch)]
    queue = list(reversed(chunks))
    async with new_session(server, parallel) as session:

        async def worker() -> None:
            while queue:
                chunk = queue.pop()
                status, payload = await post(session, server, chunk)
                require_allowed(server, status, payload, chunk)

        await asyncio.gather(*(worker() for _ in range(parallel)))


async def agreement(server: Running, bed: TestBed) -> dict[str, str]:
    keys = [case.key for case in bed.agreement]
    async with new_session(server) as session:
        status, payload = await post(session, server, keys)
    return verdicts(server, status, payload, keys)


def long_lived(name: str, bed: TestBed, options: Options, workdir: Path, results: Results) -> None:
    """Agreement, then warm throughput, then 10,000 distinct keys, in one process."""
    server = start(name, bed, [bed.registry.host], workdir / f"long-{name}")
    try:
        outcome = asyncio.run(agreement(server, bed))
        for case in bed.agreement:
            row = next((r for r in results.agreement if r["case"] == case.name), None)
            if row is None:
                row = {"case": case.name, "expected": "allow" if case.allowed else "deny"}
                results.agreement.append(row)
            row[name] = outcome[case.key]
        keys = tuple(bed.keys()[: options.warm_keys])
        asyncio.run(timed_batch(server, keys))  # fills the cache: the measured requests are warm
        spec = LoadSpec(
            url=server.url,
            ca_pem=server.ca_pem,
            keys=keys,
            concurrency=options.clients,
            warmup=options.warmup,
            duration=options.duration,
            verdict_field=server.verdict_field,
            peer=True,
        )
        cpu = server.cpu_seconds()
        load = run_load_process(spec)
        cpu = server.cpu_seconds() - cpu
        if load.failures:
            raise PeersError(f"{name} warm: " + "\n  ".join(load.failures))
        requests = load.warmup_requests + len(load.latencies)
        results.warm[name] = {
            "keys_per_cpu_second": requests * len(keys) / cpu if cpu > 0 else float("inf"),
            "keys_per_second": len(load.latencies) * len(keys) / load.measured_seconds,
            "p99_s": nearest_rank(load.latencies, 99),
            "median_s": statistics.median(load.latencies),
            "requests": float(requests),
            "server_cpu_s": cpu,
            "tls": 1.3 if load.tls_version == "TLSv1.3" else 0.0,
        }
        if load.tls_version != "TLSv1.3":
            raise PeersError(f"{name} negotiated {load.tls_version}, not TLS 1.3")
        tagged = bed.tagged_keys()
        started = time.perf_counter()
        asyncio.run(fill_memory(server, tagged, 100, 2))
        memory = server.memory_mib()
        results.memory[name] = {
            "rss_mib": memory["VmRSS"],
            "peak_rss_mib": memory["VmHWM"],
            "keys": float(len(tagged)),
            "seconds": time.perf_counter() - started,
        }
        log.warning("%s: warm %s, memory %s", name, results.warm[name], results.memory[name])
    finally:
        server.stop()


def sample_load(results: Results, stop: threading.Event) -> None:
    while True:
        results.load.append((time.time(), os.getloadavg()[0]))
        if stop.wait(5.0):
            return


# --- output ----------------------------------------------------------------------------------------------


def _ratio(countersign: float, ratify: float, higher_is_better: bool = False) -> str:
    """How many times better Countersign's figure is than Ratify's (> 1: Countersign ahead), whichever
    way the row counts: a time or a size (lower is better), or a throughput (higher is better)."""
    better, worse = (countersign, ratify) if higher_is_better else (ratify, countersign)
    return f"{better / worse:.2f}" if worse > 0 else "-"


def table(results: Results, options: Options) -> list[str]:
    # scenario, Countersign, Ratify, unit, and for the cold rows the fastest sample of each (seconds): on a
    # machine shared with other work the median moves with the load, the minimum much less.
    rows: list[tuple[str, float, float, str, tuple[float, float] | None]] = []

    def cold(scenario: str, samples: dict[str, list[float]]) -> None:
        """A row of the two providers' median ``samples`` (seconds, shown in ms) and their fastest."""
        med = {n: statistics.median(samples[n]) * 1000 for n in PEERS}
        rows.append(
            (scenario, med[COUNTERSIGN], med[RATIFY], "ms", (min(samples[COUNTERSIGN]), min(samples[RATIFY])))
        )

    for size in options.sizes:
        cold(
            f"cold, fresh process, {size} key{'s' if size > 1 else ''} (median of {options.runs_for(size)})",
            {n: results.cold[n][size] for n in PEERS},
        )
    cold(
        f"cold {options.sizes[-1]} keys, registry +{2 * options.delay_ms:g} ms RTT (delay proxy, "
        f"median of {options.runs_large})",
        results.delayed,
    )
    cpu = {n: statistics.median(results.cold_cpu[n]) for n in PEERS}
    rows.append(
        (
            f"server CPU for the cold {options.sizes[-1]}-key batch (median)",
            cpu[COUNTERSIGN],
            cpu[RATIFY],
            "s",
            None,
        )
    )

    def both(
        scenario: str, of: dict[str, dict[str, float]], name: str, unit: str, scale: float = 1.0
    ) -> tuple[str, float, float, str, None]:
        """A row of the two providers' ``of[peer][name]`` (times ``scale``)."""
        return scenario, of[COUNTERSIGN][name] * scale, of[RATIFY][name] * scale, unit, None

    warm, mem = results.warm, results.memory
    n_keys = int(mem[COUNTERSIGN]["keys"])
    rows += [
        both(
            f"warm {options.warm_keys}-key batches, {options.clients} clients: keys per server CPU-second",
            warm,
            "keys_per_cpu_second",
            "",
        ),
        both("warm: keys per second (wall)", warm, "keys_per_second", ""),
        both("warm p99", warm, "p99_s", "ms", 1000),
        both(
            f"{n_keys:,} distinct keys (new tags of cached images), 100 a request, 2 at a time: wall",
            mem,
            "seconds",
            "s1",
        ),
        both(f"RSS after {n_keys:,} more distinct keys", mem, "rss_mib", "MiB"),
        both("peak RSS (VmHWM) after all of the above", mem, "peak_rss_mib", "MiB"),
    ]

    def fmt(value: float, unit: str) -> str:
        if unit == "ms":
            return f"{value:.1f} ms"
        if unit == "s":
            return f"{value:.3f} s"
        if unit == "s1":
            return f"{value:.1f} s"
        if unit == "MiB":
            return f"{value:.0f} MiB"
        return f"{value:,.0f}"

    lines = ["| scenario | Countersign | Ratify | Countersign ahead by (x) |", "|---|---|---|---|"]
    for scenario, c, r, unit, fastest in rows:
        cells = [fmt(c, unit), fmt(r, unit), _ratio(c, r, higher_is_better=unit == "")]
        if fastest is not None:
            cmin, rmin = fastest
            cells = [f"{cells[0]} (min {cmin * 1000:.1f})", f"{cells[1]} (min {rmin * 1000:.1f})"]
            cells.append(f"{_ratio(c, r)} (min {_ratio(cmin, rmin)})")
        lines.append(f"| {scenario} | {' | '.join(cells)} |")
    return lines


def target_lines(results: Results, options: Options) -> list[str]:
    """Issue 14's two cold targets: Ratify's median divided by the factor asked for (the budget), beside
    what the batch's reads alone cost a bare aiohttp client on the same registry (bench.read_floor, no
    verification around them), for the 10-key batch what Countersign's answer alone costs (a fresh
    process's first request of keys needing no registry), what that leaves of the budget for verifying,
    and Countersign's median: all from this run."""
    scenarios: list[tuple[str, float, dict[str, list[float]], list[float], list[float]]] = []
    if f"cold{_FLOOR_SIZE}" in results.floor:
        by_peer = {n: results.cold[n][_FLOOR_SIZE] for n in PEERS}
        floor = results.floor[f"cold{_FLOOR_SIZE}"]
        scenarios.append((f"cold {_FLOOR_SIZE} keys, 2x", 2.0, by_peer, floor, results.answer))
    if "delayed" in results.floor:
        label = f"cold {options.sizes[-1]} keys at +{2 * options.delay_ms:g} ms RTT, 3x"
        scenarios.append((label, 3.0, results.delayed, results.floor["delayed"], []))
    lines = [
        "| target | Ratify | its budget | the reads alone (bare aiohttp) | the answer alone | left for "
        "verifying | Countersign |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, factor, by_peer, floor, answer in scenarios:
        ratify, countersign = (statistics.median(by_peer[n]) * 1000 for n in (RATIFY, COUNTERSIGN))
        budget, reads = ratify / factor, statistics.median(floor) * 1000
        answered = statistics.median(answer) * 1000 if answer else 0.0
        cells = [f"{ratify:.1f} ms", f"{budget:.1f} ms", f"{reads:.1f} ms"]
        cells.append(f"{answered:.1f} ms" if answer else "not measured")
        cells += [f"{budget - reads - answered:.1f} ms", f"{countersign:.1f} ms"]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return lines


def agreement_lines(results: Results) -> tuple[list[str], bool]:
    lines = ["| agreement image | expected | Countersign | Ratify |", "|---|---|---|---|"]
    agreed = True
    for row in results.agreement:
        c, r = row.get(COUNTERSIGN, "?"), row.get(RATIFY, "?")

        def verdict(outcome: str) -> str:
            return "allow" if outcome == "allow" else "deny"

        mark = ""
        if verdict(c) != verdict(r) or verdict(c) != row["expected"]:
            agreed = False
            mark = " **MISMATCH**"
        lines.append(f"| {row['case']}{mark} | {row['expected']} | {c} | {r} |")
    return lines, agreed


# --- main ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    images: int
    runs: int
    runs_large: int
    clients: int
    warm_keys: int
    duration: float
    warmup: float
    delay_ms: float
    extra_tags: int
    sign_workers: int
    json_file: Path | None
    sizes: tuple[int, ...] = (1, 10, 50, 100)
    keep: Path | None = None

    def runs_for(self, size: int) -> int:
        """Fresh processes per provider for a cold batch of ``size`` keys."""
        return self.runs if size <= 10 else self.runs_large


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="signed images (the largest cold batch)")
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per provider, 1 and 10 keys")
    parser.add_argument("--runs-large", type=int, default=5, help="the same for 50 and 100 keys and +RTT")
    parser.add_argument("--clients", type=int, default=4, help="warm: keep-alive connections")
    parser.add_argument("--warm-keys", type=int, default=10, help="warm: keys per request")
    parser.add_argument("--duration", type=float, default=10.0, help="warm: measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm: unmeasured seconds before")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="delay proxy: ms each way")
    parser.add_argument(
        "--extra-tags", type=int, default=100, help="memory: tags per image (keys = x images)"
    )
    parser.add_argument("--sign-workers", type=int, default=4, help="threads signing with the CLIs")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write results here")
    parser.add_argument(
        "--keep", type=Path, default=None, metavar="DIR", help="work in DIR (created) and keep the logs"
    )
    args = parser.parse_args(argv)
    if not 10 <= args.images <= 1000 or args.images % 10:
        parser.error("--images must be a multiple of 10 between 10 and 1000")
    for name in ("runs", "runs_large", "clients", "warm_keys", "extra_tags", "sign_workers"):
        if not 1 <= getattr(args, name) <= 1000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 1000")
    sizes = tuple(s for s in (1, 10, args.images // 2, args.images) if s <= args.images)
    return Options(
        images=args.images,
        runs=args.runs,
        runs_large=args.runs_large,
        clients=args.clients,
        warm_keys=min(args.warm_keys, args.images),
        duration=args.duration,
        warmup=args.warmup,
        delay_ms=args.delay_ms,
        extra_tags=args.extra_tags,
        sign_workers=args.sign_workers,
        json_file=args.json,
        sizes=tuple(sorted(set(sizes))),
        keep=args.keep,
    )


def run(options: Options, workdir: Path, results: Results) -> TestBed:
    with served_test_bed(workdir, options.images, options.extra_tags, options.sign_workers) as bed:
        registry = bed.registry
        log.warning("test bed ready in %.1f s", bed.sign_seconds)
        for name in PEERS:
            long_lived(name, bed, options, workdir, results)
        hosts = [registry.host]
        for size in options.sizes:
            runs = options.runs_for(size)
            samples = cold_samples(bed, bed.keys()[:size], hosts, runs, workdir, f"cold{size}")
            for name in PEERS:
                results.cold.setdefault(name, {})[size] = [s for s, _ in samples[name]]
                if size == options.sizes[-1]:
                    results.cold_cpu[name] = [c for _, c in samples[name]]
            if size == _FLOOR_SIZE:
                floor = floor_samples(registry.url, bed.repositories()[:size], runs)
                results.floor[f"cold{size}"] = [s for s, _ in floor]
                results.answer = answer_samples(bed, hosts, size, runs, workdir)
        with DelayProxy(registry.host, options.delay_ms, workdir / "delay-proxy.log") as proxy:
            keys = bed.keys(proxy.host)[: options.sizes[-1]]
            samples = cold_samples(
                bed, keys, [registry.host, proxy.host], options.runs_large, workdir, "delayed"
            )
            for name in PEERS:
                results.delayed[name] = [s for s, _ in samples[name]]
            repositories = bed.repositories()[: options.sizes[-1]]
            floor = floor_samples(f"http://{proxy.host}", repositories, options.runs_large)
            results.floor["delayed"] = [s for s, _ in floor]
    return bed


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    options = parse_args(argv)
    try:
        ensure_bed_tools()
        ratify_binary()
    except ToolNotFoundError as error:
        print(f"bench-peers: {error}", file=sys.stderr)
        print(
            "bench-peers: `make bench-peers` builds every tool it needs (Ratify: tools/install.sh ratify)",
            file=sys.stderr,
        )
        return 2
    results = Results()
    stop = threading.Event()
    sampler = threading.Thread(target=sample_load, args=(results, stop), daemon=True)
    load_start = os.getloadavg()
    started = time.perf_counter()
    sampler.start()
    try:
        if options.keep is not None:
            options.keep.mkdir(parents=True, exist_ok=True)
            bed = run(options, options.keep, results)
        else:
            with tempfile.TemporaryDirectory(prefix="countersign-peers-") as scratch:
                bed = run(options, Path(scratch), results)
    except RuntimeError as error:  # PeersError, BenchError, a provider that did not start, a bed not built
        print(f"bench-peers: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - started
    load_end = os.getloadavg()
    during = [value for _, value in results.load]
    lines = table(results, options)
    targets = target_lines(results, options)
    agree, agreed = agreement_lines(results)
    cpus = len(os.sched_getaffinity(0))
    print(
        f"Countersign vs Ratify v1.4.6: {options.images} images (cosign v2 legacy .sig + notation JWS, both "
        f"required), olareg on {LOOPBACK}, both providers over TLS 1.3; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({cpus} usable), {platform.platform()}"
    )
    print()
    print("\n".join(lines))
    print()
    print("\n".join(targets))
    print()
    print("\n".join(agree))
    print()
    print(
        f"load average (1 min): {load_start[0]:.2f} at start, {statistics.mean(during):.2f} mean and "
        f"{max(during):.2f} max during the run (sampled every 5 s), {load_end[0]:.2f} at end; "
        f"{cpus} usable cores. Wall time {wall:.0f} s (signing {bed.sign_seconds:.0f} s)."
    )
    print(
        "Ratify set as an operator would for a fair run: --cache-enabled (off by default), --cache-ttl 1h "
        "(default 10 s; Countersign verdictTTL 1h), oras store cacheEnabled with ttl 3600 (default 10 s), "
        "a fresh on-disk oras cache (localCachePath) per process (the default ~/.ratify/local_oras_cache "
        "survives restarts), RATIFY_LOG_LEVEL=error (at warning it logs a line for "
        "every tag key of every request; Countersign --log-level warning logs nothing here); both verify "
        "deadlines 29 s. Countersign's cosign verifier set to Ratify's work: legacyAttestations false (it "
        "reads signatures only; by default Countersign also reads the legacy .att tag). Cold times include "
        "the client's TLS handshake on a new connection."
    )
    if options.json_file is not None:
        document = {
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
            "cold_s": results.cold,
            "cold_cpu_s": results.cold_cpu,
            "delayed_s": results.delayed,
            "warm": results.warm,
            "memory": results.memory,
            "agreement": results.agreement,
            "reads_alone_s": results.floor,
            "answer_alone_s": results.answer,
            "load_average": {"start": load_start, "end": load_end, "samples": results.load},
            "table": lines,
            "targets": targets,
        }
        options.json_file.write_text(json.dumps(document, indent=2) + "\n")
    if not agreed:
        print("\n" + "!" * 78, file=sys.stderr)
        print("bench-peers: VERDICT MISMATCH on the agreement images (see the table above)", file=sys.stderr)
        print("!" * 78, file=sys.stderr)
        return 3
    return 0
