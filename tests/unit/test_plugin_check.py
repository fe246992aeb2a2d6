"""`countersign plugin check`: the example plugin, installed as a user would, passes; a broken one does not.

The example package (examples/python-plugin) is installed with pip into a temporary directory (offline: no
dependencies, no build isolation), found through its entry point, and checked by the CLI in a subprocess.
Its own tests (written with verifiers.testing) run too, against the installed copy. Building the wheel
offline needs setuptools 70.1 or later (bdist_wheel built in), a dev dependency `make deps` installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "python-plugin"


def run(args: list[str], path: list[Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = tmp_path_factory.mktemp("source") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--target",
         str(target), str(source)],
        cwd=tmp_path_factory.mktemp("build"), env=env, capture_output=True, text=True, timeout=240,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, (
        "pip could not install examples/python-plugin offline (run `make deps`: it installs setuptools "
        f">= 70.1, which builds wheels without the `wheel` package)\n{result.stdout}{result.stderr}"
    )
    assert list(target.glob("countersign_required_annotations-0.1.0.dist-info"))
    return target


def test_the_installed_plugin_is_listed(installed: Path) -> None:
    result = run(["-m", "provider.cli", "plugin", "list"], [installed, ROOT])
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}
    assert lines["required-annotations"] == "countersign_required_annotations:RequiredAnnotationsVerifier"
    assert lines["digest-pin"] == "verifiers.digest_pin:DigestPinVerifier"


def test_the_installed_plugin_passes_plugin_check(installed: Path) -> None:
    options = EXAMPLE / "options.yaml"
    result = run(
        ["-m", "provider.cli", "plugin", "check", "required-annotations", "--options", str(options)],
        [installed, ROOT],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:-1]}
    assert rows["build"] == "ok" and rows["plain-image"] == "ok" and rows["cancelled"] == "ok"
    assert set(rows.values()) == {"ok"} and len(rows) >= 15
    assert result.stdout.splitlines()[-1] == f"{len(rows)} of {len(rows)} checks passed"


def test_the_examples_own_tests_pass_against_the_installed_copy(installed: Path) -> None:
    result = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")], [installed, ROOT])
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


BROKEN = """
from verifiers.base import Report


class Broken:
    type = "always-yes"

    def __init__(self, name, options):
        self.name = name

    async def verify(self, subject, context):
        return Report.ok("yes", "every image is fine")
"""


def test_a_broken_plugin_fails_plugin_check(tmp_path: Path) -> None:
    (tmp_path / "broken_plugin.py").write_text(BROKEN)
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[countersign.verifiers]\nalways-yes = broken_plugin:Broken\n")
    result = run(["-m", "provider.cli", "plugin", "check", "always-yes"], [tmp_path, ROOT])
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:-1]}
    assert rows["build"] == "ok"
    assert rows["plain-image"] == "FAILED" and rows["unavailable"] == "FAILED"
    assert "failed" in result.stdout.splitlines()[-1]


def test_plugin_check_of_an_unknown_type_or_bad_options(tmp_path: Path) -> None:
    unknown = run(["-m", "provider.cli", "plugin", "check", "no-such-type"], [ROOT])
    assert unknown.returncode == 1 and "unknown verifier type 'no-such-type'" in unknown.stdout
    options = tmp_path / "options.yaml"
    options.write_text("- not\n- a mapping\n")
    bad = run(["-m", "provider.cli", "plugin", "check", "digest-pin", "--options", str(options)], [ROOT])
    assert bad.returncode == 2 and "expected a mapping of options" in bad.stderr
