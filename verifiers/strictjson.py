"""Strict JSON: the one parser for untrusted documents (registry content, signed payloads, SBOMs).

Two parsers that disagree on which of two duplicate keys wins is how signed content gets swapped; a
verifier must refuse such documents rather than pick one. One set of rules, here, for every caller:

- UTF-8 only (`decode_utf8`); a byte-order mark is not JSON;
- duplicate object keys, at any depth, are refused;
- `NaN`, `Infinity` and `-Infinity` are refused; so are integers longer than Python's digit limit;
- nesting is measured on the raw bytes before the parser recurses (`nesting_exceeds`, `nesting_depth`,
  linear, a few C passes, exact for valid JSON) and refused past the caller's bound: Python's `json`
  recurses once per level, and a document 200,000 deep would take the stack with it.

Two refusals are the caller's choice, because adopting them for signed payloads would need checking against
the reference verifiers first (Go decodes a lone surrogate escape to U+FFFD and accepts it): numbers that
overflow a double (`finite_numbers`), and strings holding an unpaired UTF-16 surrogate
(`has_unpaired_surrogate`). Registry content and SBOMs refuse both; signed payloads (cosign, notation)
neither. Sizes are bounded by the callers, before the bytes reach here.

`parse` raises `StrictJSONError` (a `ValueError`) whose `kind` says which rule was broken. Each caller turns
that into its own error type and wording (`verifiers.oci.boundedjson` a `ContentError`, `loads` a plain
`ValueError`, `verifiers.sbom_formats` an `SbomFormatError` naming the JSON path), so their messages stay
as they were. With `locate=True` the parser records violations instead of stopping at the first, and
reports the first in document order with its JSON path (`packages[3].name`, `a["x y"]`).
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, NoReturn

__all__ = [
    "CONSTANT",
    "DUPLICATE_KEY",
    "ENCODING",
    "INTEGER_DIGITS",
    "INVALID",
    "NUMBER_RANGE",
    "RECURSION",
    "SYNTAX",
    "StrictJSONError",
    "decode_utf8",
    "has_unpaired_surrogate",
    "join_path",
    "json_type",
    "loads",
    "nesting_depth",
    "nesting_exceeds",
    "no_constant",
    "no_duplicates",
    "parse",
    "show",
]

# StrictJSONError.kind
ENCODING = "encoding"  # not UTF-8
SYNTAX = "syntax"  # not JSON (json.JSONDecodeError); `msg`, `lineno`, `colno` say where
RECURSION = "recursion"  # the parser ran out of stack (nesting the pre-scan did not catch)
DUPLICATE_KEY = "duplicate_key"  # `detail`: the key
CONSTANT = "constant"  # NaN, Infinity, -Infinity; `detail`: the constant
NUMBER_RANGE = "number_range"  # a number that overflows a double; `detail`: its text
INTEGER_DIGITS = "integer_digits"  # an integer longer than Python converts; `detail`: its text (locate)
INVALID = "invalid"  # anything else the decoder refused (e.g. an integer's digits, when not located)


class StrictJSONError(ValueError):
    """A document the strict rules refuse. `kind` names the rule (the module's constants); `detail` the
    offending key, constant or number text; `path` (only with `locate=True`) the JSON path of the offending
    value, "" for the top level, None when there is no place for it in the document."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        detail: str = "",
        path: str | None = None,
        msg: str = "",
        lineno: int = 0,
        colno: int = 0,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail
        self.path = path
        self.msg, self.lineno, self.colno = msg, lineno, colno


# --- nesting, measured on the raw bytes ----------------------------------------------------------------

_KEEP_BRACKETS = bytes(range(256)).translate(bytes.maketrans(b"{}", b"[]"))
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_RUNS = re.compile(rb"\[+|\]+")
_DEPTH_STEP = tuple(1 if byte in b"[{" else -1 if byte in b"]}" else 0 for byte in range(256))


def _outside_strings(data: bytes) -> bytes:
    """`data` without its strings. In valid JSON a backslash occurs only inside a string, as the start of
    an escape: dropping the `\\\\` pairs and then the `\\"` pairs (both left to right, as escapes pair up)
    leaves every string a plain run between two quotes, so the text outside strings is at the even indexes
    of a split on quotes. For invalid JSON the result may be off, but the parser then refuses the text."""
    s = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(s.split(b'"')[::2]) if b'"' in s else s


def nesting_exceeds(data: bytes, limit: int) -> bool:
    """Whether the JSON text `data` nests arrays/objects more than `limit` deep (exact for valid JSON).

    Strings are removed first, then everything but brackets; a few passes drop innermost `[]` pairs (one
    level each), and a regex over runs of brackets measures what is left. Linear in `len(data)`.
    """
    s = _outside_strings(data).translate(_KEEP_BRACKETS, _NOT_BRACKETS)
    for _ in range(8):
        if len(s) <= 2 * limit:
            break
        shorter = s.replace(b"[]", b"")
        if len(shorter) == len(s):
            break
        s = shorter
        limit -= 1  # each pass removes exactly the innermost level
        if limit < 0:
            return True
    if s.count(b"[") <= limit:
        return False
    depth = 0
    for run in _RUNS.finditer(s):
        if s[run.start()] == 0x5B:  # "["
            depth += run.end() - run.start()
            if depth > limit:
                return True
        else:
            depth -= run.end() - run.start()
    return False


def nesting_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text `data` (exact for valid JSON), for a message
    that states it. Linear, with no Python-level loop; `nesting_exceeds` is cheaper for a yes/no."""
    brackets = _outside_strings(data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


# --- the rules, as json.loads hooks --------------------------------------------------------------------


def show(value: object, limit: int = 80) -> str:
    """A short, ASCII-only rendering of an untrusted value for an error message (never the whole value)."""
    if isinstance(value, str):
        return ascii(value[:limit]) + ("..." if len(value) > limit else "")
    if isinstance(value, bool | int | float) or value is None:
        text = json.dumps(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge number"
        return text[:limit]
    return json_type(value)


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages ("an array", "a number", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _duplicate(pairs: list[tuple[str, Any]]) -> str | None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None  # pragma: no cover - only called when a key repeats


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook`: the object, or `StrictJSONError` (DUPLICATE_KEY) when a key repeats."""
    out = dict(pairs)
    if len(out) != len(pairs):
        key = _duplicate(pairs) or ""
        raise StrictJSONError(DUPLICATE_KEY, f"duplicate key {show(key)}", detail=key)
    return out


def no_constant(name: str) -> NoReturn:
    """`parse_constant`: NaN, Infinity and -Infinity are not JSON."""
    raise StrictJSONError(CONSTANT, f"non-standard JSON constant {name}", detail=name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(NUMBER_RANGE, f"number {text[:40]} is out of range", detail=text)
    return value


class _Rejected:
    """Stands in the parsed tree for a value the decoder refused, so that its path can be found."""

    __slots__ = ("error",)

    def __init__(self, error: StrictJSONError) -> None:
        self.error = error


class _Recorder:
    """Hooks that note violations instead of failing blind (`locate=True`).

    The hooks cannot know where they are in the document, so they record the offending objects (kept
    alive here, so that their ids stay unique) and `locate` finds the first one's path afterwards.
    """

    def __init__(self, finite_numbers: bool) -> None:
        self.problems: dict[int, tuple[object, str | None, StrictJSONError]] = {}
        self.finite_numbers = finite_numbers

    def _reject(self, error: StrictJSONError) -> _Rejected:
        rejected = _Rejected(error)
        self.problems[id(rejected)] = (rejected, None, error)
        return rejected

    def object_pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            key = _duplicate(pairs) or ""
            error = StrictJSONError(DUPLICATE_KEY, f"duplicate key {show(key)}", detail=key)
            self.problems[id(result)] = (result, key, error)
        return result

    def constant(self, name: str) -> _Rejected:
        return self._reject(StrictJSONError(CONSTANT, f"non-standard JSON constant {name}", detail=name))

    def float_(self, text: str) -> float | _Rejected:
        try:
            return _finite(text) if self.finite_numbers else float(text)
        except StrictJSONError as error:
            return self._reject(error)

    def int_(self, text: str) -> int | _Rejected:
        try:
            return int(text)
        except ValueError as exc:  # more digits than sys.get_int_max_str_digits()
            return self._reject(StrictJSONError(INTEGER_DIGITS, str(exc), detail=text))

    def locate(self, root: object) -> StrictJSONError:
        """The first recorded violation in document order, with its path."""
        stack: list[tuple[object, str]] = [(root, "")]
        while stack:
            node, path = stack.pop()
            problem = self.problems.get(id(node))
            if problem is not None:
                _, key, error = problem
                error.path = path if key is None else join_path(path, key)
                return error
            if isinstance(node, dict):
                stack.extend((value, join_path(path, key)) for key, value in reversed(node.items()))
            elif isinstance(node, list):
                stack.extend((node[i], f"{path}[{i}]") for i in reversed(range(len(node))))
        return next(iter(self.problems.values()))[2]  # unreachable in practice; path stays None


_SIMPLE_KEY_RE = re.compile(r"[A-Za-z_@$][A-Za-z0-9_@$-]*")


def join_path(path: str, key: str) -> str:
    """`path.key`, or `path["key"]` when the key is not a plain name."""
    if _SIMPLE_KEY_RE.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


# --- parsing --------------------------------------------------------------------------------------------


def decode_utf8(data: bytes) -> str:
    """`data` as text; `StrictJSONError` (ENCODING; the `UnicodeDecodeError` as its cause) when not UTF-8.

    A byte-order mark decodes (to U+FEFF), and the parser then refuses it as not JSON.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJSONError(ENCODING, str(exc), detail=exc.reason) from exc


def parse(text: str, *, finite_numbers: bool = True, locate: bool = False) -> Any:
    """Parse `text` under the rules (its nesting already checked by the caller); `StrictJSONError`.

    Without `locate`, the first violation met stops the parse (as `json` meets them: an inner object
    before the one that holds it). With `locate`, the parse goes on; a syntax error anywhere is what is
    reported, else the first violation in document order, with its `path`.
    """
    recorder = _Recorder(finite_numbers) if locate else None
    try:
        if recorder is not None:
            value = json.loads(
                text,
                object_pairs_hook=recorder.object_pairs,
                parse_constant=recorder.constant,
                parse_float=recorder.float_,
                parse_int=recorder.int_,
            )
        elif finite_numbers:
            value = json.loads(
                text, object_pairs_hook=no_duplicates, parse_constant=no_constant, parse_float=_finite
            )
        else:
            value = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise StrictJSONError(SYNTAX, str(exc), msg=exc.msg, lineno=exc.lineno, colno=exc.colno) from exc
    except StrictJSONError:
        raise
    except RecursionError:
        raise StrictJSONError(RECURSION, "nested too deeply to parse") from None
    except ValueError as exc:  # an integer's digit limit, or anything else the decoder refuses
        raise StrictJSONError(INVALID, str(exc)) from exc
    if recorder is not None and recorder.problems:
        raise recorder.locate(value)
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def has_unpaired_surrogate(raw: bytes, value: Any) -> bool:
    """Whether a string of the parsed `value` holds an unpaired UTF-16 surrogate (RFC 7493); only
    possible through a `\\uD8xx`-style escape in `raw`, so the walk runs only when one occurs."""
    if _SURROGATE_ESCAPE.search(raw) is None:
        return False
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads(data: bytes | str, *, max_depth: int) -> Any:
    """Signed payloads (cosign, notation): parse strictly; any violation (including invalid UTF-8 or a
    byte-order mark) is a ValueError. Numbers that overflow a double and lone surrogates are accepted."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if nesting_exceeds(raw, max_depth):  # refused before json.loads can recurse 100,000 levels deep
        raise ValueError(f"nested more than {max_depth} levels deep")
    text = data.decode("utf-8") if isinstance(data, bytes) else data  # UnicodeDecodeError: a ValueError
    try:
        return parse(text, finite_numbers=False)
    except StrictJSONError as exc:
        if exc.kind == RECURSION:
            raise ValueError("nested too deeply to parse") from exc
        raise
