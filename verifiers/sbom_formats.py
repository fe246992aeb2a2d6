"""Is this blob a well-formed SBOM of the format it claims to be? I/O-free checks and the facts for a verdict.

`parse_sbom(data, media_type)` takes the bytes of an SBOM (already fetched and digest-checked by the
caller) and the media type the registry declared for them, and either returns an `SbomInfo` (format,
spec version, package count, creation time, name) or raises `SbomFormatError` whose message names the
JSON path of the problem, e.g. ``packages[3].SPDXID: missing`` or
``creationInfo.created: not an RFC 3339 timestamp: '2024-13-01'``. Errors that have no place in the
document (bad UTF-8, JSON syntax, nesting depth, media type) carry no path; the top level is
``(root)``.

The declared media type decides which checks run: `application/spdx+json` or
`application/vnd.cyclonedx+json`, case-insensitive, with optional parameters. A document of the other
format (or one that carries the markers of both) is rejected, e.g. "declared application/spdx+json but
the document is CycloneDX". A `version` parameter, when present, must agree with the document
(``application/vnd.cyclonedx+json; version=1.5`` needs ``"specVersion": "1.5"``; for SPDX,
``version=2.3`` needs ``"spdxVersion": "SPDX-2.3"``, and ``version=3.0`` or ``3.0.x`` an SPDX 3.0
document). Other parameters are ignored.

JSON is read strictly, to leave no room for parser differentials between this check and whatever
consumes the SBOM later:

- UTF-8 only; invalid UTF-8 and a leading byte order mark (RFC 8259 §8.1: senders must not add one,
  and Go's encoding/json rejects it) are errors.
- Duplicate object keys, at any depth, are errors (different parsers keep different copies).
- `NaN`, `Infinity`, `-Infinity`, numbers that overflow a double and integers too long to convert are
  errors.
- Nesting deeper than `MAX_DEPTH` (64) is refused by a linear pre-scan before the parser recurses.
- The top level must be an object.
- Strings that the checks read must be valid Unicode (no unpaired surrogate escapes such as "\\ud800").

What is checked (extra fields are allowed everywhere, as both formats allow extensions):

SPDX 2.x JSON (`spdxVersion` SPDX-2.0 to SPDX-2.3; in practice 2.2 and 2.3): `SPDXID` is
"SPDXRef-DOCUMENT"; `dataLicense` and `name` are strings; `documentNamespace` is an absolute URI (a
scheme, no fragment, no whitespace); `creationInfo.created` is an RFC 3339 timestamp in UTC (the spec's
``YYYY-MM-DDThh:mm:ssZ``; ``+00:00`` and fractional seconds are accepted too); `creationInfo.creators`
is a non-empty array of strings "Tool: ...", "Organization: ..." or "Person: ..."; `packages`, if
present, is an array of at most `max_packages` objects, each with `SPDXID` ("SPDXRef-" and more),
`name` and `downloadLocation` strings.

SPDX 3.0 JSON-LD is supported minimally. It is recognised by an `@context` naming ``spdx.org/rdf/3``;
`@graph` must be an array of objects each with a string `type`; there must be exactly one
`SpdxDocument` element (the spec allows at most one; without it there is no document to speak of),
whose `creationInfo` (a CreationInfo object or the `@id` of a CreationInfo node in `@graph`) gives
`created`; every CreationInfo has `specVersion` 3.0 or 3.0.x, a UTC `created` and a non-empty
`createdBy` array of strings. The package count is the number of `software_Package` elements, the name
is the SpdxDocument's `name`, and the spec version is reported as "SPDX-3.0". Element properties beyond
these are not validated (the 3.0 model is large; its SHACL shapes are the real validator).

CycloneDX JSON 1.2 to 1.6: `bomFormat` is "CycloneDX"; `specVersion` is one of 1.2 to 1.6; `version`,
if present, is an integer >= 1 (not a boolean, not 1.0); `serialNumber`, if present, is
``urn:uuid:`` and a lowercase UUID (the schema's pattern); `metadata`, if present, is an object whose
`timestamp` (any RFC 3339 offset, converted to UTC) and `component` are checked; every component in
`components`, at any depth, and under `metadata.component` is an object with a `name` string and a
`type` from that spec version's enum (1.5 added platform, device-driver, machine-learning-model and
data; 1.6 added cryptographic-asset). The package count is the number of components in `components`
and their nested `components`; `metadata.component` (the subject itself) and its sub-components are
checked but not counted. The BOM's `version` is optional here, though the 1.2 to 1.4 schemas require
it, and so is a component's `version`, which the 1.2 and 1.3 schemas require.

Timestamps: ``YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|-hh:mm)`` with ``T``/``Z`` in either case; a missing
offset, an impossible date and leap seconds (``:60``) are errors. Results are aware UTC datetimes,
fractional seconds truncated to microseconds.

Work is bounded: one linear pre-scan, one parse, one pass over the fields that are checked, and at
most `max_packages` packages or components examined. The size of `data` is the caller's to bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from verifiers import strictjson
from verifiers.errors import FieldError

__all__ = [
    "CYCLONEDX_JSON",
    "DEFAULT_SBOM_MEDIA_TYPES",
    "MAX_DEPTH",
    "SPDX_JSON",
    "SbomFormatError",
    "SbomInfo",
    "format_for_media_type",
    "parse_sbom",
]

SPDX_JSON = "application/spdx+json"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
DEFAULT_SBOM_MEDIA_TYPES: tuple[str, ...] = (SPDX_JSON, CYCLONEDX_JSON)

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted; the top-level object is depth 1."""

