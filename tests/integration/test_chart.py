"""The Helm chart (charts/countersign), with the pinned helm only: lint, render, schema, and the rendered
configuration checked by `countersign config validate`. The real API server's view of the rendered objects
is in tests/e2e/test_chart.py."""

from __future__ import annotations

import base64
import copy
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "countersign"
RELEASE, NAMESPACE = "countersign", "countersign"
CONFIG_DIR = "/etc/countersign/config"
CONFIG_PATH = f"{CONFIG_DIR}/config.yaml"

Doc = dict[str, Any]


def _ca_pem() -> str:
    pem: bytes = trustme.CA().cert_pem.bytes()
    return pem.decode()


def _cosign_public_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


CA_PEM = _ca_pem()

# Every optional part of the chart switched on (except cert-manager, whose CRDs the e2e cluster lacks), with
# a configuration that uses several verifiers and the integer and duration fields.
FULL_VALUES: Doc = {
    "replicaCount": 3,
    "image": {"digest": "sha256:" + "ab" * 32},
    "logLevel": "debug",
    "config": {
        "server": {"deadlines": {"verify": "2s", "mutate": "800ms"}, "tls": {"reloadInterval": "5s"}},
        "cache": {"verdictTTL": "10m", "contentBytes": 67108864, "maxVerdicts": 20000},
        "registries": {"registry.example.com": {}},
        "auth": {"dockerConfigs": ["/etc/countersign/trust/extra/config.json"]},
        "verifiers": {
            "signed": {
                "type": "cosign",
                "options": {
                    "keys": [{"name": "release", "pem": _cosign_public_key()}],
                    "transparencyLog": "skip",
                },
            },
            "sbom": {"type": "sbom", "options": {"maxAge": "30d"}},
            "pinned": {"type": "digest-pin", "options": {"exempt": ["registry.example.com/base/*"]}},
        },
        "policies": [
            {"name": "default", "scopes": ["*"], "allOf": ["signed", "sbom"]},
            {
                "name": "prod",
                "scopes": ["registry.example.com/prod/*"],
                "allOf": ["signed", "sbom", "pinned"],
            },
        ],
    },
    "gatekeeper": {"providers": {"enabled": True, "caBundle": CA_PEM}},
    "registryCredentials": {
        "dockerConfigSecrets": [{"name": "regcred"}, {"name": "mirror-creds", "key": "config.json"}]
    },
    "trustMaterial": [
        {"name": "cosign-keys", "configMap": "cosign-public-keys"},
        {
            "name": "notation",
            "secret": "notation-policy",
            "mountPath": "/etc/notation",
            "items": [{"key": "trustpolicy.json", "path": "trustpolicy.json"}],
        },
    ],
    "networkPolicy": {
        "enabled": True,
        "gatekeeperPodSelector": {"matchLabels": {"gatekeeper.sh/system": "yes"}},
        "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 443, "protocol": "TCP"}]}],
    },
    "podDisruptionBudget": {"minAvailable": 2},
    "priorityClassName": "system-cluster-critical",
}

CERT_MANAGER_VALUES: Doc = {"tls": {"certManager": {"enabled": True}}}
INLINE_CA_VALUES: Doc = {"mtls": {"clientCASecret": "", "clientCA": CA_PEM}}
NO_MTLS_VALUES: Doc = {"mtls": {"enabled": False}, "metrics": {"service": {"enabled": False}}}

