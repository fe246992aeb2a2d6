"""Countersign's custom resources (group countersign.dev, v1alpha1) and how they combine with the file.

Pure: no I/O, no `kubernetes` import. The runtime (provider.kube.source) lists the resources, writes each
Verifier's files into a directory, and calls

    composition = compose(file_document, resources, last_good, files_dir=..., allow_exec=..., base=...)

to get the `Config` to build (file + accepted resources), a `ResourceStatus` per resource and the new
last-good map. Rules (docs/resources.md):

- Resources win over the file by name: a Verifier named like a file verifier replaces it, a
  ClusterImagePolicy named like a file policy replaces it (in the file policy's place).
- Scope conflicts: file policies first, then ClusterImagePolicies by (creationTimestamp, name); the later
  one claiming a scope is Invalid at `spec.scopes[i]`. The same among the ImagePolicies of a namespace.
- An invalid resource is left out with the field path in resource terms (`spec.allOf[0]`,
  `spec.options.keys[0].path`, `spec.files['cosign.pub']`, `metadata.name`); its last valid generation (same
  uid, from `last_good`) serves in its place when it is still valid.
- `type: exec` from a resource is refused unless `allow_exec`.
- Errors in the file's own parts raise `ConfigError` (the whole reload fails).

Errors found later, when the engine builds the verifiers, are mapped back with `attribute(error,
composition)`; `composition.refusals(...)` turns them into `compose(..., refused=...)`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, ValidationError, WithJsonSchema
from pydantic import model_validator as _model_validator
from pydantic_core import PydanticCustomError

from provider.config import (
    Config,
    ConfigError,
    Policy,
    PolicySection,
    ThresholdSection,
    VerifierSection,
    parse_config,
)
from provider.config import _Model as _SectionModel
from verifiers.errors import FieldError, join_path
from verifiers.options import Shaped, StringList, check, field_errors

__all__ = [
    "API_VERSION",
    "CLUSTER_IMAGE_POLICY",
    "GROUP",
    "IMAGE_POLICY",
    "KINDS",
    "NO_FILES",
    "PLURALS",
    "SPEC_MODELS",
    "VERIFIER",
    "VERSION",
    "ClusterImagePolicySpec",
    "Composition",
    "FileSource",
    "ImagePolicySpec",
    "Resource",
    "ResourceError",
    "ResourceStatus",
    "VerifierSpec",
    "attribute",
    "compose",
]

GROUP = "countersign.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CLUSTER_IMAGE_POLICY = "ClusterImagePolicy"
IMAGE_POLICY = "ImagePolicy"
VERIFIER = "Verifier"
KINDS = (CLUSTER_IMAGE_POLICY, IMAGE_POLICY, VERIFIER)
# Each kind's collection name in API paths (the CRDs' `names.plural`). Only ImagePolicy is namespaced.
PLURALS: Mapping[str, str] = {
    CLUSTER_IMAGE_POLICY: "clusterimagepolicies",
    IMAGE_POLICY: "imagepolicies",
    VERIFIER: "verifiers",
}
# The option base directory of a Verifier resource without files: nothing can exist below /dev/null, so a
# relative option path names no file, and (confined) an absolute one is refused.
NO_FILES = Path("/dev/null/countersign-no-files")
MAX_FILES = 64

# Kubernetes object names (DNS subdomains) and Secret/ConfigMap data keys.
_OBJECT_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DATA_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+")
# A file path below the verifier's directory: components of data-key characters, none `.` or `..`.
FILE_PATH_RE = re.compile(r"[-._a-zA-Z0-9]+(/[-._a-zA-Z0-9]+)*")


def _matching(regex: re.Pattern[str], message: str) -> AfterValidator:
    def validate(value: str) -> str:
        if not regex.fullmatch(value):
            raise PydanticCustomError("countersign", "{message}", {"message": f"{message}, got {value!r}"})
        if regex is FILE_PATH_RE and any(part in (".", "..") for part in value.split("/")):
            text = f"a path inside the verifier's directory has no '.' or '..' component, got {value!r}"
            raise PydanticCustomError("countersign", "{message}", {"message": text})
        return value

    return AfterValidator(validate)


def _string(regex: re.Pattern[str]) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": f"^{regex.pattern}$", "minLength": 1, "maxLength": 253}
    )


_Bounded = StringConstraints(strict=True, min_length=1, max_length=253)
ObjectName = Annotated[
    str,
    _Bounded,
    _matching(_OBJECT_NAME_RE, "expected a Kubernetes object name (a lowercase DNS subdomain)"),
    _string(_OBJECT_NAME_RE),
]
DataKey = Annotated[
    str,
    _Bounded,
    _matching(_DATA_KEY_RE, "expected a Secret or ConfigMap key (letters, digits, '-', '_', '.')"),
    _string(_DATA_KEY_RE),
]
FilePath = Annotated[
    str,
    _Bounded,
    _matching(FILE_PATH_RE, "expected a relative path like 'a/b.pem' (letters, digits, '-', '_', '.', '/')"),
    _string(FILE_PATH_RE),
]
Names = Annotated[list[str], StringList()]


# --- the spec models -------------------------------------------------------------------------------------
# The configuration's own sections (provider.config) where they fit; the policy rules are PolicySection's.


class ImagePolicySpec(_SectionModel):
    """ImagePolicy.spec (and the base of ClusterImagePolicy.spec): a file policy without `name` (the
    resource's name) and `namespaces` (an ImagePolicy is its namespace's)."""

    required_messages: ClassVar[Mapping[str, str]] = {"scopes": "expected a list of strings, got nothing"}

    scopes: Names
    all_of: Names | None = None
    any_of: Names | None = None
    threshold: ThresholdSection | None = None

    @_model_validator(mode="after")
    def _policy_rules(self) -> Self:
        # The file's rules, in one place: scope syntax, exactly one mode, threshold bounds, repeats.
        PolicySection.model_validate(self.model_dump(by_alias=True, exclude_none=True))
        return self


class ClusterImagePolicySpec(ImagePolicySpec):
    """ClusterImagePolicy.spec: a file policy without `name`."""

    namespaces: Names | None = None


class KeyRef(_SectionModel):
    """One key of a Secret or ConfigMap in the provider's namespace: one file."""

    name: ObjectName
    key: DataKey


