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
      "verifiers": [{"name", "type", "passed", "reason", "message", "details"}],
      "reasons": ["..."]                                 # sentences explaining a denial; [] when allowed
    }

Templates must refuse a `schemaVersion` they do not know. Fields may be added within a version; none is
renamed or removed without a new version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provider.config import Policy
from verifiers.base import Report, Undecided
from verifiers.reference import Key

__all__ = [
    "SCHEMA_VERSION",
    "Decision",
    "Pending",
    "VerifierOutcome",
    "checked_report",
    "combine",
    "denial_value",
    "plain_json",
    "safe_text",
    "verdict_value",
]

SCHEMA_VERSION = 1

# Bounds on one report (a verifier's details reach Gatekeeper and every cache): generous for real reports.
MAX_DETAILS_DEPTH = 32
MAX_DETAILS_NODES = 50_000
MAX_DETAILS_CHARS = 1024 * 1024
MAX_MESSAGE_CHARS = 64 * 1024
MAX_REASON_CHARS = 128
_MAX_INT = 2**63


def safe_text(value: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`str(value)` made safe for a JSON response: at most `limit` characters, unpaired surrogates escaped."""
    try:
        text = str(value)
    except Exception:  # a hostile __str__
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        text = text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _Budget:
    def __init__(self) -> None:
        self.nodes = 0
        self.chars = 0


def _plain(value: object, path: str, depth: int, budget: _Budget) -> Any:
    budget.nodes += 1
    if budget.nodes > MAX_DETAILS_NODES:
        raise ValueError(f"more than {MAX_DETAILS_NODES} values")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -_MAX_INT <= value < _MAX_INT:
            raise ValueError(f"{path}: integer out of the 64-bit range")
        return int.__int__(value)  # a plain int, whatever a subclass overrides
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value} is not a JSON number")
        return float.__float__(value)
    if isinstance(value, str):
        budget.chars += len(value)
        if budget.chars > MAX_DETAILS_CHARS:
            raise ValueError(f"more than {MAX_DETAILS_CHARS} characters of strings")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{path}: a string holds an unpaired surrogate") from None
        return str.__str__(value)
    if depth >= MAX_DETAILS_DEPTH:
        raise ValueError(f"{path}: nested more than {MAX_DETAILS_DEPTH} levels deep")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: a key is {type(key).__name__}, not a string")
            where = f"{path}.{safe_text(key, 40)}"
            out[_plain(key, where, depth, budget)] = _plain(item, where, depth + 1, budget)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{path}[{i}]", depth + 1, budget) for i, item in enumerate(value)]
    raise ValueError(f"{path}: {type(value).__name__} is not a JSON value")


def plain_json(value: object, path: str = "details") -> Any:
    """A fresh copy of `value` as plain JSON (dict, list, str, int, float, bool, None), or ValueError.

    Strict: string keys only, finite floats, 64-bit integers, UTF-8-encodable strings, at most
    MAX_DETAILS_DEPTH deep, MAX_DETAILS_NODES values and MAX_DETAILS_CHARS characters of strings. The
    copy shares nothing with `value`, so a verifier cannot change a report after it was checked.
    """
    return _plain(value, path, 0, _Budget())


def checked_report(report: object) -> Report:
    """The report with its details copied as plain JSON; ValueError when any part is not serialisable."""
    if not isinstance(report, Report):
        raise ValueError(f"returned {type(report).__name__}, not a Report")
    if not isinstance(report.passed, bool):
        raise ValueError(f"passed is {type(report.passed).__name__}, not a bool")
    if not isinstance(report.reason, str) or not report.reason or len(report.reason) > MAX_REASON_CHARS:
        raise ValueError(f"reason must be a string of 1 to {MAX_REASON_CHARS} characters")
    if not isinstance(report.message, str) or len(report.message) > MAX_MESSAGE_CHARS:
        raise ValueError(f"message must be a string of at most {MAX_MESSAGE_CHARS} characters")
    if not isinstance(report.details, Mapping):
        raise ValueError(f"details is {type(report.details).__name__}, not a mapping")
    reason = plain_json(report.reason, "reason")
    message = plain_json(report.message, "message")
    return Report(report.passed, reason, message, plain_json(report.details))


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


def _base(key: Key, digest: str, policy: str) -> dict[str, Any]:
    return {
        "schemaVersion": SCHEMA_VERSION,
        "allowed": False,
        "reason": "",
        "reference": str(key.reference),
        "digest": digest,
        "namespace": key.namespace or "",
        "policy": policy,
        "verifiers": [],
        "reasons": [],
    }


def verdict_value(
    key: Key, digest: str, policy: Policy, outcomes: Sequence[VerifierOutcome], allowed: bool
) -> dict[str, Any]:
    value = _base(key, digest, policy.name)
    value["allowed"] = allowed
    value["reason"] = "verified" if allowed else "policy_not_satisfied"
    value["verifiers"] = [o.as_value() for o in outcomes]
    if not allowed:
        passed = sum(1 for o in outcomes if o.report is not None and o.report.passed)
        reasons = [
            f"{key.reference.name}@{digest} does not satisfy policy {policy.name!r}, which requires "
            f"{policy.describe()} to pass ({passed} passed)"
        ]
        for o in outcomes:
            if o.report is not None and not o.report.passed:
                reasons.append(f"{o.name}: {o.report.message} [{o.report.reason}]")
            elif o.undecided is not None:
                reasons.append(
                    f"{o.name}: could not be checked: {o.undecided.message} [{o.undecided.reason}]"
                )
        value["reasons"] = reasons
    return value


def denial_value(key: Key, digest: str, reason: str, message: str, policy: str = "") -> dict[str, Any]:
    """A decided denial that happened before any verifier ran (not found, no policy, bad content)."""
    value = _base(key, digest, policy)
    value["reason"] = reason
    value["reasons"] = [f"{message} [{reason}]"]
    return value
