"""Image references, parsed and normalized the way the container runtimes do it.

The grammar is the one of the distribution project's `reference` package (what docker, containerd and
CRI-O use): an optional domain, a path of lowercase components, an optional tag, an optional digest.
Normalization follows the runtimes: no domain means Docker Hub (`docker.io`), the legacy `index.docker.io`
becomes `docker.io`, a single-component path on Docker Hub gains `library/`, and a reference with neither
tag nor digest means the tag `latest`. Nothing else is rewritten: like the runtimes, we treat other spellings
of Hub (`registry-1.docker.io`, `Docker.io`) as registries of their own, so that what we verify is what the
runtime pulls. Only sha256 and sha512 digests are accepted, in lowercase hex, since those are what we verify.

A Gatekeeper key may carry a namespace prefix, `[namespace]reference`, for per-namespace policy. A key that
starts with a bracketed IPv6 registry (`[::1]:5000/repo`) has no prefix: a `]` followed by `:` or `/` closes
a host, never a namespace (a reference cannot start with either).

A key that starts with `{` is a versioned key, a JSON object (what OPA's `json.marshal` writes: sorted keys,
no spaces). Version 1 carries the workload's identity for its pull secrets:

    {"image":"ghcr.io/org/app:1","imagePullSecrets":["regcred"],"namespace":"prod","serviceAccount":"default","v":1}

Every field is required and nothing else may appear; `v` must be the number 1 (another version is refused,
never guessed at); `namespace` is a Kubernetes namespace name (DNS label), `serviceAccount` and each of at
most 16 `imagePullSecrets` a Kubernetes object name (DNS subdomain); a secret named twice counts once. The
JSON is parsed strictly (duplicate keys, NaN, nesting refused; the key is at most `MAX_KEY_BYTES`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from verifiers import strictjson

__all__ = [
    "DOCKER_HUB",
    "MAX_KEY_BYTES",
    "MAX_PULL_SECRETS",
    "ImageReference",
    "Key",
    "ReferenceError",
    "is_object_name",
    "parse_key",
    "parse_reference",
]

DOCKER_HUB = "docker.io"
# Exactly what distribution/reference rewrites (case-sensitive): `registry-1.docker.io` is left alone.
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io"})
MAX_NAME_LENGTH = 255  # distribution/reference: NameTotalLengthMax
MAX_KEY_BYTES = 4096
MAX_PULL_SECRETS = 16
KEY_VERSION = 1
_KEY_FIELDS = frozenset({"v", "image", "imagePullSecrets", "namespace", "serviceAccount"})
_KEY_MAX_DEPTH = 4  # {"imagePullSecrets": [...]} is two levels deep; a little room for a clear message

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# All patterns are used with fullmatch: `$` would also match before a trailing newline.
_COMPONENT_RE = re.compile(_COMPONENT)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_RE = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_HEX = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"(sha256|sha512):([a-f0-9]+)")
# distribution/reference's anchoredIdentifierRegexp: a bare 64-hex name is an image ID, not a repository
# (containerd's CRI resolves it locally as `sha256:<hex>`), so ParseNormalizedNamed refuses it.
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_SPACE_RE = re.compile(r"\s")  # for str patterns `\s` is exactly `str.isspace` (both Py_UNICODE_ISSPACE)
_NAMESPACE_RE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")  # a Kubernetes namespace (DNS label)
# A Kubernetes object name (ServiceAccount, Secret): a DNS subdomain, at most 253 characters.
_OBJECT_NAME_RE = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_MAX_OBJECT_NAME = 253


class ReferenceError(ValueError):
    """The string is not a valid image reference; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalized image reference. `registry` is the domain as users write it (`docker.io` for Hub)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`registry/repository`, the part that names a repository."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def pinned(self, digest: str) -> str:
        """The replacement reference that names only the digest: `registry/repository@digest`."""
        return f"{self.name}@{digest}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when there is one, else the tag."""
        if self.digest is not None:
            return self.digest
        assert self.tag is not None  # parse_reference defaults the tag when there is no digest
        return self.tag


