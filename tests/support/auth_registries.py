"""Registries configured beyond the plain test bed: authentication, blob redirects, rate limits.

* :class:`ConfiguredDistribution`: distribution 2.8 with an ``auth`` section (``htpasswd`` or ``token``) and
  storage middleware (``redirect``: blob GETs answered with a 307 to ``baseurl`` + the blob's storage path,
  as registries behind a CDN do). Its ``oras_flags()`` carry the pusher's credentials, so
  ``tests.support.images.push_image`` and ``attach_sbom`` work on it unchanged.
* :class:`RateLimitedOlareg`: olareg with ``--rate-limit N`` (requests per second per source IP, burst 1);
  it answers ``429`` with ``Retry-After: 1``. Push first, then :meth:`RateLimitedOlareg.limit` it.

Both are :class:`tests.support.registries.Registry` objects (start/stop/restart/freeze, stopped at exit).
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.registries import Registry, TlsFiles

__all__ = [
    "ConfiguredDistribution",
    "RateLimitedOlareg",
    "htpasswd_entry",
    "redirect_middleware",
    "start_configured_distribution",
    "write_docker_config",
]


def htpasswd_entry(username: str, password: str, *, cost: int = 5) -> str:
    """``username:<bcrypt hash>``, the line distribution's ``htpasswd`` auth expects (bcrypt only).

    The hash comes from the system's libcrypt (libxcrypt, in every Debian install), so no Python
    dependency is needed.
    """
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as error:
        raise RuntimeError(f"libcrypt is needed for bcrypt htpasswd entries: {error}") from error
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2b$", cost, None, 0)
    hashed = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2b$"):
        raise RuntimeError("libcrypt does not support bcrypt ($2b$)")
    return f"{username}:{hashed.decode('ascii')}"


def write_docker_config(path: Path, auths: Mapping[str, tuple[str, str]]) -> Path:
    """A docker ``config.json`` with ``auths[key].auth = base64(user:password)`` for each key."""
    doc = {
        "auths": {
            key: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode("ascii")}
            for key, (user, password) in auths.items()
        }
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def redirect_middleware(baseurl: str) -> list[dict[str, Any]]:
    """distribution's ``middleware.storage`` that redirects blob reads to ``baseurl`` + the storage path."""
    return [{"name": "redirect", "options": {"baseurl": baseurl}}]


@dataclass(eq=False)
class ConfiguredDistribution(Registry):
    """distribution with an ``auth`` section and/or storage middleware; see the module docstring.

    ``username``/``password`` are what ``oras_flags()`` gives oras (the account that pushes test content).
    """

    auth: Mapping[str, Any] | None = None
    storage_middleware: Sequence[Mapping[str, Any]] | None = None
    username: str | None = None
    password: str | None = None

    def oras_flags(self, prefix: str = "") -> list[str]:
        flags = super().oras_flags(prefix)
        if self.username is not None and self.password is not None:
            flags += [f"--{prefix}username", self.username, f"--{prefix}password", self.password]
        return flags

    def _write_distribution_config(self) -> None:
        super()._write_distribution_config()
        config = yaml.safe_load(self.config_file.read_text())
        if self.auth:
            config["auth"] = dict(self.auth)
        if self.storage_middleware:
            config["middleware"] = {"storage": [dict(m) for m in self.storage_middleware]}
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    def _probe(self) -> int:
        status = super()._probe()
        # With auth, GET /v2/ answers 401 once the registry is up.
        return 200 if status == 401 and self.auth else status


def start_configured_distribution(
    workdir: Path,
    *,
    auth: Mapping[str, Any] | None = None,
    storage_middleware: Sequence[Mapping[str, Any]] | None = None,
    credentials: tuple[str, str] | None = None,
    tls: TlsFiles | None = None,
) -> ConfiguredDistribution:
    """Start a :class:`ConfiguredDistribution` in ``workdir`` on a free port."""
    registry = ConfiguredDistribution(
        kind="distribution",
        workdir=workdir,
        tls_files=tls,
        auth=auth,
        storage_middleware=storage_middleware,
        username=credentials[0] if credentials else None,
        password=credentials[1] if credentials else None,
    )
    return registry.start()


@dataclass(eq=False)
class RateLimitedOlareg(Registry):
    """olareg that, once :meth:`limit` ed, answers 429 (``Retry-After: 1``) above ``rate_limit`` req/s."""

    rate_limit: int | None = None

    def limit(self, per_second: int) -> RateLimitedOlareg:
        """Restart (same port, same content) with ``--rate-limit per_second``."""
        self.rate_limit = per_second
        self.restart()
        return self

    def _command(self) -> list[str]:
        command = super()._command()
        if self.rate_limit:
            command += ["--rate-limit", str(self.rate_limit)]
        return command
