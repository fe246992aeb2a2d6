"""tests/support/podspec.py: a Pod template translated into podman's terms, every field applied or refused.

The template below has the shape the chart renders (tests/e2e/test_chart_pod.py translates the real
renderings, every optional part on); here each field's translation and each refusal is checked alone."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from tests.support.podspec import (
    NOT_APPLICABLE,
    FilesVolume,
    HttpProbe,
    MemoryVolume,
    Mount,
    Refused,
    quantity,
    translate,
)

IMAGE = "localhost/countersign@sha256:" + "ab" * 32

TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "countersign"}, "annotations": {"checksum/config": "x"}},
    "spec": {
        "serviceAccountName": "countersign",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
        },
        "affinity": {"podAntiAffinity": {}},
        "containers": [
            {
                "name": "countersign",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["countersign"],
                "args": ["--log-level=info", "serve", "--config=/etc/countersign/config/config.yaml"],
                "env": [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
                "ports": [
                    {"name": "https", "containerPort": 8443, "protocol": "TCP"},
                    {"name": "health", "containerPort": 8080, "protocol": "TCP"},
                ],
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "health"},
                    "initialDelaySeconds": 5,
                    "periodSeconds": 10,
                    "timeoutSeconds": 2,
                    "failureThreshold": 3,
                },
                "readinessProbe": {
                    "httpGet": {"path": "/readyz", "port": 8080},
                    "initialDelaySeconds": 2,
                    "periodSeconds": 5,
                },
                "resources": {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}},
                "securityContext": {
                    "runAsNonRoot": True,
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "privileged": False,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/countersign/config", "readOnly": True},
                    {"name": "tls", "mountPath": "/etc/countersign/tls", "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "countersign-config"}},
            {
                "name": "tls",
                "secret": {
                    "secretName": "countersign-tls",
                    "defaultMode": 0o440,
                    "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
                },
            },
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    },
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


OBJECTS: dict[tuple[str, str], dict[str, Any]] = {
    ("ConfigMap", "countersign-config"): {"data": {"config.yaml": "policies: []\n"}},
    ("Secret", "countersign-tls"): {
        "data": {"tls.crt": _b64(b"CERT"), "tls.key": _b64(b"KEY"), "ca.crt": _b64(b"CA")}
    },
}


def _translate(template: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]] = OBJECTS) -> Any:
    return translate(template, objects=objects, images={IMAGE: IMAGE})


def _changed(path: str, value: Any) -> dict[str, Any]:
    """TEMPLATE with the field at ``path`` (dots; [n] for list items) set to ``value``."""
    template = copy.deepcopy(TEMPLATE)
    node: Any = template
    parts = path.replace("[", ".").replace("]", "").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return template


def test_the_chart_shaped_template_is_translated_field_by_field() -> None:
    plan = _translate(TEMPLATE)
    assert plan.image == IMAGE
    assert plan.options == [
        "--pull", "never",
        "--user", "65532:65532",
        "--group-add", "65532",
        "--read-only", "--read-only-tmpfs=false",
        "--security-opt", "no-new-privileges",
        "--cap-drop", "all",
        "--env", "HOME=/tmp",
        "--env", "PYTHONUNBUFFERED=1",
        "--memory", str(512 * 2**20),
    ]  # fmt: skip
    assert plan.entrypoint == ["countersign"]
    assert plan.args == ["--log-level=info", "serve", "--config=/etc/countersign/config/config.yaml"]
    assert plan.user == 65532 and plan.grace_seconds == 30
    assert plan.ports == {"https": 8443, "health": 8080}
    assert plan.probes == {
        "livenessProbe": HttpProbe("/healthz", 8080, 5.0, 10.0, 2.0, 3, 1),
        "readinessProbe": HttpProbe("/readyz", 8080, 2.0, 5.0, 1.0, 3, 1),
    }
    # items pick the keys (ca.crt is left out); the fsGroup owns the files and can read them.
    assert plan.volumes == {
        "config": FilesVolume({"config.yaml": b"policies: []\n"}, 0o644 | 0o440, 65532),
        "tls": FilesVolume({"tls.crt": b"CERT", "tls.key": b"KEY"}, 0o440, 65532),
        "tmp": MemoryVolume(64 * 2**20),
    }
    # ConfigMap and Secret volumes are read-only whatever the mount says; the emptyDir is writable.
    assert plan.mounts == [
        Mount("config", "/etc/countersign/config", True),
        Mount("tls", "/etc/countersign/tls", True),
        Mount("tmp", "/tmp", False),
    ]


def test_without_fs_group_files_keep_their_mode_and_root_group() -> None:
    template = copy.deepcopy(TEMPLATE)
    del template["spec"]["securityContext"]["fsGroup"]
    plan = _translate(template)
    assert plan.volumes["tls"] == FilesVolume({"tls.crt": b"CERT", "tls.key": b"KEY"}, 0o440, 0)
    assert "--group-add" not in plan.options


def test_limits_and_container_user_win() -> None:
    template = _changed("spec.containers.0.resources", {"limits": {"memory": "1Gi", "cpu": "500m"}})
    template["spec"]["containers"][0]["securityContext"]["runAsUser"] = 1000
    template["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    plan = _translate(template)
    assert plan.options[plan.options.index("--memory") + 1] == str(2**30)
    assert plan.options[plan.options.index("--cpus") + 1] == "0.5"
    assert plan.options[plan.options.index("--user") + 1] == "1000:65532"
    assert plan.options[plan.options.index("--cap-add") + 1] == "net_bind_service"


@pytest.mark.parametrize(
    "path",
    [
        "spec.hostNetwork",
        "spec.initContainers",
        "spec.dnsPolicy",
        "spec.securityContext.sysctls",
        "spec.containers.0.workingDir",
        "spec.containers.0.envFrom",
        "spec.containers.0.lifecycle",
        "spec.containers.0.securityContext.procMount",
        "spec.containers.0.readinessProbe.exec",
        "spec.containers.0.readinessProbe.httpGet.httpHeaders",
        "spec.containers.0.volumeMounts.0.subPath",
        "spec.containers.0.env.0.valueFrom",
        "spec.containers.0.resources.claims",
        "spec.volumes.1.secret.foo",
        "spec.volumes.2.emptyDir.foo",
        "metadata.ownerReferences",
    ],
)
def test_a_field_the_translator_does_not_know_is_refused_by_name(path: str) -> None:
    with pytest.raises(Refused, match="a field the translator does not apply") as refused:
        _translate(_changed(path, {"any": "value"}))
    where = refused.value.where
    # Named by its path below the template (lists shown as [n]).
    assert where.split(".")[-1].split("[")[0] == path.split(".")[-1], where


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("spec.volumes.0", {"name": "config", "hostPath": {"path": "/"}}, "hostPath"),
        ("spec.containers.0.imagePullPolicy", "Always", "no registry"),
        ("spec.containers.0.image", "registry.example.com/other:1", "not an image the caller provides"),
        ("spec.containers.0.readinessProbe", {"tcpSocket": {"port": 8080}}, "tcpSocket"),
        ("spec.containers.0.livenessProbe.httpGet.port", "metrics", "no container port named"),
        ("spec.containers.0.livenessProbe.httpGet.scheme", "HTTPS", "only 'HTTP'"),
        ("spec.containers.0.securityContext.privileged", True, "privileged"),
        ("spec.containers.0.securityContext.seccompProfile", {"type": "Unconfined"}, "RuntimeDefault"),
        ("spec.securityContext.runAsUser", 0, "runAsUser is 0"),
        ("spec.automountServiceAccountToken", True, "only False"),
        ("spec.enableServiceLinks", True, "only False"),
        ("spec.volumes.1.secret.secretName", "missing", "does not exist"),
        ("spec.volumes.1.secret.items.0.key", "nope", "has no key"),
        ("spec.volumes.1.secret.items.0.path", "sub/tls.crt", "plain file names"),
        ("spec.volumes.2.emptyDir.medium", "", "only 'Memory'"),
        ("spec.containers.0.volumeMounts.0.name", "undeclared", "no volume"),
        ("spec.containers.0.resources.limits.memory", "lots", "not a quantity"),
        ("spec.containers.0.ports.0.protocol", "UDP", "only 'TCP'"),
    ],
)
def test_values_the_translator_cannot_apply_are_refused(path: str, value: Any, message: str) -> None:
    with pytest.raises(Refused, match=message):
        _translate(_changed(path, value))


def test_two_containers_are_refused() -> None:
    template = copy.deepcopy(TEMPLATE)
    template["spec"]["containers"].append(copy.deepcopy(template["spec"]["containers"][0]))
    with pytest.raises(Refused, match="exactly one container"):
        _translate(template)


def test_without_a_user_or_as_root_nothing_runs() -> None:
    template = copy.deepcopy(TEMPLATE)
    del template["spec"]["securityContext"]["runAsUser"]
    with pytest.raises(Refused, match="runAsUser"):
        _translate(template)


@pytest.mark.parametrize("path", sorted(NOT_APPLICABLE))
def test_fields_without_meaning_here_are_accepted_with_any_value(path: str) -> None:
    full = path.replace("container.", "spec.containers.0.")
    if full.endswith("requests"):
        template = _changed("spec.containers.0.resources.requests", {"cpu": "64", "anything": "x"})
    else:
        template = _changed(full, {"anything": ["goes"]})
    assert _translate(template).image == IMAGE


def test_quantities() -> None:
    assert quantity("512Mi", "x") == 512 * 2**20
    assert quantity("1G", "x") == 10**9
    assert quantity("100m", "x") == 0.1
    assert quantity(2, "x") == 2
    with pytest.raises(Refused):
        quantity("1e3", "x")
