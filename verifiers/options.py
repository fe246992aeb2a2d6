"""Reading verifier options: values shared by Countersign's configuration and every verifier's options.

`parse_duration(value, path)` reads a duration as the configuration file writes one; a bad value raises
`OptionsError(path, message)`, which the configuration loader reports under its own field path.
"""

from __future__ import annotations

import math
import re

from verifiers.base import OptionsError

__all__ = ["parse_duration"]

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object, path: str) -> float:
    """Seconds from a number (seconds) or a string like "2.5s", "900ms", "5m", "1h", "30d"."""
    if isinstance(value, bool):
        raise OptionsError(path, "expected a duration, got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise OptionsError(path, f"expected a finite duration, got {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.fullmatch(value.strip())
        if m:
            return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    raise OptionsError(path, f"expected a duration like 2.5s, 900ms, 5m, 12h or 30d, got {value!r}")
