"""Configuration: YAML, validated at load, every error naming the offending field.

    apiVersion: countersign.dev/v1alpha1
    server: {port: 8443, tls: {certFile, keyFile, clientCAFile}, deadlines: {verify: 2.5, mutate: 0.9}}
    registries: {"127.0.0.1:5000": {insecure: true}}
    verifiers: {pinned: {type: digest-pin}, sbom: {type: sbom, options: {...}}}
    policies:
      - name: default
        scopes: ["*"]
        allOf: [pinned, sbom]

See docs/configuration.md for every field. The fingerprint of everything that can change a verdict is part
of every verdict cache key, so a new configuration never serves a verdict made under the old one.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provider.registry.auth import Credentials
from provider.registry.client import Limits, RegistrySettings
from provider.registry.egress import EgressPolicy, parse_host_pattern, parse_network
from verifiers import options
from verifiers.base import OptionsError
from verifiers.reference import ImageReference

__all__ = [
    "API_VERSION",
    "CacheConfig",
    "Config",
    "ConfigError",
    "Policy",
    "ServerConfig",
    "TLSConfig",
    "VerifierConfig",
    "load_config",
    "parse_config",
]

API_VERSION = "countersign.dev/v1alpha1"
MAX_CONFIG_BYTES = 4 * 1024 * 1024


class ConfigError(ValueError):
    """Invalid configuration; `path` is the field (e.g. `policies[1].allOf[0]`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    reload_interval: float = 2.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    address: str = "0.0.0.0"
    port: int = 8443
    tls: TLSConfig | None = None
    health_port: int | None = None
    max_keys: int = 1000
    max_key_bytes: int = 4096
    max_body_bytes: int = 1024 * 1024
    verify_deadline: float = 2.5
    mutate_deadline: float = 0.9
    background_timeout: float = 30.0
    max_concurrent_verifications: int = 256
    max_in_flight_verifications: int = 10_000
    config_reload_interval: float = 5.0
    # Per listener (the HTTPS one and the health one, each on its own): connections served at once; more
    # are closed at accept, before any TLS handshake.
    max_connections: int = 512
    # Connection timeouts (seconds): the TLS handshake; a request's headers, from the connection's start
    # or the request's first byte; a request's body, once its headers are in; an idle keep-alive
    # connection (also a response the client does not read).
    tls_handshake_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    idle_timeout: float = 120.0
    in_flight_bytes: int = 128 * 1024 * 1024  # registry responses being read or used, parse cost included
    verification_bytes: int = 128 * 1024 * 1024  # of which one verification may hold


@dataclass(frozen=True, slots=True)
class CacheConfig:
    verdict_ttl: float = 300.0
    tag_ttl: float = 30.0
    max_verdicts: int = 10_000
    content_bytes: int = 64 * 1024 * 1024
    verdict_bytes: int = 64 * 1024 * 1024
    tag_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    name: str
    type: str
    options: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Policy:
    """Which verifiers an image in `scopes` (and `namespaces`, when set) must pass: k of `verifiers`."""

    name: str
    scopes: tuple[str, ...]
    namespaces: tuple[str, ...] | None
    mode: str  # "allOf" | "anyOf" | "threshold"
    verifiers: tuple[str, ...]
    threshold: int

    def describe(self) -> str:
        names = ", ".join(self.verifiers)
        if self.mode == "allOf":
            return f"all of [{names}]"
        if self.mode == "anyOf":
            return f"any of [{names}]"
        return f"at least {self.threshold} of [{names}]"


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    limits: Limits = field(default_factory=Limits)
    registries: Mapping[str, RegistrySettings] = field(default_factory=dict)
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    docker_configs: tuple[Path, ...] = ()
    verifiers: Mapping[str, VerifierConfig] = field(default_factory=dict)
    policies: tuple[Policy, ...] = ()
    fingerprint: str = ""
    # The directory relative paths are resolved against: the configuration file's (parse_config's `base`).
    # Verifier options are resolved when the verifiers are built (verifiers.base.resolve_option_path).
    base_dir: Path = Path(".")
    # Files besides the configuration itself that loading it reads for registry access (docker configs,
    # password files, registry CA files): a reload is due when one of them changes (a rotated Secret).
    credential_files: tuple[Path, ...] = ()

    def policy_for(self, reference: ImageReference, namespace: str | None) -> Policy | None:
        """The most specific policy whose scope matches the repository (and namespace, when set)."""
        best: tuple[tuple[int, int, int], Policy] | None = None
        for policy in self.policies:
            if policy.namespaces is not None and not any(
                fnmatch.fnmatchcase(namespace or "", pattern) for pattern in policy.namespaces
            ):
                continue
            for scope in policy.scopes:
                score = scope_specificity(scope, reference)
                if score is None:
                    continue
                rank = (1 if policy.namespaces is not None else 0, *score)
                if best is None or rank > best[0]:
                    best = (rank, policy)
        return best[1] if best is not None else None

    def covers(self, reference: ImageReference) -> bool:
        """Whether some policy could apply to this repository, in some namespace (for /v1/mutate, whose
        keys carry no namespace): an image no policy covers is never contacted."""
        scopes = (scope for policy in self.policies for scope in policy.scopes)
        return any(scope_specificity(scope, reference) is not None for scope in scopes)


def normalize_scope(scope: str) -> str:
    """A scope without `/` names a whole registry: `registry.example.com` means `registry.example.com/*`."""
    return scope if ("/" in scope or scope == "*") else f"{scope}/*"


def scope_specificity(scope: str, reference: ImageReference) -> tuple[int, int] | None:
    """None when `scope` does not match; else a rank where higher is more specific.

    An exact repository beats any pattern; among patterns, more literal characters win; `*` is last.
    A scope without `/` names a whole registry (`registry.example.com` means `registry.example.com/*`).
    """
    name = reference.name
    pattern, glob, literal = _compiled_scope(scope)
    if glob is None:
        return (1, literal) if pattern == name else None
    return (0, literal) if glob.match(name) else None


_GLOB_META_RE = re.compile(r"\[[^\]]*\]|[*?]")


@functools.lru_cache(maxsize=4096)
def _compiled_scope(scope: str) -> tuple[str, re.Pattern[str] | None, int]:
    """A scope's normalized pattern, its compiled glob (None when literal) and its literal length: worked
    out once per scope, not at every key (`fnmatchcase` is exactly a match of `fnmatch.translate`)."""
    pattern = normalize_scope(scope)
    if not any(c in pattern for c in "*?["):
        return pattern, None, len(pattern)
    return pattern, re.compile(fnmatch.translate(pattern)), len(_GLOB_META_RE.sub("", pattern))


# --- parsing ----------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?")


class _Reader:
    """Typed access to a YAML mapping that records the path and rejects unknown keys."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a mapping, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def child(self, key: str) -> _Reader:
        value = self.get(key)
        return _Reader({} if value is None else value, self.sub(key))

    def string(self, key: str, default: str | None = None) -> str:
        value = self.get(key)
        if value is None:
            if default is None:
                raise ConfigError(self.sub(key), "required")
            return default
        if not isinstance(value, str) or not value:
            raise ConfigError(self.sub(key), f"expected a non-empty string, got {_kind(value)}")
        return value

    def optional_string(self, key: str) -> str | None:
        return None if self.get(key) is None else self.string(key)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(self.sub(key), f"expected true or false, got {_kind(value)}")
        return value

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(self.sub(key), f"expected an integer, got {_kind(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(self.sub(key), f"must be {bound}, got {value}")
        return value

    def duration(self, key: str, default: float, minimum: float = 0.0, maximum: float | None = None) -> float:
        value = self.get(key)
        if value is None:
            return default
        seconds = parse_duration(value, self.sub(key))
        if seconds < minimum or (maximum is not None and seconds > maximum):
            bound = f"between {minimum:g}s and {maximum:g}s" if maximum is not None else f">= {minimum:g}s"
            raise ConfigError(self.sub(key), f"must be {bound}, got {seconds:g}s")
        return seconds

    def path_value(self, key: str, base: Path) -> Path | None:
        value = self.optional_string(key)
        return None if value is None else (base / Path(value).expanduser())

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise ConfigError(self.sub(str(unknown[0])), f"unknown field (known here: {known})")


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def parse_duration(value: object, path: str) -> float:
    """Seconds from a number (seconds) or a string like "2.5s", "900ms", "5m", "1h", "30d"
    (`verifiers.options.parse_duration`, its errors as `ConfigError` at `path`)."""
    try:
        return options.parse_duration(value, path)
    except OptionsError as e:
        raise ConfigError(e.path, e.message) from e


def _string_list(value: object, path: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list of strings, got {_kind(value)}")
    if not value and not allow_empty:
        raise ConfigError(path, "must not be empty")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{path}[{i}]", f"expected a non-empty string, got {_kind(item)}")
        out.append(item)
    return tuple(out)


def _parse_server(r: _Reader, base: Path) -> ServerConfig:
    defaults = ServerConfig()
    tls: TLSConfig | None = None
    if r.get("tls") is not None:
        t = r.child("tls")
        cert, key = t.path_value("certFile", base), t.path_value("keyFile", base)
        if cert is None:
            raise ConfigError(t.sub("certFile"), "required when tls is set")
        if key is None:
            raise ConfigError(t.sub("keyFile"), "required when tls is set")
        tls = TLSConfig(
            cert_file=cert,
            key_file=key,
            client_ca_file=t.path_value("clientCAFile", base),
            reload_interval=t.duration("reloadInterval", 2.0, minimum=0.1, maximum=3600),
        )
        t.finish()
    limits = r.child("limits")
    deadlines = r.child("deadlines")
    timeouts = r.child("timeouts")
    server = ServerConfig(
        address=r.string("address", defaults.address),
        port=r.integer("port", defaults.port, minimum=0, maximum=65535),
        tls=tls,
        health_port=(
            r.integer("healthPort", 0, minimum=1, maximum=65535) if r.get("healthPort") is not None else None
        ),
        max_keys=limits.integer("maxKeys", defaults.max_keys, minimum=1, maximum=100_000),
        max_key_bytes=limits.integer("maxKeyBytes", defaults.max_key_bytes, minimum=64, maximum=4096),
        max_body_bytes=limits.integer(
            "maxBodyBytes", defaults.max_body_bytes, minimum=1024, maximum=64 << 20
        ),
        verify_deadline=deadlines.duration("verify", defaults.verify_deadline, minimum=0.05, maximum=29),
        mutate_deadline=deadlines.duration("mutate", defaults.mutate_deadline, minimum=0.05, maximum=29),
        background_timeout=deadlines.duration(
            "background", defaults.background_timeout, minimum=0.1, maximum=600
        ),
        max_concurrent_verifications=limits.integer(
            "maxConcurrentVerifications", defaults.max_concurrent_verifications, minimum=1, maximum=100_000
        ),
        max_in_flight_verifications=limits.integer(
            "maxInFlightVerifications", defaults.max_in_flight_verifications, minimum=1, maximum=1_000_000
        ),
        config_reload_interval=r.duration(
            "configReloadInterval", defaults.config_reload_interval, minimum=0.1, maximum=3600
        ),
        max_connections=limits.integer(
            "maxConnections", defaults.max_connections, minimum=1, maximum=100_000
        ),
        tls_handshake_timeout=timeouts.duration(
            "tlsHandshake", defaults.tls_handshake_timeout, minimum=0.1, maximum=60
        ),
        header_timeout=timeouts.duration("requestHeaders", defaults.header_timeout, minimum=0.1, maximum=300),
        body_timeout=timeouts.duration("requestBody", defaults.body_timeout, minimum=0.1, maximum=300),
        idle_timeout=timeouts.duration("idle", defaults.idle_timeout, minimum=0.1, maximum=3600),
        in_flight_bytes=limits.integer(
            "inFlightBytes", defaults.in_flight_bytes, minimum=1 << 20, maximum=64 << 30
        ),
        verification_bytes=limits.integer(
            "verificationBytes", defaults.verification_bytes, minimum=1 << 20, maximum=64 << 30
        ),
    )
    if server.verification_bytes > server.in_flight_bytes:
        raise ConfigError(
            limits.sub("verificationBytes"),
            f"must not exceed inFlightBytes ({server.in_flight_bytes}), got {server.verification_bytes}",
        )
    limits.finish()
    deadlines.finish()
    timeouts.finish()
    r.finish()
    return server


def _parse_registries(
    data: object, path: str, base: Path, read_files: list[Path] | None = None
) -> dict[str, RegistrySettings]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping of registry host to settings, got {_kind(data)}")
    out: dict[str, RegistrySettings] = {}
    for host, value in data.items():
        r = _Reader(value if value is not None else {}, f"{path}[{host!r}]")
        if not isinstance(host, str) or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", host):
            raise ConfigError(r.path, "registry keys are host names with an optional port")
        username = r.optional_string("username")
        password = r.optional_string("password")
        password_file = r.path_value("passwordFile", base)
        if password is not None and password_file is not None:
            raise ConfigError(r.sub("passwordFile"), "set either password or passwordFile, not both")
        if password_file is not None:
            if read_files is not None:
                read_files.append(password_file)
            try:
                password = password_file.read_text("utf-8").strip()
            except OSError as e:
                raise ConfigError(r.sub("passwordFile"), f"cannot read: {e}") from e
        if (username is None) != (password is None):
            raise ConfigError(r.path, "username and password go together")
        min_tls = r.string("minTLS", "1.2")
        if min_tls not in ("1.2", "1.3"):
            raise ConfigError(r.sub("minTLS"), f"must be '1.2' or '1.3', got {min_tls!r}")
        ca_file = r.path_value("caFile", base)
        if ca_file is not None and read_files is not None:
            read_files.append(ca_file)
        insecure = r.boolean("insecure", False)
        if insecure and ca_file is not None:
            raise ConfigError(r.sub("caFile"), "has no effect with insecure: true (plain HTTP)")
        out[host] = RegistrySettings(
            insecure=insecure,
            ca_file=ca_file,
            min_tls=min_tls,
            credentials=Credentials(username, password) if username and password is not None else None,
        )
        r.finish()
    return out


def _parse_verifiers(data: object, path: str) -> dict[str, VerifierConfig]:
    if not isinstance(data, dict) or not data:
        raise ConfigError(path, "expected a non-empty mapping of verifier name to {type, options}")
    out: dict[str, VerifierConfig] = {}
    for name, value in data.items():
        r = _Reader(value, f"{path}.{name}")
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ConfigError(r.path, "verifier names are lowercase letters, digits, '.', '_' and '-'")
        options = r.get("options")
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ConfigError(r.sub("options"), f"expected a mapping, got {_kind(options)}")
        out[name] = VerifierConfig(name=name, type=r.string("type"), options=options)
        r.finish()
    return out


def _parse_policies(data: object, path: str, verifiers: Mapping[str, VerifierConfig]) -> tuple[Policy, ...]:
    if not isinstance(data, list) or not data:
        raise ConfigError(path, "expected a non-empty list of policies")
    policies: list[Policy] = []
    seen_names: set[str] = set()
    seen_scopes: dict[tuple[str, frozenset[str] | None], str] = {}
    for i, value in enumerate(data):
        r = _Reader(value, f"{path}[{i}]")
        if r.get("scope") is not None and r.get("scopes") is not None:
            raise ConfigError(r.sub("scopes"), "set either scope or scopes, not both")
        scopes = _string_list(
            r.get("scopes") if r.get("scopes") is not None else r.get("scope"), r.sub("scopes")
        )
        name = r.string("name", scopes[0])
        if name in seen_names:
            raise ConfigError(r.sub("name"), f"duplicate policy name {name!r}")
        seen_names.add(name)
        namespaces = (
            _string_list(r.get("namespaces"), r.sub("namespaces"))
            if r.get("namespaces") is not None
            else None
        )
        modes = [m for m in ("allOf", "anyOf", "threshold") if r.get(m) is not None]
        if len(modes) != 1:
            raise ConfigError(r.path, "set exactly one of allOf, anyOf or threshold")
        mode = modes[0]
        if mode == "threshold":
            t = r.child("threshold")
            names = _string_list(t.get("of"), t.sub("of"))
            count = t.integer("count", 0, minimum=1, maximum=len(names))
            if t.get("count") is None:
                raise ConfigError(t.sub("count"), "required")
            t.finish()
            list_path = t.sub("of")
        else:
            # An empty list would verify nothing and admit everything: refused on purpose.
            names = _string_list(r.get(mode), r.sub(mode))
            count = len(names) if mode == "allOf" else 1
            list_path = r.sub(mode)
        for j, verifier in enumerate(names):
            if verifier not in verifiers:
                known = ", ".join(sorted(verifiers)) or "none"
                raise ConfigError(f"{list_path}[{j}]", f"unknown verifier {verifier!r} (defined: {known})")
        if len(set(names)) != len(names):
            raise ConfigError(list_path, "lists a verifier twice")
        for k, scope in enumerate(scopes):
            if not re.fullmatch(r"[A-Za-z0-9.\-_/:\[\]*?]+", scope):
                raise ConfigError(f"{r.sub('scopes')}[{k}]", f"invalid scope {scope!r}")
            if ":" in scope.rpartition("/")[2] and "/" in scope:
                raise ConfigError(
                    f"{r.sub('scopes')}[{k}]",
                    f"scope {scope!r} names a tag; scopes match repositories (registry/repository)",
                )
            # Equivalent spellings claim the same images: `reg.io` is `reg.io/*`; namespace order is moot.
            key = (normalize_scope(scope), frozenset(namespaces) if namespaces is not None else None)
            if key in seen_scopes:
                raise ConfigError(
                    f"{r.sub('scopes')}[{k}]",
                    f"scope {scope!r} is already claimed by policy {seen_scopes[key]!r}",
                )
            seen_scopes[key] = name
        policies.append(
            Policy(
                name=name, scopes=scopes, namespaces=namespaces, mode=mode, verifiers=names, threshold=count
            )
        )
        r.finish()
    return tuple(policies)


def _parse_egress(r: _Reader) -> EgressPolicy:
    hosts = _string_list(r.get("hosts"), r.sub("hosts")) if r.get("hosts") is not None else ("*",)
    for i, host in enumerate(hosts):
        try:
            parse_host_pattern(host)
        except ValueError as e:
            raise ConfigError(f"{r.sub('hosts')}[{i}]", str(e)) from e
    networks = {}
    for key in ("allowAddresses", "denyAddresses"):
        value = r.get(key)
        values = _string_list([] if value is None else value, r.sub(key), allow_empty=True)
        parsed = []
        for i, value in enumerate(values):
            try:
                parsed.append(parse_network(value))
            except ValueError as e:
                raise ConfigError(f"{r.sub(key)}[{i}]", f"not an address or CIDR: {e}") from e
        networks[key] = tuple(parsed)
    r.finish()
    return EgressPolicy(
        hosts=hosts, allow_addresses=networks["allowAddresses"], deny_addresses=networks["denyAddresses"]
    )


def _parse_limits(r: _Reader) -> Limits:
    d = Limits()
    limits = Limits(
        max_manifest_bytes=r.integer(
            "maxManifestBytes", d.max_manifest_bytes, minimum=1024, maximum=64 << 20
        ),
        max_blob_bytes=r.integer("maxBlobBytes", d.max_blob_bytes, minimum=1024, maximum=1 << 30),
        max_referrers=r.integer("maxReferrers", d.max_referrers, minimum=1, maximum=100_000),
        max_referrer_pages=r.integer("maxReferrerPages", d.max_referrer_pages, minimum=1, maximum=1000),
    )
    r.finish()
    return limits


def _fingerprint(doc: Mapping[str, Any]) -> str:
    """Hash of everything that can change a verdict; secrets are left out (the hash is exposed)."""

    registries = doc.get("registries")
    if isinstance(registries, dict):
        registries = {
            str(host): (
                {str(k): ("<secret>" if k in ("password", "passwordFile") else v) for k, v in value.items()}
                if isinstance(value, dict)
                else value
            )
            for host, value in registries.items()
        }
    relevant = {k: doc.get(k) for k in ("auth", "limits", "egress", "verifiers", "policies")}
    relevant["registries"] = registries
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def parse_config(data: object, base: Path = Path(".")) -> Config:
    """Validate a parsed YAML document; relative file paths are resolved against `base`."""
    r = _Reader(data, "")
    api_version = r.string("apiVersion", API_VERSION)
    if api_version != API_VERSION:
        raise ConfigError("apiVersion", f"unsupported {api_version!r}; this version reads {API_VERSION!r}")
    server = _parse_server(r.child("server"), base)
    c = r.child("cache")
    d = CacheConfig()
    cache = CacheConfig(
        verdict_ttl=c.duration("verdictTTL", d.verdict_ttl, minimum=0, maximum=86400),
        tag_ttl=c.duration("tagTTL", d.tag_ttl, minimum=0, maximum=86400),
        max_verdicts=c.integer("maxVerdicts", d.max_verdicts, minimum=0, maximum=10_000_000),
        content_bytes=c.integer("contentBytes", d.content_bytes, minimum=0, maximum=16 << 30),
        verdict_bytes=c.integer("verdictBytes", d.verdict_bytes, minimum=0, maximum=16 << 30),
        tag_bytes=c.integer("tagBytes", d.tag_bytes, minimum=0, maximum=16 << 30),
    )
    c.finish()
    limits = _parse_limits(r.child("limits"))
    credential_files: list[Path] = []
    registries = _parse_registries(r.get("registries"), "registries", base, credential_files)
    # The registries the operator names are exempt from the built-in address refusals: worked out once
    # here, for the engine's checks before contacting anything and for the client's when connecting.
    egress = _parse_egress(r.child("egress")).with_trusted((h, s.insecure) for h, s in registries.items())
    a = r.child("auth")
    docker_configs = tuple(
        base / Path(p).expanduser()
        for p in _string_list(a.get("dockerConfigs") or [], a.sub("dockerConfigs"), allow_empty=True)
    )
    a.finish()
    verifiers = _parse_verifiers(r.get("verifiers"), "verifiers")
    policies = _parse_policies(r.get("policies"), "policies", verifiers)
    r.finish()
    assert isinstance(data, dict)
    return Config(
        server=server,
        cache=cache,
        limits=limits,
        registries=registries,
        egress=egress,
        docker_configs=docker_configs,
        verifiers=verifiers,
        policies=policies,
        fingerprint=_fingerprint(data),
        base_dir=base,
        credential_files=(*docker_configs, *credential_files),
    )


def load_config(path: Path) -> Config:
    """Read and validate a YAML configuration file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError("", f"cannot read {path}: {e}") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError("", f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError("", f"{path} is not valid YAML: {e}") from e
    return parse_config(data, base=path.parent)
