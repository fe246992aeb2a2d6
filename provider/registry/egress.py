"""The egress policy: the hosts and addresses a key, a redirect or a token realm may reach.

Pod authors choose image references, so a key names any host and port; a registry chooses its redirects
and its token realm. Without a bound, a key turns the provider into a port scanner of its own network and
a client of the cloud metadata service. Two checks, both before any byte is sent:

1. **Host names** (`egress.hosts`): globs over `host` or `host:port`, matched case-insensitively against
   the registry a key names and against every redirect target and token realm. Default `["*"]`.
2. **Addresses**, on the address actually connected (so a name that resolves, or is re-bound, to a refused
   address is refused too): loopback, link-local (169.254.0.0/16, fe80::/10: the cloud metadata
   services), unspecified, multicast and broadcast addresses and a few well-known metadata addresses are
   refused unless `egress.allowAddresses` covers them; `egress.denyAddresses` refuses more (e.g. the pod
   network). A registry named under `registries:` is the operator's explicit choice: its exact host:port
   is exempt from the built-in refusals (that is how a local registry on 127.0.0.1 is used), never from
   `denyAddresses`.

A refusal is `EgressRefused`, a definite registry error: the image is denied with reason
`egress_refused`, and nothing was sent.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from verifiers.errors import RegistryError

__all__ = [
    "BUILTIN_REFUSED",
    "EgressPolicy",
    "EgressRefused",
    "FilteringResolver",
    "IPNetwork",
    "parse_host_pattern",
    "parse_network",
    "refusal_of",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused unless allowed explicitly: never a registry an operator meant by default.
BUILTIN_REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("100.100.100.200/32", "cloud metadata"),
        ("168.63.129.16/32", "cloud platform service"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/96", "unspecified, loopback or IPv4-compatible"),
        ("fe80::/10", "link-local"),
        ("fd00:ec2::254/128", "cloud metadata"),
        ("ff00::/8", "multicast"),
    )
)

_HOST_PATTERN_RE = re.compile(r"(\[[0-9A-Fa-f:.*?]+\]|[A-Za-z0-9.\-*?]+)(:(\d{1,5}|\*))?")


_MAX_REGISTRY_CHECKS = 1024


class EgressRefused(RegistryError):
    """The egress policy refuses this host or address; nothing was sent to it."""


class _AddressRefused(OSError):
    """Raised inside the resolver (aiohttp wraps resolver OSErrors); carries the refusal."""


def parse_network(value: str) -> IPNetwork:
    """A CIDR (`10.0.0.0/8`) or a single address (`127.0.0.1`); ValueError otherwise."""
    return ipaddress.ip_network(value.strip(), strict=False)


def _normalize(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address the kernel connects to."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _split_host_port(netloc: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` -> (lower-case host without brackets, port or None)."""
    host, port = netloc, None
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[1:end], netloc[end + 1 :]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif netloc.count(":") == 1:
        host, _, p = netloc.partition(":")
        port = int(p) if p.isdigit() else None
    return host.lower(), port


@dataclass(frozen=True, slots=True)
class _HostPattern:
    host: str  # lower-case glob, brackets removed
    port: int | None  # None: any port

    def matches(self, host: str, port: int) -> bool:
        return (self.port is None or self.port == port) and fnmatch.fnmatchcase(host, self.host)


