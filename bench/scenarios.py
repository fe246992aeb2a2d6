"""The benchmark itself (bench/run.py is the entry point; it imports this module only when run as main).

Set-up: olareg (OCI 1.1 referrers API) in a temporary directory on 127.0.0.1; 50 distinct images, each in
its own repository with an SPDX SBOM attached with oras, pushed once in parallel threads; policy: every
image must pass the ``sbom`` verifier (allOf).

Scenarios:

1. cold verify: a fresh :class:`Engine` (empty caches, new connections) per measured batch of 1, 10 and
   50 tag references, timing ``engine.verify(keys, budget)`` only (engine creation and close are untimed);
   one unmeasured run first absorbs one-off costs (lazy imports, first connections to olareg).
2. warm /v1/verify: the real server (``build_app`` + ``CertificateReloader`` + ``GuardedSite``, TLS 1.3 with a
   trustme certificate) in this process; its cache is warmed with one request, then a load generator in a
   separate process posts 10-key requests over ``C`` keep-alive connections for a fixed time.
3. cosign (bench/cosign_bench.py): the CPU cost of one verification per signature format (pure core, no
   I/O), and a cold 10-image batch on the same olareg, each image signed once with the real cosign CLIs
   (bundle by cosign v3, legacy ``.sig`` and OCI 1.1 referrer by cosign2; key-based, offline).
4. notation (bench/notation_bench.py): the CPU cost of parsing, verifying and judging one recorded
   notation-go envelope (JWS, COSE, JWS with an RFC 3161 timestamp), and a cold 10-image batch on the same
   olareg, each image signed once with the real notation CLI (half JWS, half COSE).
5. memory (bench/memory_bench.py): the real server as a subprocess, its RSS after 100,000 distinct cached
   verdicts and its peak RSS under the fat-manifest attack (16, 64 and 256 keys each naming a distinct
   ~3.9 MB manifest), from a registry on 127.0.0.1 that generates the manifests.
6. peak RSS (``ru_maxrss``) of this process after each row, and of the load generator process (``VmHWM``);
   for the memory rows, the server subprocess's own figure.

Every verdict must be "allowed": anything else (a denial, an undecided key, an HTTP error) fails the run
with a non-zero exit status, because a benchmark that measures errors is worthless.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import multiprocessing
import os
import platform
import ssl
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import trustme
from aiohttp import web

from bench.load import LoadResult, LoadSpec, check_provider_response, run_load
from bench.stats import Row, batch_row, summarize, summary_row
from provider.config import Config, parse_config
from provider.engine import Engine
from provider.outcome import Decided, Outcome
from provider.server import build_app, guarded_site
from provider.tls import CertificateReloader
from tests.support.images import OrasError, PushedImage, attach_sbom, push_image
from tests.support.registries import LOOPBACK, Registry, RegistryError, start_olareg
from tests.support.tools import ToolNotFoundError, ensure_tool

__all__ = ["BenchError", "main"]

log = logging.getLogger("bench")

COLD_BUDGET = 30.0  # seconds: engine.verify's budget in the cold scenario
WARM_KEYS = 10
_LOAD_GRACE = 60.0  # seconds past warm-up + duration before the load generator is declared hung


class BenchError(RuntimeError):
    """The benchmark cannot give a meaningful number (a verdict was not allowed, a process failed)."""


@dataclass(frozen=True, slots=True)
class Options:
    runs_small: int
    runs_large: int
    duration: float
    warmup: float
    concurrency: int
    push_workers: int
    sign_workers: int
    json_file: Path | None
    trace_file: Path | None = None
    trace_keys: int = 100


@dataclass(slots=True)
class Report:
    environment: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    push_seconds: float = 0.0
    sign_seconds: float = 0.0
    notation_sign_seconds: float = 0.0
    load_generator_peak_rss_mib: float = 0.0
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


# --- set-up --------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "aiohttp": aiohttp.__version__,
        "cpu_count": os.cpu_count(),
        "usable_cpus": affinity,
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def push_images(registry: Registry, count: int, workers: int) -> list[PushedImage]:
    """``count`` distinct images (one repository each), each with an SPDX SBOM, pushed in parallel."""

    def one(index: int) -> PushedImage:
        image = push_image(registry, f"bench/app-{index:02d}", "v1", seed=f"countersign-bench-{index}")
        attach_sbom(registry, image, fmt="spdx")
        return image

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-push") as pool:
        return list(pool.map(one, range(count)))


def bench_config(registry: Registry, server: Mapping[str, Any] | None = None) -> Config:
    doc: dict[str, Any] = {
        "registries": {registry.host: {"insecure": True}},
        "verifiers": {"sbom": {"type": "sbom"}},
        "policies": [{"name": "default", "scopes": ["*"], "allOf": ["sbom"]}],
        # The warm run must stay warm: no tag re-resolution or verdict expiry while it is measured.
        "cache": {"tagTTL": 3600, "verdictTTL": 3600},
    }
    if server is not None:
        doc["server"] = dict(server)
    return parse_config(doc)


def require_allowed(keys: Sequence[str], results: Mapping[str, Outcome]) -> None:
    for key in keys:
        outcome = results.get(key)
        if not isinstance(outcome, Decided):
            raise BenchError(f"{key} was not decided: {outcome!r}")
        value = outcome.value
        if not isinstance(value, dict) or value.get("allowed") is not True:
            raise BenchError(f"{key} was not allowed: {json.dumps(value)[:800]}")


# --- 1. cold verification ------------------------------------------------------------------------------


async def cold_run(config: Config, keys: Sequence[str]) -> float:
    """One batch through a fresh engine; returns the seconds ``engine.verify`` took."""
    engine = await Engine.create(config)
    try:
        started = time.perf_counter()
        results = await engine.verify(keys, COLD_BUDGET)
        elapsed = time.perf_counter() - started
    finally:
        await engine.close()
    require_allowed(keys, results)
    return elapsed


async def cold_scenarios(config: Config, images: Sequence[PushedImage], options: Options) -> list[Row]:
    refs = [image.reference for image in images]
    await cold_run(config, refs[:1])  # unmeasured: one-off costs
    rows: list[Row] = []
    for size, runs in ((1, options.runs_small), (10, options.runs_small), (50, options.runs_large)):
        keys = refs[:size]
        samples: list[float] = []
        for _ in range(runs):
            gc.collect()
            samples.append(await cold_run(config, keys))
        row = batch_row(f"cold verify, {size} image{'s' if size > 1 else ''}", samples, size)
        rows.append(row)
        log.info("cold batch of %d: median %.1f ms", size, row.summary.median * 1000)
    return rows


# --- 2. warm /v1/verify --------------------------------------------------------------------------------


def write_server_tls(directory: Path) -> tuple[Path, Path, str]:
    """A trustme CA and a certificate for 127.0.0.1: (cert chain file, key file, CA PEM)."""
    ca = trustme.CA()
    leaf = ca.issue_cert(LOOPBACK, "localhost")
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    ca_pem: str = ca.cert_pem.bytes().decode()
    return cert_file, key_file, ca_pem


async def warm_up_server(url: str, ca_pem: str, keys: tuple[str, ...]) -> None:
    """One request through the server, so the measured ones hit the verdict cache; it must allow all."""
    body = {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {"keys": list(keys)},
    }
    ctx = ssl.create_default_context(cadata=ca_pem)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=COLD_BUDGET + 5)) as session:
        async with session.post(url, json=body, ssl=ctx) as resp:
            problem = check_provider_response(resp.status, await resp.read(), keys)
    if problem is not None:
        raise BenchError(f"warming the server's cache: {problem}")


async def run_load_process(spec: LoadSpec) -> LoadResult:
    """Run the load generator in a spawned process while this event loop keeps serving."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=run_load, args=(spec, sender), name="countersign-bench-load")
    process.start()
    sender.close()
    try:
        limit = spec.warmup + spec.duration + _LOAD_GRACE
        if not await asyncio.to_thread(receiver.poll, limit):
            raise BenchError(f"the load generator sent nothing within {limit:.0f}s")
        try:
            result = receiver.recv()
        except EOFError as error:
            raise BenchError(
                f"the load generator exited without a result (status {process.exitcode})"
            ) from error
        if not isinstance(result, LoadResult):
            raise BenchError(f"the load generator sent {type(result).__name__}, not a LoadResult")
        return result
    finally:
        receiver.close()
        await asyncio.to_thread(process.join, 10)
        if process.is_alive():
            process.terminate()
            await asyncio.to_thread(process.join, 5)


