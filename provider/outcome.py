"""The three outcomes a key can have, never confused (see docs/rego.md).

- `Decided`: a value (allowed or denied for a definite reason, or a pinned reference); cached by
  Gatekeeper and by us.
- `Invalid`: the key is not an image reference; an item error; cacheable.
- `UndecidedKey`: could not be decided now (registry down, rate limited, deadline); left out of the
  response's items, named in its `systemError`, never cached.

The engine produces them and the wire format (provider/protocol.py) encodes them; this module depends on
neither. `encode_value` is the one strict JSON encoding both use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Decided", "Invalid", "Outcome", "UndecidedKey", "encode_value"]

_UNSET: Any = object()
# Every verdict object starts with these members (provider/verdict.py `_base`); tests/unit/test_verdict.py.
_ALLOWED_HEAD = b'{"schemaVersion":1,"allowed":true,'


class Decided:
    """A decided key: `value` is the verdict object (verify) or the replacement string (mutate).

    A verdict is kept (in the verdict cache, and here when it comes from there) as its compact JSON,
    `encoded`: the response splices those bytes; `value` decodes them only when someone asks.
    """

    __slots__ = ("_encoded", "_value")

    def __init__(self, value: Any = _UNSET, *, encoded: bytes | None = None) -> None:
        if value is _UNSET and encoded is None:
            raise TypeError("Decided takes a value, its encoding or both")
        self._value = value
        self._encoded = encoded

    @property
    def allowed(self) -> bool:
        """Whether a verify verdict allows; read from the head of its encoding when it was not decoded."""
        if self._value is _UNSET:
            assert self._encoded is not None
            return self._encoded.startswith(_ALLOWED_HEAD)
        return isinstance(self._value, dict) and self._value.get("allowed") is True

    @property
    def value(self) -> Any:
        if self._value is _UNSET:
            assert self._encoded is not None
            self._value = json.loads(self._encoded)
        return self._value

    @property
    def encoded(self) -> bytes:
        """The value as compact JSON (UTF-8), exactly as the response carries it."""
        if self._encoded is None:
            self._encoded = encode_value(self._value)
        return self._encoded

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decided) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.encoded)

    def __repr__(self) -> str:
        return f"Decided({self.value!r})"


def encode_value(value: Any) -> bytes:
    """Compact strict JSON, as responses are serialized (provider/protocol.py uses it too): a lone surrogate
    fails the UTF-8 encoding, NaN and infinities fail (Go's encoding/json rejects them)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class Invalid:
    error: str


@dataclass(frozen=True, slots=True)
class UndecidedKey:
    reason: str
    message: str


Outcome = Decided | Invalid | UndecidedKey
