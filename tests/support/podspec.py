"""A Pod template, as `helm template` renders it, translated into a ``podman run`` (no kubelet here).

:func:`translate` reads every field of the Pod template's spec and of its one container and either applies
it or refuses it (:class:`Refused`, naming the field): a chart change this translator does not know about
fails the tests instead of being silently left out. A few fields have no meaning for one Pod on one
machine (scheduling, image pulling, the ServiceAccount when no token is mounted); they are listed in
:data:`NOT_APPLICABLE` with the reason, and any value they take is accepted.

What comes out (:class:`PodPlan`) is data only:

* the ``podman run`` options for the container's user, groups, read-only root, capabilities,
  ``no-new-privileges``, environment, memory and CPU limits, entrypoint (``command``) and ``args``;
* the volumes as the kubelet would fill them (:class:`FilesVolume`: ConfigMap and Secret data with the
  ``items``, ``defaultMode`` and the fsGroup applied; :class:`MemoryVolume`: an in-memory ``emptyDir``) and
  where they are mounted;
* the HTTP probes with their ports resolved and their timings;
* the termination grace period.

tests/support/pod.py lays the volumes out (the kubelet's ``..data`` symlinks), runs it in a network
namespace of its own and executes the probes. :func:`helm_template` renders the chart.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import require_tool

__all__ = [
    "CHART",
    "NOT_APPLICABLE",
    "FilesVolume",
    "HttpProbe",
    "MemoryVolume",
    "Mount",
    "PodPlan",
    "Refused",
    "find",
    "helm_template",
    "quantity",
    "translate",
]

CHART = Path(__file__).resolve().parents[2] / "charts" / "countersign"
Doc = dict[str, Any]

#: Fields accepted with any value, and why they change nothing for one Pod run by podman on this machine.
NOT_APPLICABLE: dict[str, str] = {
    "spec.serviceAccountName": "no token is mounted (automountServiceAccountToken must be false)",
    "spec.imagePullSecrets": "the image is loaded into podman's storage, never pulled",
    "spec.priorityClassName": "scheduling and eviction order",
    "spec.affinity": "scheduling",
    "spec.topologySpreadConstraints": "scheduling",
    "spec.nodeSelector": "scheduling",
    "spec.tolerations": "scheduling",
    "container.resources.requests": "scheduling (and CPU shares, which change nothing on an idle test bed)",
    "container.name": "the podman container is named after the Pod",
}


class Refused(ValueError):
    """A field of the Pod template that the translator cannot apply; the message names it."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where = where


@dataclass(frozen=True)
class FilesVolume:
    """A ConfigMap or Secret volume: file name -> bytes, every file with ``mode``, group ``group``."""

    files: Mapping[str, bytes]
    mode: int
    group: int


@dataclass(frozen=True)
class MemoryVolume:
    """An ``emptyDir`` with ``medium: Memory``: a tmpfs of ``size_bytes`` (None: no limit)."""

    size_bytes: int | None


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool


@dataclass(frozen=True)
class HttpProbe:
    """An ``httpGet`` probe: a status from 200 to 399 within ``timeout`` succeeds."""

    path: str
    port: int
    initial_delay: float
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int


@dataclass
class PodPlan:
    image: str
    options: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    args: list[str] = field(default_factory=list)
    volumes: dict[str, FilesVolume | MemoryVolume] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    probes: dict[str, HttpProbe] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    grace_seconds: int = 30
    user: int | None = None


_UNITS = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "m": 1,
}  # fmt: skip


def quantity(value: object, where: str) -> float:
    """A Kubernetes quantity (512Mi, 1G, 100m, 2) as a number (``m`` only for CPU: thousandths)."""
    text = str(value).strip()
    found = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m)?", text)
    if found is None:
        raise Refused(where, f"{text!r} is not a quantity this translator reads")
    number, unit = float(found.group(1)), found.group(2)
    if unit == "m":
        return number / 1000
    return number * _UNITS[unit] if unit else number