def validate_digest(digest: str) -> str:
    """Return `digest` when it is a well-formed sha256 or sha512 digest, else raise ReferenceError."""
    m = _DIGEST_RE.fullmatch(digest)
    if m is None:
        raise ReferenceError(
            f"invalid digest {digest!r}: expected sha256:<64 lowercase hex> or sha512:<128 lowercase hex>"
        )
    algorithm, hex_part = m.groups()
    if len(hex_part) != _DIGEST_HEX[algorithm]:
        raise ReferenceError(
            f"invalid digest {digest!r}: {algorithm} needs {_DIGEST_HEX[algorithm]} hex characters, "
            f"got {len(hex_part)}"
        )
    return digest


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i < 0 or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        return DOCKER_HUB, name
    return first, name[i + 1 :]


def parse_reference(text: str) -> ImageReference:
    """Parse and normalize an image reference; raise ReferenceError with the reason when it is invalid."""
    if not text:
        raise ReferenceError("empty image reference")
    if _SPACE_RE.search(text):
        raise ReferenceError(f"invalid image reference {text!r}: contains white space")
    if _IDENTIFIER_RE.fullmatch(text):
        raise ReferenceError(
            f"invalid image reference {text!r}: a 64-character hexadecimal name is an image ID, "
            "not a repository"
        )
    remainder = text
    digest: str | None = None
    if "@" in remainder:
        remainder, _, digest_part = remainder.partition("@")
        if "@" in digest_part:
            raise ReferenceError(f"invalid image reference {text!r}: more than one '@'")
        digest = validate_digest(digest_part)
    tag: str | None = None
    # A tag follows the last ':' that comes after the last '/' (a ':' before it belongs to a port).
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise ReferenceError(f"invalid image reference {text!r}: invalid tag {tag!r}")
    if not remainder:
        raise ReferenceError(f"invalid image reference {text!r}: no repository name")
    domain, path = _split_domain(remainder)
    if not _DOMAIN_RE.fullmatch(domain):
        raise ReferenceError(f"invalid image reference {text!r}: invalid registry {domain!r}")
    if domain in _DOCKER_HUB_ALIASES:
        domain = DOCKER_HUB
    if not path:
        raise ReferenceError(f"invalid image reference {text!r}: no repository name")
    for component in path.split("/"):
        if not _COMPONENT_RE.fullmatch(component):
            if component.lower() != component:
                raise ReferenceError(
                    f"invalid image reference {text!r}: repository name must be lowercase, "
                    f"got path component {component!r}"
                )
            raise ReferenceError(f"invalid image reference {text!r}: invalid path component {component!r}")
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
        raise ReferenceError(
            f"invalid image reference {text!r}: name longer than {MAX_NAME_LENGTH} characters"
        )
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(registry=domain, repository=path, tag=tag, digest=digest)


@dataclass(frozen=True, slots=True)
class Key:
    """A Gatekeeper key: the exact string received, an optional namespace, and the parsed reference.

    A version 1 key (`version == 1`) also names the workload's service account and image pull secrets
    (in the key's namespace); older keys have `version == 0`, no service account and no pull secrets.
    """

    raw: str
    namespace: str | None
    reference: ImageReference
    service_account: str | None = None
    pull_secrets: tuple[str, ...] = ()
    version: int = 0


#: Keys up to this many characters are remembered once parsed (a bounded LRU, `_KEY_CACHE_SIZE` entries:
#: at most ~3 MiB whatever keys arrive); Gatekeeper sends a workload's images again and again.
_CACHED_KEY_CHARS = 1024
_KEY_CACHE_SIZE = 1024


def parse_key(raw: str) -> Key:
    """Parse a versioned key (`{...}`), `[namespace]reference` or `reference`; raise ReferenceError when it
    is not valid. A `Key` is immutable: the same one may be returned for the same text."""
    if len(raw) <= _CACHED_KEY_CHARS:
        return _parse_key_cached(raw)
    return _parse_key(raw)