def parse_host_pattern(value: str) -> _HostPattern:
    """`*`, `registry.example.com`, `*.example.com`, `host:5000`, `host:*`, `[::1]:5000`; ValueError else."""
    m = _HOST_PATTERN_RE.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"{value!r} is not a host glob with an optional :port")
    host = m.group(1)
    if host.startswith("["):
        host = host[1:-1]
    port_text = m.group(3)
    port = None if port_text in (None, "*") else int(port_text)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{value!r}: port out of range")
    return _HostPattern(host.lower(), port)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """What Countersign may contact. `trusted`: the (host, port) of each operator-configured registry."""

    hosts: tuple[str, ...] = ("*",)
    allow_addresses: tuple[IPNetwork, ...] = ()
    deny_addresses: tuple[IPNetwork, ...] = ()
    trusted: frozenset[tuple[str, int]] = frozenset()
    _patterns: tuple[_HostPattern, ...] = field(init=False, repr=False, compare=False)
    # check_registry's outcome by (registry, insecure): None (allowed) or the refusal's message. The client
    # asks before every request; the answer depends only on this (immutable) policy. An LRU bounded at
    # _MAX_REGISTRY_CHECKS: keys name arbitrary registries.
    _registry_refusal: functools._lru_cache_wrapper[str | None] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_patterns", tuple(parse_host_pattern(h) for h in self.hosts))
        refusal = functools.lru_cache(maxsize=_MAX_REGISTRY_CHECKS)(self._refusal_of_registry)
        object.__setattr__(self, "_registry_refusal", refusal)

    @classmethod
    def permissive(cls) -> EgressPolicy:
        """Every host and address (tests of the client alone; never the service's default)."""
        return cls(allow_addresses=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")))

    def with_trusted(self, registries: Iterable[tuple[str, bool]]) -> EgressPolicy:
        """This policy, the configured registries (name, plain HTTP?) exempt from the built-in refusals."""
        trusted: set[tuple[str, int]] = set(self.trusted)
        for registry, insecure in registries:
            host, port = _split_host_port(registry)
            trusted.add((host, port if port is not None else (80 if insecure else 443)))
        return EgressPolicy(self.hosts, self.allow_addresses, self.deny_addresses, frozenset(trusted))

    # --- host names ----------------------------------------------------------------------------------

    def host_allowed(self, host: str, port: int) -> bool:
        """Whether `egress.hosts` allows host:port; configured registries are bound by it too."""
        host = host.lower().strip("[]")
        return any(p.matches(host, port) for p in self._patterns)

    def check_registry(self, registry: str, insecure: bool = False) -> None:
        """A key's registry (`host[:port]` as written in the reference): EgressRefused when refused.

        Only what is known without contacting anything: the host globs and, for an address literal, the
        address rules. A name is checked again on the addresses it resolves to, when connecting.
        """
        refusal = self._registry_refusal(registry, insecure)
        if refusal is not None:
            raise EgressRefused(refusal)

    def _refusal_of_registry(self, registry: str, insecure: bool) -> str | None:
        host, port = _split_host_port(registry)
        try:
            self._check(host, port if port is not None else (80 if insecure else 443), f"registry {registry}")
        except EgressRefused as e:
            return str(e)
        return None

    def check_url(self, url: str, what: str) -> None:
        """A redirect target or token realm, before anything is sent to it."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or _default_port(parts.scheme)
        except ValueError as e:
            raise EgressRefused(f"{what}: invalid port in {url[:200]!r}") from e
        if not host:
            raise EgressRefused(f"{what}: no host in {url[:200]!r}")
        self._check(host, port, what)

    def _check(self, host: str, port: int, what: str) -> None:
        if not self.host_allowed(host, port):
            raise EgressRefused(f"{what}: host {_show(host, port)} is not allowed by the egress policy")
        address = _literal_address(host)
        if address is None:
            return  # a name: its addresses are checked when connecting (FilteringResolver)
        refusal = self.address_refusal(address, host, port)
        if refusal is not None:
            raise EgressRefused(f"{what}: {refusal}")

    # --- addresses -----------------------------------------------------------------------------------

    def address_refusal(self, address: IPAddress, host: str, port: int) -> str | None:
        """Why connecting to `address` (for `host:port`) is refused, or None when it is allowed."""
        address = _normalize(address)
        if any(address in net for net in self.deny_addresses if net.version == address.version):
            return f"address of {_show(host, port)} is in egress.denyAddresses"
        if (host.lower().strip("[]"), port) in self.trusted:
            return None
        if any(address in net for net in self.allow_addresses if net.version == address.version):
            return None
        for net, why in BUILTIN_REFUSED:
            if net.version == address.version and address in net:
                return (
                    f"{_show(host, port)} resolves to a {why} address, refused unless "
                    "egress.allowAddresses allows it"
                )
        if address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255"):
            return f"{_show(host, port)} is the broadcast address"
        return None


def _literal_address(host: str) -> IPAddress | None:
    """The address a host written as an address stands for, or None for a name.

    Besides the canonical forms, the numeric shorthands the C library accepts (`127.1`, `2130706433`,
    `0x7f.1`: inet_aton) are addresses too, and are judged as the address they stand for.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host or not all(c in "0123456789abcdefxABCDEFX." for c in host) or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class FilteringResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver, then drops every address the policy refuses.

    Connecting happens only to what is left, so a name that resolves (or is re-bound) to a refused address
    never reaches it. When nothing is left the lookup fails with the refusal (aiohttp wraps it in a
    `ClientConnectorDNSError` whose `os_error` is the refusal; see `refusal_of`).
    """

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept: list[ResolveResult] = []
        refusals: list[str] = []
        for result in results:
            try:
                address = ipaddress.ip_address(result["host"])
            except ValueError:
                refusals.append(f"{host} resolved to a non-address {result['host']!r}")
                continue
            refusal = self.policy.address_refusal(address, host, port)
            if refusal is None:
                kept.append(result)
            else:
                refusals.append(refusal)
        if not kept:
            raise _AddressRefused(refusals[0] if refusals else f"{host} resolved to no address")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def refusal_of(error: BaseException) -> str | None:
    """The egress refusal inside an aiohttp connection error, if that is what it is."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _AddressRefused):
            return str(current)
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, _AddressRefused):
            return str(os_error)
        current = current.__cause__ or current.__context__
    return None
