"""Namespaced ImagePolicies: additive to the cluster-wide policy, never weakening it (engine + verdict).

An image in namespace N must satisfy its cluster-wide policy AND the most specific ImagePolicy of N whose
scope matches it; with no cluster-wide policy it is denied `no_policy` whatever N's policies say. Each
verifier runs once per image, whichever policies name it, over one Context (one memo).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from provider.config import Config, Policy
from provider.engine import Engine, _verdict_key
from provider.outcome import Decided, Outcome, UndecidedKey
from provider.verdict import Decision, Pending, VerifierOutcome, combine, combine_all
from tests.unit.test_engine_reports import Registry, Scripted
from verifiers.base import Context, Report, Subject, Undecided

PASS = Report.ok("ok", "fine")
FAIL = Report.fail("nope", "not fine")
DOWN = Undecided("registry_unavailable", "down")


def make_policy(name: str, mode: str, verifiers: Sequence[str], scopes: Sequence[str] = ("*",)) -> Policy:
    k = {"allOf": len(verifiers), "anyOf": 1}.get(mode, 2)
    return Policy(name, tuple(scopes), None, mode, tuple(verifiers), k)


class Recording(Scripted):
    """A scripted verifier that also records the Context objects it was given."""

    def __init__(self, name: str, behaviour: object) -> None:
        super().__init__(name, behaviour)
        self.contexts: list[Context] = []

    async def verify(self, subject: Subject, context: Context) -> Report:
        self.contexts.append(context)
        return await super().verify(subject, context)


def engine_with(
    cluster: Sequence[Policy], namespaces: Mapping[str, Sequence[Policy]], *verifiers: Scripted
) -> tuple[Engine, Registry]:
    config = Config(
        policies=tuple(cluster),
        namespace_policies={ns: tuple(ps) for ns, ps in namespaces.items()},
        fingerprint="test",
    )
    registry = Registry()
    return Engine(config, registry, {v.name: v for v in verifiers}), registry  # type: ignore[arg-type]


async def verify(engine: Engine, key: str) -> Outcome:
    return (await engine.verify([key], 5.0))[key]


def decided(outcome: Outcome) -> Mapping[str, object]:
    assert isinstance(outcome, Decided), outcome
    value = outcome.value
    assert isinstance(value, dict)
    return value


# --- the engine ---------------------------------------------------------------------------------------


async def test_any_of_in_the_namespace_on_top_of_all_of_in_the_cluster() -> None:
    a, b, c, d = (Scripted(n, PASS) for n in "abcd")
    cluster = make_policy("cluster", "allOf", ["a", "b"])
    strict = make_policy("team", "anyOf", ["c", "d"])
    engine, _ = engine_with([cluster], {"prod": [strict]}, a, b, c, d)

    c.behaviour = FAIL  # anyOf: d alone satisfies the namespace policy
    value = decided(await verify(engine, "[prod]reg.test/app:1"))
    assert value["allowed"] is True and value["reason"] == "verified"
    assert value["policy"] == "cluster" and value["namespacePolicy"] == "team"
    assert [v["name"] for v in value["verifiers"]] == ["a", "b", "c", "d"]  # type: ignore[attr-defined]

    engine, _ = engine_with([cluster], {"prod": [strict]}, a, b, Scripted("c", FAIL), Scripted("d", FAIL))
    value = decided(await verify(engine, "[prod]reg.test/app:1"))
    assert value["allowed"] is False and value["reason"] == "policy_not_satisfied"
    reasons = value["reasons"]
    assert isinstance(reasons, list)
    # only the namespace policy failed, and the reasons say which one
    assert "ImagePolicy 'team' of namespace 'prod'" in reasons[0] and "any of [c, d]" in reasons[0]
    assert "(0 passed)" in reasons[0]
    assert not any("policy 'cluster'" in r for r in reasons)
    assert reasons[1:] == ["c: not fine [nope]", "d: not fine [nope]"]


async def test_the_cluster_policy_failing_is_named_even_when_the_namespace_policy_passes() -> None:
    engine, _ = engine_with(
        [make_policy("cluster", "allOf", ["a", "b"])],
        {"prod": [make_policy("team", "anyOf", ["c", "d"])]},
        Scripted("a", FAIL),
        Scripted("b", PASS),
        Scripted("c", PASS),
        Scripted("d", FAIL),
    )
    value = decided(await verify(engine, "[prod]reg.test/app:1"))
    assert value["allowed"] is False and value["namespacePolicy"] == "team"
    reasons = value["reasons"]
    assert isinstance(reasons, list)
    assert "does not satisfy policy 'cluster'" in reasons[0] and "(1 passed)" in reasons[0]
    assert not any("ImagePolicy 'team'" in r for r in reasons)


async def test_a_namespace_policy_never_turns_a_denial_into_an_allow() -> None:
    """The cluster policy denies; whatever the namespace's policies require, the image stays denied."""
    a, extra = Scripted("a", FAIL), Scripted("extra", PASS)
    cluster = make_policy("cluster", "allOf", ["a"])
    for namespace_policy in (
        make_policy("lenient", "anyOf", ["extra"]),  # only a verifier that passes
        make_policy("same", "anyOf", ["a", "extra"]),
        make_policy("empty-ish", "threshold", ["extra", "a"]),
    ):
        engine, _ = engine_with([cluster], {"prod": [namespace_policy]}, a, extra)
        value = decided(await verify(engine, "[prod]reg.test/app:1"))
        assert value["allowed"] is False, namespace_policy
        assert value["namespacePolicy"] == namespace_policy.name


