"""Countersign in front of the real Gatekeeper: the pieces the end-to-end tests and `make demo-gatekeeper`
share.

* :func:`push_images` fills a registry with images signed by the real cosign and notation CLIs (and some
  that must be denied);
* :func:`start_countersign` runs ``countersign serve`` with mutual TLS, Gatekeeper's CA as its client CA,
  as a process of this machine (``make demo GATEKEEPER=1``);
* :func:`start_countersign_pod` runs the same provider from Countersign's image, as the Helm chart's
  Deployment runs it: :func:`chart_values` are the values an operator would give ``helm install`` for this
  test bed, ``helm template`` renders them, and tests/support/podspec.py and pod.py run the Pod template
  with podman (the kubelet's volume layout, the probes, a network namespace of its own, the Service);
* :func:`install` applies the shipped manifests of ``gatekeeper-templates/`` as an operator would (only
  the Provider URLs and caBundles are filled in) and waits until Gatekeeper enforces them.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import itertools
import json
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
import yaml

from tests.support import cosign, notation
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.daemons import Daemon
from tests.support.images import PushedImage, attach_sbom, push_image
from tests.support.kube import Cluster, KubectlResult, manifests
from tests.support.notation import NotationEnv
from tests.support.pod import Pod, PodNetwork
from tests.support.podspec import find, helm_template, translate
from tests.support.processes import StartStop
from tests.support.registries import LOOPBACK, Registry, free_port

__all__ = [
    "PODS",
    "Admission",
    "Images",
    "Provider",
    "apply_constraint",
    "chart_values",
    "constraint",
    "deployment",
    "gatekeeper_objects",
    "install",
    "install_provider",
    "pod",
    "provider_config",
    "push_images",
    "server_config",
    "server_tls",
    "signed_image",
    "start_countersign",
    "start_countersign_pod",
    "start_provider_daemon",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = REPO_ROOT / "gatekeeper-templates"


@dataclass(frozen=True)
class Images:
    """What the registry holds: signed by the trusted cosign key (with an SBOM) unless the name says not."""

    signed: PushedImage
    signed_other: PushedImage
    notary: PushedImage  # signed with notation (trusted chain), with an SBOM
    unsigned: PushedImage  # SBOM, no signature
    untrusted: PushedImage  # signed by a key Countersign does not trust, with an SBOM
    no_sbom: PushedImage  # signed, no SBOM


@dataclass
class Provider:
    """Countersign with its PKI, on 127.0.0.1:``port``; ``daemon`` (a process, or the chart's Pod) can be
    stopped and started again."""

    daemon: StartStop
    port: int
    ca: trustme.CA
    directory: Path
    network: PodNetwork | None = None

    def close(self) -> None:
        self.daemon.stop()
        if self.network is not None:
            self.network.delete()

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca.cert_pem.bytes()).decode()

    def url(self, path: str) -> str:
        return f"https://{LOOPBACK}:{self.port}{path}"


_seeds = itertools.count()


def signed_image(
    registry: Registry, cosign_env: CosignEnv, key: KeyPair, repo: str, *, sbom: bool = True
) -> PushedImage:
    """A fresh image ``repo:v1``, signed by ``key`` (cosign v3 bundle), with an SPDX SBOM unless told not."""
    image = push_image(registry, repo, "v1", seed=f"e2e-{repo}-{next(_seeds)}-{time.time_ns()}")
    cosign.sign_bundle(cosign_env, key, registry, image)
    if sbom:
        attach_sbom(registry, image)
    return image


def push_images(
    registry: Registry, cosign_env: CosignEnv, trusted_key: KeyPair, notation_env: NotationEnv
) -> Images:
    """The images of :class:`Images`, pushed to ``registry`` and signed (each call makes new ones)."""
    stranger = cosign.generate_key_pair(cosign_env, "stranger")
    unsigned = push_image(registry, "apps/unsigned", "v1", seed="e2e-unsigned")
    attach_sbom(registry, unsigned)
    notary = push_image(registry, "notary/signed", "v1", seed="e2e-notary")
    notation.sign(notation_env, "e2e-signer", registry, notary)
    attach_sbom(registry, notary)
    return Images(
        signed=signed_image(registry, cosign_env, trusted_key, "apps/signed"),
        signed_other=signed_image(registry, cosign_env, trusted_key, "apps/signed-other"),
        notary=notary,
        unsigned=unsigned,
        untrusted=signed_image(registry, cosign_env, stranger, "apps/untrusted"),
        no_sbom=signed_image(registry, cosign_env, trusted_key, "apps/no-sbom", sbom=False),
    )


def provider_config(
    provider_dir: Path,
    port: int,
    health_port: int,
    client_ca: Path,
    registry: Registry,
    trusted_key: KeyPair,
    notation_env: NotationEnv,
) -> dict[str, Any]:
    return {
        "apiVersion": "countersign.dev/v1alpha1",
        "server": server_config(provider_dir, port, health_port, client_ca),
        "registries": {registry.host: {"insecure": True}},
        "verifiers": {
            "cosign": {"type": "cosign", "options": cosign.key_options(trusted_key)},
            "notation": {
                "type": "notation",
                "options": {
                    "trustPolicy": str(notation_env.trust_policy_file),
                    "trustStore": str(notation_env.trust_store_dir("ca", "e2e-signer").parents[2]),
                },
            },
            "sbom": {"type": "sbom"},
            "pinned": {"type": "digest-pin"},
        },
        "policies": [
            {"name": "signed-with-sbom", "scopes": ["*"], "allOf": ["cosign", "sbom", "pinned"]},
            {
                "name": "notary",
                "scopes": [f"{registry.host}/notary/*"],
                "allOf": ["notation", "sbom", "pinned"],
            },
        ],
    }


def start_countersign(
    directory: Path, cluster: Cluster, registry: Registry, trusted_key: KeyPair, notation_env: NotationEnv
) -> Provider:
    """``countersign serve`` with its own serving CA and Gatekeeper's CA as the client CA, started."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = server_tls(directory, "countersign.countersign.svc")
    port, health_port = free_port(), free_port()
    # Mutual TLS: only clients with a certificate from Gatekeeper's CA (its webhook certificate) are served.
    client_ca = cluster.pki.gatekeeper_cert_dir / "ca.crt"
    config = provider_config(directory, port, health_port, client_ca, registry, trusted_key, notation_env)
    provider, _ = start_provider_daemon("countersign", directory, ca, config)
    return provider


def server_config(directory: Path, port: int, health_port: int, client_ca: Path) -> dict[str, Any]:
    """The ``server`` section of a Countersign serving mutual TLS on 127.0.0.1:``port`` with
    ``directory``/tls.crt and tls.key (:func:`server_tls`), clients' certificates from ``client_ca``."""
    return {
        "address": LOOPBACK,
        "port": port,
        "healthPort": health_port,
        "tls": {
            "certFile": str(directory / "tls.crt"),
            "keyFile": str(directory / "tls.key"),
            "clientCAFile": str(client_ca),
        },
    }


def server_tls(directory: Path, *names: str) -> trustme.CA:
    """A CA and its leaf for 127.0.0.1 (and ``names``), written as ``directory``/tls.crt and tls.key."""
    ca = trustme.CA()
    leaf = ca.issue_cert(LOOPBACK, *names)
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
    (directory / "tls.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    return ca


def start_provider_daemon(
    name: str, directory: Path, ca: trustme.CA, config: dict[str, Any], ready_timeout: float = 30
) -> tuple[Provider, Path]:
    """``countersign serve --config`` (this work tree) with ``config`` written to ``directory``; ready."""
    config_file = directory / "countersign.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    health_port = config["server"]["healthPort"]

    def ready() -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{LOOPBACK}:{health_port}/readyz", timeout=2) as response:
            return int(response.status) == 200

    daemon = Daemon(
        name,
        [sys.executable, "-m", "provider.cli", "serve", "--config", str(config_file)],
        log_file=directory / "countersign.log",
        ready=ready,
        cwd=REPO_ROOT,
        ready_timeout=ready_timeout,
    )
    daemon.start()
    return Provider(daemon, int(config["server"]["port"]), ca, directory), config_file


#: Where the chart mounts trustMaterial (templates/_helpers.tpl, "countersign.paths").
TRUST_DIR = "/etc/countersign/trust"
RELEASE = NAMESPACE = "countersign"


def chart_values(
    registry: Registry, trusted_key: KeyPair, notation_env: NotationEnv, *, image: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The values an operator would install the chart with for this test bed (``image`` is
    ``repository@digest``), and the objects they would create first in the release namespace besides the
    two Secrets: the ConfigMaps of ``trustMaterial`` (the cosign public key, notation's trust policy).

    The configuration is :func:`provider_config`'s, minus the listener the chart sets, with the files it
    names mounted from those ConfigMaps; notation's trust store is inline (a ConfigMap volume is made of
    symbolic links, which Countersign refuses in a trust-store directory)."""
    repository, _, digest = image.partition("@")
    key_file = f"{trusted_key.name}.pub"
    store = notation_env.trust_store_dir("ca", "e2e-signer")
    pem = "".join(path.read_text() for path in sorted(store.iterdir()) if path.is_file())
    values: dict[str, Any] = {
        "image": {"repository": repository, "digest": digest},
        "replicaCount": 1,
        # The Pod runs without a kubelet's API access on this test bed: the file alone.
        "kubernetes": {"enabled": False},
        "config": {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {
                "cosign": {
                    "type": "cosign",
                    "options": {
                        **cosign.key_options(trusted_key),
                        "keys": [{"name": trusted_key.name, "path": f"{TRUST_DIR}/cosign-keys/{key_file}"}],
                    },
                },
                "notation": {
                    "type": "notation",
                    "options": {
                        "trustPolicy": f"{TRUST_DIR}/notation/trustpolicy.json",
                        "trustStores": [{"name": "ca:e2e-signer", "pem": pem}],
                    },
                },
                "sbom": {"type": "sbom"},
                "pinned": {"type": "digest-pin"},
            },
            "policies": [
                {"name": "signed-with-sbom", "scopes": ["*"], "allOf": ["cosign", "sbom", "pinned"]},
                {
                    "name": "notary",
                    "scopes": [f"{registry.host}/notary/*"],
                    "allOf": ["notation", "sbom", "pinned"],
                },
            ],
        },
        "trustMaterial": [
            {"name": "cosign-keys", "configMap": "e2e-cosign-keys"},
            {"name": "notation", "configMap": "e2e-notation-policy"},
        ],
    }
    config_maps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "e2e-cosign-keys", "namespace": NAMESPACE},
            "data": {key_file: trusted_key.public_pem.decode()},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "e2e-notation-policy", "namespace": NAMESPACE},
            "data": {"trustpolicy.json": notation_env.trust_policy_file.read_text()},
        },
    ]
    return values, config_maps


def tls_secrets(ca: trustme.CA, client_ca_pem: bytes, *hosts: str) -> list[dict[str, Any]]:
    """The two Secrets the chart's default values name: ``countersign-tls`` (a serving certificate from
    ``ca`` for ``hosts``, with ``ca.crt``) and ``countersign-gatekeeper-ca`` (Gatekeeper's CA)."""
    leaf = ca.issue_cert(*hosts)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "countersign-tls", "namespace": NAMESPACE},
            "data": {
                "tls.crt": b64(b"".join(blob.bytes() for blob in leaf.cert_chain_pems)),
                "tls.key": b64(leaf.private_key_pem.bytes()),
                "ca.crt": b64(ca.cert_pem.bytes()),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "countersign-gatekeeper-ca", "namespace": NAMESPACE},
            "data": {"ca.crt": b64(client_ca_pem)},
        },
    ]


