"""First-use costs are paid when the engine is built, not by the first verification of a fresh process.

A fresh interpreter builds an engine (cosign and notation verifiers, a registry with its TLS context made at
start-up), then verifies one image signed by both in a real olareg: no module may be imported during that
verification (an import on the request path runs on the event loop: `ec.ECDSA` importing cryptography's
OpenSSL backend cost about 20 ms of the first request before it was imported at build).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.dual_signing import DualSigner, require_both
from tests.support.images import push_image
from tests.support.registries import Registry

_CHILD = """
import asyncio, json, sys
from provider.config import parse_config
from provider.engine import Engine

async def main() -> None:
    config = parse_config(json.load(open(sys.argv[1])))
    engine = await Engine.create(config)
    before = set(sys.modules)
    results = await engine.verify([sys.argv[2]], 20.0)
    imported = sorted(set(sys.modules) - before)
    await engine.close()
    print(json.dumps({"value": results[sys.argv[2]].value, "imported": imported}))

asyncio.run(main())
"""


def test_the_first_verification_of_a_fresh_process_imports_nothing(
    olareg_registry: Registry, repo_name: str, dual_signer: DualSigner, tmp_path: Path
) -> None:
    registry = olareg_registry
    image = push_image(registry, repo_name, "v1", seed="countersign-first-request")
    dual_signer.sign(registry, image)
    config = {
        "registries": {registry.host: {"insecure": True}, "tls.example": {"minTLS": "1.3"}},
        "verifiers": dual_signer.verifiers(),
        "policies": require_both(),
    }
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    key_ref = f"{registry.host}/{image.repository}:v1"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(config_file), key_ref],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["value"]["allowed"] is True, report
    assert report["imported"] == [], f"imported on the request path: {report['imported']}"
