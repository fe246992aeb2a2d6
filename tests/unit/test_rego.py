"""The Gatekeeper manifests in gatekeeper-templates/ and the Rego of their ConstraintTemplates, on real OPA.

The Rego is extracted from the YAML (tests/support/rego.py) and checked the way Gatekeeper v3.23.1 would
take it: Rego v1 under ``code[engine=Rego].source`` with ``version: "v1"``, only the imports and ``data``
references Gatekeeper's rewriter accepts, and the built-ins of the OPA Gatekeeper embeds plus
``external_data``. ``opa test`` then runs tests/rego/*_test.rego against it, with ``external_data`` replaced
by a stub (``with external_data as stub``). Finally the template reads verdicts built by provider/verdict.py
and responses built by provider/protocol.py, so the Rego and the Python value schema cannot drift apart.

OPA is the pinned binary from ``tools/install.sh opa``; without it these tests skip, or fail under CI=true.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from provider.config import Policy
from provider.outcome import Decided, Invalid, Outcome, UndecidedKey
from provider.protocol import response_for
from provider.verdict import VerifierOutcome, denial_value, verdict_value
from tests.support.rego import (
    EXTERNAL_DATA_BUILTIN,
    REGO_TESTS_DIR,
    REPO_ROOT,
    TEMPLATES_DIR,
    Extracted,
    extract,
    gatekeeper_capabilities,
    load_documents,
    main,
    rego_sources,
    template_files,
)
from tests.support.tools import require_tool
from verifiers.base import Report
from verifiers.reference import parse_key

# --- What the manifests must be -------------------------------------------------------------------------

#: (apiVersion, kind) of every object we ship, as Gatekeeper v3.23.1 serves them.
KNOWN_KINDS = {
    ("externaldata.gatekeeper.sh/v1beta1", "Provider"),
    ("templates.gatekeeper.sh/v1", "ConstraintTemplate"),
    ("mutations.gatekeeper.sh/v1", "Assign"),
    ("constraints.gatekeeper.sh/v1beta1", "CountersignVerifiedImages"),
    ("constraints.gatekeeper.sh/v1beta1", "CountersignNotationIssuer"),
}

#: The files and what each holds.
EXPECTED_FILES = {
    "provider.yaml": ["Provider", "Provider"],
    "verified-images-template.yaml": ["ConstraintTemplate"],
    "mutators.yaml": ["Assign"] * 6,
    "samples/verified-images-constraint.yaml": ["CountersignVerifiedImages"],
    "samples/notation-issuer-template.yaml": ["ConstraintTemplate"],
    "samples/notation-issuer-constraint.yaml": ["CountersignNotationIssuer"],
}

GATEKEEPER_TARGET = "admission.k8s.gatekeeper.sh"

#: The kinds the templates read images from, as (group, kind), and the container lists (relative to the
#: object) that the mutators pin for each.
POD_KINDS = {("", "Pod")}
TEMPLATE_KINDS = {("apps", k) for k in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")} | {
    ("batch", "Job")
}
CRONJOB_KINDS = {("batch", "CronJob")}
WORKLOAD_KINDS = POD_KINDS | TEMPLATE_KINDS | CRONJOB_KINDS
POD_SPEC_PATH = {
    **{gk: "spec" for gk in POD_KINDS},
    **{gk: "spec.template.spec" for gk in TEMPLATE_KINDS},
    **{gk: "spec.jobTemplate.spec.template.spec" for gk in CRONJOB_KINDS},
}
#: Kinds whose containers must not be re-pinned on UPDATE: a Pod would restart the container, a Job's pod
#: template is immutable.
CREATE_ONLY_KINDS = {("", "Pod"), ("batch", "Job")}

SYSTEM_NAMESPACES = {"kube-system", "gatekeeper-system"}


def documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in template_files():
        for document in load_documents(path):
            yield path, document


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in documents() if d.get("kind") == kind]


def providers() -> dict[str, str]:
    """Provider name -> spec.url."""
    return {p["metadata"]["name"]: p["spec"]["url"] for p in of_kind("Provider")}


def countersign_namespace() -> str:
    """Countersign's namespace, from the Providers' Service host ``<service>.<namespace>.svc``."""
    namespaces = {(urlsplit(url).hostname or "").split(".")[1] for url in providers().values()}
    assert len(namespaces) == 1, namespaces
    return namespaces.pop()


def templates() -> dict[str, dict[str, Any]]:
    """Constraint kind -> ConstraintTemplate."""
    return {t["spec"]["crd"]["spec"]["names"]["kind"]: t for t in of_kind("ConstraintTemplate")}


def constraints() -> list[dict[str, Any]]:
    return [d for _, d in documents() if d.get("apiVersion") == "constraints.gatekeeper.sh/v1beta1"]


# --- YAML -----------------------------------------------------------------------------------------------


def test_every_yaml_parses_with_known_kinds() -> None:
    found = {
        str(p.relative_to(TEMPLATES_DIR)): [d["kind"] for d in load_documents(p)] for p in template_files()
    }
    assert found == EXPECTED_FILES
    for path, document in documents():
        assert (document.get("apiVersion"), document.get("kind")) in KNOWN_KINDS, path
        assert document.get("metadata", {}).get("name"), f"{path}: an object without metadata.name"


def test_providers_point_at_the_endpoints() -> None:
    urls = providers()
    assert set(urls) == {"countersign-verify", "countersign-mutate"}
    assert urls["countersign-verify"].startswith("https://")
    assert urlsplit(urls["countersign-verify"]).path == "/v1/verify"
    assert urlsplit(urls["countersign-mutate"]).path == "/v1/mutate"
    assert countersign_namespace() == "countersign"


def test_templates_are_rego_v1_in_the_code_field() -> None:
    assert set(templates()) == {"CountersignVerifiedImages", "CountersignNotationIssuer"}
    for kind, template in templates().items():
        # Gatekeeper refuses a template whose name is not the lowercase kind.
        assert template["metadata"]["name"] == kind.lower()
        targets = template["spec"]["targets"]
        assert [t["target"] for t in targets] == [GATEKEEPER_TARGET]
        # Legacy spec.targets[].rego would take precedence over code[] and is always Rego v0.
        assert "rego" not in targets[0] and "libs" not in targets[0]
        [code] = targets[0]["code"]
        assert code["engine"] == "Rego"
        assert code["source"]["version"] == "v1"  # anything else, or nothing, is Rego v0 to Gatekeeper
        assert code["source"]["rego"].startswith(f"package {kind.lower()}\n")
    sources = rego_sources()
    assert sorted(s.kind for s in sources) == sorted(templates())
    assert all(s.version == "v1" and not s.legacy and s.target == GATEKEEPER_TARGET for s in sources)


def assert_structural(schema: Mapping[str, Any], where: str) -> None:
    """Gatekeeper's v1 templates need a structural schema: a type at every level, items for arrays."""
    assert schema.get("type") in {"object", "array", "string", "boolean", "integer", "number"}, where
    for name, sub in (schema.get("properties") or {}).items():
        assert_structural(sub, f"{where}.{name}")
    if schema["type"] == "array":
        assert_structural(schema["items"], f"{where}[]")