async def test_no_cluster_policy_is_no_policy_whatever_the_namespace_says() -> None:
    a = Scripted("a", PASS)
    only_other = make_policy("cluster", "allOf", ["a"], scopes=["other.test/*"])
    engine, registry = engine_with([only_other], {"prod": [make_policy("team", "anyOf", ["a"])]}, a)
    value = decided(await verify(engine, "[prod]reg.test/app:1"))
    assert value["allowed"] is False and value["reason"] == "no_policy"
    assert value["policy"] == "" and value["namespacePolicy"] == ""
    assert a.calls == 0 and registry.resolved == 0  # decided from the name: nothing contacted


async def test_a_verifier_only_the_namespace_policy_names_runs_once_with_the_shared_context() -> None:
    a, b, extra = Recording("a", PASS), Recording("b", PASS), Recording("extra", FAIL)
    cluster = make_policy("cluster", "allOf", ["a", "b"])
    team = make_policy("team", "allOf", ["b", "extra"])  # b shared, extra the namespace's own
    engine, _ = engine_with([cluster], {"prod": [team]}, a, b, extra)
    value = decided(await verify(engine, "[prod]reg.test/app:1"))
    assert value["allowed"] is False
    assert [v["name"] for v in value["verifiers"]] == ["a", "b", "extra"]  # type: ignore[attr-defined]
    assert (a.calls, b.calls, extra.calls) == (1, 1, 1)
    contexts = {id(v.contexts[0]) for v in (a, b, extra)}
    assert len(contexts) == 1  # one Context, so one memo, for the image's verification
    # elsewhere the namespace's verifier does not run at all
    value = decided(await verify(engine, "[dev]reg.test/app:1"))
    assert value["allowed"] is True and value["namespacePolicy"] == ""
    assert extra.calls == 1


async def test_the_most_specific_image_policy_of_the_namespace_applies() -> None:
    a, b = Scripted("a", PASS), Scripted("b", FAIL)
    cluster = make_policy("cluster", "allOf", ["a"])
    broad = make_policy("broad", "allOf", ["b"], scopes=["*"])
    exact = make_policy("exact", "allOf", ["a"], scopes=["reg.test/app"])
    engine, _ = engine_with([cluster], {"prod": [broad, exact]}, a, b)
    app = decided(await verify(engine, "[prod]reg.test/app:1"))
    assert app["allowed"] is True and app["namespacePolicy"] == "exact"
    good = decided(await verify(engine, "[prod]reg.test/good:1"))
    assert good["allowed"] is False and good["namespacePolicy"] == "broad"


