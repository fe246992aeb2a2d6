"""Configuration: YAML, validated at load by pydantic models (`ConfigDocument`), every error reported at
once with the path of its field (`ConfigError.errors`), then held in the dataclasses below.

    apiVersion: countersign.dev/v1alpha1
    server: {port: 8443, tls: {certFile, keyFile, clientCAFile}, deadlines: {verify: 2.5, mutate: 0.9}}
    registries: {"127.0.0.1:5000": {insecure: true}}
    verifiers: {pinned: {type: digest-pin}, sbom: {type: sbom, options: {...}}}
    policies:
      - name: default
        scopes: ["*"]
        allOf: [pinned, sbom]

See docs/configuration.md for every field. Which policy applies to an image is `provider.policy`'s job;
the chart's JSON Schema comes from the same models (`provider.schema`). The fingerprint of everything that
can change a verdict is part of every verdict cache key, so a new configuration never serves a verdict
made under the old one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

import yaml
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from provider.policy import normalize_scope
from provider.registry.auth import Credentials
from provider.registry.egress import EgressPolicy, parse_host_pattern, parse_network
from provider.registry.settings import Limits, RegistrySettings
from verifiers import options
from verifiers.errors import FieldError, OptionsError
from verifiers.options import (
    Duration,
    IntRange,
    NonEmptyStr,
    OneOf,
    OptionsModel,
    Shaped,
    StringList,
    check,
    field_errors,
)
from verifiers.reference import is_object_name

__all__ = [
    "API_VERSION",
    "CacheConfig",
    "Config",
    "ConfigDocument",
    "ConfigError",
    "KubernetesConfig",
    "Policy",
    "ServerConfig",
    "TLSConfig",
    "VerifierConfig",
    "load_config",
    "parse_config",
    "read_config_yaml",
]

API_VERSION = "countersign.dev/v1alpha1"
MAX_CONFIG_BYTES = 4 * 1024 * 1024


class ConfigError(FieldError):
    """Invalid configuration: `errors` lists every problem as `(path, message)`, the path in the file's
    notation (`policies[1].allOf[0]`, `registries['reg.example.com'].minTLS`); `path` and `message` are the
    first one's."""


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
    # Before listening, verify a sample image signed at start-up end to end (provider/warmup).
    warm_up: bool = True
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
class KubernetesConfig:
    """The `kubernetes` section: policies and verifiers from custom resources (provider.kube)."""

    enabled: bool = False
    namespace: str = ""  # the provider's namespace; "" = POD_NAMESPACE, else the service account mount's
    kubeconfig: Path | None = None  # out of cluster; None = the in-cluster service account
    resync: float = 600.0
    pull_secrets: tuple[str, ...] = ()  # kubernetes.io/dockerconfigjson Secrets in `namespace`
    workload_pull_secrets: bool = False
    allow_exec_verifiers: bool = False


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    name: str
    type: str
    options: Mapping[str, Any]
    # The directory its relative option paths resolve against (None: the configuration's `base_dir`), and
    # whether they must stay inside it (a verifier defined by a Kubernetes resource: its files only).
    base_dir: Path | None = None
    confined: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """Which verifiers an image in `scopes` (and `namespaces`, when set) must pass: k of `verifiers`."""

    name: str
    scopes: tuple[str, ...]
    namespaces: tuple[str, ...] | None
    mode: str  # "allOf" | "anyOf" | "threshold"
    verifiers: tuple[str, ...]
    threshold: int
    # Set (the problem, in resource terms) for a Kubernetes policy resource that has no valid generation to
    # serve: it still claims its scopes, and every image it is the policy for is denied
    # `policy_unavailable` (never left to a less specific, maybe weaker policy). `verifiers` is then empty.
    unavailable: str | None = None

    def describe(self) -> str:
        if self.unavailable is not None:
            return "unavailable: denies its images"
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
    # Namespaced policies (Kubernetes ImagePolicy resources) by namespace: an image in that namespace must
    # also satisfy the most specific one whose scope matches it, on top of its cluster-wide policy. They
    # only add requirements: an image no cluster-wide policy covers stays denied.
    namespace_policies: Mapping[str, tuple[Policy, ...]] = field(default_factory=dict)
    fingerprint: str = ""
    # The directory relative paths are resolved against: the configuration file's (parse_config's `base`).
    # Verifier options are resolved when the verifiers are built (verifiers.base.resolve_option_path).
    base_dir: Path = Path(".")
    # Files besides the configuration itself that loading it reads for registry access (docker configs,
    # password files, registry CA files): a reload is due when one of them changes (a rotated Secret).
    credential_files: tuple[Path, ...] = ()
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)