_FORMAT_BY_MEDIA_TYPE = {SPDX_JSON: "spdx", CYCLONEDX_JSON: "cyclonedx"}
_FORMAT_DISPLAY = {"spdx": "SPDX", "cyclonedx": "CycloneDX"}

# RFC 9110 media types: type "/" subtype *( OWS ";" OWS [ parameter ] ).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE_RE = re.compile(rf"[ \t]*({_TOKEN}/{_TOKEN})[ \t]*")
_QUOTED_STRING = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*"'
_PARAMETER_RE = re.compile(rf";[ \t]*(?:({_TOKEN})=({_TOKEN}|{_QUOTED_STRING}))?[ \t]*")
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)

_SPDX2_VERSION_RE = re.compile(r"SPDX-2\.[0-3]")
_SPDX3_CONTEXT_MARK = "spdx.org/rdf/3"
_SPDX3_SPEC_VERSION_RE = re.compile(r"3\.0(?:\.[0-9]+)?")
_SPDX3_REPORTED_VERSION = "SPDX-3.0"
_SPDX_CREATOR_PREFIXES = ("Tool:", "Organization:", "Person:")
_URI_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")

_CYCLONEDX_TYPES_1_2 = frozenset(
    {"application", "framework", "library", "container", "operating-system", "device", "firmware", "file"}
)
_CYCLONEDX_TYPES_1_5 = _CYCLONEDX_TYPES_1_2 | {"platform", "device-driver", "machine-learning-model", "data"}
_CYCLONEDX_TYPES_1_6 = _CYCLONEDX_TYPES_1_5 | {"cryptographic-asset"}
_CYCLONEDX_COMPONENT_TYPES: dict[str, frozenset[str]] = {
    "1.2": _CYCLONEDX_TYPES_1_2,
    "1.3": _CYCLONEDX_TYPES_1_2,
    "1.4": _CYCLONEDX_TYPES_1_2,
    "1.5": _CYCLONEDX_TYPES_1_5,
    "1.6": _CYCLONEDX_TYPES_1_6,
}
_CYCLONEDX_SERIAL_RE = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_RFC3339_NO_OFFSET_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?")

_SHOW_MAX = 80


