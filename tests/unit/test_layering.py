"""The layer rule: `verifiers` (the library plugin authors build on) never imports `provider` (the service).

`provider` depends on `verifiers`, never the reverse, so a plugin author can use every module under
`verifiers/` without the server's dependencies or its internals. Checked on the source, every import
statement counted, those inside functions too (a lazy import is still a dependency). `make lint` runs
this file.

Inside `provider`, the same check keeps each module to its job (docs/decisions.md, "Provider modules by
job"): the wire format does not import the engine, the registry package imports nothing above it (engine,
configuration, server), and the narrow modules (outcome types, listeners, content checks, token flow)
import only what they name below.
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


# --- inside provider: each module imports only what its job needs ------------------------------------

SERVICE_ROOT = ROOT / SERVICE
# The provider modules that the registry package may use: the registry client and its parts are read by
# the engine, never the reverse (no engine, configuration, server or wire format in there).
REGISTRY_MAY_USE = (
    "provider.registry",
    "provider.budget",
    "provider.cache",
    "provider.metrics",
    "provider.trace",
)
# Modules whose job is narrow: the provider modules each may import, and nothing else of provider.
NARROW: dict[str, tuple[str, ...]] = {
    # The wire format encodes outcomes; it does not know the engine that decides them.
    "provider/protocol.py": ("provider.outcome",),
    "provider/outcome.py": (),
    # The span recorder is a leaf: every layer may record into it, it knows none of them.
    "provider/trace.py": (),
    # The listeners bound connections; typed on their own limits protocol, not on the configuration.
    "provider/site.py": ("provider.metrics",),
    # The certificate watcher needs the TLS settings and the file digest, not the reloader or the engine.
    "provider/tls.py": ("provider.config", "provider.watch"),
    "provider/watch.py": (),
    # Content checks are CPU-only functions over bytes.
    "provider/registry/content.py": (),
    "provider/registry/settings.py": ("provider.registry.auth",),
    # The token flow is given the transport; it does not import the client.
    "provider/registry/tokens.py": (
        "provider.cache",
        "provider.registry.auth",
        "provider.registry.egress",
        "provider.registry.settings",
        "provider.registry.workload",
    ),
    # A verification's workload credentials: the credential type, nothing of the client or the engine.
    "provider/registry/workload.py": ("provider.registry.auth",),
    # Workload pull secrets read the API through one `get`; they do not know the engine or the client.
    "provider/kube/pullsecrets.py": (
        "provider.cache",
        "provider.registry.auth",
        "provider.registry.workload",
    ),
}


def _provider_imports(source: Path) -> list[tuple[int, str]]:
    return [(line, module) for line, module in _imports(source) if _upward(module)]


def _within(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == a or module.startswith(f"{a}.") for a in allowed)


def test_the_narrow_modules_exist() -> None:
    missing = [path for path in NARROW if not (ROOT / path).is_file()]
    assert not missing, f"rules name modules that do not exist (moved? update NARROW): {missing}"


@pytest.mark.parametrize("path", sorted(NARROW))
def test_narrow_provider_modules_import_only_what_their_job_needs(path: str) -> None:
    allowed = NARROW[path]
    extra = [
        f"{path}:{line}: imports {m}" for line, m in _provider_imports(ROOT / path) if not _within(m, allowed)
    ]
    assert not extra, f"{path} may import only {list(allowed) or 'nothing'} of provider:\n" + "\n".join(extra)


@pytest.mark.parametrize(
    "source",
    sorted((SERVICE_ROOT / "registry").rglob("*.py")),
    ids=lambda p: str(Path(p).relative_to(ROOT)),
)
def test_the_registry_package_never_imports_the_service_above_it(source: Path) -> None:
    extra = [
        f"{source.relative_to(ROOT)}:{line}: imports {m}"
        for line, m in _provider_imports(source)
        if not _within(m, REGISTRY_MAY_USE)
    ]
    assert not extra, (
        f"provider/registry may import only {list(REGISTRY_MAY_USE)} of provider:\n" + "\n".join(extra)
    )


def test_the_provider_rules_see_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "protocol.py"
    sample.write_text("from provider.outcome import Decided\ndef f() -> None:\n    import provider.engine\n")
    found = [m for _, m in _provider_imports(sample) if not _within(m, NARROW["provider/protocol.py"])]
    assert found == ["provider.engine"]
