"""`make demo`: Countersign deciding which images may run, with real signatures, on 127.0.0.1 only.

1. starts an OCI 1.1 registry (olareg) on a free port of 127.0.0.1 and pushes four small images (built
   here as OCI image layouts, pushed with oras);
2. signs one with the real cosign CLI (a key pair from `cosign generate-key-pair`, no transparency log),
   one with the real notation CLI (a test certificate from `notation cert generate-test`), leaves one
   unsigned, and signs one with a second cosign key that Countersign does not trust;
3. starts `countersign serve` with mutual TLS (a throwaway CA plays Gatekeeper's) and the policy
   "any of [cosign, notation]";
4. asks it what Gatekeeper asks (`POST /v1/verify`, the external-data ProviderRequest, over mTLS) and
   prints one line per image: the verdict, its reason code, the checks, and why a denied image was denied;
5. asks the mutation path (`POST /v1/mutate`) to pin a tag to its digest.

`run_demo` does the work and returns what was decided (tests/integration/test_demo.py checks it);
`main` prints it. Nothing leaves 127.0.0.1: cosign and notation run in sandboxes whose proxy variables
point at a closed port (tests/support/cosign.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import trustme
import yaml

from tests.support import cosign, notation
from tests.support.cosign import CosignEnv
from tests.support.images import PushedImage, push_image
from tests.support.notation import NotationEnv
from tests.support.registries import LOOPBACK, Registry, free_port, start_olareg

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The four images: (repository, what was done to it).
IMAGES: dict[str, str] = {
    "demo/signed-cosign": "signed with cosign, by the trusted key",
    "demo/signed-notation": "signed with notation, by the trusted test certificate",
    "demo/unsigned": "not signed at all",
    "demo/signed-wrong-key": "signed with cosign, by a key Countersign does not trust",
}
TAG = "1.0"
NOTATION_KEY = "demo-signer"

Out = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    """One verifier's result for one image."""

    name: str
    passed: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """Countersign's answer for one image (one item of the ProviderResponse)."""

    repository: str
    reference: str
    allowed: bool
    reason: str
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]


@dataclass
class DemoResult:
    registry: str = ""
    verdicts: list[Verdict] = field(default_factory=list)
    #: (the tag reference sent to /v1/mutate, what came back, the digest the registry holds).
    pin: tuple[str, str, str] = ("", "", "")
    system_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def verdict(self, repository: str) -> Verdict:
        return next(v for v in self.verdicts if v.repository == repository)


def _quiet(_: str) -> None:
    pass


# --- Gatekeeper's side: the PKI and the requests ----------------------------------------------------------


def write_pki(directory: Path) -> tuple[trustme.CA, trustme.CA]:
    """Countersign's serving certificate (from one CA) and a client CA standing in for Gatekeeper's."""
    directory.mkdir(parents=True, exist_ok=True)
    server_ca, gatekeeper_ca = trustme.CA(), trustme.CA()
    leaf = server_ca.issue_cert(LOOPBACK, "localhost", "countersign.countersign.svc")
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
    (directory / "tls.crt").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    gatekeeper_ca.cert_pem.write_to_path(str(directory / "gatekeeper-ca.crt"))
    return server_ca, gatekeeper_ca


def gatekeeper_client(server_ca: trustme.CA, gatekeeper_ca: trustme.CA) -> ssl.SSLContext:
    """What Gatekeeper presents: a client certificate from its CA, and the Provider's caBundle as trust."""
    ctx = ssl.create_default_context()
    server_ca.configure_trust(ctx)
    gatekeeper_ca.issue_cert("gatekeeper-webhook-service.gatekeeper-system.svc").configure_cert(ctx)
    return ctx


async def ask(url: str, ctx: ssl.SSLContext, keys: list[str]) -> dict[str, Any]:
    """POST a ProviderRequest, as Gatekeeper's external data does."""
    body = {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {"keys": keys},
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, ssl=ctx) as resp:
            result: dict[str, Any] = await resp.json()
            return result


