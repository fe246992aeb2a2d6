"""Verdicts: combining verifier reports under a policy, and the value schema Rego reads. Pure functions.

Value schema, version 1 (`schemaVersion: 1`)::

    {
      "schemaVersion": 1,
      "allowed": false,
      "reason": "policy_not_satisfied",                  # stable code: verified, policy_not_satisfied,
                                                         # manifest_not_found, no_policy, ...
      "reference": "docker.io/library/nginx:1.25",      # normalized, as the workload named it
      "digest": "sha256:...",                            # what was verified ("" if it did not resolve)
      "namespace": "default",                            # from a "[namespace]" key prefix, else ""
      "policy": "default",                               # the policy that applied ("" if none)
      "namespacePolicy": "",                             # the namespace's ImagePolicy that also applied
                                                         # ("" if none)
      "verifiers": [{"name", "type", "passed", "reason", "message", "details"}],
      "reasons": ["..."]                                 # sentences explaining a denial; [] when allowed
    }

Templates must refuse a `schemaVersion` they do not know. Fields may be added within a version; none is
renamed or removed without a new version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from provider.config import Policy
from verifiers.base import MAX_MESSAGE_CHARS, Report, Undecided
from verifiers.reference import Key

__all__ = [
    "SCHEMA_VERSION",
    "Decision",
    "Pending",
    "VerifierOutcome",
    "combine",
    "combine_all",
    "denial_value",
    "safe_text",
    "verdict_value",
]

SCHEMA_VERSION = 1


def safe_text(value: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`str(value)` made safe for a JSON response: at most `limit` characters, unpaired surrogates escaped."""
    try:
        text = str(value)
    except Exception:  # a hostile __str__
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        text = text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class VerifierOutcome:
    """One verifier's result: a report, or why it could not decide."""

    name: str
    type: str
    report: Report | None
    undecided: Undecided | None = None

    def as_value(self) -> dict[str, Any]:
        if self.report is not None:
            return {
                "name": self.name,
                "type": self.type,
                "passed": self.report.passed,
                "reason": self.report.reason,
                "message": self.report.message,
                "details": dict(self.report.details),
            }
        assert self.undecided is not None
        return {
            "name": self.name,
            "type": self.type,
            "passed": False,
            "reason": self.undecided.reason,
            "message": self.undecided.message,
            "details": {"undecided": True},
        }


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool


@dataclass(frozen=True, slots=True)
class Pending:
    """Not decided: some verifiers could not run to the end and the others do not settle the policy."""

    reason: str
    message: str


def combine(policy: Policy, outcomes: Sequence[VerifierOutcome]) -> Decision | Pending:
    """Three-valued k-of-n: allowed once k passed; denied once k can no longer be reached; else pending.

    allOf is n-of-n and anyOf is 1-of-n. A definite failure decides an allOf policy even while another
    verifier is undecided, because no outcome of that verifier could change the verdict.
    """
    passed = sum(1 for o in outcomes if o.report is not None and o.report.passed)
    undecided = [o for o in outcomes if o.report is None]
    if passed >= policy.threshold:
        return Decision(allowed=True)
    if passed + len(undecided) < policy.threshold:
        return Decision(allowed=False)
    first = undecided[0].undecided
    assert first is not None
    names = ", ".join(f"{o.name}: {o.undecided.message}" for o in undecided if o.undecided is not None)
    return Pending(first.reason, f"could not be decided ({names})")


def _of(policy: Policy, outcomes: Sequence[VerifierOutcome]) -> list[VerifierOutcome]:
    """The outcomes of `policy`'s verifiers, in its order (`outcomes` holds each verifier once)."""
    by_name = {o.name: o for o in outcomes}
    return [by_name[name] for name in policy.verifiers if name in by_name]


