"""The chart's values.schema.json: its `config` part is generated from the configuration's models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provider.config import ConfigDocument
from provider.schema import BUILTIN_OPTIONS, chart_values_schema, config_schema, main, model_schema
from verifiers.exec import ExecOptions

CHART_SCHEMA = Path(__file__).resolve().parents[2] / "charts" / "countersign" / "values.schema.json"


def _walk(node: Any) -> list[Any]:
    found = [node]
    if isinstance(node, dict):
        for value in node.values():
            found += _walk(value)
    elif isinstance(node, list):
        for value in node:
            found += _walk(value)
    return found


def test_the_checked_in_chart_schema_is_the_generated_one() -> None:
    checked_in = json.loads(CHART_SCHEMA.read_text("utf-8"))
    assert checked_in == chart_values_schema(checked_in), "run `make schema` and commit the result"


def test_the_generator_writes_the_checked_in_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--chart", str(CHART_SCHEMA)]) == 0
    assert capsys.readouterr().out == CHART_SCHEMA.read_text("utf-8")


def test_the_schema_is_self_contained_draft_07() -> None:
    schema = config_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    nodes = [n for n in _walk(schema) if isinstance(n, dict)]
    assert not [n for n in nodes if "$ref" in n or "$defs" in n or "patternProperties" in n]


def test_every_section_is_typed_not_a_bare_object() -> None:
    config = json.loads(CHART_SCHEMA.read_text("utf-8"))["properties"]["config"]
    properties = config["properties"]
    assert set(properties) == {
        "apiVersion", "server", "cache", "limits", "registries", "egress", "auth", "kubernetes", "verifiers",
        "policies",
    }  # fmt: skip
    for name in ("server", "cache", "limits", "egress", "auth"):
        assert properties[name]["additionalProperties"] is False, name
    server = properties["server"]["properties"]
    assert server["port"] == {"default": 8443, "maximum": 65535, "minimum": 0, "type": "integer"}
    assert set(server["limits"]["properties"]) >= {"maxKeys", "inFlightBytes", "verificationBytes"}
    registry = properties["registries"]["additionalProperties"]["anyOf"][0]
    assert registry["properties"]["minTLS"]["enum"] == ["1.2", "1.3"]
    assert properties["registries"]["propertyNames"]["pattern"].startswith("^")
    policy = properties["policies"]["items"]
    assert policy["additionalProperties"] is False and "allOf" in policy["properties"]
    # The chart supplies the placeholder policy and the listener's files.
    assert "required" not in config
    assert "required" not in server["tls"]["anyOf"][0]
    assert properties["verifiers"]["minProperties"] == 1 and properties["policies"]["minItems"] == 1


def test_built_in_verifier_options_are_typed_by_type() -> None:
    verifier = config_schema()["properties"]["verifiers"]["additionalProperties"]
    typed = {
        rule["if"]["properties"]["type"]["const"]: rule["then"]["properties"]["options"]
        for rule in verifier["allOf"]
    }
    assert set(typed) == set(BUILTIN_OPTIONS) == {"cosign", "digest-pin", "exec", "notation", "sbom"}
    assert all(options["additionalProperties"] is False for options in typed.values())
    assert set(typed["cosign"]["properties"]) == {
        "keys", "identities", "trustedRoot", "transparencyLog", "threshold", "formats", "attestations",
        "legacyAttestations"
    }  # fmt: skip
    assert typed["sbom"]["properties"]["maxAge"]["anyOf"][1]["type"] == "string"
    assert typed["notation"]["required"] == ["trustPolicy"]
    assert typed["exec"]["required"] == ["command"]
    assert set(typed["exec"]["properties"]) == {
        "command", "timeout", "maxOutputBytes", "maxConcurrent", "env", "config", "referrers"
    }  # fmt: skip


def test_exec_options_are_typed_with_their_bounds() -> None:
    options = model_schema(ExecOptions)["properties"]
    assert options["command"]["type"] == "array" and options["command"]["minItems"] == 1
    assert options["command"]["items"] == [{"type": "string", "minLength": 1}]
    assert options["timeout"]["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0, "maximum": 300}
    assert options["timeout"]["default"] == 5
    assert options["maxOutputBytes"] == {
        "type": "integer",
        "minimum": 256,
        "maximum": 1048576,
        "default": 65536,
    }
    assert options["maxConcurrent"] == {"type": "integer", "minimum": 1, "maximum": 64, "default": 4}
    env = options["env"]
    assert env["additionalProperties"] == {"type": "string"}
    assert env["propertyNames"]["not"] == {"enum": ["PATH", "LANG", "HOME", "TMPDIR"]}
    assert options["config"] == {"type": "object"}
    referrers, null = options["referrers"]["anyOf"]  # null is the same as left out
    assert null == {"type": "null"}
    assert referrers["type"] == "object" and referrers["additionalProperties"] is False
    assert referrers["required"] == ["artifactTypes"]
    assert referrers["properties"]["maxCount"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 64,
        "default": 8,
    }
    assert referrers["properties"]["maxBytes"]["maximum"] == 32 * 1024 * 1024


def test_durations_accept_numbers_within_the_bounds_and_duration_strings() -> None:
    deadlines = model_schema(ConfigDocument)["properties"]["server"]["properties"]["deadlines"]
    verify = deadlines["properties"]["verify"]["anyOf"]
    assert verify[0] == {"type": "number", "minimum": 0.05, "maximum": 29}
    assert verify[1]["type"] == "string" and verify[1]["pattern"].endswith("(ms|s|m|h|d)?\\s*$")