# --- the document's schema ----------------------------------------------------------------------------
# Pydantic models of the YAML document, field for field (camelCase names by alias). They check shape and
# every rule the document alone decides; `parse_config` turns them into the dataclasses above. Every
# problem is reported at once (`ConfigError.errors`). `provider.schema` writes their JSON Schema into the
# Helm chart's values.schema.json.

_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?")
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_HOST_RE = re.compile(r"[A-Za-z0-9.\-\[\]:]+")
_SCOPE_RE = re.compile(r"[A-Za-z0-9.\-_/:\[\]*?]+")
_SERVER, _CACHE, _LIMITS = ServerConfig(), CacheConfig(), Limits()

Seconds = float
Path_ = Annotated[str, StringConstraints(strict=True, min_length=1)]


class _Model(OptionsModel):
    """A section of the configuration: camelCase field names, strict types, unknown fields refused, and a
    field set to null is the same as a field left out."""

    model_config = ConfigDict(alias_generator=to_camel)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = {f.alias or n for n, f in cls.model_fields.items()}
        return {k: v for k, v in data.items() if not (v is None and k in known)}


def _matching(pattern: re.Pattern[str], message: str) -> AfterValidator:
    def validate(value: str) -> str:
        if not pattern.fullmatch(value):
            raise PydanticCustomError("countersign", "{message}", {"message": message})
        return value

    return AfterValidator(validate)


def _api_version(value: str) -> str:
    if value != API_VERSION:
        raise PydanticCustomError(
            "countersign",
            "{message}",
            {"message": f"unsupported {value!r}; this version reads {API_VERSION!r}"},
        )
    return value


class TLSSection(_Model):
    """server.tls: the serving certificate and key (PEM files), re-read when they change."""

    required_messages: ClassVar[Mapping[str, str]] = {
        "certFile": "required when tls is set",
        "keyFile": "required when tls is set",
    }
    cert_file: Path_
    key_file: Path_
    client_ca_file: Path_ | None = Field(None, alias="clientCAFile")
    reload_interval: Annotated[Seconds, Duration(0.1, 3600)] = 2.0


class ServerLimitsSection(_Model):
    max_keys: Annotated[int, IntRange(1, 100_000)] = _SERVER.max_keys
    max_key_bytes: Annotated[int, IntRange(64, 4096)] = _SERVER.max_key_bytes
    max_body_bytes: Annotated[int, IntRange(1024, 64 << 20)] = _SERVER.max_body_bytes
    max_concurrent_verifications: Annotated[int, IntRange(1, 100_000)] = _SERVER.max_concurrent_verifications
    max_in_flight_verifications: Annotated[int, IntRange(1, 1_000_000)] = _SERVER.max_in_flight_verifications
    max_connections: Annotated[int, IntRange(1, 100_000)] = _SERVER.max_connections
    in_flight_bytes: Annotated[int, IntRange(1 << 20, 64 << 30)] = _SERVER.in_flight_bytes
    verification_bytes: Annotated[int, IntRange(1 << 20, 64 << 30)] = _SERVER.verification_bytes

    @model_validator(mode="after")
    def _within_in_flight(self) -> Self:
        if self.verification_bytes > self.in_flight_bytes:
            message = f"must not exceed inFlightBytes ({self.in_flight_bytes}), got {self.verification_bytes}"
            check("ServerLimitsSection", [("verificationBytes", message)])
        return self


class DeadlinesSection(_Model):
    verify: Annotated[Seconds, Duration(0.05, 29)] = _SERVER.verify_deadline
    mutate: Annotated[Seconds, Duration(0.05, 29)] = _SERVER.mutate_deadline
    background: Annotated[Seconds, Duration(0.1, 600)] = _SERVER.background_timeout


