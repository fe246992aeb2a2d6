"""The CustomResourceDefinitions of Countersign's resources, generated from their spec models.

    python -m provider.kube.crds            # writes charts/countersign/crds/countersign.dev.yaml
    python -m provider.kube.crds -o -       # the same on stdout
    make schema                             # regenerates it (with values.schema.json)

The OpenAPI schemas are the spec models' JSON Schemas (`provider.kube.resources`, whose policy rules are
the configuration's) made structural for the API server: no `$ref`, no `anyOf` (an optional field is the
field; the configuration's "one string or a list" is the list), no `additionalProperties: false` (the API
server prunes or, with kubectl's strict field validation, refuses unknown fields), no `default` (the API
server would write it into objects), `Verifier.spec.options` left open (`x-kubernetes-preserve-unknown-
fields`: its verifier type validates it). Strings and lists get bounds, and CEL rules
(`x-kubernetes-validations`) catch at `kubectl apply` what the provider would otherwise report in status:
exactly one of allOf/anyOf/threshold, threshold.count within `of`, scope syntax, repeated verifiers, file
paths inside the verifier's directory, exactly one source per file. The provider checks everything again.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from provider.config import _NAME_RE, _SCOPE_RE
from provider.kube.resources import (
    CLUSTER_IMAGE_POLICY,
    FILE_PATH_RE,
    GROUP,
    IMAGE_POLICY,
    MAX_FILES,
    PLURALS,
    VERIFIER,
    VERSION,
    ClusterImagePolicySpec,
    ImagePolicySpec,
    VerifierSpec,
)
from provider.schema import model_schema

__all__ = ["OUTPUT", "crds", "render"]

OUTPUT = Path(__file__).resolve().parents[2] / "charts" / "countersign" / "crds" / "countersign.dev.yaml"
CATEGORIES = ["countersign"]
MAX_SCOPES = 64
MAX_VERIFIERS = 32
MAX_STRING = 512
# provider.config's rules for scopes and verifier names, as the API server's regular expressions.
SCOPE_PATTERN = f"^{_SCOPE_RE.pattern}$"
VERIFIER_NAME_PATTERN = f"^{_NAME_RE.pattern}$"

_READY = '.status.conditions[?(@.type=="Ready")].status'


def _rule(rule: str, message: str, **extra: str) -> dict[str, str]:
    return {"rule": rule, "message": message, **extra}


def _structural(node: Any) -> Any:
    """A JSON Schema the API server accepts as structural (see the module's docstring)."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items() if k not in ("default", "title", "description")}
    if "anyOf" in node:
        members = [m for m in node.pop("anyOf") if m.get("type") != "null"]
        arrays = [m for m in members if m.get("type") == "array"]
        # `X | None` is X; a "string or list of strings" is the list.
        (chosen,) = arrays if len(members) > 1 and len(arrays) == 1 else members
        return _structural({**chosen, **node})
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "propertyNames" in node:
        raise ValueError(f"propertyNames has no structural form: {node['propertyNames']}")
    out = {k: _structural(v) for k, v in node.items() if k != "properties"}
    if isinstance(node.get("properties"), dict):  # field names, not schema keywords
        out["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
    return out


def _spec_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model_schema(model)
    if model is VerifierSpec:  # its keys are checked by a CEL rule (_verifier_schema)
        del raw["properties"]["files"]["propertyNames"]
    schema: dict[str, Any] = _structural(raw)
    return schema


def _names(schema: dict[str, Any], what: str) -> None:
    """A list of verifier names: bounded, each a verifier name, none twice."""
    schema.update(maxItems=MAX_VERIFIERS)
    schema["items"].update(pattern=VERIFIER_NAME_PATTERN, maxLength=64)
    schema["x-kubernetes-validations"] = [
        _rule("self.all(x, self.exists_one(y, y == x))", f"{what} lists a verifier twice")
    ]


def _policy_schema(model: type[BaseModel]) -> dict[str, Any]:
    spec = _spec_schema(model)
    properties = spec["properties"]
    scopes = properties["scopes"]
    scopes.update(maxItems=MAX_SCOPES)
    scopes["items"].update(maxLength=MAX_STRING, pattern=SCOPE_PATTERN)
    scopes["x-kubernetes-validations"] = [
        _rule(
            "self.all(s, !s.matches('/[^/]*:[^/]*$'))",
            "a scope names a tag; scopes match repositories (registry/repository)",
        )
    ]
    if "namespaces" in properties:
        properties["namespaces"].update(maxItems=MAX_SCOPES)
        properties["namespaces"]["items"].update(maxLength=MAX_STRING)
    _names(properties["allOf"], "allOf")
    _names(properties["anyOf"], "anyOf")
    threshold = properties["threshold"]
    _names(threshold["properties"]["of"], "threshold.of")
    threshold["properties"]["count"]["maximum"] = MAX_VERIFIERS
    threshold["x-kubernetes-validations"] = [
        _rule("self.count <= size(self.of)", "count must not exceed the number of verifiers in `of`")
    ]
    spec["x-kubernetes-validations"] = [
        _rule(
            "[has(self.allOf), has(self.anyOf), has(self.threshold)].filter(x, x).size() == 1",
            "set exactly one of allOf, anyOf or threshold",
        )
    ]
    return spec


def _verifier_schema() -> dict[str, Any]:
    spec = _spec_schema(VerifierSpec)
    properties = spec["properties"]
    properties["type"].update(maxLength=64)
    properties["options"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    files = properties["files"]
    files["maxProperties"] = MAX_FILES
    source = files["additionalProperties"]
    source["x-kubernetes-validations"] = [
        _rule(
            "[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.secret), has(self.configMap)]"
            ".filter(x, x).size() == 1",
            "set exactly one of secretKeyRef, configMapKeyRef, secret, configMap",
        )
    ]
    files["x-kubernetes-validations"] = [
        _rule(
            f"self.all(k, size(k) <= 253 && k.matches('^{FILE_PATH_RE.pattern}$') && "
            "!k.matches('(^|/)[.][.]?(/|$)'))",
            "file paths are relative paths inside the verifier's directory ('keys/cosign.pub': letters, "
            "digits, '-', '_', '.', '/'; no '.' or '..' component, no leading '/')",
        )
    ]
    return spec


def _status_schema() -> dict[str, Any]:
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "maxLength": 64},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "maxLength": 1024},
            "message": {"type": "string", "maxLength": 32768},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "servingGeneration": {"type": "integer", "format": "int64"},
            "summary": {"type": "string"},
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
    }


