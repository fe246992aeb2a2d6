"""The chart's CustomResourceDefinitions on the real kube-apiserver (etcd + kube-apiserver of the test bed,
without Gatekeeper): they install and become Established, valid resources are stored, the schemas and CEL
rules refuse mistakes at `kubectl apply` with their message (and the spec models refuse the same specs),
and `kubectl get` shows the printer columns."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from provider.kube.crds import OUTPUT
from provider.kube.resources import SPEC_MODELS
from tests.support.kube import Cluster
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(300)

API = "countersign.dev/v1alpha1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Cluster's constructor names Gatekeeper's binary too (it is not started here).
    for tool in ("etcd", "kube-apiserver", "kubectl", "gatekeeper-manager"):
        require_tool(tool)
    started = Cluster(tmp_path_factory.mktemp("crds"))
    try:
        started.etcd.start()
        started.apiserver.start()
        started.kubectl("apply", "--server-side", "-f", str(OUTPUT)).check()
        started.kubectl(
            "wait", "--for=condition=established", "--timeout=60s",
            "crd/clusterimagepolicies.countersign.dev", "crd/imagepolicies.countersign.dev",
            "crd/verifiers.countersign.dev",
        ).check()  # fmt: skip
        started.namespace("team")
        yield started
    finally:
        started.stop()


def doc(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": API, "kind": kind, "metadata": metadata, "spec": spec}


VALID = [
    doc("Verifier", "cosign-prod", {
        "type": "cosign",
        "options": {"keys": [{"path": "keys/cosign.pub"}], "transparencyLog": {"mode": "off"}},
        "files": {
            "keys/cosign.pub": {"secretKeyRef": {"name": "cosign-keys", "key": "cosign.pub"}},
            "roots": {"configMap": {"name": "trust-roots"}},
        },
    }),
    doc("Verifier", "pin", {"type": "digest-pin"}),
    doc("ClusterImagePolicy", "apps", {
        "scopes": ["registry.example.com/apps/*"], "allOf": ["cosign-prod", "pin"],
    }),
    doc("ClusterImagePolicy", "team-x", {
        "scopes": ["registry.example.com"], "namespaces": ["team-*"],
        "threshold": {"count": 1, "of": ["pin", "cosign-prod"]},
    }),
    doc("ImagePolicy", "strict", {"scopes": ["*"], "anyOf": ["cosign-prod"]}, namespace="team"),
]  # fmt: skip


def test_valid_resources_are_stored(cluster: Cluster) -> None:
    for document in VALID:
        SPEC_MODELS[document["kind"]].model_validate(document["spec"])  # the provider accepts them too
    cluster.apply(VALID)
    stored = cluster.get("verifiers", "cosign-prod")
    assert stored["spec"] == VALID[0]["spec"]  # options kept as given (x-kubernetes-preserve-unknown-fields)
    assert stored["metadata"]["generation"] == 1 and stored["metadata"]["uid"]
    assert cluster.get("imagepolicies", "strict", "team")["spec"]["anyOf"] == ["cosign-prod"]
    listed = cluster.kubectl("get", "countersign", "-A", "-o", "name").check().stdout.split()
    assert set(listed) >= {
        "verifier.countersign.dev/cosign-prod",
        "clusterimagepolicy.countersign.dev/apps",
        "imagepolicy.countersign.dev/strict",
    }


REFUSED = [
    ("ClusterImagePolicy", {"scopes": ["*"], "allOf": ["a"], "anyOf": ["b"]},
     "set exactly one of allOf, anyOf or threshold"),
    ("ClusterImagePolicy", {"scopes": ["*"]}, "set exactly one of allOf, anyOf or threshold"),
    ("ClusterImagePolicy", {"scopes": ["*"], "threshold": {"count": 3, "of": ["a", "b"]}},
     "count must not exceed the number of verifiers in `of`"),
    ("ClusterImagePolicy", {"scopes": ["reg.io/app:v1"], "allOf": ["a"]},
     "a scope names a tag; scopes match repositories"),
    ("ClusterImagePolicy", {"scopes": ["reg io"], "allOf": ["a"]}, "spec.scopes[0]: Invalid value"),
    ("ClusterImagePolicy", {"scopes": ["*"], "allOf": ["a", "a"]}, "allOf lists a verifier twice"),
    ("ClusterImagePolicy", {"allOf": ["a"]}, "spec.scopes: Required value"),
    ("ImagePolicy", {"scopes": ["*"], "allOf": ["a"], "namespaces": ["x"]},
     'unknown field "spec.namespaces"'),
    ("Verifier", {"type": ""}, "spec.type: Invalid value"),
    ("Verifier", {"type": "cosign", "files": {"../escape": {"secret": {"name": "s"}}}},
     "file paths are relative paths inside the verifier's directory"),
    ("Verifier", {"type": "cosign", "files": {"/etc/passwd": {"secret": {"name": "s"}}}},
     "file paths are relative paths inside the verifier's directory"),
    ("Verifier", {"type": "cosign", "files": {"a/./b": {"secret": {"name": "s"}}}},
     "file paths are relative paths inside the verifier's directory"),
    ("Verifier", {"type": "cosign", "files": {"k": {"secret": {"name": "s"}, "configMap": {"name": "c"}}}},
     "set exactly one of secretKeyRef, configMapKeyRef, secret, configMap"),
    ("Verifier", {"type": "cosign", "files": {"k": {}}},
     "set exactly one of secretKeyRef, configMapKeyRef, secret, configMap"),
    ("Verifier", {"type": "cosign", "files": {"k": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}}},
     "spec.files.k.secretKeyRef.name: Invalid value"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "spec", "message"), REFUSED)
def test_mistakes_are_refused_at_apply(
    cluster: Cluster, kind: str, spec: dict[str, Any], message: str
) -> None:
    namespace = "team" if kind == "ImagePolicy" else None
    result = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc(kind, "refused", spec, namespace)))
    assert result.returncode != 0, result.output
    assert message in result.output, result.output
    # The provider's own models refuse the same spec (a resource stored some other way stays out).
    with pytest.raises(ValidationError):
        SPEC_MODELS[kind].model_validate(spec)


def test_printer_columns(cluster: Cluster, tmp_path: Path) -> None:
    cluster.apply([VALID[2], VALID[1]])
    header, *rows = cluster.kubectl("get", "clusterimagepolicies").check().stdout.splitlines()
    assert header.split() == ["NAME", "READY", "POLICY", "SCOPES", "AGE"]
    status = {
        "status": {
            "observedGeneration": 1,
            "servingGeneration": 1,
            "summary": "all of [cosign-prod, pin]",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Serving", "message": "generation 1 serving",
                 "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
        }
    }  # fmt: skip
    cluster.kubectl(
        "patch",
        "clusterimagepolicy",
        "apps",
        "--subresource=status",
        "--type=merge",
        "-p",
        yaml.safe_dump(status),
    ).check()
    (row,) = [r for r in cluster.kubectl("get", "cip", "apps").check().stdout.splitlines()[1:]]
    assert row.split()[:2] == ["apps", "True"]
    assert "all of [cosign-prod, pin]" in row and '["registry.example.com/apps/*"]' in row
    # The status subresource: a spec write does not change status, a status write does not change spec.
    stored = cluster.get("clusterimagepolicies", "apps")
    assert (
        stored["status"]["summary"] == "all of [cosign-prod, pin]" and stored["metadata"]["generation"] == 1
    )
    header, *rows = cluster.kubectl("get", "verifiers").check().stdout.splitlines()
    assert header.split() == ["NAME", "TYPE", "READY", "AGE"]
    assert any(r.split()[:2] == ["pin", "digest-pin"] for r in rows)
    header, *rows = cluster.kubectl("get", "ipol", "-n", "team").check().stdout.splitlines()
    assert header.split() == ["NAME", "READY", "POLICY", "SCOPES", "AGE"]
    assert [r.split()[0] for r in rows] == ["strict"]
    # `ip` is the built-in IPAddress's short name, which kubectl resolves first: not usable for ImagePolicy.
    assert "PARENTREF" in cluster.kubectl("get", "ip").check().output


def _documented() -> list[dict[str, Any]]:
    """Every countersign.dev object in the YAML examples of the operator and resource docs."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    found: list[dict[str, Any]] = []
    for page in ("operators.md", "resources.md"):
        for block in re.findall(r"```yaml\n(.*?)```", (docs / page).read_text(), re.S):
            for document in yaml.safe_load_all(block):
                if isinstance(document, dict) and document.get("apiVersion") == API:
                    found.append(document)
    return found


def test_the_documented_examples_are_accepted(cluster: Cluster) -> None:
    documented = _documented()
    kinds = {d["kind"] for d in documented}
    assert kinds == {"ClusterImagePolicy", "ImagePolicy", "Verifier"}, kinds
    for document in documented:
        SPEC_MODELS[document["kind"]].model_validate(document["spec"])
        namespace = document["metadata"].get("namespace")
        if namespace is not None and not cluster.kubectl("get", "namespace", namespace).ok:
            cluster.namespace(namespace)
        done = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(document))
        assert done.ok, f"{document['kind']} {document['metadata']['name']}: {done.output}"