class TimeoutsSection(_Model):
    tls_handshake: Annotated[Seconds, Duration(0.1, 60)] = _SERVER.tls_handshake_timeout
    request_headers: Annotated[Seconds, Duration(0.1, 300)] = _SERVER.header_timeout
    request_body: Annotated[Seconds, Duration(0.1, 300)] = _SERVER.body_timeout
    idle: Annotated[Seconds, Duration(0.1, 3600)] = _SERVER.idle_timeout


class ServerSection(_Model):
    address: NonEmptyStr = _SERVER.address
    port: Annotated[int, IntRange(0, 65535)] = _SERVER.port
    tls: TLSSection | None = None
    health_port: Annotated[int, IntRange(1, 65535)] | None = None
    warm_up: bool = _SERVER.warm_up
    limits: ServerLimitsSection = Field(default_factory=ServerLimitsSection)
    deadlines: DeadlinesSection = Field(default_factory=DeadlinesSection)
    timeouts: TimeoutsSection = Field(default_factory=TimeoutsSection)
    config_reload_interval: Annotated[Seconds, Duration(0.1, 3600)] = _SERVER.config_reload_interval


class CacheSection(_Model):
    verdict_ttl: Annotated[Seconds, Duration(0, 86400)] = Field(_CACHE.verdict_ttl, alias="verdictTTL")
    tag_ttl: Annotated[Seconds, Duration(0, 86400)] = Field(_CACHE.tag_ttl, alias="tagTTL")
    max_verdicts: Annotated[int, IntRange(0, 10_000_000)] = _CACHE.max_verdicts
    content_bytes: Annotated[int, IntRange(0, 16 << 30)] = _CACHE.content_bytes
    verdict_bytes: Annotated[int, IntRange(0, 16 << 30)] = _CACHE.verdict_bytes
    tag_bytes: Annotated[int, IntRange(0, 16 << 30)] = _CACHE.tag_bytes


class LimitsSection(_Model):
    max_manifest_bytes: Annotated[int, IntRange(1024, 64 << 20)] = _LIMITS.max_manifest_bytes
    max_blob_bytes: Annotated[int, IntRange(1024, 1 << 30)] = _LIMITS.max_blob_bytes
    max_referrers: Annotated[int, IntRange(1, 100_000)] = _LIMITS.max_referrers
    max_referrer_pages: Annotated[int, IntRange(1, 1000)] = _LIMITS.max_referrer_pages
    # At least 16 per registry: up to MAX_WAITING_READS (8) reads may wait for memory holding theirs
    # (provider/budget.py), and the oldest holder must still find one to finish with.
    max_connections: Annotated[int, IntRange(16, 4096)] = _LIMITS.max_connections
    max_connections_per_registry: Annotated[int, IntRange(16, 4096)] = _LIMITS.max_connections_per_registry
    idle_connection_timeout: Annotated[Seconds, Duration(1, 600)] = _LIMITS.idle_connection_timeout

    @model_validator(mode="after")
    def _per_registry_within_total(self) -> Self:
        if self.max_connections_per_registry > self.max_connections:
            total, per_registry = self.max_connections, self.max_connections_per_registry
            message = f"must not exceed maxConnections ({total}), got {per_registry}"
            check("LimitsSection", [("maxConnectionsPerRegistry", message)])
        return self


class RegistrySection(_Model):
    """registries[host]: how to reach one registry. Files are read when the configuration is loaded."""

    insecure: StrictBool = False
    ca_file: Path_ | None = None
    min_tls: Annotated[str, OneOf("1.2", "1.3")] = Field("1.2", alias="minTLS")
    username: NonEmptyStr | None = None
    password: NonEmptyStr | None = None
    password_file: Path_ | None = None
    _password: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _credentials(self, info: ValidationInfo) -> Self:
        base, read_files = _context(info)
        problems: list[tuple[str | tuple[str | int, ...], str]] = []
        password = self.password
        paired = True
        if self.password is not None and self.password_file is not None:
            problems.append(("passwordFile", "set either password or passwordFile, not both"))
            paired = False
        elif self.password_file is not None:
            file = base / Path(self.password_file).expanduser()
            read_files.append(file)
            try:
                password = file.read_text("utf-8").strip()
            except OSError as e:
                problems.append(("passwordFile", f"cannot read: {e}"))
                paired = False
        if paired and (self.username is None) != (password is None):
            problems.append(((), "username and password go together"))
        if self.ca_file is not None:
            read_files.append(base / Path(self.ca_file).expanduser())
            if self.insecure:
                problems.append(("caFile", "has no effect with insecure: true (plain HTTP)"))
        check("RegistrySection", problems)
        self._password = password
        return self


