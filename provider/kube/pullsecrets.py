"""Workload pull secrets: a v1 key's registry credentials, read from its namespace through the API server.

Opt-in (`kubernetes.workloadPullSecrets: true`). For a v1 key (verifiers/reference.py) in namespace N:

- the secret names are the key's `imagePullSecrets` when it lists any (a Pod as the API server admits it: the
  ServiceAccount admission plugin has already copied its service account's secrets into a Pod that names
  none), else the `imagePullSecrets` of its ServiceAccount in N (a workload's pod template);
- each named Secret in N of type `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`, `{"auths": {...}}`)
  or `kubernetes.io/dockercfg` (`.dockercfg`, the `auths` map itself) contributes its entries, by registry
  host; for a host named by several, the first Secret in order wins (the kubelet tries them in that order);
- a Secret that is missing, of another type, malformed, or that the provider may not read contributes
  nothing: the reason is in the result's `notes` (shown in an undecided key's message and logged), never
  a secret's contents. An API server that cannot be reached makes the key undecided
  (`kubernetes_unavailable`).

Lookups are cached for `ttl` seconds (a rotated Secret applies within it), bounded in count and in bytes,
and concurrent lookups of the same object share one request. An object that is missing, or that the
provider may not read, is remembered for `negative_ttl` seconds only (at most `ttl`): a tenant who creates
the Secret a denial names (or an operator who grants the RBAC) is not kept waiting for the full `ttl`,
while a Pod that keeps naming a missing Secret costs at most one `get` per `negative_ttl`. Only `get` is
used, through `KubeGetter` (provider/kube/api.py's `KubeApi` is one), so the RBAC needed is `get` on
`secrets` and `serviceaccounts`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from provider.cache import SingleFlight, TTLCache, bytes_cost, ttl_slot_cost
from provider.registry.auth import Credentials, decode_auth
from provider.registry.workload import WorkloadCredentials
from verifiers.base import Undecided
from verifiers.reference import Key, is_object_name

__all__ = [
    "DEFAULT_TTL",
    "DOCKERCFG",
    "DOCKERCONFIGJSON",
    "NEGATIVE_TTL",
    "KubeGetter",
    "PullSecrets",
    "registry_host",
]

log = logging.getLogger(__name__)

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"
DEFAULT_TTL = 30.0
NEGATIVE_TTL = 5.0  # a missing or unreadable object
MAX_ENTRIES = 4096
MAX_CACHE_BYTES = 8 * 1024 * 1024
MAX_CONFIG_BYTES = 64 * 1024  # one Secret's decoded docker config
MAX_AUTHS = 64  # registry entries taken from one Secret
MAX_SERVICE_ACCOUNT_SECRETS = 16  # like the key's own bound
_HUB = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


class KubeGetter(Protocol):
    """The one call needed: the object at an API path, None when it does not exist (404); any other
    failure raises (an exception with an HTTP `status` attribute, 0 when no response came)."""

    async def get(self, path: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class _Found:
    """A cached lookup: what an object contributes (secret names, or credentials by host), and why not."""

    names: tuple[str, ...] = ()
    hosts: tuple[tuple[str, Credentials], ...] = ()
    note: str = ""
    absent: bool = False  # not found, or not readable (401/403): cached for the negative TTL


def _cost(found: _Found) -> int:
    cost = sys.getsizeof(found) + bytes_cost(found.note) + sum(bytes_cost(n) for n in found.names)
    for host, c in found.hosts:
        cost += 200 + bytes_cost(host) + bytes_cost(c.username) + bytes_cost(c.password)
        cost += bytes_cost(c.identity_token or "")
    return cost


def registry_host(config_key: str) -> str | None:
    """The registry host (`host[:port]`, as image references name it) of a docker config `auths` key, or
    None when the key names a path below a host (repository-scoped entries are not supported)."""
    text = config_key.strip()
    parts = urlsplit(text if "://" in text else f"//{text}")
    host = parts.netloc
    if not host or parts.path not in ("", "/", "/v1", "/v1/", "/v2", "/v2/") or parts.query or parts.fragment:
        return None
    host = host.lower()
    return "docker.io" if host in _HUB else host


def _docker_config(secret: Mapping[str, Any], what: str) -> tuple[tuple[tuple[str, Credentials], ...], str]:
    """(credentials by host, note) of a Secret of a docker config type; a note says what was wrong."""
    kind = secret.get("type")
    field = (
        {DOCKERCONFIGJSON: ".dockerconfigjson", DOCKERCFG: ".dockercfg"}.get(kind)
        if isinstance(kind, str)
        else None
    )
    if field is None:
        return (), f"{what} is of type {str(kind)[:80]!r}, not {DOCKERCONFIGJSON} or {DOCKERCFG}"
    data = secret.get("data")
    encoded = data.get(field) if isinstance(data, dict) else None
    if not isinstance(encoded, str):
        return (), f"{what} has no {field}"
    if len(encoded) > MAX_CONFIG_BYTES * 4 // 3 + 4:
        return (), f"{what}: {field} is larger than {MAX_CONFIG_BYTES} bytes"
    try:
        doc = json.loads(base64.b64decode(encoded, validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        return (), f"{what}: {field} is not base64 of a JSON document"
    auths = doc.get("auths") if kind == DOCKERCONFIGJSON and isinstance(doc, dict) else doc
    if not isinstance(auths, dict):
        return (), f"{what}: {field} has no 'auths' object"
    hosts: dict[str, Credentials] = {}
    skipped: list[str] = []
    for config_key, entry in list(auths.items())[:MAX_AUTHS]:
        host = registry_host(config_key) if isinstance(config_key, str) else None
        if host is None or not isinstance(entry, dict):
            skipped.append(f"entry {str(config_key)[:80]!r} is not a registry host with an object")
            continue
        try:
            creds = decode_auth(entry, f"entry {config_key[:80]!r}")
        except ValueError as e:
            skipped.append(str(e))
            continue
        if creds is not None:
            hosts.setdefault(host, creds)
    if len(auths) > MAX_AUTHS:
        skipped.append(f"only its first {MAX_AUTHS} entries are read")
    return tuple(hosts.items()), (f"{what}: " + "; ".join(skipped) if skipped else "")


class PullSecrets:
    """The `WorkloadSource` of provider/engine.py over the Kubernetes API."""

    def __init__(
        self,
        api: KubeGetter,
        *,
        ttl: float = DEFAULT_TTL,
        negative_ttl: float = NEGATIVE_TTL,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_CACHE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._negative_ttl = min(negative_ttl, ttl)
        self._cache: TTLCache[tuple[str, str, str], _Found] = TTLCache(
            ttl, max_entries, clock, max_bytes=max_bytes, size_of=_cost, slot_of=ttl_slot_cost
        )
        self._flights: SingleFlight[tuple[str, str, str], _Found] = SingleFlight()

    async def credentials(self, key: Key) -> WorkloadCredentials:
        namespace = key.namespace
        if key.version < 1 or namespace is None:
            return WorkloadCredentials()
        notes: list[str] = []
        names = key.pull_secrets
        if not names and key.service_account is not None:
            account = await self._lookup(namespace, "serviceaccounts", key.service_account)
            names = account.names
            if account.note:
                notes.append(account.note)
        hosts: dict[str, Credentials] = {}
        for name in names:
            found = await self._lookup(namespace, "secrets", name)
            if found.note:
                notes.append(found.note)
            for host, creds in found.hosts:
                hosts.setdefault(host, creds)  # the first Secret naming a host wins
        return WorkloadCredentials(hosts, tuple(notes))

    async def _lookup(self, namespace: str, kind: str, name: str) -> _Found:
        key = (namespace, kind, name)
        found = self._cache.get(key)
        if found is None:
            found = await self._flights.do(key, lambda: self._fetch(namespace, kind, name))
            self._cache.put(key, found, self._negative_ttl if found.absent else None)
        return found

    async def _fetch(self, namespace: str, kind: str, name: str) -> _Found:
        what = f"{'ServiceAccount' if kind == 'serviceaccounts' else 'Secret'} {namespace}/{name}"
        try:
            obj = await self._api.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}")
        except Exception as e:
            status = getattr(e, "status", 0)
            if status in (401, 403):
                found = _Found(
                    note=f"{what}: the provider may not read it (HTTP {status}; see its RBAC)", absent=True
                )
                log.warning("workload pull secrets: %s", found.note)
                return found
            log.warning("workload pull secrets: reading %s failed: %s", what, type(e).__name__)
            raise Undecided(
                "kubernetes_unavailable",
                f"cannot read {what} from the Kubernetes API (HTTP {status or 'none'})",
            ) from e
        if obj is None:
            found = _Found(note=f"{what} not found", absent=True)
        elif kind == "serviceaccounts":
            found = self._service_account(obj, what)
        else:
            hosts, note = _docker_config(obj, what)
            found = _Found(hosts=hosts, note=note)
        if found.note:
            log.warning("workload pull secrets: %s", found.note)  # names and reasons only, never contents
        return found

    @staticmethod
    def _service_account(obj: Mapping[str, Any], what: str) -> _Found:
        refs = obj.get("imagePullSecrets")
        if refs is None:
            return _Found()
        if not isinstance(refs, list):
            return _Found(note=f"{what}: imagePullSecrets is not a list")
        names = [r.get("name") for r in refs[:MAX_SERVICE_ACCOUNT_SECRETS] if isinstance(r, dict)]
        valid = tuple(dict.fromkeys(n for n in names if isinstance(n, str) and is_object_name(n)))
        note = f"{what}: only its first {MAX_SERVICE_ACCOUNT_SECRETS} imagePullSecrets are read"
        return _Found(names=valid, note=note if len(refs) > MAX_SERVICE_ACCOUNT_SECRETS else "")

    async def aclose(self) -> None:
        await self._flights.drain()