class SbomFormatError(FieldError):
    """The bytes are not a well-formed SBOM of the declared format.

    `path` is the JSON path of the offending value (``packages[3].SPDXID``; ``(root)`` for the top level),
    or "" when the problem has no place in the document (encoding, syntax, nesting depth, media type,
    declared format or version). `message` is the text after the path.
    """


@dataclass(frozen=True, slots=True)
class SbomInfo:
    """Facts about a well-formed SBOM, for the verdict."""

    format: str
    """Which format: "spdx" or "cyclonedx"."""
    spec_version: str
    """The version of the format: "SPDX-2.3", "SPDX-3.0" (for any 3.0.x), "1.5", ..."""
    package_count: int
    """SPDX packages, or CycloneDX components counted at every depth."""
    created: datetime | None
    """When the SBOM was made, an aware UTC datetime, if the document says."""
    name: str | None
    """The SPDX document name, or the name of the CycloneDX `metadata.component`."""

    def as_details(self) -> dict[str, object]:
        """The facts as a JSON-compatible mapping, `created` as an RFC 3339 string ending in "Z"."""
        return {
            "format": self.format,
            "specVersion": self.spec_version,
            "packageCount": self.package_count,
            "created": None if self.created is None else _format_timestamp(self.created),
            "name": self.name,
        }


def format_for_media_type(media_type: str) -> str | None:
    """The format, "spdx" or "cyclonedx", of a JSON SBOM media type (parameters allowed), else None.

    None too for a malformed media type (bad syntax, a parameter without a value, a repeated parameter).
    """
    parsed = _parse_media_type(media_type)
    return None if parsed is None else _FORMAT_BY_MEDIA_TYPE.get(parsed[0])


def parse_sbom(data: bytes, media_type: str, *, max_packages: int = 1_000_000) -> SbomInfo:
    """Check that `data` is a well-formed SBOM of the format `media_type` declares, and describe it.

    Raises `SbomFormatError`, naming the JSON path where there is one. Documents with more than
    `max_packages` packages (SPDX) or components (CycloneDX, all depths) are rejected.
    """
    if isinstance(max_packages, bool) or not isinstance(max_packages, int) or max_packages < 0:
        raise ValueError(f"max_packages must be a non-negative integer, got {max_packages!r}")
    parsed = _parse_media_type(media_type)
    fmt = None if parsed is None else _FORMAT_BY_MEDIA_TYPE.get(parsed[0])
    if parsed is None or fmt is None:
        raise SbomFormatError(
            "", f"unsupported SBOM media type {_show(media_type)}; expected {SPDX_JSON} or {CYCLONEDX_JSON}"
        )
    declared, parameters = parsed

    document = _load_json(data)
    actual = _sniff_format(document)
    if actual is not None and actual != fmt:
        raise SbomFormatError("", f"declared {declared} but the document is {_FORMAT_DISPLAY[actual]}")

    if fmt == "cyclonedx":
        info = _parse_cyclonedx(document, max_packages)
    elif "spdxVersion" not in document and _is_spdx3_context(document.get("@context")):
        info = _parse_spdx3(document, max_packages)
    else:
        info = _parse_spdx2(document, max_packages)

    version = parameters.get("version")
    if version is not None and not _version_parameter_matches(info, version):
        actual_version = f"CycloneDX {info.spec_version}" if fmt == "cyclonedx" else info.spec_version
        raise SbomFormatError(
            "", f"declared {declared}; version={_show(version)} but the document is {actual_version}"
        )
    return info


# --- media types -------------------------------------------------------------------------------------