class EgressSection(_Model):
    hosts: Annotated[list[str], StringList()] = Field(default_factory=lambda: ["*"])
    allow_addresses: Annotated[list[str], StringList(allow_empty=True)] = Field(default_factory=list)
    deny_addresses: Annotated[list[str], StringList(allow_empty=True)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _parse(self) -> Self:
        problems: list[tuple[str | tuple[str | int, ...], str]] = []
        for i, host in enumerate(self.hosts):
            try:
                parse_host_pattern(host)
            except ValueError as e:
                problems.append((("hosts", i), str(e)))
        for key, values in (("allowAddresses", self.allow_addresses), ("denyAddresses", self.deny_addresses)):
            for i, value in enumerate(values):
                try:
                    parse_network(value)
                except ValueError as e:
                    problems.append(((key, i), f"not an address or CIDR: {e}"))
        check("EgressSection", problems)
        return self

    def policy(self) -> EgressPolicy:
        return EgressPolicy(
            hosts=tuple(self.hosts),
            allow_addresses=tuple(parse_network(v) for v in self.allow_addresses),
            deny_addresses=tuple(parse_network(v) for v in self.deny_addresses),
        )


class AuthSection(_Model):
    docker_configs: Annotated[list[str], StringList(allow_empty=True)] = Field(default_factory=list)


def _namespace_name(value: str) -> str:
    if value and not _DNS_LABEL_RE.fullmatch(value):
        message = "a namespace is a DNS label (lowercase letters, digits and '-'), or empty for the pod's"
        raise PydanticCustomError("countersign", "{message}", {"message": message})
    return value


def _secret_name(value: str) -> str:
    if not is_object_name(value):
        message = "Secret names are DNS subdomains (lowercase letters, digits, '-', '.')"
        raise PydanticCustomError("countersign", "{message}", {"message": message})
    return value


SecretName = Annotated[
    str,
    AfterValidator(_secret_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 253}),
]


class KubernetesSection(_Model):
    """kubernetes: policies and verifiers from custom resources, trust material and registry credentials
    from Secrets and ConfigMaps of the provider's namespace (docs/operators.md)."""

    enabled: StrictBool = False
    namespace: Annotated[
        str,
        StringConstraints(strict=True),
        AfterValidator(_namespace_name),
        WithJsonSchema({"type": "string", "maxLength": 63}),
    ] = ""
    kubeconfig: Annotated[str, StringConstraints(strict=True)] = ""
    resync: Annotated[Seconds, Duration(10, 86400)] = 600.0
    pull_secrets: Annotated[list[SecretName], Shaped(list, "a list of Secret names")] = Field(
        default_factory=list
    )
    workload_pull_secrets: StrictBool = False
    allow_exec_verifiers: StrictBool = False


class VerifierSection(_Model):
    """verifiers[name]: a verifier type and its options, which the verifier itself validates when built."""

    type: NonEmptyStr
    options: dict[str, Any] = Field(default_factory=dict)


class ThresholdSection(_Model):
    required_messages: ClassVar[Mapping[str, str]] = {"of": "expected a list of strings, got nothing"}
    # The upper bound is the length of `of`: checked by the policy.
    count: Annotated[int, WithJsonSchema({"type": "integer", "minimum": 1})]
    of: Annotated[list[str], StringList()]


