"""What the registry client is told about registries, and the URL rules its parts share.

`Limits` (every bound the client enforces) and `RegistrySettings` (per-registry connection settings) come
from the configuration; `base_url` is where a registry is reached, `origin` what "the same origin" means
for `Authorization` headers, next-page links and credentials sent to a token realm, and `redact` the form
in which a URL is logged. Pure: the transport (client.py) and the token flow (tokens.py) both use it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from provider.registry.auth import Credentials
from verifiers.reference import DOCKER_HUB

__all__ = ["DEFAULT_SETTINGS", "HUB_API_HOST", "Limits", "RegistrySettings", "base_url", "origin", "redact"]

HUB_API_HOST = "registry-1.docker.io"


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the client enforces, in one place."""

    max_manifest_bytes: int = 4 * 1024 * 1024
    max_blob_bytes: int = 64 * 1024 * 1024
    max_referrers: int = 1000
    max_referrer_pages: int = 20
    max_redirects: int = 5
    max_attempts: int = 3
    max_retry_after: float = 10.0
    max_token_bytes: int = 256 * 1024
    connect_timeout: float = 5.0
    request_timeout: float = 30.0  # upper bound for one HTTP exchange when no deadline is set
    # Connections to registries: open at once in all (what their buffers may take is in docs/operators.md
    # "Memory sizing"), open at once to one host (a registry, or a host it redirects to), and how long an
    # idle one is kept for the next request.
    max_connections: int = 128
    max_connections_per_registry: int = 64
    idle_connection_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """Per-registry connection settings. `insecure` means plain HTTP (for local registries only)."""

    insecure: bool = False
    ca_file: Path | None = None
    min_tls: str = "1.2"
    credentials: Credentials | None = None


#: The settings of a registry the configuration does not name (frozen: one instance serves every lookup).
DEFAULT_SETTINGS = RegistrySettings()


def base_url(registry: str, settings: RegistrySettings) -> str:
    """The URL a registry's API is reached at (Docker Hub's API has a host of its own)."""
    host = HUB_API_HOST if registry == DOCKER_HUB else registry
    return f"{'http' if settings.insecure else 'https'}://{host}"


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, lower-case host, port) of `url`; ValueError for an invalid port.

    The registry client asks for it several times per request, so a plain `http(s)://netloc` prefix is
    parsed once and remembered (a bounded cache); anything else (other schemes, white space or control
    characters in the scheme or netloc, which `urlsplit` strips or rejects) is parsed each time."""
    if url.startswith(("https://", "http://")):
        start = url.index("//") + 2
        end = len(url)
        for delimiter in "/?#":
            found = url.find(delimiter, start)
            if found != -1 and found < end:
                end = found
        prefix = url[:end]
        if prefix.isprintable() and " " not in prefix:
            return _origin(prefix)
    return _origin.__wrapped__(url)


@functools.lru_cache(maxsize=256)
def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
    return parts.scheme, (parts.hostname or "").lower(), port


def redact(url: str) -> str:
    """A URL for the log: no query (redirect targets and realms may carry signed tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"[:300]