def chart_pod(
    directory: Path,
    values: dict[str, Any],
    objects: list[dict[str, Any]],
    *,
    images: dict[str, str],
    env: dict[str, str],
    egress: tuple[int, ...] = (),
) -> tuple[Pod, int]:
    """``helm template`` with ``values``, the Deployment's Pod template translated and laid out in
    ``directory`` (not started) in a network namespace of its own, its HTTPS port exposed on a free port of
    127.0.0.1 (returned) while ready, the Pod's 127.0.0.1:PORT of ``egress`` reaching the host's."""
    docs = helm_template(values, release=RELEASE, namespace=NAMESPACE)
    (directory / "rendered.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    existing = {
        (d["kind"], d["metadata"]["name"]): d
        for d in [*docs, *objects]
        if d["kind"] in ("ConfigMap", "Secret")
    }
    template = find(docs, "Deployment")["spec"]["template"]
    plan = translate(template, objects=existing, images=images)
    port = free_port()
    network = PodNetwork()
    try:
        network.egress(egress)
        pod = Pod(plan, directory, network, env, services={port: plan.ports["https"]})
    except BaseException:
        network.delete()
        raise
    return pod, port


def start_countersign_pod(
    directory: Path,
    cluster: Cluster,
    registry: Registry,
    trusted_key: KeyPair,
    notation_env: NotationEnv,
    *,
    image: str,
    env: dict[str, str],
) -> Provider:
    """Countersign's image run as the chart's Deployment runs it (:func:`chart_values`, the two Secrets
    with Gatekeeper's CA as the client CA), ready, on a Service port of 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    client_ca = (cluster.pki.gatekeeper_cert_dir / "ca.crt").read_bytes()
    secrets = tls_secrets(ca, client_ca, LOOPBACK, f"{RELEASE}.{NAMESPACE}.svc")
    values, config_maps = chart_values(registry, trusted_key, notation_env, image=image)
    pod, port = chart_pod(
        directory,
        values,
        [*secrets, *config_maps],
        images={image: image},
        env=env,
        egress=(registry.port,),
    )
    try:
        pod.start()
    except BaseException:
        pod.network.delete()
        raise
    return Provider(pod, port, ca, directory, pod.network)


def gatekeeper_objects(provider: Provider) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The shipped manifests, Provider URLs and caBundles set for this test bed: (providers and template,
    constraints and mutators)."""
    providers = manifests([TEMPLATES / "provider.yaml"])
    for item in providers:
        path = "/v1/mutate" if item["spec"]["url"].endswith("/v1/mutate") else "/v1/verify"
        item["spec"]["url"] = provider.url(path)
        item["spec"]["caBundle"] = provider.ca_bundle
    template = manifests([TEMPLATES / "verified-images-template.yaml"])
    constraints = manifests([TEMPLATES / "samples" / "verified-images-constraint.yaml"])
    mutators = manifests([TEMPLATES / "mutators.yaml"])
    return providers + template, constraints + mutators


