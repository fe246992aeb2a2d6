"""exec: options, the wire protocol, and process hygiene, against small plugins written to tmp_path.

The plugins are real executables (Python or shell scripts) run by the real verifier: what is asserted
about the environment, the process group, file descriptors and deadlines is what the kernel saw.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import json
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from provider.config import ConfigError, parse_config
from provider.engine import build_verifiers
from verifiers.base import (
    Context,
    Descriptor,
    OptionsError,
    Report,
    Undecided,
    option_paths_relative_to,
    plain_json,
)
from verifiers.errors import Unavailable
from verifiers.exec import API_VERSION, SAFE_PATH, ExecOptions, ExecVerifier, InvalidResponse, parse_response
from verifiers.plugins import PluginError, create_verifier
from verifiers.testing import (
    EMPTY_CONFIG,
    InMemoryRegistry,
    Request,
    artifact_manifest,
    digest_of,
    image_manifest,
    make_context,
    make_subject,
)
from verifiers.testing.conformance import check_conformance

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SCAN = "application/vnd.example.scan+json"


IMAGE_MANIFEST = image_manifest(EMPTY_CONFIG)
IMAGE_DIGEST = digest_of(IMAGE_MANIFEST)
SUBJECT = make_subject(f"registry.example/app:1@{IMAGE_DIGEST}", IMAGE_MANIFEST, namespace="team-a")


def attach(
    registry: InMemoryRegistry,
    artifact_type: str,
    layers: Sequence[bytes] = (),
    *,
    manifest: bytes | None = None,
    refers_to: str | None = None,
    listed_type: str | None = None,
) -> Descriptor:
    """A referrer of SUBJECT, listed with `listed_type` (default: its own) and annotations its manifest does
    not have; `manifest` replaces its manifest bytes, `refers_to` the subject digest its manifest names."""
    if manifest is None:
        descriptors = [registry.push_blob(SUBJECT, layer, "application/json") for layer in layers]
        named = SUBJECT.descriptor if refers_to is None else Descriptor(OCI_MANIFEST, refers_to, 100)
        manifest = artifact_manifest(named, artifact_type, descriptors)
    pushed = registry.push_manifest(SUBJECT, manifest, OCI_MANIFEST, listed=False)
    listing = dataclasses.replace(
        pushed, artifact_type=listed_type or artifact_type, annotations={"listed": "not verified"}
    )
    registry.list_referrer(SUBJECT, listing)
    return pushed


def resolved_nothing(registry: InMemoryRegistry) -> bool:
    """exec reads referrers, manifests and blobs by digest: it never resolves a tag."""
    return all(r.op != "resolve" for r in registry.requests)


def context(registry: InMemoryRegistry | None = None, seconds: float = 20.0) -> Context:
    return make_context(registry or InMemoryRegistry(), deadline_in=seconds)


def executable(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    path.chmod(0o755)
    return path


# One Python plugin whose behaviour the verifier's `config` selects.
PLUGIN = f"""
#!{sys.executable}
import json, os, subprocess, sys, time

request = json.load(sys.stdin)
config = request["config"]
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
if "dump" in config:
    with open(config["dump"], "w") as f:
        json.dump({{"request": request, "env": dict(os.environ), "cwd": os.getcwd(),
                   "fds": fds,
                   "mode": oct(os.stat(os.getcwd()).st_mode & 0o777), "pgid": os.getpgid(0),
                   "sid": os.getsid(0), "pid": os.getpid()}}, f)
if "child" in config:  # a child that inherits stdout and would outlive the plugin
    child = subprocess.Popen(["sleep", "300"])
    with open(config["child"], "w") as f:
        f.write(str(child.pid))
if "slot" in config:  # how many runs are in flight at once
    mine = os.path.join(config["slot"], str(os.getpid()))
    open(mine, "w").close()
    time.sleep(0.3)
    busy = len(os.listdir(config["slot"]))
    os.remove(mine)
    config.setdefault("details", {{}})["busy"] = busy
time.sleep(config.get("sleep", 0))
response = {{"apiVersion": "{API_VERSION}", "kind": "VerifyResponse",
            "subject": {{"digest": request["subject"]["digest"]}},
            "passed": config.get("passed", True), "reason": config.get("reason", "checked"),
            "message": config.get("message", "looked at " + request["subject"]["reference"])}}
if "details" in config:
    response["details"] = config["details"]
if config.get("undecided"):
    del response["passed"]
    response["undecided"] = True
