"""The built-in verifier packages stand on their own: none imports another's modules.

What two of them share lives in a neutral module under `verifiers/` (`verifiers.rfc3161`,
`verifiers.strictjson`, `verifiers.oci`, ...), so a verifier's private helpers stay private. Checked on the
source, every import statement counted (lazy ones too).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_layering import LIBRARY, ROOT, _imports

PACKAGES = ("cosign", "notation")
MODULES = {"sbom": LIBRARY / "sbom.py", "digest_pin": LIBRARY / "digest_pin.py"}


def _sources(package: str) -> list[Path]:
    return [MODULES[package]] if package in MODULES else sorted((LIBRARY / package).rglob("*.py"))


@pytest.mark.parametrize("package", [*PACKAGES, *MODULES])
def test_a_verifier_imports_no_other_verifier(package: str) -> None:
    others = [f"verifiers.{name}" for name in (*PACKAGES, *MODULES) if name != package]
    crossing = [
        f"{source.relative_to(ROOT)}:{line}: imports {module}"
        for source in _sources(package)
        for line, module in _imports(source)
        if any(module == other or module.startswith(f"{other}.") for other in others)
    ]
    assert _sources(package), package
    assert not crossing, "\n".join(crossing)