async def warm_scenario(
    registry: Registry, images: Sequence[PushedImage], options: Options, workdir: Path
) -> tuple[Row, LoadResult]:
    cert_file, key_file, ca_pem = write_server_tls(workdir)
    config = bench_config(
        registry,
        server={
            "address": LOOPBACK,
            "port": 0,
            "tls": {"certFile": str(cert_file), "keyFile": str(key_file)},
        },
    )
    assert config.server.tls is not None
    reloader = CertificateReloader(config.server.tls)
    # As run_server does: same app, runner and site settings, with the certificate watcher running.
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = guarded_site(runner, app, port=0, ssl_context=reloader.listening, listener="provider")
    await site.start()
    watcher = asyncio.create_task(reloader.watch())
    try:
        url = f"https://{LOOPBACK}:{site.port}/v1/verify"
        keys = tuple(image.reference for image in images[:WARM_KEYS])
        await warm_up_server(url, ca_pem, keys)
        spec = LoadSpec(
            url=url,
            ca_pem=ca_pem,
            keys=keys,
            concurrency=options.concurrency,
            warmup=options.warmup,
            duration=options.duration,
        )
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        result = await run_load_process(spec)
        server_cpu = time.process_time() - cpu_started
        server_wall = time.perf_counter() - wall_started
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await runner.cleanup()
    if result.failures:
        raise BenchError("warm /v1/verify: " + "\n  ".join(result.failures))
    if not result.latencies or result.measured_seconds <= 0:
        raise BenchError("warm /v1/verify: no request was measured")
    if result.tls_version != "TLSv1.3":
        raise BenchError(f"warm /v1/verify: negotiated {result.tls_version!r}, not TLSv1.3")
    summary = summarize(result.latencies)
    rps = summary.count / result.measured_seconds
    row = summary_row(
        f"warm /v1/verify, {len(keys)} keys/req",
        summary,
        f"{rps:,.0f} req/s ({rps * len(keys):,.0f} keys/s)",
        {
            "keys_per_request": len(keys),
            "requests_per_second": rps,
            "keys_per_second": rps * len(keys),
            "concurrency": spec.concurrency,
            "measured_seconds": result.measured_seconds,
            "warmup_seconds": spec.warmup,
            "warmup_requests": result.warmup_requests,
            "connections_opened": result.connections_opened,
            "tls_version": result.tls_version,
            # CPU time over the load generator's lifetime (server: this whole process, spawn included).
            "server_cpu_seconds": server_cpu,
            "server_wall_seconds": server_wall,
            "load_generator_cpu_seconds": result.cpu_seconds,
            "load_generator_wall_seconds": result.wall_seconds,
        },
    )
    return row, result


