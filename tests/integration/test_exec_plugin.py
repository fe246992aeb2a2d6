"""The exec verifier with the Go example plugin (examples/exec-plugin), built with the real Go toolchain.

Images and scan-report referrers are pushed to real registries with oras; the plugin is run by
`countersign verify` (a subprocess, as a user runs it) and by the engine through the real registry client,
and it passes `countersign plugin check exec` (the conformance checker) with the example's options.yaml.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from provider.config import parse_config
from provider.outcome import Decided
from tests.support.images import PushedImage, attach_artifact, push_image
from tests.support.registries import Registry
from verifiers.base import Report
from verifiers.exec import API_VERSION, parse_response

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "exec-plugin"
SCAN = "application/vnd.example.scan+json"
GO_CACHE = Path.home() / ".cache" / "countersign" / "go"


def go_tool() -> Path:
    """The `go` command: $COUNTERSIGN_GO, else `go` on PATH, else /usr/local/go/bin/go."""
    configured = os.environ.get("COUNTERSIGN_GO")
    candidates = [configured] if configured else [shutil.which("go"), "/usr/local/go/bin/go"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    pytest.fail(
        "the Go toolchain is not installed, and the exec example plugin (examples/exec-plugin) is built with "
        "it: install Go 1.22 or later and put `go` on PATH (or set COUNTERSIGN_GO to the go binary)",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def scan_gate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, built offline (standard library only) into a temporary directory."""
    out = tmp_path_factory.mktemp("exec-plugin") / "scan-gate"
    env = {
        **os.environ,
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GOCACHE": str(GO_CACHE / "cache"),
        "GOPATH": str(GO_CACHE / "path"),
    }
    go = go_tool()
    for command in ([str(go), "vet", "./..."], [str(go), "build", "-trimpath", "-o", str(out), "."]):
        done = subprocess.run(command, cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr}"
    return out