def _take(doc: Mapping[str, Any], where: str, known: Sequence[str]) -> dict[str, Any]:
    """``doc`` as a dict; any key outside ``known`` (and not in NOT_APPLICABLE) is refused."""
    if not isinstance(doc, Mapping):
        raise Refused(where, f"expected an object, got {type(doc).__name__}")
    for key in doc:
        path = f"{where}.{key}"
        if key not in known and path not in NOT_APPLICABLE:
            raise Refused(path, "a field the translator does not apply (teach tests/support/podspec.py)")
    return dict(doc)


def _only(where: str, value: object, allowed: object) -> None:
    if value != allowed:
        raise Refused(where, f"only {allowed!r} is supported, the template says {value!r}")


def _object_data(
    objects: Mapping[tuple[str, str], Doc], kind: str, name: str, where: str
) -> dict[str, bytes]:
    found = objects.get((kind, name))
    if found is None:
        raise Refused(where, f"the {kind} {name!r} does not exist (the Pod would not start)")
    data: dict[str, bytes] = {}
    if kind == "Secret":
        for key, value in (found.get("data") or {}).items():
            data[key] = base64.b64decode(value)
        for key, value in (found.get("stringData") or {}).items():
            data[key] = str(value).encode()
    else:
        for key, value in (found.get("data") or {}).items():
            data[key] = str(value).encode()
        for key, value in (found.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value)
    return data


def _files_volume(
    source: Mapping[str, Any], kind: str, where: str, objects: Mapping[tuple[str, str], Doc], group: int
) -> FilesVolume:
    name_key = "secretName" if kind == "Secret" else "name"
    spec = _take(source, where, [name_key, "items", "defaultMode", "optional"])
    if spec.get("optional") not in (None, False):
        raise Refused(f"{where}.optional", "optional volumes are not supported")
    data = _object_data(objects, kind, str(spec[name_key]), where)
    mode = int(spec.get("defaultMode", 0o644))
    files: dict[str, bytes] = {}
    if "items" in spec:
        for i, item in enumerate(spec["items"]):
            item = _take(item, f"{where}.items[{i}]", ["key", "path"])
            if item["key"] not in data:
                raise Refused(f"{where}.items[{i}].key", f"{kind} has no key {item['key']!r}")
            if "/" in item["path"] or item["path"].startswith(".."):
                raise Refused(f"{where}.items[{i}].path", "only plain file names are supported")
            files[item["path"]] = data[item["key"]]
    else:
        files = data
    # The kubelet gives the files the fsGroup and at least group read (SetVolumeOwnership, read-only mask).
    if group:
        mode |= 0o440
    return FilesVolume(files, mode, group)


def _volumes(
    volumes: Sequence[Mapping[str, Any]], objects: Mapping[tuple[str, str], Doc], group: int
) -> dict[str, FilesVolume | MemoryVolume]:
    out: dict[str, FilesVolume | MemoryVolume] = {}
    for i, volume in enumerate(volumes):
        where = f"spec.volumes[{i}]"
        spec = _take(volume, where, ["name", "configMap", "secret", "emptyDir"])
        name = str(spec.pop("name"))
        if len(spec) != 1:
            raise Refused(where, f"volume {name!r}: exactly one source expected, got {sorted(spec)}")
        ((kind, source),) = spec.items()
        if kind == "configMap":
            out[name] = _files_volume(source, "ConfigMap", f"{where}.configMap", objects, group)
        elif kind == "secret":
            out[name] = _files_volume(source, "Secret", f"{where}.secret", objects, group)
        else:
            empty = _take(source, f"{where}.emptyDir", ["medium", "sizeLimit"])
            _only(f"{where}.emptyDir.medium", empty.get("medium"), "Memory")
            limit = empty.get("sizeLimit")
            size = int(quantity(limit, f"{where}.emptyDir.sizeLimit")) if limit is not None else None
            out[name] = MemoryVolume(size)
    return out


def _security(context: Mapping[str, Any], where: str, known: Sequence[str]) -> dict[str, Any]:
    spec = _take(context, where, known)
    if "seccompProfile" in spec:
        # podman's default seccomp profile is the runtime's default.
        profile = _take(spec["seccompProfile"], f"{where}.seccompProfile", ["type"])
        _only(f"{where}.seccompProfile.type", profile["type"], "RuntimeDefault")
    return spec


