"""Locating the pinned reference tools (built by ``tools/install.sh``) and the Debian ones on ``PATH``.

``find_tool`` only looks; ``ensure_tool`` raises :class:`ToolNotFoundError` (for the demo and the bench);
``require_tool`` is for tests: it skips when a tool is missing, except under ``CI=true``, where a missing
tool is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

__all__ = [
    "DEBIAN_TOOLS",
    "ToolNotFoundError",
    "ensure_tool",
    "find_tool",
    "in_ci",
    "install_hint",
    "require_tool",
    "tools_bin",
    "tools_dir",
]

#: Programs that come from Debian packages (program -> package), found on ``PATH``.
DEBIAN_TOOLS: dict[str, str] = {
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "redis-server": "redis-server",
}

#: Programs whose ``tools/install.sh`` name differs from the program name.
_INSTALL_NAMES: dict[str, str] = {
    "timestamp-server": "tsa",
    "etcd": "kube",
    "kube-apiserver": "kube",
    "kubectl": "kube",
    "gatekeeper-manager": "gatekeeper",
}
_CACHE_ONLY = frozenset({"etcd", "kube-apiserver", "kubectl", "gatekeeper-manager", "syft"})


class ToolNotFoundError(RuntimeError):
    """A reference tool is not installed; the message says how to install it."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"{name} is not installed: {install_hint(name)}")


def tools_dir() -> Path:
    """The tools cache: ``$COUNTERSIGN_TOOLS``, else ``$XDG_CACHE_HOME/countersign/tools`` (``~/.cache``)."""
    configured = os.environ.get("COUNTERSIGN_TOOLS")
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "countersign" / "tools"


def tools_bin() -> Path:
    """Where ``tools/install.sh`` puts the binaries it builds."""
    return tools_dir() / "bin"


def find_tool(name: str) -> Path | None:
    """The executable ``name``: the tools cache first, then ``PATH``; ``None`` when it is nowhere.

    The control-plane tools (``_CACHE_ONLY``) come from the cache only: a ``kubectl`` or ``etcd`` of
    another version on ``PATH`` is not the pinned one the end-to-end tests are written against.
    """
    candidate = tools_bin() / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    if name in _CACHE_ONLY:
        return None
    found = shutil.which(name)
    return Path(found) if found else None


def install_hint(name: str) -> str:
    """How to install ``name``, for error and skip messages."""
    if name in DEBIAN_TOOLS:
        return f"run `apt-get install {DEBIAN_TOOLS[name]}` (or `tools/install.sh debian`, or `make tools`)"
    install_name = _INSTALL_NAMES.get(name, name)
    return (
        f"run `tools/install.sh {install_name}` (or `make tools`); "
        f"it builds the pinned version into {tools_bin()} (set COUNTERSIGN_TOOLS to use another cache)"
    )


def ensure_tool(name: str) -> Path:
    """Like :func:`find_tool`, but raises :class:`ToolNotFoundError` (a ``RuntimeError``) when missing."""
    path = find_tool(name)
    if path is None:
        raise ToolNotFoundError(name)
    return path


def in_ci() -> bool:
    """Whether we run in CI (``CI=true``), where missing tools must fail the run instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_tool(name: str) -> Path:
    """For tests: the tool's path; when missing, ``pytest.fail`` under ``CI=true``, else ``pytest.skip``."""
    path = find_tool(name)
    if path is None:
        _missing(name)
    return path


def _missing(name: str) -> NoReturn:
    import pytest  # Imported here so the demo and the bench can use this module without pytest.

    message = f"{name} is not installed: {install_hint(name)}"
    if in_ci():
        pytest.fail(
            f"{message} (CI=true: missing reference tools fail the run instead of skipping)", pytrace=False
        )
    pytest.skip(message)
