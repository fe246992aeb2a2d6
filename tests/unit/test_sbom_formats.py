"""SBOM documents: which bytes are a well-formed SPDX or CycloneDX SBOM, the facts taken from them, and the
error messages (always naming the JSON path) for everything else."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from datetime import UTC, datetime
from random import Random
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from verifiers.sbom_formats import (
    CYCLONEDX_JSON,
    DEFAULT_SBOM_MEDIA_TYPES,
    MAX_DEPTH,
    SPDX_JSON,
    SbomFormatError,
    SbomInfo,
    format_for_media_type,
    parse_sbom,
)

CREATED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
SERIAL = "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79"

# --- documents -----------------------------------------------------------------------------------------


def spdx_package(index: int) -> dict[str, Any]:
    return {
        "SPDXID": f"SPDXRef-Package-{index}",
        "name": f"package-{index}",
        "downloadLocation": "NOASSERTION",
        "versionInfo": "1.0.0",
    }


def spdx_doc(version: str = "SPDX-2.3", packages: int = 2) -> dict[str, Any]:
    return {
        "spdxVersion": version,
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "registry.example/app@sha256:abc",
        "documentNamespace": "https://anchore.com/syft/image/app-5a1a2c3d",
        "creationInfo": {
            "created": "2024-01-02T03:04:05Z",
            "creators": ["Organization: Example", "Tool: syft-1.0.0"],
            "licenseListVersion": "3.22",
        },
        "packages": [spdx_package(i) for i in range(packages)],
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": "SPDXRef-Package-0",
            }
        ],
    }


def cyclonedx_doc(spec_version: str = "1.5") -> dict[str, Any]:
    """Two top-level components, the first with two nested ones, one of those with one more: 5 in all."""
    return {
        "$schema": f"http://cyclonedx.org/schema/bom-{spec_version}.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": spec_version,
        "serialNumber": SERIAL,
        "version": 1,
        "metadata": {
            "timestamp": "2024-01-02T05:04:05+02:00",
            "tools": [{"vendor": "anchore", "name": "syft", "version": "1.0.0"}],
            "component": {"bom-ref": "root", "type": "container", "name": "registry.example/app"},
        },
        "components": [
            {
                "type": "application",
                "name": "app",
                "components": [
                    {"type": "library", "name": "lib-a", "version": "1"},
                    {"type": "library", "name": "lib-b", "components": [{"type": "file", "name": "b.so"}]},
                ],
            },
            {"type": "operating-system", "name": "debian", "version": "12"},
        ],
        "dependencies": [{"ref": "root", "dependsOn": []}],
    }


def spdx3_doc(packages: int = 2) -> dict[str, Any]:
    return {
        "@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld",
        "@graph": [
            {
                "type": "CreationInfo",
                "@id": "_:creationinfo",
                "specVersion": "3.0.1",
                "created": "2024-01-02T03:04:05Z",
                "createdBy": ["https://example.com/Agent/Tool"],
            },
            {
                "type": "Tool",
                "spdxId": "https://example.com/Agent/Tool",
                "name": "tool",
                "creationInfo": "_:creationinfo",
            },
            {
                "type": "SpdxDocument",
                "spdxId": "https://example.com/Document",
                "name": "app-sbom",
                "creationInfo": "_:creationinfo",
                "rootElement": ["https://example.com/Package-0"],
            },
            *(
                {
                    "type": "software_Package",
                    "spdxId": f"https://example.com/Package-{i}",
                    "name": f"package-{i}",
                    "creationInfo": "_:creationinfo",
                }
                for i in range(packages)
            ),
        ],
    }


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


FieldPath = tuple[str | int, ...]


def without(document: dict[str, Any], path: FieldPath) -> dict[str, Any]:
    result = copy.deepcopy(document)
    parent: Any = result
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return result


def replaced(document: dict[str, Any], path: FieldPath, value: object) -> dict[str, Any]:
    result = copy.deepcopy(document)
    parent: Any = result
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return result


def error_of(data: bytes, media_type: str = SPDX_JSON, **kwargs: Any) -> SbomFormatError:
    with pytest.raises(SbomFormatError) as caught:
        parse_sbom(data, media_type, **kwargs)
    return caught.value


# --- valid documents -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["SPDX-2.2", "SPDX-2.3"])
def test_valid_spdx_2(version: str) -> None:
    info = parse_sbom(encode(spdx_doc(version, packages=3)), SPDX_JSON)
    assert info == SbomInfo(
        format="spdx",
        spec_version=version,
        package_count=3,
        created=CREATED,
        name="registry.example/app@sha256:abc",
    )
    assert info.created is not None and info.created.utcoffset() is not None
    assert info.as_details() == {
        "format": "spdx",
        "specVersion": version,
        "packageCount": 3,
        "created": "2024-01-02T03:04:05Z",
        "name": "registry.example/app@sha256:abc",
    }


def test_spdx_without_packages_has_zero_packages() -> None:
    info = parse_sbom(encode(without(spdx_doc(), ("packages",))), SPDX_JSON)
    assert info.package_count == 0


def test_spdx_empty_packages_list() -> None:
    assert parse_sbom(encode(spdx_doc(packages=0)), SPDX_JSON).package_count == 0


@pytest.mark.parametrize("spec_version", ["1.4", "1.5", "1.6"])
def test_valid_cyclonedx_counts_nested_components(spec_version: str) -> None:
    info = parse_sbom(encode(cyclonedx_doc(spec_version)), CYCLONEDX_JSON)
    assert info == SbomInfo(
        format="cyclonedx",
        spec_version=spec_version,
        package_count=5,
        created=CREATED,  # 05:04:05+02:00 converted to UTC
        name="registry.example/app",
    )
    assert info.created is not None and info.created.tzinfo is UTC


@pytest.mark.parametrize("spec_version", ["1.2", "1.3"])
def test_minimal_old_cyclonedx(spec_version: str) -> None:
    document = {"bomFormat": "CycloneDX", "specVersion": spec_version, "version": 1}
    info = parse_sbom(encode(document), CYCLONEDX_JSON)
    assert info == SbomInfo("cyclonedx", spec_version, 0, None, None)
    assert info.as_details() == {
        "format": "cyclonedx",
        "specVersion": spec_version,
        "packageCount": 0,
        "created": None,
        "name": None,
    }


def test_cyclonedx_metadata_component_is_checked_but_not_counted() -> None:
    document = cyclonedx_doc()
    document["metadata"]["component"]["components"] = [{"type": "library", "name": "inner"}]
    assert parse_sbom(encode(document), CYCLONEDX_JSON).package_count == 5
    document["metadata"]["component"]["components"][0]["type"] = "gadget"
    assert str(error_of(encode(document), CYCLONEDX_JSON)).startswith(
        "metadata.component.components[0].type: 'gadget' is not a component type of CycloneDX 1.5"
    )


def test_cyclonedx_optional_fields_may_be_absent() -> None:
    document = {"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {}}
    assert parse_sbom(encode(document), CYCLONEDX_JSON) == SbomInfo("cyclonedx", "1.6", 0, None, None)


def test_as_details_is_json_and_keeps_microseconds() -> None:
    info = SbomInfo("spdx", "SPDX-2.3", 7, datetime(2024, 5, 6, 7, 8, 9, 120000, tzinfo=UTC), None)
    details = info.as_details()
    assert json.loads(json.dumps(details)) == details
    assert details["created"] == "2024-05-06T07:08:09.120000Z"


def test_sbom_info_is_frozen() -> None:
    info = parse_sbom(encode(spdx_doc()), SPDX_JSON)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.package_count = 0  # type: ignore[misc]
    assert info.package_count == 2


# --- SPDX 3.0 ------------------------------------------------------------------------------------------


def test_valid_spdx_3() -> None:
    info = parse_sbom(encode(spdx3_doc(packages=3)), SPDX_JSON)
    assert info == SbomInfo("spdx", "SPDX-3.0", 3, CREATED, "app-sbom")


def test_spdx_3_inline_creation_info_and_context_list() -> None:
    document = spdx3_doc(packages=1)
    document["@context"] = ["https://spdx.org/rdf/3.0.0/spdx-context.jsonld", {"ex": "https://example.com/"}]
    document["@graph"][2]["creationInfo"] = {
        "type": "CreationInfo",
        "specVersion": "3.0.0",
        "created": "2023-06-07T08:09:10Z",
        "createdBy": ["https://example.com/Agent/Tool"],
    }
    info = parse_sbom(encode(document), SPDX_JSON)
    assert info.created == datetime(2023, 6, 7, 8, 9, 10, tzinfo=UTC)
    assert info.package_count == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["@graph"].pop(2), "@graph: no SpdxDocument element"),
        (
            lambda d: d["@graph"].append(copy.deepcopy(d["@graph"][2])),
            "@graph[5]: a second SpdxDocument (the first is @graph[2]); at most one",
        ),
        (
            lambda d: d["@graph"][2].update(creationInfo="_:other"),
            "@graph[2].creationInfo: '_:other' is not the @id of a CreationInfo in @graph",
        ),
        (
            lambda d: d["@graph"][2].update(creationInfo=5),
            "@graph[2].creationInfo: expected a CreationInfo object or its @id, got integer",
        ),
        (lambda d: d["@graph"][2].pop("creationInfo"), "@graph[2].creationInfo: missing"),
        (
            lambda d: d["@graph"][0].update(specVersion="3.1.0"),
            "@graph[0].specVersion: unsupported version '3.1.0'; expected 3.0 or 3.0.x",
        ),
        (
            lambda d: d["@graph"][0].update(created="2024-01-02T03:04:05+01:00"),
            "@graph[0].created: not in UTC: '2024-01-02T03:04:05+01:00' (expected Z or +00:00)",
        ),
        (
            lambda d: d["@graph"][0].update(createdBy=[]),
            "@graph[0].createdBy: empty; expected at least one Agent",
        ),
        (lambda d: d["@graph"][3].pop("type"), "@graph[3].type: missing"),
        (lambda d: d["@graph"].append("x"), "@graph[5]: expected an object, got string"),
        (lambda d: d.update({"@graph": {}}), "@graph: expected an array, got object"),
        (lambda d: d.pop("@graph"), "@graph: missing"),
    ],
)
def test_spdx_3_errors(change: Any, message: str) -> None:
    document = spdx3_doc()
    change(document)
    assert str(error_of(encode(document))) == message


def test_spdx_3_package_limit() -> None:
    error = error_of(encode(spdx3_doc(packages=4)), max_packages=3)
    assert str(error) == "@graph: more than 3 software_Package elements (the limit)"
    assert parse_sbom(encode(spdx3_doc(packages=3)), SPDX_JSON, max_packages=3).package_count == 3


# --- required fields -----------------------------------------------------------------------------------

SPDX_REQUIRED: list[FieldPath] = [
    ("spdxVersion",),
    ("SPDXID",),
    ("dataLicense",),
    ("name",),
    ("documentNamespace",),
    ("creationInfo",),
    ("creationInfo", "created"),
    ("creationInfo", "creators"),
    ("packages", 1, "SPDXID"),
    ("packages", 1, "name"),
    ("packages", 1, "downloadLocation"),
]


def dotted(path: FieldPath) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


@pytest.mark.parametrize("path", SPDX_REQUIRED, ids=dotted)
def test_spdx_required_field_missing(path: FieldPath) -> None:
    error = error_of(encode(without(spdx_doc(), path)))
    assert str(error) == f"{dotted(path)}: missing"
    assert error.path == dotted(path)
    assert error.message == "missing"


CYCLONEDX_REQUIRED: list[FieldPath] = [
    ("bomFormat",),
    ("specVersion",),
    ("metadata", "component", "type"),
    ("metadata", "component", "name"),
    ("components", 0, "type"),
    ("components", 1, "name"),
    ("components", 0, "components", 1, "components", 0, "name"),
]


@pytest.mark.parametrize("path", CYCLONEDX_REQUIRED, ids=dotted)
def test_cyclonedx_required_field_missing(path: FieldPath) -> None:
    error = error_of(encode(without(cyclonedx_doc(), path)), CYCLONEDX_JSON)
    assert str(error) == f"{dotted(path)}: missing"


def test_missing_bom_format_is_an_error_even_when_declared_as_cyclonedx() -> None:
    # without bomFormat nothing marks the document as CycloneDX; the declared format's checks still apply
    assert (
        str(error_of(encode(without(cyclonedx_doc(), ("bomFormat",))), CYCLONEDX_JSON))
        == "bomFormat: missing"
    )


# --- wrong types and values ----------------------------------------------------------------------------

SPDX_WRONG: list[tuple[FieldPath, object, str]] = [
    (("spdxVersion",), 2.3, "spdxVersion: expected a string, got number"),
    (
        ("spdxVersion",),
        "SPDX-2.4",
        "spdxVersion: unsupported version 'SPDX-2.4'; expected SPDX-2.0 to SPDX-2.3 "
        "(SPDX 3 documents are JSON-LD with an @context)",
    ),
    (("spdxVersion",), "SPDX-2.3\n", "spdxVersion: unsupported version 'SPDX-2.3\\n'"),
    (("SPDXID",), "SPDXRef-DOC", "SPDXID: expected 'SPDXRef-DOCUMENT', got 'SPDXRef-DOC'"),
    (("dataLicense",), None, "dataLicense: expected a string, got null"),
    (("name",), ["a"], "name: expected a string, got array"),
    (("name",), "\ud800", "name: not valid Unicode: unpaired surrogate at character 0"),
    (
        ("documentNamespace",),
        "example.com/sbom",
        "documentNamespace: not an absolute URI: 'example.com/sbom'",
    ),
    (("documentNamespace",), "https:", "documentNamespace: not an absolute URI: 'https:'"),
    (
        ("documentNamespace",),
        "https://example.com/sbom#1",
        "documentNamespace: not an absolute URI (must not have a '#' fragment)",
    ),
    (
        ("documentNamespace",),
        "https://example.com/a b",
        "documentNamespace: not an absolute URI (contains whitespace or control characters)",
    ),
    (("creationInfo",), [], "creationInfo: expected an object, got array"),
    (("creationInfo", "created"), 1704164645, "creationInfo.created: expected a string, got integer"),
    (("creationInfo", "creators"), "Tool: syft", "creationInfo.creators: expected an array, got string"),
    (("creationInfo", "creators"), [], "creationInfo.creators: empty; expected at least one creator"),
    (("creationInfo", "creators", 1), True, "creationInfo.creators[1]: expected a string, got boolean"),
    (
        ("creationInfo", "creators", 0),
        "Robot: r2d2",
        'creationInfo.creators[0]: expected "Tool: ...", "Organization: ..." or "Person: ...", '
        "got 'Robot: r2d2'",
    ),
    (("creationInfo", "creators", 0), "Tool:  ", 'creationInfo.creators[0]: expected "Tool: ..."'),
    (("packages",), {}, "packages: expected an array, got object"),
    (("packages", 1), "pkg", "packages[1]: expected an object, got string"),
    (("packages", 1, "SPDXID"), "Package-1", "packages[1].SPDXID: expected 'SPDXRef-' followed by an id"),
    (("packages", 1, "SPDXID"), "SPDXRef-", "packages[1].SPDXID: expected 'SPDXRef-' followed by an id"),
    (("packages", 0, "name"), 3, "packages[0].name: expected a string, got integer"),
    (("packages", 0, "downloadLocation"), {}, "packages[0].downloadLocation: expected a string, got object"),
]


@pytest.mark.parametrize(("path", "value", "message"), SPDX_WRONG, ids=lambda v: repr(v)[:40])
def test_spdx_wrong_value(path: FieldPath, value: object, message: str) -> None:
    error = error_of(encode(replaced(spdx_doc(), path, value)))
    assert str(error).startswith(message)
    assert error.path == dotted(path)


CYCLONEDX_WRONG: list[tuple[FieldPath, object, str]] = [
    (("bomFormat",), "cyclonedx", "bomFormat: expected 'CycloneDX', got 'cyclonedx'"),
    (("specVersion",), 1.5, "specVersion: expected a string, got number"),
    (("specVersion",), "1.7", "specVersion: unsupported version '1.7'; expected one of 1.2 to 1.6"),
    (("specVersion",), "1.1", "specVersion: unsupported version '1.1'"),
    (("version",), True, "version: expected an integer, got boolean"),
    (("version",), 1.0, "version: expected an integer, got number"),
    (("version",), "1", "version: expected an integer, got string"),
    (("version",), 0, "version: expected an integer >= 1, got 0"),
    (("serialNumber",), SERIAL.upper(), "serialNumber: expected 'urn:uuid:' and a lowercase UUID"),
    (("serialNumber",), "3e671687-395b-41f5-a30f-a58921a69b79", "serialNumber: expected 'urn:uuid:'"),
    (("serialNumber",), 7, "serialNumber: expected a string, got integer"),
    (("metadata",), [], "metadata: expected an object, got array"),
    (("metadata", "timestamp"), "yesterday", "metadata.timestamp: not an RFC 3339 timestamp: 'yesterday'"),
    (("metadata", "component"), "app", "metadata.component: expected an object, got string"),
    (("metadata", "component", "name"), None, "metadata.component.name: expected a string, got null"),
    (("components",), {"type": "library"}, "components: expected an array, got object"),
    (("components", 1), None, "components[1]: expected an object, got null"),
    (("components", 1, "type"), "Library", "components[1].type: 'Library' is not a component type of"),
    (("components", 0, "components"), "lib-a", "components[0].components: expected an array, got string"),
    (
        ("components", 0, "components", 1, "components", 0, "name"),
        False,
        "components[0].components[1].components[0].name: expected a string, got boolean",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), CYCLONEDX_WRONG, ids=lambda v: repr(v)[:40])
def test_cyclonedx_wrong_value(path: FieldPath, value: object, message: str) -> None:
    error = error_of(encode(replaced(cyclonedx_doc(), path, value)), CYCLONEDX_JSON)
    assert str(error).startswith(message)
    assert error.path == dotted(path)


@pytest.mark.parametrize(
    ("spec_version", "component_type", "allowed"),
    [
        ("1.4", "library", True),
        ("1.4", "platform", False),
        ("1.4", "machine-learning-model", False),
        ("1.5", "platform", True),
        ("1.5", "device-driver", True),
        ("1.5", "data", True),
        ("1.5", "cryptographic-asset", False),
        ("1.6", "cryptographic-asset", True),
        ("1.6", "service", False),
    ],
)
def test_cyclonedx_component_types_follow_the_spec_version(
    spec_version: str, component_type: str, allowed: bool
) -> None:
    data = encode(replaced(cyclonedx_doc(spec_version), ("components", 1, "type"), component_type))
    if allowed:
        assert parse_sbom(data, CYCLONEDX_JSON).package_count == 5
    else:
        assert str(error_of(data, CYCLONEDX_JSON)).startswith(
            f"components[1].type: {component_type!r} is not a component type of CycloneDX {spec_version}; "
            "expected one of application, "
        )


def test_long_and_hostile_values_are_shortened_and_escaped_in_messages() -> None:
    value = "\x1b[31m" + "x" * 10_000 + "\n"
    message = str(error_of(encode(replaced(spdx_doc(), ("SPDXID",), value))))
    assert len(message) < 200
    assert "\x1b" not in message and "\n" not in message
    assert message.endswith("... (10006 characters)")


# --- timestamps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", CREATED),
        ("2024-01-02T03:04:05+00:00", CREATED),
        ("2024-01-02T03:04:05-00:00", CREATED),
        ("2024-01-02t03:04:05z", CREATED),
        ("2024-01-02T03:04:05.5Z", CREATED.replace(microsecond=500000)),
        ("2024-01-02T03:04:05.123456789Z", CREATED.replace(microsecond=123456)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
    ],
)
def test_spdx_created_accepts_utc_timestamps(text: str, expected: datetime) -> None:
    info = parse_sbom(encode(replaced(spdx_doc(), ("creationInfo", "created"), text)), SPDX_JSON)
    assert info.created == expected
    assert info.created is not None and info.created.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T05:04:05+02:00", CREATED),
        ("2024-01-01T22:34:05-04:30", CREATED),
        ("2024-01-02T03:04:05Z", CREATED),
        ("2024-12-31T23:30:00-01:00", datetime(2025, 1, 1, 0, 30, tzinfo=UTC)),
    ],
)
def test_cyclonedx_timestamp_with_any_offset_becomes_utc(text: str, expected: datetime) -> None:
    info = parse_sbom(encode(replaced(cyclonedx_doc(), ("metadata", "timestamp"), text)), CYCLONEDX_JSON)
    assert info.created == expected
    assert info.created is not None and info.created.utcoffset() == expected.utcoffset()


def test_spdx_created_must_be_utc() -> None:
    data = encode(replaced(spdx_doc(), ("creationInfo", "created"), "2024-01-02T05:04:05+02:00"))
    assert str(error_of(data)) == (
        "creationInfo.created: not in UTC: '2024-01-02T05:04:05+02:00' (expected Z or +00:00)"
    )


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("2024-13-01", ""),
        ("2024-01-02", ""),
        ("2024-01-02T03:04:05", " (no time zone offset, such as Z)"),
        ("2024-01-02 03:04:05", " (no time zone offset, such as Z)"),
        ("2024-01-02 03:04:05Z", ""),
        ("2024-01-02T03:04Z", ""),
        ("2024-01-02T03:04:05.Z", ""),
        ("2024-01-02T03:04:05Z\n", ""),
        ("2024-01-02T03:04:05+0000", ""),
        ("2024-1-2T03:04:05Z", ""),
        ("\uff12\uff10\uff12\uff14-01-02T03:04:05Z", ""),  # fullwidth digits
        ("2024-01-02T03:04:05+24:00", " (offset out of range)"),
        ("2024-01-02T03:04:05+00:60", " (offset out of range)"),
        ("2024-02-30T00:00:00Z", " (no such date or time)"),
        ("2023-02-29T00:00:00Z", " (no such date or time)"),
        ("2024-01-02T24:00:00Z", " (no such date or time)"),
        ("2016-12-31T23:59:60Z", " (no such date or time)"),
        ("0000-01-01T00:00:00Z", " (no such date or time)"),
        ("0001-01-01T00:00:00+01:00", " (no such date or time)"),
        ("9999-12-31T23:59:59-01:00", " (no such date or time)"),
    ],
)
def test_malformed_timestamps_name_the_field(text: str, detail: str) -> None:
    error = error_of(encode(replaced(cyclonedx_doc(), ("metadata", "timestamp"), text)), CYCLONEDX_JSON)
    assert str(error) == f"metadata.timestamp: not an RFC 3339 timestamp: {text!r}{detail}"
    assert error.path == "metadata.timestamp"


@settings(deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_timestamps_round_trip(moment: datetime) -> None:
    text = moment.isoformat().replace("+00:00", "Z")
    info = parse_sbom(encode(replaced(spdx_doc(), ("creationInfo", "created"), text)), SPDX_JSON)
    assert info.created == moment
    assert info.as_details()["created"] == text


# --- media types ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        (SPDX_JSON, "spdx"),
        (CYCLONEDX_JSON, "cyclonedx"),
        ("application/spdx+json; version=2.3", "spdx"),
        ("application/vnd.cyclonedx+json; version=1.5", "cyclonedx"),
        ("application/vnd.cyclonedx+json;version=1.5;charset=utf-8", "cyclonedx"),
        ('application/spdx+json; version="2.3"', "spdx"),
        ("Application/SPDX+JSON", "spdx"),
        (" application/spdx+json ", "spdx"),
        ("application/spdx+json;", "spdx"),
        ("application/spdx+json; ; version=2.3", "spdx"),
        ("text/spdx+json", None),
        ("text/spdx", None),
        ("application/json", None),
        ("application/vnd.cyclonedx+xml", None),
        ("application/vnd.cyclonedx", None),
        ("application/spdx+jsonx", None),
        ("application/spdx+json; version", None),
        ("application/spdx+json; version = 2.3", None),
        ("application/spdx+json; version=2.3; Version=2.2", None),
        ("application/spdx+json, application/json", None),
        ('application/spdx+json; version="2.3', None),
        ("application/spdx+json\n", None),
        ("", None),
        ("spdx", None),
    ],
)
def test_format_for_media_type(media_type: str, expected: str | None) -> None:
    assert format_for_media_type(media_type) == expected


def test_default_media_types() -> None:
    assert DEFAULT_SBOM_MEDIA_TYPES == ("application/spdx+json", "application/vnd.cyclonedx+json")
    assert [format_for_media_type(m) for m in DEFAULT_SBOM_MEDIA_TYPES] == ["spdx", "cyclonedx"]


@pytest.mark.parametrize(
    ("media_type", "document"),
    [
        ("application/spdx+json; version=2.3", spdx_doc("SPDX-2.3")),
        ('application/spdx+json; version="2.2"', spdx_doc("SPDX-2.2")),
        ("application/spdx+json; version=3.0", spdx3_doc()),
        ("application/spdx+json; version=3.0.1", spdx3_doc()),
        ("application/vnd.cyclonedx+json; version=1.5", cyclonedx_doc("1.5")),
        ("APPLICATION/VND.CYCLONEDX+JSON; VERSION=1.6; charset=utf-8", cyclonedx_doc("1.6")),
    ],
)
def test_media_type_parameters_accepted(media_type: str, document: dict[str, Any]) -> None:
    info = parse_sbom(encode(document), media_type)
    assert info.format == format_for_media_type(media_type)


@pytest.mark.parametrize(
    ("media_type", "document", "message"),
    [
        (
            "application/spdx+json; version=2.2",
            spdx_doc("SPDX-2.3"),
            "declared application/spdx+json; version='2.2' but the document is SPDX-2.3",
        ),
        (
            "application/vnd.cyclonedx+json; version=1.4",
            cyclonedx_doc("1.5"),
            "declared application/vnd.cyclonedx+json; version='1.4' but the document is CycloneDX 1.5",
        ),
        (
            "application/spdx+json; version=2.3",
            spdx3_doc(),
            "declared application/spdx+json; version='2.3' but the document is SPDX-3.0",
        ),
    ],
)
def test_media_type_version_must_match_the_document(
    media_type: str, document: dict[str, Any], message: str
) -> None:
    error = error_of(encode(document), media_type)
    assert str(error) == message
    assert error.path == ""


@pytest.mark.parametrize(
    ("document", "media_type", "message"),
    [
        (cyclonedx_doc(), SPDX_JSON, "declared application/spdx+json but the document is CycloneDX"),
        (
            cyclonedx_doc(),
            "application/spdx+json; version=2.3",
            "declared application/spdx+json but the document is CycloneDX",
        ),
        (spdx_doc(), CYCLONEDX_JSON, "declared application/vnd.cyclonedx+json but the document is SPDX"),
        (spdx3_doc(), CYCLONEDX_JSON, "declared application/vnd.cyclonedx+json but the document is SPDX"),
    ],
)
def test_declared_media_type_must_match_the_document(
    document: dict[str, Any], media_type: str, message: str
) -> None:
    assert str(error_of(encode(document), media_type)) == message


@pytest.mark.parametrize("media_type", [SPDX_JSON, CYCLONEDX_JSON])
def test_a_document_with_markers_of_both_formats_is_rejected(media_type: str) -> None:
    document = {**spdx_doc(), "bomFormat": "CycloneDX", "specVersion": "1.5"}
    assert str(error_of(encode(document), media_type)) == (
        "(root): the document carries the markers of both SPDX and CycloneDX"
    )


@pytest.mark.parametrize(
    "media_type",
    ["application/json", "application/vnd.cyclonedx+xml", "text/spdx", "", "application/spdx+json;x"],
)
def test_unsupported_media_type(media_type: str) -> None:
    error = error_of(encode(spdx_doc()), media_type)
    assert str(error) == (
        f"unsupported SBOM media type {media_type!r}; "
        "expected application/spdx+json or application/vnd.cyclonedx+json"
    )


# --- strict JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"spdxVersion": "SPDX-2.3", "spdxVersion": "SPDX-2.2"}', "spdxVersion: duplicate key"),
        (
            encode(spdx_doc())[:-1] + b', "creationInfo": {}}',
            "creationInfo: duplicate key",
        ),
        (
            encode(spdx_doc()).replace(b'"name": "package-1",', b'"name": "package-1", "name": "evil",'),
            "packages[1].name: duplicate key",
        ),
        (
            encode(spdx_doc()).replace(
                b'"licenseListVersion"', b'"x y": {"a": 1, "a": 1}, "licenseListVersion"'
            ),
            'creationInfo["x y"].a: duplicate key',
        ),
        (b'{"a": {"b": NaN}, "a": 1}', "a: duplicate key"),
    ],
)
def test_duplicate_keys_are_rejected_at_any_depth(data: bytes, message: str) -> None:
    error = error_of(data)
    assert str(error) == f"{message} (a JSON object must not repeat a name)"


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        (b"NaN", "NaN is not valid JSON (not a number)"),
        (b"Infinity", "Infinity is not valid JSON (not a number)"),
        (b"-Infinity", "-Infinity is not valid JSON (not a number)"),
        (b"1e999", "number out of range: '1e999'"),
        (b"-1.5e400", "number out of range: '-1.5e400'"),
        (b"1" * 5000, "integer with 5000 digits is too long"),
    ],
)
def test_non_finite_and_oversized_numbers_are_rejected_with_their_path(literal: bytes, message: str) -> None:
    data = encode(spdx_doc()).replace(
        b'"versionInfo": "1.0.0"}]', b'"versionInfo": "1.0.0", "x": [0, ' + literal + b"]}]"
    )
    error = error_of(data)
    assert str(error) == f"packages[1].x[1]: {message}"


def test_ordinary_numbers_in_extension_fields_are_fine() -> None:
    document = replaced(spdx_doc(), ("x-numbers",), [0, -1, 1.5, 1e300, -0.0, 12345678901234567890])
    assert parse_sbom(encode(document), SPDX_JSON).package_count == 2


def nested(depth: int) -> dict[str, Any]:
    """An SPDX document whose deepest value sits at `depth` (the document itself is depth 1)."""
    value: Any = []
    for _ in range(depth - 2):
        value = [value]
    return replaced(spdx_doc(), ("x-deep",), value)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    assert MAX_DEPTH == 64
    assert parse_sbom(encode(nested(MAX_DEPTH)), SPDX_JSON).package_count == 2


def test_nesting_beyond_the_limit_is_rejected() -> None:
    assert (
        str(error_of(encode(nested(MAX_DEPTH + 1))))
        == "not accepted: JSON nested 65 levels deep, more than 64"
    )


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_very_deep_nesting_is_rejected_before_parsing(opener: bytes) -> None:
    data = opener * 200_000
    started = time.monotonic()
    error = error_of(data)
    assert str(error) == "not accepted: JSON nested 200000 levels deep, more than 64"
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("text", ["\\", "x\\", "\\\\", '"', '\\"', "[\\"])
def test_strings_ending_in_escapes_do_not_hide_nesting_after_them(text: str) -> None:
    document = replaced(nested(MAX_DEPTH + 1), ("packages", 0, "description"), text)
    document = {"first": text, **document, "last": text}
    assert str(error_of(encode(document))) == "not accepted: JSON nested 65 levels deep, more than 64"


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100,
        '"' + "[" * 100 + '"',  # JSON: "\"[[[...\""
        "\\" + "[" * 100,  # JSON: "\\[[[..."
        "\\" * 3 + '"' + "{" * 100,  # JSON: "\\\\\\\"{{{..."
        '[[[{{{ " \\" ' * 50,
    ],
)
def test_brackets_inside_strings_do_not_count_as_nesting(text: str) -> None:
    document = replaced(spdx_doc(), ("packages", 0, "description"), text)
    document[text] = text  # in a key, too
    info = parse_sbom(encode(document), SPDX_JSON)
    assert info.package_count == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff{}", "not valid UTF-8: invalid start byte at byte offset 0"),
        (b'{"name": "\xc0\xaf"}', "not valid UTF-8: invalid start byte at byte offset 10"),
        (b'{"name": "\xed\xa0\x80"}', "not valid UTF-8: invalid continuation byte at byte offset 10"),
        (b'{"name": "caf\xc3"}', "not valid UTF-8: invalid continuation byte at byte offset 13"),
        (b'{"name": "caf\xc3', "not valid UTF-8: unexpected end of data at byte offset 13"),
        ('{"a": 1}'.encode("utf-16"), "not valid UTF-8: invalid start byte at byte offset 0"),
        (b"\xef\xbb\xbf{}", "not valid JSON: starts with a UTF-8 byte order mark (RFC 8259 section 8.1)"),
    ],
)
def test_invalid_utf8_is_rejected(data: bytes, message: str) -> None:
    error = error_of(data)
    assert str(error) == message
    assert error.path == ""


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"[]", "array"),
        (b'"sbom"', "string"),
        (b"1", "integer"),
        (b"1.5", "number"),
        (b"null", "null"),
        (b"true", "boolean"),
    ],
)
def test_top_level_must_be_an_object(data: bytes, kind: str) -> None:
    error = error_of(data)
    assert str(error) == f"(root): expected a JSON object at the top level, got {kind}"
    assert error.path == "(root)"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not valid JSON: Expecting value (line 1, column 1)"),
        (b"   ", "not valid JSON: Expecting value (line 1, column 4)"),
        (
            b'{"a": 1,}',
            "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 9)",
        ),
        (b"{'a': 1}", "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
        (b'{"a": 1} {}', "not valid JSON: Extra data (line 1, column 10)"),
        (b'{"a": 1 // c\n}', "not valid JSON: Expecting ',' delimiter (line 1, column 9)"),
        (b'{"a": "x\ny"}', "not valid JSON: Invalid control character at (line 1, column 9)"),
        (b'{"a": "\\x"}', "not valid JSON: Invalid \\escape (line 1, column 8)"),
        (b'{"a": "', "not valid JSON: Unterminated string starting at (line 1, column 7)"),
        (b'{"a": [1, 2}', "not valid JSON: Expecting ',' delimiter (line 1, column 12)"),
    ],
)
def test_invalid_json_is_rejected(data: bytes, message: str) -> None:
    assert str(error_of(data)) == message


def test_unpaired_surrogate_escape_in_a_checked_string_is_rejected() -> None:
    data = encode(spdx_doc()).replace(b'"name": "package-0"', b'"name": "pkg\\udc00"')
    assert str(error_of(data)) == "packages[0].name: not valid Unicode: unpaired surrogate at character 3"


def test_paired_surrogate_escapes_are_fine() -> None:
    data = encode(spdx_doc()).replace(
        b'"name": "registry.example/app@sha256:abc"', b'"name": "app \\ud83d\\ude00"'
    )
    assert parse_sbom(data, SPDX_JSON).name == "app \N{GRINNING FACE}"


# --- limits --------------------------------------------------------------------------------------------


def test_spdx_package_limit() -> None:
    assert parse_sbom(encode(spdx_doc(packages=3)), SPDX_JSON, max_packages=3).package_count == 3
    error = error_of(encode(spdx_doc(packages=3)), max_packages=2)
    assert str(error) == "packages: 3 packages, more than the limit of 2"


def test_cyclonedx_component_limit_counts_nested_components() -> None:
    assert parse_sbom(encode(cyclonedx_doc()), CYCLONEDX_JSON, max_packages=5).package_count == 5
    error = error_of(encode(cyclonedx_doc()), CYCLONEDX_JSON, max_packages=4)
    assert str(error).endswith(": more than 4 components in the document (the limit)")
    assert error.path.startswith("components")


def test_max_packages_zero_allows_only_empty_documents() -> None:
    assert parse_sbom(encode(spdx_doc(packages=0)), SPDX_JSON, max_packages=0).package_count == 0
    assert str(error_of(encode(spdx_doc(packages=1)), max_packages=0)).startswith("packages: 1 packages")


def test_huge_package_lists_are_refused_before_they_are_checked() -> None:
    # 300,000 invalid packages: the limit is reported, not packages[0], so the list was not walked
    data = b'{"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "dataLicense": "CC0-1.0", "name": "n",'
    data += (
        b' "documentNamespace": "https://example.com/n", "creationInfo": {"created": "2024-01-02T03:04:05Z",'
    )
    data += b' "creators": ["Tool: t"]}, "packages": [' + b",".join([b"{}"] * 300_000) + b"]}"
    assert (
        str(error_of(data, max_packages=100_000))
        == "packages: 300000 packages, more than the limit of 100000"
    )
    assert str(error_of(data)) == "packages[0].SPDXID: missing"


def test_huge_component_trees_are_refused() -> None:
    components = [
        {"type": "library", "name": f"c{i}", "components": [{"type": "file", "name": "f"}]}
        for i in range(60_000)
    ]
    document = {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": components}
    assert str(error_of(encode(document), CYCLONEDX_JSON, max_packages=100_000)).endswith(
        "more than 100000 components in the document (the limit)"
    )
    assert parse_sbom(encode(document), CYCLONEDX_JSON, max_packages=120_000).package_count == 120_000


@pytest.mark.parametrize("bad", [-1, True])
def test_max_packages_must_be_a_non_negative_integer(bad: int) -> None:
    with pytest.raises(ValueError, match="max_packages must be a non-negative integer") as caught:
        parse_sbom(encode(spdx_doc()), SPDX_JSON, max_packages=bad)
    assert type(caught.value) is ValueError


# --- properties ----------------------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
spdx_packages = st.builds(
    lambda suffix, name, location: {
        "SPDXID": f"SPDXRef-{suffix}",
        "name": name,
        "downloadLocation": location,
    },
    st.text("abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=12),
    st.text(max_size=20),
    st.sampled_from(["NOASSERTION", "NONE", "https://example.com/src.tar.gz"]),
)


@settings(deadline=None)
@given(st.lists(spdx_packages, max_size=40), st.sampled_from(["SPDX-2.2", "SPDX-2.3"]))
def test_any_list_of_valid_spdx_packages_is_counted(packages: list[dict[str, str]], version: str) -> None:
    document = replaced(spdx_doc(version), ("packages",), packages)
    info = parse_sbom(encode(document), SPDX_JSON)
    assert info.package_count == len(packages)
    assert info.spec_version == version


component_types = st.sampled_from(["application", "library", "framework", "container", "file", "firmware"])
component_trees = st.recursive(
    st.builds(lambda t, n: {"type": t, "name": n}, component_types, st.text(max_size=10)),
    lambda children: st.builds(
        lambda t, n, kids: {"type": t, "name": n, "components": kids},
        component_types,
        st.text(max_size=10),
        st.lists(children, max_size=4),
    ),
    max_leaves=30,
)


def count_components(components: list[dict[str, Any]]) -> int:
    return sum(1 + count_components(c.get("components", [])) for c in components)


@settings(deadline=None)
@given(st.lists(component_trees, max_size=6), st.sampled_from(["1.2", "1.3", "1.4", "1.5", "1.6"]))
def test_any_tree_of_valid_cyclonedx_components_is_counted(
    components: list[dict[str, Any]], spec: str
) -> None:
    document = replaced(cyclonedx_doc(spec), ("components",), components)
    expected = count_components(components)
    assert parse_sbom(encode(document), CYCLONEDX_JSON).package_count == expected
    if expected:
        with pytest.raises(SbomFormatError, match="the limit"):
            parse_sbom(encode(document), CYCLONEDX_JSON, max_packages=expected - 1)


def outcome(data: bytes, media_type: str) -> SbomInfo | SbomFormatError:
    """Only an SbomInfo or an SbomFormatError with a message may come out; anything else fails the test."""
    try:
        return parse_sbom(data, media_type)
    except SbomFormatError as error:
        assert str(error)
        return error


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=200), st.sampled_from(DEFAULT_SBOM_MEDIA_TYPES))
@example(b"\xef\xbb\xbf", SPDX_JSON)
@example(b'"\\', SPDX_JSON)
@example(b"[" * 5000, CYCLONEDX_JSON)
@example(b'{"a":' * 3000, SPDX_JSON)
def test_random_bytes_only_ever_raise_sbom_format_error(data: bytes, media_type: str) -> None:
    assert isinstance(outcome(data, media_type), SbomFormatError)


@settings(deadline=None, max_examples=300)
@given(json_values, st.sampled_from(DEFAULT_SBOM_MEDIA_TYPES))
def test_random_json_only_ever_raises_sbom_format_error(value: object, media_type: str) -> None:
    assert isinstance(outcome(json.dumps(value).encode(), media_type), SbomFormatError)


def document_paths(document: object, prefix: FieldPath = ()) -> list[FieldPath]:
    paths: list[FieldPath] = []
    if isinstance(document, dict):
        for key, value in document.items():
            paths.append((*prefix, key))
            paths.extend(document_paths(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            paths.append((*prefix, index))
            paths.extend(document_paths(value, (*prefix, index)))
    return paths


VALID_DOCUMENTS: list[tuple[dict[str, Any], str]] = [
    (spdx_doc(), SPDX_JSON),
    (spdx3_doc(), SPDX_JSON),
    (cyclonedx_doc("1.4"), CYCLONEDX_JSON),
    (cyclonedx_doc("1.6"), CYCLONEDX_JSON),
]


@settings(deadline=None, max_examples=300)
@given(st.data(), st.sampled_from(VALID_DOCUMENTS), json_values)
def test_mutated_documents_pass_or_fail_with_a_path(
    data: st.DataObject, valid: tuple[dict[str, Any], str], value: object
) -> None:
    document, media_type = valid
    path = data.draw(st.sampled_from(document_paths(document)))
    result = outcome(encode(replaced(document, path, value)), media_type)
    if isinstance(result, SbomFormatError):
        assert result.path or result.message.startswith("declared ")
    else:
        assert result.format == format_for_media_type(media_type)


tricky_text = st.text(alphabet=st.sampled_from('[]{}"\\ax\n\u00e9\U0001f600'), max_size=12)
tricky_json = st.recursive(
    tricky_text | st.integers(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3),
    max_leaves=80,
)


def depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def wrap(value: object, levels: int) -> object:
    for _ in range(levels):
        value = [value]
    return value


@settings(deadline=None, max_examples=200)
@given(tricky_json, st.integers(min_value=0, max_value=70), st.booleans())
def test_depth_limit_is_exact_whatever_the_strings_contain(
    value: object, levels: int, ascii_only: bool
) -> None:
    extra = wrap(value, levels)
    total = 1 + depth_of(extra)  # the document object itself is one level
    data = json.dumps(replaced(spdx_doc(), ("x-extra",), extra), ensure_ascii=ascii_only).encode()
    result = outcome(data, SPDX_JSON)
    if total <= MAX_DEPTH:
        assert isinstance(result, SbomInfo)
    else:
        assert isinstance(result, SbomFormatError)
        assert str(result) == f"not accepted: JSON nested {total} levels deep, more than 64"


@given(
    st.sampled_from(DEFAULT_SBOM_MEDIA_TYPES),
    st.randoms(use_true_random=False),
    st.sampled_from(["", " ", "\t"]),
    st.sampled_from(["", "; version=1", ";charset=utf-8", '; a="b;c"']),
)
def test_media_types_are_case_insensitive_and_allow_parameters(
    media_type: str, random: Random, space: str, parameters: str
) -> None:
    scrambled = "".join(c.upper() if random.random() < 0.5 else c for c in media_type)
    assert format_for_media_type(f"{space}{scrambled}{space}{parameters}") == format_for_media_type(
        media_type
    )


async def test_the_verifier_keeps_a_bounded_name() -> None:
    """An SBOM's name is chosen by whoever pushes it: the verifier's cache and verdict keep 256 characters."""
    from verifiers.sbom import MAX_NAME_CHARS, SbomVerifier

    doc = spdx_doc()
    doc["name"] = "n" * 100_000
    verifier = SbomVerifier("sbom", {})
    info = await verifier._parse("sha256:" + "1" * 64, encode(doc), SPDX_JSON)
    assert info.name == "n" * MAX_NAME_CHARS + "..."
    again = await verifier._parse("sha256:" + "1" * 64, b"not parsed again", SPDX_JSON)
    assert again is info