def _probe(doc: Mapping[str, Any], where: str, ports: Mapping[str, int]) -> HttpProbe:
    spec = _take(
        doc,
        where,
        [
            "httpGet",
            "initialDelaySeconds",
            "periodSeconds",
            "timeoutSeconds",
            "failureThreshold",
            "successThreshold",
        ],
    )
    if "httpGet" not in spec:
        raise Refused(where, "only httpGet probes are supported")
    get = _take(spec["httpGet"], f"{where}.httpGet", ["path", "port", "scheme"])
    _only(f"{where}.httpGet.scheme", get.get("scheme", "HTTP"), "HTTP")
    port = get["port"]
    if isinstance(port, str):
        if port not in ports:
            raise Refused(f"{where}.httpGet.port", f"no container port named {port!r}")
        port = ports[port]
    return HttpProbe(
        path=str(get.get("path", "/")),
        port=int(port),
        initial_delay=float(spec.get("initialDelaySeconds", 0)),
        period=float(spec.get("periodSeconds", 10)),
        timeout=float(spec.get("timeoutSeconds", 1)),
        failure_threshold=int(spec.get("failureThreshold", 3)),
        success_threshold=int(spec.get("successThreshold", 1)),
    )


def translate(
    template: Mapping[str, Any],
    *,
    objects: Mapping[tuple[str, str], Doc],
    images: Mapping[str, str],
) -> PodPlan:
    """The Pod template of a Deployment (``spec.template``) as a :class:`PodPlan`.

    ``objects`` are the ConfigMaps and Secrets of the namespace by (kind, name); ``images`` maps each image
    reference the template may name to what podman runs (the reference itself when podman's storage holds
    it under that name)."""
    top = _take(template, "template", ["metadata", "spec"])
    _take(top.get("metadata", {}), "template.metadata", ["labels", "annotations"])
    pod = _take(
        top["spec"],
        "spec",
        [
            "containers",
            "volumes",
            "securityContext",
            "automountServiceAccountToken",
            "enableServiceLinks",
            "terminationGracePeriodSeconds",
        ],
    )
    # Nothing the kubelet would add on its own: no ServiceAccount token, no Service environment variables.
    _only("spec.automountServiceAccountToken", pod.get("automountServiceAccountToken"), False)
    _only("spec.enableServiceLinks", pod.get("enableServiceLinks"), False)
    containers = pod["containers"]
    if len(containers) != 1:
        raise Refused("spec.containers", f"exactly one container is supported, got {len(containers)}")
    pod_security = _security(
        pod.get("securityContext", {}),
        "spec.securityContext",
        ["runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile", "supplementalGroups"],
    )
    fs_group = int(pod_security.get("fsGroup", 0))
    c = _take(
        containers[0],
        "container",
        [
            "image",
            "imagePullPolicy",
            "command",
            "args",
            "env",
            "ports",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "resources",
            "securityContext",
            "volumeMounts",
        ],
    )
    image = str(c["image"])
    if image not in images:
        raise Refused("container.image", f"{image!r} is not an image the caller provides ({sorted(images)})")
    plan = PodPlan(image=images[image])
    plan.grace_seconds = int(pod.get("terminationGracePeriodSeconds", 30))

    policy = c.get("imagePullPolicy", "IfNotPresent")
    if policy not in ("IfNotPresent", "Never"):
        raise Refused("container.imagePullPolicy", f"{policy}: there is no registry to pull the image from")
    plan.options += ["--pull", "never"]

    # User and groups: the container's securityContext wins over the Pod's.
    security = _security(
        c.get("securityContext", {}),
        "container.securityContext",
        [
            "runAsNonRoot",
            "runAsUser",
            "runAsGroup",
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
            "privileged",
            "capabilities",
            "seccompProfile",
        ],
    )
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    group = security.get("runAsGroup", pod_security.get("runAsGroup"))
    if user is None:
        raise Refused("securityContext.runAsUser", "unset: the image's user would run (not checked here)")
    if security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) and int(user) == 0:
        raise Refused("securityContext.runAsNonRoot", "runAsUser is 0: the kubelet would not start it")
    plan.user = int(user)
    plan.options += ["--user", f"{int(user)}:{int(group if group is not None else 0)}"]
    for extra in [fs_group, *pod_security.get("supplementalGroups", [])]:
        if extra:
            plan.options += ["--group-add", str(int(extra))]
    if security.get("readOnlyRootFilesystem"):
        # Nothing writable but the volumes: podman would otherwise add tmpfs on /tmp, /run, /var/tmp.
        plan.options += ["--read-only", "--read-only-tmpfs=false"]
    if security.get("allowPrivilegeEscalation") is False:
        plan.options += ["--security-opt", "no-new-privileges"]
    if security.get("privileged", False):
        raise Refused("container.securityContext.privileged", "privileged containers are not supported")
    capabilities = _take(
        security.get("capabilities", {}), "container.securityContext.capabilities", ["drop", "add"]
    )
    for cap in capabilities.get("drop", []):
        plan.options += ["--cap-drop", str(cap).lower()]
    for cap in capabilities.get("add", []):
        plan.options += ["--cap-add", str(cap).lower()]

    for i, variable in enumerate(c.get("env", [])):
        spec = _take(variable, f"container.env[{i}]", ["name", "value"])
        plan.options += ["--env", f"{spec['name']}={spec.get('value', '')}"]

    resources = _take(c.get("resources", {}), "container.resources", ["limits"])
    limits = _take(resources.get("limits", {}), "container.resources.limits", ["memory", "cpu"])
    if "memory" in limits:
        plan.options += [
            "--memory",
            str(int(quantity(limits["memory"], "container.resources.limits.memory"))),
        ]
    if "cpu" in limits:
        plan.options += ["--cpus", f"{quantity(limits['cpu'], 'container.resources.limits.cpu'):g}"]

    # command replaces the image's entrypoint (and then its CMD too); args follow the image reference.
    if "command" in c:
        plan.entrypoint = [str(part) for part in c["command"]]
    plan.args = [str(part) for part in c.get("args", [])]

    for port in c.get("ports", []):
        spec = _take(port, "container.ports[]", ["name", "containerPort", "protocol"])
        _only("container.ports[].protocol", spec.get("protocol", "TCP"), "TCP")
        if "name" in spec:
            plan.ports[str(spec["name"])] = int(spec["containerPort"])
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        if kind in c:
            plan.probes[kind] = _probe(c[kind], f"container.{kind}", plan.ports)

    plan.volumes = _volumes(pod.get("volumes", []), objects, fs_group)
    for i, mount in enumerate(c.get("volumeMounts", [])):
        spec = _take(mount, f"container.volumeMounts[{i}]", ["name", "mountPath", "readOnly"])
        if spec["name"] not in plan.volumes:
            raise Refused(f"container.volumeMounts[{i}].name", f"no volume {spec['name']!r}")
        volume = plan.volumes[spec["name"]]
        # ConfigMap and Secret volumes are read-only whatever the mount says (the kubelet mounts them so).
        read_only = bool(spec.get("readOnly", False)) or isinstance(volume, FilesVolume)
        plan.mounts.append(Mount(str(spec["name"]), str(spec["mountPath"]), read_only))
    return plan


def helm_template(
    values: Mapping[str, Any], *, release: str = "countersign", namespace: str = "countersign"
) -> list[Doc]:
    """``helm template RELEASE charts/countersign --namespace NAMESPACE`` with ``values``: the documents."""
    with tempfile.TemporaryDirectory(prefix="helm-") as home:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_DATA_HOME": f"{home}/data",
        }
        done = subprocess.run(
            [str(require_tool("helm")), "template", release, str(CHART), "--namespace", namespace,
             "--values", "-"],
            input=json.dumps(dict(values)),
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"helm template failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(docs: Sequence[Doc], kind: str, name: str | None = None) -> Doc:
    """The one rendered object of ``kind`` (and ``name``)."""
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} objects of kind {kind} named {name}")
    return found[0]
