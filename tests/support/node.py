"""A real node for the end-to-end test bed: containerd, a kubelet, kube-controller-manager and kube-scheduler
joined to the test bed's kube-apiserver (tests/support/kube.py), so that ``helm install`` creates a
Deployment that the controllers turn into Pods and the kubelet runs in containerd.

What runs, and where:

* kubelet, kube-controller-manager and kube-scheduler are built from the same pinned module as
  kube-apiserver (``tools/install.sh node``); containerd 1.6 and runc are Debian's
  (tools/system-packages.sh). The sandbox ("pause") image is the project's own ``pause`` program
  (tools/kube/cmd/pause), packed here into an OCI archive and imported: no image is ever pulled.
* The node lives in a network namespace of its own (``ip netns add``: loopback only, nothing reaches past
  the machine) where containerd and the kubelet run (``nsenter --net``: the same mount namespace as the
  test bed, so the kubelet's Secret and ConfigMap volumes are what containerd mounts). The node's address,
  :data:`NODE_IP`, is on that namespace's loopback interface: the kubelet refuses a 127.0.0.0/8 node
  address. The kubelet reaches the apiserver through an egress forward (the node's 127.0.0.1:PORT is the
  host's 127.0.0.1:PORT); :meth:`Node.egress` adds more (the test bed's registry).
* The Pod network: Debian's standard CNI plugins (bridge, host-local, loopback) configured for
  containerd's CRI, all inside the node's namespace: a bridge ``cs0`` with :data:`POD_GATEWAY`, Pods on
  :data:`POD_CIDR` (which the controller-manager's node-ipam controller also allocates to the node as its
  ``spec.podCIDR``), no masquerade (the namespace has no interface to masquerade to). A Pod gets an
  address and a network namespace of its own, as in any cluster.
* kube-proxy, iptables mode (Debian's iptables), in the node's namespace with the apiserver's service
  range :data:`SERVICE_CIDR` (tests/support/kube.py's ``--service-cluster-ip-range``) routed to the
  bridge there: a connection the node opens to a ClusterIP is DNAT'ed by kube-proxy's rules to a ready
  endpoint. :meth:`Node.service_port` opens a host port of 127.0.0.1 (Gatekeeper runs out of the cluster,
  on the host) whose every connection is a new connection, from the node's namespace, to the Service's
  ClusterIP:port: kube-proxy's rules choose the Pod.
* The test bed's registry listens on the host's 127.0.0.1 and the image references name it so:
  :meth:`Node.pod_egress` makes a Pod's own 127.0.0.1:PORT reach the host's 127.0.0.1:PORT (a listener in
  the Pod's network namespace, forwarded by this process), where a real cluster would route to a registry.
* The kubelet authenticates with a client certificate from the cluster CA (``system:node:<name>``,
  group ``system:nodes``), bound to the ``system:node`` ClusterRole (the apiserver runs RBAC only, no Node
  authorizer). The controller-manager and the scheduler use the admin kubeconfig. Leader election is off.
* This host's facts: cgroup v1/hybrid with a PID 1 that is not systemd (``cgroupDriver: cgroupfs``,
  ``failCgroupV1: false``, a cgroup root of the node's own, removed at the end), negative oom_score_adj
  is forbidden (containerd's ``restrict_oom_score_adj``), no swap, eviction and image garbage collection
  off (the imported images cannot be pulled again).

:meth:`Node.stop` deletes the Pods through the kubelet, then kills whatever containerd still runs,
stops every daemon, unmounts what is left under the node's directory, removes the cgroups and the
network namespace. Needs root.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import yaml

from tests.support.daemons import Daemon
from tests.support.kube import Cluster, _get
from tests.support.pod import PodNetwork, _enter_netns, pipe
from tests.support.registries import LOOPBACK, free_port
from tests.support.tools import find_tool, in_ci, tools_bin

__all__ = [
    "NODE_IP",
    "NODE_NAME",
    "NODE_TAINT",
    "NODE_TOOLS",
    "POD_CIDR",
    "POD_GATEWAY",
    "SERVICE_CIDR",
    "TOLERATION",
    "Node",
    "NodeNetwork",
    "require_node",
]

NODE_NAME = "countersign-node"
#: The node's InternalIP (and so its hostNetwork Pods' IP): on the node namespace's loopback interface.
NODE_IP = "10.255.0.1"
NODE_TOOLS = ("kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy", "pause")
#: The node's Pod network (the bridge's subnet, and the node's spec.podCIDR) and its gateway on the bridge.
POD_CIDR = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
BRIDGE = "cs0"
#: The apiserver's --service-cluster-ip-range (tests/support/kube.py).
SERVICE_CIDR = "10.96.0.0/24"

PAUSE_IMAGE = "localhost/countersign-test/pause:1"
#: The node's taint (NoSchedule): Pods run on it only with :data:`TOLERATION` (the chart's tolerations).
NODE_TAINT = "countersign.dev/test-node"
TOLERATION = {"key": NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}
_CGROUP_FS = Path("/sys/fs/cgroup")


def require_node() -> None:
    """Fail (CI=true) or skip unless the node's tools and the host's facilities are there."""
    import pytest

    reason = None
    missing = [name for name in NODE_TOOLS if find_tool(name) is None or not (tools_bin() / name).exists()]
    if os.geteuid() != 0:
        reason = "a node (containerd, kubelet, network namespaces) needs root"
    elif missing:
        reason = f"{', '.join(missing)} not installed: run `tools/install.sh node` (or `make tools`)"
    elif not all(shutil.which(name) for name in ("iptables", "iptables-save", "iptables-restore")):
        reason = "iptables (kube-proxy's) not installed: run tools/system-packages.sh"
    elif not Path("/usr/lib/cni/bridge").exists():
        reason = "the CNI plugins are not installed: run tools/system-packages.sh"
    if reason is not None:
        if in_ci():
            pytest.fail(f"{reason} (CI=true: the node tests do not skip)", pytrace=False)
        pytest.skip(reason)


class NodeNetwork(PodNetwork):
    """The node's network namespace: loopback up, with :data:`NODE_IP` on it too; the Pod network's
    bridge (:data:`POD_GATEWAY` on :data:`POD_CIDR`, which the CNI bridge plugin then uses as it is), and
    the service range routed to the bridge (kube-proxy's rules DNAT what is sent there; this host's kernel
    has no dummy interfaces)."""

    def __init__(self) -> None:
        super().__init__(f"countersign-node-{os.urandom(4).hex()}")
        self._pod_threads: list[ThreadPoolExecutor] = []
        prefix = POD_CIDR.rsplit("/", 1)[1]
        for command in (
            ["addr", "add", f"{NODE_IP}/32", "dev", "lo"],
            ["link", "add", BRIDGE, "type", "bridge"],
            ["addr", "add", f"{POD_GATEWAY}/{prefix}", "dev", BRIDGE],
            ["link", "set", BRIDGE, "up"],
            ["route", "add", SERVICE_CIDR, "dev", BRIDGE],
        ):
            done = subprocess.run(["ip", "-n", self.name, *command], capture_output=True, text=True)
            if done.returncode != 0:
                self.delete()
                raise RuntimeError(f"ip {' '.join(command)}: {done.stderr.strip()}")

    def service(self, host_port: int, target: tuple[str, int]) -> None:
        """The host's 127.0.0.1:host_port forwards each new connection to ``target`` (a ClusterIP and
        port), connecting from the node's network namespace."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = await self._loop.run_in_executor(self._inside, _nonblocking_socket)
            try:
                await self._loop.sock_connect(sock, target)
            except OSError:
                sock.close()
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        self._services[host_port] = self._run(
            lambda: asyncio.start_server(handle, LOOPBACK, host_port, reuse_address=True)
        )

    def egress_in(self, netns: str, ports: Sequence[int]) -> None:
        """The 127.0.0.1:PORT of the network namespace at ``netns`` (a Pod's) forwards to the host's
        127.0.0.1:PORT, for each port (closed with this network)."""
        inside = ThreadPoolExecutor(1, f"{self.name}-pod", initializer=_enter_netns, initargs=(netns,))
        self._pod_threads.append(inside)
        self.egress(ports, lambda: inside.submit(socket.socket, socket.AF_INET, socket.SOCK_STREAM).result())

    def delete(self) -> None:
        super().delete()
        for inside in self._pod_threads:
            inside.shutdown()