sys.stdout.write(config["raw"] if "raw" in config else json.dumps(response))
sys.stdout.flush()
sys.exit(config.get("exit", 0))
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    return executable(tmp_path / "check-plugin", PLUGIN)


def exec_verifier(program: Path | str, **options: Any) -> ExecVerifier:
    return ExecVerifier("plugin-check", {"command": [str(program)], **options})


async def run(
    verifier: ExecVerifier, registry: InMemoryRegistry | None = None, seconds: float = 20.0
) -> Report:
    return await verifier.verify(SUBJECT, context(registry, seconds))


async def undecided(
    verifier: ExecVerifier, registry: InMemoryRegistry | None = None, seconds: float = 20.0
) -> Undecided:
    with pytest.raises(Undecided) as info:
        await run(verifier, registry, seconds)
    return info.value


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie awaiting its reaper counts as dead)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


async def wait_dead(pid: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


def our_zombies() -> list[int]:
    zombies = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            zombies.append(int(entry.name))
    return zombies


# --- options ---------------------------------------------------------------------------------------------


def test_a_program_name_is_looked_up_in_the_fixed_path_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = ExecVerifier("v", {"command": ["true", "--flag"]})
    assert str(verifier.program.parent) in SAFE_PATH.split(":")
    assert verifier.argv == (str(verifier.program), "--flag")
    executable(tmp_path / "only-here", "#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")  # the service's PATH is not consulted
    with pytest.raises(OptionsError) as info:
        ExecVerifier("v", {"command": ["only-here"]})
    assert info.value.path == "command[0]"
    assert SAFE_PATH in info.value.message


def test_a_relative_program_path_is_relative_to_the_configuration_file(tmp_path: Path, plugin: Path) -> None:
    with option_paths_relative_to(tmp_path):
        verifier = ExecVerifier("v", {"command": ["./check-plugin"]})
    assert verifier.program == plugin


@pytest.mark.parametrize(
    ("options", "path", "fragment"),
    [
        ({}, "command", "required"),
        ({"command": []}, "command", "non-empty list"),
        ({"command": "check-plugin"}, "command", "non-empty list"),
        ({"command": ["PLUGIN", 3]}, "command[1]", "string"),
        ({"command": ["PLUGIN", "a\0b"]}, "command[1]", "NUL"),
        ({"command": [""]}, "command[0]", "string"),
        ({"command": ["./missing"]}, "command[0]", "No such file"),
        ({"command": ["./"]}, "command[0]", "not a regular file"),
        ({"command": ["PLUGIN"], "timeout": 0}, "timeout", "more than 0s"),
        ({"command": ["PLUGIN"], "timeout": "10m"}, "timeout", "at most 300s"),
        ({"command": ["PLUGIN"], "timeout": "soon"}, "timeout", "duration"),
        ({"command": ["PLUGIN"], "maxOutputBytes": 10}, "maxOutputBytes", "between 256 and 1048576"),
        ({"command": ["PLUGIN"], "maxOutputBytes": True}, "maxOutputBytes", "integer"),
        ({"command": ["PLUGIN"], "maxConcurrent": 0}, "maxConcurrent", "between 1 and 64"),
        ({"command": ["PLUGIN"], "env": ["A=1"]}, "env", "mapping"),
        ({"command": ["PLUGIN"], "env": {"A-B": "1"}}, "env", "variable name"),
        ({"command": ["PLUGIN"], "env": {"PATH": "/tmp"}}, "env.PATH", "set by Countersign"),
        ({"command": ["PLUGIN"], "env": {"HOME": "/root"}}, "env.HOME", "set by Countersign"),
        ({"command": ["PLUGIN"], "env": {"N": 1}}, "env.N", "string"),
        ({"command": ["PLUGIN"], "config": [1]}, "config", "mapping"),
        ({"command": ["PLUGIN"], "config": {"when": datetime.date(2024, 1, 1)}}, "config.when", "quote it"),
        ({"command": ["PLUGIN"], "config": {"x": float("nan")}}, "config.x", "not a JSON number"),
        ({"command": ["PLUGIN"], "config": {"a": {"b": [{1: 2}]}}}, "config.a.b[0]", "not a string"),
        ({"command": ["PLUGIN"], "referrers": {}}, "referrers.artifactTypes", "required"),
        ({"command": ["PLUGIN"], "referrers": {"artifactTypes": []}}, "referrers.artifactTypes", "non-empty"),
        (
            {"command": ["PLUGIN"], "referrers": {"artifactTypes": ["json"]}},
            "referrers.artifactTypes[0]",
            "media type",
        ),
        (
            {"command": ["PLUGIN"], "referrers": {"artifactTypes": [SCAN], "maxCount": 65}},
            "referrers.maxCount",
            "1 and 64",
        ),
        (
            {"command": ["PLUGIN"], "referrers": {"artifactTypes": [SCAN], "maxBytes": 0}},
            "referrers.maxBytes",
            "between 1",
        ),
        (
            {"command": ["PLUGIN"], "referrers": {"artifactTypes": [SCAN], "types": []}},
            "referrers.types",
            "unknown",
        ),
        ({"command": ["PLUGIN"], "shell": True}, "shell", "unknown option"),
    ],
)
def test_bad_options_name_their_field(
    tmp_path: Path, plugin: Path, options: dict[str, Any], path: str, fragment: str
) -> None:
    if isinstance(options.get("command"), list):
        options["command"] = [str(plugin) if c == "PLUGIN" else c for c in options["command"]]
    with option_paths_relative_to(tmp_path), pytest.raises(OptionsError) as info:
        ExecVerifier("v", options)
    assert info.value.path == path
    assert fragment in info.value.message


def test_every_option_error_is_reported_at_once(tmp_path: Path, plugin: Path) -> None:
    with option_paths_relative_to(tmp_path), pytest.raises(OptionsError) as info:
        ExecVerifier(
            "v",
            {
                "command": ["./missing", "a\0b", 3],
                "timeout": "10m",
                "maxOutputBytes": True,
                "env": {"A-B": "1", "PATH": "/tmp", "N": 1},
                "config": {"when": datetime.date(2024, 1, 1)},
                "referrers": {"artifactTypes": ["json", SCAN, "x"], "maxCount": 0, "types": []},
                "shell": True,
            },
        )
    assert info.value.errors == [
        ("command[1]", "expected a string without NUL characters"),
        ("command[2]", "expected a string without NUL characters"),
        ("timeout", "must be more than 0s and at most 300s, got 600s"),
        ("maxOutputBytes", "expected an integer between 256 and 1048576, got True"),
        ("env", "'A-B' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"),
        ("env.PATH", "PATH is set by Countersign (PATH, LANG, HOME, TMPDIR are fixed)"),
        ("env.N", "expected a string without NUL characters"),
        ("config.when", "date is not a JSON value (quote it to pass a string)"),
        ("referrers.artifactTypes[0]", "expected a media type such as application/example+json, got 'json'"),
        ("referrers.artifactTypes[2]", "expected a media type such as application/example+json, got 'x'"),
        ("referrers.maxCount", "expected an integer between 1 and 64, got 0"),
        ("referrers.types", "unknown option (known: artifactTypes, maxBytes, maxCount)"),
        (
            "shell",
            "unknown option (known: command, config, env, maxConcurrent, maxOutputBytes, referrers, timeout)",
        ),
    ]
    # The first error is the one a single error would be: `str()` lists them all, one a line.
    assert (info.value.path, info.value.message) == info.value.errors[0]
    assert str(info.value).splitlines()[0] == "command[1]: expected a string without NUL characters"


def test_the_program_is_checked_with_the_other_errors_once_the_command_is_well_formed(
    tmp_path: Path, plugin: Path
) -> None:
    options: dict[str, Any] = {"command": ["./missing"], "maxConcurrent": 0, "referrers": []}
    with option_paths_relative_to(tmp_path), pytest.raises(OptionsError) as info:
        ExecVerifier("v", options)
    assert [path for path, _ in info.value.errors] == ["command[0]", "maxConcurrent", "referrers"]
    assert "No such file" in info.value.errors[0][1]
    assert info.value.errors[2][1] == "expected a mapping with artifactTypes, maxCount and maxBytes"
    plugin.chmod(0o644)  # not executable: refused after the shape, even when nothing else is wrong
    with pytest.raises(OptionsError) as info:
        ExecVerifier("v", {"command": [str(plugin)]})
    assert info.value.errors == [("command[0]", f"{plugin} is not executable")]


def test_every_error_reaches_the_configuration_at_its_full_path(tmp_path: Path, plugin: Path) -> None:
    config = parse_config(
        {
            "verifiers": {
                "scan": {"type": "exec", "options": {"command": [str(plugin)], "env": {"HOME": "/"}}},
                "gate": {"type": "exec", "options": {"command": ["./missing"], "timeout": 0}},
            },
            "policies": [{"scope": "*", "allOf": ["scan", "gate"]}],
        },
        tmp_path,
    )
    with pytest.raises(ConfigError) as info:
        build_verifiers(config)
    assert [path for path, _ in info.value.errors] == [
        "verifiers.scan.options.env.HOME",
        "verifiers.gate.options.command[0]",
        "verifiers.gate.options.timeout",
    ]


def test_the_options_model_keeps_defaults_and_normalizes_artifact_types(plugin: Path) -> None:
    verifier = ExecVerifier(
        "v",
        {
            "command": [str(plugin)],
            "referrers": {"artifactTypes": ["Application/X+JSON; v=1", "application/x+json"]},
        },
    )
    assert (verifier.timeout, verifier.max_output, verifier.max_concurrent) == (5.0, 65536, 4)
    assert (verifier.env, verifier.config) == ({}, {})
    # null is the same as left out for an option without a default value (docs/configuration.md)
    assert ExecVerifier("v", {"command": [str(plugin)], "referrers": None}).referrers is None
    assert verifier.referrers is not None
    assert verifier.referrers.artifact_types == ("application/x+json",)
    assert (verifier.referrers.max_count, verifier.referrers.max_bytes) == (8, 4 * 1024 * 1024)
    parsed = ExecOptions.model_validate({"command": ["x"], "timeout": "900ms", "config": {"a": (1, 2.5)}})
    assert (parsed.command, parsed.timeout, parsed.config) == (("x",), 0.9, {"a": [1, 2.5]})


def test_a_program_that_is_not_executable_or_writable_by_all_is_refused(tmp_path: Path, plugin: Path) -> None:
    plugin.chmod(0o644)
    with pytest.raises(OptionsError, match="not executable"):
        exec_verifier(plugin)
    plugin.chmod(0o757)
    with pytest.raises(OptionsError, match="writable by every user"):
        exec_verifier(plugin)


def test_options_errors_reach_the_configuration_with_their_path(plugin: Path) -> None:
    with pytest.raises(PluginError) as info:
        create_verifier("exec", "scan", {"command": [str(plugin)], "maxConcurrent": 1000})
    assert info.value.path == "options.maxConcurrent"
    verifier = create_verifier("exec", "scan", {"command": [str(plugin)]})
    assert (verifier.name, verifier.type) == ("scan", "exec")


# --- the protocol ----------------------------------------------------------------------------------------


async def test_the_request_carries_subject_config_and_verifier(tmp_path: Path, plugin: Path) -> None:
    dump = tmp_path / "dump.json"
    config = {"dump": str(dump), "rules": {"labels": ["team"], "min": 2}, "details": {"checked": 3}}
    report = await run(exec_verifier(plugin, config=config, timeout="4s"))
    assert report == Report(
        True, "checked", f"looked at {SUBJECT.reference}", {"checked": 3, "plugin": "check-plugin"}
    )
    request = json.loads(dump.read_text())["request"]
    assert request["apiVersion"] == API_VERSION
    assert request["kind"] == "VerifyRequest"
    assert request["verifier"] == {"name": "plugin-check", "type": "exec"}
    assert request["config"] == config
    manifest = base64.b64decode(request["subject"].pop("manifest"), validate=True)
    assert manifest == IMAGE_MANIFEST
    assert request["subject"] == {
        "reference": f"registry.example/app:1@{IMAGE_DIGEST}",
        "registry": "registry.example",
        "repository": "app",
        "tag": "1",
        "digest": IMAGE_DIGEST,
        "mediaType": OCI_MANIFEST,
        "size": len(IMAGE_MANIFEST),
        "namespace": "team-a",
    }
    assert request["referrers"] == [] and request["skippedReferrers"] == []
    assert 3 < request["timeoutSeconds"] <= 4


async def test_a_failed_decision_and_an_undecided_answer_come_through(plugin: Path) -> None:
    report = await run(
        exec_verifier(plugin, config={"passed": False, "reason": "label_missing", "message": "no team label"})
    )
    assert (report.passed, report.reason, report.message) == (False, "label_missing", "no team label")
    answer = await undecided(
        exec_verifier(plugin, config={"undecided": True, "reason": "scanner_down", "message": "try later"})
    )
    assert (answer.reason, answer.message) == ("scanner_down", "try later")


async def test_the_timeout_is_capped_by_the_deadline(tmp_path: Path, plugin: Path) -> None:
    dump = tmp_path / "dump.json"
    start = time.monotonic()
    answer = await undecided(
        exec_verifier(plugin, timeout=30, config={"dump": str(dump), "sleep": 60}), seconds=1.0
    )
    assert answer.reason == "plugin_timeout"
    assert time.monotonic() - start < 10  # not the 30s timeout
    assert json.loads(dump.read_text())["request"]["timeoutSeconds"] <= 1.0


VALID = {
    "apiVersion": API_VERSION,
    "kind": "VerifyResponse",
    "subject": {"digest": IMAGE_DIGEST},
    "passed": True,
    "reason": "checked",
    "message": "fine",
}


def variant(**changes: Any) -> bytes:
    doc = {**VALID, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_a_valid_response_parses() -> None:
    deepest = {"x": deep(15)}  # details and 15 levels inside it: the most a response may nest
    assert parse_response(variant(details=deepest), IMAGE_DIGEST) == Report(True, "checked", "fine", deepest)
    assert parse_response(variant(details={"a": [1, 2.5, None, "x"]}), IMAGE_DIGEST) == Report(
        True, "checked", "fine", {"a": [1, 2.5, None, "x"]}
    )
    answer = parse_response(variant(passed=..., undecided=True), IMAGE_DIGEST)
    assert isinstance(answer, Undecided) and (answer.reason, answer.message) == ("checked", "fine")


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("stdout", "fragment"),
    [
        (b"", "not a strict JSON document"),
        (b"passed", "not a strict JSON document"),
        (b"[]", "an array, not an object"),
        (variant()[:-1] + b',"passed":false}', "duplicate key"),
        (variant(details=...)[:-1] + b',"details":{"score":NaN}}', "NaN"),
        (b"\xef\xbb\xbf" + variant(), "not a strict JSON document"),
        (variant()[:-1] + b',"note":"\xff"}', "not a strict JSON document"),
        (variant(apiVersion="countersign.dev/exec/v2"), "apiVersion"),
        (variant(apiVersion=...), "apiVersion"),
        (variant(kind="VerifyRequest"), "kind"),
        (variant(subject=...), "echo the subject"),
        (variant(subject={"digest": "sha256:" + "0" * 64}), "echo the subject"),
        (variant(subject={"digest": IMAGE_DIGEST, "reference": "x"}), "echo the subject"),
        (variant(reason="LabelMissing"), "snake_case"),
        (variant(reason="label__missing"), "snake_case"),
        (variant(reason="a" * 65), "snake_case"),
        (variant(reason=7), "snake_case"),
        (variant(message=""), "message"),
        (variant(message="m" * 2049), "message"),
        (variant(message="\ud800"), "surrogate"),
        (variant(passed="yes"), "passed must be true or false"),
        (variant(passed=...), "passed must be true or false"),
        (variant(undecided=True), "undecided"),
        (variant(passed=..., undecided=False), "undecided"),
        (variant(passed=..., undecided=True, details={}), "undecided"),
        (variant(details=[1]), "details must be an object"),
        (variant(details={"plugin": "other"}), "reserved"),
        (variant(details={"skippedCount": 0}), "reserved"),
        (variant(details={"x": deep(16)}), "nested more than 17 levels deep"),
        (variant(details={"x": deep(40)}), "not a strict JSON document"),
        (variant(details={"n": 2**64}), "64-bit"),
        (variant(details={"n": list(range(10_001))}), "more than 10000 values"),
        (variant()[:-1] + b',"details":{"f":1e999}}', "not a JSON number"),
        (variant(extra=1), "unknown field"),
    ],
)
def test_malformed_responses_are_refused(stdout: bytes, fragment: str) -> None:
    with pytest.raises(InvalidResponse) as info:
        parse_response(stdout, IMAGE_DIGEST)
    assert fragment in str(info.value)


def test_config_and_details_are_copied_by_base_plain_json_with_exec_s_own_bounds(plugin: Path) -> None:
    # config: 32 levels inside it, as a report's details; 10,000 values and keys (a report's: 50,000).
    assert ExecVerifier("v", {"command": [str(plugin)], "config": {"d": deep(31)}}).config == {"d": deep(31)}
    with pytest.raises(OptionsError) as info:
        ExecVerifier("v", {"command": [str(plugin)], "config": {"d": deep(32)}})
    assert info.value.message == "nested more than 32 levels deep"
    assert info.value.path == "config.d" + "[0]" * 31
    with pytest.raises(OptionsError) as info:
        ExecVerifier("v", {"command": [str(plugin)], "config": {str(i): i for i in range(5_000)}})
    assert info.value.errors == [("config", "more than 10000 values")]  # keys count
    assert plain_json({str(i): i for i in range(5_000)}) == {str(i): i for i in range(5_000)}
    # details: 10,000 values and keys too (their depth is bounded by the strict JSON parser first).
    many = {str(i): i for i in range(4_999)}
    assert parse_response(variant(details=many), IMAGE_DIGEST) == Report(True, "checked", "fine", many)
    with pytest.raises(InvalidResponse, match=r"^details: more than 10000 values$"):
        parse_response(variant(details={str(i): i for i in range(5_000)}), IMAGE_DIGEST)


async def test_an_invalid_response_is_undecided_never_passed(plugin: Path) -> None:
    raw = json.dumps({**VALID, "subject": {"digest": "sha256:" + "0" * 64}})  # an answer for another image
    answer = await undecided(exec_verifier(plugin, config={"raw": raw}))
    assert answer.reason == "plugin_invalid_response"
    assert "echo the subject" in answer.message
    answer = await undecided(exec_verifier(plugin, config={"raw": '{"passed": true}'}))
    assert answer.reason == "plugin_invalid_response"


@pytest.mark.parametrize(
    ("script", "reason", "fragment"),
    [
        ("cat >/dev/null; echo oops >&2; exit 3", "plugin_failed", "exited with status 3"),
        ("kill -9 $$", "plugin_failed", "killed by SIGKILL"),
        ("cat >/dev/null; exec yes", "plugin_invalid_response", "more than maxOutputBytes (4096)"),
        ("exec sleep 300", "plugin_timeout", "did not answer within 0.5s"),
    ],
)
async def test_failures_are_undecided(
    tmp_path: Path, script: str, reason: str, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    program = executable(tmp_path / "bad-plugin", f"#!/bin/sh\n{script}\n")
    start = time.monotonic()
    answer = await undecided(exec_verifier(program, timeout="0.5s", maxOutputBytes=4096))
    assert (answer.reason, fragment in answer.message) == (reason, True), answer.message
    assert time.monotonic() - start < 10  # not 300s of sleep or an endless flood
    assert "oops" not in answer.message  # stderr is logged, never reported
    if "oops" in script:
        assert "oops" in caplog.text


async def test_a_valid_answer_with_a_nonzero_exit_status_is_not_a_decision(plugin: Path) -> None:
    answer = await undecided(exec_verifier(plugin, config={"exit": 1}))
    assert (answer.reason, answer.message) == ("plugin_failed", "plugin check-plugin exited with status 1")


async def test_a_program_gone_since_loading_is_undecided(plugin: Path) -> None:
    verifier = exec_verifier(plugin)
    await asyncio.to_thread(plugin.unlink)
    answer = await undecided(verifier)
    assert answer.reason == "plugin_failed" and "could not be started" in answer.message


# --- process hygiene -------------------------------------------------------------------------------------


async def test_the_environment_is_scrubbed(
    tmp_path: Path, plugin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUNTERSIGN_TEST_SECRET", "hunter2")
    monkeypatch.setenv("REGISTRY_PASSWORD", "hunter3")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    dump = tmp_path / "dump.json"
    await run(exec_verifier(plugin, env={"PLUGIN_MODE": "strict"}, config={"dump": str(dump)}))
    seen = json.loads(dump.read_text())
    env = seen["env"]
    workdir = env["HOME"]
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PLUGIN_MODE": "strict",
    }
    assert "hunter" not in dump.read_text()
    assert seen["cwd"] == await asyncio.to_thread(os.path.realpath, workdir)
    assert seen["mode"] == "0o700"
    assert not await asyncio.to_thread(Path(workdir).exists)  # removed after the run
    assert seen["fds"] == [0, 1, 2, 3]  # stdin, stdout, stderr, and listdir's own
    assert seen["pgid"] == seen["pid"] == seen["sid"]  # its own session and process group


async def test_a_child_holding_stdout_is_killed_when_the_plugin_exits(tmp_path: Path, plugin: Path) -> None:
    pid_file = tmp_path / "child.pid"
    start = time.monotonic()
    report = await run(exec_verifier(plugin, config={"child": str(pid_file)}))
    assert report.passed
    assert time.monotonic() - start < 10  # not held up by the child's copy of stdout
    assert await wait_dead(int(pid_file.read_text()))


async def test_the_process_group_is_killed_on_timeout(tmp_path: Path, plugin: Path) -> None:
    pid_file = tmp_path / "child.pid"
    answer = await undecided(
        exec_verifier(plugin, timeout="1s", config={"child": str(pid_file), "sleep": 60})
    )
    assert answer.reason == "plugin_timeout"
    assert await wait_dead(int(pid_file.read_text()))


async def test_cancellation_kills_and_reaps_the_process_group(tmp_path: Path, plugin: Path) -> None:
    pid_file = tmp_path / "child.pid"
    dump = tmp_path / "dump.json"
    verifier = exec_verifier(
        plugin, timeout="60s", config={"child": str(pid_file), "dump": str(dump), "sleep": 60}
    )
    task = asyncio.create_task(run(verifier, seconds=60))
    for _ in range(500):
        if pid_file.is_file() and pid_file.read_text():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    plugin_pid = json.loads(dump.read_text())["pid"]
    assert await wait_dead(int(pid_file.read_text()))
    assert not alive(plugin_pid)
    assert plugin_pid not in our_zombies()


async def test_no_descriptor_or_zombie_is_left_behind(tmp_path: Path, plugin: Path) -> None:
    flood = executable(tmp_path / "flood", "#!/bin/sh\nexec yes\n")
    hang = executable(tmp_path / "hang", "#!/bin/sh\nexec sleep 300\n")
    verifiers = [
        exec_verifier(plugin),
        exec_verifier(plugin, config={"child": str(tmp_path / "child.pid")}),
        exec_verifier(flood, maxOutputBytes=1024),
        exec_verifier(hang, timeout="0.2s"),
        exec_verifier(plugin, config={"exit": 2}),
    ]
    await asyncio.gather(*(run(v) for v in verifiers), return_exceptions=True)  # warm up
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(3):
        results = await asyncio.gather(*(run(v) for v in verifiers), return_exceptions=True)
        assert [type(r).__name__ for r in results] == [
            "Report",
            "Report",
            "Undecided",
            "Undecided",
            "Undecided",
        ]
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert our_zombies() == []


async def test_concurrency_is_bounded_and_waiting_respects_the_deadline(tmp_path: Path, plugin: Path) -> None:
    slots = tmp_path / "slots"
    slots.mkdir()
    verifier = exec_verifier(plugin, maxConcurrent=2, config={"slot": str(slots)})
    reports = await asyncio.gather(*(run(verifier) for _ in range(6)))
    assert max(r.details["busy"] for r in reports) <= 2
    assert all(r.passed for r in reports)

    slow = exec_verifier(plugin, maxConcurrent=1, timeout="3s", config={"sleep": 1.5})
    first = asyncio.create_task(run(slow))
    await asyncio.sleep(0.3)
    start = time.monotonic()
    answer = await undecided(slow, seconds=0.5)
    assert answer.reason == "plugin_busy"
    assert time.monotonic() - start < 2
    assert (await first).passed


# --- referrers -------------------------------------------------------------------------------------------


async def test_referrers_are_fetched_verified_and_handed_over(tmp_path: Path, plugin: Path) -> None:
    registry = InMemoryRegistry()
    scan = json.dumps({"critical": 0}).encode()
    good = attach(registry, SCAN, [scan, b"second layer"])
    attach(registry, "application/vnd.other+json", [b"not wanted"])
    junk = attach(registry, SCAN, manifest=b'{"schemaVersion": 2, "layers": "nope"}')
    elsewhere = attach(registry, SCAN, [scan], refers_to="sha256:" + "e" * 64)
    liar = attach(registry, "application/vnd.other+json", [scan], listed_type=SCAN)
    gone = Descriptor("application/json", digest_of(b"gone"), 4)  # named by its manifest, never pushed
    missing_blob = attach(registry, SCAN, manifest=artifact_manifest(SUBJECT.descriptor, SCAN, [gone]))
    dump = tmp_path / "dump.json"
    verifier = exec_verifier(
        plugin, config={"dump": str(dump)}, referrers={"artifactTypes": [SCAN.upper() + "; v=1"]}
    )
    report = await run(verifier, registry)
    request = json.loads(dump.read_text())["request"]
    assert [r["descriptor"]["digest"] for r in request["referrers"]] == [good.digest]
    handed = request["referrers"][0]
    good_manifest, _ = await registry.manifest(SUBJECT.reference, good.digest)
    assert base64.b64decode(handed["manifest"]) == good_manifest
    assert {d: base64.b64decode(b) for d, b in handed["blobs"].items()} == {
        digest_of(scan): scan,
        digest_of(b"second layer"): b"second layer",
    }
    assert handed["descriptor"] == {
        "mediaType": OCI_MANIFEST,
        "digest": good.digest,
        "size": good.size,
        "artifactType": SCAN,
        "annotations": {},  # the verified manifest's, not the listing's
    }
    skipped = {s["digest"]: s["reason"] for s in request["skippedReferrers"]}
    assert set(skipped) == {junk.digest, elsewhere.digest, liar.digest, missing_blob.digest}
    assert "config: missing" in skipped[junk.digest]
    assert "its subject is not" in skipped[elsewhere.digest]
    assert "artifact type" in skipped[liar.digest]
    assert "not found" in skipped[missing_blob.digest]
    assert report.details["skippedCount"] == 4
    assert report.details["plugin"] == "check-plugin"
    assert resolved_nothing(registry)


async def test_referrers_are_bounded_by_count_and_bytes(tmp_path: Path, plugin: Path) -> None:
    registry = InMemoryRegistry()
    small = [attach(registry, SCAN, [f"scan {i}".encode()]) for i in range(3)]
    attach(registry, SCAN, [b"x" * 5000])
    dump = tmp_path / "dump.json"
    verifier = exec_verifier(
        plugin, config={"dump": str(dump)}, referrers={"artifactTypes": [SCAN], "maxCount": 2}
    )
    await run(verifier, registry)
    request = json.loads(dump.read_text())["request"]
    assert [r["descriptor"]["digest"] for r in request["referrers"]] == [small[0].digest, small[1].digest]

    registry = InMemoryRegistry()  # the same referrers, the big one listed first
    big = attach(registry, SCAN, [b"x" * 5000])
    assert [attach(registry, SCAN, [f"scan {i}".encode()]) for i in range(3)] == small
    verifier = exec_verifier(
        plugin, config={"dump": str(dump)}, referrers={"artifactTypes": [SCAN], "maxBytes": 2000}
    )
    await run(verifier, registry)
    request = json.loads(dump.read_text())["request"]
    assert [s["digest"] for s in request["skippedReferrers"]] == [big.digest]
    assert "maxBytes" in request["skippedReferrers"][0]["reason"]
    big_blob = digest_of(b"x" * 5000)
    assert Request("manifest", big.digest) in registry.requests
    assert all(r.target != big_blob for r in registry.requests)  # refused before it was fetched
    handed = sum(
        len(base64.b64decode(r["manifest"])) + sum(len(base64.b64decode(b)) for b in r["blobs"].values())
        for r in request["referrers"]
    )
    assert 1500 < handed <= 2000
    assert resolved_nothing(registry)


async def test_an_unavailable_registry_is_undecided(plugin: Path) -> None:
    registry = InMemoryRegistry()
    registry.fail("referrers", error=Unavailable("registry down"))
    verifier = exec_verifier(plugin, referrers={"artifactTypes": [SCAN]})
    with pytest.raises(Unavailable):
        await run(verifier, registry)


# --- the conformance checker (`countersign plugin check exec`) ---------------------------------------------

# Passes an image whenever it is handed a referrer, whatever the referrer holds: junk too.
CREDULOUS = f"""
#!{sys.executable}
import json, sys

request = json.load(sys.stdin)
handed = bool(request["referrers"])
sys.stdout.write(json.dumps({{"apiVersion": "{API_VERSION}", "kind": "VerifyResponse",
                             "subject": {{"digest": request["subject"]["digest"]}}, "passed": handed,
                             "reason": "report_found" if handed else "report_missing",
                             "message": "handed %d referrer(s)" % len(request["referrers"])}}))
"""


async def test_plugin_check_hands_junk_of_the_wanted_artifact_types_to_the_plugin(tmp_path: Path) -> None:
    """The junk is also of the types in referrers.artifactTypes, so it reaches the plugin (exec hands it
    nothing else): a plugin that passes whatever it is handed is caught."""
    credulous = executable(tmp_path / "credulous", CREDULOUS)
    options = {"command": [str(credulous)], "referrers": {"artifactTypes": [SCAN]}}
    findings = {f.check: f for f in await check_conformance("exec", options)}
    assert findings["plain-image"].ok, findings["plain-image"].message  # handed nothing: it fails
    assert not findings["malformed:junk-blobs"].ok
    assert "passed (report_found)" in findings["malformed:junk-blobs"].message
    assert findings["malformed:not-json"].ok  # exec never hands over what it could not verify
    assert findings["malformed:junk-manifests-unchecked"].ok
