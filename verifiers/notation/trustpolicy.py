"""Notation trust policy (document version 1.0), read as the notation CLI reads it. Pure, no I/O.

    {"version": "1.0",
     "trustPolicies": [{
        "name": "shop",
        "registryScopes": ["registry.example.com/shop/frontend"],        # or ["*"]
        "signatureVerification": {"level": "strict", "override": {"revocation": "log"},
                                  "verifyTimestamp": "always"},          # or "afterCertExpiry"
        "trustStores": ["ca:shop", "tsa:globalsign"],
        "trustedIdentities": ["x509.subject: C=US, ST=WA, O=Example, CN=Builder"]}]}   # or ["*"]

Levels set an action per validation (integrity, authenticity, authentic timestamp, expiry, revocation):
`enforce` (a failure fails verification), `log` (a failure is reported, verification goes on) or `skip`
(not checked):

    level        integrity  authenticity  authenticTimestamp  expiry   revocation
    strict       enforce    enforce       enforce             enforce  enforce
    permissive   enforce    enforce       log                 log      log
    audit        enforce    log           log                 log      log
    skip         skip       skip          skip                skip     skip

`override` changes single actions; integrity can never be overridden, and authenticity can never be
skipped (it could only ever be logged). The policy for a repository is the one naming it exactly in
`registryScopes`, else the one with `*`; none means the artifact cannot be verified.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from verifiers.errors import FieldError

__all__ = [
    "Action",
    "PolicyError",
    "TrustPolicy",
    "TrustPolicyDocument",
    "TrustStoreRef",
    "Validation",
    "VerificationLevel",
    "is_subset_dn",
    "parse_distinguished_name",
    "parse_trust_policy",
    "parse_trust_store_ref",
]

Action = Literal["enforce", "log", "skip"]
Validation = Literal["integrity", "authenticity", "authenticTimestamp", "expiry", "revocation"]
VALIDATIONS: tuple[Validation, ...] = (
    "integrity",
    "authenticity",
    "authenticTimestamp",
    "expiry",
    "revocation",
)
LEVELS: Mapping[str, Mapping[Validation, Action]] = {
    "strict": dict.fromkeys(VALIDATIONS, "enforce"),
    "permissive": {
        "integrity": "enforce",
        "authenticity": "enforce",
        "authenticTimestamp": "log",
        "expiry": "log",
        "revocation": "log",
    },
    "audit": {
        "integrity": "enforce",
        "authenticity": "log",
        "authenticTimestamp": "log",
        "expiry": "log",
        "revocation": "log",
    },
    "skip": dict.fromkeys(VALIDATIONS, "skip"),
}
STORE_TYPES = ("ca", "signingAuthority", "tsa")
# The notation spec requires a trusted identity's DN to name at least country, state/province and org.
REQUIRED_DN_ATTRIBUTES = ("C", "ST", "O")
MAX_POLICY_BYTES = 1024 * 1024
# notation's store names; 255 characters at most, as they are directory names in its layout.
_STORE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,255}")


class PolicyError(FieldError):
    """An invalid trust policy; `path` names the field (e.g. `trustPolicies[1].registryScopes[0]`)."""


@dataclass(frozen=True, slots=True)
class VerificationLevel:
    name: str
    actions: Mapping[Validation, Action]
    verify_timestamp: Literal["always", "afterCertExpiry"] = "always"

    def action(self, validation: Validation) -> Action:
        return self.actions[validation]


@dataclass(frozen=True, slots=True)
class TrustStoreRef:
    type: Literal["ca", "signingAuthority", "tsa"]
    name: str

    def __str__(self) -> str:
        return f"{self.type}:{self.name}"


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    name: str
    registry_scopes: tuple[str, ...]
    level: VerificationLevel
    trust_stores: tuple[TrustStoreRef, ...] = ()
    # None means "*" (any identity the trust stores vouch for); otherwise the `x509.subject:` DNs as
    # (type, value) pairs (see `parse_distinguished_name`). Empty: the policy names identities of other kinds
    # only, which notation accepts and never matches.
    trusted_identities: tuple[tuple[tuple[str, str], ...], ...] | None = None

    def stores(self, kind: str) -> tuple[TrustStoreRef, ...]:
        return tuple(s for s in self.trust_stores if s.type == kind)

    def trusts_subject(self, subject: Mapping[str, str]) -> bool:
        """Whether a signing certificate whose subject reads as `subject` (`parse_distinguished_name` of
        its Go string form) is a trusted identity: all attributes of some identity have these values."""
        if self.trusted_identities is None:
            return True
        return any(is_subset_dn(dict(identity), subject) for identity in self.trusted_identities)


@dataclass(frozen=True, slots=True)
class TrustPolicyDocument:
    policies: tuple[TrustPolicy, ...]
    by_scope: Mapping[str, TrustPolicy] = field(default_factory=dict)
    wildcard: TrustPolicy | None = None

    def policy_for(self, repository: str) -> TrustPolicy | None:
        """The policy for `registry/repository`: an exact scope wins over `*`; None when neither applies."""
        return self.by_scope.get(repository, self.wildcard)


def _ldap_unescape(raw: str) -> str:
    """One type or value as go-ldap v3.4.10 reads it: spaces (only spaces) trimmed at both ends, except an
    escaped trailing space; `\\` before ` "#+,;<=>\\` keeps that character, before two hex digits makes that
    byte; anything else after `\\` is an error. Quotes are ordinary characters (`"Acme"` keeps them)."""
    text = raw.strip(" ")
    if text.endswith("\\") and raw.endswith(" "):
        text += " "
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "\\":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError(f"corrupted escape at the end of {text!r}")
        if text[i + 1] in _LDAP_SPECIALS:
            out += text[i + 1].encode()
            i += 2
            continue
        pair = text[i + 1 : i + 3]
        if i + 2 >= n or not re.fullmatch(r"[0-9A-Fa-f]{2}", pair):
            raise ValueError(f"invalid escape \\{pair} in {text!r}")
        out.append(int(pair, 16))
        i += 3
    return out.decode("utf-8", "surrogateescape")


_LDAP_SPECIALS = frozenset(' "#+,;<=>\\')


def _ldap_parse_dn(text: str) -> list[list[tuple[str, str]]]:
    """A DN split as go-ldap v3.4.10's ParseDN splits it: RDNs separated by `,` or `;`, attributes of one RDN
    by `+`, each `type=value` at its first unescaped `=`; attribute types kept as written (case included)."""
    if not text.strip():
        return []
    rdns: list[list[tuple[str, str]]] = []
    rdn: list[tuple[str, str]] = []
    attr_type = ""
    start = 0
    escaping = False
    for i, c in enumerate(text):
        if escaping:
            escaping = False
        elif c == "\\":
            escaping = True
        elif c == "=" and not attr_type:
            attr_type = _ldap_unescape(text[start:i])
            start = i + 1
        elif c in ",+;":
            if not attr_type:
                raise ValueError("incomplete type, value pair")
            rdn.append((attr_type, _ldap_value(text[start:i])))
            attr_type, start = "", i + 1
            if c != "+":
                rdns.append(rdn)
                rdn = []
    if not attr_type:
        raise ValueError("the DN ends with an incomplete type, value pair")
    rdn.append((attr_type, _ldap_value(text[start:])))
    rdns.append(rdn)
    return rdns


def _ldap_value(raw: str) -> str:
    if raw.startswith("#"):  # a hex-encoded BER value; notation refuses every DN containing "=#" before this
        raise ValueError("hex-encoded (#) values are not supported")
    return _ldap_unescape(raw)


def parse_distinguished_name(text: str) -> dict[str, str]:
    """A DN read as notation-go 1.3.2 reads trusted identities and leaf subjects: `type: value`.

    The rules: a DN containing `=#` anywhere is refused; go-ldap's split (see `_ldap_parse_dn`: `,` and `;`
    separate RDNs, quotes are part of the value, types keep their case); a multi-valued RDN (`C=US+ST=WA`) is
    refused; `S` is an alias of `ST` (exactly `S`: `s` and `st` are types of their own, which no certificate
    subject has); a type given twice is refused unless its earlier value was empty; C, ST and O must have
    non-empty values.
    """
    if "=#" in text:
        raise ValueError('notation does not support x509.subject identities containing "=#"')
    attributes: dict[str, str] = {}
    for rdn in _ldap_parse_dn(text):
        if len(rdn) > 1:
            raise ValueError("multi-valued RDN attributes (joined by '+') are not supported")
        for attr_type, value in rdn:
            attr_type = "ST" if attr_type == "S" else attr_type
            if attributes.get(attr_type, ""):
                raise ValueError(f"the attribute {attr_type} appears twice")
            attributes[attr_type] = value
    missing = [t for t in REQUIRED_DN_ATTRIBUTES if not attributes.get(t, "")]
    if missing:
        raise ValueError(f"must name at least C, ST (or S) and O (missing {', '.join(missing)})")
    return attributes


def is_subset_dn(identity: Mapping[str, str], subject: Mapping[str, str]) -> bool:
    """Whether every attribute of `identity` has the same value in `subject` (an attribute absent there
    counts as the empty value, as in notation)."""
    return all(subject.get(key, "") == value for key, value in identity.items())


def parse_trust_store_ref(text: str) -> TrustStoreRef:
    """`ca:NAME`, `signingAuthority:NAME` or `tsa:NAME` (NAME: letters, digits, `_`, `.`, `-`, as notation's
    store names), the form a policy's `trustStores` and the verifier's inline `trustStores` use."""
    kind, sep, store = text.partition(":")
    if not sep or kind not in STORE_TYPES or not _STORE_NAME.fullmatch(store):
        raise ValueError(f"{text!r}: expected ca:NAME, signingAuthority:NAME or tsa:NAME")
    return TrustStoreRef(kind, store)  # type: ignore[arg-type]


def _strings(value: object, path: str, *, allow_empty: bool = False, allow_twice: bool = False) -> list[str]:
    if value is None and allow_empty:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(path, "expected a list of strings")
    if not value and not allow_empty:
        raise PolicyError(path, "must not be empty")
    if not allow_twice and len(set(value)) != len(value):
        raise PolicyError(path, "lists a value twice")
    return list(value)


def _scope(scope: str, path: str) -> str:
    if scope == "*":
        return scope
    # A fully qualified repository: registry (with an optional port) / path, no tag or digest.
    if "@" in scope or ":" in scope.rpartition("/")[2] or "/" not in scope:
        raise PolicyError(path, f"{scope!r} is not a repository (registry/repository, no tag or digest)")
    if "*" in scope:
        raise PolicyError(path, "wildcards other than a lone '*' are not supported")
    registry, _, repository = scope.partition("/")
    if not registry or not repository or not re.fullmatch(r"[a-z0-9]+(?:[._\-/]+[a-z0-9]+)*", repository):
        raise PolicyError(path, f"{scope!r} is not a valid repository")
    return scope


def _level(value: object, path: str) -> VerificationLevel:
    if not isinstance(value, dict):
        raise PolicyError(path, "expected an object with a level")
    unknown = sorted(set(value) - {"level", "override", "verifyTimestamp"})
    if unknown:
        raise PolicyError(f"{path}.{unknown[0]}", "unknown field")
    name = value.get("level")
    if not isinstance(name, str) or name not in LEVELS:
        raise PolicyError(f"{path}.level", f"must be one of {', '.join(LEVELS)}, got {name!r}")
    actions: dict[Validation, Action] = dict(LEVELS[name])
    override = value.get("override") or {}
    if not isinstance(override, dict):
        raise PolicyError(f"{path}.override", "expected an object of validation: action")
    if override and name == "skip":
        raise PolicyError(f"{path}.override", "has no meaning with level skip")
    for validation, action in override.items():
        where = f"{path}.override.{validation}"
        if validation not in VALIDATIONS:
            raise PolicyError(where, f"unknown validation (known: {', '.join(VALIDATIONS)})")
        if action not in ("enforce", "log", "skip"):
            raise PolicyError(where, f"action must be enforce, log or skip, got {action!r}")
        if validation == "integrity":
            raise PolicyError(where, "integrity validation cannot be overridden")
        if validation == "authenticity" and action == "skip":
            raise PolicyError(where, "authenticity validation cannot be skipped")
        actions[validation] = action
    verify_timestamp = value.get("verifyTimestamp", "always")
    if verify_timestamp not in ("always", "afterCertExpiry"):
        raise PolicyError(f"{path}.verifyTimestamp", "must be always or afterCertExpiry")
    return VerificationLevel(name=name, actions=actions, verify_timestamp=verify_timestamp)


def _policy(value: object, path: str) -> TrustPolicy:
    if not isinstance(value, dict):
        raise PolicyError(path, "expected an object")
    known = {"name", "registryScopes", "signatureVerification", "trustStores", "trustedIdentities"}
    unknown = sorted(set(value) - known)
    if unknown:
        raise PolicyError(f"{path}.{unknown[0]}", "unknown field")
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PolicyError(f"{path}.name", "required")
    scopes = _strings(value.get("registryScopes"), f"{path}.registryScopes")
    scopes = [_scope(s, f"{path}.registryScopes[{i}]") for i, s in enumerate(scopes)]
    if "*" in scopes and len(scopes) > 1:
        raise PolicyError(f"{path}.registryScopes", "'*' must be the only scope of its policy")
    level = _level(value.get("signatureVerification"), f"{path}.signatureVerification")
    stores_raw = _strings(value.get("trustStores"), f"{path}.trustStores", allow_empty=True)
    identities_raw = _strings(
        value.get("trustedIdentities"), f"{path}.trustedIdentities", allow_empty=True, allow_twice=True
    )
    if level.name == "skip":
        if stores_raw or identities_raw:
            raise PolicyError(path, "level skip takes no trustStores or trustedIdentities")
        return TrustPolicy(name=name, registry_scopes=tuple(scopes), level=level)
    if not stores_raw:
        raise PolicyError(f"{path}.trustStores", "required unless the level is skip")
    if not identities_raw:
        raise PolicyError(f"{path}.trustedIdentities", "required unless the level is skip")
    stores: list[TrustStoreRef] = []
    for i, entry in enumerate(stores_raw):
        try:
            stores.append(parse_trust_store_ref(entry))
        except ValueError as e:
            raise PolicyError(f"{path}.trustStores[{i}]", str(e)) from e
    if not any(s.type in ("ca", "signingAuthority") for s in stores):
        raise PolicyError(
            f"{path}.trustStores", "needs a ca or signingAuthority store to verify signers with"
        )
    identities: list[tuple[tuple[str, str], ...]] | None = []
    if "*" in identities_raw:
        if len(identities_raw) > 1:
            raise PolicyError(f"{path}.trustedIdentities", "'*' must be the only trusted identity")
        identities = None
    else:
        assert identities is not None
        parsed: list[tuple[int, dict[str, str]]] = []
        for i, entry in enumerate(identities_raw):
            where = f"{path}.trustedIdentities[{i}]"
            kind, sep, dn = entry.partition(":")
            if not sep:
                raise PolicyError(where, "expected 'x509.subject:<distinguished name>' or '*'")
            if kind != "x509.subject":
                continue  # as notation: identities of other kinds are accepted and never match
            if not dn:
                raise PolicyError(where, "x509.subject: without a distinguished name")
            try:
                parsed.append((i, parse_distinguished_name(dn)))
            except ValueError as e:
                raise PolicyError(where, f"invalid distinguished name: {e}") from e
        for i, first in parsed:
            for j, second in parsed:
                if i != j and is_subset_dn(first, second):
                    raise PolicyError(
                        f"{path}.trustedIdentities[{i}]", f"overlaps with trustedIdentities[{j}]"
                    )
        identities = [tuple(dn.items()) for _, dn in parsed]
    return TrustPolicy(
        name=name,
        registry_scopes=tuple(scopes),
        level=level,
        trust_stores=tuple(stores),
        trusted_identities=tuple(identities) if identities is not None else None,
    )


def parse_trust_policy(data: bytes | Mapping[str, Any]) -> TrustPolicyDocument:
    """Validate a trust policy document (bytes of trustpolicy.json, or the parsed object)."""
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_POLICY_BYTES:
            raise PolicyError("", f"trust policy larger than {MAX_POLICY_BYTES} bytes")
        try:
            doc: Any = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PolicyError("", f"not valid JSON: {e}") from e
    else:
        doc = data
    if not isinstance(doc, Mapping):
        raise PolicyError("", "expected a JSON object")
    unknown = sorted(set(doc) - {"version", "trustPolicies"})
    if unknown:
        raise PolicyError(unknown[0], "unknown field")
    if doc.get("version") != "1.0":
        raise PolicyError("version", f"only version 1.0 is supported, got {doc.get('version')!r}")
    raw = doc.get("trustPolicies")
    if not isinstance(raw, list) or not raw:
        raise PolicyError("trustPolicies", "expected a non-empty list")
    policies = [_policy(p, f"trustPolicies[{i}]") for i, p in enumerate(raw)]
    names: set[str] = set()
    by_scope: dict[str, TrustPolicy] = {}
    wildcard: TrustPolicy | None = None
    for i, policy in enumerate(policies):
        if policy.name in names:
            raise PolicyError(f"trustPolicies[{i}].name", f"duplicate policy name {policy.name!r}")
        names.add(policy.name)
        for j, scope in enumerate(policy.registry_scopes):
            where = f"trustPolicies[{i}].registryScopes[{j}]"
            if scope == "*":
                if wildcard is not None:
                    raise PolicyError(where, f"'*' is already the scope of policy {wildcard.name!r}")
                wildcard = policy
            elif scope in by_scope:
                raise PolicyError(where, f"{scope!r} is already a scope of policy {by_scope[scope].name!r}")
            else:
                by_scope[scope] = policy
    return TrustPolicyDocument(policies=tuple(policies), by_scope=by_scope, wildcard=wildcard)
