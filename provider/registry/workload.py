"""A workload's own registry credentials (its image pull secrets), for one verification only.

The engine sets `WORKLOAD` in each verification's task (like `DEADLINE` and `ACCOUNT`); every registry read
made inside it, in the tasks it starts too (asyncio copies the context), sees them:

- `RegistryAuth` uses the workload's credentials for a registry host before the operator's (the kubelet's
  order: the Pod's pull secrets, then the node's); for a host they do not cover, the operator's as before.
- Every cache and coalescing key of a read made WITH workload credentials carries `host_identity(host)`, a
  digest of those credentials (never the secret): the token cache, the tag cache, the content cache and the
  in-flight reads (provider/registry/cached.py); the engine's verdict cache carries `identity`. A manifest,
  tag, blob, token or verdict obtained with namespace A's credentials is therefore never served to a key
  without them or with other ones. Reads without workload credentials for their host keep the keys they
  always had, and share them with every key that has none.

The identity is over the credential bytes (host, username, password, identity token), so two namespaces
holding the same secret share cache entries: they can read exactly the same things.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from provider.registry.auth import Credentials

__all__ = ["WORKLOAD", "WorkloadCredentials", "host_identity", "workload_credentials"]


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class WorkloadCredentials:
    """Credentials by registry host (`host[:port]` exactly as in image references), with their identities.

    `notes` say what contributed nothing and why (a Secret missing, of the wrong type, malformed): shown
    in the provider's log and in an authentication failure's message, never a secret's contents.
    """

    hosts: Mapping[str, Credentials] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    _identities: Mapping[str, str] = field(init=False, repr=False, compare=False)
    identity: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        identities = {
            host: _digest(host, c.username, c.password, c.identity_token or "")
            for host, c in sorted(self.hosts.items())
        }
        object.__setattr__(self, "hosts", MappingProxyType(dict(self.hosts)))
        object.__setattr__(self, "_identities", MappingProxyType(identities))
        object.__setattr__(
            self, "identity", _digest(*(f"{h}={i}" for h, i in identities.items())) if identities else ""
        )

    def for_host(self, host: str) -> Credentials | None:
        return self.hosts.get(host)

    def host_identity(self, host: str) -> str:
        """The digest of the credentials for `host`; "" when there are none (the operator's apply)."""
        return self._identities.get(host, "")

    def __repr__(self) -> str:  # never print secrets
        return f"WorkloadCredentials(hosts={sorted(self.hosts)}, identity={self.identity[:12]})"


WORKLOAD: contextvars.ContextVar[WorkloadCredentials | None] = contextvars.ContextVar(
    "countersign_workload_credentials", default=None
)


def workload_credentials(host: str) -> Credentials | None:
    """The current verification's workload credentials for `host`, if any."""
    workload = WORKLOAD.get()
    return None if workload is None else workload.for_host(host)


def host_identity(host: str) -> str:
    """The identity of the current verification's credentials for `host`; "" when it has none."""
    workload = WORKLOAD.get()
    return "" if workload is None else workload.host_identity(host)
