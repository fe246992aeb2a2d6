"""`helm install` for real: the chart installed into the test bed's cluster, which now has a node
(tests/support/node.py: containerd, kubelet, kube-controller-manager, kube-scheduler, kube-proxy, a bridge
Pod network), then Gatekeeper's admission scenarios answered by the Pod the kubelet runs, reached through
the chart's Service's ClusterIP.

Real: ``helm install`` / ``helm uninstall`` against kube-apiserver; the Deployment, its ReplicaSet and Pod
made by the controller-manager, placed by the scheduler; the kubelet running the Pod in containerd from the
image ``make image`` builds (imported into containerd, never pulled), with its Secret and ConfigMap volumes,
its security context and its probes, with the chart's default ``hostNetwork: false``: the Pod has its
own network namespace and an address on the node's Pod network (CNI bridge, the node's spec.podCIDR);
the Service, the EndpointSlice the controller-manager keeps for its ready Pods, and kube-proxy's
iptables rules for the ClusterIP, which pick the Pod for every connection; Gatekeeper calling the
provider with its client certificate (mutual TLS).

Not real: Gatekeeper runs out of the cluster (on the host), so it calls a port of the host's 127.0.0.1
whose connections are opened, from the node's network namespace, to the Service's ClusterIP:port (the
destination is the ClusterIP; kube-proxy's rules, not the test, choose the endpoint). The test bed's
registry is on the host's 127.0.0.1 (the image references name 127.0.0.1:PORT): the Pod's own
127.0.0.1:PORT is forwarded there by the test process.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.e2e.conftest import LoadedImage
from tests.support.admission import (
    PODS,
    REPO_ROOT,
    Images,
    apply_constraint,
    chart_values,
    constraint,
    install_provider,
    outside_session_constraint,
    pod,
    tls_secrets,
)
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.kube import Cluster, KubectlResult
from tests.support.node import (
    NODE_NAME,
    POD_CIDR,
    SERVICE_CIDR,
    TOLERATION,
    Node,
    require_node,
)
from tests.support.notation import NotationEnv
from tests.support.registries import LOOPBACK, Registry
from tests.support.tools import require_tool

RELEASE = NAMESPACE = "countersign"
DENIED = 'admission webhook "validation.gatekeeper.sh" denied the request'


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, cluster: Cluster, countersign_image: LoadedImage
) -> Iterator[Node]:
    require_node()
    began = time.monotonic()
    started = Node.start(cluster, tmp_path_factory.mktemp("node"))
    try:
        imported = time.monotonic()
        started.import_image(countersign_image.built.layout, "localhost/countersign")
        print(
            f"\nnode: ready after {imported - began:.1f}s {started.timings}; "
            f"image imported in {time.monotonic() - imported:.1f}s"
        )
        yield started
    finally:
        started.stop()


def _helm(cluster: Cluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(require_tool("helm")), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done


def _keys_answered(node: Node, pod_ip: str, outcome: str) -> float:
    """countersign_keys_total{endpoint="verify",outcome=...} of the Pod, read on its health port (from
    the node, across the Pod network)."""
    status, text = node.http_get(pod_ip, 8080, "/metrics")
    assert status == 200, text[:300]
    total = 0.0
    for line in text.splitlines():
        if line.startswith("countersign_keys_total{") and f'outcome="{outcome}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _service_rules(rules: str, cluster_ip: str, pod_ip: str) -> bool:
    """Whether ``iptables-save`` shows kube-proxy's rules for the release's https Service port: the
    ClusterIP matched in KUBE-SERVICES and a DNAT to the Pod's 8443."""
    comment = f"{NAMESPACE}/{RELEASE}:https cluster IP"
    return (
        any(comment in line and f"-d {cluster_ip}/32" in line for line in rules.splitlines())
        and f"--to-destination {pod_ip}:8443" in rules
    )


