"""Never weaken: a policy resource with no valid generation to serve still claims its scopes.

Its images are denied `policy_unavailable` from their name alone (no registry contact), rather than fall to
a less specific policy (e.g. `*` with digest pin only). compose (provider.kube.resources) emits such a
policy without verifiers; the engine refuses its images; /v1/mutate still counts the scope as covered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provider.config import Policy
from provider.engine import Engine
from provider.kube.resources import CLUSTER_IMAGE_POLICY, IMAGE_POLICY, VERIFIER, Composition
from provider.outcome import Decided
from tests.unit.test_engine_reports import Registry, Scripted
from tests.unit.test_kube_resources import res, run
from tests.unit.test_namespace_policies import PASS, decided, verify
from verifiers.base import Report

FAIL = Report.fail("nope", "not fine")


def engine_for(c: Composition, **verifiers: Scripted) -> tuple[Engine, Registry]:
    registry = Registry()
    built = {name: verifiers.get(name) or Scripted(name, PASS) for name in c.config.verifiers}
    return Engine(c.config, registry, built), registry  # type: ignore[arg-type]


def policy(c: Composition, name: str) -> Policy:
    (found,) = [p for p in c.config.policies if p.name == name]
    return found


def cip(name: str, spec: Mapping[str, Any], **kw: Any) -> Any:
    return res(CLUSTER_IMAGE_POLICY, name, spec, **kw)


async def test_a_policy_invalid_since_creation_denies_its_scopes_without_contacting_the_registry() -> None:
    strict = cip("strict", {"scopes": ["reg.test/app"], "allOf": ["pin", "missing"]})
    c = run([strict])
    assert c.statuses[strict.uid].errors[0][0] == "spec.allOf[1]" and c.statuses[strict.uid].denying
    assert c.statuses[strict.uid].serving_generation is None and c.serving == {}
    unavailable = policy(c, "strict")
    assert unavailable.verifiers == () and unavailable.unavailable is not None
    engine, registry = engine_for(c)
    value = decided(await verify(engine, "reg.test/app:1"))
    assert value["allowed"] is False and value["reason"] == "policy_unavailable", value
    assert value["policy"] == "strict" and value["digest"] == ""
    reasons = value["reasons"]
    assert isinstance(reasons, list) and len(reasons) == 1
    reason = str(reasons[0])
    assert "ClusterImagePolicy 'strict'" in reason and "spec.allOf[1]: unknown verifier 'missing'" in reason
    assert reason.endswith("[policy_unavailable]")
    assert registry.resolved == 0  # decided from the name, like no_policy
    # An image elsewhere still gets the file's `*` policy (digest pin), verified as before.
    other = decided(await verify(engine, "reg.test/good:1"))
    assert other["policy"] == "default" and other["reason"] != "policy_unavailable"
    assert registry.resolved == 1
    # /v1/mutate: the scope still counts as covered (pinning contacts the registry, like any covered one).
    pinned = (await engine.mutate(["reg.test/app:1"], 5.0))["reg.test/app:1"]
    assert isinstance(pinned, Decided) and str(pinned.value).startswith("reg.test/app@sha256:")


async def test_a_deleted_verifier_denies_rather_than_falls_back_to_the_wildcard() -> None:
    cos = res(VERIFIER, "cos", {"type": "cosign"})
    strict = cip("strict", {"scopes": ["reg.test/*"], "allOf": ["cos"]})
    first = run([cos, strict])
    assert policy(first, "strict").unavailable is None
    engine, _ = engine_for(first, cos=Scripted("cos", FAIL))
    assert decided(await verify(engine, "reg.test/app:1"))["reason"] == "policy_not_satisfied"

    c = run([strict], first.serving)  # the Verifier deleted
    assert c.statuses[strict.uid].denying and c.statuses[strict.uid].errors[0][0] == "spec.allOf[0]"
    engine, registry = engine_for(c)
    value = decided(await verify(engine, "reg.test/app:1"))
    assert value["allowed"] is False and value["reason"] == "policy_unavailable"
    assert registry.resolved == 0
    # The Verifier back: the policy serves again.
    again = run([cos, strict], c.serving)
    assert policy(again, "strict").verifiers == ("cos",) and again.statuses[strict.uid].valid
    assert again.config.fingerprint != c.config.fingerprint


async def test_an_unavailable_image_policy_denies_in_its_namespace_only() -> None:
    team = res(IMAGE_POLICY, "team", {"scopes": ["reg.test/app"], "allOf": ["gone"]}, namespace="prod")
    c = run([team])
    assert c.statuses[team.uid].denying
    (unavailable,) = c.config.namespace_policies["prod"]
    assert unavailable.unavailable is not None and "ImagePolicy 'prod/team'" in unavailable.unavailable
    engine, registry = engine_for(c)
    value = decided(await verify(engine, "[prod]reg.test/app:1"))
    assert value["allowed"] is False and value["reason"] == "policy_unavailable"
    assert value["policy"] == "default" and value["namespacePolicy"] == "team"
    assert registry.resolved == 0
    # Another namespace, and another image of prod, are not affected.
    assert decided(await verify(engine, "[dev]reg.test/app:1"))["allowed"] is True
    assert decided(await verify(engine, "[prod]reg.test/good:1"))["allowed"] is True


def test_what_does_not_claim_validly_claims_nothing() -> None:
    older = cip("older", {"scopes": ["reg.test/app"], "allOf": ["pin"]})
    # A later conflicting claim, even unavailable, is no claim: the older policy keeps the scope.
    later = cip("later", {"scopes": ["reg.test/app"], "allOf": ["gone"]}, created="2026-02-01T00:00:00Z")
    bad_scope = cip("badscope", {"scopes": ["reg.test/a:tag"], "allOf": ["gone"]})
    no_scopes = cip("noscopes", {"allOf": ["pin"]})
    c = run([older, later, bad_scope, no_scopes])
    assert [p.name for p in c.config.policies] == ["default", "older"]
    assert policy(c, "older").unavailable is None
    for r in (later, bad_scope, no_scopes):
        assert not c.statuses[r.uid].valid and not c.statuses[r.uid].denying
    assert any("already claimed by ClusterImagePolicy 'older'" in m for _, m in c.statuses[later.uid].errors)


def test_an_older_unavailable_policy_keeps_its_scope_from_a_later_one() -> None:
    # The older claim stands even while it cannot serve: a newer policy cannot take its images over.
    older = cip("older", {"scopes": ["reg.test/app"], "allOf": ["gone"]})
    later = cip("later", {"scopes": ["reg.test/app"], "allOf": ["pin"]}, created="2026-02-01T00:00:00Z")
    c = run([older, later])
    assert policy(c, "older").unavailable is not None
    assert c.statuses[later.uid].errors == (
        ("spec.scopes[0]", "scope 'reg.test/app' is already claimed by ClusterImagePolicy 'older'"),
    )
