"""The egress policy's pure parts: host patterns, address rules, trusted registries, the filtering resolver,
and the `egress` section of the configuration (every error names its field)."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from provider.config import ConfigError, parse_config
from provider.registry.egress import (
    EgressPolicy,
    EgressRefused,
    FilteringResolver,
    parse_host_pattern,
    parse_network,
    refusal_of,
)

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def policy(
    hosts: tuple[str, ...] = ("*",), allow: tuple[str, ...] = (), deny: tuple[str, ...] = ()
) -> EgressPolicy:
    return EgressPolicy(
        hosts=hosts,
        allow_addresses=tuple(parse_network(a) for a in allow),
        deny_addresses=tuple(parse_network(d) for d in deny),
    )


def refusal(p: EgressPolicy, address: str, host: str | None = None, port: int = 443) -> str | None:
    return p.address_refusal(ipaddress.ip_address(address), host or address, port)


# === host patterns ========================================================================================


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("*", "*", None),
        ("registry.example.com", "registry.example.com", None),
        ("Registry.Example.COM", "registry.example.com", None),
        ("*.example.com", "*.example.com", None),
        ("reg?.example.com:5000", "reg?.example.com", 5000),
        ("host:*", "host", None),
        ("127.0.0.1:5000", "127.0.0.1", 5000),
        ("[::1]", "::1", None),
        ("[::1]:5000", "::1", 5000),
        ("[FE80::*]:443", "fe80::*", 443),
        ("  ghcr.io  ", "ghcr.io", None),
        ("host:65535", "host", 65535),
    ],
)
def test_host_patterns_parse(text: str, host: str, port: int | None) -> None:
    pattern = parse_host_pattern(text)
    assert (pattern.host, pattern.port) == (host, port)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "host:0",
        "host:65536",
        "host:99999",
        "host:abc",
        "host:",
        "host:5000:1",
        "::1",  # an IPv6 address needs its brackets
        "[::1",
        "[::1]:",
        "https://host",
        "host/path",
        "a b",
        "user@host",
        "[registry.example.com]",
    ],
)
def test_bad_host_patterns_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_pattern(text)


@pytest.mark.parametrize(
    ("pattern", "host", "port", "matches"),
    [
        ("*", "anything.example", 1, True),
        ("*", "::1", 5000, True),
        ("registry.example.com", "REGISTRY.example.com", 443, True),
        ("registry.example.com", "registry.example.com.evil", 443, False),
        ("registry.example.com", "evil-registry.example.com", 443, False),
        ("*.example.com", "a.b.example.com", 443, True),  # `*` matches dots too
        ("*.example.com", "example.com", 443, False),
        ("*.example.com", "example.com.evil.net", 443, False),
        ("reg?.example.com", "reg1.example.com", 443, True),
        ("reg?.example.com", "reg12.example.com", 443, False),
        ("host:5000", "host", 5000, True),
        ("host:5000", "host", 5001, False),
        ("host", "host", 5001, True),  # no port: any port
        ("host:*", "host", 1, True),
        ("127.0.0.1:5000", "127.0.0.1", 5000, True),
        ("127.0.0.1:5000", "127.0.0.2", 5000, False),
        ("[::1]:5000", "::1", 5000, True),
        ("[::1]:5000", "[::1]", 5000, True),  # a bracketed host as given by a registry name
        ("[::1]:5000", "::1", 5001, False),
        ("[fe80::*]", "fe80::1", 443, True),
    ],
)
def test_host_matching(pattern: str, host: str, port: int, matches: bool) -> None:
    assert policy(hosts=(pattern,)).host_allowed(host, port) is matches


def test_the_default_policy_allows_every_host_name() -> None:
    default = EgressPolicy()
    assert default.hosts == ("*",)
    assert default.host_allowed("registry.example.com", 443)
    default.check_registry("registry.example.com")
    default.check_url("https://auth.example.com/token", "realm")


@pytest.mark.parametrize(
    ("registry", "insecure", "refused"),
    [
        ("registry.example.com", False, False),  # https: port 443
        ("registry.example.com", True, True),  # plain HTTP: port 80
        ("registry.example.com:443", True, False),
        ("registry.example.com:5000", False, True),
        ("other.example.com", False, True),
    ],
)
def test_check_registry_uses_the_scheme_default_port(registry: str, insecure: bool, refused: bool) -> None:
    p = policy(hosts=("registry.example.com:443",))
    if refused:
        with pytest.raises(EgressRefused, match="not allowed by the egress policy"):
            p.check_registry(registry, insecure)
    else:
        p.check_registry(registry, insecure)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://cdn.example.com/blob?sig=1", True),
        ("https://cdn.example.com:443/blob", True),
        ("http://cdn.example.com/blob", False),  # port 80
        ("http://cdn.example.com:443/blob", True),
        ("https://CDN.Example.com/blob", True),
        ("https://cdn.example.com.evil/blob", False),
        ("https://user:pw@cdn.example.com/blob", True),  # userinfo is not the host
        ("https://evil.example@cdn.example.com/blob", True),
        ("https://cdn.example.com@evil.example/blob", False),
    ],
)
def test_check_url_matches_the_url_host_and_port(url: str, ok: bool) -> None:
    p = policy(hosts=("cdn.example.com:443",))
    if ok:
        p.check_url(url, "redirect")
    else:
        with pytest.raises(EgressRefused, match=r"^redirect: host .* is not allowed"):
            p.check_url(url, "redirect")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("https:///token", "no host"),
        ("/relative/token", "no host"),
        ("https://host:99999/token", "invalid port"),
        ("https://host:abc/token", "invalid port"),
    ],
)
def test_check_url_refuses_urls_without_a_usable_host_or_port(url: str, match: str) -> None:
    with pytest.raises(EgressRefused, match=match):
        EgressPolicy().check_url(url, "token realm")


# === addresses ============================================================================================


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("100.100.100.200", "cloud metadata"),
        ("168.63.129.16", "cloud platform"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        ("fd00:ec2::254", "cloud metadata"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: the IPv4 address the kernel connects to
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:0.0.0.0", "unspecified"),
    ],
)
def test_builtin_refusals(address: str, why: str) -> None:
    message = refusal(EgressPolicy(), address)
    assert message is not None and why in message
    assert "egress.allowAddresses" in message


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "8.8.8.8",
        "100.100.100.201",
        "169.253.255.255",
        "2001:db8::1",
        "fd00::1",
        "fec0::1",
        "::ffff:8.8.8.8",
        "::ffff:10.1.2.3",
    ],
)
def test_ordinary_addresses_are_allowed_by_default(address: str) -> None:
    assert refusal(EgressPolicy(), address) is None


def test_the_refusal_names_host_and_port_not_the_address() -> None:
    message = refusal(EgressPolicy(), "127.0.0.1", "localhost", 5000)
    assert message is not None and message.startswith("localhost:5000 resolves to a loopback address")
    message = refusal(EgressPolicy(), "::1", "::1", 5000)
    assert message is not None and message.startswith("[::1]:5000 ")


def test_allow_addresses_lift_the_builtin_refusals() -> None:
    p = policy(allow=("127.0.0.0/8", "169.254.169.254"))
    assert refusal(p, "127.0.0.1") is None
    assert refusal(p, "127.9.9.9") is None
    assert refusal(p, "::ffff:127.0.0.1") is None  # mapped: judged as the IPv4 address
    assert refusal(p, "169.254.169.254") is None
    assert refusal(p, "169.254.169.253") is not None
    assert refusal(p, "::1") is not None  # an IPv4 allowance does not cover IPv6 loopback


def test_deny_addresses_win_over_allow_addresses_and_configured_registries() -> None:
    p = policy(allow=("127.0.0.0/8", "10.0.0.0/8"), deny=("127.0.0.2", "10.1.0.0/16")).with_trusted(
        [("127.0.0.2:5000", True), ("10.1.2.3", False)]
    )
    assert refusal(p, "127.0.0.1") is None
    for address, host, port in (("127.0.0.2", "127.0.0.2", 5000), ("10.1.2.3", "10.1.2.3", 443)):
        message = refusal(p, address, host, port)
        assert message is not None and "egress.denyAddresses" in message
    assert "denyAddresses" in (refusal(p, "::ffff:10.1.0.9") or "")  # mapped addresses are denied too
    assert refusal(p, "10.2.0.1") is None
    denied = policy(deny=("8.8.8.0/24", "2001:db8::/32"))
    assert refusal(denied, "8.8.8.8") is not None and refusal(denied, "2001:db8::1") is not None
    assert refusal(denied, "8.8.4.4") is None


def test_permissive_allows_every_address_but_not_denied_ones() -> None:
    p = EgressPolicy.permissive()
    for address in ("127.0.0.1", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "224.0.0.1"):
        assert refusal(p, address) is None, address


@pytest.mark.parametrize(
    ("registries", "host", "port", "exempt"),
    [
        ([("127.0.0.1:5000", True)], "127.0.0.1", 5000, True),
        ([("127.0.0.1:5000", True)], "127.0.0.1", 5001, False),  # its exact port only
        ([("127.0.0.1:5000", True)], "localhost", 5000, False),  # its exact name only
        ([("localhost:5000", True)], "localhost", 5000, True),
        ([("LocalHost:5000", True)], "localhost", 5000, True),
        ([("localhost", True)], "localhost", 80, True),  # plain HTTP without a port: 80
        ([("localhost", True)], "localhost", 443, False),
        ([("localhost", False)], "localhost", 443, True),  # TLS without a port: 443
        ([("[::1]:5000", True)], "::1", 5000, True),
        ([("[::1]:5000", True)], "[::1]", 5000, True),
    ],
)
def test_configured_registries_are_exempt_at_their_host_and_port(
    registries: list[tuple[str, bool]], host: str, port: int, exempt: bool
) -> None:
    p = EgressPolicy().with_trusted(registries)
    address = "::1" if "::1" in host else "127.0.0.1"
    assert (p.address_refusal(ipaddress.ip_address(address), host, port) is None) is exempt


def test_with_trusted_keeps_the_rest_of_the_policy_and_adds_up() -> None:
    base = policy(hosts=("*.example.com",), allow=("10.0.0.0/8",), deny=("10.9.0.0/16",))
    p = base.with_trusted([("a:1", True)]).with_trusted([("b:2", True)])
    assert (p.hosts, p.allow_addresses, p.deny_addresses) == (
        base.hosts,
        base.allow_addresses,
        base.deny_addresses,
    )
    assert p.trusted == frozenset({("a", 1), ("b", 2)})
    assert base.trusted == frozenset()


def test_configured_registries_are_bound_by_hosts() -> None:
    # Exempt from the built-in address refusals, not from egress.hosts (docs/configuration.md).
    p = policy(hosts=("registry.example.com",)).with_trusted([("127.0.0.1:5000", True)])
    with pytest.raises(EgressRefused, match="not allowed by the egress policy"):
        p.check_registry("127.0.0.1:5000", insecure=True)
    p = policy(hosts=("127.0.0.1:5000",)).with_trusted([("127.0.0.1:5000", True)])
    p.check_registry("127.0.0.1:5000", insecure=True)


@pytest.mark.parametrize(
    "registry",
    [
        "127.0.0.1:5000",
        "127.1:5000",
        "2130706433:5000",
        "0x7f.1:5000",
        "017700000001:5000",
        "0:5000",
        "0.0.0.0:5000",
        "[::1]:5000",
        "[::]:5000",
        "169.254.169.254",
        "[fe80::1]:5000",
        "[::ffff:7f00:1]:5000",
    ],
)
def test_address_literals_are_refused_before_connecting(registry: str) -> None:
    with pytest.raises(EgressRefused, match=rf"^registry {re.escape(registry)}: "):
        EgressPolicy().check_registry(registry, insecure=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "https://127.1/token",
        "http://[fd00:ec2::254]/",
    ],
)
def test_address_literal_urls_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused, match=r"^redirect: "):
        EgressPolicy().check_url(url, "redirect")


@pytest.mark.parametrize(
    "name", ["localhost", "registry.example.com", "1.example.com", "deadbeef", "1e100.net"]
)
def test_names_are_left_to_the_resolver(name: str) -> None:
    EgressPolicy().check_registry(f"{name}:5000")  # their addresses are checked when connecting


# === the filtering resolver ===============================================================================


class FakeResolver(AbstractResolver):
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.closed = False
        self.asked: list[tuple[str, int]] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append((host, port))
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_keeps_only_allowed_addresses() -> None:
    inner = FakeResolver(
        ["127.0.0.1", "93.184.216.34", "::1", "169.254.169.254", "2001:db8::5", "::ffff:10.0.0.1"]
    )
    resolver = FilteringResolver(EgressPolicy(), inner)
    kept = await resolver.resolve("rebinding.example", 443)
    assert [r["host"] for r in kept] == ["93.184.216.34", "2001:db8::5", "::ffff:10.0.0.1"]
    assert inner.asked == [("rebinding.example", 443)]
    await resolver.close()
    assert inner.closed


@pytest.mark.parametrize(
    ("addresses", "match"),
    [
        (["127.0.0.1", "::1"], "rebinding.example:443 resolves to a loopback address"),
        (["169.254.169.254"], "link-local"),
        (["::ffff:127.0.0.1"], "loopback"),
        (["not-an-address"], "non-address"),
        ([], "resolved to no address"),
    ],
)
async def test_resolver_fails_with_the_refusal_when_nothing_is_left(addresses: list[str], match: str) -> None:
    resolver = FilteringResolver(EgressPolicy(), FakeResolver(addresses))
    with pytest.raises(OSError, match=match) as failure:
        await resolver.resolve("rebinding.example", 443)
    # aiohttp wraps the resolver's OSError (ClientConnectorDNSError.os_error); the client finds it there.
    assert refusal_of(failure.value) == str(failure.value)
    wrapped = RuntimeError("connector failed")
    wrapped.__cause__ = failure.value
    assert refusal_of(wrapped) == str(failure.value)
    holder = ConnectionError("dns")
    holder.os_error = failure.value  # type: ignore[attr-defined]
    assert refusal_of(holder) == str(failure.value)


async def test_resolver_honours_allow_deny_and_trusted() -> None:
    p = policy(allow=("127.0.0.0/8",), deny=("127.0.0.2",))
    resolver = FilteringResolver(p, FakeResolver(["127.0.0.1", "127.0.0.2"]))
    assert [r["host"] for r in await resolver.resolve("local.test", 80)] == ["127.0.0.1"]
    trusted = EgressPolicy().with_trusted([("localhost:5000", True)])
    resolver = FilteringResolver(trusted, FakeResolver(["127.0.0.1"]))
    assert [r["host"] for r in await resolver.resolve("localhost", 5000)] == ["127.0.0.1"]
    with pytest.raises(OSError, match="loopback"):
        await resolver.resolve("localhost", 5001)


def test_refusal_of_other_errors_is_none() -> None:
    error = ConnectionRefusedError("refused")
    error.__context__ = OSError("inner")
    assert refusal_of(error) is None
    looped = RuntimeError("a")
    looped.__context__ = looped  # a cycle ends the walk
    assert refusal_of(looped) is None


# === configuration ========================================================================================


def doc(egress: Any) -> dict[str, Any]:
    return {
        "verifiers": {"pinned": {"type": "digest-pin"}},
        "policies": [{"scope": "*", "allOf": ["pinned"]}],
        "egress": egress,
    }


def test_default_egress_section() -> None:
    config = parse_config({k: v for k, v in doc(None).items() if k != "egress"})
    assert config.egress == EgressPolicy()
    assert parse_config(doc({})).egress == EgressPolicy()


def test_egress_section_parses() -> None:
    egress = parse_config(
        doc(
            {
                "hosts": ["*.example.com", "ghcr.io:443", "[::1]:5000"],
                "allowAddresses": ["127.0.0.1", "10.0.0.0/8", "fd00::/8", "192.168.1.7/24"],
                "denyAddresses": ["10.9.0.0/16"],
            }
        )
    ).egress
    assert egress.hosts == ("*.example.com", "ghcr.io:443", "[::1]:5000")
    assert [str(n) for n in egress.allow_addresses] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "fd00::/8",
        "192.168.1.0/24",
    ]
    assert [str(n) for n in egress.deny_addresses] == ["10.9.0.0/16"]
    assert egress.trusted == frozenset()


def test_egress_is_part_of_the_fingerprint() -> None:
    a = parse_config(doc({"allowAddresses": ["127.0.0.1"]})).fingerprint
    b = parse_config(doc({"allowAddresses": ["127.0.0.2"]})).fingerprint
    c = parse_config(doc({"hosts": ["ghcr.io"]})).fingerprint
    assert len({a, b, c, parse_config(doc({})).fingerprint}) == 4


@pytest.mark.parametrize(
    ("egress", "path", "fragment"),
    [
        ("all", "egress", "expected a mapping"),
        ({"hosts": []}, "egress.hosts", "must not be empty"),
        ({"hosts": 3}, "egress.hosts", "expected a list of strings"),
        ({"hosts": ["ghcr.io", ""]}, "egress.hosts[1]", "non-empty string"),
        ({"hosts": ["ghcr.io", "https://quay.io"]}, "egress.hosts[1]", "not a host glob"),
        ({"hosts": ["host:0"]}, "egress.hosts[0]", "port out of range"),
        ({"hosts": ["host:70000"]}, "egress.hosts[0]", "port out of range"),
        ({"hosts": ["::1"]}, "egress.hosts[0]", "not a host glob"),
        ({"allowAddresses": ["localhost"]}, "egress.allowAddresses[0]", "not an address or CIDR"),
        (
            {"allowAddresses": ["127.0.0.1", "10.0.0.0/33"]},
            "egress.allowAddresses[1]",
            "not an address or CIDR",
        ),
        ({"allowAddresses": [7]}, "egress.allowAddresses[0]", "non-empty string"),
        ({"allowAddresses": False}, "egress.allowAddresses", "expected a list of strings"),
        ({"allowAddresses": {"a": 1}}, "egress.allowAddresses", "expected a list of strings"),
        (
            {"denyAddresses": ["10.0.0.0/8", "fe80::/129"]},
            "egress.denyAddresses[1]",
            "not an address or CIDR",
        ),
        ({"denyAddresses": 0}, "egress.denyAddresses", "expected a list of strings"),
        ({"allowAdresses": ["127.0.0.1"]}, "egress.allowAdresses", "unknown field"),
    ],
)
def test_egress_errors_name_the_field(egress: Any, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc(egress))
    assert info.value.path == path
    assert fragment in info.value.message