async def test_image_policies_of_one_namespace_do_not_apply_in_another_nor_without_one() -> None:
    a, b = Scripted("a", PASS), Scripted("b", FAIL)
    engine, _ = engine_with(
        [make_policy("cluster", "allOf", ["a"])], {"prod": [make_policy("team", "allOf", ["b"])]}, a, b
    )
    assert decided(await verify(engine, "[prod]reg.test/app:1"))["allowed"] is False
    assert decided(await verify(engine, "[dev]reg.test/app:1"))["allowed"] is True
    bare = decided(await verify(engine, "reg.test/app:1"))  # no namespace in the key: none applies
    assert bare["allowed"] is True and bare["namespacePolicy"] == ""
    # cached per namespace: asking again reruns nothing and keeps each namespace's verdict
    calls = (a.calls, b.calls)
    assert decided(await verify(engine, "[prod]reg.test/app:1"))["allowed"] is False
    assert decided(await verify(engine, "[dev]reg.test/app:1"))["allowed"] is True
    assert (a.calls, b.calls) == calls


async def test_undecided_in_the_namespace_policy() -> None:
    # cluster allows, namespace undecided: undecided (never cached)
    a, down = Scripted("a", PASS), Scripted("down", DOWN)
    engine, _ = engine_with(
        [make_policy("cluster", "allOf", ["a"])], {"prod": [make_policy("team", "allOf", ["down"])]}, a, down
    )
    for _ in range(2):
        outcome = await verify(engine, "[prod]reg.test/app:1")
        assert isinstance(outcome, UndecidedKey) and outcome.reason == "registry_unavailable"
    assert down.calls == 2
    # cluster denies, namespace undecided: denied, a decided verdict
    engine, _ = engine_with(
        [make_policy("cluster", "allOf", ["a"])],
        {"prod": [make_policy("team", "allOf", ["down"])]},
        Scripted("a", FAIL),
        down,
    )
    value = decided(await verify(engine, "[prod]reg.test/app:1"))
    assert value["allowed"] is False
    reasons = value["reasons"]
    assert isinstance(reasons, list) and "policy 'cluster'" in reasons[0]


async def test_a_namespace_policy_naming_an_unconfigured_verifier_fails_closed() -> None:
    engine, _ = engine_with(
        [make_policy("cluster", "allOf", ["a"])],
        {"prod": [make_policy("team", "allOf", ["ghost"])]},
        Scripted("a", PASS),
    )
    outcome = await verify(engine, "[prod]reg.test/app:1")
    assert isinstance(outcome, UndecidedKey) and outcome.reason == "verifier_error"
    assert "ghost" in outcome.message


def test_the_verdict_key_separates_namespaces_configurations_and_identities() -> None:
    """The applied policies are not in the key: they follow from the configuration (the fingerprint; the
    cache is one engine's, whose configuration never changes), the namespace and the reference. That a
    verdict is kept per namespace, and never served under another namespace's policies, is checked through
    the engine above (test_image_policies_of_one_namespace_do_not_apply_in_another_nor_without_one) and
    that composed policies change the fingerprint below."""
    digest = "sha256:" + "ab" * 32
    keys = {
        _verdict_key(fingerprint, ns, "reg.test/app:1", digest, identity)
        for fingerprint in ("f", "g")
        for ns in ("", "prod", "dev")
        for identity in ("", "id-1", "id-2")
    }
    assert len(keys) == 18


# --- the combination, exhaustively -----------------------------------------------------------------------

KINDS = {"passed": PASS, "failed": FAIL, "undecided": None}


def outcome(name: str, kind: str) -> VerifierOutcome:
    report = KINDS[kind]
    return VerifierOutcome(name, "test", report, None if report is not None else DOWN)


