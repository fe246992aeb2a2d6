"""Configuration: parsing, the path of every error, durations, policy selection, fingerprint, files."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import provider.config as config_module
from provider.config import (
    API_VERSION,
    CacheConfig,
    Config,
    ConfigError,
    Policy,
    ServerConfig,
    TLSConfig,
    VerifierConfig,
    load_config,
    parse_config,
    parse_duration,
)
from provider.policy import normalize_scope, policy_for, scope_specificity
from provider.registry.auth import Credentials
from provider.registry.settings import Limits, RegistrySettings
from verifiers.reference import ImageReference, parse_reference

Doc = dict[str, Any]


def minimal() -> Doc:
    return {
        "verifiers": {"pinned": {"type": "digest-pin"}},
        "policies": [{"scope": "*", "allOf": ["pinned"]}],
    }


def two_verifiers() -> Doc:
    return {
        "verifiers": {"pinned": {"type": "digest-pin"}, "sbom": {"type": "sbom"}},
        "policies": [{"name": "default", "scope": "*", "allOf": ["pinned", "sbom"]}],
    }


def full() -> Doc:
    return {
        "apiVersion": API_VERSION,
        "server": {
            "address": "127.0.0.1",
            "port": 9443,
            "tls": {
                "certFile": "tls/cert.pem",
                "keyFile": "tls/key.pem",
                "clientCAFile": "/etc/countersign/ca.pem",
                "reloadInterval": "500ms",
            },
            "limits": {"maxKeys": 50, "maxKeyBytes": 128, "maxBodyBytes": 2048, "maxConnections": 64},
            "deadlines": {"verify": "2s", "mutate": "800ms", "background": "1m"},
            "timeouts": {"tlsHandshake": "2s", "requestHeaders": "3s", "requestBody": "4s", "idle": "2m"},
            "configReloadInterval": "30s",
        },
        "cache": {"verdictTTL": "10m", "tagTTL": 5, "maxVerdicts": 7, "contentBytes": 1024},
        "limits": {"maxManifestBytes": 2048, "maxBlobBytes": 4096, "maxReferrers": 3, "maxReferrerPages": 2},
        "registries": {
            "127.0.0.1:5000": {"insecure": True},
            "reg.example.com": {"caFile": "ca.pem", "minTLS": "1.3", "username": "alice", "password": "pw"},
            "empty.example.com": None,
        },
        "auth": {"dockerConfigs": ["docker/config.json", "/abs/config.json"]},
        "verifiers": {
            "pinned": {"type": "digest-pin", "options": {"exempt": ["localhost:5000"]}},
            "sbom": {"type": "sbom"},
        },
        "policies": [
            {"name": "default", "scopes": ["*"], "allOf": ["pinned", "sbom"]},
            {"scope": "reg.example.com", "anyOf": ["pinned"]},
            {
                "name": "prod",
                "scopes": ["reg.example.com/prod/*", "other.example.com"],
                "namespaces": ["prod", "prod-*"],
                "threshold": {"count": 1, "of": ["pinned", "sbom"]},
            },
        ],
    }


# --- valid documents --------------------------------------------------------------------------------


def test_defaults() -> None:
    config = parse_config(minimal())
    assert config.server == ServerConfig()
    assert config.server.tls is None
    assert config.cache == CacheConfig()
    assert config.limits == Limits()
    assert config.registries == {}
    assert config.docker_configs == ()
    assert config.verifiers == {"pinned": VerifierConfig(name="pinned", type="digest-pin", options={})}
    assert config.policies == (
        Policy(name="*", scopes=("*",), namespaces=None, mode="allOf", verifiers=("pinned",), threshold=1),
    )
    assert config.fingerprint.startswith("sha256:")
    assert len(config.fingerprint) == len("sha256:") + 64


def test_connection_defaults_are_bounded() -> None:
    server = parse_config(minimal()).server
    assert (server.max_connections, server.tls_handshake_timeout) == (512, 5.0)
    assert (server.header_timeout, server.body_timeout, server.idle_timeout) == (10.0, 10.0, 120.0)


def test_every_field() -> None:
    base = Path("/cfg")
    config = parse_config(full(), base=base)
    assert config.server == ServerConfig(
        address="127.0.0.1",
        port=9443,
        tls=TLSConfig(
            cert_file=base / "tls/cert.pem",
            key_file=base / "tls/key.pem",
            client_ca_file=Path("/etc/countersign/ca.pem"),
            reload_interval=0.5,
        ),
        max_keys=50,
        max_key_bytes=128,
        max_body_bytes=2048,
        verify_deadline=2.0,
        mutate_deadline=0.8,
        background_timeout=60.0,
        config_reload_interval=30.0,
        max_connections=64,
        tls_handshake_timeout=2.0,
        header_timeout=3.0,
        body_timeout=4.0,
        idle_timeout=120.0,
    )
    assert config.cache == CacheConfig(verdict_ttl=600.0, tag_ttl=5.0, max_verdicts=7, content_bytes=1024)
    assert config.limits == Limits(
        max_manifest_bytes=2048, max_blob_bytes=4096, max_referrers=3, max_referrer_pages=2
    )
    assert config.registries == {
        "127.0.0.1:5000": RegistrySettings(insecure=True),
        "reg.example.com": RegistrySettings(
            ca_file=base / "ca.pem", min_tls="1.3", credentials=Credentials("alice", "pw")
        ),
        "empty.example.com": RegistrySettings(),
    }
    assert config.docker_configs == (base / "docker/config.json", Path("/abs/config.json"))
    assert config.verifiers == {
        "pinned": VerifierConfig("pinned", "digest-pin", {"exempt": ["localhost:5000"]}),
        "sbom": VerifierConfig("sbom", "sbom", {}),
    }
    assert config.policies == (
        Policy("default", ("*",), None, "allOf", ("pinned", "sbom"), 2),
        Policy("reg.example.com", ("reg.example.com",), None, "anyOf", ("pinned",), 1),
        Policy(
            "prod",
            ("reg.example.com/prod/*", "other.example.com"),
            ("prod", "prod-*"),
            "threshold",
            ("pinned", "sbom"),
            1,
        ),
    )


@pytest.mark.parametrize(
    ("policy", "described"),
    [
        (Policy("p", ("*",), None, "allOf", ("a", "b"), 2), "all of [a, b]"),
        (Policy("p", ("*",), None, "anyOf", ("a", "b"), 1), "any of [a, b]"),
        (Policy("p", ("*",), None, "threshold", ("a", "b", "c"), 2), "at least 2 of [a, b, c]"),
    ],
)
def test_policy_describe(policy: Policy, described: str) -> None:
    assert policy.describe() == described


def test_scope_given_as_a_single_string_and_policy_name_defaults_to_first_scope() -> None:
    doc = minimal()
    doc["policies"] = [{"scopes": "reg.example.com/app", "anyOf": ["pinned"]}]
    (policy,) = parse_config(doc).policies
    assert policy.scopes == ("reg.example.com/app",)
    assert policy.name == "reg.example.com/app"


def test_the_same_scope_under_different_namespaces_is_allowed() -> None:
    doc = minimal()
    doc["policies"] = [
        {"name": "a", "scope": "*", "allOf": ["pinned"]},
        {"name": "b", "scope": "*", "namespaces": ["prod"], "allOf": ["pinned"]},
        {"name": "c", "scope": "*", "namespaces": ["dev"], "allOf": ["pinned"]},
    ]
    assert [p.name for p in parse_config(doc).policies] == ["a", "b", "c"]


def test_zero_cache_sizes_and_ttls_are_allowed() -> None:
    doc = minimal()
    doc["cache"] = {"verdictTTL": 0, "tagTTL": "0s", "maxVerdicts": 0, "contentBytes": 0}
    assert parse_config(doc).cache == CacheConfig(0.0, 0.0, 0, 0)


# --- errors carry the exact path --------------------------------------------------------------------


def _set(path: tuple[str | int, ...], value: Any, base: Callable[[], Doc] = minimal) -> Doc:
    doc: Any = base()
    node = doc
    for part in path[:-1]:
        if isinstance(part, str) and isinstance(node, dict) and part not in node:
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    return dict(doc)


def _policies(*policies: Doc) -> Doc:
    doc = two_verifiers()
    doc["policies"] = list(policies)
    return doc


ERRORS: list[tuple[str, Doc, str, str]] = [
    ("wrong apiVersion", _set(("apiVersion",), "v2"), "apiVersion", "unsupported 'v2'"),
    ("unknown top-level field", _set(("polices",), []), "polices", "unknown field"),
    ("server not a mapping", _set(("server",), []), "server", "expected a mapping, got a list"),
    ("port too large", _set(("server", "port"), 70000), "server.port", "between 0 and 65535"),
    ("port a string", _set(("server", "port"), "80"), "server.port", "expected an integer, got a string"),
    ("port a boolean", _set(("server", "port"), True), "server.port", "expected an integer, got a boolean"),
    ("address empty", _set(("server", "address"), ""), "server.address", "non-empty string"),
    (
        "bad duration",
        _set(("server", "deadlines", "verify"), "abc"),
        "server.deadlines.verify",
        "expected a duration like 2.5s",
    ),
    (
        "duration out of range",
        _set(("server", "deadlines", "verify"), "30s"),
        "server.deadlines.verify",
        "must be between 0.05s and 29s, got 30s",
    ),
    (
        "duration a boolean",
        _set(("server", "deadlines", "mutate"), False),
        "server.deadlines.mutate",
        "got a boolean",
    ),
    (
        "unknown deadline",
        _set(("server", "deadlines", "bogus"), 1),
        "server.deadlines.bogus",
        "unknown field",
    ),
    ("maxKeys zero", _set(("server", "limits", "maxKeys"), 0), "server.limits.maxKeys", "between 1 and"),
    (
        "maxConnections zero",
        _set(("server", "limits", "maxConnections"), 0),
        "server.limits.maxConnections",
        "between 1 and 100000",
    ),
    (
        "header timeout zero",
        _set(("server", "timeouts", "requestHeaders"), 0),
        "server.timeouts.requestHeaders",
        "must be between 0.1s and 300s, got 0s",
    ),
    (
        "handshake timeout too long",
        _set(("server", "timeouts", "tlsHandshake"), "2m"),
        "server.timeouts.tlsHandshake",
        "must be between 0.1s and 60s, got 120s",
    ),
    ("idle not a duration", _set(("server", "timeouts", "idle"), "soon"), "server.timeouts.idle", "duration"),
    ("unknown timeout", _set(("server", "timeouts", "write"), 1), "server.timeouts.write", "unknown field"),
    ("unknown server limit", _set(("server", "limits", "extra"), 1), "server.limits.extra", "unknown field"),
    (
        "tls without certFile",
        _set(("server", "tls"), {"keyFile": "k.pem"}),
        "server.tls.certFile",
        "required when tls is set",
    ),
    (
        "tls without keyFile",
        _set(("server", "tls"), {"certFile": "c.pem"}),
        "server.tls.keyFile",
        "required when tls is set",
    ),
    (
        "unknown tls field",
        _set(("server", "tls"), {"certFile": "c", "keyFile": "k", "extra": 1}),
        "server.tls.extra",
        "unknown field",
    ),
    (
        "tls reload too fast",
        _set(("server", "tls"), {"certFile": "c", "keyFile": "k", "reloadInterval": "1ms"}),
        "server.tls.reloadInterval",
        "must be between",
    ),
    (
        "config reload too fast",
        _set(("server", "configReloadInterval"), "10ms"),
        "server.configReloadInterval",
        "between 0.1s and 3600s",
    ),
    ("negative ttl", _set(("cache", "verdictTTL"), -1), "cache.verdictTTL", "between 0s and 86400s"),
    ("negative maxVerdicts", _set(("cache", "maxVerdicts"), -1), "cache.maxVerdicts", "between 0 and"),
    ("unknown cache field", _set(("cache", "size"), 1), "cache.size", "unknown field"),
    ("tiny maxBlobBytes", _set(("limits", "maxBlobBytes"), 10), "limits.maxBlobBytes", "between 1024 and"),
    ("unknown limit", _set(("limits", "extra"), 1), "limits.extra", "unknown field"),
    ("registries a list", _set(("registries",), []), "registries", "mapping of registry host"),
    (
        "bad minTLS",
        _set(("registries",), {"h:5000": {"minTLS": "1.1"}}),
        "registries['h:5000'].minTLS",
        "must be '1.2' or '1.3', got '1.1'",
    ),
    (
        "minTLS a number",
        _set(("registries",), {"h:5000": {"minTLS": 1.3}}),
        "registries['h:5000'].minTLS",
        "non-empty string, got float",
    ),
    (
        "bad registry host",
        _set(("registries",), {"bad host/x": {}}),
        "registries['bad host/x']",
        "host names with an optional port",
    ),
    (
        "username without password",
        _set(("registries",), {"h": {"username": "u"}}),
        "registries['h']",
        "username and password go together",
    ),
    (
        "password without username",
        _set(("registries",), {"h": {"password": "p"}}),
        "registries['h']",
        "username and password go together",
    ),
    (
        "password and passwordFile",
        _set(("registries",), {"h": {"username": "u", "password": "p", "passwordFile": "f"}}),
        "registries['h'].passwordFile",
        "not both",
    ),
    (
        "unreadable passwordFile",
        _set(("registries",), {"h": {"username": "u", "passwordFile": "/nonexistent/countersign/pw"}}),
        "registries['h'].passwordFile",
        "cannot read",
    ),
    (
        "caFile with insecure",
        _set(("registries",), {"h": {"insecure": True, "caFile": "ca.pem"}}),
        "registries['h'].caFile",
        "insecure",
    ),
    (
        "insecure not a boolean",
        _set(("registries",), {"h": {"insecure": "yes"}}),
        "registries['h'].insecure",
        "expected true or false, got a string",
    ),
    (
        "unknown registry field",
        _set(("registries",), {"h": {"insecure": True, "tls": {}}}),
        "registries['h'].tls",
        "unknown field",
    ),
    ("registry not a mapping", _set(("registries",), {"h": "x"}), "registries['h']", "expected a mapping"),
    ("dockerConfigs not a list", _set(("auth", "dockerConfigs"), 3), "auth.dockerConfigs", "list of strings"),
    ("empty dockerConfig", _set(("auth", "dockerConfigs"), ["a", ""]), "auth.dockerConfigs[1]", "non-empty"),
    ("unknown auth field", _set(("auth", "helpers"), {}), "auth.helpers", "unknown field"),
    ("no verifiers", {"policies": [{"scope": "*", "allOf": ["x"]}]}, "verifiers", "non-empty mapping"),
    ("empty verifiers", _set(("verifiers",), {}), "verifiers", "non-empty mapping"),
    (
        "bad verifier name",
        _set(("verifiers",), {"Pinned": {"type": "digest-pin"}}),
        "verifiers.Pinned",
        "lowercase",
    ),
    ("verifier without type", _set(("verifiers", "pinned"), {}), "verifiers.pinned.type", "required"),
    ("verifier not a mapping", _set(("verifiers", "pinned"), None), "verifiers.pinned", "got nothing"),
    (
        "options not a mapping",
        _set(("verifiers", "pinned"), {"type": "digest-pin", "options": []}),
        "verifiers.pinned.options",
        "expected a mapping, got a list",
    ),
    (
        "unknown verifier field",
        _set(("verifiers", "pinned"), {"type": "digest-pin", "option": {}}),
        "verifiers.pinned.option",
        "unknown field",
    ),
    ("no policies", {"verifiers": {"p": {"type": "digest-pin"}}}, "policies", "non-empty list"),
    ("empty policies", _set(("policies",), []), "policies", "non-empty list"),
    ("policy not a mapping", _set(("policies",), ["*"]), "policies[0]", "expected a mapping"),
    (
        "unknown verifier in the second policy",
        _policies(
            {"name": "a", "scope": "*", "allOf": ["pinned"]},
            {"name": "b", "scope": "x.io", "allOf": ["nope", "pinned"]},
        ),
        "policies[1].allOf[0]",
        "unknown verifier 'nope' (defined: pinned, sbom)",
    ),
    (
        "unknown verifier in anyOf",
        _policies({"scope": "*", "anyOf": ["pinned", "sbom", "nope"]}),
        "policies[0].anyOf[2]",
        "unknown verifier 'nope'",
    ),
    ("empty allOf", _policies({"scope": "*", "allOf": []}), "policies[0].allOf", "must not be empty"),
    ("empty anyOf", _policies({"scope": "*", "anyOf": []}), "policies[0].anyOf", "must not be empty"),
    (
        "verifier listed twice",
        _policies({"scope": "*", "allOf": ["pinned", "pinned"]}),
        "policies[0].allOf",
        "lists a verifier twice",
    ),
    (
        "scope and scopes",
        _policies({"scope": "*", "scopes": ["*"], "allOf": ["pinned"]}),
        "policies[0].scopes",
        "either scope or scopes, not both",
    ),
    ("no scope", _policies({"allOf": ["pinned"]}), "policies[0].scopes", "got nothing"),
    (
        "empty scopes",
        _policies({"scopes": [], "allOf": ["pinned"]}),
        "policies[0].scopes",
        "must not be empty",
    ),
    (
        "invalid scope",
        _policies({"scopes": ["*", "a b"], "allOf": ["pinned"]}),
        "policies[0].scopes[1]",
        "invalid",
    ),
    ("no mode", _policies({"scope": "*"}), "policies[0]", "exactly one of allOf, anyOf or threshold"),
    (
        "two modes",
        _policies({"scope": "*", "allOf": ["pinned"], "anyOf": ["sbom"]}),
        "policies[0]",
        "exactly one of allOf, anyOf or threshold",
    ),
    (
        "threshold count above the list",
        _policies({"scope": "*", "threshold": {"count": 3, "of": ["pinned", "sbom"]}}),
        "policies[0].threshold.count",
        "must be between 1 and 2, got 3",
    ),
    (
        "threshold count zero",
        _policies({"scope": "*", "threshold": {"count": 0, "of": ["pinned", "sbom"]}}),
        "policies[0].threshold.count",
        "must be between 1 and 2",
    ),
    (
        "threshold count missing",
        _policies({"scope": "*", "threshold": {"of": ["pinned", "sbom"]}}),
        "policies[0].threshold.count",
        "required",
    ),
    (
        "threshold of an unknown verifier",
        _policies({"scope": "*", "threshold": {"count": 1, "of": ["pinned", "cosign"]}}),
        "policies[0].threshold.of[1]",
        "unknown verifier 'cosign'",
    ),
    (
        "threshold without of",
        _policies({"scope": "*", "threshold": {"count": 1}}),
        "policies[0].threshold.of",
        "got nothing",
    ),
    (
        "unknown threshold field",
        _policies({"scope": "*", "threshold": {"count": 1, "of": ["pinned"], "min": 1}}),
        "policies[0].threshold.min",
        "unknown field",
    ),
    (
        "duplicate policy names",
        _policies(
            {"name": "p", "scope": "*", "allOf": ["pinned"]},
            {"name": "p", "scope": "x.io", "allOf": ["sbom"]},
        ),
        "policies[1].name",
        "duplicate policy name 'p'",
    ),
    (
        "duplicate default names",
        _policies({"scope": "x.io", "allOf": ["pinned"]}, {"scope": "x.io", "allOf": ["sbom"]}),
        "policies[1].name",
        "duplicate policy name 'x.io'",
    ),
    (
        "same scope claimed twice",
        _policies(
            {"name": "a", "scopes": ["*"], "allOf": ["pinned"]},
            {"name": "b", "scopes": ["x.io", "*"], "allOf": ["sbom"]},
        ),
        "policies[1].scopes[1]",
        "scope '*' is already claimed by policy 'a'",
    ),
    (
        "same scope and namespaces claimed twice",
        _policies(
            {"name": "a", "scope": "*", "namespaces": ["prod"], "allOf": ["pinned"]},
            {"name": "b", "scope": "*", "namespaces": ["prod"], "allOf": ["sbom"]},
        ),
        "policies[1].scopes[0]",
        "already claimed by policy 'a'",
    ),
    (
        "empty namespaces",
        _policies({"scope": "*", "namespaces": [], "allOf": ["pinned"]}),
        "policies[0].namespaces",
        "must not be empty",
    ),
    (
        "non-string namespace",
        _policies({"scope": "*", "namespaces": ["prod", 3], "allOf": ["pinned"]}),
        "policies[0].namespaces[1]",
        "non-empty string, got int",
    ),
    (
        "unknown policy field",
        _policies({"scope": "*", "allOf": ["pinned"], "namespace": "prod"}),
        "policies[0].namespace",
        "unknown field",
    ),
]


@pytest.mark.parametrize(("doc", "path", "fragment"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_the_field(doc: Doc, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.path == path
    assert fragment in info.value.message
    assert str(info.value) == f"{path}: {info.value.message}"


@pytest.mark.parametrize("data", [None, [], "text", 3])
def test_a_document_that_is_not_a_mapping(data: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.path == ""
    assert info.value.message.startswith("expected a mapping")
    assert str(info.value) == info.value.message


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"scope": "reg.io"}, {"scope": "reg.io/*"}, id="bare registry and registry/*"),
        pytest.param(
            {"scope": "*", "namespaces": ["a", "b"]},
            {"scope": "*", "namespaces": ["b", "a"]},
            id="namespace order",
        ),
    ],
)
def test_an_equivalent_scope_claimed_twice_is_refused(first: Doc, second: Doc) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            _policies({"name": "a", **first, "allOf": ["pinned"]}, {"name": "b", **second, "allOf": ["sbom"]})
        )
    assert info.value.path == "policies[1].scopes[0]"
    assert "already claimed by policy 'a'" in info.value.message


@pytest.mark.parametrize("field", ["prot", "deadline", "maxKeys"])
def test_unknown_server_field_is_refused(field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_set(("server", field), 1))
    assert info.value.path == f"server.{field}"
    assert "unknown field" in info.value.message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_durations_are_refused(value: float) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_set(("server", "deadlines", "verify"), value))
    assert info.value.path == "server.deadlines.verify"
    assert "finite" in info.value.message


@pytest.mark.parametrize("name", ["p\n", "p\nq", "-p", "p-", "P", "a" * 65])
def test_invalid_verifier_names_are_refused(name: str) -> None:
    doc = {"verifiers": {name: {"type": "digest-pin"}}, "policies": [{"scope": "*", "allOf": [name]}]}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.path == f"verifiers.{name}"
    assert "lowercase" in info.value.message


# --- durations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2.5s", 2.5),
        ("900ms", 0.9),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("30d", 2_592_000.0),
        ("7", 7.0),
        (" 2s ", 2.0),
        ("0", 0.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    result = parse_duration(value, "x.y")
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "",
        "2.5 s",
        "-1s",
        "1w",
        "5sec",
        "1e3",
        ".5s",
        "s",
        "2s\n3",
        "5m\n1",
        math.nan,
        math.inf,
        True,
        None,
        [1],
        {},
    ],
)
def test_invalid_durations(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "server.deadlines.verify")
    assert info.value.path == "server.deadlines.verify"
    assert "duration" in info.value.message


@pytest.mark.parametrize(("value", "seconds"), [("2.5s", 2.5), ("900ms", 0.9), (3, 3.0), ("0.1m", 6.0)])
def test_durations_in_a_document(value: object, seconds: float) -> None:
    config = parse_config(_set(("server", "deadlines", "verify"), value))
    assert config.server.verify_deadline == pytest.approx(seconds)


# --- policy selection -------------------------------------------------------------------------------


def _config(*policies: Doc) -> Config:
    doc = minimal()
    doc["policies"] = [{**p, "allOf": ["pinned"]} for p in policies]
    return parse_config(doc)


SPECIFICITY = _config(
    {"name": "everything", "scope": "*"},
    {"name": "registry", "scope": "reg.example.com"},
    {"name": "team", "scope": "reg.example.com/team/*"},
    {"name": "team-app", "scope": "reg.example.com/team/app"},
    {"name": "team-a", "scope": "reg.example.com/team/a*"},
    {"name": "hub-library", "scope": "docker.io/library/*"},
    {"name": "one-char", "scope": "reg.example.com/v?"},
)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("reg.example.com/team/app:1", "team-app"),  # exact beats every glob
        ("reg.example.com/team/app@sha256:" + "a" * 64, "team-app"),
        ("reg.example.com/team/api", "team-a"),  # longer glob beats shorter
        ("reg.example.com/team/web", "team"),
        ("reg.example.com/team/app/sub", "team-a"),  # `*` crosses `/`
        ("reg.example.com/other/x", "registry"),  # a bare registry scope is the whole registry
        ("reg.example.com/x", "registry"),
        ("reg.example.com/v1", "one-char"),
        ("reg.example.com:5000/x", "everything"),  # another port is another registry
        ("sub.reg.example.com/x", "everything"),
        ("nginx", "hub-library"),
        ("bitnami/redis", "everything"),
        ("other.io/x", "everything"),  # `*` is last
    ],
)
def test_policy_specificity(reference: str, expected: str) -> None:
    policy = policy_for(SPECIFICITY.policies, parse_reference(reference), None)
    assert policy is not None
    assert policy.name == expected


NAMESPACED = _config(
    {"name": "default", "scope": "*"},
    {"name": "app", "scope": "reg.example.com/app"},
    {"name": "prod", "scope": "reg.example.com", "namespaces": ["prod", "prod-*"]},
    {"name": "prod-app", "scope": "reg.example.com/app", "namespaces": ["prod"]},
)


@pytest.mark.parametrize(
    ("reference", "namespace", "expected"),
    [
        ("reg.example.com/app", "prod", "prod-app"),
        ("reg.example.com/app", "prod-eu", "prod"),  # namespace-restricted beats a more specific scope
        ("reg.example.com/web", "prod", "prod"),
        ("reg.example.com/app", "dev", "app"),  # restricted policies only apply to their namespaces
        ("reg.example.com/app", "production", "app"),
        ("reg.example.com/app", None, "app"),
        ("reg.example.com/web", None, "default"),
        ("other.io/x", "prod", "default"),  # ... and only to their scopes
    ],
)
def test_policy_namespaces(reference: str, namespace: str | None, expected: str) -> None:
    policy = policy_for(NAMESPACED.policies, parse_reference(reference), namespace)
    assert policy is not None
    assert policy.name == expected


@pytest.mark.parametrize(
    ("reference", "namespace"),
    [("other.io/x", None), ("reg.example.com:5000/app", None), ("docker.io/library/app", "prod")],
)
def test_no_policy_matches(reference: str, namespace: str | None) -> None:
    config = _config(
        {"name": "app", "scope": "reg.example.com/app"},
        {"name": "prod", "scope": "reg.example.com", "namespaces": ["prod"]},
    )
    assert policy_for(config.policies, parse_reference(reference), namespace) is None


_component = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)


@settings(deadline=None, max_examples=50)
@given(
    registry=st.sampled_from(["reg.example.com", "localhost:5000", "docker.io"]),
    path=st.lists(_component, min_size=2, max_size=4),
)
def test_an_exact_scope_always_wins(registry: str, path: list[str]) -> None:
    name = f"{registry}/{'/'.join(path)}"
    parent = f"{registry}/{'/'.join(path[:-1])}/*"
    config = _config(
        {"name": "any", "scope": "*"},
        {"name": "registry", "scope": registry},
        {"name": "parent", "scope": parent},
        {"name": "exact", "scope": name},
    )
    reference = parse_reference(name)
    assert reference.name == name
    chosen = policy_for(config.policies, reference, None)
    assert chosen is not None and chosen.name == "exact"
    other = parse_reference(f"{name}x")
    chosen = policy_for(config.policies, other, None)
    assert chosen is not None and chosen.name == "parent"


# --- fingerprint ------------------------------------------------------------------------------------


def _reorder(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reorder(v) for v in value]
    return value


def test_fingerprint_is_stable_across_key_order() -> None:
    doc = full()
    reordered = _reorder(doc)
    assert list(reordered) != list(doc)
    assert parse_config(reordered).fingerprint == parse_config(doc).fingerprint
    assert parse_config(full()).fingerprint == parse_config(doc).fingerprint


def _change(path: tuple[str | int, ...], value: Any) -> Doc:
    return _set(path, value, full)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(
            _change(("verifiers", "pinned", "options", "exempt"), ["other:5000"]), id="verifier option"
        ),
        pytest.param(
            _change(("verifiers", "pinned", "options", "verifyTag"), True), id="new verifier option"
        ),
        pytest.param(_change(("verifiers", "sbom", "type"), "digest-pin"), id="verifier type"),
        pytest.param(_change(("policies", 0, "allOf"), ["pinned"]), id="policy verifiers"),
        pytest.param(_change(("policies", 1, "scope"), "reg2.example.com"), id="policy scope"),
        pytest.param(_change(("policies", 2, "namespaces"), ["prod"]), id="policy namespaces"),
        pytest.param(_change(("policies", 2, "threshold", "count"), 2), id="threshold count"),
        pytest.param(_change(("registries", "127.0.0.1:5000", "insecure"), False), id="registry setting"),
        pytest.param(_change(("registries", "reg.example.com", "username"), "bob"), id="registry username"),
        pytest.param(_change(("limits", "maxReferrers"), 4), id="limits"),
        pytest.param(_change(("auth", "dockerConfigs"), []), id="docker configs"),
    ],
)
def test_fingerprint_changes_with_what_can_change_a_verdict(changed: Doc) -> None:
    assert parse_config(changed).fingerprint != parse_config(full()).fingerprint


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(_change(("server", "port"), 1234), id="server port"),
        pytest.param(_change(("server", "deadlines", "verify"), "1s"), id="server deadline"),
        pytest.param(_change(("server", "tls"), None), id="server tls"),
        pytest.param(_change(("cache", "verdictTTL"), "1h"), id="cache ttl"),
        pytest.param(_change(("cache", "contentBytes"), 0), id="cache size"),
        pytest.param(_change(("apiVersion",), None), id="apiVersion default"),
        pytest.param(_change(("registries", "reg.example.com", "password"), "other-secret"), id="password"),
    ],
)
def test_fingerprint_ignores_server_cache_and_secrets(changed: Doc) -> None:
    assert parse_config(changed).fingerprint == parse_config(full()).fingerprint


def test_fingerprint_ignores_the_password_file_and_its_content(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("secret-one\n")
    second.write_text("secret-two\n")
    registry: Doc = {"username": "u", "passwordFile": str(first)}
    one = parse_config(_change(("registries", "reg.example.com"), registry))
    two = parse_config(_change(("registries", "reg.example.com"), {**registry, "passwordFile": str(second)}))
    assert one.registries["reg.example.com"].credentials == Credentials("u", "secret-one")
    assert two.registries["reg.example.com"].credentials == Credentials("u", "secret-two")
    assert one.fingerprint == two.fingerprint


def test_the_password_is_in_no_representation_of_the_config() -> None:
    secret = "hunter2-very-secret"
    config = parse_config(_change(("registries", "reg.example.com", "password"), secret))
    credentials = config.registries["reg.example.com"].credentials
    assert credentials is not None and credentials.password == secret
    assert secret not in repr(config)
    assert secret not in config.fingerprint


# --- files ------------------------------------------------------------------------------------------


def test_load_config_resolves_paths_against_the_file(tmp_path: Path) -> None:
    directory = tmp_path / "etc"
    directory.mkdir()
    (directory / "registry.password").write_text("s3cret\n")
    path = directory / "countersign.yaml"
    path.write_text(
        """