class PolicySection(_Model):
    """policies[i]: which verifiers an image in `scopes` (and `namespaces`) must pass."""

    name: NonEmptyStr | None = None
    scope: Annotated[list[str], StringList()] | None = None
    scopes: Annotated[list[str], StringList()] | None = None
    namespaces: Annotated[list[str], StringList()] | None = None
    all_of: Annotated[list[str], StringList()] | None = None
    any_of: Annotated[list[str], StringList()] | None = None
    threshold: ThresholdSection | None = None

    def scope_list(self) -> list[str]:
        return self.scopes or self.scope or []

    def mode(self) -> tuple[str, list[str], tuple[str | int, ...]]:
        """The mode, its verifier names and the location of that list."""
        if self.threshold is not None:
            return "threshold", self.threshold.of, ("threshold", "of")
        if self.any_of is not None:
            return "anyOf", self.any_of, ("anyOf",)
        return "allOf", self.all_of or [], ("allOf",)

    @model_validator(mode="after")
    def _rules(self) -> Self:
        problems: list[tuple[str | tuple[str | int, ...], str]] = []
        if self.scope is not None and self.scopes is not None:
            problems.append(("scopes", "set either scope or scopes, not both"))
        elif self.scope is None and self.scopes is None:
            problems.append(("scopes", "expected a list of strings, got nothing"))
        for k, scope in enumerate(self.scope_list()):
            if not _SCOPE_RE.fullmatch(scope):
                problems.append((("scopes", k), f"invalid scope {scope!r}"))
            elif ":" in scope.rpartition("/")[2] and "/" in scope:
                problems.append(
                    (
                        ("scopes", k),
                        f"scope {scope!r} names a tag; scopes match repositories (registry/repository)",
                    )
                )
        modes = [
            m for m, v in (("allOf", self.all_of), ("anyOf", self.any_of), ("threshold", self.threshold)) if v
        ]
        if len(modes) != 1:
            problems.append(((), "set exactly one of allOf, anyOf or threshold"))
        else:
            _, names, where = self.mode()
            if self.threshold is not None and not 1 <= self.threshold.count <= len(names):
                count = self.threshold.count
                problems.append((("threshold", "count"), f"must be between 1 and {len(names)}, got {count}"))
            if len(set(names)) != len(names):
                problems.append((where, "lists a verifier twice"))
        check("PolicySection", problems)
        return self


VerifierName = Annotated[
    str,
    _matching(_NAME_RE, "verifier names are lowercase letters, digits, '.', '_' and '-'"),
    WithJsonSchema({"type": "string", "pattern": f"^{_NAME_RE.pattern}$"}),
]
RegistryHost = Annotated[
    str,
    _matching(_HOST_RE, "registry keys are host names with an optional port"),
    WithJsonSchema({"type": "string", "pattern": f"^{_HOST_RE.pattern}$"}),
]