class ObjectRef(_SectionModel):
    """A whole Secret or ConfigMap in the provider's namespace: a directory, one file per key."""

    name: ObjectName


class FileSource(_SectionModel):
    """Where one entry of Verifier.spec.files comes from: exactly one source."""

    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None
    secret: ObjectRef | None = None
    config_map: ObjectRef | None = None

    SOURCES: ClassVar[tuple[str, ...]] = ("secretKeyRef", "configMapKeyRef", "secret", "configMap")

    @_model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [
            alias for alias, value in zip(self.SOURCES, self._values(), strict=True) if value is not None
        ]
        if len(given) != 1:
            check("FileSource", [((), f"set exactly one of {', '.join(self.SOURCES)}")])
        return self

    def _values(self) -> tuple[BaseModel | None, ...]:
        return (self.secret_key_ref, self.config_map_key_ref, self.secret, self.config_map)

    def source(self) -> tuple[str, str, str | None]:
        """(`Secret` or `ConfigMap`, its name, its key or None for the whole object as a directory)."""
        if self.secret_key_ref is not None:
            return "Secret", self.secret_key_ref.name, self.secret_key_ref.key
        if self.config_map_key_ref is not None:
            return "ConfigMap", self.config_map_key_ref.name, self.config_map_key_ref.key
        if self.secret is not None:
            return "Secret", self.secret.name, None
        assert self.config_map is not None
        return "ConfigMap", self.config_map.name, None


class VerifierSpec(VerifierSection):
    """Verifier.spec: a file verifier (`type`, `options`) and the files its options name."""

    bracket_keys: ClassVar[frozenset[str]] = frozenset({"files"})

    files: Annotated[
        dict[FilePath, FileSource],
        Shaped(dict, "a mapping of relative file path to its source"),
    ] = Field(default_factory=dict)

    @_model_validator(mode="after")
    def _files(self) -> Self:
        problems: list[tuple[str | tuple[str | int, ...], str]] = []
        if len(self.files) > MAX_FILES:
            problems.append(("files", f"at most {MAX_FILES} entries, got {len(self.files)}"))
        for path in self.files:
            for other in self.files:
                if path.startswith(other + "/"):
                    problems.append((("files", path), f"is inside {other!r}, which is a file or directory"))
                    break
        check("VerifierSpec", problems)
        return self


