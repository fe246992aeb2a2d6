"""The one error type of the OCI content model (defined in `verifiers.errors`, re-exported here)."""

from __future__ import annotations

from verifiers.errors import ContentError

__all__ = ["ContentError"]