VALUE_SETS: dict[str, Doc] = {
    "default": {},
    "full": FULL_VALUES,
    "cert-manager": CERT_MANAGER_VALUES,
    "inline-client-ca": INLINE_CA_VALUES,
    "no-mtls": NO_MTLS_VALUES,
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return require_tool("helm")


def run_helm(helm: Path, *args: str, values: Doc | None = None) -> subprocess.CompletedProcess[str]:
    """``helm ARGS [-f values]``, the values written to a temporary file (no network, no cluster)."""
    command = [str(helm), *args]
    stdin = None
    if values is not None:
        command += ["--values", "-"]
        stdin = yaml.safe_dump(values)
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def render(
    helm: Path, values: Doc | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[Doc]:
    done = run_helm(helm, "template", release, str(CHART), "--namespace", namespace, values=values)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def render_fails(helm: Path, values: Doc) -> str:
    done = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, values=values)
    assert done.returncode != 0, f"rendered although it should not:\n{done.stdout}"
    return done.stderr


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (
        f"{len(found)} {kind} {name or ''} in {[(d['kind'], d['metadata']['name']) for d in docs]}"
    )
    return found[0]


def kinds(docs: list[Doc]) -> list[tuple[str, str]]:
    return sorted((d["kind"], d["metadata"]["name"]) for d in docs)


def rendered_config(docs: list[Doc]) -> Doc:
    config: Doc = yaml.safe_load(one(docs, "ConfigMap", f"{RELEASE}-config")["data"]["config.yaml"])
    return config


def pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(docs: list[Doc]) -> Doc:
    (only,) = pod_spec(docs)["containers"]
    result: Doc = only
    return result


def mounts(docs: list[Doc]) -> dict[str, Doc]:
    return {m["mountPath"]: m for m in container(docs)["volumeMounts"]}


def volumes(docs: list[Doc]) -> dict[str, Doc]:
    return {v["name"]: v for v in pod_spec(docs)["volumes"]}


def merged(*layers: Doc) -> Doc:
    """Later layers over earlier ones, as helm merges --values files."""
    out: Doc = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


# --- Chart metadata and lint -----------------------------------------------------------------------------


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict(helm: Path, name: str) -> None:
    done = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NAMESPACE, values=VALUE_SETS[name])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


# --- What the default values render ----------------------------------------------------------------------


def test_default_render_has_the_expected_objects(helm: Path) -> None:
    assert kinds(render(helm)) == [
        ("ClusterRole", "countersign"),
        ("ClusterRoleBinding", "countersign"),
        ("ConfigMap", "countersign-config"),
        ("Deployment", "countersign"),
        ("PodDisruptionBudget", "countersign"),
        ("Role", "countersign"),
        ("RoleBinding", "countersign"),
        ("Service", "countersign"),
        ("Service", "countersign-metrics"),
        ("ServiceAccount", "countersign"),
    ]
    # Without the Kubernetes source: no RBAC at all.
    assert kinds(render(helm, {"kubernetes": {"enabled": False}})) == [
        ("ConfigMap", "countersign-config"),
        ("Deployment", "countersign"),
        ("PodDisruptionBudget", "countersign"),
        ("Service", "countersign"),
        ("Service", "countersign-metrics"),
        ("ServiceAccount", "countersign"),
    ]


def test_rbac_is_only_what_the_kubernetes_source_uses(helm: Path) -> None:
    docs = render(helm)
    kinds_ = ["clusterimagepolicies", "imagepolicies", "verifiers"]
    assert one(docs, "ClusterRole")["rules"] == [
        {"apiGroups": ["countersign.dev"], "resources": kinds_, "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["countersign.dev"], "resources": [f"{k}/status" for k in kinds_], "verbs": ["patch"]},
    ]
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "list", "watch"]}
    ]
    for binding in (one(docs, "ClusterRoleBinding"), one(docs, "RoleBinding")):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "countersign", "namespace": NAMESPACE}
        ]
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    config = rendered_config(docs)
    assert config["kubernetes"] == {"enabled": True}
    assert "verifiers" not in config and "policies" not in config  # resources supply them
    pulled = rendered_config(render(helm, {"kubernetes": {"pullSecrets": ["regcred"]}}))
    assert pulled["kubernetes"] == {"enabled": True, "pullSecrets": ["regcred"]}