def combine_all(policies: Sequence[Policy], outcomes: Sequence[VerifierOutcome]) -> Decision | Pending:
    """Every policy must be satisfied, each combined (`combine`) over its own verifiers' outcomes.

    Three-valued AND: denied once one policy is denied (whatever the others' undecided verifiers do);
    allowed once all are allowed; else pending (the first pending policy's reason). Adding a policy can
    therefore never turn a denial into an allow (a namespace's ImagePolicy cannot weaken the cluster's).
    """
    decisions = [combine(policy, _of(policy, outcomes)) for policy in policies]
    if any(isinstance(d, Decision) and not d.allowed for d in decisions):
        return Decision(allowed=False)
    pending = [d for d in decisions if isinstance(d, Pending)]
    return pending[0] if pending else Decision(allowed=True)


def _base(key: Key, digest: str, policy: str, namespace_policy: str = "") -> dict[str, Any]:
    return {
        "schemaVersion": SCHEMA_VERSION,
        "allowed": False,
        "reason": "",
        "reference": str(key.reference),
        "digest": digest,
        "namespace": key.namespace or "",
        "policy": policy,
        "namespacePolicy": namespace_policy,
        "verifiers": [],
        "reasons": [],
    }


def _unsatisfied(
    key: Key,
    digest: str,
    policy: Policy,
    outcomes: Sequence[VerifierOutcome],
    *,
    namespaced_verdict: bool,
    namespaced: bool = False,
) -> str:
    mine = _of(policy, outcomes) if namespaced_verdict else outcomes
    passed = sum(1 for o in mine if o.report is not None and o.report.passed)
    what = f"policy {policy.name!r}"
    if namespaced:
        what = f"ImagePolicy {policy.name!r} of namespace {key.namespace or ''!r}"
    return (
        f"{key.reference.name}@{digest} does not satisfy {what}, which requires "
        f"{policy.describe()} to pass ({passed} passed)"
    )


def verdict_value(
    key: Key,
    digest: str,
    policy: Policy,
    outcomes: Sequence[VerifierOutcome],
    allowed: bool,
    namespace_policy: Policy | None = None,
) -> dict[str, Any]:
    """The verdict under `policy` (cluster-wide) and, when one applied, the namespace's `namespace_policy`.

    `outcomes` holds each verifier that ran once (a verifier both policies name ran once): the cluster
    policy's, then the namespace policy's others. A denial's first reasons name the policy (or policies)
    not satisfied, then one line per verifier that did not pass.
    """
    value = _base(key, digest, policy.name, namespace_policy.name if namespace_policy else "")
    value["allowed"] = allowed
    value["reason"] = "verified" if allowed else "policy_not_satisfied"
    value["verifiers"] = [o.as_value() for o in outcomes]
    if not allowed:
        reasons: list[str] = []
        both = namespace_policy is not None
        if namespace_policy is None or combine(policy, _of(policy, outcomes)) != Decision(allowed=True):
            reasons.append(_unsatisfied(key, digest, policy, outcomes, namespaced_verdict=both))
        if namespace_policy is not None:
            if combine(namespace_policy, _of(namespace_policy, outcomes)) != Decision(allowed=True):
                reasons.append(
                    _unsatisfied(
                        key, digest, namespace_policy, outcomes, namespaced_verdict=True, namespaced=True
                    )
                )
            if not reasons:  # not allowed although both are satisfied: say so under the cluster's
                reasons.append(_unsatisfied(key, digest, policy, outcomes, namespaced_verdict=True))
        for o in outcomes:
            if o.report is not None and not o.report.passed:
                reasons.append(f"{o.name}: {o.report.message} [{o.report.reason}]")
            elif o.undecided is not None:
                reasons.append(
                    f"{o.name}: could not be checked: {o.undecided.message} [{o.undecided.reason}]"
                )
        value["reasons"] = reasons
    return value


def denial_value(
    key: Key, digest: str, reason: str, message: str, policy: str = "", namespace_policy: str = ""
) -> dict[str, Any]:
    """A decided denial that happened before any verifier ran (not found, no policy, bad content)."""
    value = _base(key, digest, policy, namespace_policy)
    value["reason"] = reason
    value["reasons"] = [f"{message} [{reason}]"]
    return value
