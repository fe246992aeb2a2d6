"""The `countersign` command, run as a user runs it (`make demo`: tests/integration/test_demo.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.images import attach_sbom, push_image
from tests.support.registries import Registry, free_ports

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def countersign(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provider.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )


def write_config(path: Path, registry: Registry) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "registries": {registry.host: {"insecure": True}, "127.0.0.1:9": {"insecure": True}},
                "verifiers": {"sbom": {"type": "sbom"}},
                "policies": [{"scopes": ["*"], "allOf": ["sbom"]}],
            }
        )
    )
    return path


async def test_verify_exit_codes_and_output(
    olareg_registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    good = await asyncio.to_thread(push_image, olareg_registry, repo_name, "good", seed="good")
    await asyncio.to_thread(attach_sbom, olareg_registry, good, fmt="cyclonedx")
    bare = await asyncio.to_thread(push_image, olareg_registry, repo_name, "bare", seed="bare")
    config = str(write_config(tmp_path / "c.yaml", olareg_registry))

    ok = await asyncio.to_thread(countersign, "verify", good.reference, "--config", config)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"ALLOWED    {good.reference}")
    assert "cyclonedx SBOM" in ok.stdout

    denied = await asyncio.to_thread(
        countersign, "verify", good.reference, bare.reference, "--config", config
    )
    assert denied.returncode == 1
    assert f"DENIED     {bare.reference}" in denied.stdout
    assert "[sbom_not_found]" in denied.stdout

    undecided = await asyncio.to_thread(
        countersign, "verify", bare.reference, "127.0.0.1:9/x:1", "--config", config, "--timeout", "3"
    )
    assert undecided.returncode == 2
    assert "UNDECIDED  127.0.0.1:9/x:1" in undecided.stdout

    as_json = await asyncio.to_thread(
        countersign, "verify", good.reference, "Not/Valid", "--config", config, "--output", "json"
    )
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc[good.reference]["value"]["allowed"] is True
    assert "error" in doc["Not/Valid"]


def test_config_validate(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("verifiers: {pin: {type: digest-pin}}\npolicies: [{scope: '*', allOf: [pin]}]\n")
    result = countersign("config", "validate", str(good))
    assert result.returncode == 0
    assert "valid (fingerprint sha256:" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("verifiers: {pin: {type: digest-pin}}\npolicies: [{scope: '*', allOf: [pin, sbom]}]\n")
    result = countersign("config", "validate", str(bad))
    assert result.returncode == 2
    assert "policies[0].allOf[1]: unknown verifier 'sbom'" in result.stderr

    bad_options = tmp_path / "bad-options.yaml"
    bad_options.write_text(
        "verifiers: {pin: {type: digest-pin, options: {verifyTag: maybe}}}\n"
        "policies: [{scope: '*', allOf: [pin]}]\n"
    )
    result = countersign("config", "validate", str(bad_options))
    assert result.returncode == 2
    assert "verifiers.pin.options.verifyTag" in result.stderr

    unknown_type = tmp_path / "unknown-type.yaml"
    unknown_type.write_text("verifiers: {x: {type: nope}}\npolicies: [{scope: '*', allOf: [x]}]\n")
    result = countersign("config", "validate", str(unknown_type))
    assert result.returncode == 2
    assert "verifiers.x.type: unknown verifier type 'nope'" in result.stderr


def test_config_validate_resolves_verifier_paths_against_the_config_directory(tmp_path: Path) -> None:
    # The CLI runs in REPO_ROOT; the configuration and the files it names are in tmp_path/etc.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.support import notation
    from tests.support.notation import SigningChain

    etc = tmp_path / "etc"
    (etc / "keys").mkdir(parents=True)
    (etc / "keys" / "release.pub").write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ca = SigningChain(name="countersign-cli-paths", intermediate=False, ca_kind="ecdsa-p256")
    notation.write_notation_layout(etc, ca.root_pem)
    config = etc / "countersign.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "verifiers": {
                    "signed": {
                        "type": "cosign",
                        "options": {"keys": [{"path": "keys/release.pub"}], "transparencyLog": "skip"},
                    },
                    "notary": {
                        "type": "notation",
                        "options": {
                            "trustPolicy": "notation/trustpolicy.json",
                            "trustStore": "notation/truststore",
                        },
                    },
                },
                "policies": [{"scope": "*", "allOf": ["signed", "notary"]}],
            }
        )
    )
    result = countersign("config", "validate", str(config))
    assert result.returncode == 0, result.stderr
    assert "valid (fingerprint sha256:" in result.stdout

    (etc / "keys" / "release.pub").unlink()
    result = countersign("config", "validate", str(config))
    assert result.returncode == 2
    assert "verifiers.signed.options.keys[0].path: cannot read" in result.stderr
    assert str(etc / "keys" / "release.pub") in result.stderr


def test_serve_refuses_plain_http(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("verifiers: {pin: {type: digest-pin}}\npolicies: [{scope: '*', allOf: [pin]}]\n")
    result = countersign("serve", "--config", str(config))
    assert result.returncode == 2
    assert "server.tls is required" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"auth": {"dockerConfigs": ["missing/config.json"]}}, "docker config"),
        ({"registries": {"reg.example.com": {"caFile": "missing-ca.pem"}}}, "caFile: cannot be loaded"),
    ],
    ids=["unreadable docker config", "unreadable CA file"],
)
def test_start_up_errors_exit_2_with_a_message(
    tmp_path: Path, extra: dict[str, object], message: str
) -> None:
    config = tmp_path / "c.yaml"
    doc = {
        "verifiers": {"pin": {"type": "digest-pin"}},
        "policies": [{"scope": "*", "allOf": ["pin"]}],
        **extra,
    }
    config.write_text(yaml.safe_dump(doc))
    result = countersign("verify", "nginx:1", "--config", str(config))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_missing_tls_files_exits_2_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {
                    "port": 0,
                    "address": "127.0.0.1",
                    "tls": {"certFile": "no.crt", "keyFile": "no.key"},
                },
                "verifiers": {"pin": {"type": "digest-pin"}},
                "policies": [{"scope": "*", "allOf": ["pin"]}],
            }
        )
    )
    result = countersign("serve", "--config", str(config), timeout=30)
    assert result.returncode == 2
    assert "cannot serve" in result.stderr
    assert "Traceback" not in result.stderr


async def test_serve_with_a_plain_http_health_port(tmp_path: Path) -> None:
    import aiohttp
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    (tmp_path / "tls.crt").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    ports = free_ports(2)
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {
                    "address": "127.0.0.1",
                    "port": ports[0],
                    "healthPort": ports[1],
                    "tls": {"certFile": "tls.crt", "keyFile": "tls.key"},
                },
                "verifiers": {"pin": {"type": "digest-pin"}},
                "policies": [{"scope": "*", "allOf": ["pin"]}],
            }
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provider.cli", "serve", "--config", str(config), cwd=REPO_ROOT
    )
    try:
        async with aiohttp.ClientSession() as session:
            health = f"http://127.0.0.1:{ports[1]}"
            for _ in range(100):
                try:
                    async with session.get(health + "/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            async with session.get(health + "/healthz") as resp:
                assert resp.status == 200
            async with session.get(health + "/metrics") as resp:
                assert "countersign_requests_total" in await resp.text()
            async with session.post(health + "/v1/verify", json={}) as resp:
                assert resp.status in (404, 405)  # verification is only on the TLS listener
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0  # clean shutdown on SIGTERM