apiVersion: countersign.dev/v1alpha1
server:
  tls: {certFile: tls/tls.crt, keyFile: /abs/tls.key}
  deadlines: {verify: 900ms}
registries:
  "reg.example.com:5000":
    caFile: certs/ca.pem
    username: robot
    passwordFile: registry.password
auth:
  dockerConfigs: [docker.json]
verifiers:
  pinned: {type: digest-pin, options: {exempt: ["localhost:5000"]}}
policies:
  - name: default
    scope: "*"
    allOf: [pinned]
""",
        encoding="utf-8",
    )
    config = load_config(path)
    settings_ = config.registries["reg.example.com:5000"]
    assert settings_.ca_file == directory / "certs" / "ca.pem"
    assert settings_.credentials == Credentials("robot", "s3cret")
    assert config.server.tls is not None
    assert config.server.tls.cert_file == directory / "tls" / "tls.crt"
    assert config.server.tls.key_file == Path("/abs/tls.key")
    assert config.server.verify_deadline == pytest.approx(0.9)
    assert config.docker_configs == (directory / "docker.json",)


def test_load_config_error_paths_come_through(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("verifiers: {p: {type: digest-pin}}\npolicies:\n  - {scope: '*', allOf: [q]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == "policies[0].allOf[0]"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("a: [1, 2\n", "is not valid YAML"),
        ("a: b: c\n", "is not valid YAML"),
        ("", "expected a mapping, got nothing"),
        ("- a\n- b\n", "expected a mapping, got a list"),
    ],
)
def test_load_config_bad_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == ""
    assert fragment in info.value.message


def test_load_config_refuses_a_file_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "MAX_CONFIG_BYTES", 64)
    path = tmp_path / "c.yaml"
    path.write_text("#" * 65)
    with pytest.raises(ConfigError, match="larger than 64 bytes"):
        load_config(path)
    path.write_text("#" * 64)
    with pytest.raises(ConfigError) as info:  # at the limit it is read (and then found empty)
        load_config(path)
    assert "larger than" not in info.value.message


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_load_config_refuses_yaml_object_tags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("verifiers: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


@settings(max_examples=300, deadline=None)
@given(
    scope=st.text(alphabet="ab/.*?[]!-", min_size=1, max_size=10),
    repository=st.text(alphabet="ab/.-", min_size=1, max_size=10),
)
def test_scope_specificity_is_fnmatchcase_on_the_normalized_scope(scope: str, repository: str) -> None:
    """The per-scope compiled form (worked out once) answers as `fnmatchcase` on the normalized scope."""
    pattern = normalize_scope(scope)
    reference = ImageReference(registry="a.b", repository=repository)
    if not any(c in pattern for c in "*?["):
        expected = (1, len(pattern)) if pattern == reference.name else None
    elif fnmatch.fnmatchcase(reference.name, pattern):
        expected = (0, len(re.sub(r"\[[^\]]*\]|[*?]", "", pattern)))
    else:
        expected = None
    assert scope_specificity(scope, reference) == expected


# --- memory bounds -------------------------------------------------------------------------------------


def test_memory_bounds_have_defaults_and_are_read() -> None:
    config = parse_config(minimal())
    assert config.server.in_flight_bytes == config.server.verification_bytes == 128 << 20
    assert (config.cache.verdict_bytes, config.cache.tag_bytes) == (64 << 20, 8 << 20)
    doc = minimal()
    doc["server"] = {"limits": {"inFlightBytes": 64 << 20, "verificationBytes": 32 << 20}}
    doc["cache"] = {"verdictBytes": 1 << 20, "tagBytes": 0}
    config = parse_config(doc)
    assert (config.server.in_flight_bytes, config.server.verification_bytes) == (64 << 20, 32 << 20)
    assert (config.cache.verdict_bytes, config.cache.tag_bytes) == (1 << 20, 0)


def test_registry_connection_limits_have_defaults_and_are_read() -> None:
    limits = parse_config(minimal()).limits
    assert (limits.max_connections, limits.max_connections_per_registry) == (128, 64)
    assert limits.idle_connection_timeout == 60.0
    doc = minimal()
    doc["limits"] = {"maxConnections": 100, "maxConnectionsPerRegistry": 40, "idleConnectionTimeout": "2m"}
    limits = parse_config(doc).limits
    assert (limits.max_connections, limits.max_connections_per_registry) == (100, 40)
    assert limits.idle_connection_timeout == 120.0


@pytest.mark.parametrize(
    ("limits", "field", "fragment"),
    [
        ({"maxConnections": 0}, "maxConnections", "between 16 and 4096"),
        ({"maxConnections": 5000}, "maxConnections", "between 16 and 4096"),
        ({"maxConnectionsPerRegistry": 8}, "maxConnectionsPerRegistry", "between 16 and 4096"),
        (
            {"maxConnections": 64, "maxConnectionsPerRegistry": 65},
            "maxConnectionsPerRegistry",
            "must not exceed maxConnections (64), got 65",
        ),
        (
            {"maxConnectionsPerRegistry": 200},
            "maxConnectionsPerRegistry",
            "must not exceed maxConnections (128)",
        ),
        ({"idleConnectionTimeout": "11m"}, "idleConnectionTimeout", "between"),
        ({"idleConnectionTimeout": 0.5}, "idleConnectionTimeout", "between"),
    ],
)
def test_registry_connection_limits_are_bounded(limits: dict[str, object], field: str, fragment: str) -> None:
    doc = minimal()
    doc["limits"] = limits
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.path == f"limits.{field}"
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("section", "field", "value", "fragment"),
    [
        ("server", "inFlightBytes", 1000, "between 1048576 and"),
        ("server", "verificationBytes", "big", "expected an integer"),
        ("server", "verificationBytes", 256 << 20, "must not exceed inFlightBytes (134217728)"),
        ("cache", "verdictBytes", -1, "between 0 and"),
        ("cache", "tagBytes", True, "expected an integer"),
    ],
)
def test_memory_bounds_are_validated(section: str, field: str, value: object, fragment: str) -> None:
    doc = minimal()
    if section == "server":
        doc["server"] = {"limits": {field: value}}
        path = f"server.limits.{field}"
    else:
        doc["cache"] = {field: value}
        path = f"cache.{field}"
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.path == path
    assert fragment in info.value.message


# --- every error at once --------------------------------------------------------------------------------


def test_every_error_is_reported_at_once_each_with_its_path() -> None:
    doc = two_verifiers()
    doc["server"] = {"port": "80", "tls": {}, "deadlines": {"verify": "30s"}}
    doc["cache"] = {"size": 1}
    doc["registries"] = {"h": {"username": "u"}, "bad host": {}}
    doc["policies"] = [{"scope": "*", "allOf": ["pinned", "nope"]}, {"scope": "x.io"}]
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    expected = [
        ("server.port", "expected an integer, got a string"),
        ("server.tls.certFile", "required when tls is set"),
        ("server.tls.keyFile", "required when tls is set"),
        ("server.deadlines.verify", "must be between 0.05s and 29s, got 30s"),
        ("cache.size", "unknown field"),
        ("registries['h']", "username and password go together"),
        ("registries['bad host']", "registry keys are host names with an optional port"),
        ("policies[1]", "set exactly one of allOf, anyOf or threshold"),
    ]
    errors = info.value.errors
    assert [path for path, _ in errors] == [path for path, _ in expected]
    for (_, message), (_, fragment) in zip(errors, expected, strict=True):
        assert fragment in message
    assert (info.value.path, info.value.message) == errors[0]
    assert str(info.value) == "\n".join(f"{p}: {m}" for p, m in errors)


def test_policies_are_checked_against_the_verifiers_once_every_policy_is_valid() -> None:
    doc = two_verifiers()
    doc["policies"] = [
        {"name": "a", "scope": "*", "allOf": ["nope"]},
        {"name": "a", "scope": "x.io", "anyOf": ["sbom", "other"]},
        {"name": "b", "scope": "*", "threshold": {"count": 1, "of": ["pinned"]}},
    ]
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.errors == [
        ("policies[0].allOf[0]", "unknown verifier 'nope' (defined: pinned, sbom)"),
        ("policies[1].name", "duplicate policy name 'a'"),
        ("policies[1].anyOf[1]", "unknown verifier 'other' (defined: pinned, sbom)"),
        ("policies[2].scopes[0]", "scope '*' is already claimed by policy 'a'"),
    ]


def test_tls_without_either_file_names_both() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_set(("server", "tls"), {}))
    assert info.value.errors == [
        ("server.tls.certFile", "required when tls is set"),
        ("server.tls.keyFile", "required when tls is set"),
    ]


def test_unknown_fields_name_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_set(("limits", "maxBlob"), 1))
    assert info.value.errors == [
        (
            "limits.maxBlob",
            "unknown field (known: idleConnectionTimeout, maxBlobBytes, maxConnections, "
            "maxConnectionsPerRegistry, maxManifestBytes, maxReferrerPages, maxReferrers)",
        )
    ]


def test_null_is_the_same_as_a_field_left_out() -> None:
    doc = minimal()
    doc["server"] = {"port": None, "tls": None, "limits": None}
    doc["cache"] = None
    doc["verifiers"]["pinned"]["options"] = None
    config = parse_config(doc)
    assert (config.server, config.cache) == (ServerConfig(), CacheConfig())
    assert config.verifiers["pinned"].options == {}
