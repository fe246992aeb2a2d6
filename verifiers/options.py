"""Reading options with pydantic models: one mechanism for Countersign's configuration and every verifier's
options, built-in or a plugin's.

A verifier describes its options as an `OptionsModel` (pydantic v2, strict: no "5" for an integer, no 1 for
a boolean; unknown fields refused; camelCase names through aliases) and reads them with
`parse_options(Model, options)`. Every problem is reported at once: the `OptionsError` carries them all in
`errors`, each `(path, message)` with the path relative to `options` (`keys[0].rsaPadding`); Countersign
reports them at `verifiers.<name>.options.<path>`.

    class Options(OptionsModel):
        exempt: Annotated[list[NonEmptyStr], Message("expected a list of non-empty glob strings")] = []
        max_age: Annotated[float, Duration(minimum=1)] | None = Field(None, alias="maxAge")

    options = parse_options(Options, raw)

Building blocks, as `Annotated` metadata: `Duration(minimum, maximum)` (a number of seconds or "2.5s",
"900ms", "5m", "12h", "30d"; booleans and non-finite numbers refused; `above=` for an exclusive lower
bound), `IntRange(minimum, maximum)`, `StringList()` (a list of non-empty strings, or one string),
`OneOf(*values)` (a string among fixed values), `Shaped(type, what)` (the container's own message),
`Message(text)` (whatever is wrong with the value, this is the message; `got=True` appends the value);
`NonEmptyStr`; and `check(...)` (problems that a validator finds beyond shape, each at its own field). The
models also give the options' JSON Schema (`Model.model_json_schema(by_alias=True)`).

Semantic checks that read files (keys, trust roots, trust policies) stay in the verifier, after the model
has validated the shape, and raise `OptionsError` too.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

from verifiers.errors import OptionsError

__all__ = [
    "DURATION_PATTERN",
    "Duration",
    "IntRange",
    "Message",
    "NonEmptyStr",
    "OneOf",
    "OptionsModel",
    "Shaped",
    "StringList",
    "check",
    "describe",
    "field_errors",
    "parse_duration",
    "parse_options",
]

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# The string form of a duration, for JSON Schema (leading and trailing white space are allowed, as here).
DURATION_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?(ms|s|m|h|d)?\s*$"

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


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


def describe(value: object) -> str:
    """How a message names the kind of a value it refuses: "a mapping", "a list", "nothing", "int"."""
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _error(message: str) -> PydanticCustomError:
    # The text goes in through the context, so braces in it are never read as placeholders.
    return PydanticCustomError("countersign", "{message}", {"message": message})


# --- types ---------------------------------------------------------------------------------------------

NonEmptyStr = Annotated[str, StringConstraints(strict=True, min_length=1)]


class _Constraint:
    """Annotated metadata that validates a value and states its JSON Schema."""

    json: dict[str, Any]

    def validate(self, value: Any) -> Any:
        return value

    def inner(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return handler(source)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.validate, self.inner(source, handler))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return dict(self.json)


class Duration(_Constraint):
    """`Annotated[float, Duration(minimum, maximum)]`: a duration in seconds, within the bounds given.

    A number (seconds) or a string like "2.5s", "900ms", "5m", "12h", "30d" (`parse_duration`).
    `Duration(above=0, maximum=300)`: more than `above` (exclusive) and at most `maximum`."""

    def __init__(
        self, minimum: float | None = None, maximum: float | None = None, *, above: float | None = None
    ) -> None:
        if minimum is not None and above is not None:
            raise ValueError("Duration: give minimum or above, not both")
        self.minimum, self.maximum, self.above = minimum, maximum, above
        number: dict[str, Any] = {"type": "number"}
        if minimum is not None:
            number["minimum"] = minimum
        if above is not None:
            number["exclusiveMinimum"] = above
        if maximum is not None:
            number["maximum"] = maximum
        self.json = {"anyOf": [number, {"type": "string", "pattern": DURATION_PATTERN}]}

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self.validate)

    def validate(self, value: Any) -> float:
        try:
            seconds = parse_duration(value, "")
        except OptionsError as e:
            raise _error(e.message) from None
        low, high, above = self.minimum, self.maximum, self.above
        if above is not None and (seconds <= above or (high is not None and seconds > high)):
            bound = f"more than {above:g}s" + (f" and at most {high:g}s" if high is not None else "")
            raise _error(f"must be {bound}, got {seconds:g}s")
        if (low is not None and seconds < low) or (high is not None and seconds > high):
            if low is not None and high is not None:
                bound = f"between {low:g}s and {high:g}s"
            else:
                bound = f">= {low:g}s" if low is not None else f"<= {high:g}s"
            raise _error(f"must be {bound}, got {seconds:g}s")
        return seconds


class IntRange(_Constraint):
    """`Annotated[int, IntRange(minimum, maximum)]`: an integer (not a boolean) within the bounds."""

    def __init__(self, minimum: int, maximum: int | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.json = {"type": "integer", "minimum": minimum}
        if maximum is not None:
            self.json["maximum"] = maximum

    def validate(self, value: int) -> int:
        low, high = self.minimum, self.maximum
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise _error(f"must be {bound}, got {value}")
        return value


class OneOf(_Constraint):
    """`Annotated[str, OneOf("a", "b")]`: a string among fixed values."""

    def __init__(self, *values: str) -> None:
        self.values = values
        self.json = {"type": "string", "enum": list(values)}

    def inner(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.str_schema(strict=True, min_length=1)

    def validate(self, value: str) -> str:
        if value not in self.values:
            raise _error(f"must be {' or '.join(repr(v) for v in self.values)}, got {value!r}")
        return value


class StringList(_Constraint):
    """`Annotated[list[str], StringList()]`: non-empty strings, each checked at its index (`scopes[1]`);
    one string stands for a list of it; empty only with `allow_empty`."""

    def __init__(self, *, allow_empty: bool = False) -> None:
        self.allow_empty = allow_empty
        item = {"type": "string", "minLength": 1}
        array: dict[str, Any] = {"type": "array", "items": item}
        if not allow_empty:
            array["minItems"] = 1
        self.json = {"anyOf": [item, array]}

    def inner(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        items = core_schema.list_schema(core_schema.str_schema(strict=True, min_length=1), strict=True)
        return core_schema.no_info_before_validator_function(self._shape, items)

    @staticmethod
    def _shape(value: object) -> object:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise _error(f"expected a list of strings, got {describe(value)}")
        return value

    def validate(self, value: list[str]) -> list[str]:
        if not value and not self.allow_empty:
            raise _error("must not be empty")
        return value


class Shaped(_Constraint):
    """`Annotated[dict[str, X], Shaped(dict, "a mapping of host to settings")]`: a value of the wrong
    container type (or an empty one, with `non_empty`) is reported as "expected {what}, got ..."; the
    items' own problems keep their paths."""

    def __init__(self, kind: type, what: str, *, non_empty: bool = False) -> None:
        self.kind, self.what, self.non_empty = kind, what, non_empty
        self.json = {}

    def inner(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self._shape, handler(source))

    def _shape(self, value: object) -> object:
        if not isinstance(value, self.kind) or (self.non_empty and not value):
            got = f"an empty {describe(value)[2:]}" if isinstance(value, self.kind) else describe(value)
            raise _error(f"expected {self.what}, got {got}")
        return value

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = dict(handler(schema))
        if self.non_empty:
            out["minProperties" if self.kind is dict else "minItems"] = 1
        return out


