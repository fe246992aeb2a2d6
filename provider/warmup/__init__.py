"""The start-up warm-up: before the provider listens, one verification of an image signed at start-up, end
to end, through a throwaway copy of the request path.

A fresh process pays first-use costs on its first request that later requests do not: code run for the
first time (CPython specialises a function only after it has run), ABC and regular-expression caches,
the first TLS handshakes on each side, OpenSSL's first use of each algorithm. Gatekeeper sends that first
request; the warm-up sends one like it first, to itself. Measured (docs/performance.md, "The first request
of a fresh process"): a fresh process's first one-key request, ~11 ms, became ~1 to 2.5 ms faster.

What it runs, all on 127.0.0.1 at ports the OS picks, for ~0.1 s:

1. `SampleRegistry`, serving `make_sample`'s image, signed by fresh keys for the kinds asked for (those
   the configuration has verifiers for, `kinds_for`): cosign (legacy `.sig` tag, ECDSA P-256) and
   notation (JWS, PS256 over an RSA-2048 leaf of an ECDSA P-256 root, through the referrers API);
2. an application built by `provider.server.build_app` from a configuration of its own (that registry,
   verifiers trusting only the fresh keys, all required), behind the same guarded TLS 1.3 listener code
   the provider serves on, with a fresh self-signed certificate;
3. a client posting a ProviderRequest for the sample to `/v1/verify` (it must be allowed) and for its tag
   to `/v1/mutate` (it must be pinned to the sample's digest).

Nothing of the served configuration is touched: no registry it names is contacted, and its engine,
caches, metrics and connection pools are built after the warm-up, from nothing. The keys exist only in
memory; the certificate and its key are written to a private temporary directory removed at the end.
A sample that is not verified is logged as an error (it was signed by this process: verification itself
is broken here, and Gatekeeper's requests will meet it too); a warm-up that cannot run (no temporary
directory, no loopback address) or takes longer than its bound, as a warning. Either way start-up goes
on: every request is still verified on its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provider.config import Config, TLSConfig, parse_config
from provider.protocol import API_VERSION
from provider.tls import make_server_ssl_context
from provider.warmup.registry import SampleRegistry
from provider.warmup.sample import KINDS, Sample, make_sample

__all__ = ["SampleRefused", "WarmUp", "kinds_for", "warm_up"]

log = logging.getLogger(__name__)

#: The whole warm-up's bound, in seconds.
TIMEOUT = 10.0


class SampleRefused(ValueError):
    """The warm-up's application answered, and did not allow or pin the sample as it should have."""


@dataclass(frozen=True, slots=True)
class WarmUp:
    """How the warm-up went: seconds taken, what went wrong (None: the sample verified and pinned), and
    whether it is that the sample was refused (verification is broken here) rather than that the warm-up
    could not run (no temporary directory, no loopback address, out of time)."""

    seconds: float
    problem: str | None
    refused: bool = False

    def log(self) -> None:
        """Info when it verified; an error when the sample was refused; a warning when it could not run."""
        if self.problem is None:
            log.info("a sample image signed at start-up verified end to end in %.3f s", self.seconds)
        elif self.refused:
            log.error("the sample image signed at start-up was not verified (%s)", self.problem)
        else:
            log.warning("skipped, it could not run (%s)", self.problem)


def _listener_files(directory: Path, now: datetime) -> tuple[TLSConfig, bytes]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1, written to `directory` (owner-only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "countersign warm-up")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(pem)
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return TLSConfig(cert_file=cert_file, key_file=key_file), pem


def _client_context(ca_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


async def _post(session: aiohttp.ClientSession, url: str, key: str) -> object:
    """The `value` of the one item answered for `key`; raises `SampleRefused` for anything else."""
    body = {"apiVersion": API_VERSION, "kind": "ProviderRequest", "request": {"keys": [key]}}
    async with session.post(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    ) as r:
        payload = await r.read()
        if r.status != 200:
            raise SampleRefused(f"{url}: HTTP {r.status}")
    response = json.loads(payload)["response"]
    items = response.get("items") or []
    if response.get("systemError") or len(items) != 1 or items[0].get("key") != key or items[0].get("error"):
        raise SampleRefused(f"{url}: answered {payload[:300]!r}")
    return items[0].get("value")


async def _exercise(sample: Sample, directory: Path, now: datetime) -> None:
    # Imported here: provider.server imports this module when it starts the warm-up.
    from provider.server import build_app, guarded_site

    config = parse_config(
        {
            "server": {"address": "127.0.0.1"},  # the listener's (guarded_site); nothing else reads it
            "registries": {sample.host: {"insecure": True}},
            "verifiers": dict(sample.verifiers),
            "policies": sample.policies,
        }
    )
    tls, ca_pem = _listener_files(directory, now)
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = guarded_site(runner, app, port=0, ssl_context=make_server_ssl_context(tls), listener="warm-up")
        await site.start()
        base = f"https://127.0.0.1:{site.port}"
        connector = aiohttp.TCPConnector(ssl=_client_context(ca_pem))
        async with aiohttp.ClientSession(connector=connector) as session:
            verdict = await _post(session, f"{base}/v1/verify", sample.key)
            if not isinstance(verdict, dict) or verdict.get("allowed") is not True:
                raise SampleRefused(f"the sample was not allowed: {json.dumps(verdict)[:600]}")
            pinned = await _post(session, f"{base}/v1/mutate", sample.tagged)
            if pinned != sample.pinned:
                raise SampleRefused(f"the sample was pinned to {pinned!r}, not {sample.pinned!r}")
    finally:
        # aiohttp keeps the application in a module-level cache of middleware chains for the life of the
        # process: cleaning up stops its reloader, which lets go of the engine (~60 KiB of metrics stay).
        await runner.cleanup()


def kinds_for(config: Config) -> frozenset[str]:
    """The signatures to warm up with: those the configuration has verifiers for (importing and warming
    the others would cost memory for nothing); with Kubernetes resources, whose verifiers are known only
    later, all of them."""
    if config.kubernetes.enabled:
        return frozenset(KINDS)
    return frozenset(v.type for v in config.verifiers.values()) & frozenset(KINDS)


async def warm_up(
    seconds: float = TIMEOUT,
    *,
    kinds: Collection[str] = KINDS,
    make: Callable[[str, datetime, Collection[str]], Sample] = make_sample,
) -> WarmUp:
    """Run the warm-up (see the module's docstring) with a sample signed for `kinds`, within `seconds`;
    never raises `Exception`. `make`: builds the sample (tests give one the warm-up must refuse)."""
    started = time.perf_counter()
    registry = SampleRegistry()
    problem: str | None = None
    refused = False
    try:
        async with asyncio.timeout(seconds):
            host = await registry.start()
            now = datetime.now(UTC)
            # Key generation (~30 ms, the RSA key) on the loop: nothing else is served yet.
            registry.sample = make(host, now, kinds)
            with tempfile.TemporaryDirectory(prefix="countersign-warm-up-") as directory:
                await _exercise(registry.sample, Path(directory), now)
    except TimeoutError:
        problem = f"took longer than {seconds:g} s"
    except SampleRefused as e:
        problem, refused = str(e), True
    except Exception as e:  # reported, never fatal: every request is verified on its own
        problem = f"{type(e).__name__}: {e}"
    finally:
        await registry.stop()
    return WarmUp(time.perf_counter() - started, problem, refused)