WORKLOAD_RULES = [{"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}]
WORKLOAD_SUBJECTS = [{"kind": "ServiceAccount", "name": "countersign", "namespace": NAMESPACE}]


def test_workload_pull_secrets_are_off_by_default(helm: Path) -> None:
    """Off (the default): no RBAC for other namespaces' Secrets, and the file leaves the feature off."""
    for values in ({}, {"kubernetes": {"workloadPullSecrets": {"enabled": False, "namespaces": ["team-a"]}}}):
        docs = render(helm, values)
        assert not [d for d in docs if d["metadata"]["name"].endswith("-workload-pull-secrets")]
        assert "workloadPullSecrets" not in rendered_config(docs)["kubernetes"]


def test_workload_pull_secrets_cluster_wide(helm: Path) -> None:
    """Enabled without namespaces: get on secrets and serviceaccounts in every namespace, and the flag set."""
    docs = render(helm, {"kubernetes": {"workloadPullSecrets": {"enabled": True}}})
    name = "countersign-workload-pull-secrets"
    assert one(docs, "ClusterRole", name)["rules"] == WORKLOAD_RULES
    binding = one(docs, "ClusterRoleBinding", name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": name,
    }
    assert binding["subjects"] == WORKLOAD_SUBJECTS
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding") and d["metadata"]["name"] == name]
    assert rendered_config(docs)["kubernetes"] == {"enabled": True, "workloadPullSecrets": True}
    # The Kubernetes source's own RBAC is unchanged.
    assert one(docs, "Role", "countersign")["rules"] == [
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "list", "watch"]}
    ]


def test_workload_pull_secrets_in_listed_namespaces_only(helm: Path) -> None:
    docs = render(
        helm, {"kubernetes": {"workloadPullSecrets": {"enabled": True, "namespaces": ["team-a", "team-b"]}}}
    )
    name = "countersign-workload-pull-secrets"
    assert not [d for d in docs if d["kind"].startswith("Cluster") and d["metadata"]["name"] == name]
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == name]
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == name]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == WORKLOAD_RULES
    for binding in bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert binding["subjects"] == WORKLOAD_SUBJECTS
    assert rendered_config(docs)["kubernetes"] == {"enabled": True, "workloadPullSecrets": True}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"kubernetes": {"enabled": False, "workloadPullSecrets": {"enabled": True}}},
            "kubernetes.workloadPullSecrets.enabled needs kubernetes.enabled",
        ),
        (
            {"config": {"kubernetes": {"workloadPullSecrets": True}}},
            "config.kubernetes.workloadPullSecrets is set by the chart",
        ),
        ({"kubernetes": {"workloadPullSecrets": True}}, "workloadPullSecrets"),
        ({"kubernetes": {"workloadPullSecrets": {"enabled": True, "namespaces": ["Team_A"]}}}, "namespaces"),
        ({"kubernetes": {"workloadPullSecrets": {"enable": True}}}, "enable"),
    ],
)
def test_workload_pull_secrets_mistakes_fail_the_render(helm: Path, values: Doc, expected: str) -> None:
    assert expected in render_fails(helm, values)


