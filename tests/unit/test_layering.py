"""The layer rule: `verifiers` (the library plugin authors build on) never imports `provider` (the service).

`provider` depends on `verifiers`, never the reverse, so a plugin author can use every module under
`verifiers/` without the server's dependencies or its internals. Checked on the source, every import
statement counted, those inside functions too (a lazy import is still a dependency). `make lint` runs
this file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "verifiers"
SERVICE = "provider"


def _imports(source: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import in `source`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source.read_text("utf-8"), str(source))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            found.append((node.lineno, node.module))
    return found


def _upward(module: str) -> bool:
    return module == SERVICE or module.startswith(f"{SERVICE}.")


def test_the_library_has_modules_to_check() -> None:
    assert len(list(LIBRARY.rglob("*.py"))) > 20  # the rule below is not vacuous


@pytest.mark.parametrize(
    "source", sorted(LIBRARY.rglob("*.py")), ids=lambda p: str(Path(p).relative_to(ROOT))
)
def test_verifiers_never_import_provider(source: Path) -> None:
    upward = [f"{source.relative_to(ROOT)}:{line}: imports {module}" for line, module in _imports(source)]
    upward = [entry for entry in upward if _upward(entry.rsplit(" ", 1)[1])]
    assert not upward, "verifiers/ must not import provider/ (move the shared code under verifiers/):\n" + (
        "\n".join(upward)
    )


def test_the_check_sees_lazy_and_dotted_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import provider.server\n"
        "def f() -> None:\n"
        "    from provider.config import Config\n"
        "    import providers_elsewhere\n"
        "from . import provider\n"
    )
    modules = [m for _, m in _imports(sample)]
    assert [m for m in modules if _upward(m)] == ["provider.server", "provider.config"]