def _crd(
    kind: str,
    scope: str,
    spec: dict[str, Any],
    columns: list[dict[str, Any]],
    short_names: list[str],
    description: str,
) -> dict[str, Any]:
    plural = PLURALS[kind]
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
    }
    if short_names:
        names["shortNames"] = short_names
    names["categories"] = CATEGORIES
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "countersign"}},
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": _status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def crds() -> list[dict[str, Any]]:
    """The three CustomResourceDefinitions (docs/resources.md)."""
    ready = {"name": "Ready", "type": "string", "jsonPath": _READY}
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    policy_columns = [
        ready,
        {"name": "Policy", "type": "string", "jsonPath": ".status.summary"},
        {"name": "Scopes", "type": "string", "jsonPath": ".spec.scopes"},
        age,
    ]
    verifier_columns = [{"name": "Type", "type": "string", "jsonPath": ".spec.type"}, ready, age]
    return [
        _crd(
            CLUSTER_IMAGE_POLICY,
            "Cluster",
            _policy_schema(ClusterImagePolicySpec),
            copy.deepcopy(policy_columns),
            ["cip"],
            "Which verifiers images in its scopes must pass, cluster-wide (a policy of the configuration "
            "file, named by metadata.name).",
        ),
        _crd(
            IMAGE_POLICY,
            "Namespaced",
            _policy_schema(ImagePolicySpec),
            copy.deepcopy(policy_columns),
            # Not `ip`: kubectl resolves it to the built-in IPAddress (networking.k8s.io) first.
            ["ipol"],
            "Requirements images in its namespace must meet on top of their cluster-wide policy.",
        ),
        _crd(
            VERIFIER,
            "Cluster",
            _verifier_schema(),
            verifier_columns,
            [],
            "A verifier instance (type and options) and the files its options name, from Secrets and "
            "ConfigMaps in the provider's namespace.",
        ),
    ]


def render(documents: list[dict[str, Any]]) -> str:
    header = "# Generated by `python -m provider.kube.crds` (make schema) from provider/kube/resources.py.\n"
    body = yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True, width=110)
    return header + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provider.kube.crds", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(OUTPUT), help="the file to write, - for stdout")
    args = parser.parse_args(argv)
    text = render(crds())
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