def _parse_media_type(media_type: str) -> tuple[str, dict[str, str]] | None:
    """(lowercased type/subtype, {lowercased parameter name: value}), or None if malformed."""
    match = _MEDIA_TYPE_RE.match(media_type)
    if match is None:
        return None
    parameters: dict[str, str] = {}
    position = match.end()
    while position < len(media_type):
        parameter = _PARAMETER_RE.match(media_type, position)
        if parameter is None:
            return None
        position = parameter.end()
        name, value = parameter.group(1), parameter.group(2)
        if name is None:  # an empty parameter, as in "a/b;" or "a/b; ; c=d"
            continue
        name = name.lower()
        if name in parameters:
            return None
        if value.startswith('"'):
            value = _QUOTED_PAIR_RE.sub(r"\1", value[1:-1])
        parameters[name] = value
    return match.group(1).lower(), parameters


def _version_parameter_matches(info: SbomInfo, version: str) -> bool:
    if info.format == "cyclonedx":
        return version == info.spec_version
    if info.spec_version == _SPDX3_REPORTED_VERSION:
        return _SPDX3_SPEC_VERSION_RE.fullmatch(version) is not None
    return f"SPDX-{version}" == info.spec_version


# --- strict JSON (verifiers.strictjson's rules, reported with this module's paths and wording) ----------