async def wait_ready(health_url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    """Until ``/readyz`` on the health port answers 200 (at most 30 s); the log tail on failure."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and proc.returncode is None:
            try:
                async with session.get(health_url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    what = "did not become ready" if proc.returncode is None else f"exited with {proc.returncode}"
    tail = await asyncio.to_thread(log.read_text, errors="replace")
    raise RuntimeError(f"countersign serve {what}:\n{tail[-3000:]}")


# --- the registry: four images, three signatures ---------------------------------------------------------


async def fill_registry(work: Path, registry: Registry) -> tuple[dict[str, PushedImage], dict[str, Any]]:
    """Push the four :data:`IMAGES` and sign them; return them and Countersign's verifiers for them."""
    pushed = await asyncio.gather(
        *(
            asyncio.to_thread(push_image, registry, repo, TAG, seed=f"demo-{repo}-{time.time_ns()}")
            for repo in IMAGES
        )
    )
    images = dict(zip(IMAGES, pushed, strict=True))
    # trace=False: no strace (a Debian package the demo does not need); the proxy trap still refuses any
    # connection away from 127.0.0.1.
    cosign_env = CosignEnv(work / "cosign", trace=False)
    notation_env = NotationEnv(work / "notation", trace=False)
    try:

        def cosign_side() -> cosign.KeyPair:
            trusted = cosign.generate_key_pair(cosign_env, "trusted")
            stranger = cosign.generate_key_pair(cosign_env, "stranger")
            cosign.sign_bundle(cosign_env, trusted, registry, images["demo/signed-cosign"])
            cosign.sign_bundle(cosign_env, stranger, registry, images["demo/signed-wrong-key"])
            return trusted

        def notation_side() -> None:
            notation.generate_test_key(notation_env, NOTATION_KEY)
            notation.write_trust_policy(notation_env, notation.trust_policy([f"ca:{NOTATION_KEY}"]))
            notation.sign(notation_env, NOTATION_KEY, registry, images["demo/signed-notation"])

        trusted, _ = await asyncio.gather(asyncio.to_thread(cosign_side), asyncio.to_thread(notation_side))
    finally:
        cosign_env.close()
        notation_env.close()
    verifiers = {
        # The trusted public key only; offline: no Rekor here (docs/cosign.md).
        "cosign": {"type": "cosign", "options": cosign.key_options(trusted)},
        # notation's own trust policy and trust store, as `notation cert generate-test` left them.
        "notation": {
            "type": "notation",
            "options": {
                "trustPolicy": str(notation_env.trust_policy_file),
                "trustStore": str(notation_env.config_dir / "truststore"),
            },
        },
    }
    return images, verifiers


def countersign_config(work: Path, registry: Registry, verifiers: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "countersign.dev/v1alpha1",
        "server": {
            "address": LOOPBACK,
            "port": free_port(),
            "healthPort": free_port(),
            "tls": {
                "certFile": str(work / "pki" / "tls.crt"),
                "keyFile": str(work / "pki" / "tls.key"),
                "clientCAFile": str(work / "pki" / "gatekeeper-ca.crt"),
            },
        },
        "registries": {registry.host: {"insecure": True}},
        "verifiers": verifiers,
        "policies": [{"name": "signed", "scopes": ["*"], "anyOf": ["cosign", "notation"]}],
    }


def _verdicts(reply: dict[str, Any], images: dict[str, PushedImage]) -> list[Verdict]:
    by_reference = {image.reference: repo for repo, image in images.items()}
    verdicts = []
    for item in reply["response"]["items"]:
        value = item.get("value")
        if value is None:
            raise RuntimeError(f"Countersign answered an error for {item['key']}: {item.get('error')}")
        checks = tuple(
            Check(v["name"], bool(v["passed"]), v["reason"], v["message"]) for v in value["verifiers"]
        )
        verdicts.append(
            Verdict(
                by_reference[item["key"]],
                item["key"],
                bool(value["allowed"]),
                value["reason"],
                checks,
                tuple(value["reasons"]),
            )
        )
    return verdicts


# --- the whole demo -----------------------------------------------------------------------------------------


async def run_demo(work: Path, out: Out = _quiet) -> DemoResult:
    """Run every step in ``work`` (a fresh directory), reporting through ``out``; return what was decided."""
    result = DemoResult()
    began = time.monotonic()
    with start_olareg(work / "registry", memory=True) as registry:
        result.registry = registry.host
        out(f"== an OCI registry (olareg) at {registry.url}; four images pushed with oras, three signed:")
        images, verifiers = await fill_registry(work, registry)
        width = max(len(repo) for repo in IMAGES) + len(TAG) + 1
        for repo, what in IMAGES.items():
            out(f"   {repo + ':' + TAG:<{width}}  {what}")
        result.seconds["registry, images and signatures"] = time.monotonic() - began

        config = countersign_config(work, registry, verifiers)
        server_ca, gatekeeper_ca = write_pki(work / "pki")
        config_file = work / "countersign.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        out("\n== countersign serve --config countersign.yaml   (mutual TLS: only Gatekeeper's CA is served)")
        out("   verifiers: cosign (the trusted public key), notation (trust policy + store of the test cert)")
        out("   policy:    every image (scope *) needs any of [cosign, notation]")
        started = time.monotonic()
        log_path = work / "countersign.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "provider.cli",
                "serve",
                "--config",
                str(config_file),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
            try:
                server = config["server"]
                await wait_ready(f"http://{LOOPBACK}:{server['healthPort']}/readyz", proc, log_path)
                result.seconds["countersign serve ready"] = time.monotonic() - started
                ctx = gatekeeper_client(server_ca, gatekeeper_ca)
                url = f"https://{LOOPBACK}:{server['port']}"

                asked = time.monotonic()
                keys = [image.reference for image in images.values()]
                reply = await ask(url + "/v1/verify", ctx, keys)
                result.seconds["POST /v1/verify (4 images)"] = time.monotonic() - asked
                result.system_error = reply["response"].get("systemError") or None
                result.verdicts = _verdicts(reply, images)

                tagged = images["demo/signed-cosign"]
                pinned = await ask(url + "/v1/mutate", ctx, [tagged.reference])
                item = pinned["response"]["items"][0]
                result.pin = (tagged.reference, str(item.get("value", item.get("error"))), tagged.digest)
            finally:
                if proc.returncode is None:
                    proc.terminate()
                await asyncio.wait_for(proc.wait(), 10)
    result.seconds["total"] = time.monotonic() - began
    return result


def report(result: DemoResult, out: Out = print) -> None:
    """The verdicts as a table, why each denied image was denied, and the pin."""
    out("\n== POST /v1/verify: Gatekeeper's question for the four images, Countersign's answer")
    width = max(len(f"{v.repository}:{TAG}") for v in result.verdicts)
    out(f"   {'IMAGE':<{width}}  {'VERDICT':<8} {'REASON':<21} CHECKS (verifier: reason code)")
    for v in result.verdicts:
        checks = ", ".join(f"{c.name}: {c.reason}" for c in v.checks)
        verdict = "allowed" if v.allowed else "DENIED"
        out(f"   {v.repository + ':' + TAG:<{width}}  {verdict:<8} {v.reason:<21} {checks}")
    for v in result.verdicts:
        if not v.allowed:
            # reasons[0] names the policy and the digest (the table's REASON); the others, one per
            # verifier, are what a kubectl user reads after it.
            out(f"\n   why {v.repository}:{TAG} is denied (its reasons, as kubectl shows them):")
            for reason in v.reasons[1:]:
                out(f"     - {reason}")
    if result.system_error:
        out(f"\n   systemError: {result.system_error}")
    sent, answer, _ = result.pin
    out("\n== POST /v1/mutate: Gatekeeper's mutation pins the tag to the digest it verified")
    out(f"   {sent}")
    out(f"   -> {answer}")
    timings = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in result.seconds.items())
    out(f"\n(times: {timings})")


def expected(result: DemoResult) -> bool:
    """Whether the demo showed what it should: the two signed images allowed, the other two denied."""
    allowed = {v.repository for v in result.verdicts if v.allowed}
    _, answer, digest = result.pin
    return allowed == {"demo/signed-cosign", "demo/signed-notation"} and answer.endswith("@" + digest)


def in_scratch_directory(prefix: str, body: Callable[[Path], int]) -> int:
    """Run ``body`` in a new temporary directory, removed afterwards unless COUNTERSIGN_DEMO_KEEP=1."""
    keep = os.environ.get("COUNTERSIGN_DEMO_KEEP") == "1"
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return body(work)
    finally:
        if keep:
            print(f"\n(kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _demo(work: Path) -> int:
    result = asyncio.run(run_demo(work, out=lambda line: print(line, flush=True)))
    report(result)
    return 0 if expected(result) else 1


def main() -> int:
    return in_scratch_directory("countersign-demo-", _demo)


if __name__ == "__main__":
    sys.exit(main())