SPEC_MODELS: Mapping[str, type[_SectionModel]] = {
    CLUSTER_IMAGE_POLICY: ClusterImagePolicySpec,
    IMAGE_POLICY: ImagePolicySpec,
    VERIFIER: VerifierSpec,
}


# --- resources and their status --------------------------------------------------------------------------


class ResourceError(FieldError):
    """A problem with a resource, its path in resource terms (`spec.files['cosign.pub']`): what the runtime's
    `files_dir` raises when a file cannot be had (a missing Secret or key)."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One Countersign custom resource as listed: what `compose` needs of it."""

    kind: str  # KINDS
    namespace: str | None  # ImagePolicy only
    name: str
    uid: str
    generation: int
    creation_timestamp: str  # RFC 3339 as the API server writes it (UTC, "Z"): sorts as text
    spec: Mapping[str, Any]

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Resource:
        """From an API object (`kind`, `metadata`, `spec`). ValueError when it is not one of ours."""
        kind, metadata, spec = obj.get("kind"), obj.get("metadata"), obj.get("spec")
        if kind not in KINDS or not isinstance(metadata, Mapping):
            raise ValueError(f"not a Countersign resource: kind {kind!r}")
        name, uid = metadata.get("name"), metadata.get("uid")
        generation = metadata.get("generation", 0)
        if not isinstance(name, str) or not isinstance(uid, str) or not isinstance(generation, int):
            raise ValueError(f"{kind}: metadata without a name, uid or generation")
        namespace = metadata.get("namespace")
        return cls(
            kind=str(kind),
            namespace=namespace if isinstance(namespace, str) and namespace else None,
            name=name,
            uid=uid,
            generation=generation,
            creation_timestamp=str(metadata.get("creationTimestamp") or ""),
            spec=spec if isinstance(spec, Mapping) else {},
        )

    def describe(self) -> str:
        """`ClusterImagePolicy 'a'`, `ImagePolicy 'team/b'`."""
        return (
            f"{self.kind} '{self.namespace}/{self.name}'" if self.namespace else f"{self.kind} '{self.name}'"
        )

    def order(self) -> tuple[str, str]:
        """Who claims a scope first: the older resource, then the name."""
        return self.creation_timestamp, self.name


