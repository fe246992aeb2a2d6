"""The `status` Countersign writes on its resources (pure: the body of a merge patch, or None).

    status:
      observedGeneration: 3          # metadata.generation last examined
      servingGeneration: 2           # the generation in service (absent: none)
      summary: "all of [cosign, sbom]"
      conditions: [Ready, Invalid]   # with the field path of what is wrong

A status is written only when it differs from the object's (what the informer last saw), and a
condition's `lastTransitionTime` only moves when its `status` changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Verdict", "status_patch"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the provider concluded about one resource at one generation."""

    generation: int
    valid: bool
    serving_generation: int | None
    summary: str = ""
    path: str = ""  # the field in resource terms (`spec.allOf[0]`) when invalid
    message: str = ""


def _conditions(verdict: Verdict) -> list[dict[str, Any]]:
    g = verdict.generation
    if verdict.valid:
        return [
            {"type": "Ready", "status": "True", "reason": "Serving", "message": f"generation {g} serving"},
            {"type": "Invalid", "status": "False", "reason": "Valid", "message": "the spec is valid"},
        ]
    serving = (
        f"generation {verdict.serving_generation} serving"
        if verdict.serving_generation is not None
        else "nothing serving"
    )
    where = f"{verdict.path}: " if verdict.path else ""
    return [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Invalid",
            "message": f"generation {g} refused; {serving}",
        },
        {
            "type": "Invalid",
            "status": "True",
            "reason": "InvalidSpec",
            "message": f"{where}{verdict.message}",
        },
    ]


def status_patch(current: Mapping[str, Any] | None, verdict: Verdict, now: str) -> dict[str, Any] | None:
    """The merge patch (`{"status": {...}}`) taking the object's `current` status to `verdict`'s, or None
    when it already says that. `now` is the RFC 3339 time for conditions that change."""
    current = current if isinstance(current, Mapping) else {}
    old_conditions = {
        c.get("type"): c for c in current.get("conditions") or [] if isinstance(c, Mapping) and "type" in c
    }
    conditions = []
    for condition in _conditions(verdict):
        old = old_conditions.get(condition["type"])
        same = isinstance(old, Mapping) and old.get("status") == condition["status"]
        since = old.get("lastTransitionTime") if same and isinstance(old, Mapping) else None
        conditions.append(
            {**condition, "observedGeneration": verdict.generation, "lastTransitionTime": since or now}
        )
    status: dict[str, Any] = {
        "observedGeneration": verdict.generation,
        "servingGeneration": verdict.serving_generation,  # None removes it (merge patch)
        "summary": verdict.summary,
        "conditions": conditions,
    }
    wanted = {k: v for k, v in status.items() if v is not None}
    if {k: current.get(k) for k in wanted} == wanted and (
        verdict.serving_generation is not None or "servingGeneration" not in current
    ):
        return None
    return {"status": status}
