"""README.md's commands work as written: its "Verify from a shell" block and its sample of `make demo`.

The shell block is read out of README.md and run with bash, line by line in one shell, in a scratch
directory holding copies of README.md and examples/config.yaml; the only change is the registry's port
(a free one instead of 5000, in the commands and in the configuration's copy alike). The two set-up lines
(activating the virtualenv, putting the tools on PATH) are done by the test itself: the test's own
interpreter and COUNTERSIGN_TOOLS are what they name. A command's expected exit status is the "exit N" of
its comment, else 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_demo import DEMO_TABLE
from tests.support.registries import free_port, port_is_free
from tests.support.tools import require_tool, tools_bin

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
SET_UP = ("source ~/.cache/countersign/venv-", "export PATH=~/.cache/countersign/tools/bin:")


@dataclass(frozen=True)
class Command:
    line: str
    exit_status: int


def section(heading: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def first_block(text: str, language: str = "sh") -> list[str]:
    """The lines of the first fenced block whose info string is ``language`` ("" for a plain fence)."""
    block: list[str] | None = None
    info = ""
    for line in text.splitlines():
        if line.startswith("```"):
            if block is None:
                block, info = [], line[3:].strip()
                continue
            if info == language:
                return block
            block = None
        elif block is not None:
            block.append(line)
    raise AssertionError(f"no ```{language} block in:\n{text}")


def shell_commands() -> tuple[list[str], list[Command]]:
    """The block's set-up lines and its commands (comments stripped, expected exit status from them)."""
    set_up: list[str] = []
    commands: list[Command] = []
    for raw in first_block(section("Verify from a shell")):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        command, _, comment = line.partition("  #")
        if command.startswith(SET_UP):
            set_up.append(command.strip())
            continue
        status = re.search(r"\bexit (\d)\b", comment)
        commands.append(Command(command.strip(), int(status.group(1)) if status else 0))
    return set_up, commands


def test_the_readme_shell_block_names_its_set_up_and_commands() -> None:
    set_up, commands = shell_commands()
    assert [line.split()[0] for line in set_up] == ["source", "export"]
    assert [c.line.split()[:2] for c in commands] == [
        ["olareg", "serve"],
        ["oras", "push"],
        ["countersign", "config"],
        ["countersign", "verify"],
        ["countersign", "verify"],
        ["kill", "%1"],
    ]


def test_the_readme_shell_block_runs_as_written(tmp_path: Path) -> None:
    for tool in ("olareg", "oras"):
        require_tool(tool)
    _, commands = shell_commands()
    port = free_port()

    def local(text: str) -> str:
        return re.sub(r"\b5000\b", str(port), text)

    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "config.yaml").write_text(
        local((REPO_ROOT / "examples" / "config.yaml").read_text())
    )
    shutil.copy(README, tmp_path / "README.md")
    script = ["exec 2>&1", "trap 'kill $(jobs -p) 2>/dev/null; true' EXIT"]
    for index, command in enumerate(commands):
        script += [f"echo '::begin {index}'", local(command.line), f'echo "::end {index} $?"']
    env = dict(
        os.environ,
        PATH=os.pathsep.join([str(tools_bin()), str(Path(sys.executable).parent), os.environ["PATH"]]),
    )
    completed = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = completed.stdout
    outputs: dict[int, str] = {}
    statuses: dict[int, int] = {}
    for match in re.finditer(r"^::begin (\d+)\n(.*?)^::end \1 (\d+)$", out, re.MULTILINE | re.DOTALL):
        outputs[int(match.group(1))] = match.group(2)
        statuses[int(match.group(1))] = int(match.group(3))
    assert statuses == {i: c.exit_status for i, c in enumerate(commands)}, out
    assert "valid (fingerprint sha256:" in outputs[2]
    denied, allowed = outputs[3], outputs[4]
    # The README's sentence after the block: DENIED with not_pinned and sbom_not_found, then ALLOWED.
    assert denied.startswith(f"DENIED     localhost:{port}/demo/hello:1.0"), denied
    assert "[not_pinned]" in denied and "[sbom_not_found]" in denied
    assert allowed.startswith(f"ALLOWED    localhost:{port}/demo/hello@sha256:"), allowed
    assert "[pinned]" in allowed
    assert port_is_free(port), "`kill %1` left the registry running"


def test_the_readme_shows_the_demo_table_the_demo_prints() -> None:
    """The sample in "Try it" is the table the demo prints (tests/integration/test_demo.py)."""
    sample = [line.split()[:3] for line in first_block(section("Try it"), "")[1:]]
    assert sample == DEMO_TABLE
