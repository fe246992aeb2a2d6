"""The `status` Countersign writes on its resources: the merge patch, only when it changes (pure).

    status:
      observedGeneration: 3          # metadata.generation last examined
      servingGeneration: 2           # the generation in service (absent: none)
      summary: "all of [cosign, sbom]"
      conditions: [Ready, Invalid]   # with the field path of what is wrong

The body comes from `provider.kube.resources.ResourceStatus.body` (a condition's `lastTransitionTime` only
moves when its `status` changes); this module decides whether it differs from what the object says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provider.kube.resources import ResourceStatus

__all__ = ["status_patch"]


def status_patch(current: object, status: ResourceStatus, now: str) -> dict[str, Any] | None:
    """The merge patch (`{"status": {...}}`) taking the object's `current` status to `status`, or None
    when it already says that. `now`: the RFC 3339 time for conditions that change."""
    previous = current if isinstance(current, Mapping) else {}
    body = status.body(previous, now)
    if {k: previous.get(k) for k in body} == body and (
        "servingGeneration" in body or "servingGeneration" not in previous
    ):
        return None
    if "servingGeneration" not in body:
        body["servingGeneration"] = None  # merge patch: removes it
    return {"status": body}
