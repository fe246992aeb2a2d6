"""The chart's CustomResourceDefinitions: generated from the resources' spec models, structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from provider.kube.crds import OUTPUT, crds, main, render


def _schemas(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every schema node below `node`, by structure (field names are not schema keywords)."""
    found = [node]
    for child in node.get("properties", {}).values():
        found += _schemas(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += _schemas(node[key])
    return found


def test_the_checked_in_crds_are_the_generated_ones(tmp_path: Path) -> None:
    assert OUTPUT.read_text("utf-8") == render(crds()), "run `make schema` and commit the result"
    assert main(["-o", str(tmp_path / "out.yaml")]) == 0
    assert (tmp_path / "out.yaml").read_text("utf-8") == OUTPUT.read_text("utf-8")


def test_the_schemas_are_structural() -> None:
    for crd in yaml.safe_load_all(OUTPUT.read_text("utf-8")):
        (version,) = crd["spec"]["versions"]
        schema = version["schema"]["openAPIV3Schema"]
        nodes = _schemas(schema)
        forbidden = {
            "$ref",
            "$defs",
            "anyOf",
            "oneOf",
            "allOf",
            "propertyNames",
            "default",
            "patternProperties",
        }
        assert not [n for n in nodes if forbidden & set(n)], crd["metadata"]["name"]
        assert not [n for n in nodes if n.get("additionalProperties") is False]
        # Every node has a type (Verifier.spec.options too: an object that keeps unknown fields).
        untyped = [n for n in nodes if not isinstance(n.get("type"), str)]
        assert untyped == [], untyped
        assert len(nodes) > 10
        assert version["subresources"] == {"status": {}}


def test_names_columns_and_rules() -> None:
    by_kind = {crd["spec"]["names"]["kind"]: crd for crd in yaml.safe_load_all(OUTPUT.read_text("utf-8"))}
    assert set(by_kind) == {"ClusterImagePolicy", "ImagePolicy", "Verifier"}
    cip, ip, verifier = by_kind["ClusterImagePolicy"], by_kind["ImagePolicy"], by_kind["Verifier"]
    assert (cip["spec"]["scope"], ip["spec"]["scope"], verifier["spec"]["scope"]) == (
        "Cluster",
        "Namespaced",
        "Cluster",
    )
    assert cip["spec"]["names"]["shortNames"] == ["cip"] and ip["spec"]["names"]["shortNames"] == ["ipol"]
    assert "shortNames" not in verifier["spec"]["names"]
    assert all(c["spec"]["names"]["categories"] == ["countersign"] for c in by_kind.values())
    assert verifier["metadata"]["name"] == "verifiers.countersign.dev"

    def columns(crd: dict[str, Any]) -> list[tuple[str, str]]:
        return [(c["name"], c["jsonPath"]) for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]

    ready = '.status.conditions[?(@.type=="Ready")].status'
    policy = [("Ready", ready), ("Policy", ".status.summary"), ("Scopes", ".spec.scopes"),
              ("Age", ".metadata.creationTimestamp")]  # fmt: skip
    assert columns(cip) == columns(ip) == policy
    assert columns(verifier) == [
        ("Type", ".spec.type"),
        ("Ready", ready),
        ("Age", ".metadata.creationTimestamp"),
    ]

    def spec(crd: dict[str, Any]) -> dict[str, Any]:
        schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        return schema

    assert "namespaces" in spec(cip)["properties"] and "namespaces" not in spec(ip)["properties"]
    assert [r["message"] for r in spec(cip)["x-kubernetes-validations"]] == [
        "set exactly one of allOf, anyOf or threshold"
    ]
    options = spec(verifier)["properties"]["options"]
    assert options == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    files = spec(verifier)["properties"]["files"]
    assert files["maxProperties"] == 64 and "x-kubernetes-validations" in files
    assert set(files["additionalProperties"]["properties"]) == {
        "secretKeyRef",
        "configMapKeyRef",
        "secret",
        "configMap",
    }
    assert spec(verifier)["required"] == ["type"]