class Message:
    """Annotated metadata: any problem with the value (its type, its items, a constraint) is reported as
    `text`, once, at the value's own path: `Annotated[list[NonEmptyStr], Message("expected a list of
    globs")]` reports `exempt`, not `exempt[1]`. With `got=True` the refused value follows
    (`expected an integer between 1 and 64, got 0`)."""

    def __init__(self, text: str, *, got: bool = False) -> None:
        self.text, self.got = text, got

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_wrap_validator_function(self._validate, handler(source))

    def _validate(self, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError:
            raise _error(f"{self.text}, got {value!r}" if self.got else self.text) from None


def check(title: str, problems: Iterable[tuple[Loc | str, str]]) -> None:
    """Raise every problem at once from a validator, each at its own field relative to the model being
    validated (`("keys", 0, "path")` or `"keys"`; `()` is the model itself). Does nothing when there are
    none. Use it in a `model_validator(mode="after")` for rules across fields."""
    details: list[InitErrorDetails] = []
    for loc, message in problems:
        location: Loc = (loc,) if isinstance(loc, str) else loc
        details.append(InitErrorDetails(type=_error(message), loc=location, input=None))
    if details:
        raise ValidationError.from_exception_data(title, details)


# --- errors --------------------------------------------------------------------------------------------


class OptionsModel(BaseModel):
    """The base of option models: strict types, unknown fields refused, immutable.

    Class attributes a model may set: `required_messages` (alias -> the message when that field is missing,
    default "required"); `bracket_keys` (aliases of mappings whose keys are shown as `field['key']`, not
    `field.key`, in paths); `unknown_name` (what an unknown key of this model is called in "unknown ...
    (known: ...)": by default "field", or what `field_errors` is told for the top level).
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    required_messages: ClassVar[Mapping[str, str]] = {}
    bracket_keys: ClassVar[frozenset[str]] = frozenset()
    unknown_name: ClassVar[str | None] = None


def _unwrap(annotation: Any) -> Any:
    """The type under Annotated and Optional (the first model of a union, else the first member)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            annotation = (models or members)[0] if members else Any
            continue
        return annotation


def _place(root: type[BaseModel], loc: Loc) -> tuple[str, type[BaseModel] | None, str | None]:
    """The printed path of `loc`, and the model and field alias the last component names (if it does)."""
    path = ""
    current: Any = root
    model: type[BaseModel] | None = None
    field: str | None = None
    bracket = False
    for part in loc:
        kind = _unwrap(current)
        origin = typing.get_origin(kind)
        model, field = None, None
        if part == "[key]":  # a mapping's key is what is wrong
            continue
        if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(part, str):
            path = f"{path}.{part}" if path else part
            model, field = kind, part
            found = next((f for n, f in kind.model_fields.items() if (f.alias or n) == part), None)
            current = found.annotation if found is not None else Any
            bracket = part in getattr(kind, "bracket_keys", frozenset())
        elif origin in (dict, Mapping) or (isinstance(origin, type) and issubclass(origin, Mapping)):
            path = f"{path}[{part!r}]" if bracket else (f"{path}.{part}" if path else str(part))
            current = typing.get_args(kind)[1] if typing.get_args(kind) else Any
            bracket = False
        elif isinstance(part, int):
            path = f"{path}[{part}]"
            args = typing.get_args(kind)
            current = args[0] if args else Any
            bracket = False
        else:
            path = f"{path}.{part}" if path else str(part)
            current = Any
    return path, model, field


_KIND_MESSAGES = {
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "string_type": "expected a non-empty string",
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "float_type": "expected a number",
}


def _message(error: Any, model: type[BaseModel] | None, field: str | None, unknown: str, depth: int) -> str:
    kind = error["type"]
    if kind == "missing":
        messages = getattr(model, "required_messages", {}) if model is not None else {}
        return str(messages.get(field, "required"))
    if kind == "extra_forbidden":
        known = ", ".join(sorted(f.alias or n for n, f in model.model_fields.items())) if model else ""
        word = getattr(model, "unknown_name", None) or (unknown if depth == 1 else "field")
        return f"unknown {word} (known: {known})" if known else f"unknown {word}"
    if kind in _KIND_MESSAGES:
        return f"{_KIND_MESSAGES[kind]}, got {describe(error['input'])}"
    if kind == "string_too_short":
        return "expected a non-empty string, got an empty string"
    if kind == "literal_error":
        return f"must be {error['ctx']['expected']}, got {error['input']!r}"
    return str(error["msg"])


def field_errors(
    error: ValidationError, model: type[BaseModel], *, unknown: str = "field"
) -> list[tuple[str, str]]:
    """Every problem of a validation of `model`, as `(path, message)` in the configuration's notation;
    `unknown` names what an unknown top-level key is ("option" for a verifier's options)."""
    out: list[tuple[str, str]] = []
    items = error.errors(include_url=False)
    # Unknown fields of one mapping come together; they are listed in sorted order, not the input's.
    i = 0
    while i < len(items):
        j = i
        while (
            j < len(items)
            and items[j]["type"] == "extra_forbidden"
            and items[j]["loc"][:-1] == items[i]["loc"][:-1]
        ):
            j += 1
        if j > i + 1:
            items[i:j] = sorted(items[i:j], key=lambda e: str(e["loc"][-1]))
        i = max(j, i + 1)
    for item in items:
        loc: Loc = tuple(item["loc"])
        path, owner, field = _place(model, loc)
        depth = len([p for p in loc if p != "[key]"])
        out.append((path, _message(item, owner, field, unknown, depth)))
    return out


def parse_options(
    model: type[M], options: Mapping[str, Any], *, context: Mapping[str, Any] | None = None
) -> M:
    """`options` validated by `model`; else an `OptionsError` with every problem, paths relative to
    `options`. `context` reaches the model's validators (`ValidationInfo.context`)."""
    data = dict(options) if isinstance(options, Mapping) else options
    try:
        return model.model_validate(data, context=dict(context) if context is not None else None)
    except ValidationError as e:
        raise OptionsError.of(field_errors(e, model, unknown="option")) from None