def test_deployment_is_hardened(helm: Path) -> None:
    docs = render(helm)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec(docs)
    # The token only for the Kubernetes source (on by default), mounted by the chart itself: a bound,
    # expiring token with the cluster's CA and the namespace, where in-cluster clients look for them.
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "countersign"
    assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    (api_volume,) = [v for v in spec["volumes"] if v["name"] == "kube-api-access"]
    sources = api_volume["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"] == {"fieldPath": "metadata.namespace"}
    (api_mount,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "kube-api-access"]
    assert api_mount == {
        "name": "kube-api-access",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    off = render(helm, {"kubernetes": {"enabled": False}})
    assert pod_spec(off)["automountServiceAccountToken"] is False
    assert one(off, "ServiceAccount")["automountServiceAccountToken"] is False
    assert "kube-api-access" not in {v["name"] for v in pod_spec(off)["volumes"]}
    assert "kube-api-access" not in {m["name"] for m in container(off)["volumeMounts"]}
    assert "POD_NAMESPACE" not in {e["name"] for e in container(off)["env"]}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["runAsUser"] == 65532
    context = container(docs)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable path is the /tmp emptyDir.
    writable = [m["mountPath"] for m in container(docs)["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/tmp"]
    assert "emptyDir" in volumes(docs)["tmp"]
    assert container(docs)["resources"]["limits"]["memory"]
    preferred = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert preferred[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}


def test_container_serves_the_mounted_config_with_probes_on_the_health_port(helm: Path) -> None:
    docs = render(helm)
    main = container(docs)
    assert main["image"] == "localhost/countersign:0.1.0"
    assert [main["command"][0], *main["args"]] == [
        "countersign",
        "--log-level=info",
        "serve",
        f"--config={CONFIG_PATH}",
    ]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"https": 8443, "health": 8080}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    # No subPath: the kubelet updates a directory mount when the ConfigMap changes, and Countersign reloads.
    assert mounts(docs)[CONFIG_DIR] == {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}
    assert volumes(docs)["config"]["configMap"]["name"] == "countersign-config"

    # Gatekeeper's Service carries only the HTTPS port; the health port has its own Service.
    service = one(docs, "Service", "countersign")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 8443, "targetPort": "https", "protocol": "TCP"}
    ]
    metrics = one(docs, "Service", "countersign-metrics")
    assert [p["targetPort"] for p in metrics["spec"]["ports"]] == ["health"]
    assert service["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]


def test_server_section_matches_the_ports_and_mounted_secrets(helm: Path) -> None:
    docs = render(helm)
    server = rendered_config(docs)["server"]
    server.pop("limits")  # memory sizing, below
    assert server == {
        "address": "0.0.0.0",
        "port": 8443,
        "healthPort": 8080,
        "tls": {
            "certFile": "/etc/countersign/tls/tls.crt",
            "keyFile": "/etc/countersign/tls/tls.key",
            "clientCAFile": "/etc/countersign/gatekeeper/ca.crt",
        },
    }
    assert mounts(docs)["/etc/countersign/tls"]["name"] == "tls"
    assert volumes(docs)["tls"]["secret"]["secretName"] == "countersign-tls"
    assert [i["path"] for i in volumes(docs)["tls"]["secret"]["items"]] == ["tls.crt", "tls.key"]
    # mTLS is on by default: only ca.crt of the client CA Secret is mounted.
    assert mounts(docs)["/etc/countersign/gatekeeper"]["name"] == "client-ca"
    assert volumes(docs)["client-ca"]["secret"] == {
        "secretName": "countersign-gatekeeper-ca",
        "defaultMode": 0o444,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }


def test_placeholder_policy_only_without_a_policy_of_ones_own(helm: Path) -> None:
    # Without the Kubernetes source (with it, resources supply policies: the placeholder would claim `*`).
    off = {"kubernetes": {"enabled": False}}
    config = rendered_config(render(helm, off))
    assert config["verifiers"] == {"pinned": {"type": "digest-pin"}}
    assert config["policies"] == [{"name": "default", "scopes": ["*"], "allOf": ["pinned"]}]
    # Given verifiers and policies, nothing of the placeholder is merged into them.
    own = {"verifiers": {"sbom": {"type": "sbom"}}, "policies": [{"scopes": ["*"], "allOf": ["sbom"]}]}
    config = rendered_config(render(helm, {**off, "config": own}))
    assert config["verifiers"] == own["verifiers"]
    assert config["policies"] == own["policies"]


# --- The rendered configuration is one Countersign accepts -----------------------------------------------


def validate_config(config_text: str, directory: Path) -> subprocess.CompletedProcess[str]:
    path = directory / "config.yaml"
    path.write_text(config_text)
    return subprocess.run(
        [sys.executable, "-m", "provider.cli", "config", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )


@pytest.mark.parametrize("name", ["default", "full"])
def test_rendered_config_passes_config_validate(helm: Path, tmp_path: Path, name: str) -> None:
    docs = render(helm, VALUE_SETS[name])
    text = one(docs, "ConfigMap", f"{RELEASE}-config")["data"]["config.yaml"]
    done = validate_config(text, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "valid (fingerprint sha256:" in done.stdout


def test_full_values_render_every_optional_part(helm: Path) -> None:
    docs = render(helm, FULL_VALUES)
    assert kinds(docs) == [
        ("ClusterRole", "countersign"),
        ("ClusterRoleBinding", "countersign"),
        ("ConfigMap", "countersign-config"),
        ("Deployment", "countersign"),
        ("NetworkPolicy", "countersign"),
        ("PodDisruptionBudget", "countersign"),
        ("Provider", "countersign-mutate"),
        ("Provider", "countersign-verify"),
        ("Role", "countersign"),
        ("RoleBinding", "countersign"),
        ("Service", "countersign"),
        ("Service", "countersign-metrics"),
        ("ServiceAccount", "countersign"),
    ]
    assert container(docs)["image"] == "localhost/countersign@sha256:" + "ab" * 32
    assert container(docs)["args"][0] == "--log-level=debug"
    assert one(docs, "Deployment")["spec"]["replicas"] == 3
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    assert "maxUnavailable" not in one(docs, "PodDisruptionBudget")["spec"]

    config = rendered_config(docs)
    assert config["server"]["deadlines"] == {"verify": "2s", "mutate": "800ms"}
    assert config["server"]["tls"]["reloadInterval"] == "5s"
    assert config["cache"]["contentBytes"] == 67108864  # an integer, not 6.7108864e+07
    # The docker config Secrets are appended to the configured files, each at its own mount.
    assert config["auth"]["dockerConfigs"] == [
        "/etc/countersign/trust/extra/config.json",
        "/etc/countersign/docker/regcred/config.json",
        "/etc/countersign/docker/mirror-creds/config.json",
    ]
    all_mounts, all_volumes = mounts(docs), volumes(docs)
    for secret, key in [("regcred", ".dockerconfigjson"), ("mirror-creds", "config.json")]:
        mount = all_mounts[f"/etc/countersign/docker/{secret}"]
        assert mount["readOnly"] is True
        source = all_volumes[mount["name"]]["secret"]
        assert source["secretName"] == secret
        assert source["items"] == [{"key": key, "path": "config.json"}]
    cosign_keys = all_mounts["/etc/countersign/trust/cosign-keys"]
    assert cosign_keys["readOnly"] is True
    assert all_volumes[cosign_keys["name"]]["configMap"]["name"] == "cosign-public-keys"
    notation_mount = all_mounts["/etc/notation"]
    assert all_volumes[notation_mount["name"]]["secret"] == {
        "secretName": "notation-policy",
        "defaultMode": 0o440,
        "items": [{"key": "trustpolicy.json", "path": "trustpolicy.json"}],
    }


def test_providers_point_at_the_service(helm: Path) -> None:
    docs = render(helm, {"gatekeeper": {"providers": {"enabled": True, "caBundle": CA_PEM}}})
    bundle = base64.b64encode(CA_PEM.encode()).decode()
    verify, mutate = one(docs, "Provider", "countersign-verify"), one(docs, "Provider", "countersign-mutate")
    assert verify["apiVersion"] == "externaldata.gatekeeper.sh/v1beta1"
    assert "namespace" not in verify["metadata"]  # cluster-scoped
    assert verify["spec"] == {
        "url": "https://countersign.countersign.svc:8443/v1/verify",
        "timeout": 3,
        "caBundle": bundle,
    }
    assert mutate["spec"] == {
        "url": "https://countersign.countersign.svc:8443/v1/mutate",
        "timeout": 1,
        "caBundle": bundle,
    }
    # A caBundle given as base64 is taken as it is; the release name and namespace make the host name.
    docs = render(
        helm,
        {"gatekeeper": {"providers": {"enabled": True, "caBundle": bundle, "mutate": {"enabled": False}}}},
        release="cs",
        namespace="admission",
    )
    (provider,) = [d for d in docs if d["kind"] == "Provider"]
    assert provider["spec"]["url"] == "https://cs-countersign.admission.svc:8443/v1/verify"
    assert provider["spec"]["caBundle"] == bundle


def test_providers_without_a_ca_bundle_fail_with_a_clear_message(helm: Path) -> None:
    message = render_fails(helm, {"gatekeeper": {"providers": {"enabled": True}}})
    assert "gatekeeper.providers.caBundle is empty" in message
    assert "--set-file gatekeeper.providers.caBundle=ca.crt" in message
    message = render_fails(
        helm, {"gatekeeper": {"providers": {"enabled": True, "caBundle": "bm90IGEgY2VydA=="}}}
    )
    assert "neither a PEM certificate nor the base64 encoding of one" in message


# --- TLS sources -----------------------------------------------------------------------------------------


def test_mtls_without_a_client_ca_source_fails_the_render(helm: Path) -> None:
    message = render_fails(helm, {"mtls": {"clientCASecret": ""}})
    assert "mtls.enabled is true but no client CA source is set" in message
    assert "gatekeeper-webhook-server-cert in gatekeeper-system" in message
    assert "mtls.clientCASecret" in message


def test_client_ca_from_a_config_map_or_inline(helm: Path) -> None:
    docs = render(helm, {"mtls": {"clientCAConfigMap": "gatekeeper-ca", "clientCAKey": "root.pem"}})
    assert volumes(docs)["client-ca"]["configMap"] == {
        "name": "gatekeeper-ca",
        "defaultMode": 0o444,
        "items": [{"key": "root.pem", "path": "ca.crt"}],
    }
    docs = render(helm, INLINE_CA_VALUES)
    made = one(docs, "ConfigMap", "countersign-client-ca")
    assert made["data"]["ca.crt"].strip() == CA_PEM.strip()
    assert volumes(docs)["client-ca"]["configMap"]["name"] == "countersign-client-ca"
    assert "checksum/client-ca" in one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]


def test_without_mtls_no_client_ca_is_configured_or_mounted(helm: Path) -> None:
    docs = render(helm, NO_MTLS_VALUES)
    assert "clientCAFile" not in rendered_config(docs)["server"]["tls"]
    assert "client-ca" not in volumes(docs)
    assert "/etc/countersign/gatekeeper" not in mounts(docs)
    assert ("Service", "countersign-metrics") not in kinds(docs)


def test_cert_manager_issues_the_serving_certificate(helm: Path) -> None:
    docs = render(helm, CERT_MANAGER_VALUES)
    assert [k for k in kinds(docs) if k[0] in ("Certificate", "Issuer")] == [
        ("Certificate", "countersign"),
        ("Certificate", "countersign-ca"),
        ("Issuer", "countersign-ca"),
        ("Issuer", "countersign-selfsigned"),
    ]
    serving = one(docs, "Certificate", "countersign")["spec"]
    assert serving["dnsNames"][:2] == [
        "countersign.countersign.svc",
        "countersign.countersign.svc.cluster.local",
    ]
    assert serving["usages"] == ["digital signature", "server auth"]
    assert serving["issuerRef"] == {"name": "countersign-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert volumes(docs)["tls"]["secret"]["secretName"] == serving["secretName"] == "countersign-tls"
    assert one(docs, "Certificate", "countersign-ca")["spec"]["isCA"] is True

    # With an issuer of the operator's, the chart creates no CA of its own.
    docs = render(
        helm,
        merged(
            CERT_MANAGER_VALUES,
            {"tls": {"certManager": {"issuerRef": {"name": "corp", "kind": "ClusterIssuer"}}}},
        ),
    )
    assert [k for k in kinds(docs) if k[0] in ("Certificate", "Issuer")] == [("Certificate", "countersign")]
    assert one(docs, "Certificate")["spec"]["issuerRef"] == {
        "name": "corp",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }


def test_network_policy_admits_gatekeeper_and_the_scraper_only(helm: Path) -> None:
    policy = one(render(helm, FULL_VALUES), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    https, health = policy["ingress"]
    assert https["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert https["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gatekeeper-system"}},
            "podSelector": {"matchLabels": {"gatekeeper.sh/system": "yes"}},
        }
    ]
    assert health["ports"] == [{"port": "health", "protocol": "TCP"}]
    assert health["from"] == FULL_VALUES["networkPolicy"]["metricsFrom"]
    assert policy["egress"] == FULL_VALUES["networkPolicy"]["egress"]


# --- Values that must not render -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"replicas": 3}, "replicas"),
        ({"image": {"digest": "sha256:1234"}}, "digest"),
        ({"logLevel": "verbose"}, "logLevel"),
        ({"server": {"port": 70000}}, "port"),
        ({"mtls": {"enable": False}}, "enable"),
        ({"trustMaterial": [{"name": "keys", "configMap": "a", "secret": "b"}]}, "trustMaterial"),
        ({"podSecurityContext": {"runAsUser": 0}}, "runAsUser"),
        ({"config": {"verifiers": {}, "policies": []}}, "config"),
        ({"antiAffinity": "sometimes"}, "antiAffinity"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_schema_rejects_bad_values(helm: Path, values: Doc, field: str) -> None:
    message = render_fails(helm, values)
    assert "values don't meet the specifications of the schema" in message
    assert field in message


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"server": {"limits": {"maxKeys": "50"}}}, "maxKeys"),
        ({"server": {"deadlines": {"verify": True}}}, "verify"),
        ({"server": {"deadlines": {"verify": 30}}}, "verify"),
        ({"cache": {"verdictTTL": "10 minutes"}}, "verdictTTL"),
        ({"cache": {"size": 1}}, "size"),
        ({"registries": {"reg.example.com": {"minTLS": "1.1"}}}, "minTLS"),
        ({"registries": {"bad host/x": {}}}, "bad host/x"),
        ({"egress": {"hosts": []}}, "hosts"),
        ({"verifiers": {"Pinned": {"type": "digest-pin"}}}, "Pinned"),
        ({"verifiers": {"pin": {"type": "digest-pin", "options": {"verifyTag": "yes"}}}}, "verifyTag"),
        (
            {"verifiers": {"c": {"type": "cosign", "options": {"keys": [{"pem": "x", "colour": 1}]}}}},
            "colour",
        ),
        ({"policies": [{"scope": "*", "allOf": ["pinned"], "namespace": "prod"}]}, "namespace"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_schema_types_the_configuration(helm: Path, config: Doc, field: str) -> None:
    """values.schema.json's `config` is generated from Countersign's models (`make schema`): a mistyped or
    misspelt configuration value fails the render, naming the field."""
    message = render_fails(helm, {"config": config})
    assert "values don't meet the specifications of the schema" in message
    assert field in message


def test_lint_fails_on_a_bad_value(helm: Path) -> None:
    done = run_helm(helm, "lint", "--strict", str(CHART), values={"replicaCount": -1})
    assert done.returncode != 0
    assert "replicaCount" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"config": {"server": {"port": 9443}}}, "config.server.port is set by the chart"),
        (
            {"config": {"server": {"tls": {"certFile": "/x"}}}},
            "config.server.tls.certFile is set by the chart",
        ),
        ({"server": {"port": 8080, "healthPort": 8080}}, "server.port and server.healthPort must differ"),
        ({"tls": {"existingSecret": ""}}, "tls.existingSecret is empty"),
        (
            {"trustMaterial": [{"name": "k", "configMap": "a"}, {"name": "k", "secret": "b"}]},
            'the name "k" is used twice',
        ),
    ],
)
def test_conflicting_values_fail_with_a_message(helm: Path, values: Doc, expected: str) -> None:
    assert expected in render_fails(helm, values)