def _nonblocking_socket() -> Any:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


def _tar_bytes(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A reproducible tar of ``files`` (name -> (content, mode)), owned by root, mtime 0."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pause_archive(binary: Path, out: Path, tag: str) -> None:
    """An OCI archive (what ``ctr images import`` reads) of one image: ``binary`` as /pause, its
    entrypoint, user 65535, tagged ``tag`` (org.opencontainers.image.ref.name)."""
    layer = _tar_bytes({"pause": (binary.read_bytes(), 0o755)})
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        },
        sort_keys=True,
    ).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        },
        sort_keys=True,
    ).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        }
    ).encode()
    files = {
        "oci-layout": (b'{"imageLayoutVersion":"1.0.0"}', 0o644),
        "index.json": (index, 0o644),
        **{
            f"blobs/sha256/{digest[7:]}": (blob, 0o644)
            for digest, blob in ((layer_digest, layer), (config_digest, config), (manifest_digest, manifest))
        },
    }
    out.write_bytes(_tar_bytes(files))


def _layout_archive(layout: Path, out: Path) -> None:
    """An OCI image layout directory as an archive ``ctr images import`` reads."""
    with tarfile.open(out, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)


class Node:
    """One node (containerd + kubelet in :class:`NodeNetwork`) and the controllers, for ``cluster``."""

    def __init__(self, cluster: Cluster, directory: Path) -> None:
        self.cluster, self.directory = cluster, directory
        directory.mkdir(parents=True, exist_ok=True)
        self.id = os.urandom(4).hex()
        self.run_dir = Path("/run/countersign-test") / f"node-{self.id}"
        self.socket = self.run_dir / "containerd.sock"
        self.cgroup_root = f"/countersign-node-{self.id}"
        self.network: NodeNetwork | None = None
        self.daemons: list[Daemon] = []
        self.timings: dict[str, float] = {}
        self._service_ports: list[int] = []

    # --- lifecycle ---------------------------------------------------------------------------------------

    @classmethod
    def start(cls, cluster: Cluster, directory: Path) -> Self:
        node = cls(cluster, directory)
        try:
            node._start()
        except BaseException:
            node.stop()
            raise
        return node

    def _timed(self, name: str, began: float) -> None:
        self.timings[name] = time.monotonic() - began

    def _start(self) -> None:
        began = time.monotonic()
        self.network = NodeNetwork()
        self.network.egress([self.cluster.apiserver_port])
        self._kubernetes_service()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._cgroups("create")
        self._authorize_kubelet()
        containerd = self._containerd()
        self.daemons.append(containerd)
        containerd.start()
        self._timed("containerd", began)
        began = time.monotonic()
        pause = self.directory / "pause.tar"
        pause_archive(tools_bin() / "pause", pause, PAUSE_IMAGE.rsplit(":", 1)[1])
        self.ctr("images", "import", "--base-name", PAUSE_IMAGE.rsplit(":", 1)[0], str(pause))
        self._timed("pause image", began)
        began = time.monotonic()
        for daemon in (self._controller_manager(), self._scheduler(), self._kubelet(), self._kube_proxy()):
            self.daemons.append(daemon)
            daemon.start()
        self._timed("controllers and kubelet", began)
        began = time.monotonic()
        self._wait_node_ready()
        self._timed("node ready", began)

    def _kubernetes_service(self) -> None:
        """Pods reach the API server as in any cluster: through the `kubernetes` Service's ClusterIP
        (KUBERNETES_SERVICE_HOST, which the kubelet sets), DNAT'ed by kube-proxy to the endpoint this
        EndpointSlice names, :data:`NODE_IP`:apiserver-port. The API server runs with
        ``--endpoint-reconciler-type=none`` on the host's 127.0.0.1, so the slice is written here and the
        node's NODE_IP:port forwards to the host's 127.0.0.1:port (the one part that is not real)."""
        assert self.network is not None
        port = self.cluster.apiserver_port
        self.network.egress([port], address=NODE_IP)
        self.cluster.apply(
            [
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": "kubernetes",
                        "namespace": "default",
                        "labels": {"kubernetes.io/service-name": "kubernetes"},
                    },
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                }
            ]
        ).check()

    def stop(self) -> None:
        """Delete the Pods (the kubelet stops their containers), then everything else; idempotent."""
        kubelet = next((d for d in self.daemons if d.name == "kubelet"), None)
        if kubelet is not None and kubelet.running:
            with contextlib.suppress(Exception):
                self._delete_pods()
        for daemon in reversed(self.daemons):
            if daemon.name != "containerd":
                with contextlib.suppress(Exception):
                    daemon.stop()
        containerd = next((d for d in self.daemons if d.name == "containerd"), None)
        if containerd is not None and containerd.running:
            with contextlib.suppress(Exception):
                self._remove_containers()
            containerd.stop()
        self.daemons.clear()
        self._unmount()
        with contextlib.suppress(Exception):
            self._cgroups("remove")
        if self.network is not None:
            self.network.delete()
            self.network = None
        with contextlib.suppress(OSError):
            for path in sorted(self.run_dir.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
            self.run_dir.rmdir()

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {d.name} ({d.log_file}):\n{d.log_tail(lines)}" for d in self.daemons)

    # --- what tests use ----------------------------------------------------------------------------------

    def ctr(self, *args: str, timeout: float = 300) -> str:
        """``ctr`` against the node's containerd, namespace k8s.io (the CRI's); its output."""
        done = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def import_image(self, layout: Path, name: str) -> None:
        """Import the OCI layout's image into the node's containerd as ``name:<ref.name>`` (and by its
        digest, which the CRI indexes): what a node that pulled it would hold."""
        archive = self.directory / f"{layout.name}.tar"
        _layout_archive(layout, archive)
        try:
            self.ctr("images", "import", "--base-name", name, str(archive))
        finally:
            archive.unlink()
        # A pull by digest leaves the image named NAME@DIGEST too; the CRI finds digest references by
        # that name.
        for manifest in json.loads((layout / "index.json").read_text())["manifests"]:
            tag = manifest.get("annotations", {}).get("org.opencontainers.image.ref.name")
            if tag:
                self.ctr("images", "tag", "--force", f"{name}:{tag}", f"{name}@{manifest['digest']}")

    def egress(self, ports: Sequence[int]) -> None:
        """The node's (and its hostNetwork Pods') 127.0.0.1:PORT reaches the host's, for each port."""
        assert self.network is not None
        self.network.egress(ports)

    def pod_egress(self, namespace: str, pod: str, ports: Sequence[int]) -> None:
        """The running Pod's own 127.0.0.1:PORT reaches the host's, for each port (module docstring)."""
        assert self.network is not None
        self.network.egress_in(self.pod_netns(namespace, pod), ports)

    def pod_netns(self, namespace: str, pod: str) -> str:
        """The path of the network namespace containerd's CRI made for the Pod's sandbox."""
        for container in self.ctr("containers", "list", "-q", timeout=30).split():
            info = json.loads(self.ctr("containers", "info", container, timeout=30))
            labels = info.get("Labels") or {}
            if (
                labels.get("io.cri-containerd.kind") == "sandbox"
                and labels.get("io.kubernetes.pod.namespace") == namespace
                and labels.get("io.kubernetes.pod.name") == pod
            ):
                for ns in info["Spec"]["linux"]["namespaces"]:
                    if ns["type"] == "network" and ns.get("path"):
                        return str(ns["path"])
        raise AssertionError(f"no sandbox with a network namespace for Pod {namespace}/{pod}")

    def cluster_ip(self, namespace: str, service: str, port_name: str) -> tuple[str, int]:
        """The Service's ClusterIP and the port named ``port_name``."""
        spec = self.cluster.kubectl("get", "service", "-n", namespace, service, "-o", "json").check().json()
        spec = spec["spec"]
        ports = [int(p["port"]) for p in spec["ports"] if p.get("name") == port_name]
        assert ports, spec
        return str(spec["clusterIP"]), ports[0]

    def service_port(self, namespace: str, service: str, port_name: str) -> int:
        """A host port of 127.0.0.1 forwarding each connection to the Service's ClusterIP:port from the
        node's network namespace, where kube-proxy's rules choose the endpoint (module docstring)."""
        assert self.network is not None
        host_port = free_port()
        self.network.service(host_port, self.cluster_ip(namespace, service, port_name))
        self._service_ports.append(host_port)
        return host_port

    def iptables_save(self) -> str:
        """``iptables-save --counters`` of the node's network namespace (kube-proxy's rules, each line
        with its [packets:bytes])."""
        done = subprocess.run(
            self._in_node(["iptables-save", "--counters"]),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def ready_endpoint(self, namespace: str, service: str, port_name: str) -> tuple[str, int] | None:
        """The first ready endpoint (address, port) of the Service's EndpointSlices, or None."""
        for item in self.endpoint_slices(namespace, service):
            ports = [p["port"] for p in item.get("ports") or [] if p.get("name") == port_name]
            for endpoint in item.get("endpoints") or []:
                if ports and endpoint.get("conditions", {}).get("ready"):
                    return str(endpoint["addresses"][0]), int(ports[0])
        return None

    def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        selector = urllib.parse.quote(f"kubernetes.io/service-name={service}")
        url = (
            f"https://{LOOPBACK}:{self.cluster.apiserver_port}/apis/discovery.k8s.io/v1/namespaces/"
            f"{namespace}/endpointslices?labelSelector={selector}"
        )
        _, body = _get(url, self.cluster.pki.admin_context(), timeout=5)
        items: list[dict[str, Any]] = json.loads(body)["items"]
        return items

    def http_get(self, host: str, port: int, path: str) -> tuple[int, str]:
        """GET http://host:port/path from inside the node's network namespace."""
        import http.client

        assert self.network is not None
        sock = self.network._inside.submit(_blocking_socket).result()
        sock.settimeout(5)
        try:
            sock.connect((host, port))
            connection = http.client.HTTPConnection(host, port, timeout=5)
            connection.sock = sock
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            sock.close()

    # --- components --------------------------------------------------------------------------------------

    def _in_node(self, command: list[str]) -> list[str]:
        assert self.network is not None
        return ["nsenter", f"--net={self.network.path}", "--", *command]

    def _containerd(self) -> Daemon:
        d = self.directory / "containerd"
        cni = d / "cni"
        cni.mkdir(parents=True, exist_ok=True)
        # The Pod network (module docstring): a veth per Pod on the node's bridge, an address from
        # POD_CIDR, the bridge as the default gateway; no masquerade.
        (cni / "10-bridge.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "countersign-node",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR, "gateway": POD_GATEWAY}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(d / "ipam"),
                            },
                        },
                    ],
                }
            )
        )
        config = f"""version = 2
root = "{d / "root"}"
state = "{self.run_dir / "state"}"
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This host forbids a negative oom_score_adj (runc fails otherwise).
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        # runc's state under the node's run directory, not the shared /run/containerd/runc.
        Root = "{self.run_dir / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"""
        (d / "config.toml").write_text(config)

        def ready() -> bool:
            self.ctr("version", timeout=5)
            return True

        return Daemon(
            "containerd",
            self._in_node(["containerd", "--config", str(d / "config.toml"), "--log-level", "warn"]),
            log_file=self.directory / "containerd.log",
            ready=ready,
            ready_timeout=60,
        )

    def _authorize_kubelet(self) -> None:
        pki = self.cluster.pki
        cert = pki.cluster_ca.issue_cert(
            NODE_NAME, common_name=f"system:node:{NODE_NAME}", organization_name="system:nodes"
        )
        key_file, cert_file = self.directory / "kubelet-client.key", self.directory / "kubelet-client.crt"
        cert.private_key_pem.write_to_path(str(key_file))
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {
                        "server": f"https://{LOOPBACK}:{self.cluster.apiserver_port}",
                        "certificate-authority": str(pki.cluster_ca_file),
                    },
                }
            ],
            "users": [
                {"name": "node", "user": {"client-certificate": str(cert_file), "client-key": str(key_file)}}
            ],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "node"}}],
            "current-context": "e2e",
        }
        (self.directory / "kubelet.kubeconfig").write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        self.cluster.apply(
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": f"countersign-e2e-{NODE_NAME}"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "system:node",
                    },
                    "subjects": [
                        {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "User",
                            "name": f"system:node:{NODE_NAME}",
                        }
                    ],
                }
            ]
        )

    def _kubelet(self) -> Daemon:
        d = self.directory / "kubelet"
        d.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This host: cgroup v1 (hybrid), PID 1 is not systemd.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "cgroupsPerQOS": True,
            "enforceNodeAllocatable": [],
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            # No kubelet server (no logs/exec through the apiserver): nothing listens.
            "enableServer": False,
            "address": LOOPBACK,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "failSwapOn": False,
            "localStorageCapacityIsolation": False,
            "resolvConf": "",
            "podLogsDir": str(d / "pod-logs"),
            "volumePluginDir": str(d / "volume-plugins"),
            # The imported images cannot be pulled again: no image garbage collection; eviction only at
            # the brink.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            # Only Pods that tolerate it run here: not the test bed's other Pods (stored, never meant to run).
            "registerWithTaints": [{"key": NODE_TAINT, "effect": "NoSchedule"}],
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "5s",
        }
        (d / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        command = [
            str(tools_bin() / "kubelet"),
            f"--config={d / 'config.yaml'}",
            f"--kubeconfig={self.directory / 'kubelet.kubeconfig'}",
            f"--root-dir={d / 'root'}",
            f"--cert-dir={d / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ]
        return Daemon(
            "kubelet",
            self._in_node(command),
            log_file=self.directory / "kubelet.log",
            ready=self._node_exists,
            ready_timeout=90,
        )

    def _node_exists(self) -> bool:
        return self.cluster.kubectl("get", "node", NODE_NAME).ok

    def _serving(self, name: str, extra: list[str]) -> Daemon:
        port = free_port()
        kubeconfig = str(self.cluster.kubeconfig)
        command = [
            str(tools_bin() / name),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={port}",
            "--leader-elect=false",
            "--v=1",
            *extra,
        ]
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE

        def ready() -> bool:
            status, body = _get(f"https://{LOOPBACK}:{port}/healthz", insecure)
            return status == 200 and body.strip() == b"ok"

        return Daemon(name, command, log_file=self.directory / f"{name}.log", ready=ready, ready_timeout=90)

    def _controller_manager(self) -> Daemon:
        controllers = [
            "deployment-controller",
            "replicaset-controller",
            "endpointslice-controller",
            "garbage-collector-controller",
            "node-lifecycle-controller",
            "namespace-controller",
            "node-ipam-controller",
            "root-ca-certificate-publisher-controller",
        ]
        cert_dir = self.directory / "kube-controller-manager"
        return self._serving(
            "kube-controller-manager",
            [
                f"--controllers={','.join(controllers)}",
                f"--cert-dir={cert_dir}",
                # The node's spec.podCIDR: POD_CIDR, the one range of this one-node cluster.
                "--allocate-node-cidrs=true",
                f"--cluster-cidr={POD_CIDR}",
                f"--node-cidr-mask-size={POD_CIDR.rsplit('/', 1)[1]}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # The kube-root-ca.crt ConfigMap of every namespace: the CA a Pod's projected service
                # account token volume carries.
                f"--root-ca-file={self.cluster.pki.cluster_ca_file}",
            ],
        )

    def _kube_proxy(self) -> Daemon:
        """kube-proxy in iptables mode in the node's namespace; ready once its health check answers 200
        (it has synced its rules with the apiserver's Services and EndpointSlices)."""
        d = self.directory / "kube-proxy"
        d.mkdir(parents=True, exist_ok=True)
        healthz, metrics = free_port(), free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.cluster.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "detectLocalMode": "ClusterCIDR",
            "healthzBindAddress": f"{LOOPBACK}:{healthz}",
            "metricsBindAddress": f"{LOOPBACK}:{metrics}",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # This host forbids a negative oom_score_adj; conntrack's sysctls are the host's, left alone.
            "oomScoreAdj": 0,
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
        }
        (d / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

        def ready() -> bool:
            status, _ = self.http_get(LOOPBACK, healthz, "/healthz")
            return status == 200

        return Daemon(
            "kube-proxy",
            self._in_node([str(tools_bin() / "kube-proxy"), f"--config={d / 'config.yaml'}", "--v=1"]),
            log_file=self.directory / "kube-proxy.log",
            ready=ready,
            ready_timeout=90,
        )

    def _scheduler(self) -> Daemon:
        return self._serving("kube-scheduler", [])

    # --- waiting and cleaning ----------------------------------------------------------------------------

    def _wait_node_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            result = self.cluster.kubectl("get", "node", NODE_NAME, "-o", "json")
            if result.ok:
                node = result.json()
                ready = any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in node["status"].get("conditions", [])
                )
                blocking = [
                    t
                    for t in node["spec"].get("taints", [])
                    if t["effect"] != "PreferNoSchedule" and t["key"] != NODE_TAINT
                ]
                if ready and not blocking:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"node {NODE_NAME} not ready within {timeout}s:\n{result.output}\n{self.logs()}"
                )
            time.sleep(0.5)

    def _delete_pods(self) -> None:
        self.cluster.kubectl(
            "delete", "pods", "--all-namespaces", "--all", f"--field-selector=spec.nodeName={NODE_NAME}",
            "--wait=true", "--timeout=60s", timeout=90,
        )  # fmt: skip

    def _remove_containers(self) -> None:
        for line in self.ctr("tasks", "list", "-q", timeout=30).split():
            with contextlib.suppress(RuntimeError):
                self.ctr("tasks", "kill", "--signal", "SIGKILL", line, timeout=30)
        time.sleep(0.5)
        for line in self.ctr("tasks", "list", "-q", timeout=30).split():
            with contextlib.suppress(RuntimeError):
                self.ctr("tasks", "delete", "--force", line, timeout=30)
        for line in self.ctr("containers", "list", "-q", timeout=30).split():
            with contextlib.suppress(RuntimeError):
                self.ctr("containers", "delete", line, timeout=30)

    def _unmount(self) -> None:
        """Unmount whatever the kubelet or containerd left mounted under the node's directories."""
        prefixes = (f"{self.directory}/", f"{self.run_dir}/")
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefixes):
                mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def _cgroups(self, action: str) -> None:
        """Create the node's cgroup root in every v1 hierarchy (the kubelet requires it to exist), or
        remove it with everything below (once no process is left in it)."""
        for hierarchy in sorted(_CGROUP_FS.iterdir()):
            root = hierarchy / self.cgroup_root.lstrip("/")
            if action == "create":
                if (hierarchy / "cgroup.procs").exists():
                    root.mkdir(exist_ok=True)
            elif root.is_dir():
                for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        path.rmdir()
                with contextlib.suppress(OSError):
                    root.rmdir()


def _blocking_socket() -> Any:
    import socket

    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