def pod(name: str, namespace: str, *images: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
    }
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": image} for i, image in enumerate(init)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def deployment(name: str, namespace: str, *images: str) -> dict[str, Any]:
    template = pod(name, namespace, *images)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": copy.deepcopy(template["spec"])},
        },
    }


#: What the constraints of these tests match: Pods.
PODS = {"apiGroups": [""], "kinds": ["Pod"]}


def install_provider(cluster: Cluster, name: str, url: str, ca_bundle: str) -> None:
    """The shipped ConstraintTemplate and a Provider ``name`` at ``url`` (trusting ``ca_bundle``, base64);
    returns once Gatekeeper serves the constraint kind the template defines."""
    cluster.apply(manifests([TEMPLATES / "verified-images-template.yaml"]))
    cluster.apply(
        [
            {
                "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
                "kind": "Provider",
                "metadata": {"name": name},
                "spec": {"url": url, "timeout": 3, "caBundle": ca_bundle},
            }
        ]
    )
    cluster.eventually(
        lambda: cluster.kubectl("get", "crd", "countersignverifiedimages.constraints.gatekeeper.sh"),
        lambda result: result.ok,
        what="the CountersignVerifiedImages CRD",
    )


def constraint(
    name: str, provider: str, match: dict[str, Any], *, deny: bool = False, **parameters: Any
) -> dict[str, Any]:
    """A CountersignVerifiedImages constraint asking ``provider`` about what ``match`` matches, with
    ``enforcementAction: deny`` spelled out when ``deny``, and further ``parameters``."""
    spec: dict[str, Any] = {"enforcementAction": "deny"} if deny else {}
    spec |= {"match": match, "parameters": {"provider": provider, **parameters}}
    return {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": "CountersignVerifiedImages",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply_constraint(cluster: Cluster, document: dict[str, Any], what: str) -> None:
    """``document`` applied, retried until Gatekeeper has the constraint kind's schema (``what`` names it
    in a failure)."""
    cluster.eventually(
        lambda: cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(document)),
        lambda result: result.ok,
        what=what,
    )