def _endpoint_connections(rules: str, pod_ip: str) -> int:
    """The packets kube-proxy's DNAT rules to the Pod's 8443 have matched: in the nat table only a
    connection's first packet is matched, so this counts the connections the rules sent to the Pod."""
    total = 0
    for line in rules.splitlines():
        if line.startswith("[") and f"-j DNAT --to-destination {pod_ip}:8443" in line:
            total += int(line[1:].split(":", 1)[0])
    return total


def test_helm_install_runs_the_provider_and_gatekeeper_reaches_it_through_the_service(
    cluster: Cluster,
    node: Node,
    registry: Registry,
    images: Images,
    trusted_key: KeyPair,
    notation_env: NotationEnv,
    countersign_image: LoadedImage,
    tmp_path: Path,
) -> None:
    # The namespace is exempt from Gatekeeper, as an operator exempts the provider's own namespace.
    cluster.namespace(NAMESPACE, ignored=True)
    ca = trustme.CA()
    client_ca = (cluster.pki.gatekeeper_cert_dir / "ca.crt").read_bytes()
    secrets = tls_secrets(ca, client_ca, LOOPBACK, f"{RELEASE}.{NAMESPACE}.svc")
    values, config_maps = chart_values(registry, trusted_key, notation_env, image=countersign_image.reference)
    repository, _, digest = countersign_image.reference.partition("@")
    del values["image"]
    assert "hostNetwork" not in values  # the chart's default: false, a Pod network of its own
    values["tolerations"] = [TOLERATION]
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    cluster.apply([*secrets, *config_maps])

    began = time.monotonic()
    _helm(
        cluster,
        "install", RELEASE, "charts/countersign", "--namespace", NAMESPACE,
        "--values", str(tmp_path / "values.yaml"),
        "--set", f"image.repository={repository}", "--set", f"image.digest={digest}",
        "--wait", "--timeout", "180s",
    )  # fmt: skip
    cluster.kubectl(
        "wait", "-n", NAMESPACE, "--for=condition=Available", f"deployment/{RELEASE}", "--timeout=120s",
        timeout=150,
    ).check()  # fmt: skip
    available = time.monotonic() - began
    print(f"\nhelm install: Deployment Available after {available:.1f}s")
    try:
        pods = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json").check().json()["items"]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        running = pods[0]
        assert running["spec"]["nodeName"] == NODE_NAME
        assert running["status"]["phase"] == "Running"
        pod_ip = running["status"]["podIP"]
        assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(POD_CIDR), pod_ip
        assert running["spec"].get("hostNetwork") is not True
        node_spec = cluster.kubectl("get", "node", NODE_NAME, "-o", "json").check().json()["spec"]
        assert node_spec.get("podCIDR") == POD_CIDR, node_spec
        container = running["spec"]["containers"][0]
        assert container["image"] == countersign_image.reference
        statuses = running["status"]["containerStatuses"][0]
        assert statuses["ready"] is True and statuses["restartCount"] == 0, statuses
        assert statuses["imageID"].endswith(digest), statuses
        # The Service selects the ready Pod: its EndpointSlice names it, ready, on the https port.
        assert node.ready_endpoint(NAMESPACE, RELEASE, "https") == (pod_ip, 8443)
        # kube-proxy's rules for the ClusterIP: the Service's chain, DNAT to the Pod's endpoint.
        cluster_ip, cluster_port = node.cluster_ip(NAMESPACE, RELEASE, "https")
        assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(SERVICE_CIDR), cluster_ip
        deadline = time.monotonic() + 60
        while not _service_rules(rules := node.iptables_save(), cluster_ip, pod_ip):
            assert time.monotonic() < deadline, f"no kube-proxy rules for {cluster_ip}:\n{rules}"
            time.sleep(0.5)
        # The Pod's own 127.0.0.1:PORT reaches the test bed's registry (module docstring).
        node.pod_egress(NAMESPACE, running["metadata"]["name"], [registry.port])

        routed_before = _endpoint_connections(rules, pod_ip)
        port = node.service_port(NAMESPACE, RELEASE, "https")
        provider = "countersign-helm"
        ca_bundle = base64.b64encode(ca.cert_pem.bytes()).decode()
        install_provider(cluster, provider, f"https://{LOOPBACK}:{port}/v1/verify", ca_bundle)
        ns = "helm-installed"
        cluster.namespace(ns)
        document = constraint("helm-installed", provider, {"namespaces": [ns], "kinds": [PODS]})
        apply_constraint(cluster, document, "the helm-installed constraint")
        # Denied: an unsigned image, by this constraint, with the provider's reason.
        unsigned = images.unsigned
        denied = cluster.eventually(
            lambda: cluster.create(pod("unsigned", ns, unsigned.pinned)),
            lambda result: not result.ok and "[helm-installed]" in result.stderr,
            what="a denial by the helm-installed constraint",
        )
        assert DENIED in denied.stderr, denied.output
        assert f"image {unsigned.pinned} (digest {unsigned.digest})" in denied.stderr, denied.stderr
        assert "[no_signature_found]" in denied.stderr, denied.stderr
        assert cluster.kubectl("get", "pod", "unsigned", "-n", ns).returncode != 0
        # Allowed: a signed, pinned image; the Pod the kubelet runs answered it.
        allowed_before = _keys_answered(node, pod_ip, "allowed")
        # (--dry-run=server: admitted, not stored, so the node does not try to run the test image.)
        signed = yaml.safe_dump(pod("signed", ns, images.signed.pinned))
        created = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=signed)
        assert created.ok, created.output
        assert _keys_answered(node, pod_ip, "allowed") > allowed_before
        assert _keys_answered(node, pod_ip, "denied") >= 1
        # Gatekeeper's connections went to the ClusterIP, and kube-proxy's rules sent them to the Pod.
        routed = _endpoint_connections(node.iptables_save(), pod_ip) - routed_before
        print(f"kube-proxy: {routed} connection(s) to {cluster_ip}:{cluster_port} DNAT'ed to {pod_ip}:8443")
        assert routed > 0

        cluster.kubectl("delete", "countersignverifiedimages", "helm-installed").check()
        cluster.kubectl("delete", "provider", provider).check()
        cluster.kubectl("delete", "namespace", ns, "--wait=false").check()
    finally:
        _helm(cluster, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "120s")
    # The controllers and the kubelet take the Pod away: no endpoint is left behind the Service.
    cluster.eventually(
        lambda: cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "name"),
        lambda result: result.ok and not result.stdout.strip(),
        timeout=90,
        what="the release's Pods deleted",
    )


