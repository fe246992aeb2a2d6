"""JSON Schema of the configuration, from the same pydantic models that validate it.

    python -m provider.schema                  # the configuration file's schema (JSON Schema draft-07)
    python -m provider.schema --chart FILE     # FILE (the chart's values.schema.json) with its `config`
                                               # property replaced by the generated one, on stdout
    make schema                                # rewrites charts/countersign/values.schema.json

The schema is self-contained (every `$ref` inlined: Helm validates values with it), titles are left out,
and each built-in verifier type's options are typed (`if type is cosign then options is ...`); a plugin's
options are any mapping. In the chart, `verifiers` and `policies` are optional (the chart then writes its
placeholder policy) and so are server.tls's files (the chart sets them). The rules the schema cannot
state (ranges of durations written as strings, names a policy refers to, files) are checked by
Countersign when it loads the file (`countersign config validate`).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from provider.config import ConfigDocument
from verifiers.cosign.verifier import CosignOptions
from verifiers.digest_pin import DigestPinOptions
from verifiers.exec import ExecOptions
from verifiers.notation.verifier import NotationOptions
from verifiers.sbom import SbomOptions

__all__ = ["BUILTIN_OPTIONS", "chart_values_schema", "config_schema", "model_schema"]

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
BUILTIN_OPTIONS: Mapping[str, type[BaseModel]] = {
    "cosign": CosignOptions,
    "digest-pin": DigestPinOptions,
    "exec": ExecOptions,
    "notation": NotationOptions,
    "sbom": SbomOptions,
}
CHART_DESCRIPTION = (
    "The Countersign configuration (docs/configuration.md), generated from its models by `make schema`; "
    "the chart sets the listener (server.address, port, healthPort, tls file paths). Countersign itself "
    "checks the rest when it starts (countersign config validate)."
)


def _inline(node: Any, defs: Mapping[str, Any]) -> Any:
    """`node` with every `#/$defs/X` reference replaced by X (the models are not recursive), no titles, and
    mappings with a key pattern stated with `propertyNames`."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node.get("patternProperties", {})) == 1 and "additionalProperties" not in node:
        # A mapping whose keys must match: every key checked (`propertyNames`), every value typed.
        ((pattern, value),) = node["patternProperties"].items()
        node = {k: v for k, v in node.items() if k != "patternProperties"}
        node.update(propertyNames={"pattern": pattern}, additionalProperties=value)
    if "$ref" in node:
        target = _inline(defs[node["$ref"].removeprefix("#/$defs/")], defs)
        rest = {k: _inline(v, defs) for k, v in node.items() if k != "$ref"}
        return {**target, **rest}
    return {
        key: (_inline(value, defs) if key not in ("default", "enum", "const") else value)
        for key, value in node.items()
        if key not in ("$defs", "title")
    }


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON Schema by its YAML names, self-contained."""
    raw = model.model_json_schema(by_alias=True)
    inlined: dict[str, Any] = _inline(raw, raw.get("$defs", {}))
    return inlined


def config_schema() -> dict[str, Any]:
    """The configuration file's schema, each built-in verifier's options typed."""
    schema = model_schema(ConfigDocument)
    verifier = schema["properties"]["verifiers"]["additionalProperties"]
    verifier["allOf"] = [
        {
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": {"properties": {"options": model_schema(options)}},
        }
        for name, options in sorted(BUILTIN_OPTIONS.items())
    ]
    return {"$schema": DRAFT_07, **schema}


def chart_values_schema(values_schema: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's values schema with its `config` property generated (the chart-only parts kept)."""
    out = copy.deepcopy(dict(values_schema))
    config = config_schema()
    del config["$schema"]
    config["required"] = [r for r in config.get("required", []) if r not in ("verifiers", "policies")]
    if not config["required"]:
        del config["required"]
    # The chart writes the listener's files (server.tls.certFile, keyFile, clientCAFile): values give at
    # most reloadInterval, and one that sets a file fails the render with the chart's own message.
    for tls in config["properties"]["server"]["properties"]["tls"]["anyOf"]:
        tls.pop("required", None)
    config["description"] = CHART_DESCRIPTION
    out["properties"]["config"] = config
    return out


def render(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provider.schema", description=__doc__.splitlines()[0])
    parser.add_argument("--chart", type=Path, help="a values.schema.json whose `config` property to replace")
    args = parser.parse_args(argv)
    if args.chart is not None:
        sys.stdout.write(render(chart_values_schema(json.loads(args.chart.read_text("utf-8")))))
    else:
        sys.stdout.write(render(config_schema()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