def test_the_readme_request_gets_the_readme_answer(scan_gate: Path) -> None:
    """The exchange shown in examples/exec-plugin/README.md, replayed."""
    request = (EXAMPLE / "testdata" / "request.json").read_bytes()
    done = subprocess.run([str(scan_gate)], input=request, capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    readme = (EXAMPLE / "README.md").read_text()
    shown = next(line for line in readme.splitlines() if line.startswith('{"apiVersion"'))
    assert done.stdout.decode() + " exit 0" == shown
    answer = parse_response(done.stdout, json.loads(request)["subject"]["digest"])
    assert isinstance(answer, Report) and (answer.passed, answer.reason) == (True, "scan_passed")


def scan_report(critical: int) -> bytes:
    return json.dumps({"scanner": "example", "critical": critical, "high": 4}).encode()


def verifier_options(program: str) -> dict[str, Any]:
    return {
        "command": [program],
        "timeout": "5s",
        "config": {"field": "critical", "max": 0, "requireAnnotations": ["org.opencontainers.image.source"]},
        "referrers": {"artifactTypes": [SCAN], "maxCount": 4, "maxBytes": 1048576},
    }


async def push(registry: Registry, repo: str, tag: str, *, annotated: bool = True) -> PushedImage:
    annotations = {"org.opencontainers.image.source": "https://git.example/app"} if annotated else None
    return await asyncio.to_thread(push_image, registry, repo, tag, seed=None, annotations=annotations)


async def attach_scan(registry: Registry, image: PushedImage, critical: int) -> str:
    return await asyncio.to_thread(
        attach_artifact,
        registry,
        image,
        artifact_type=SCAN,
        content=scan_report(critical),
        media_type="application/json",
        filename="scan.json",
    )


def countersign(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "provider.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


def check_rows(stdout: str) -> dict[str, tuple[str, str]]:
    """`plugin check`'s table: check -> (result, message)."""
    lines = stdout.splitlines()
    assert lines[0].split() == ["CHECK", "RESULT", "MESSAGE"], stdout
    rows = {}
    for line in lines[1:-1]:
        check, result, message = line.split(maxsplit=2)
        rows[check] = (result, message)
    return rows


def test_the_go_plugin_passes_plugin_check(scan_gate: Path, tmp_path: Path) -> None:
    """The example's options.yaml beside the built binary, checked from another directory: `command` is
    relative to the options file."""
    shutil.copy2(scan_gate, tmp_path / "scan-gate")
    options = tmp_path / "options.yaml"
    shutil.copy2(EXAMPLE / "options.yaml", options)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = countersign("plugin", "check", "exec", "--options", str(options), cwd=elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = check_rows(result.stdout)
    assert {check: r for check, (r, _) in rows.items()} == {check: "ok" for check in rows}
    assert len(rows) >= 17 and {"build", "plain-image", "malformed:junk-blobs", "cancelled"} <= set(rows)
    assert result.stdout.splitlines()[-1] == f"{len(rows)} of {len(rows)} checks passed"
    assert rows["plain-image"][1] == "failed (scan_missing)"
    # Junk scan reports were handed to the plugin (it read them and refused them), not only skipped.
    assert rows["malformed:junk-blobs"][1] == "failed (scan_failed)"
    # docs/plugins-exec.md shows this very output.
    docs = (REPO_ROOT / "docs" / "plugins-exec.md").read_text()
    shown = docs.split('$ countersign plugin check exec --options options.yaml; echo "exit $?"\n', 1)[1]
    assert shown.split("exit 0\n", 1)[0] == result.stdout


def test_a_plugin_that_passes_everything_fails_plugin_check(tmp_path: Path) -> None:
    yes = tmp_path / "always-yes"
    answer = {
        "apiVersion": API_VERSION,
        "kind": "VerifyResponse",
        "passed": True,
        "reason": "yes",
        "message": "y",
    }
    yes.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"answer = {answer!r}\n"
        "answer['subject'] = {'digest': json.load(sys.stdin)['subject']['digest']}\n"
        "print(json.dumps(answer))\n"
    )
    yes.chmod(0o755)
    options = tmp_path / "options.yaml"
    options.write_text(yaml.safe_dump({"command": ["./always-yes"]}))
    result = countersign("plugin", "check", "exec", "--options", str(options))
    assert result.returncode == 1, result.stdout + result.stderr
    rows = check_rows(result.stdout)
    assert rows["build"][0] == "ok"
    assert rows["plain-image"][0] == "FAILED"
    assert "passed (yes)" in rows["plain-image"][1] and "must never pass" in rows["plain-image"][1]
    assert rows["malformed:junk-manifests"][0] == "FAILED"
    failed = sum(r == "FAILED" for r, _ in rows.values())
    assert (
        result.stdout.splitlines()[-1]
        == f"{len(rows) - failed} of {len(rows)} checks passed, {failed} failed"
    )


async def test_countersign_verify_runs_the_go_plugin(
    olareg_registry: Registry, repo_name: str, tmp_path: Path, scan_gate: Path
) -> None:
    good = await push(olareg_registry, repo_name, "good")
    referrer = await attach_scan(olareg_registry, good, critical=0)
    bare = await push(olareg_registry, repo_name, "bare")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy2(scan_gate, plugins / "scan-gate")
    config = tmp_path / "countersign.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "registries": {olareg_registry.host: {"insecure": True}},
                # A relative command is relative to the configuration file, not to the working directory.
                "verifiers": {"scan": {"type": "exec", "options": verifier_options("./plugins/scan-gate")}},
                "policies": [{"scopes": ["*"], "allOf": ["scan"]}],
            }
        )
    )

    ok = await asyncio.to_thread(
        countersign, "verify", good.reference, "--config", str(config), "--output", "json"
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    value = json.loads(ok.stdout)[good.reference]["value"]
    assert value["allowed"] is True
    [report] = value["verifiers"]
    assert (report["name"], report["type"], report["passed"], report["reason"]) == (
        "scan",
        "exec",
        True,
        "scan_passed",
    )
    assert report["details"] == {
        "plugin": "scan-gate",
        "referrer": referrer,
        "field": "critical",
        "value": 0,
        "max": 0,
    }

    denied = await asyncio.to_thread(countersign, "verify", bare.reference, "--config", str(config))
    assert denied.returncode == 1, denied.stdout + denied.stderr
    assert f"DENIED     {bare.reference}" in denied.stdout
    assert "[scan_missing]" in denied.stdout


async def test_the_engine_runs_the_go_plugin_through_the_registry_client(
    registry: Registry, repo_name: str, scan_gate: Path, engines: Any
) -> None:
    """Both registry kinds: the referrers API (olareg) and the tag-schema fallback (distribution)."""
    failing = await push(registry, repo_name, "failing")
    await attach_scan(registry, failing, critical=2)
    fixed = await push(registry, repo_name, "fixed")
    await attach_scan(registry, fixed, critical=3)
    passing = await attach_scan(registry, fixed, critical=0)  # a later, clean report beside the old one
    unlabelled = await push(registry, repo_name, "unlabelled", annotated=False)
    await attach_scan(registry, unlabelled, critical=0)
    config = parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"scan": {"type": "exec", "options": verifier_options(str(scan_gate))}},
            "policies": [{"scopes": ["*"], "allOf": ["scan"]}],
        }
    )
    engine = await engines(config)
    images = [failing.reference, fixed.reference, unlabelled.reference]
    outcomes = await engine.verify(images, 30)

    def report(reference: str) -> dict[str, Any]:
        outcome = outcomes[reference]
        assert isinstance(outcome, Decided), outcome
        [value] = outcome.value["verifiers"]
        assert value["details"]["plugin"] == "scan-gate"
        return dict(value)

    assert report(failing.reference)["reason"] == "scan_failed"
    assert "critical is 2, more than 0" in report(failing.reference)["message"]
    fixed_report = report(fixed.reference)
    assert (fixed_report["passed"], fixed_report["reason"]) == (True, "scan_passed")
    assert fixed_report["details"]["referrer"] == passing
    assert (report(unlabelled.reference)["reason"], report(unlabelled.reference)["passed"]) == (
        "annotation_missing",
        False,
    )