# --- configured through the Kubernetes API ---------------------------------------------------------------

SELECTOR_LABEL = "countersign.dev/e2e-kube-native"


def _status(cluster: Cluster, kind: str, name: str) -> dict[str, Any]:
    got = cluster.kubectl("get", kind, name, "-o", "json").check().json()
    status: dict[str, Any] = got.get("status") or {}
    return {"generation": got["metadata"]["generation"], **status}


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", ()) if c.get("type") == kind), {})


def _wait_status(
    cluster: Cluster, kind: str, name: str, accept: Callable[[dict[str, Any]], bool], what: str
) -> tuple[dict[str, Any], float]:
    began = time.monotonic()
    while True:
        status = _status(cluster, kind, name)
        if accept(status):
            return status, time.monotonic() - began
        assert time.monotonic() - began < 60, f"{what}: not reached in 60 s; last status {status}"
        time.sleep(0.2)


class _Namespaces:
    """A fresh labelled namespace per admission attempt: Gatekeeper caches each key (`[namespace]image`)
    for its response-cache TTL, so a new namespace means a new key, answered by Countersign's current
    configuration."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.made = cluster, 0

    def admit(self, image: str) -> KubectlResult:
        self.made += 1
        ns = f"kube-native-{self.made}"
        self.cluster.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns, "labels": {SELECTOR_LABEL: "on"}},
                }
            ]
        ).check()
        return self.cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod("p", ns, image))
        )


def test_policies_verifiers_and_keys_from_the_kubernetes_api_change_admission_without_a_restart(
    cluster: Cluster,
    node: Node,
    registry: Registry,
    images: Images,
    cosign_env: CosignEnv,
    trusted_key: KeyPair,
    countersign_image: LoadedImage,
    tmp_path: Path,
) -> None:
    """The chart's default: the watch on, its CRDs and RBAC installed, the Pod's own bound token (projected
    by the kubelet) used in-cluster through the `kubernetes` Service. Custom resources then change what
    Gatekeeper admits, within seconds, and a rotated key Secret applies without a restart."""
    cluster.namespace(NAMESPACE, ignored=True)
    ca = trustme.CA()
    client_ca = (cluster.pki.gatekeeper_cert_dir / "ca.crt").read_bytes()
    repository, _, digest = countersign_image.reference.partition("@")
    values = {
        "image": {"repository": repository, "digest": digest},
        "replicaCount": 1,
        "tolerations": [TOLERATION],
        # The file's embedded default: digest-pinned images, nothing else.
        "config": {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"pinned": {"type": "digest-pin"}},
            "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pinned"]}],
        },
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    cluster.apply(tls_secrets(ca, client_ca, LOOPBACK, f"{RELEASE}.{NAMESPACE}.svc"))
    began = time.monotonic()
    _helm(
        cluster,
        "install", RELEASE, "charts/countersign", "--namespace", NAMESPACE,
        "--values", str(tmp_path / "values.yaml"), "--wait", "--timeout", "180s",
    )  # fmt: skip
    print(f"\nhelm install (kubernetes.enabled): Available after {time.monotonic() - began:.1f}s")
    provider = "countersign-kube-native"
    outside = contextlib.ExitStack()
    try:
        # Ready means the first composition (file + resources) is served: the API was reached in-cluster.
        running = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json").check().json()["items"][0]
        pod_name, pod_uid = running["metadata"]["name"], running["metadata"]["uid"]
        assert running["spec"]["automountServiceAccountToken"] is False
        node.pod_egress(NAMESPACE, pod_name, [registry.port])
        port = node.service_port(NAMESPACE, RELEASE, "https")
        ca_bundle = base64.b64encode(ca.cert_pem.bytes()).decode()
        install_provider(cluster, provider, f"https://{LOOPBACK}:{port}/v1/verify", ca_bundle)
        match = {"namespaceSelector": {"matchLabels": {SELECTOR_LABEL: "on"}}, "kinds": [PODS]}
        apply_constraint(cluster, constraint("kube-native", provider, match), "the kube-native constraint")
        namespaces = _Namespaces(cluster)
        # The session's shipped constraint (another provider) stays out of these namespaces.
        outside.enter_context(outside_session_constraint(cluster, ["kube-native-*"]))
        # The file's default alone: a pinned, unsigned image is admitted (once Gatekeeper enforces).
        cluster.eventually(
            lambda: namespaces.admit(images.unsigned.pinned),
            lambda result: result.ok,
            what="the unsigned image admitted under the file's digest-pin default",
        )

        # A Verifier whose key comes from a Secret, and a ClusterImagePolicy that replaces the file's
        # policy of the same name: unsigned images are denied from then on.
        cluster.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "cosign-keys", "namespace": NAMESPACE},
                    "stringData": {"cosign.pub": trusted_key.public_pem.decode()},
                },
                {
                    "apiVersion": "countersign.dev/v1alpha1",
                    "kind": "Verifier",
                    "metadata": {"name": "cosign"},
                    "spec": {
                        "type": "cosign",
                        "options": {
                            "keys": [{"name": "release", "path": "cosign.pub"}],
                            "transparencyLog": "skip",
                        },
                        "files": {
                            "cosign.pub": {"secretKeyRef": {"name": "cosign-keys", "key": "cosign.pub"}}
                        },
                    },
                },
            ]
        ).check()
        applied = time.monotonic()
        cluster.apply(
            [
                {
                    "apiVersion": "countersign.dev/v1alpha1",
                    "kind": "ClusterImagePolicy",
                    "metadata": {"name": "default"},
                    "spec": {"scopes": ["*"], "allOf": ["cosign", "pinned"]},
                }
            ]
        ).check()
        status, _ = _wait_status(
            cluster,
            "clusterimagepolicy",
            "default",
            lambda s: _condition(s, "Ready").get("status") == "True" and s.get("servingGeneration") == 1,
            what="ClusterImagePolicy default Ready",
        )
        ready_after = time.monotonic() - applied
        assert status["summary"] == "all of [cosign, pinned]", status
        denied = namespaces.admit(images.unsigned.pinned)
        print(f"ClusterImagePolicy: served after {ready_after:.2f}s; the next admission denied it")
        assert ready_after < 10, ready_after
        assert not denied.ok and DENIED in denied.stderr, denied.output
        assert "[no_signature_found]" in denied.stderr, denied.stderr
        assert namespaces.admit(images.signed.pinned).ok
        table = cluster.kubectl("get", "clusterimagepolicies").check().stdout
        assert table.split("\n")[0].split() == ["NAME", "READY", "POLICY", "SCOPES", "AGE"], table
        assert "all of [cosign, pinned]" in table, table

        # An invalid edit: Invalid at the field, while generation 1 keeps serving.
        cluster.apply(
            [
                {
                    "apiVersion": "countersign.dev/v1alpha1",
                    "kind": "ClusterImagePolicy",
                    "metadata": {"name": "default"},
                    "spec": {"scopes": ["*"], "allOf": ["cosign", "nonexistent"]},
                }
            ]
        ).check()
        status, _ = _wait_status(
            cluster,
            "clusterimagepolicy",
            "default",
            lambda s: s.get("observedGeneration") == 2,
            what="generation 2 examined",
        )
        invalid = _condition(status, "Invalid")
        assert invalid.get("status") == "True", status
        assert "spec.allOf[1]" in invalid["message"] and "nonexistent" in invalid["message"], invalid
        assert _condition(status, "Ready").get("status") == "False", status
        assert status["servingGeneration"] == 1, status
        denied = namespaces.admit(images.unsigned.pinned)
        assert not denied.ok and "[no_signature_found]" in denied.stderr, denied.output
        assert namespaces.admit(images.signed.pinned).ok

        # The key Secret rotated to another key: images signed by the old one are denied, those signed
        # by the new one admitted, by the same Pod (no restart).
        stranger = (cosign_env.keys_dir / "stranger.pub").read_text()
        cluster.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "cosign-keys", "namespace": NAMESPACE},
                    "stringData": {"cosign.pub": stranger},
                }
            ]
        ).check()
        rotated = time.monotonic()
        while (result := namespaces.admit(images.signed.pinned)).ok:
            assert time.monotonic() - rotated < 30, "the rotated key was not applied within 30 s"
            time.sleep(0.5)
        print(f"rotated key Secret: applied within {time.monotonic() - rotated:.2f}s")
        assert "[untrusted_key]" in result.stderr, result.stderr
        assert namespaces.admit(images.untrusted.pinned).ok
        after = cluster.kubectl("get", "pod", pod_name, "-n", NAMESPACE, "-o", "json").check().json()
        assert after["metadata"]["uid"] == pod_uid
        assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    finally:
        outside.close()
        cluster.kubectl("delete", "countersignverifiedimages", "kube-native", "--ignore-not-found")
        cluster.kubectl("delete", "provider", provider, "--ignore-not-found")
        cluster.kubectl("delete", "clusterimagepolicies,verifiers", "--all")
        _helm(cluster, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "120s")
        cluster.kubectl("delete", "secret", "-n", NAMESPACE, "--all")
