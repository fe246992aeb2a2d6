"""Whether watched files changed: the configuration reloader and the TLS certificate watcher both ask."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_digest"]


def file_digest(*files: Path) -> str:
    """The hash of the contents of `files`: Kubernetes swaps a ConfigMap or Secret volume's symlinks, so
    mtimes say little."""
    digest = hashlib.sha256()
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as e:
            data = f"unreadable: {e}".encode()
        digest.update(hashlib.sha256(str(file).encode() + b"\0" + data).digest())
    return digest.hexdigest()