class ConfigDocument(_Model):
    """The configuration file (docs/configuration.md)."""

    required_messages: ClassVar[Mapping[str, str]] = {
        "verifiers": "expected a non-empty mapping of verifier name to {type, options}",
        "policies": "expected a non-empty list of policies",
    }
    bracket_keys: ClassVar[frozenset[str]] = frozenset({"registries"})

    api_version: Annotated[str, AfterValidator(_api_version), WithJsonSchema({"enum": [API_VERSION]})] = (
        API_VERSION
    )
    server: ServerSection = Field(default_factory=ServerSection)
    cache: CacheSection = Field(default_factory=lambda: CacheSection.model_validate({}))
    limits: LimitsSection = Field(default_factory=LimitsSection)
    registries: Annotated[
        dict[RegistryHost, RegistrySection | None], Shaped(dict, "a mapping of registry host to settings")
    ] = Field(default_factory=dict)
    egress: EgressSection = Field(default_factory=EgressSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    kubernetes: KubernetesSection = Field(default_factory=KubernetesSection)
    verifiers: Annotated[
        dict[VerifierName, VerifierSection],
        Shaped(dict, "a non-empty mapping of verifier name to {type, options}", non_empty=True),
    ]
    policies: Annotated[list[PolicySection], Shaped(list, "a non-empty list of policies", non_empty=True)]

    @field_validator("policies", mode="after")
    @classmethod
    def _across_policies(cls, policies: list[PolicySection], info: ValidationInfo) -> list[PolicySection]:
        """Names and scopes claimed once; every verifier a policy names is defined (checked only when the
        verifiers section is itself valid: against a broken one, every name would look unknown)."""
        verifiers: Mapping[str, object] | None = info.data.get("verifiers")
        problems: list[tuple[str | tuple[str | int, ...], str]] = []
        seen_names: set[str] = set()
        seen_scopes: dict[tuple[str, frozenset[str] | None], str] = {}
        for i, policy in enumerate(policies):
            scopes = policy.scope_list()
            name = policy.name or scopes[0]
            # A policy that repeats a name is reported once, at its name (two policies `x.io` named after
            # their scope also claim it twice).
            repeated = name in seen_names
            if repeated:
                problems.append(((i, "name"), f"duplicate policy name {name!r}"))
            seen_names.add(name)
            _, names, where = policy.mode()
            for j, verifier in enumerate(names):
                if verifiers is not None and verifier not in verifiers:
                    known = ", ".join(sorted(verifiers)) or "none"
                    problems.append(((i, *where, j), f"unknown verifier {verifier!r} (defined: {known})"))
            namespaces = frozenset(policy.namespaces) if policy.namespaces is not None else None
            for k, scope in enumerate(scopes):
                # Equivalent spellings claim the same images: `reg.io` is `reg.io/*`; namespace order is moot.
                key = (normalize_scope(scope), namespaces)
                if repeated:
                    continue
                if key in seen_scopes:
                    message = f"scope {scope!r} is already claimed by policy {seen_scopes[key]!r}"
                    problems.append(((i, "scopes", k), message))
                else:
                    seen_scopes[key] = name
        check("policies", problems)
        return policies


class _ResourceBackedDocument(ConfigDocument):
    """The configuration when Kubernetes resources supply verifiers and policies (`parse_config`'s
    `require_policies=False`, or `kubernetes.enabled: true` in the file): both may be missing or empty;
    every other rule is ConfigDocument's."""

    verifiers: Annotated[
        dict[VerifierName, VerifierSection], Shaped(dict, "a mapping of verifier name to {type, options}")
    ] = Field(default_factory=dict)
    policies: Annotated[list[PolicySection], Shaped(list, "a list of policies")] = Field(default_factory=list)


def _kubernetes_enabled(data: object) -> bool:
    section = data.get("kubernetes") if isinstance(data, dict) else None
    return isinstance(section, dict) and section.get("enabled") is True


def _context(info: ValidationInfo) -> tuple[Path, list[Path]]:
    context = info.context if isinstance(info.context, dict) else {}
    return context.get("base", Path(".")), context.setdefault("read_files", [])


def parse_duration(value: object, path: str) -> float:
    """Seconds from a number (seconds) or a string like "2.5s", "900ms", "5m", "1h", "30d"
    (`verifiers.options.parse_duration`, its errors as `ConfigError` at `path`)."""
    try:
        return options.parse_duration(value, path)
    except OptionsError as e:
        raise ConfigError(e.path, e.message) from e


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
    kubernetes = doc.get("kubernetes")
    if isinstance(kubernetes, dict):  # whose credentials read registries (the file's own, workloads')
        relevant["kubernetes"] = {k: kubernetes.get(k) for k in ("pullSecrets", "workloadPullSecrets")}
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def parse_config(data: object, base: Path = Path("."), *, require_policies: bool = True) -> Config:
    """Validate a parsed YAML document; relative file paths are resolved against `base`. A `ConfigError`
    lists every problem found. `require_policies=False` (verifiers and policies come from Kubernetes
    resources too): `verifiers` and `policies` may be missing or empty; no policy denies every image."""
    context: dict[str, Any] = {"base": base, "read_files": []}
    resources_too = not require_policies or _kubernetes_enabled(data)
    model = _ResourceBackedDocument if resources_too else ConfigDocument
    try:
        doc = model.model_validate(data, context=context)
    except ValidationError as e:
        raise ConfigError.of(field_errors(e, model)) from None
    assert isinstance(data, dict)

    def path(value: str) -> Path:
        return base / Path(value).expanduser()

    s = doc.server
    tls = None
    if s.tls is not None:
        tls = TLSConfig(
            cert_file=path(s.tls.cert_file),
            key_file=path(s.tls.key_file),
            client_ca_file=path(s.tls.client_ca_file) if s.tls.client_ca_file is not None else None,
            reload_interval=s.tls.reload_interval,
        )
    server = ServerConfig(
        address=s.address,
        port=s.port,
        tls=tls,
        health_port=s.health_port,
        warm_up=s.warm_up,
        max_keys=s.limits.max_keys,
        max_key_bytes=s.limits.max_key_bytes,
        max_body_bytes=s.limits.max_body_bytes,
        verify_deadline=s.deadlines.verify,
        mutate_deadline=s.deadlines.mutate,
        background_timeout=s.deadlines.background,
        max_concurrent_verifications=s.limits.max_concurrent_verifications,
        max_in_flight_verifications=s.limits.max_in_flight_verifications,
        config_reload_interval=s.config_reload_interval,
        max_connections=s.limits.max_connections,
        tls_handshake_timeout=s.timeouts.tls_handshake,
        header_timeout=s.timeouts.request_headers,
        body_timeout=s.timeouts.request_body,
        idle_timeout=s.timeouts.idle,
        in_flight_bytes=s.limits.in_flight_bytes,
        verification_bytes=s.limits.verification_bytes,
    )
    c = doc.cache
    cache = CacheConfig(
        verdict_ttl=c.verdict_ttl,
        tag_ttl=c.tag_ttl,
        max_verdicts=c.max_verdicts,
        content_bytes=c.content_bytes,
        verdict_bytes=c.verdict_bytes,
        tag_bytes=c.tag_bytes,
    )
    lim = doc.limits
    limits = Limits(
        max_manifest_bytes=lim.max_manifest_bytes,
        max_blob_bytes=lim.max_blob_bytes,
        max_referrers=lim.max_referrers,
        max_referrer_pages=lim.max_referrer_pages,
        max_connections=lim.max_connections,
        max_connections_per_registry=lim.max_connections_per_registry,
        idle_connection_timeout=lim.idle_connection_timeout,
    )
    registries: dict[str, RegistrySettings] = {}
    for host, r in doc.registries.items():
        if r is None:
            registries[host] = RegistrySettings()
            continue
        password = r._password
        registries[host] = RegistrySettings(
            insecure=r.insecure,
            ca_file=path(r.ca_file) if r.ca_file is not None else None,
            min_tls=r.min_tls,
            credentials=Credentials(r.username, password) if r.username and password is not None else None,
        )
    # The registries the operator names are exempt from the built-in address refusals: worked out once
    # here, for the engine's checks before contacting anything and for the client's when connecting.
    egress = doc.egress.policy().with_trusted((h, s.insecure) for h, s in registries.items())
    docker_configs = tuple(path(p) for p in doc.auth.docker_configs)
    k = doc.kubernetes
    kubernetes = KubernetesConfig(
        enabled=k.enabled,
        namespace=k.namespace,
        kubeconfig=path(k.kubeconfig) if k.kubeconfig else None,
        resync=k.resync,
        pull_secrets=tuple(k.pull_secrets),
        workload_pull_secrets=k.workload_pull_secrets,
        allow_exec_verifiers=k.allow_exec_verifiers,
    )
    verifiers = {
        name: VerifierConfig(name=name, type=v.type, options=v.options) for name, v in doc.verifiers.items()
    }
    policies = []
    for p in doc.policies:
        scopes = p.scope_list()
        mode, names, _ = p.mode()
        count = p.threshold.count if p.threshold is not None else (len(names) if mode == "allOf" else 1)
        policies.append(
            Policy(
                name=p.name or scopes[0],
                scopes=tuple(scopes),
                namespaces=tuple(p.namespaces) if p.namespaces is not None else None,
                mode=mode,
                verifiers=tuple(names),
                threshold=count,
            )
        )
    return Config(
        server=server,
        cache=cache,
        limits=limits,
        registries=registries,
        egress=egress,
        docker_configs=docker_configs,
        verifiers=verifiers,
        policies=tuple(policies),
        fingerprint=_fingerprint(data),
        base_dir=base,
        credential_files=(*docker_configs, *context["read_files"]),
        kubernetes=kubernetes,
    )


def read_config_yaml(path: Path) -> Any:
    """The YAML document of the configuration file at `path` (at most `MAX_CONFIG_BYTES`), not validated.
    `ConfigError` when it is too large or not YAML; `OSError` when it cannot be read."""
    raw = path.read_bytes()
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError("", f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError("", f"{path} is not valid YAML: {e}") from e


def load_config(path: Path) -> Config:
    """Read and validate a YAML configuration file."""
    try:
        data = read_config_yaml(path)
    except OSError as e:
        raise ConfigError("", f"cannot read {path}: {e}") from e
    return parse_config(data, base=path.parent)
