"""Verdicts: three-valued k-of-n combination and the value schema (version 1) that Rego reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider.config import Policy
from provider.outcome import Decided, encode_value
from provider.verdict import (
    SCHEMA_VERSION,
    Decision,
    Pending,
    VerifierOutcome,
    combine,
    denial_value,
    verdict_value,
)
from verifiers.base import Report, Undecided
from verifiers.reference import Key, parse_key

DIGEST = "sha256:" + "ab" * 32


def passed(name: str) -> VerifierOutcome:
    return VerifierOutcome(name, "test", Report.ok("ok", f"{name} passed", signer="alice"))


def failed(name: str) -> VerifierOutcome:
    return VerifierOutcome(name, "test", Report.fail(f"{name}_failed", f"{name} found a problem"))


def undecided(name: str, reason: str = "registry_unavailable") -> VerifierOutcome:
    return VerifierOutcome(name, "test", None, Undecided(reason, f"{name} could not reach the registry"))


def policy(mode: str, outcomes: Sequence[VerifierOutcome], threshold: int | None = None) -> Policy:
    names = tuple(o.name for o in outcomes)
    k = {"allOf": len(names), "anyOf": 1}.get(mode, threshold)
    assert k is not None
    return Policy("p", ("*",), None, mode, names, k)


ALLOWED = Decision(allowed=True)
DENIED = Decision(allowed=False)

# mode, threshold (for "threshold"), outcomes, expected: ALLOWED, DENIED or Pending (as the class)
CASES: list[tuple[str, str, int | None, list[VerifierOutcome], Decision | type[Pending]]] = [
    ("allOf all passed", "allOf", None, [passed("a"), passed("b")], ALLOWED),
    ("allOf one failed", "allOf", None, [passed("a"), failed("b")], DENIED),
    ("allOf failure decides over undecided", "allOf", None, [failed("a"), undecided("b")], DENIED),
    ("allOf undecided then failure", "allOf", None, [undecided("a"), passed("b"), failed("c")], DENIED),
    ("allOf passes and one undecided", "allOf", None, [passed("a"), undecided("b"), passed("c")], Pending),
    ("allOf alone undecided", "allOf", None, [undecided("a")], Pending),
    ("anyOf one pass", "anyOf", None, [failed("a"), passed("b")], ALLOWED),
    ("anyOf one pass and undecided", "anyOf", None, [undecided("a"), passed("b")], ALLOWED),
    ("anyOf all failed", "anyOf", None, [failed("a"), failed("b")], DENIED),
    ("anyOf failed and undecided", "anyOf", None, [failed("a"), undecided("b")], Pending),
    ("2 of 3: pass, fail, undecided", "threshold", 2, [passed("a"), failed("b"), undecided("c")], Pending),
    ("2 of 3: two fails", "threshold", 2, [passed("a"), failed("b"), failed("c")], DENIED),
    ("2 of 3: two fails and undecided", "threshold", 2, [failed("a"), failed("b"), undecided("c")], DENIED),
    ("2 of 3: two passes and undecided", "threshold", 2, [passed("a"), undecided("b"), passed("c")], ALLOWED),
    ("2 of 3: all undecided", "threshold", 2, [undecided("a"), undecided("b"), undecided("c")], Pending),
    ("3 of 3: all passed", "threshold", 3, [passed("a"), passed("b"), passed("c")], ALLOWED),
]


@pytest.mark.parametrize(
    ("mode", "k", "outcomes", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_combine(
    mode: str, k: int | None, outcomes: list[VerifierOutcome], expected: Decision | type[Pending]
) -> None:
    result = combine(policy(mode, outcomes, k), outcomes)
    if expected is Pending:
        assert isinstance(result, Pending)
    else:
        assert result == expected


def test_pending_names_every_undecided_verifier_and_the_first_reason() -> None:
    outcomes = [passed("a"), undecided("b", "registry_rate_limited"), undecided("c"), passed("d")]
    result = combine(policy("allOf", outcomes), outcomes)
    assert isinstance(result, Pending)
    assert result.reason == "registry_rate_limited"
    assert "b: b could not reach the registry" in result.message
    assert "c: c could not reach the registry" in result.message
    assert "a:" not in result.message and "d:" not in result.message


@settings(deadline=None)
@given(
    counts=st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)).filter(lambda c: sum(c) > 0),
    data=st.data(),
)
def test_combine_is_three_valued_k_of_n(counts: tuple[int, int, int], data: st.DataObject) -> None:
    n_passed, n_failed, n_undecided = counts
    k = data.draw(st.integers(1, sum(counts)), label="k")
    outcomes = (
        [passed(f"p{i}") for i in range(n_passed)]
        + [failed(f"f{i}") for i in range(n_failed)]
        + [undecided(f"u{i}") for i in range(n_undecided)]
    )
    outcomes = data.draw(st.permutations(outcomes), label="order")
    result = combine(policy("threshold", outcomes, k), outcomes)
    if n_passed >= k:
        assert result == ALLOWED
    elif n_passed + n_undecided < k:
        assert result == DENIED
    else:
        assert isinstance(result, Pending)
        assert result.reason == "registry_unavailable"


# --- value schema -----------------------------------------------------------------------------------

SCHEMA: dict[str, type] = {
    "schemaVersion": int,
    "allowed": bool,
    "reason": str,
    "reference": str,
    "digest": str,
    "namespace": str,
    "policy": str,
    "namespacePolicy": str,
    "verifiers": list,
    "reasons": list,
}
VERIFIER_SCHEMA: dict[str, type] = {
    "name": str,
    "type": str,
    "passed": bool,
    "reason": str,
    "message": str,
    "details": dict,
}


def check_schema(value: dict[str, Any]) -> None:
    assert set(value) == set(SCHEMA)
    for field, kind in SCHEMA.items():
        assert isinstance(value[field], kind), field
    assert value["schemaVersion"] == SCHEMA_VERSION == 1
    for entry in value["verifiers"]:
        assert set(entry) == set(VERIFIER_SCHEMA)
        for field, kind in VERIFIER_SCHEMA.items():
            assert isinstance(entry[field], kind), field
    assert all(isinstance(r, str) and r for r in value["reasons"])
    assert json.loads(json.dumps(value)) == value  # JSON as it is


KEYS = [
    pytest.param(parse_key("[prod]reg.example.com/app:1"), "prod", id="namespaced"),
    pytest.param(parse_key("nginx"), "", id="no-namespace"),
]


@pytest.mark.parametrize(("key", "namespace"), KEYS)
def test_allowed_verdict(key: Key, namespace: str) -> None:
    outcomes = [passed("a"), failed("b")]
    value = verdict_value(key, DIGEST, policy("anyOf", outcomes), outcomes, allowed=True)
    check_schema(value)
    assert value["allowed"] is True
    assert value["reason"] == "verified"
    assert value["reasons"] == []
    assert value["reference"] == str(key.reference)
    assert value["namespace"] == namespace
    assert value["digest"] == DIGEST
    assert value["policy"] == "p"
    assert value["namespacePolicy"] == ""
    assert value["verifiers"] == [
        {"name": "a", "type": "test", "passed": True, "reason": "ok", "message": "a passed",
         "details": {"signer": "alice"}},
        {"name": "b", "type": "test", "passed": False, "reason": "b_failed", "message": "b found a problem",
         "details": {}},
    ]  # fmt: skip


@pytest.mark.parametrize(("key", "namespace"), KEYS)
def test_denied_verdict(key: Key, namespace: str) -> None:
    outcomes = [passed("a"), failed("b"), undecided("c", "registry_rate_limited")]
    the_policy = policy("threshold", outcomes, 2)
    value = verdict_value(key, DIGEST, the_policy, outcomes, allowed=False)
    check_schema(value)
    assert value["allowed"] is False
    assert value["reason"] == "policy_not_satisfied"
    assert value["namespace"] == namespace
    reasons = value["reasons"]
    assert len(reasons) == 3  # the policy, then one per verifier that did not pass
    assert f"{key.reference.name}@{DIGEST}" in reasons[0]
    assert "at least 2 of [a, b, c]" in reasons[0]
    assert "(1 passed)" in reasons[0]
    assert reasons[1] == "b: b found a problem [b_failed]"
    assert reasons[2] == "c: could not be checked: c could not reach the registry [registry_rate_limited]"
    undecided_entry = value["verifiers"][2]
    assert undecided_entry == {
        "name": "c",
        "type": "test",
        "passed": False,
        "reason": "registry_rate_limited",
        "message": "c could not reach the registry",
        "details": {"undecided": True},
    }


@settings(deadline=None, max_examples=50)
@given(
    kinds=st.lists(st.sampled_from(["passed", "failed", "undecided"]), min_size=1, max_size=6),
    allowed=st.booleans(),
)
def test_reasons_are_non_empty_iff_denied(kinds: list[str], allowed: bool) -> None:
    make = {"passed": passed, "failed": failed, "undecided": undecided}
    outcomes = [make[kind](f"v{i}") for i, kind in enumerate(kinds)]
    value = verdict_value(
        parse_key("reg.example.com/app:1"), DIGEST, policy("allOf", outcomes), outcomes, allowed
    )
    check_schema(value)
    assert value["allowed"] is allowed
    assert bool(value["reasons"]) is (not allowed)
    assert [v["name"] for v in value["verifiers"]] == [o.name for o in outcomes]
    assert [v["details"].get("undecided", False) for v in value["verifiers"]] == [
        k == "undecided" for k in kinds
    ]
    if not allowed:
        assert len(value["reasons"]) == 1 + sum(k != "passed" for k in kinds)


@pytest.mark.parametrize(
    ("reason", "digest", "policy_name"),
    [("manifest_not_found", "", ""), ("no_policy", DIGEST, ""), ("content_too_large", DIGEST, "default")],
)
def test_denial_value(reason: str, digest: str, policy_name: str) -> None:
    key = parse_key("[dev]localhost:5000/app:v1")
    value = denial_value(key, digest, reason, "something went wrong", policy=policy_name)
    check_schema(value)
    assert value["allowed"] is False
    assert value["reason"] == reason
    assert value["reasons"] == [f"something went wrong [{reason}]"]
    assert value["verifiers"] == []
    assert value["digest"] == digest
    assert value["policy"] == policy_name
    assert value["namespace"] == "dev"
    assert value["reference"] == "localhost:5000/app:v1"


def test_denial_value_policy_defaults_to_empty() -> None:
    value = denial_value(parse_key("nginx"), "", "no_policy", "no policy")
    assert value["policy"] == ""
    assert value["reference"] == "docker.io/library/nginx:latest"


def test_outcome_details_are_copied() -> None:
    details = {"k": "v"}
    outcome = VerifierOutcome("a", "t", Report(True, "ok", "fine", details))
    value = outcome.as_value()
    value["details"]["k"] = "changed"
    assert details == {"k": "v"}


@settings(deadline=None, max_examples=50)
@given(
    kinds=st.lists(st.sampled_from(["passed", "failed", "undecided"]), min_size=1, max_size=4),
    allowed=st.booleans(),
)
def test_the_encoding_of_a_verdict_says_allowed_in_its_head(kinds: list[str], allowed: bool) -> None:
    """The verdict cache's `Decided.allowed` reads the first bytes of the encoding, not the whole."""
    make = {"passed": passed, "failed": failed, "undecided": undecided}
    outcomes = [make[kind](f"v{i}") for i, kind in enumerate(kinds)]
    key = parse_key("[ns]reg.example.com/app:1")
    for value in (
        verdict_value(key, DIGEST, policy("allOf", outcomes), outcomes, allowed),
        denial_value(key, DIGEST, "no_policy", "no policy"),
    ):
        decided = Decided(encoded=encode_value(value))
        assert decided.allowed is value["allowed"]
        assert decided.value == value