_namespaces = itertools.count()


@dataclass
class Admission:
    """The cluster with Countersign's Gatekeeper objects in force."""

    cluster: Cluster
    provider: Provider
    registry: Registry
    images: Images

    def fresh_namespace(self, prefix: str) -> str:
        """A new namespace: its keys ("[namespace]image") are in no cache of Gatekeeper's or Countersign's."""
        name = f"{prefix}-{next(_namespaces)}"
        self.cluster.namespace(name)
        return name

    def create(self, document: dict[str, Any]) -> KubectlResult:
        return self.cluster.create(document)


def install(cluster: Cluster, provider: Provider, registry: Registry, images: Images) -> Admission:
    """Apply the shipped Gatekeeper objects for ``provider``; return once the constraint denies and the
    mutators pin (Gatekeeper loads new objects asynchronously)."""
    first, second = gatekeeper_objects(provider)
    cluster.apply(first)
    # Gatekeeper creates the constraint kind from the template; the constraint can be applied once it exists.
    cluster.eventually(
        lambda: cluster.kubectl("get", "crd", "countersignverifiedimages.constraints.gatekeeper.sh"),
        lambda result: result.ok,
        what="the CountersignVerifiedImages CRD",
    )
    cluster.eventually(
        lambda: cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(second)),
        lambda result: result.ok,
        what="applying the constraint and the mutators",
    )
    probe_ns = "e2e-probe"
    cluster.namespace(probe_ns)
    unsigned = pod("probe", probe_ns, images.unsigned.pinned)
    cluster.eventually(
        lambda: cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(unsigned)),
        lambda result: not result.ok and "denied the request" in result.stderr,
        what="the constraint in force (an unsigned image denied)",
    )
    tagged = pod("probe", probe_ns, images.signed.reference)
    cluster.eventually(
        lambda: cluster.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input=yaml.safe_dump(tagged)
        ),
        lambda result: result.ok and images.signed.digest in result.stdout,
        what="the mutators in force (a tag pinned to its digest)",
    )
    return Admission(cluster, provider, registry, images)


#: The shipped sample constraint that :func:`install` applies (every namespace but the system ones).
SESSION_CONSTRAINT = ("countersignverifiedimages", "countersign-verified-images")


@contextlib.contextmanager
def outside_session_constraint(cluster: Cluster, namespaces: Sequence[str]) -> Iterator[None]:
    """Within the block, ``namespaces`` (Gatekeeper patterns: a trailing ``*`` is a prefix) are excluded from
    the session's shipped constraint when it is installed, so a test's own constraint and provider alone
    decide there; the constraint's list is restored on exit."""
    kind, name = SESSION_CONSTRAINT
    found = cluster.kubectl("get", kind, name, "-o", "json")
    if not found.ok:
        yield
        return
    before = list(found.json()["spec"]["match"].get("excludedNamespaces") or [])

    def exclude(names: list[str]) -> None:
        patch = json.dumps({"spec": {"match": {"excludedNamespaces": names}}})
        cluster.kubectl("patch", kind, name, "--type=merge", "-p", patch).check()

    exclude(before + [n for n in namespaces if n not in before])
    try:
        yield
    finally:
        exclude(before)