@functools.lru_cache(maxsize=_KEY_CACHE_SIZE)
def _parse_key_cached(raw: str) -> Key:
    return _parse_key(raw)  # an invalid key raises, and lru_cache remembers nothing for it


def _parse_key(raw: str) -> Key:
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise ReferenceError(f"key longer than {MAX_KEY_BYTES} bytes ({size} bytes)")
    if raw.startswith("{"):
        return _parse_versioned_key(raw)
    namespace: str | None = None
    rest = raw
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ReferenceError(f"invalid key {raw[:80]!r}: '[' without a closing ']'")
        if raw[end + 1 : end + 2] not in (":", "/"):  # else `[...]` is an IPv6 registry host, not a prefix
            namespace = raw[1:end]
            if not _NAMESPACE_RE.fullmatch(namespace):
                raise ReferenceError(
                    f"invalid key {raw[:80]!r}: namespace {namespace!r} is not a Kubernetes namespace name"
                )
            rest = raw[end + 1 :]
    return Key(raw=raw, namespace=namespace, reference=parse_reference(rest))


def is_object_name(name: str) -> bool:
    """Whether `name` is a Kubernetes object name (a DNS subdomain: a Secret's, a ServiceAccount's)."""
    return len(name) <= _MAX_OBJECT_NAME and _OBJECT_NAME_RE.fullmatch(name) is not None


def _object_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ReferenceError(f"invalid key: {what} must be a string, got {strictjson.json_type(value)}")
    if not is_object_name(value):
        raise ReferenceError(f"invalid key: {what} {value[:80]!r} is not a Kubernetes object name")
    return value


def _parse_versioned_key(raw: str) -> Key:
    """A `{...}` key: strict JSON, a known version, exactly its fields, each checked."""
    encoded = raw.encode("utf-8", "surrogatepass")
    if strictjson.nesting_exceeds(encoded, _KEY_MAX_DEPTH):
        raise ReferenceError(f"invalid key: a versioned key is nested more than {_KEY_MAX_DEPTH} levels deep")
    try:
        doc: Any = strictjson.parse(raw)
    except strictjson.StrictJSONError as e:
        raise ReferenceError(f"invalid key: a key starting with '{{' must be a JSON object: {e}") from None
    if not isinstance(doc, dict):
        raise ReferenceError("invalid key: a key starting with '{' must be a JSON object")
    version = doc.get("v")
    if type(version) is not int or version != KEY_VERSION:  # not True, not 1.0
        raise ReferenceError(
            f"invalid key: unsupported key version {strictjson.show(version)} (this provider reads v: 1)"
        )
    unknown = sorted(set(doc) - _KEY_FIELDS)
    if unknown:
        raise ReferenceError(f"invalid key: unknown field {strictjson.show(unknown[0])} in a v1 key")
    missing = sorted(_KEY_FIELDS - set(doc))
    if missing:
        raise ReferenceError(f"invalid key: field {missing[0]!r} is missing from a v1 key")
    image = doc["image"]
    if not isinstance(image, str):
        raise ReferenceError(f"invalid key: image must be a string, got {strictjson.json_type(image)}")
    namespace = doc["namespace"]
    if not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace):
        raise ReferenceError(
            f"invalid key: namespace {strictjson.show(namespace)} is not a Kubernetes namespace name"
        )
    service_account = _object_name(doc["serviceAccount"], "serviceAccount")
    secrets = doc["imagePullSecrets"]
    if not isinstance(secrets, list):
        raise ReferenceError(
            f"invalid key: imagePullSecrets must be a list, got {strictjson.json_type(secrets)}"
        )
    if len(secrets) > MAX_PULL_SECRETS:
        raise ReferenceError(f"invalid key: more than {MAX_PULL_SECRETS} imagePullSecrets ({len(secrets)})")
    names = tuple(dict.fromkeys(_object_name(s, f"imagePullSecrets[{i}]") for i, s in enumerate(secrets)))
    return Key(
        raw=raw,
        namespace=namespace,
        reference=parse_reference(image),
        service_account=service_account,
        pull_secrets=names,
        version=KEY_VERSION,
    )
