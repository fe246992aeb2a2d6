"""`make demo`: the provider answering the request Gatekeeper would send, against a real local registry.

1. starts an OCI 1.1 registry (olareg) on 127.0.0.1;
2. pushes two small images with oras, and attaches an SPDX SBOM to one of them;
3. starts `countersign serve` over TLS 1.3 with mutual TLS (a throwaway CA plays Gatekeeper's);
4. POSTs the ProviderRequest Gatekeeper sends for a Pod using both images, and prints the verdicts.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import trustme
import yaml

from tests.support.images import attach_sbom, push_image
from tests.support.registries import free_port, start_olareg

REPO_ROOT = Path(__file__).resolve().parent.parent


def banner(text: str) -> None:
    print(f"\n== {text}")


def write_pki(directory: Path) -> tuple[trustme.CA, trustme.CA]:
    server_ca, gatekeeper_ca = trustme.CA(), trustme.CA()
    leaf = server_ca.issue_cert("127.0.0.1", "localhost", "countersign.countersign.svc")
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
    (directory / "tls.crt").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    gatekeeper_ca.cert_pem.write_to_path(str(directory / "gatekeeper-ca.crt"))
    return server_ca, gatekeeper_ca


async def ask(url: str, ctx: ssl.SSLContext, keys: list[str]) -> dict[str, Any]:
    body = {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {"keys": keys},
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, ssl=ctx) as resp:
            result: dict[str, Any] = await resp.json()
            return result


async def wait_ready(
    url: str, ctx: ssl.SSLContext, proc: asyncio.subprocess.Process, within: float = 20
) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"countersign serve exited with {proc.returncode}")
            try:
                async with session.get(url + "/readyz", ssl=ctx) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("countersign serve did not become ready")


def summarize(reply: dict[str, Any]) -> None:
    for item in reply["response"]["items"]:
        value = item.get("value")
        if value is None:
            print(f"  ERROR    {item['key']}: {item['error']}")
            continue
        print(f"  {'ALLOWED' if value['allowed'] else 'DENIED ':<8} {item['key']}")
        print(f"           digest {value['digest']}")
        for v in value["verifiers"]:
            print(f"           [{'pass' if v['passed'] else 'FAIL'}] {v['name']}: {v['message']}")
        for reason in value["reasons"]:
            print(f"           reason: {reason}")
    if reply["response"]["systemError"]:
        print(f"  systemError: {reply['response']['systemError']}")


async def demo(work: Path) -> int:
    banner("starting an OCI 1.1 registry (olareg) on 127.0.0.1")
    with start_olareg(work / "registry") as registry:
        print(f"  registry at {registry.url}")

        banner("pushing two images with oras; attaching an SPDX SBOM to one")
        with_sbom = await asyncio.to_thread(
            push_image, registry, "demo/shop-frontend", "1.4.2", seed="frontend"
        )
        sbom = await asyncio.to_thread(attach_sbom, registry, with_sbom, fmt="spdx")
        plain = await asyncio.to_thread(push_image, registry, "demo/legacy-worker", "0.9", seed="worker")
        print(f"  {with_sbom.reference} = {with_sbom.digest}  (SBOM referrer {sbom})")
        print(f"  {plain.reference} = {plain.digest}  (no SBOM)")

        banner("starting countersign serve (TLS 1.3, client certificate required)")
        pki = work / "pki"
        pki.mkdir()
        server_ca, gatekeeper_ca = write_pki(pki)
        port = free_port()
        config = {
            "apiVersion": "countersign.dev/v1alpha1",
            "server": {
                "address": "127.0.0.1",
                "port": port,
                "tls": {
                    "certFile": "pki/tls.crt",
                    "keyFile": "pki/tls.key",
                    "clientCAFile": "pki/gatekeeper-ca.crt",
                },
            },
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"sbom": {"type": "sbom"}},
            "policies": [{"name": "require-sbom", "scopes": ["*"], "allOf": ["sbom"]}],
        }
        config_file = work / "countersign.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        print(yaml.safe_dump(config, sort_keys=False).rstrip().replace("\n", "\n  ").join(["  ", ""]))
        log = (work / "countersign.log").open("wb")
        countersign = shutil.which("countersign", path=str(Path(sys.executable).parent)) or "countersign"
        proc = await asyncio.create_subprocess_exec(
            countersign, "serve", "--config", str(config_file), stdout=log, stderr=subprocess.STDOUT, cwd=work
        )
        try:
            ctx = ssl.create_default_context()
            server_ca.configure_trust(ctx)
            gatekeeper_ca.issue_cert("gatekeeper-webhook-service.gatekeeper-system.svc").configure_cert(ctx)
            url = f"https://127.0.0.1:{port}"
            await wait_ready(url, ctx, proc)

            keys = [with_sbom.reference, plain.reference]
            banner("Gatekeeper's ProviderRequest for a Pod with both images")
            print("  " + json.dumps({"kind": "ProviderRequest", "request": {"keys": keys}}))
            reply = await ask(url + "/v1/verify", ctx, keys)
            banner("ProviderResponse")
            print(json.dumps(reply, indent=2))
            banner("verdicts")
            summarize(reply)

            banner("mutation path: tag -> digest")
            pinned = await ask(url + "/v1/mutate", ctx, [with_sbom.reference])
            for item in pinned["response"]["items"]:
                print(f"  {item['key']}  ->  {item.get('value', item.get('error'))}")
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
            log.close()
        values = [i["value"]["allowed"] for i in reply["response"]["items"]]
        return 0 if values == [True, False] else 1


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


def main() -> int:
    return in_scratch_directory("countersign-demo-", lambda work: asyncio.run(demo(work)))


if __name__ == "__main__":
    sys.exit(main())