def test_parameter_schemas_are_structural() -> None:
    for kind, template in templates().items():
        schema = template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]
        assert schema["type"] == "object"
        assert_structural(schema, kind)
        for name, prop in schema["properties"].items():
            assert prop.get("description"), f"{kind}.{name} has no description"


def conforms(value: Any, schema: Mapping[str, Any]) -> bool:
    """Enough of OpenAPI v3 for our parameter schemas. Unknown fields do not conform: the API server would
    silently prune them, which would quietly drop a setting."""
    kind = schema["type"]
    if kind == "object":
        properties = schema.get("properties") or {}
        return isinstance(value, dict) and all(
            k in properties and conforms(v, properties[k]) for k, v in value.items()
        )
    if kind == "array":
        return isinstance(value, list) and all(conforms(v, schema["items"]) for v in value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_constraint_parameters_conform_to_their_templates() -> None:
    found = constraints()
    assert {c["kind"] for c in found} == set(templates())
    for constraint in found:
        template = templates()[constraint["kind"]]
        schema = template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]
        assert conforms(constraint["spec"].get("parameters", {}), schema), constraint["metadata"]["name"]
        assert constraint["spec"].get("enforcementAction", "deny") == "deny"
    schema = templates()["CountersignVerifiedImages"]["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]
    assert conforms({"exemptImages": ["a/*"], "namespacedKeys": False}, schema)
    assert not conforms({"exemptImage": []}, schema)  # a misspelt parameter is caught
    assert not conforms({"namespacedKeys": "true"}, schema)


def match_kinds(match: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {
        (group, kind) for entry in match["kinds"] for group in entry["apiGroups"] for kind in entry["kinds"]
    }


def test_constraints_match_the_workload_kinds_outside_system_namespaces() -> None:
    for constraint in constraints():
        match = constraint["spec"]["match"]
        assert match_kinds(match) == WORKLOAD_KINDS, constraint["metadata"]["name"]
        assert match["scope"] == "Namespaced"
        assert set(match["excludedNamespaces"]) >= SYSTEM_NAMESPACES | {countersign_namespace()}


@dataclass(frozen=True)
class Pinning:
    group: str
    kind: str
    location: str
    operations: frozenset[str]


def pinnings() -> list[Pinning]:
    found: list[Pinning] = []
    for assign in of_kind("Assign"):
        for apply in assign["spec"]["applyTo"]:
            for group in apply["groups"]:
                for kind in apply["kinds"]:
                    found.append(
                        Pinning(
                            group, kind, assign["spec"]["location"], frozenset(apply.get("operations", []))
                        )
                    )
    return found


def test_mutators_pin_every_container_list_through_the_mutate_provider() -> None:
    assigns = of_kind("Assign")
    for assign in assigns:
        name, spec = assign["metadata"]["name"], assign["spec"]
        assert len(name) <= 63  # Gatekeeper refuses longer mutator names
        assert spec["location"].endswith("[name:*].image"), name
        for apply in spec["applyTo"]:
            assert apply["groups"] and apply["versions"] == ["v1"] and apply["kinds"], name
            assert apply["operations"] and set(apply["operations"]) <= {"CREATE", "UPDATE"}, name
        assert {(g, k) for g, k in match_kinds(spec["match"])} == {
            (g, k) for a in spec["applyTo"] for g in a["groups"] for k in a["kinds"]
        }, name
        assert spec["match"]["scope"] == "Namespaced"
        assert set(spec["match"]["excludedNamespaces"]) >= SYSTEM_NAMESPACES | {countersign_namespace()}
        # A container without an image (allowed in pod templates) must not get one: only existing images.
        assert spec["parameters"]["pathTests"] == [{"subPath": spec["location"], "condition": "MustExist"}]
        external = spec["parameters"]["assign"]["externalData"]
        assert set(spec["parameters"]["assign"]) == {"externalData"}
        assert external["provider"] == "countersign-mutate"
        assert urlsplit(providers()[external["provider"]]).path == "/v1/mutate"
        assert external["dataSource"] == "ValueAtLocation"
        assert external["failurePolicy"] == "Ignore"  # the documented choice (docs/operators.md)
        assert "default" not in external

    expected = {
        (group, kind, f"{POD_SPEC_PATH[(group, kind)]}.{field}[name:*].image")
        for group, kind in WORKLOAD_KINDS
        for field in ("containers", "initContainers")
    }
    found = pinnings()
    assert {(p.group, p.kind, p.location) for p in found} == expected
    assert len(found) == len(expected)  # each list pinned once
    for p in found:
        wanted = {"CREATE"} if (p.group, p.kind) in CREATE_ONLY_KINDS else {"CREATE", "UPDATE"}
        assert p.operations == wanted, p


# --- Rego on OPA ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def opa() -> Path:
    return require_tool("opa")


@dataclass(frozen=True)
class RegoTree:
    directory: Path
    templates: list[Extracted]
    capabilities: Path


@pytest.fixture(scope="module")
def rego(opa: Path, tmp_path_factory: pytest.TempPathFactory) -> RegoTree:
    root = tmp_path_factory.mktemp("rego")
    capabilities = root / "capabilities.json"
    capabilities.write_text(json.dumps(gatekeeper_capabilities(opa)), encoding="utf-8")
    return RegoTree(root / "rego", extract(root / "rego"), capabilities)


def run(opa: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(opa), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_extraction_writes_every_template(rego: RegoTree) -> None:
    assert {e.source.template for e in rego.templates} == {k.lower() for k in templates()}
    for item in rego.templates:
        assert item.directory == rego.directory / item.source.template
        assert [f.name for f in item.files] == ["template.rego"]
        assert item.files[0].read_text(encoding="utf-8") == item.source.rego


def test_capabilities_are_gatekeepers(rego: RegoTree) -> None:
    capabilities = json.loads(rego.capabilities.read_text(encoding="utf-8"))
    names = {b["name"] for b in capabilities["builtins"]}
    assert EXTERNAL_DATA_BUILTIN in capabilities["builtins"]
    assert {"glob.match", "sprintf", "object.get"} <= names
    assert "rego_v1" in capabilities["features"]


def test_opa_check_strict(opa: Path, rego: RegoTree) -> None:
    result = run(opa, "check", "--strict", "--capabilities", rego.capabilities, rego.directory)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_without_external_data(opa: Path, rego: RegoTree, tmp_path: Path) -> None:
    # The capabilities matter: without Gatekeeper's built-in, the templates do not compile.
    plain = tmp_path / "plain.json"
    capabilities = json.loads(rego.capabilities.read_text(encoding="utf-8"))
    capabilities["builtins"] = [b for b in capabilities["builtins"] if b["name"] != "external_data"]
    plain.write_text(json.dumps(capabilities), encoding="utf-8")
    result = run(opa, "check", "--capabilities", plain, rego.directory)
    assert result.returncode != 0
    assert "external_data" in result.stdout + result.stderr


def test_rego_is_formatted(opa: Path, rego: RegoTree) -> None:
    result = run(opa, "fmt", "--list", rego.directory, REGO_TESTS_DIR)
    assert result.returncode == 0 and result.stdout == "", f"not `opa fmt`-formatted:\n{result.stdout}"


def walk_refs(node: Any) -> Iterator[list[Any]]:
    if isinstance(node, dict):
        if node.get("type") == "ref" and isinstance(node.get("value"), list):
            yield node["value"]
        for value in node.values():
            yield from walk_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_refs(value)


def test_rego_passes_gatekeepers_rewriter_rules(opa: Path, rego: RegoTree) -> None:
    """What Gatekeeper's regorewriter accepts: imports of future.* and data.lib.* only (so no `import
    rego.v1`), data references to data.inventory and data.lib only, and a `violation` rule."""
    for item in rego.templates:
        result = run(
            opa, "parse", "--format", "json", "--json-include", "-comments,-locations", item.files[0]
        )
        assert result.returncode == 0, result.stderr
        module = json.loads(result.stdout)
        for imported in module.get("imports") or []:
            path = [term["value"] for term in imported["path"]["value"]]
            assert path[0] == "future" or path[:2] == ["data", "lib"], (
                f"{item.source.template}: import {path}"
            )
        for ref in walk_refs(module["rules"]):
            if ref[0] == {"type": "var", "value": "data"}:
                assert ref[1]["value"] in {"inventory", "lib"}, f"{item.source.template}: data ref {ref}"
        heads = {rule["head"]["ref"][0]["value"] for rule in module["rules"]}
        assert "violation" in heads
        assert module["package"]["path"][1]["value"] == item.source.template


def declared_tests() -> dict[str, set[str]]:
    """Package -> names of the test rules in tests/rego/*_test.rego (opa fmt puts rule heads in column 0)."""
    found: dict[str, set[str]] = {}
    for path in sorted(REGO_TESTS_DIR.glob("*_test.rego")):
        text = path.read_text(encoding="utf-8")
        package = re.search(r"^package (\S+)$", text, re.MULTILINE)
        assert package, path
        found.setdefault(package.group(1), set()).update(re.findall(r"^(test_\w+) if\b", text, re.MULTILINE))
    return found


def test_every_template_has_rego_tests(rego: RegoTree) -> None:
    tested = {package.removesuffix("_test") for package in declared_tests()}
    assert tested == {item.source.template for item in rego.templates}
    for path in REGO_TESTS_DIR.glob("*_test.rego"):
        assert "todo_test_" not in path.read_text(encoding="utf-8"), f"{path}: skipped (todo_) tests"


def test_opa_test(opa: Path, rego: RegoTree) -> None:
    result = run(
        opa,
        "test",
        "-v",
        "--fail-on-empty",
        "--capabilities",
        rego.capabilities,
        rego.directory,
        REGO_TESTS_DIR,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    outcomes = dict(re.findall(r"^data\.(\S+): (PASS|FAIL|ERROR|SKIPPED)\b", output, re.MULTILINE))
    expected = {f"{package}.{name}" for package, names in declared_tests().items() for name in names}
    assert len(expected) >= 70
    assert set(outcomes) == expected, f"ran {sorted(set(outcomes) ^ expected)} unexpectedly or not at all"
    assert set(outcomes.values()) == {"PASS"}
    assert re.search(rf"^PASS: {len(expected)}/{len(expected)}$", output, re.MULTILINE), output


def test_opa_test_covers_the_templates(opa: Path, rego: RegoTree) -> None:
    args = (
        "test",
        "--coverage",
        "--format",
        "json",
        "--capabilities",
        rego.capabilities,
        rego.directory,
        REGO_TESTS_DIR,
    )
    result = run(opa, *args)
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    for item in rego.templates:
        report = files[str(item.files[0])]
        assert report["coverage"] >= 95, (item.source.template, report.get("not_covered"))


def doc_rego_blocks() -> dict[str, list[str]]:
    """The ```rego blocks of docs/rego.md, by the ## section they are in."""
    blocks: dict[str, list[str]] = {}
    section = ""
    for part in re.split(
        r"^(## .*)$", (REPO_ROOT / "docs" / "rego.md").read_text(encoding="utf-8"), flags=re.M
    ):
        if part.startswith("## "):
            section = part[3:].strip()
            continue
        blocks.setdefault(section, []).extend(re.findall(r"^```rego\n(.*?)^```$", part, re.S | re.M))
    return blocks


def test_the_documented_deny_rule_compiles(opa: Path, rego: RegoTree, tmp_path: Path) -> None:
    blocks = doc_rego_blocks()
    [rule] = blocks["A complete deny rule"]
    (tmp_path / "rule.rego").write_text(rule, encoding="utf-8")
    result = run(opa, "check", "--strict", "--capabilities", rego.capabilities, tmp_path / "rule.rego")
    assert result.returncode == 0, result.stdout + result.stderr
    for section, snippets in blocks.items():
        for snippet in snippets:
            assert "import rego.v1" not in snippet, f"docs/rego.md, {section}: Gatekeeper refuses it"


def test_extraction_command_line(opa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 0
    written = capsys.readouterr().out
    assert "countersignverifiedimages/template.rego" in written
    assert (tmp_path / "rego" / "countersignverifiedimages" / "template.rego").is_file()
    assert json.loads((tmp_path / "capabilities.json").read_text(encoding="utf-8"))["builtins"]
    assert main([]) == 2


def test_a_broken_template_fails_extraction(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: x}\n"
        "spec:\n  crd: {spec: {names: {kind: X}}}\n  targets:\n  - target: t\n    code:\n"
        "    - engine: Rego\n      source: {version: v1}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="no rego string"):
        rego_sources(tmp_path)
    (tmp_path / "t.yaml").write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a mapping"):
        rego_sources(tmp_path)


def test_legacy_rego_field_is_extracted_as_v0(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: x}\n"
        "spec:\n  crd: {spec: {names: {kind: X}}}\n  targets:\n  - target: t\n    rego: 'package x'\n"
        "    code:\n    - engine: Rego\n      source: {version: v1, rego: 'package y'}\n",
        encoding="utf-8",
    )
    [source] = rego_sources(tmp_path)
    assert (source.rego, source.version, source.legacy) == ("package x", "v0", True)


# --- The template against Countersign's own verdicts ----------------------------------------------------

DIGEST = "sha256:" + "4f" * 32
POLICY = Policy("default", ("*",), None, "allOf", ("signed", "sbom"), 2)


def rego_response(keys: Sequence[str], outcomes: Mapping[str, Outcome]) -> dict[str, Any]:
    """What external_data returns in Rego for Countersign's ProviderResponse to ``keys``: Gatekeeper splits
    the items into responses ([key, value]) and errors ([key, error]) and passes systemError on."""
    response = json.loads(json.dumps(response_for(keys, outcomes)))["response"]
    items = response["items"]
    return {
        "responses": [[i["key"], i["value"]] for i in items if not i.get("error")],
        "errors": [[i["key"], i["error"]] for i in items if i.get("error")],
        "status_code": 200,
        "system_error": response.get("systemError", ""),
    }


def evaluate(opa: Path, rego: RegoTree, tmp_path: Path, review: Mapping[str, Any], reply: Any) -> set[str]:
    """Evaluate the CountersignVerifiedImages violations with external_data answering ``reply``."""
    stub = tmp_path / "stub.rego"
    stub.write_text("package countersign_stub\n\nreply(_) := data.countersign_stub_reply\n", encoding="utf-8")
    (tmp_path / "reply.json").write_text(json.dumps({"countersign_stub_reply": reply}), encoding="utf-8")
    (tmp_path / "input.json").write_text(json.dumps({"review": review, "parameters": {}}), encoding="utf-8")
    query = "data.countersignverifiedimages.violation with external_data as data.countersign_stub.reply"
    data = [rego.directory / "countersignverifiedimages", stub, tmp_path / "reply.json"]
    args: list[str | Path] = ["eval", "--format", "json", "--capabilities", rego.capabilities]
    args += [arg for path in data for arg in ("--data", path)]
    result = run(opa, *args, "--input", tmp_path / "input.json", query)
    assert result.returncode == 0, result.stdout + result.stderr
    [expression] = json.loads(result.stdout)["result"][0]["expressions"]
    return {v["msg"] for v in expression["value"]}


def test_template_reads_countersigns_verdicts(opa: Path, rego: RegoTree, tmp_path: Path) -> None:
    images = ["nginx:1.25", "ghcr.io/org/app:1", "Bad!", "slow.example/app:2", "gone.example/app:3"]
    keys = sorted(f"[prod]{i}" for i in images)
    signed = VerifierOutcome("signed", "cosign", Report.ok("cosign_verified", "signed by release"))
    sbom = VerifierOutcome("sbom", "sbom", Report.ok("sbom_verified", "spdx SBOM attached"))
    no_sbom = VerifierOutcome("sbom", "sbom", Report.fail("sbom_not_found", "no SBOM is attached"))
    app, gone = parse_key("[prod]ghcr.io/org/app:1"), parse_key("[prod]gone.example/app:3")
    outcomes: dict[str, Outcome] = {
        "[prod]nginx:1.25": Decided(
            verdict_value(parse_key("[prod]nginx:1.25"), DIGEST, POLICY, [signed, sbom], True)
        ),
        "[prod]ghcr.io/org/app:1": Decided(verdict_value(app, DIGEST, POLICY, [signed, no_sbom], False)),
        "[prod]Bad!": Invalid("invalid image reference 'Bad!': repository name must be lowercase"),
        "[prod]slow.example/app:2": UndecidedKey("registry_timeout", "slow.example: request timed out"),
        "[prod]gone.example/app:3": Decided(
            denial_value(gone, "", "manifest_not_found", "manifest 3 not found")
        ),
    }
    review = {
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "namespace": "prod",
        "operation": "CREATE",
        "object": {
            "spec": {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
        },
    }
    reply = rego_response(keys, outcomes)
    app_value = outcomes["[prod]ghcr.io/org/app:1"]
    assert isinstance(app_value, Decided)
    assert evaluate(opa, rego, tmp_path, review, reply) == {
        f"image ghcr.io/org/app:1 (digest {DIGEST}) in containers[c1] was denied by countersign-verify: "
        + "; ".join(app_value.value["reasons"]),
        "image Bad! in containers[c2] was rejected by countersign-verify: "
        "invalid image reference 'Bad!': repository name must be lowercase",
        "image verification through the countersign-verify provider failed, so the request is denied: "
        + reply["system_error"],
        "image slow.example/app:2 in containers[c3] has no verdict from countersign-verify "
        "(key [prod]slow.example/app:2 was not decided), so it is denied",
        "image gone.example/app:3 in containers[c4] was denied by countersign-verify: "
        "manifest 3 not found [manifest_not_found]",
    }
    assert "sbom: no SBOM is attached [sbom_not_found]" in app_value.value["reasons"]

    # Every key allowed, no systemError: admitted.
    allowed = {k: outcomes["[prod]nginx:1.25"] for k in ("[prod]nginx:1.25",)}
    review["object"] = {"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}
    assert evaluate(opa, rego, tmp_path, review, rego_response(["[prod]nginx:1.25"], allowed)) == set()