_DENYING = "images in its scopes are denied (policy_unavailable) until a valid generation serves"


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    """What the provider reports in a resource's `status`."""

    kind: str
    namespace: str | None
    name: str
    uid: str
    observed_generation: int
    serving_generation: int | None  # None: nothing of this resource serves
    errors: tuple[tuple[str, str], ...]  # (path, message) in resource terms; empty: the generation is valid
    summary: str  # policies: Policy.describe(); verifiers: the type ("" when nothing serves)
    # A policy with no valid generation that still claims its scopes: their images are denied.
    denying: bool = False

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def message(self) -> str:
        """The Invalid condition's message: every problem, `path: message`, one per line."""
        lines = [f"{path}: {message}" if path else message for path, message in self.errors]
        if self.denying:
            lines.append(_DENYING)
        return "\n".join(lines)

    def conditions(self) -> list[dict[str, Any]]:
        """Ready and Invalid (without lastTransitionTime: `body` keeps or sets it)."""
        g = self.observed_generation
        if self.valid:
            ready = ("True", "Serving", f"generation {g} serving")
            invalid = ("False", "Valid", "")
        else:
            serving = self.serving_generation
            tail = f"generation {serving} serving" if serving is not None else "nothing serving"
            if self.denying:
                tail += f"; {_DENYING}"
            ready = ("False", "Invalid", f"generation {g} refused; {tail}")
            invalid = ("True", "InvalidSpec", self.message)
        return [
            {"type": kind, "status": status, "reason": reason, "message": message, "observedGeneration": g}
            for kind, (status, reason, message) in (("Ready", ready), ("Invalid", invalid))
        ]

    def body(self, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
        """The `status` to write: a condition whose status is unchanged from `previous` (the resource's
        current status) keeps its lastTransitionTime, else it gets `now` (RFC 3339)."""
        before: dict[str, Mapping[str, Any]] = {}
        if previous is not None and isinstance(previous.get("conditions"), list):
            for c in previous["conditions"]:
                if isinstance(c, Mapping) and isinstance(c.get("type"), str):
                    before[c["type"]] = c
        conditions = []
        for c in self.conditions():
            old = before.get(c["type"])
            same = old is not None and old.get("status") == c["status"] and old.get("lastTransitionTime")
            conditions.append({**c, "lastTransitionTime": old["lastTransitionTime"] if same and old else now})
        out: dict[str, Any] = {"observedGeneration": self.observed_generation}
        if self.serving_generation is not None:
            out["servingGeneration"] = self.serving_generation
        out["summary"] = self.summary
        out["conditions"] = conditions
        return out


@dataclass(frozen=True, slots=True)
class Composition:
    config: Config
    statuses: dict[str, ResourceStatus]  # by uid, every resource given to compose
    serving: dict[str, Resource]  # by uid: the generation each resource serves (the next last_good)
    # Where each resource sits in the merged document: `verifiers.NAME` or `policies[i]` -> uid.
    owners: Mapping[str, str] = field(default_factory=dict)

    def refusals(self, attributed: Mapping[str, tuple[str, str]]) -> dict[tuple[str, int], tuple[str, str]]:
        """`attribute`'s answer as `compose(refused=...)` wants it: keyed by (uid, the generation that was
        serving). Accumulate them across attempts (`refused |= ...`): a resource may see two refused."""
        return {
            (uid, self.serving[uid].generation): problem
            for uid, problem in attributed.items()
            if uid in self.serving
        }


# --- composing -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    resource: Resource
    entry: dict[str, Any]  # the file's form: a verifier's {type, options}, a policy's {name, scopes, ...}
    files: Path  # a Verifier's option base directory (NO_FILES without files)
    # A policy's last resort: no generation of it is valid, yet it claims its scopes (denying their images).
    stand_in: bool = False


# The verifier a stand-in's entry names while the merged document is checked (never built, never served).
_STAND_IN_VERIFIER = "countersign.unavailable-policy"


def _stand_in(resource: Resource) -> _Candidate | None:
    """A policy resource's claim on its scopes when no generation of it can be served, None when the spec
    does not even say which scopes (those are checked, and conflicts found, like any policy's)."""
    spec = resource.spec
    scopes = spec.get("scopes")
    if not (isinstance(scopes, list) and scopes and all(isinstance(x, str) for x in scopes)):
        return None
    entry: dict[str, Any] = {"name": resource.name, "scopes": list(scopes), "allOf": [_STAND_IN_VERIFIER]}
    namespaces = spec.get("namespaces")
    if resource.kind == CLUSTER_IMAGE_POLICY and namespaces is not None:
        if not (isinstance(namespaces, list) and all(isinstance(x, str) for x in namespaces)):
            return None
        entry["namespaces"] = list(namespaces)
    return _Candidate(resource, entry, NO_FILES, stand_in=True)


def _unavailable(
    policies: Sequence[Policy],
    stand_ins: Mapping[str, _Candidate],
    errors: Mapping[str, list[tuple[str, str]]],
) -> tuple[Policy, ...]:
    """`policies` with each stand-in's policy made unavailable: no verifiers, the problem named."""
    out = []
    for p in policies:
        c = stand_ins.get(p.name)
        if c is not None:
            problems = errors.get(c.resource.uid) or [("", "refused")]
            path, message = problems[0]
            problem = f"{path}: {message}" if path else message
            unavailable = f"{c.resource.describe()}, which has no valid generation to serve ({problem})"
            p = replace(p, verifiers=(), unavailable=unavailable)
        out.append(p)
    return tuple(out)


def _spec_errors(resource: Resource) -> list[tuple[str, str]]:
    model = SPEC_MODELS[resource.kind]
    try:
        model.model_validate(dict(resource.spec))
    except ValidationError as e:
        return [(join_path("spec", path), message) for path, message in field_errors(e, model)]
    return []


def _candidate(
    resource: Resource,
    *,
    files_dir: Callable[[Resource], Path | None],
    allow_exec: bool,
    refused: Mapping[tuple[str, int], tuple[str, str]],
) -> _Candidate | list[tuple[str, str]]:
    """The resource in the file's form, or what is wrong with it on its own."""
    refusal = refused.get((resource.uid, resource.generation))
    if refusal is not None:
        return [refusal]
    errors = _spec_errors(resource)
    if errors:
        return errors
    spec = dict(resource.spec)
    if resource.kind != VERIFIER:
        return _Candidate(resource, {"name": resource.name, **spec}, NO_FILES)
    if spec["type"] == "exec" and not allow_exec:
        message = (
            "type 'exec' runs commands in the provider's pod: refused from resources unless the "
            "configuration file sets kubernetes.allowExecVerifiers: true"
        )
        return [("spec.type", message)]
    try:
        directory = files_dir(resource)
    except ResourceError as e:
        return list(e.errors)
    if directory is None:
        if spec.get("files"):
            return [("spec.files", "the files could not be written")]
        directory = NO_FILES
    return _Candidate(resource, {"type": spec["type"], "options": spec.get("options") or {}}, directory)


def _policy_name(entry: object) -> str | None:
    """A file policy's name (its first scope when unnamed), None when the entry is malformed."""
    if not isinstance(entry, Mapping):
        return None
    if isinstance(entry.get("name"), str):
        return str(entry["name"])
    scopes = entry.get("scopes", entry.get("scope"))
    if isinstance(scopes, str):
        return scopes
    if isinstance(scopes, list) and scopes and isinstance(scopes[0], str):
        return scopes[0]
    return None


def _merge(file: Mapping[str, Any], chosen: Iterable[_Candidate]) -> tuple[dict[str, Any], dict[str, str]]:
    """The file with the resources in it (by-name overrides in place), and where each resource went."""
    doc = dict(file)
    owners: dict[str, str] = {}
    candidates = sorted(chosen, key=lambda c: c.resource.order())
    verifiers = doc.get("verifiers") or {}
    if isinstance(verifiers, Mapping):
        verifiers = dict(verifiers)
        for c in candidates:
            if c.resource.kind == VERIFIER:
                verifiers[c.resource.name] = c.entry
                owners[f"verifiers.{c.resource.name}"] = c.resource.uid
        doc["verifiers"] = verifiers
    policies = doc.get("policies") or []
    if isinstance(policies, list):
        policies = list(policies)
        places = {name: i for i, p in enumerate(policies) if (name := _policy_name(p)) is not None}
        for c in candidates:
            if c.resource.kind != CLUSTER_IMAGE_POLICY:
                continue
            i = places.get(c.resource.name)
            if i is None:
                i = len(policies)
                policies.append(c.entry)
            else:
                policies[i] = c.entry
            owners[f"policies[{i}]"] = c.resource.uid
        doc["policies"] = policies
    return doc, owners


def _owner(path: str, owners: Mapping[str, str]) -> tuple[str, str] | None:
    """(uid, the path in that resource's terms) for a path of the merged document, None for the file's."""
    for prefix in sorted(owners, key=len, reverse=True):
        if path != prefix and not path.startswith((prefix + ".", prefix + "[")):
            continue
        rest = path[len(prefix) :]
        if prefix.startswith("verifiers."):
            if not rest:
                return owners[prefix], "metadata.name"  # the verifier name's own rule
        elif rest == ".name":
            return owners[prefix], "metadata.name"
        return owners[prefix], join_path("spec", rest.removeprefix("."))
    return None


def _settle(
    uids: Sequence[str],
    versions: Mapping[str, list[_Candidate]],
    errors: dict[str, list[tuple[str, str]]],
    current: Mapping[str, Resource],
    check_document: Callable[[list[_Candidate]], tuple[Config | None, dict[str, list[tuple[str, str]]]]],
) -> tuple[Config, dict[str, _Candidate]]:
    """Try the first version of every resource; each round, a resource blamed for an error falls back to
    its next version (its last good one) or is left out. Each round removes a version: bounded."""
    left = {uid: list(versions[uid]) for uid in uids if versions.get(uid)}
    for _ in range(sum(len(v) for v in left.values()) + 1):
        chosen = {uid: vs[0] for uid, vs in left.items() if vs}
        config, blamed = check_document([chosen[uid] for uid in uids if uid in chosen])
        if config is not None:
            return config, chosen
        if not blamed:
            raise AssertionError("a refused document with nobody to blame")
        for uid, problems in blamed.items():
            if chosen[uid].resource.generation == current[uid].generation:
                errors.setdefault(uid, problems)
            left[uid].pop(0)
    raise AssertionError("composition did not settle")  # pragma: no cover: every round pops a version


def compose(
    file: Mapping[str, Any],
    resources: Sequence[Resource],
    last_good: Mapping[str, Resource],
    *,
    files_dir: Callable[[Resource], Path | None],
    allow_exec: bool,
    base: Path,
    refused: Mapping[tuple[str, int], tuple[str, str]] | None = None,
) -> Composition:
    """The configuration from the file (a parsed YAML document) and the resources.

    `last_good`: by uid, the generation each resource served before (the previous `Composition.serving`).
    `files_dir(resource)`: a Verifier's files directory (None: it has none), CONTENT-ADDRESSED (its path
    changes when any file's bytes do: the path is what the fingerprint covers), or `ResourceError` naming
    the `spec.files['...']` entry that could not be had; called only for Verifiers that are otherwise valid.
    `refused`: (uid, generation) -> (path, message): generations the engine could not build
    (`Composition.refusals(attribute(...))`), left out like invalid ones.
    Raises `ConfigError` for errors in the file's own parts.
    """
    refused = refused or {}
    current: dict[str, Resource] = {}
    for r in resources:
        if r.kind not in KINDS:
            raise ValueError(f"not a Countersign resource: {r.kind}")
        if r.kind == IMAGE_POLICY and not r.namespace:
            raise ValueError(f"{r.describe()} has no namespace")
        current[r.uid] = r
    errors: dict[str, list[tuple[str, str]]] = {}
    versions: dict[str, list[_Candidate]] = {}
    for uid, r in current.items():
        versions[uid] = []
        previous = last_good.get(uid)
        tries = [r] if previous is None or previous.generation == r.generation else [r, previous]
        for version in tries:
            c = _candidate(version, files_dir=files_dir, allow_exec=allow_exec, refused=refused)
            if isinstance(c, _Candidate):
                versions[uid].append(c)
            elif version is r:
                errors[uid] = c
        # Never weaken: a policy no generation of which can be served still claims its scopes (denying
        # them) rather than leave its images to a less specific, maybe weaker policy.
        if r.kind != VERIFIER and (stand_in := _stand_in(r)) is not None:
            versions[uid].append(stand_in)

    # The cluster-wide part: the file, Verifiers and ClusterImagePolicies in one document.
    cluster = sorted(
        (uid for uid, r in current.items() if r.kind != IMAGE_POLICY), key=lambda u: current[u].order()
    )
    owners: dict[str, str] = {}

    def check_cluster(chosen: list[_Candidate]) -> tuple[Config | None, dict[str, list[tuple[str, str]]]]:
        doc, where = _merge(file, chosen)
        verifiers = doc.get("verifiers")
        hide: tuple[str, ...] = ()
        if (
            any(c.stand_in for c in chosen)
            and isinstance(verifiers, dict)
            and _STAND_IN_VERIFIER not in verifiers
        ):
            verifiers[_STAND_IN_VERIFIER] = {"type": "-"}
            hide = (_STAND_IN_VERIFIER,)
        owners.clear()
        owners.update(where)
        claimants = {
            repr(c.resource.name): c.resource.describe() for c in chosen if c.resource.kind != VERIFIER
        }
        try:
            return parse_config(doc, base, require_policies=False), {}
        except ConfigError as e:
            return None, _blame(e, where, claimants, hide)

    config, chosen = _settle(cluster, versions, errors, current, check_cluster)
    file_verifiers = file.get("verifiers")
    defined = {c.resource.name for c in chosen.values() if c.resource.kind == VERIFIER}
    if isinstance(file_verifiers, Mapping):
        defined |= set(file_verifiers)
    if _STAND_IN_VERIFIER not in defined and _STAND_IN_VERIFIER in config.verifiers:
        config = replace(
            config, verifiers={k: v for k, v in config.verifiers.items() if k != _STAND_IN_VERIFIER}
        )
    cluster_stand_ins = {
        c.resource.name: c for c in chosen.values() if c.stand_in and c.resource.kind == CLUSTER_IMAGE_POLICY
    }
    config = replace(config, policies=_unavailable(config.policies, cluster_stand_ins, errors))

    # Namespaced policies: checked against the cluster's verifiers, scopes claimed once per namespace.
    namespace_policies: dict[str, tuple[Policy, ...]] = {}
    stand_ins = {name: {"type": "-"} for name in (*config.verifiers, _STAND_IN_VERIFIER)}
    hidden = () if _STAND_IN_VERIFIER in config.verifiers else (_STAND_IN_VERIFIER,)
    namespaces = sorted({r.namespace for r in current.values() if r.kind == IMAGE_POLICY and r.namespace})
    for namespace in namespaces:
        uids = sorted(
            (u for u, r in current.items() if r.kind == IMAGE_POLICY and r.namespace == namespace),
            key=lambda u: current[u].order(),
        )

        def check_namespace(
            chosen: list[_Candidate],
        ) -> tuple[Config | None, dict[str, list[tuple[str, str]]]]:
            doc = {"verifiers": stand_ins, "policies": [c.entry for c in chosen]}
            where = {f"policies[{i}]": c.resource.uid for i, c in enumerate(chosen)}
            claimants = {repr(c.resource.name): c.resource.describe() for c in chosen}
            try:
                return parse_config(doc, base, require_policies=False), {}
            except ConfigError as e:
                return None, _blame(e, where, claimants, hidden)

        found, taken = _settle(uids, versions, errors, current, check_namespace)
        chosen.update(taken)
        if found.policies:
            local = {c.resource.name: c for c in taken.values() if c.stand_in}
            namespace_policies[namespace] = _unavailable(found.policies, local, errors)

    verifiers = dict(config.verifiers)
    files: dict[str, str] = {}
    for c in chosen.values():
        if c.resource.kind == VERIFIER:
            name = c.resource.name
            verifiers[name] = replace(verifiers[name], base_dir=c.files, confined=True)
            files[name] = str(c.files)
    canonical = json.dumps(
        {
            "file": config.fingerprint,
            "files": files,
            "unavailable": {p.name: p.unavailable for p in config.policies if p.unavailable is not None},
            "namespacePolicies": {ns: [asdict(p) for p in ps] for ns, ps in namespace_policies.items()},
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    config = replace(
        config,
        verifiers=verifiers,
        namespace_policies=namespace_policies,
        fingerprint="sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),
    )
    policies = {p.name: p for p in config.policies}
    statuses: dict[str, ResourceStatus] = {}
    for uid, r in current.items():
        served = chosen.get(uid)
        denying = served is not None and served.stand_in
        summary = ""
        if served is not None:
            if r.kind == VERIFIER:
                summary = str(served.entry["type"])
            elif r.kind == CLUSTER_IMAGE_POLICY:
                summary = policies[r.name].describe()
            else:
                assert r.namespace is not None
                ns = {p.name: p for p in namespace_policies[r.namespace]}
                summary = ns[r.name].describe()
        statuses[uid] = ResourceStatus(
            kind=r.kind,
            namespace=r.namespace,
            name=r.name,
            uid=uid,
            observed_generation=r.generation,
            serving_generation=served.resource.generation if served is not None and not denying else None,
            errors=tuple(errors.get(uid, ())),
            summary=summary,
            denying=denying,
        )
    return Composition(
        config=config,
        statuses=statuses,
        serving={uid: c.resource for uid, c in chosen.items() if not c.stand_in},
        owners=dict(owners),
    )


_CLAIMED_RE = re.compile(r"(scope .* is already claimed by )policy (.+)")


def _blame(
    error: ConfigError,
    owners: Mapping[str, str],
    claimants: Mapping[str, str] | None = None,
    hide: Sequence[str] = (),
) -> dict[str, list[tuple[str, str]]]:
    """Each problem of a refused merged document by resource; the file's own raise `ConfigError`.
    `claimants`: repr(policy name) -> how a scope conflict names its resource (a file policy otherwise).
    `hide`: verifier names only the checked document defines (the stand-in's), left out of messages."""
    blamed: dict[str, list[tuple[str, str]]] = {}
    own: list[tuple[str, str]] = []
    for path, message in error.errors:
        found = _owner(path, owners)
        if found is None:
            own.append((path, message))
            continue
        for name in hide:
            message = message.replace(f", {name}", "").replace(f"{name}, ", "").replace(f"({name})", "(none)")
        claimed = _CLAIMED_RE.fullmatch(message)
        if claimed is not None and claimants is not None:
            name = claimed.group(2)
            who = claimants.get(name, f"policy {name} of the configuration file")
            message = claimed.group(1) + who
        blamed.setdefault(found[0], []).append((found[1], message))
    if own:
        raise ConfigError.of(own)
    return blamed


def attribute(error: ConfigError, composition: Composition) -> dict[str, tuple[str, str]]:
    """The resources an error of building `composition.config` (Engine.create, build_verifiers: paths
    `verifiers.NAME.options...`, `policies[i]...`) belongs to: uid -> (path in resource terms, message),
    the first problem of each. Problems in the file's own parts raise `ConfigError` with just those."""
    return {uid: problems[0] for uid, problems in _blame(error, composition.owners).items()}