# --- output --------------------------------------------------------------------------------------------


def format_table(report: Report, options: Options) -> str:
    env = report.environment
    header = (
        f"{'scenario':<34}{'runs':>6}{'median ms':>11}{'p99 ms':>9}   {'throughput':<28}{'peak RSS MiB':>12}"
    )
    lines = [
        f"Countersign benchmark: Python {env['python']} ({env['implementation']}), aiohttp {env['aiohttp']}, "
        f"{env['cpu_count']} CPUs ({env['usable_cpus']} usable), {env['platform']}",
        "",
        header,
        "-" * len(header),
    ]
    for row in report.rows:
        lines.append(
            f"{row.scenario:<34}{row.runs:>6}{row.summary.median * 1000:>11.3f}{row.summary.p99 * 1000:>9.3f}"
            f"   {row.throughput:<28}{row.peak_rss_mib:>12.1f}"
        )
    lines.append("-" * len(header))
    for note in report.notes:
        lines.append(textwrap.fill(note, width=110, initial_indent="  ", subsequent_indent="    "))
    return "\n".join(lines)


def notes(report: Report, options: Options, load: LoadResult) -> list[str]:
    warm = next((row for row in report.rows if row.scenario.startswith("warm")), None)
    out = [
        "runs = samples; p99 is nearest-rank (no interpolation): below 100 samples it is the maximum.",
        f"cold: a fresh Engine per batch (empty caches, new connections), engine.verify(keys, budget="
        f"{COLD_BUDGET:g}); images/s = images verified / summed verify time; one unmeasured run first.",
        "cold: each image is its own repository on olareg (OCI 1.1 referrers API, plain HTTP on 127.0.0.1) "
        "with one SPDX SBOM; policy allOf [sbom]; every verdict was checked to be allowed.",
    ]
    if warm is not None:
        d = warm.details
        out.append(
            f"warm: {d['concurrency']} keep-alive {d['tls_version']} connections "
            f"({d['connections_opened']} opened in all), one aiohttp ClientSession each, in a separate load "
            f"generator process; {d['warmup_seconds']:g} s warm-up ({d['warmup_requests']} requests) not "
            f"measured, then {d['measured_seconds']:.1f} s measured; every response checked (all allowed)."
        )
        out.append(
            f"warm: the server (this process, one event loop) and the load generator share "
            f"{report.environment['usable_cpus']} CPU cores; numbers are a lower bound for the server alone. "
            f"CPU used: server {d['server_cpu_seconds']:.1f} s in {d['server_wall_seconds']:.1f} s "
            f"({100 * d['server_cpu_seconds'] / d['server_wall_seconds']:.0f}% of a core, load generator "
            f"start-up included), load generator {d['load_generator_cpu_seconds']:.1f} s in "
            f"{d['load_generator_wall_seconds']:.1f} s "
            f"({100 * d['load_generator_cpu_seconds'] / d['load_generator_wall_seconds']:.0f}%)."
        )
    cold_cosign = next((row for row in report.rows if row.scenario.startswith("cold cosign")), None)
    if cold_cosign is not None:
        mix = ", ".join(f"{n} {fmt}" for fmt, n in cold_cosign.details["formats"].items())
        out.append(
            f"cold cosign: {cold_cosign.details['batch']} images on the same olareg, one repository "
            f"each, each signed once with the real CLIs ({mix}: bundle by cosign v3, legacy .sig and "
            "oci-1.1 referrer by cosign2; one ECDSA P-256 key; offline, no transparency log); policy "
            "allOf [cosign] with that key, transparencyLog: skip, all three formats looked up (a "
            "referrers listing and a .sig tag lookup per image); as cold above (fresh Engine per batch, "
            "one unmeasured run, which also checked that each image verified in the format it was signed "
            "in)."
        )
    cpu_rows = [row for row in report.rows if row.scenario.startswith("cosign CPU")]
    if cpu_rows:
        from bench.cosign_bench import CPU_WARMUP

        iterations = ", ".join(str(row.runs) for row in cpu_rows)
        out.append(
            "cosign CPU: median/p99 are CPU time (time.process_time_ns) of one core.verify_candidate "
            "call on a candidate prepared in memory: pure core, no I/O, not wall time; throughput = "
            f"1 / median per core. {iterations} calls measured (until 1 s of CPU: at least 200, at most "
            f"5000) after {CPU_WARMUP} unmeasured ones, each checked to pass. Key rows: ECDSA P-256, "
            "transparencyLog skip (legacy: simple signing; bundle: v0.3 DSSE). Keyless rows, private "
            "Sigstore: P-256 leaf with SCT, P-384 intermediate and root; legacy: chain, SCT, signature, "
            "identity, SET; bundle: the same through sigstore-python's Verifier, plus inclusion proof and "
            "signed checkpoint."
        )
    cold_notation = next((row for row in report.rows if row.scenario.startswith("cold notation")), None)
    if cold_notation is not None:
        mix = ", ".join(f"{n} {fmt.upper()}" for fmt, n in cold_notation.details["formats"].items())
        out.append(
            f"cold notation: {cold_notation.details['batch']} images on the same olareg, one repository "
            f"each, each signed once with the real notation CLI ({mix}; one RSA-2048 key from notation cert "
            "generate-test; OCI 1.1 referrers API); policy allOf [notation] with notation's own "
            "trustpolicy.json (strict, ca store of that certificate) and trust store directory; as cold "
            "above (fresh Engine per batch, one unmeasured run, which also checked each image verified in "
            "the envelope format it was signed in)."
        )
    notation_cpu = [row for row in report.rows if row.scenario.startswith("notation CPU")]
    if notation_cpu:
        iterations = ", ".join(str(row.runs) for row in notation_cpu)
        out.append(
            "notation CPU: CPU time of envelope.parse_and_verify + trust.evaluate (strict) on an envelope "
            "recorded by notation-go (../shared/testdata/notation), held in memory: no I/O, not wall time; "
            f"{iterations} calls measured as for cosign CPU. JWS, COSE: RSA-2048 PS256, one self-signed "
            "certificate in a ca store; JWS/COSE with timestamp: the recorded ca and tsa stores, "
            "verifyTimestamp always (the RFC 3161 countersignature and its chain are verified too; the TSA "
            "chain's revocation status is given as good: OCSP/CRL I/O is not part of a CPU row)."
        )
    elif cold_notation is not None:
        out.append("notation CPU: left out, ../shared/testdata/notation (recorded envelopes) is missing.")
    admission = [row for row in report.rows if row.scenario.startswith("admission, ")]
    if admission:
        out.append(
            "admission (through the real Gatekeeper): the end-to-end test bed (etcd, kube-apiserver "
            "v1.36.2, Gatekeeper v3.23.1 out of cluster, Countersign with mutual TLS, the shipped "
            "gatekeeper-templates/); wall time of one server-side dry-run Pod POST to the API server (no "
            "kubectl): Gatekeeper's mutating webhook pins the three tags through /v1/mutate, its validating "
            "webhook sends the three images in one external_data call to /v1/verify (policy: cosign or "
            "notation signature, SBOM, digest). New namespace: validation keys new to both caches (mutation "
            "keys carry no namespace and come from Gatekeeper's cache after the first sample); GK cache hit: "
            "the same Pod again, answered from Gatekeeper's cache."
        )
    verdicts = next((row for row in report.rows if "verdicts cached" in row.scenario), None)
    if verdicts is not None:
        d = verdicts.details
        out.append(
            "verdicts cached: `python -m provider.cli serve` as a subprocess, digest-pin policy, "
            f"{d['keys']:,} keys each naming a distinct ~600-byte manifest by digest on a registry "
            f"that generates them (127.0.0.1), {d['keys_per_request']} keys per request, "
            f"{d['concurrency']} at a time, "
            f"until all were decided (allowed); cache: {d['cache']}. Peak RSS column = the server's "
            f"VmRSS after, {d['rss_start_mib']:.1f} MiB at start, {d['peak_rss_mib']:.1f} MiB peak; "
            f"sending every key again hit the verdict cache {d['verdict_hits_second_pass']:,.0f} times. "
            "Median/p99: per request."
        )
    fat = [row for row in report.rows if row.scenario.startswith("fat manifests")]
    if fat:
        size = fat[0].details["manifest_bytes"]
        out.append(
            "fat manifests: the same server, policy allOf [digest-pin, sbom], default cache and memory "
            f"settings; N keys each naming a distinct valid {size:,}-byte manifest (layer descriptors) "
            "by digest, all in one request, repeated until every key was decided (denied: no SBOM; none "
            "may be allowed). Peak RSS column = the server's VmHWM over the whole attack, a fresh server "
            "per row. Median/p99: per request."
        )
    out.append(
        "peak RSS = ru_maxrss of this process (registry client, engines, server) at the end of that row; "
        f"load generator process: {load.peak_rss_kib / 1024:.1f} MiB (its own VmHWM: ru_maxrss would include "
        "this process's size at the spawn)."
    )
    start_load = report.environment["load_average_at_start"]
    end_load = report.environment.get("load_average_at_end", start_load)
    cores = report.environment["usable_cpus"]
    busy = max(start_load[0], end_load[0]) >= 0.75 * cores
    out.append(
        f"1-minute load average {start_load[0]:.2f} at start, {end_load[0]:.2f} at end ({cores} usable "
        "cores): "
        + (
            "near or above the core count, other processes competed for the CPUs and the spread between "
            "runs widens."
            if busy
            else "well below the core count (the benchmark's own processes included)."
        )
    )
    out.append(
        f"set-up: 50 images + SBOMs pushed with oras in {report.push_seconds:.1f} s "
        f"({options.push_workers} threads); "
        + (
            f"{cold_cosign.details['batch']} images pushed and signed with cosign in "
            f"{report.sign_seconds:.1f} s ({options.sign_workers} threads); "
            if cold_cosign is not None
            else ""
        )
        + (
            f"{cold_notation.details['batch']} images pushed and signed with notation in "
            f"{report.notation_sign_seconds:.1f} s ({options.sign_workers} threads); "
            if cold_notation is not None
            else ""
        )
        + f"total wall time {report.wall_seconds:.1f} s."
    )
    return out


