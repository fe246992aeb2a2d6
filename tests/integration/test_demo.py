"""`make demo` (examples/demo.py) shows what it claims: real cosign and notation signatures admitted, an
unsigned image and one signed by an untrusted key denied with their reasons, and a tag pinned to its digest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from examples.demo import TAG, DemoResult, expected, run_demo
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
#: What `make demo` needs, and nothing else (the Makefile's DEMO_TOOLS installs exactly these).
DEMO_TOOLS = ("olareg", "oras", "cosign", "notation")
#: The verdict table's first three columns, as the demo prints them and README.md's "Try it" shows them.
DEMO_TABLE = [
    [f"demo/signed-cosign:{TAG}", "allowed", "verified"],
    [f"demo/signed-notation:{TAG}", "allowed", "verified"],
    [f"demo/unsigned:{TAG}", "DENIED", "policy_not_satisfied"],
    [f"demo/signed-wrong-key:{TAG}", "DENIED", "policy_not_satisfied"],
]


def test_make_demo_builds_exactly_the_demo_tools() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"DEMO_TOOLS := {' '.join(DEMO_TOOLS)} $(if $(DEMO_GATEKEEPER),gatekeeper kube)" in makefile
    demo_target = makefile.split("\ndemo: ")[1].split("\n\n")[0]
    assert demo_target.startswith("deps\n"), "make demo must not depend on `tools` (every tool)"
    assert "tools/install.sh $(DEMO_TOOLS)" in demo_target


def require_demo_tools() -> None:
    for name in DEMO_TOOLS:
        require_tool(name)


def checks(result: DemoResult, repository: str) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.passed, c.reason) for c in result.verdict(repository).checks}


async def test_the_demo_admits_the_signed_images_and_denies_the_others_with_reasons(tmp_path: Path) -> None:
    require_demo_tools()
    result = await run_demo(tmp_path)

    assert result.system_error is None
    assert [v.repository for v in result.verdicts] == [
        "demo/signed-cosign",
        "demo/signed-notation",
        "demo/unsigned",
        "demo/signed-wrong-key",
    ]
    cosign_signed = result.verdict("demo/signed-cosign")
    assert (cosign_signed.allowed, cosign_signed.reason, cosign_signed.reasons) == (True, "verified", ())
    assert checks(result, "demo/signed-cosign")["cosign"] == (True, "cosign_verified")

    notation_signed = result.verdict("demo/signed-notation")
    assert (notation_signed.allowed, notation_signed.reason) == (True, "verified")
    assert checks(result, "demo/signed-notation") == {
        "cosign": (False, "no_signature_found"),
        "notation": (True, "notation_verified"),
    }

    unsigned = result.verdict("demo/unsigned")
    assert (unsigned.allowed, unsigned.reason) == (False, "policy_not_satisfied")
    assert checks(result, "demo/unsigned") == {
        "cosign": (False, "no_signature_found"),
        "notation": (False, "no_signature_found"),
    }
    assert unsigned.reasons[1:] and all(r.endswith("[no_signature_found]") for r in unsigned.reasons[1:])

    wrong_key = result.verdict("demo/signed-wrong-key")
    assert (wrong_key.allowed, wrong_key.reason) == (False, "policy_not_satisfied")
    assert checks(result, "demo/signed-wrong-key") == {
        "cosign": (False, "untrusted_key"),
        "notation": (False, "no_signature_found"),
    }
    assert any(r.startswith("cosign: ") and r.endswith("[untrusted_key]") for r in wrong_key.reasons)

    sent, answer, digest = result.pin
    assert sent == f"{result.registry}/demo/signed-cosign:{TAG}"
    assert answer == f"{result.registry}/demo/signed-cosign@{digest}"
    assert expected(result)


def test_make_demo_prints_the_verdict_table_and_the_pin() -> None:
    """`python -m examples.demo`, as `make demo` runs it: exit 0 and one screen with the four verdicts."""
    require_demo_tools()
    completed = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO_ROOT,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    table = completed.stdout.split("== POST /v1/verify")[1].split("\n\n")[0].splitlines()[2:]
    assert [line.split()[:3] for line in table] == DEMO_TABLE
    assert "[untrusted_key]" in completed.stdout
    mutate = completed.stdout.split("== POST /v1/mutate")[1]
    assert f"/demo/signed-cosign:{TAG}\n" in mutate
    assert "-> " in mutate and "/demo/signed-cosign@sha256:" in mutate
    # One screen: a newcomer reads it without scrolling far.
    assert len(completed.stdout.splitlines()) <= 40, completed.stdout
