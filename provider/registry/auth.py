"""Registry credentials: static per-registry credentials and docker `config.json` files.

Resolution order for a registry host: the registry's own entry in Countersign's config, then each docker
config file in order (`credHelpers[host]`, then `auths[host]`, then `credsStore`). Credential helpers are
the standard `docker-credential-<name> get` programs, run asynchronously with a timeout.

Also here: parsing of `WWW-Authenticate` challenges (RFC 7235), which is pure.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from verifiers.errors import AuthenticationFailed

__all__ = [
    "Challenge",
    "CredentialStore",
    "Credentials",
    "decode_auth",
    "hub_aliases",
    "parse_challenges",
]

_DOCKER_HUB_CONFIG_KEYS = (
    "https://index.docker.io/v1/",
    "index.docker.io",
    "docker.io",
    "registry-1.docker.io",
)
HELPER_TIMEOUT = 5.0
MAX_HELPER_OUTPUT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Credentials:
    """Username and secret; `identity_token` set means an OAuth2 refresh token (docker `identitytoken`)."""

    username: str
    password: str
    identity_token: str | None = None

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(username={self.username!r}, password=***)"


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lower case: "bearer" | "basic" | other
    params: Mapping[str, str]


_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _tokenize(header: str) -> list[tuple[str, str]]:
    """Split a header into ("tok", text), ("str", unquoted text), ("=", "="), (",", ",") items."""
    items: list[tuple[str, str]] = []
    i, n = 0, len(header)
    while i < n:
        c = header[i]
        if c.isspace():
            i += 1
        elif c in ",=":
            items.append((c, c))
            i += 1
        elif c == '"':
            i += 1
            chars: list[str] = []
            while i < n and header[i] != '"':
                if header[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(header[i])
                i += 1
            items.append(("str", "".join(chars)))
            i += 1  # the closing quote
        else:
            m = _TOKEN_RE.match(header, i)
            if m is None:
                i += 1  # not valid in a challenge: skip it
                continue
            items.append(("tok", m.group()))
            i = m.end()
    return items


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a `WWW-Authenticate` value (RFC 7235) into its challenges; best effort, never raises."""
    items = _tokenize(header)
    challenges: list[tuple[str, dict[str, str]]] = []
    j = 0
    while j < len(items):
        kind, value = items[j]
        followed_by_equals = j + 1 < len(items) and items[j + 1][0] == "="
        if kind == "tok" and not followed_by_equals:
            challenges.append((value.lower(), {}))
            j += 1
        elif kind == "tok" and challenges:
            if j + 2 < len(items) and items[j + 2][0] in ("tok", "str"):
                challenges[-1][1][value.lower()] = items[j + 2][1]
                j += 3
            else:
                challenges[-1][1][value.lower()] = ""
                j += 2
        else:
            j += 1
    return [Challenge(scheme=scheme, params=params) for scheme, params in challenges]


def hub_aliases(host: str) -> Sequence[str]:
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        return _DOCKER_HUB_CONFIG_KEYS
    return (host, f"https://{host}", f"http://{host}")


def decode_auth(entry: Mapping[str, object], source: str) -> Credentials | None:
    """A docker config `auths` entry's credentials (None: it has none); ValueError naming `source` when
    its `auth` is malformed."""
    identity = entry.get("identitytoken")
    username = entry.get("username")
    password = entry.get("password")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise ValueError(f"{source}: 'auth' is not base64 of 'user:password'") from e
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ValueError(f"{source}: 'auth' does not contain 'user:password'")
    if isinstance(identity, str) and identity:
        return Credentials(username=str(username or "<token>"), password="", identity_token=identity)
    if isinstance(username, str) and isinstance(password, str) and username:
        return Credentials(username=username, password=password)
    return None


class CredentialStore:
    """Looks up credentials for a registry host. Docker config files are read once, at construction."""

    def __init__(
        self,
        static: Mapping[str, Credentials] | None = None,
        docker_configs: Sequence[Path] = (),
    ) -> None:
        self._static = dict(static or {})
        self._configs: list[tuple[str, Mapping[str, object]]] = []
        for path in docker_configs:
            try:
                data = json.loads(Path(path).read_text("utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"docker config {path}: {e}") from e
            if not isinstance(data, dict):
                raise ValueError(f"docker config {path}: not a JSON object")
            auths = data.get("auths")
            if isinstance(auths, dict):  # fail at start-up on a malformed entry, not at the first lookup
                for host, entry in auths.items():
                    if isinstance(entry, dict):
                        decode_auth(entry, f"docker config {path}: auths[{host!r}]")
            self._configs.append((str(path), data))

    async def get(self, host: str) -> Credentials | None:
        if host in self._static:
            return self._static[host]
        for source, data in self._configs:
            helpers = data.get("credHelpers")
            if isinstance(helpers, dict):
                for alias in hub_aliases(host):
                    helper = helpers.get(alias)
                    if isinstance(helper, str) and helper:
                        return await run_helper(helper, alias)
            auths = data.get("auths")
            if isinstance(auths, dict):
                for alias in hub_aliases(host):
                    entry = auths.get(alias)
                    if isinstance(entry, dict):
                        creds = decode_auth(entry, f"{source}: auths[{alias!r}]")
                        if creds is not None:
                            return creds
            store = data.get("credsStore")
            if isinstance(store, str) and store:
                return await run_helper(store, hub_aliases(host)[0])
        return None


async def run_helper(helper: str, server_url: str) -> Credentials | None:
    """Run `docker-credential-<helper> get` for `server_url`; None when it has no credentials."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", helper):
        raise AuthenticationFailed(f"credential helper name {helper!r} is not valid")
    program = f"docker-credential-{helper}"
    try:
        proc = await asyncio.create_subprocess_exec(
            program,
            "get",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as e:
        raise AuthenticationFailed(f"credential helper {program} could not be started: {e}") from e
    try:
        async with asyncio.timeout(HELPER_TIMEOUT):
            out, err = await proc.communicate(server_url.encode())
    except TimeoutError as e:
        proc.kill()
        await proc.wait()
        raise AuthenticationFailed(
            f"credential helper {program} did not answer in {HELPER_TIMEOUT:g}s"
        ) from e
    if proc.returncode != 0:
        text = (out + err)[:500].decode("utf-8", "replace").strip()
        if "credentials not found" in text.lower():
            return None
        raise AuthenticationFailed(f"credential helper {program} failed: {text}")
    if len(out) > MAX_HELPER_OUTPUT:
        raise AuthenticationFailed(f"credential helper {program} printed more than {MAX_HELPER_OUTPUT} bytes")
    try:
        data = json.loads(out)
    except json.JSONDecodeError as e:
        raise AuthenticationFailed(f"credential helper {program} printed invalid JSON") from e
    username, secret = data.get("Username"), data.get("Secret")
    if not isinstance(username, str) or not isinstance(secret, str):
        raise AuthenticationFailed(f"credential helper {program} printed no Username/Secret")
    if username == "<token>":
        return Credentials(username=username, password="", identity_token=secret)
    return Credentials(username=username, password=secret)
