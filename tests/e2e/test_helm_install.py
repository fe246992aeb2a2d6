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
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.e2e.conftest import LoadedImage
from tests.support.admission import (
    REPO_ROOT,
    TEMPLATES,
    Images,
    chart_values,
    pod,
    tls_secrets,
)
from tests.support.cosign import KeyPair
from tests.support.kube import Cluster, manifests
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


def _constraint(name: str, namespace: str, provider: str) -> dict[str, Any]:
    return {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": "CountersignVerifiedImages",
        "metadata": {"name": name},
        "spec": {
            "match": {"namespaces": [namespace], "kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]},
            "parameters": {"provider": provider},
        },
    }


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
        cluster.apply(manifests([TEMPLATES / "verified-images-template.yaml"]))
        cluster.apply(
            [
                {
                    "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
                    "kind": "Provider",
                    "metadata": {"name": provider},
                    "spec": {
                        "url": f"https://{LOOPBACK}:{port}/v1/verify",
                        "timeout": 3,
                        "caBundle": base64.b64encode(ca.cert_pem.bytes()).decode(),
                    },
                }
            ]
        )
        cluster.eventually(
            lambda: cluster.kubectl("get", "crd", "countersignverifiedimages.constraints.gatekeeper.sh"),
            lambda result: result.ok,
            what="the CountersignVerifiedImages CRD",
        )
        ns = "helm-installed"
        cluster.namespace(ns)
        constraint = _constraint("helm-installed", ns, provider)
        cluster.eventually(
            lambda: cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(constraint)),
            lambda result: result.ok,
            what="the helm-installed constraint",
        )
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