def _load_json(data: bytes) -> dict[str, Any]:
    if data.startswith(b"\xef\xbb\xbf"):
        raise SbomFormatError(
            "", "not valid JSON: starts with a UTF-8 byte order mark (RFC 8259 section 8.1)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SbomFormatError("", f"not valid UTF-8: {exc.reason} at byte offset {exc.start}") from None

    depth = strictjson.nesting_depth(data)
    if depth > MAX_DEPTH:
        raise SbomFormatError("", f"not accepted: JSON nested {depth} levels deep, more than {MAX_DEPTH}")

    try:
        document: object = strictjson.parse(text, finite_numbers=True, locate=True)
    except strictjson.StrictJSONError as exc:
        raise _json_error(exc) from None

    if not isinstance(document, dict):
        raise _error("", f"expected a JSON object at the top level, got {_json_type(document)}")
    return document


def _json_error(exc: strictjson.StrictJSONError) -> SbomFormatError:
    if exc.kind == strictjson.SYNTAX:
        return SbomFormatError("", f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    if exc.kind == strictjson.RECURSION:  # the pre-scan makes this unlikely, but the stack may be shallower
        return SbomFormatError("", "not accepted: JSON nested too deeply to parse")
    messages = {
        strictjson.DUPLICATE_KEY: "duplicate key (a JSON object must not repeat a name)",
        strictjson.CONSTANT: f"{exc.detail} is not valid JSON (not a number)",
        strictjson.NUMBER_RANGE: f"number out of range: {_show(exc.detail)}",
        strictjson.INTEGER_DIGITS: f"integer with {len(exc.detail)} digits is too long",
    }
    message = messages.get(exc.kind)
    if message is None:  # anything else the decoder may raise on odd input
        return SbomFormatError("", f"not valid JSON: {exc.message}")
    if exc.path is None:  # unreachable in practice: every violation has a place in the document
        return SbomFormatError("", message)
    return _error(exc.path, message)


def _sniff_format(document: dict[str, Any]) -> str | None:
    """Which format the document itself claims to be, judging by its markers; None if unclear."""
    cyclonedx = document.get("bomFormat") == "CycloneDX"
    spdx = "spdxVersion" in document or _is_spdx3_context(document.get("@context"))
    if cyclonedx and spdx:
        raise _error("", "the document carries the markers of both SPDX and CycloneDX")
    if cyclonedx:
        return "cyclonedx"
    if spdx:
        return "spdx"
    return None


def _is_spdx3_context(context: object) -> bool:
    values: Iterable[object] = context if isinstance(context, list) else (context,)
    return any(isinstance(value, str) and _SPDX3_CONTEXT_MARK in value for value in values)


# --- SPDX --------------------------------------------------------------------------------------------


def _parse_spdx2(document: dict[str, Any], max_packages: int) -> SbomInfo:
    version = _required_string(document, "", "spdxVersion")
    if _SPDX2_VERSION_RE.fullmatch(version) is None:
        raise _error(
            "spdxVersion",
            f"unsupported version {_show(version)}; expected SPDX-2.0 to SPDX-2.3 "
            "(SPDX 3 documents are JSON-LD with an @context)",
        )
    spdx_id = _required_string(document, "", "SPDXID")
    if spdx_id != "SPDXRef-DOCUMENT":
        raise _error("SPDXID", f"expected 'SPDXRef-DOCUMENT', got {_show(spdx_id)}")
    _required_string(document, "", "dataLicense")
    name = _required_string(document, "", "name")
    _check_absolute_uri(_required_string(document, "", "documentNamespace"), "documentNamespace")

    creation_info = _required_object(document, "", "creationInfo")
    created = _timestamp(
        _required(creation_info, "creationInfo", "created"), "creationInfo.created", utc_only=True
    )
    creators = _required_array(creation_info, "creationInfo", "creators")
    if not creators:
        raise _error("creationInfo.creators", "empty; expected at least one creator")
    for index, creator in enumerate(creators):
        path = f"creationInfo.creators[{index}]"
        text = _string(creator, path)
        prefix = next((p for p in _SPDX_CREATOR_PREFIXES if text.startswith(p)), None)
        if prefix is None or not text[len(prefix) :].strip():
            raise _error(
                path, f'expected "Tool: ...", "Organization: ..." or "Person: ...", got {_show(text)}'
            )

    packages: list[Any] = []
    if "packages" in document:
        packages = _required_array(document, "", "packages")
        if len(packages) > max_packages:
            raise _error("packages", f"{len(packages)} packages, more than the limit of {max_packages}")
        for index, package in enumerate(packages):
            path = f"packages[{index}]"
            package_object = _object(package, path)
            package_id = _required_string(package_object, path, "SPDXID")
            if not package_id.startswith("SPDXRef-") or package_id == "SPDXRef-":
                raise _error(
                    f"{path}.SPDXID", f"expected 'SPDXRef-' followed by an id, got {_show(package_id)}"
                )
            _required_string(package_object, path, "name")
            _required_string(package_object, path, "downloadLocation")

    return SbomInfo(
        format="spdx", spec_version=version, package_count=len(packages), created=created, name=name
    )


def _parse_spdx3(document: dict[str, Any], max_packages: int) -> SbomInfo:
    graph = _required_array(document, "", "@graph")
    package_count = 0
    spdx_documents: list[tuple[dict[str, Any], str]] = []
    creation_infos: dict[str, datetime] = {}
    for index, element in enumerate(graph):
        path = f"@graph[{index}]"
        element_object = _object(element, path)
        element_type = _required_string(element_object, path, "type")
        if element_type == "software_Package":
            package_count += 1
            if package_count > max_packages:
                raise _error("@graph", f"more than {max_packages} software_Package elements (the limit)")
        elif element_type == "SpdxDocument":
            if spdx_documents:
                raise _error(
                    path, f"a second SpdxDocument (the first is {spdx_documents[0][1]}); at most one"
                )
            spdx_documents.append((element_object, path))
        elif element_type == "CreationInfo":
            created = _spdx3_creation_info(element_object, path)
            node_id = element_object.get("@id")
            if isinstance(node_id, str):
                creation_infos[node_id] = created

    if not spdx_documents:
        raise _error("@graph", "no SpdxDocument element")
    spdx_document, path = spdx_documents[0]
    reference = _required(spdx_document, path, "creationInfo")
    if isinstance(reference, str):
        if reference not in creation_infos:
            raise _error(
                f"{path}.creationInfo", f"{_show(reference)} is not the @id of a CreationInfo in @graph"
            )
        created = creation_infos[reference]
    elif isinstance(reference, dict):
        creation_path = f"{path}.creationInfo"
        creation_type = _required_string(reference, creation_path, "type")
        if creation_type != "CreationInfo":
            raise _error(f"{creation_path}.type", f"expected 'CreationInfo', got {_show(creation_type)}")
        created = _spdx3_creation_info(reference, creation_path)
    else:
        raise _error(
            f"{path}.creationInfo", f"expected a CreationInfo object or its @id, got {_json_type(reference)}"
        )
    name = _optional_string(spdx_document, path, "name")
    return SbomInfo(
        format="spdx",
        spec_version=_SPDX3_REPORTED_VERSION,
        package_count=package_count,
        created=created,
        name=name,
    )


def _spdx3_creation_info(creation_info: dict[str, Any], path: str) -> datetime:
    spec_version = _required_string(creation_info, path, "specVersion")
    if _SPDX3_SPEC_VERSION_RE.fullmatch(spec_version) is None:
        raise _error(
            f"{path}.specVersion", f"unsupported version {_show(spec_version)}; expected 3.0 or 3.0.x"
        )
    created = _timestamp(_required(creation_info, path, "created"), _join(path, "created"), utc_only=True)
    created_by = _required_array(creation_info, path, "createdBy")
    if not created_by:
        raise _error(_join(path, "createdBy"), "empty; expected at least one Agent")
    for index, agent in enumerate(created_by):
        _string(agent, f"{_join(path, 'createdBy')}[{index}]")
    return created


def _check_absolute_uri(value: str, path: str) -> None:
    scheme = _URI_SCHEME_RE.match(value)
    if scheme is None or scheme.end() == len(value):
        raise _error(path, f"not an absolute URI: {_show(value)}")
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise _error(path, f"not an absolute URI (contains whitespace or control characters): {_show(value)}")
    if "#" in value:
        raise _error(path, f"not an absolute URI (must not have a '#' fragment): {_show(value)}")


# --- CycloneDX ---------------------------------------------------------------------------------------


def _parse_cyclonedx(document: dict[str, Any], max_packages: int) -> SbomInfo:
    bom_format = _required_string(document, "", "bomFormat")
    if bom_format != "CycloneDX":
        raise _error("bomFormat", f"expected 'CycloneDX', got {_show(bom_format)}")
    spec_version = _required_string(document, "", "specVersion")
    component_types = _CYCLONEDX_COMPONENT_TYPES.get(spec_version)
    if component_types is None:
        raise _error("specVersion", f"unsupported version {_show(spec_version)}; expected one of 1.2 to 1.6")
    if "version" in document:
        version = document["version"]
        if isinstance(version, bool) or not isinstance(version, int):
            raise _error("version", f"expected an integer, got {_json_type(version)}")
        if version < 1:
            raise _error("version", f"expected an integer >= 1, got {version}")
    serial_number = _optional_string(document, "", "serialNumber")
    if serial_number is not None and _CYCLONEDX_SERIAL_RE.fullmatch(serial_number) is None:
        raise _error("serialNumber", f"expected 'urn:uuid:' and a lowercase UUID, got {_show(serial_number)}")

    created: datetime | None = None
    name: str | None = None
    if "metadata" in document:
        metadata = _required_object(document, "", "metadata")
        if "timestamp" in metadata:
            created = _timestamp(metadata["timestamp"], "metadata.timestamp", utc_only=False)
        if "component" in metadata:
            subject = _object(metadata["component"], "metadata.component")
            _check_component(subject, "metadata.component", spec_version, component_types)
            name = _required_string(subject, "metadata.component", "name")
            if "components" in subject:
                _count_components(
                    subject["components"],
                    "metadata.component.components",
                    spec_version,
                    component_types,
                    max_packages,
                )

    package_count = 0
    if "components" in document:
        package_count = _count_components(
            document["components"], "components", spec_version, component_types, max_packages
        )
    return SbomInfo(
        format="cyclonedx", spec_version=spec_version, package_count=package_count, created=created, name=name
    )


def _count_components(
    components: object, path: str, spec_version: str, component_types: frozenset[str], limit: int
) -> int:
    """Check a `components` array and the ones nested in it (without recursion); count the components."""
    count = 0
    pending: list[tuple[object, str]] = [(components, path)]
    while pending:
        array, array_path = pending.pop()
        if not isinstance(array, list):
            raise _error(array_path, f"expected an array, got {_json_type(array)}")
        count += len(array)
        if count > limit:
            raise _error(array_path, f"more than {limit} components in the document (the limit)")
        for index, component in enumerate(array):
            component_path = f"{array_path}[{index}]"
            component_object = _object(component, component_path)
            _check_component(component_object, component_path, spec_version, component_types)
            if "components" in component_object:
                pending.append((component_object["components"], f"{component_path}.components"))
    return count


def _check_component(
    component: dict[str, Any], path: str, spec_version: str, component_types: frozenset[str]
) -> None:
    component_type = _required_string(component, path, "type")
    if component_type not in component_types:
        raise _error(
            f"{path}.type",
            f"{_show(component_type)} is not a component type of CycloneDX {spec_version}; "
            f"expected one of {', '.join(sorted(component_types))}",
        )
    _required_string(component, path, "name")


# --- fields, paths, messages -------------------------------------------------------------------------


def _error(path: str, message: str) -> SbomFormatError:
    return SbomFormatError(path or "(root)", message)


_join = strictjson.join_path


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(text: str) -> str:
    """A string for a message: quoted and escaped (no control characters reach logs), and shortened."""
    if len(text) > _SHOW_MAX:
        return f"{text[:_SHOW_MAX]!r}... ({len(text)} characters)"
    return repr(text)


def _required(obj: dict[str, Any], path: str, key: str) -> Any:
    if key not in obj:
        raise _error(_join(path, key), "missing")
    return obj[key]


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _error(path, f"expected an object, got {_json_type(value)}")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _error(path, f"expected a string, got {_json_type(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _error(path, f"not valid Unicode: unpaired surrogate at character {exc.start}") from None
    return value


def _required_object(obj: dict[str, Any], path: str, key: str) -> dict[str, Any]:
    return _object(_required(obj, path, key), _join(path, key))


def _required_array(obj: dict[str, Any], path: str, key: str) -> list[Any]:
    value = _required(obj, path, key)
    if not isinstance(value, list):
        raise _error(_join(path, key), f"expected an array, got {_json_type(value)}")
    return value


def _required_string(obj: dict[str, Any], path: str, key: str) -> str:
    return _string(_required(obj, path, key), _join(path, key))


def _optional_string(obj: dict[str, Any], path: str, key: str) -> str | None:
    return _string(obj[key], _join(path, key)) if key in obj else None


def _timestamp(value: object, path: str, *, utc_only: bool) -> datetime:
    text = _string(value, path)
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        if _RFC3339_NO_OFFSET_RE.fullmatch(text):
            raise _error(path, f"not an RFC 3339 timestamp: {_show(text)} (no time zone offset, such as Z)")
        raise _error(path, f"not an RFC 3339 timestamp: {_show(text)}")
    year, month, day, hour, minute, second = (int(match.group(group)) for group in range(1, 7))
    microsecond = int((match.group(7) or "").ljust(6, "0")[:6])
    offset = timedelta(0)
    if match.group(8) is None:
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            raise _error(path, f"not an RFC 3339 timestamp: {_show(text)} (offset out of range)")
        offset = timedelta(hours=offset_hours, minutes=offset_minutes)
        if match.group(9) == "-":
            offset = -offset
        if utc_only and offset:
            raise _error(path, f"not in UTC: {_show(text)} (expected Z or +00:00)")
    try:
        moment = datetime(year, month, day, hour, minute, second, microsecond, tzinfo=timezone(offset))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _error(path, f"not an RFC 3339 timestamp: {_show(text)} (no such date or time)") from None


def _format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