def write_json(path: Path, report: Report) -> None:
    doc = {
        "environment": report.environment,
        "scenarios": [
            {
                "scenario": row.scenario,
                "runs": row.runs,
                "latency_ms": {
                    "median": row.summary.median * 1000,
                    "p99_nearest_rank": row.summary.p99 * 1000,
                    "mean": row.summary.mean * 1000,
                    "min": row.summary.minimum * 1000,
                    "max": row.summary.maximum * 1000,
                },
                "throughput": row.throughput,
                "peak_rss_mib": row.peak_rss_mib,
                **row.details,
            }
            for row in report.rows
        ],
        "load_generator_peak_rss_mib": report.load_generator_peak_rss_mib,
        "push_seconds": report.push_seconds,
        "sign_seconds": report.sign_seconds,
        "notation_sign_seconds": report.notation_sign_seconds,
        "wall_seconds": report.wall_seconds,
        "notes": report.notes,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


# --- main ----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write results here")
    parser.add_argument("--runs-small", type=int, default=15, help="runs of the 1- and 10-image batches")
    parser.add_argument("--runs-large", type=int, default=7, help="runs of the 50-image batch")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds of the warm run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before it")
    parser.add_argument("--concurrency", type=int, default=8, help="load generator connections")
    parser.add_argument("--push-workers", type=int, default=8, help="threads pushing images with oras")
    parser.add_argument("--sign-workers", type=int, default=5, help="threads signing images with cosign")
    parser.add_argument(
        "--trace",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the traced cold batch's spans here (JSON)",
    )
    parser.add_argument(
        "--trace-keys", type=int, default=100, help="images in the traced cold batch (0: leave it out)"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.trace_keys <= 1000:
        parser.error("--trace-keys must be between 0 and 1000")
    for name in ("runs_small", "runs_large", "concurrency", "push_workers", "sign_workers"):
        if not 1 <= getattr(args, name) <= 1000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 1000")
    if not 0.5 <= args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in [0.5, 600] and --warmup in [0, 60] seconds")
    return Options(
        runs_small=args.runs_small,
        runs_large=args.runs_large,
        duration=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        push_workers=args.push_workers,
        sign_workers=args.sign_workers,
        json_file=args.json,
        trace_file=args.trace,
        trace_keys=args.trace_keys,
    )


# --- 3. cosign ------------------------------------------------------------------------------------------
# bench/cosign_bench.py (cryptography, sigstore-python, the cosign test tooling) is imported only here, after
# the SBOM scenarios, so that their peak RSS and the load generator's spawn are not inflated by it.


def cosign_rows(registry: Registry, options: Options, workdir: Path, report: Report) -> list[Row]:
    """Sign a batch of images once with the cosign CLIs and time cold verifications of it; then the CPU
    cost of one verification per format."""
    from bench.cosign_bench import (
        COSIGN_BATCH,
        CosignBenchError,
        cold_cosign_scenario,
        cosign_config,
        cosign_key,
        cpu_scenarios,
        sign_images,
    )
    from tests.support.cosign import CosignError

    try:
        env, key = cosign_key(workdir / "cosign")
        try:
            sign_started = time.perf_counter()
            signed = sign_images(registry, env, key, COSIGN_BATCH, options.sign_workers)
            report.sign_seconds = time.perf_counter() - sign_started
            log.info("%d images signed with cosign in %.1f s", len(signed), report.sign_seconds)
            cold = asyncio.run(
                cold_cosign_scenario(cosign_config(registry, key), signed, options.runs_small, cold_run)
            )
        finally:
            env.close()
        return [cold, *cpu_scenarios()]
    except CosignError as error:
        raise BenchError(f"signing with cosign: {error}") from error
    except CosignBenchError as error:
        raise BenchError(str(error)) from error


# --- 4. notation ----------------------------------------------------------------------------------------


def notation_rows(registry: Registry, options: Options, workdir: Path, report: Report) -> list[Row]:
    """Sign a batch of images once with the notation CLI and time cold verifications of it; then the CPU
    cost of one verification per recorded envelope."""
    from bench.cosign_bench import CPU_WARMUP
    from bench.notation_bench import (
        NOTATION_BATCH,
        NotationBenchError,
        cold_notation_scenario,
        cpu_scenarios,
        notation_config,
        notation_key,
        sign_images,
    )
    from tests.support.notation import NotationError

    try:
        env = notation_key(workdir / "notation")
        try:
            sign_started = time.perf_counter()
            signed = sign_images(registry, env, NOTATION_BATCH, options.sign_workers)
            report.notation_sign_seconds = time.perf_counter() - sign_started
            log.info("%d images signed with notation in %.1f s", len(signed), report.notation_sign_seconds)
            cold = asyncio.run(
                cold_notation_scenario(notation_config(registry, env), signed, options.runs_small, cold_run)
            )
        finally:
            env.close()
        return [cold, *cpu_scenarios(CPU_WARMUP)]
    except NotationError as error:
        raise BenchError(f"signing with notation: {error}") from error
    except NotationBenchError as error:
        raise BenchError(str(error)) from error


# --- 5. admission through Gatekeeper -----------------------------------------------------------------------


def admission_rows(registry: Registry, options: Options, workdir: Path) -> list[Row]:
    """Admission latency through the real Gatekeeper and kube-apiserver (bench/admission_bench.py)."""
    from bench.admission_bench import AdmissionBenchError, admission_scenarios

    try:
        return admission_scenarios(registry, workdir, options.runs_small)
    except AdmissionBenchError as error:
        raise BenchError(str(error)) from error


# --- 6. memory ---------------------------------------------------------------------------------------------


def memory_rows(workdir: Path) -> list[Row]:
    """RSS of the real server after 100k cached verdicts and under the fat-manifest attack."""
    from bench.memory_bench import MemoryBenchError
    from bench.memory_bench import memory_rows as rows

    try:
        return asyncio.run(rows(workdir / "memory"))
    except MemoryBenchError as error:
        raise BenchError(f"memory: {error}") from error


def run(options: Options) -> tuple[Report, LoadResult]:
    started = time.perf_counter()
    report = Report(environment=environment())
    with tempfile.TemporaryDirectory(prefix="countersign-bench-") as scratch:
        workdir = Path(scratch)
        with start_olareg(workdir / "olareg") as registry:
            log.info("olareg on %s; pushing 50 images with SBOMs", registry.url)
            push_started = time.perf_counter()
            images = push_images(registry, 50, options.push_workers)
            report.push_seconds = time.perf_counter() - push_started
            report.rows += asyncio.run(cold_scenarios(bench_config(registry), images, options))
            warm_row, load = asyncio.run(warm_scenario(registry, images, options, workdir))
            report.rows.append(warm_row)
            report.rows += cosign_rows(registry, options, workdir, report)
            report.rows += notation_rows(registry, options, workdir, report)
            report.rows += admission_rows(registry, options, workdir)
        report.rows += memory_rows(workdir)
    report.load_generator_peak_rss_mib = load.peak_rss_kib / 1024
    report.wall_seconds = time.perf_counter() - started
    report.environment["load_average_at_end"] = list(os.getloadavg())
    report.notes = notes(report, options, load)
    return report, load


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    options = parse_args(argv)
    try:
        for tool in (
            "olareg",
            "oras",
            "cosign",
            "cosign2",
            "notation",
            "etcd",
            "kube-apiserver",
            "kubectl",
            "gatekeeper-manager",
        ):
            ensure_tool(tool)
    except ToolNotFoundError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    try:
        report, _ = run(options)
    except BenchError as error:
        print(f"bench: FAILED: {error}", file=sys.stderr)
        return 1
    except (OrasError, RegistryError) as error:
        print(f"bench: FAILED during set-up: {error}", file=sys.stderr)
        return 1
    print(format_table(report, options))
    if options.json_file is not None:
        write_json(options.json_file, report)
        print(f"\nresults written to {options.json_file}")
    if options.trace_keys:
        # Where a cold batch's time goes (bench/trace_bench.py): its own registry and signed images.
        from bench.trace_bench import run as trace_run

        print(
            "\n"
            + "\n".join(trace_run(options.trace_keys, 5, [0.0], options.sign_workers, options.trace_file))
        )
    return 0