@st.composite
def policies_and_outcomes(draw: st.DrawFn) -> tuple[Policy, Policy, list[VerifierOutcome]]:
    names = [f"v{i}" for i in range(draw(st.integers(1, 5)))]
    outcomes = [outcome(n, draw(st.sampled_from(list(KINDS)))) for n in names]

    def one(label: str) -> Policy:
        chosen = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        mode = draw(st.sampled_from(["allOf", "anyOf", "threshold"]))
        k = {"allOf": len(chosen), "anyOf": 1}.get(mode) or draw(st.integers(1, len(chosen)))
        return Policy(label, ("*",), None, mode, tuple(chosen), k)

    return one("cluster"), one("team"), outcomes


def own(policy: Policy, outcomes: Sequence[VerifierOutcome]) -> list[VerifierOutcome]:
    return [o for o in outcomes if o.name in policy.verifiers]


@settings(deadline=None, max_examples=300)
@given(policies_and_outcomes())
def test_adding_a_namespace_policy_never_weakens(case: tuple[Policy, Policy, list[VerifierOutcome]]) -> None:
    cluster, team, outcomes = case
    alone = combine(cluster, own(cluster, outcomes))
    both = combine_all([cluster, team], outcomes)
    if alone == Decision(allowed=False):
        assert both == Decision(allowed=False)  # a denial stays a denial
    if both == Decision(allowed=True):  # allowed only when each is allowed on its own
        assert alone == Decision(allowed=True)
        assert combine(team, own(team, outcomes)) == Decision(allowed=True)
    if isinstance(alone, Pending):
        assert both != Decision(allowed=True)


def test_combine_all_truth_table() -> None:
    allowed, denied = Decision(allowed=True), Decision(allowed=False)
    table = {
        "pass": [outcome("x", "passed")],
        "fail": [outcome("x", "failed")],
        "wait": [outcome("x", "undecided")],
    }
    for left, right in itertools.product(table, repeat=2):
        outcomes = [
            VerifierOutcome("l", "t", *_split(table[left][0])),
            VerifierOutcome("r", "t", *_split(table[right][0])),
        ]
        result = combine_all([make_policy("c", "allOf", ["l"]), make_policy("n", "allOf", ["r"])], outcomes)
        if "fail" in (left, right):
            assert result == denied
        elif left == right == "pass":
            assert result == allowed
        else:
            assert isinstance(result, Pending)


def _split(o: VerifierOutcome) -> tuple[Report | None, Undecided | None]:
    return o.report, o.undecided


# --- with the configuration composed from resources -------------------------------------------------------


async def test_a_composed_image_policy_is_enforced_and_changes_the_fingerprint() -> None:
    """`compose` (file + an ImagePolicy resource) gives the engine its namespace policies; the verdict
    cache never serves the verdict of the configuration without them."""
    from provider.kube.resources import IMAGE_POLICY, Resource, compose

    file = {
        "verifiers": {"pin": {"type": "digest-pin"}, "sbom": {"type": "sbom"}},
        "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pin"]}],
    }
    strict = Resource(
        IMAGE_POLICY,
        "prod",
        "needs-sbom",
        "uid-1",
        1,
        "2026-01-01T00:00:00Z",
        {"scopes": ["*"], "allOf": ["sbom"]},
    )

    def composed(resources: list[Resource]) -> Config:
        return compose(file, resources, {}, files_dir=lambda r: None, allow_exec=False, base=Path(".")).config

    without, with_policy = composed([]), composed([strict])
    assert without.fingerprint != with_policy.fingerprint
    pin, sbom = Scripted("pin", PASS), Scripted("sbom", FAIL)
    registry = Registry()
    engine = Engine(with_policy, registry, {"pin": pin, "sbom": sbom})  # type: ignore[arg-type]
    value = decided(await verify(engine, "[prod]reg.test/app:1"))
    assert value["allowed"] is False and value["namespacePolicy"] == "needs-sbom"
    assert value["policy"] == "default"
    assert decided(await verify(engine, "[dev]reg.test/app:1"))["allowed"] is True
