"""A Kubernetes control plane with Gatekeeper, on 127.0.0.1, without containers: the end-to-end test bed.

* etcd and kube-apiserver, built by ``tools/install.sh kube`` from the wrapper module in ``tools/kube``
  (the versions Gatekeeper's release is built against), listening on free loopback ports;
* Gatekeeper's manager (``tools/install.sh gatekeeper``), run out of cluster with
  ``--disable-cert-rotation``: its webhook certificate comes from this module's PKI and doubles as the
  client certificate it presents to external-data providers (Countersign's mutual TLS);
* webhook configurations pointing the apiserver at Gatekeeper's 127.0.0.1 port;
* ``kubectl`` (built with the apiserver) with an admin kubeconfig;
* on demand (:meth:`Cluster.start_audit`), Gatekeeper's audit as a second manager process, as Gatekeeper's
  chart runs ``gatekeeper-audit`` as a Deployment of its own.

No controller-manager, scheduler or kubelet runs: admission is what is tested, and a Pod or Deployment
that admission lets through is simply stored. The ServiceAccount admission plugin is off because no
controller creates the ``default`` service accounts.

Usage::

    cluster = Cluster.start(tmp_path)          # etcd, apiserver, CRDs, Gatekeeper, webhooks
    cluster.kubectl("apply", "-f", "-", input=yaml_text)
    cluster.stop()
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.daemons import Daemon
from tests.support.registries import LOOPBACK, free_port
from tests.support.tools import ensure_tool, tools_dir

__all__ = [
    "GATEKEEPER_NAMESPACE",
    "KUBERNETES_SERVICE_IP",
    "AuditSettings",
    "Cluster",
    "ClusterPKI",
    "KubectlResult",
    "gatekeeper_crds",
]

GATEKEEPER_NAMESPACE = "gatekeeper-system"
#: The first address of --service-cluster-ip-range: the `kubernetes` Service's ClusterIP.
KUBERNETES_SERVICE_IP = "10.96.0.1"
GATEKEEPER_POD = "gatekeeper-e2e"
AUDIT_POD = "gatekeeper-audit-e2e"
IGNORE_LABEL = "admission.gatekeeper.sh/ignore"
# The workload resources whose admission the webhooks see (Gatekeeper's chart matches everything; the
# test bed narrows it to what the templates and mutators act on).
_WORKLOADS: list[dict[str, Any]] = [
    # pods/ephemeralcontainers: debug containers (`kubectl debug`), as in Gatekeeper's chart defaults.
    {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "pods/ephemeralcontainers"]},
    {
        "apiGroups": ["apps"],
        "apiVersions": ["v1"],
        "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
    },
    {"apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["jobs", "cronjobs"]},
]


def gatekeeper_crds() -> Path:
    """The CustomResourceDefinitions of the pinned Gatekeeper release (copied by ``tools/install.sh``)."""
    return tools_dir() / "gatekeeper-crds"


def _no_proxy_opener(context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    with _no_proxy_opener(context).open(url, timeout=timeout) as response:
        return int(response.status), bytes(response.read())


@dataclass(frozen=True)
class ClusterPKI:
    """Certificates and keys of the test bed, written under ``directory``.

    * the cluster CA signs the apiserver's serving certificate and the admin client certificate
      (``O=system:masters``);
    * the Gatekeeper CA signs Gatekeeper's webhook certificate (``cert_dir``: ``ca.crt``, ``tls.crt``,
      ``tls.key``, as in the ``gatekeeper-webhook-server-cert`` secret), valid for server and client auth;
    * the service-account key pair signs service-account tokens (unused, but required).
    """

    directory: Path
    cluster_ca: trustme.CA
    gatekeeper_ca: trustme.CA

    @classmethod
    def create(cls, directory: Path) -> Self:
        directory.mkdir(parents=True, exist_ok=True)
        cluster_ca, gatekeeper_ca = trustme.CA(), trustme.CA()
        pki = cls(directory, cluster_ca, gatekeeper_ca)
        cluster_ca.cert_pem.write_to_path(str(pki.cluster_ca_file))
        serving = cluster_ca.issue_cert(
            # KUBERNETES_SERVICE_IP: the `kubernetes` Service's ClusterIP, which in-cluster clients dial.
            LOOPBACK,
            "localhost",
            "kubernetes.default.svc",
            KUBERNETES_SERVICE_IP,
            common_name="kube-apiserver",
        )
        serving.private_key_pem.write_to_path(str(directory / "apiserver.key"))
        serving.cert_chain_pems[0].write_to_path(str(directory / "apiserver.crt"))
        admin = cluster_ca.issue_cert(
            "admin", common_name="countersign-e2e-admin", organization_name="system:masters"
        )
        admin.private_key_pem.write_to_path(str(directory / "admin.key"))
        admin.cert_chain_pems[0].write_to_path(str(directory / "admin.crt"))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (directory / "sa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (directory / "sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        cert_dir = pki.gatekeeper_cert_dir
        cert_dir.mkdir()
        webhook = gatekeeper_ca.issue_cert(
            LOOPBACK,
            "gatekeeper-webhook-service.gatekeeper-system.svc",
            common_name="gatekeeper-webhook-service.gatekeeper-system.svc",
        )
        gatekeeper_ca.cert_pem.write_to_path(str(cert_dir / "ca.crt"))
        webhook.cert_chain_pems[0].write_to_path(str(cert_dir / "tls.crt"))
        webhook.private_key_pem.write_to_path(str(cert_dir / "tls.key"))
        return pki

    @property
    def cluster_ca_file(self) -> Path:
        return self.directory / "cluster-ca.crt"

    @property
    def gatekeeper_cert_dir(self) -> Path:
        return self.directory / "gatekeeper-certs"

    def admin_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cluster_ca_file))
        context.load_cert_chain(str(self.directory / "admin.crt"), str(self.directory / "admin.key"))
        return context


@dataclass(frozen=True)
class AuditSettings:
    """The flags of Gatekeeper's audit process (pkg/audit/manager.go and main.go of the pinned release).

    * ``interval``: ``--audit-interval``, whole seconds between audit starts (a Go ticker: a run longer
      than the interval delays the next); Gatekeeper's default 60.
    * ``response_cache_ttl``: ``--external-data-provider-response-cache-ttl`` of THIS process (each
      Gatekeeper process has its own cache); Gatekeeper's default 3m, 0 disables it. An entry older than
      the TTL (counted in whole seconds) is asked again.
    * ``violations_limit``: ``--constraint-violations-limit``, violations listed per constraint's
      ``status.violations`` (``status.totalViolations`` counts all); default 20.
    * ``from_cache``: ``--audit-from-cache``: audit only the kinds replicated by a sync ``Config`` from
      the informer cache instead of listing from the API server. Off (the chart's default): listing
      needs no sync configuration, and ``match_kind_only`` keeps the lists to the constraints' kinds.
    """

    interval: int = 60
    response_cache_ttl: str = "3m"
    violations_limit: int = 20
    from_cache: bool = False
    match_kind_only: bool = True


@dataclass(frozen=True)
class KubectlResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def check(self) -> Self:
        if self.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(self.args)} failed ({self.returncode}):\n{self.output}")
        return self


class Cluster:
    """etcd + kube-apiserver + Gatekeeper, started by :meth:`start` and stopped by :meth:`stop`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pki = ClusterPKI.create(directory / "pki")
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.apiserver_port = free_port()
        self.webhook_port, self.gatekeeper_health_port = free_port(), free_port()
        self.kubeconfig = directory / "kubeconfig"
        self._write_kubeconfig()
        self.etcd = self._etcd()
        self.apiserver = self._apiserver()
        self.gatekeeper = self._gatekeeper()
        self.timings: dict[str, float] = {}
        self.audit: Daemon | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------

    @classmethod
    def start(cls, directory: Path) -> Self:
        cluster = cls(directory)
        try:
            cluster._timed("etcd", cluster.etcd.start)
            cluster._timed("kube-apiserver", cluster.apiserver.start)
            cluster._timed("crds", cluster._install_crds)
            cluster._timed("gatekeeper", cluster.gatekeeper.start)
            cluster._timed("webhooks", cluster._install_webhooks)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _timed(self, name: str, step: Callable[[], object]) -> None:
        began = time.monotonic()
        step()
        self.timings[name] = time.monotonic() - began

    def stop(self) -> None:
        for daemon in (self.audit, self.gatekeeper, self.apiserver, self.etcd):
            with contextlib.suppress(Exception):
                if daemon is not None:
                    daemon.stop()

    def logs(self, lines: int = 30) -> str:
        daemons = (self.audit, self.gatekeeper, self.apiserver, self.etcd)
        return "\n".join(
            f"--- {d.name} ({d.log_file}):\n{d.log_tail(lines)}" for d in daemons if d is not None
        )

    # --- audit -------------------------------------------------------------------------------------------

    def start_audit(self, settings: AuditSettings = AuditSettings()) -> Daemon:
        """Start Gatekeeper's audit (``--operation=audit``) as a second manager process, ready.

        Only ``audit``: the webhook manager of the test bed already runs ``generate`` and ``status`` (the
        chart's audit Deployment runs them instead), and the audit writes each constraint's
        ``status.auditTimestamp``, ``totalViolations`` and ``violations`` itself. It presents the same
        webhook certificate to external-data providers (Countersign's client CA trusts it). One audit at
        a time: a running one is stopped first."""
        self.stop_audit()
        self.apply([_stored_pod(AUDIT_POD)])
        health = free_port()
        directory = self.directory / f"audit-{free_port()}"
        (directory / "api-cache").mkdir(parents=True)
        audit = self._manager(
            "gatekeeper-audit",
            AUDIT_POD,
            health,
            directory / "audit.log",
            [
                "--operation=audit",
                f"--audit-interval={settings.interval}",
                f"--external-data-provider-response-cache-ttl={settings.response_cache_ttl}",
                f"--constraint-violations-limit={settings.violations_limit}",
                f"--audit-from-cache={str(settings.from_cache).lower()}",
                f"--audit-match-kind-only={str(settings.match_kind_only).lower()}",
                # Listing from the API server spills pages to this directory (default /tmp/audit).
                f"--api-cache-dir={directory / 'api-cache'}",
            ],
            port=free_port(),
        )
        self.audit = audit
        self._timed("gatekeeper-audit", audit.start)
        return audit

    def stop_audit(self) -> None:
        if self.audit is not None:
            self.audit.stop()
            self.audit = None

    # --- kubectl -----------------------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60.0) -> KubectlResult:
        command = [str(ensure_tool("kubectl")), "--kubeconfig", str(self.kubeconfig), *args]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            env.pop(variable, None)
        done = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        return KubectlResult(tuple(args), done.returncode, done.stdout, done.stderr)

    def apply(self, documents: Iterable[dict[str, Any]] | str) -> KubectlResult:
        text = (
            documents if isinstance(documents, str) else yaml.safe_dump_all(list(documents), sort_keys=False)
        )
        return self.kubectl("apply", "-f", "-", input=text).check()

    def create(self, document: dict[str, Any] | str) -> KubectlResult:
        """``kubectl create -f -``: the admission outcome is in the result (not checked)."""
        text = document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False)
        return self.kubectl("create", "-f", "-", input=text)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Any:
        args = ["get", kind, name, "-o", "json"]
        if namespace is not None:
            args += ["-n", namespace]
        return self.kubectl(*args).check().json()

    def namespace(self, name: str, *, ignored: bool = False) -> None:
        labels = {IGNORE_LABEL: "yes"} if ignored else {}
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}])

    # --- components --------------------------------------------------------------------------------------

    def kubeconfig_document(self, user: str, credentials: dict[str, str]) -> dict[str, Any]:
        """A kubeconfig for this API server (its CA trusted) as ``user`` with ``credentials`` (a token, or a
        client certificate and key)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {
                        "server": f"https://{LOOPBACK}:{self.apiserver_port}",
                        "certificate-authority": str(self.pki.cluster_ca_file),
                    },
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        }

    def _write_kubeconfig(self) -> None:
        pki = self.pki.directory
        credentials = {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")}
        config = self.kubeconfig_document("admin", credentials)
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))

    def _etcd(self) -> Daemon:
        client = f"http://{LOOPBACK}:{self.etcd_port}"
        peer = f"http://{LOOPBACK}:{self.etcd_peer_port}"
        command = [
            str(ensure_tool("etcd")),
            "--name=e2e",
            f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=e2e={peer}",
            "--log-level=warn",
            "--quota-backend-bytes=1073741824",
        ]

        def ready() -> bool:
            status, body = _get(f"{client}/health")
            return status == 200 and json.loads(body).get("health") == "true"

        return Daemon("etcd", command, log_file=self.directory / "etcd.log", ready=ready, ready_timeout=30)

    def _apiserver(self) -> Daemon:
        pki = self.pki.directory
        command = [
            str(ensure_tool("kube-apiserver")),
            f"--etcd-servers=http://{LOOPBACK}:{self.etcd_port}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={self.apiserver_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            "--tls-min-version=VersionTLS13",
            f"--client-ca-file={self.pki.cluster_ca_file}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/24",
            "--disable-admission-plugins=ServiceAccount",
            "--anonymous-auth=false",
            "--profiling=false",
            "--endpoint-reconciler-type=none",
            "--v=1",
        ]
        context = self.pki.admin_context()

        def ready() -> bool:
            status, body = _get(f"https://{LOOPBACK}:{self.apiserver_port}/readyz", context)
            return status == 200 and body.strip() == b"ok"

        return Daemon(
            "kube-apiserver",
            command,
            log_file=self.directory / "apiserver.log",
            ready=ready,
            ready_timeout=120,
        )

    def _gatekeeper(self) -> Daemon:
        return self._manager(
            "gatekeeper",
            GATEKEEPER_POD,
            self.gatekeeper_health_port,
            self.directory / "gatekeeper.log",
            [
                # generate creates the constraint CRDs of the templates.
                "--operation=generate",
                "--operation=webhook",
                "--operation=mutation-webhook",
                "--operation=status",
                "--operation=mutation-status",
                "--log-denies",
            ],
            port=self.webhook_port,
        )

    def _manager(
        self, name: str, pod_name: str, health_port: int, log_file: Path, flags: list[str], *, port: int
    ) -> Daemon:
        """A ``gatekeeper-manager`` process ``name`` running as the stored Pod ``pod_name`` with ``flags``
        (its operations): the webhook certificate of this module's PKI on ``port``, ready when
        ``/readyz`` on ``health_port`` answers 200."""
        command = [
            str(ensure_tool("gatekeeper-manager")),
            *flags,
            f"--port={port}",
            f"--host={LOOPBACK}",
            f"--cert-dir={self.pki.gatekeeper_cert_dir}",
            "--disable-cert-rotation",
            f"--health-addr={LOOPBACK}:{health_port}",
            "--metrics-addr=0",
            # Gatekeeper's Prometheus exporter binds every interface; OTLP pushes go to a loopback port on
            # which nothing listens (connection refused, logged), so nothing leaves the machine.
            "--metrics-backend=opentelemetry",
            f"--otlp-endpoint={LOOPBACK}:{free_port()}",
            "--otlp-metric-interval=10m",
            "--log-level=INFO",
            f"--kubeconfig={self.kubeconfig}",
        ]
        env = {
            "POD_NAMESPACE": GATEKEEPER_NAMESPACE,
            "POD_NAME": pod_name,
            "KUBECONFIG": str(self.kubeconfig),
        }

        def ready() -> bool:
            status, _ = _get(f"http://{LOOPBACK}:{health_port}/readyz")
            return status == 200

        return Daemon(name, command, log_file=log_file, ready=ready, env=env, ready_timeout=120)

    def _install_crds(self) -> None:
        crds = gatekeeper_crds()
        if not any(crds.glob("*.yaml")):
            raise FileNotFoundError(f"no Gatekeeper CRDs in {crds}: run tools/install.sh gatekeeper")
        self.kubectl("apply", "--server-side", "-f", str(crds)).check()
        self.kubectl("wait", "--for=condition=established", "crd", "--all", "--timeout=60s").check()
        self.namespace(GATEKEEPER_NAMESPACE, ignored=True)
        # Gatekeeper's controllers write per-pod status objects owned by the Pod they run in (POD_NAME): in
        # a cluster that is its own Deployment's Pod. Here it is a stored Pod object that never runs.
        self.apply([_stored_pod(GATEKEEPER_POD)])

    def webhook_configurations(
        self, *, validation_failure: str = "Fail", mutation_failure: str = "Ignore"
    ) -> list[dict[str, Any]]:
        ca_bundle = base64.b64encode((self.pki.gatekeeper_cert_dir / "ca.crt").read_bytes()).decode()
        base = f"https://{LOOPBACK}:{self.webhook_port}"
        selector = {"matchExpressions": [{"key": IGNORE_LABEL, "operator": "DoesNotExist"}]}
        rules = [{**rule, "operations": ["CREATE", "UPDATE"], "scope": "*"} for rule in _WORKLOADS]

        def configuration(kind: str, name: str, path: str, failure: str, timeout: int) -> dict[str, Any]:
            mutating = kind == "MutatingWebhookConfiguration"
            webhook: dict[str, Any] = {
                "name": name,
                "clientConfig": {"url": f"{base}{path}", "caBundle": ca_bundle},
                "rules": rules,
                "namespaceSelector": selector,
                "failurePolicy": failure,
                "sideEffects": "None",
                "admissionReviewVersions": ["v1", "v1beta1"],
                "timeoutSeconds": timeout,
                "matchPolicy": "Exact",
            }
            if mutating:
                webhook["reinvocationPolicy"] = "Never"
            return {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": kind,
                "metadata": {
                    "name": f"gatekeeper-{'mutating' if mutating else 'validating'}-webhook-configuration"
                },
                "webhooks": [webhook],
            }

        return [
            configuration(
                "ValidatingWebhookConfiguration",
                "validation.gatekeeper.sh",
                "/v1/admit",
                validation_failure,
                3,
            ),
            configuration(
                "MutatingWebhookConfiguration", "mutation.gatekeeper.sh", "/v1/mutate", mutation_failure, 1
            ),
        ]

    def _install_webhooks(self) -> None:
        self.apply(self.webhook_configurations())

    # --- waiting -----------------------------------------------------------------------------------------

    def eventually(
        self,
        probe: Callable[[], KubectlResult],
        accept: Callable[[KubectlResult], bool],
        *,
        timeout: float = 60.0,
        what: str,
    ) -> KubectlResult:
        """Repeat ``probe`` until ``accept`` holds (Gatekeeper applies new objects asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if accept(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not reached within {timeout:.0f}s; last kubectl output:\n{result.output}\n"
                    f"{self.logs()}"
                )
            time.sleep(0.5)


def _stored_pod(name: str) -> dict[str, Any]:
    """The Pod object a Gatekeeper process names as POD_NAME (never run: no kubelet)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": GATEKEEPER_NAMESPACE},
        "spec": {"containers": [{"name": "manager", "image": "gatekeeper.invalid/manager:out-of-cluster"}]},
    }


def manifests(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every YAML document of ``paths`` (files, in order), skipping empty ones."""
    documents: list[dict[str, Any]] = []
    for path in paths:
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents
