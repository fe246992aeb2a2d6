"""Notation trust policy documents: validation with field paths, policy selection, levels, identities."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifiers.notation.trustpolicy import (
    LEVELS,
    PolicyError,
    parse_distinguished_name,
    parse_trust_policy,
    parse_trust_store_ref,
)

IDENTITY = "x509.subject: C=US, ST=WA, L=Seattle, O=Example, CN=Builder"


def policy(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "shop",
        "registryScopes": ["registry.example.com/shop/frontend"],
        "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:shop"],
        "trustedIdentities": [IDENTITY],
    }
    base.update(overrides)
    return base


def document(*policies: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1.0", "trustPolicies": list(policies)}


def test_a_valid_document_from_bytes() -> None:
    doc = parse_trust_policy(
        json.dumps(document(policy(), policy(name="all", registryScopes=["*"]))).encode()
    )
    shop = doc.policy_for("registry.example.com/shop/frontend")
    assert shop is not None and shop.name == "shop"
    other = doc.policy_for("registry.example.com/shop/backend")
    assert other is not None and other.name == "all"
    assert [str(s) for s in shop.trust_stores] == ["ca:shop"]
    assert shop.level.action("revocation") == "enforce"


def test_no_wildcard_means_no_policy_for_other_repositories() -> None:
    doc = parse_trust_policy(document(policy()))
    assert doc.policy_for("registry.example.com/other") is None


@pytest.mark.parametrize("level", ["strict", "permissive", "audit", "skip"])
def test_level_matrix(level: str) -> None:
    extra: dict[str, Any] = {"trustStores": [], "trustedIdentities": []} if level == "skip" else {}
    doc = parse_trust_policy(document(policy(signatureVerification={"level": level}, **extra)))
    actions = doc.policies[0].level.actions
    assert actions == LEVELS[level]
    assert actions["integrity"] == ("skip" if level == "skip" else "enforce")
    assert actions["authenticity"] == {"strict": "enforce", "permissive": "enforce"}.get(
        level, actions["expiry"]
    )


def test_overrides_and_verify_timestamp() -> None:
    verification = {
        "level": "strict",
        "override": {"revocation": "log", "expiry": "skip"},
        "verifyTimestamp": "afterCertExpiry",
    }
    doc = parse_trust_policy(document(policy(signatureVerification=verification)))
    level = doc.policies[0].level
    assert level.action("revocation") == "log"
    assert level.action("expiry") == "skip"
    assert level.action("authenticity") == "enforce"
    assert level.verify_timestamp == "afterCertExpiry"


BAD: list[tuple[str, Any, str, str]] = [
    ("version", {"version": "2.0"}, "version", "only version 1.0"),
    ("no policies", {"trustPolicies": []}, "trustPolicies", "non-empty"),
    ("unknown top field", {"extra": 1}, "extra", "unknown field"),
    ("no name", {"policy": {"name": ""}}, "trustPolicies[0].name", "required"),
    (
        "tagged scope",
        {"policy": {"registryScopes": ["reg.io/app:1"]}},
        "trustPolicies[0].registryScopes[0]",
        "not a repository",
    ),
    (
        "digest scope",
        {"policy": {"registryScopes": ["reg.io/app@sha256:" + "a" * 64]}},
        "trustPolicies[0].registryScopes[0]",
        "not a repository",
    ),
    (
        "registry only",
        {"policy": {"registryScopes": ["reg.io"]}},
        "trustPolicies[0].registryScopes[0]",
        "not a repository",
    ),
    (
        "partial wildcard",
        {"policy": {"registryScopes": ["reg.io/*"]}},
        "trustPolicies[0].registryScopes[0]",
        "wildcards",
    ),
    (
        "star with others",
        {"policy": {"registryScopes": ["*", "reg.io/a"]}},
        "trustPolicies[0].registryScopes",
        "only scope",
    ),
    (
        "unknown level",
        {"policy": {"signatureVerification": {"level": "lenient"}}},
        "trustPolicies[0].signatureVerification.level",
        "must be one of",
    ),
    (
        "integrity override",
        {"policy": {"signatureVerification": {"level": "audit", "override": {"integrity": "log"}}}},
        "trustPolicies[0].signatureVerification.override.integrity",
        "cannot be overridden",
    ),
    (
        "authenticity skip",
        {"policy": {"signatureVerification": {"level": "strict", "override": {"authenticity": "skip"}}}},
        "trustPolicies[0].signatureVerification.override.authenticity",
        "cannot be skipped",
    ),
    (
        "unknown validation",
        {"policy": {"signatureVerification": {"level": "strict", "override": {"freshness": "log"}}}},
        "trustPolicies[0].signatureVerification.override.freshness",
        "unknown validation",
    ),
    (
        "bad action",
        {"policy": {"signatureVerification": {"level": "strict", "override": {"expiry": "warn"}}}},
        "trustPolicies[0].signatureVerification.override.expiry",
        "action must be",
    ),
    (
        "bad verifyTimestamp",
        {"policy": {"signatureVerification": {"level": "strict", "verifyTimestamp": "never"}}},
        "trustPolicies[0].signatureVerification.verifyTimestamp",
        "always or afterCertExpiry",
    ),
    ("no stores", {"policy": {"trustStores": []}}, "trustPolicies[0].trustStores", "required"),
    (
        "bad store",
        {"policy": {"trustStores": ["pem:shop"]}},
        "trustPolicies[0].trustStores[0]",
        "expected ca:NAME",
    ),
    (
        "store name too long for a directory",
        {"policy": {"trustStores": ["ca:shop", "ca:" + "s" * 256]}},
        "trustPolicies[0].trustStores[1]",
        "expected ca:NAME",
    ),
    (
        "tsa only",
        {"policy": {"trustStores": ["tsa:ts"]}},
        "trustPolicies[0].trustStores",
        "ca or signingAuthority",
    ),
    (
        "no identities",
        {"policy": {"trustedIdentities": []}},
        "trustPolicies[0].trustedIdentities",
        "required",
    ),
    (
        "star with identity",
        {"policy": {"trustedIdentities": ["*", IDENTITY]}},
        "trustPolicies[0].trustedIdentities",
        "only trusted identity",
    ),
    (
        "not an identity",
        {"policy": {"trustedIdentities": ["C=US, ST=WA, O=A"]}},
        "trustPolicies[0].trustedIdentities[0]",
        "x509.subject",
    ),
    (
        "dn without ST",
        {"policy": {"trustedIdentities": ["x509.subject: C=US, O=Example, CN=a"]}},
        "trustPolicies[0].trustedIdentities[0]",
        "missing ST",
    ),
    (
        "dn repeats a type",
        {"policy": {"trustedIdentities": ["x509.subject: C=US, ST=WA, O=A, O=B"]}},
        "trustPolicies[0].trustedIdentities[0]",
        "appears twice",
    ),
    (
        "broken dn",
        {"policy": {"trustedIdentities": ["x509.subject: C=US, ST"]}},
        "trustPolicies[0].trustedIdentities[0]",
        "invalid distinguished name",
    ),
    (
        "skip with stores",
        {"policy": {"signatureVerification": {"level": "skip"}}},
        "trustPolicies[0]",
        "no trustStores",
    ),
    (
        "duplicate name",
        {"second": {"registryScopes": ["reg.io/other"]}},
        "trustPolicies[1].name",
        "duplicate",
    ),
    ("scope twice", {"second": {"name": "b"}}, "trustPolicies[1].registryScopes[0]", "already a scope"),
    (
        "two wildcards",
        {"policy": {"registryScopes": ["*"]}, "second": {"name": "b", "registryScopes": ["*"]}},
        "trustPolicies[1].registryScopes[0]",
        "already the scope",
    ),
]


@pytest.mark.parametrize(
    ("change", "path", "fragment"), [(c, p, f) for _, c, p, f in BAD], ids=[i for i, *_ in BAD]
)
def test_invalid_documents_name_the_field(change: dict[str, Any], path: str, fragment: str) -> None:
    change = copy.deepcopy(change)
    first = policy(**change.pop("policy", {}))
    doc = document(first)
    if "second" in change:
        doc["trustPolicies"].append(policy(**change.pop("second")))
    doc.update(change)
    with pytest.raises(PolicyError) as info:
        parse_trust_policy(doc)
    assert info.value.path == path
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("text", "kind", "name"),
    [
        ("ca:shop", "ca", "shop"),
        ("signingAuthority:Shop_1.signer-2", "signingAuthority", "Shop_1.signer-2"),
        ("tsa:" + "t" * 255, "tsa", "t" * 255),
    ],
)
def test_trust_store_references(text: str, kind: str, name: str) -> None:
    ref = parse_trust_store_ref(text)
    assert (ref.type, ref.name) == (kind, name)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    ["", "ca", "ca:", ":shop", "CA:shop", "x509:shop", "ca:shop:2", "ca:a/b", "ca: shop", "ca:" + "s" * 256],
)
def test_invalid_trust_store_references(text: str) -> None:
    with pytest.raises(ValueError, match="expected ca:NAME, signingAuthority:NAME or tsa:NAME"):
        parse_trust_store_ref(text)


def test_not_json() -> None:
    with pytest.raises(PolicyError, match="not valid JSON"):
        parse_trust_policy(b"{")


# Each rule of notation-go 1.3.2's `x509.subject:` reading (go-ldap v3.4.10 ParseDN plus notation's own).
@pytest.mark.parametrize(
    ("text", "attributes"),
    [
        pytest.param("C=US,ST=WA,O=A", {"C": "US", "ST": "WA", "O": "A"}, id="plain"),
        pytest.param(" C = US ,  ST=WA , O=A ", {"C": "US", "ST": "WA", "O": "A"}, id="spaces-trimmed"),
        pytest.param("C=US;ST=WA;O=A", {"C": "US", "ST": "WA", "O": "A"}, id="semicolon-separates"),
        pytest.param("C=US, S=WA, O=A", {"C": "US", "ST": "WA", "O": "A"}, id="S-is-ST"),
        pytest.param(
            'C=US, ST=WA, O="Acme Inc"', {"C": "US", "ST": "WA", "O": '"Acme Inc"'}, id="quotes-kept"
        ),
        pytest.param(
            r"C=US, ST=WA, O=a\,b\+c\\d\;e", {"C": "US", "ST": "WA", "O": "a,b+c\\d;e"}, id="escapes"
        ),
        pytest.param(r"C=US, ST=WA, O=\41bc", {"C": "US", "ST": "WA", "O": "Abc"}, id="hex-escape"),
        pytest.param(r"C=US, ST=WA, O=\c3\a9", {"C": "US", "ST": "WA", "O": "é"}, id="utf8-hex-escapes"),
        pytest.param("C=US, ST=WA, O=trail\\ ", {"C": "US", "ST": "WA", "O": "trail "}, id="escaped-space"),
        pytest.param("C=US, ST=WA, O=a=b", {"C": "US", "ST": "WA", "O": "a=b"}, id="equals-in-value"),
        pytest.param(
            "C=US, ST=WA, O=A, cn=x", {"C": "US", "ST": "WA", "O": "A", "cn": "x"}, id="type-case-kept"
        ),
        pytest.param("C=US, ST=WA, O=, O=A", {"C": "US", "ST": "WA", "O": "A"}, id="empty-then-set"),
        pytest.param("C=US, ST=WA, O=A, CN=", {"C": "US", "ST": "WA", "O": "A", "CN": ""}, id="empty-value"),
    ],
)
def test_distinguished_names(text: str, attributes: dict[str, str]) -> None:
    assert parse_distinguished_name(text) == attributes


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "at least C, ST", id="empty"),
        pytest.param("c=US, st=WA, o=A", "at least C, ST", id="lower-case-types"),
        pytest.param("C=US, s=WA, O=A", "missing ST", id="lower-s-is-no-alias"),
        pytest.param("C=US+ST=WA, O=A", "multi-valued", id="multi-valued"),
        pytest.param("C=US, ST=WA, O=A, OU=a, OU=b", "appears twice", id="repeated"),
        pytest.param("C=US, ST=WA, S=OR, O=A", "appears twice", id="S-and-ST"),
        pytest.param("C=US, ST=WA, O=", "missing O", id="empty-mandatory"),
        pytest.param("C=US, ST=WA, O=#0c0141", '"=#"', id="hex-value"),
        pytest.param("C=US, ST=WA, O=A, 0.9.2342.19200300.100.1.25=#1603636f6d", '"=#"', id="hex-dc"),
        pytest.param('C=US, ST=WA, O="a, b"', "incomplete type", id="comma-in-quotes"),
        pytest.param("C=US, ST=WA, O=A,", "incomplete type", id="trailing-comma"),
        pytest.param("C=US,,ST=WA, O=A", "incomplete type", id="empty-rdn"),
        pytest.param("C=US, ST=WA, O=a\\", "escape", id="dangling-escape"),
        pytest.param("C=US, ST=WA, O=a\\zz", "escape", id="bad-escape"),
        pytest.param("C", "incomplete type", id="no-equals"),
    ],
)
def test_invalid_distinguished_names(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_distinguished_name(text)


@pytest.mark.parametrize(
    ("identities", "error"),
    [
        pytest.param(["x509.subject: C=US, ST=WA, O=A"], None, id="ok"),
        pytest.param(["x509.subject:C=US;S=WA;O=A"], None, id="no-space-S-semicolon"),
        pytest.param(
            ["x509.subject: C=US, ST=WA, O=A", "other:thing", "other:thing"], None, id="other-kinds"
        ),
        pytest.param(["x509.subject: c=US, st=WA, o=A"], "invalid distinguished name", id="lower-case"),
        pytest.param(["x509.subject: C=US+ST=WA, O=A"], "multi-valued", id="multi-valued"),
        pytest.param(["x509.subject:"], "without a distinguished name", id="empty-dn"),
        pytest.param([""], "expected", id="empty"),
        pytest.param(["C=US, ST=WA, O=A"], "expected", id="no-prefix"),
        pytest.param(["*", "x509.subject: C=US, ST=WA, O=A"], "only trusted identity", id="star-and-dn"),
        pytest.param(
            ["x509.subject: C=US, ST=WA, O=A", "x509.subject: C=US, ST=WA, O=A, CN=b"],
            "overlaps",
            id="overlap",
        ),
        pytest.param(
            ["x509.subject: C=US, ST=WA, O=A", "x509.subject: C=US, S=WA, O=A"],
            "overlaps",
            id="same-via-alias",
        ),
    ],
)
def test_trusted_identities_accepted_and_refused(identities: list[str], error: str | None) -> None:
    doc = document(policy(trustedIdentities=identities))
    if error is None:
        parse_trust_policy(doc)
    else:
        with pytest.raises(PolicyError, match=re.escape(error)):
            parse_trust_policy(doc)


@pytest.mark.parametrize(
    ("identity", "subject", "trusted"),
    [
        ("C=US, ST=WA, O=Example", "C=US, ST=WA, L=Seattle, O=Example, CN=Builder", True),
        ("C=US, ST=WA, O=Example, CN=Builder", "CN=Builder, O=Example, ST=WA, C=US", True),
        ("C=US, ST=WA, O=Example, CN=Builder", "C=US, ST=WA, O=Example, CN=Other", False),
        ("C=US, ST=WA, O=Example", "C=US, ST=OR, O=Example", False),
        (r"C=US, ST=WA, O=Example\, Inc.", "C=US, ST=WA, O=Example\\, Inc.", True),
        (r"C=US, ST=WA, O=Example\, Inc.", "C=US, ST=WA, O=Example", False),
        ("C=US; S=WA; O=Example", "C=US, ST=WA, O=Example, CN=Builder", True),
        ('C=US, ST=WA, O="Example"', "C=US, ST=WA, O=Example", False),
        ("C=US, ST=WA, O=Example, cn=Builder", "C=US, ST=WA, O=Example, CN=Builder", False),
        ("C=US, ST=WA, O=Example, CN=", "C=US, ST=WA, O=Example", True),
        ("C=US, ST=WA, O=Example, CN=", "C=US, ST=WA, O=Example, CN=Builder", False),
    ],
)
def test_trusted_identity_is_a_subset_of_the_subject(identity: str, subject: str, trusted: bool) -> None:
    doc = parse_trust_policy(document(policy(trustedIdentities=[f"x509.subject: {identity}"])))
    assert doc.policies[0].trusts_subject(parse_distinguished_name(subject)) is trusted


def test_star_trusts_any_subject() -> None:
    doc = parse_trust_policy(document(policy(trustedIdentities=["*"])))
    assert doc.policies[0].trusts_subject({"CN": "anyone"})


def test_identities_of_other_kinds_only_never_match() -> None:
    doc = parse_trust_policy(document(policy(trustedIdentities=["other:thing"])))
    assert doc.policies[0].trusted_identities == ()
    assert not doc.policies[0].trusts_subject({"C": "US", "ST": "WA", "O": "A"})


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=80))
def test_dn_parser_never_raises_anything_else(text: str) -> None:
    try:
        parse_distinguished_name(text)
    except ValueError:
        pass


@settings(deadline=None, max_examples=200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3),
        max_leaves=10,
    )
)
def test_documents_never_raise_anything_but_policy_error(value: Any) -> None:
    for doc in (value, {"version": "1.0", "trustPolicies": [value]}):
        try:
            parse_trust_policy(doc if isinstance(doc, dict) else {"version": "1.0", "trustPolicies": doc})
        except PolicyError:
            pass