def iter_containers(docs: list[Doc]) -> Iterator[Doc]:
    for doc in docs:
        if doc["kind"] == "Deployment":
            yield from doc["spec"]["template"]["spec"]["containers"]


def test_every_value_set_renders_a_hardened_pod(helm: Path) -> None:
    for name, values in VALUE_SETS.items():
        for item in iter_containers(render(helm, values)):
            context = item["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name


# --- Memory sizing ----------------------------------------------------------------------------------------

MiB = 1 << 20


@pytest.mark.parametrize(
    ("limit", "total"),
    [
        ("512Mi", 512 * MiB),
        ("1Gi", 1024 * MiB),
        ("1.5Gi", 1536 * MiB),
        ("1000M", 1000 * 10**6),
        ("805306368", 768 * MiB),
    ],
)
def test_memory_sizes_are_derived_from_the_memory_limit(
    helm: Path, tmp_path: Path, limit: str, total: int
) -> None:
    docs = render(helm, {"resources": {"limits": {"memory": limit}}})
    config = rendered_config(docs)
    cache, limits = config["cache"], config["server"]["limits"]
    free = total - 231 * MiB  # memory.reserved
    assert limits["inFlightBytes"] == int(free * 0.40)
    assert limits["verificationBytes"] == min(limits["inFlightBytes"], 128 * MiB)
    assert cache["contentBytes"] == int(free * 0.25)
    assert cache["verdictBytes"] == int(free * 0.25)
    assert cache["tagBytes"] == int(free * 0.05)
    assert cache["maxVerdicts"] == cache["verdictBytes"] // 512
    # Everything the process may hold fits the limit, with the reserve for the process itself.
    bounded = limits["inFlightBytes"] + cache["contentBytes"] + cache["verdictBytes"] + cache["tagBytes"]
    assert bounded + 231 * MiB <= total
    # And Countersign accepts what was derived.
    text = one(docs, "ConfigMap", f"{RELEASE}-config")["data"]["config.yaml"]
    done = validate_config(text, tmp_path)
    assert done.returncode == 0, done.stderr


def test_the_default_limit_gives_the_documented_sizes(helm: Path) -> None:
    config = rendered_config(render(helm))
    assert config["server"]["limits"] == {"inFlightBytes": 117859942, "verificationBytes": 117859942}
    assert config["cache"] == {
        "contentBytes": 73662464,  # 70.25 MiB
        "verdictBytes": 73662464,
        "tagBytes": 14732492,
        "maxVerdicts": 143872,
    }


def test_sizes_set_in_config_are_kept(helm: Path) -> None:
    own = {
        "cache": {"contentBytes": 1 << 20, "maxVerdicts": 5},
        "server": {"limits": {"inFlightBytes": 32 * MiB}},
    }
    config = rendered_config(render(helm, {"config": own, "resources": {"limits": {"memory": "2Gi"}}}))
    assert config["cache"]["contentBytes"] == 1 << 20
    assert config["cache"]["maxVerdicts"] == 5
    assert config["cache"]["verdictBytes"] == int((2048 - 231) * MiB * 0.25)
    assert config["server"]["limits"]["inFlightBytes"] == 32 * MiB
    assert config["server"]["limits"]["verificationBytes"] == 32 * MiB  # never more than in flight


def test_no_derivation_without_a_limit_or_when_turned_off(helm: Path) -> None:
    for values in ({"resources": {"limits": {"memory": None}}}, {"memory": {"derive": False}}):
        config = rendered_config(render(helm, values))
        assert "cache" not in config
        assert "limits" not in config["server"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"resources": {"limits": {"memory": "200Mi"}}}, "leaves less than 64Mi after memory.reserved"),
        ({"resources": {"limits": {"memory": "lots"}}}, "is not a memory quantity"),
        ({"memory": {"shares": {"inFlight": 60, "content": 30}}}, "add up to more than 100"),
    ],
)
def test_memory_sizing_mistakes_fail_the_render(helm: Path, values: Doc, message: str) -> None:
    assert message in render_fails(helm, values)
