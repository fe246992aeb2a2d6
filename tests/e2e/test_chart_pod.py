"""The chart's Pod, run from Countersign's image exactly as `helm template` renders it (tests/support/
podspec.py translates, tests/support/pod.py runs; the Gatekeeper scenarios of test_admission.py go through
the same Pod):

* with the chart's default values and the two Secrets they name, a provider runs: the probes pass on the
  health port, /v1/verify answers Gatekeeper's client certificate over mutual TLS and refuses any other
  client;
* every optional part of the chart (tests/integration/test_chart.py's value sets) translates: nothing the
  chart renders is silently left out;
* the running provider of the admission scenarios is what the chart asks for: user 65532, a read-only root,
  no capabilities, no privilege escalation, the image by digest, the configuration in the kubelet's
  ``..data`` layout.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.e2e.conftest import LoadedImage
from tests.integration.test_chart import VALUE_SETS
from tests.support.admission import NAMESPACE, RELEASE, Provider, chart_pod, tls_secrets
from tests.support.container import podman
from tests.support.pod import Pod
from tests.support.podspec import Refused, find, helm_template, translate
from tests.support.registries import LOOPBACK

Doc = dict[str, Any]


def _verify(port: int, context: ssl.SSLContext, *keys: str) -> Doc:
    body = {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {"keys": keys},
    }
    connection = http.client.HTTPSConnection(LOOPBACK, port, context=context, timeout=30)
    try:
        connection.request("POST", "/v1/verify", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        assert response.status == 200, payload[:300]
    finally:
        connection.close()
    document: Doc = json.loads(payload)
    return document


def test_default_values_and_the_two_secrets_give_a_running_provider(
    countersign_image: LoadedImage, tmp_path: Path
) -> None:
    # The default values name localhost/countersign:<appVersion>: the image as a node would hold it.
    default = f"localhost/countersign:{countersign_image.built.version}"
    server_ca, gatekeeper_ca = trustme.CA(), trustme.CA()
    secrets = tls_secrets(server_ca, gatekeeper_ca.cert_pem.bytes(), f"{RELEASE}.{NAMESPACE}.svc", LOOPBACK)
    # The file alone (kubernetes.enabled: false): without an API server this Pod could not get its token.
    # The chart's defaults with the Kubernetes source run on a real node, with a real token and RBAC
    # (tests/e2e/test_helm_install.py).
    pod, port = chart_pod(
        tmp_path,
        {"kubernetes": {"enabled": False}},
        secrets,
        images={default: countersign_image.reference},
        env=countersign_image.env,
    )
    rendered = list(yaml.safe_load_all((tmp_path / "rendered.yaml").read_text()))
    assert find(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] == default
    try:
        with pod.running():
            assert pod.ready_after is not None
            print(f"\nchart Pod (default values): ready after {pod.ready_after:.1f}s")
            gatekeeper = ssl.create_default_context()
            server_ca.configure_trust(gatekeeper)
            gatekeeper_ca.issue_cert("gatekeeper-webhook-service.gatekeeper-system.svc").configure_cert(
                gatekeeper
            )
            # The placeholder policy (digest pins) and no registry reachable from the Pod: undecided, never
            # allowed.
            answer = _verify(port, gatekeeper, "registry.invalid/app@sha256:" + "ab" * 32)
            assert answer["response"]["items"] == [], answer
            assert "[registry_unavailable]" in answer["response"]["systemError"], answer
            stranger = ssl.create_default_context()
            server_ca.configure_trust(stranger)
            trustme.CA().issue_cert("gatekeeper-webhook-service.gatekeeper-system.svc").configure_cert(
                stranger
            )
            with pytest.raises((ssl.SSLError, ConnectionError)):
                _verify(port, stranger, "registry.invalid/app@sha256:" + "ab" * 32)
    finally:
        pod.network.delete()


def _objects_for(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
    """The rendered ConfigMaps, and a ConfigMap or Secret for every other one the Pod template names (as
    the operator would have created them), holding the keys its items ask for."""
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    for volume in find(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]:
        for kind, source, name_key in (
            ("Secret", "secret", "secretName"),
            ("ConfigMap", "configMap", "name"),
        ):
            if source in volume and (kind, volume[source][name_key]) not in objects:
                keys = [item["key"] for item in volume[source].get("items", [])] or ["file"]
                objects[(kind, volume[source][name_key])] = {
                    "stringData" if kind == "Secret" else "data": dict.fromkeys(keys, "x")
                }
    return objects


def test_the_kubernetes_source_is_refused_not_left_out() -> None:
    """With kubernetes.enabled (the default) the Pod reads its namespace from the downward API and mounts a
    projected ServiceAccount token: the translator has no API server to honour them, so it refuses them by
    name rather than run a Pod without them (test_helm_install.py runs that Pod on a real node)."""
    docs = helm_template({}, release=RELEASE, namespace=NAMESPACE)
    template = find(docs, "Deployment")["spec"]["template"]
    image = template["spec"]["containers"][0]["image"]
    with pytest.raises(Refused) as refused:
        translate(template, objects=_objects_for(docs), images={image: image})
    assert refused.value.where.startswith("container.env[") and refused.value.where.endswith(".valueFrom")
    template["spec"]["containers"][0]["env"] = [
        e for e in template["spec"]["containers"][0]["env"] if "valueFrom" not in e
    ]
    with pytest.raises(Refused) as refused:
        translate(template, objects=_objects_for(docs), images={image: image})
    assert refused.value.where.startswith("spec.volumes["), refused.value.where
    assert "projected" in str(refused.value), refused.value


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_value_set_of_the_chart_translates(name: str) -> None:
    # Each set with the Kubernetes source off: its token and downward-API parts are the previous test's.
    values = {**VALUE_SETS[name], "kubernetes": {**VALUE_SETS[name].get("kubernetes", {}), "enabled": False}}
    docs = helm_template(values, release=RELEASE, namespace=NAMESPACE)
    template = find(docs, "Deployment")["spec"]["template"]
    image = template["spec"]["containers"][0]["image"]
    plan = translate(template, objects=_objects_for(docs), images={image: image})
    mounted = {mount.path for mount in plan.mounts}
    assert {"/etc/countersign/config", "/etc/countersign/tls", "/tmp"} <= mounted
    assert plan.probes.keys() == {"livenessProbe", "readinessProbe"}


def test_the_admission_provider_runs_as_the_chart_asks(provider: Provider) -> None:
    pod = provider.daemon
    assert isinstance(pod, Pod) and pod.container is not None
    (inspect,) = json.loads(podman("inspect", pod.container.name, env=pod.env).stdout)
    assert inspect["Config"]["User"] == "65532:65532"
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    assert inspect["ImageDigest"] == pod.plan.image.split("@")[1]
    assert inspect["Config"]["Entrypoint"] in (["countersign"], "countersign")
    status = Path(f"/proc/{inspect['State']['Pid']}/status").read_text()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "0" * 16 and fields["CapPrm"].strip() == "0" * 16
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Uid"].split()[0] == "65532" and "65532" in fields["Groups"].split()
    # The configuration as the kubelet lays it out: config.yaml -> ..data/config.yaml -> ..<timestamp>/.
    config = pod.volumes["config"].directory
    assert os.readlink(config / "config.yaml") == "..data/config.yaml"
    assert os.readlink(config / "..data").startswith("..")
    key = pod.volumes["tls"].directory / "tls.key"
    assert oct(key.stat().st_mode & 0o777) == oct(0o440) and key.stat().st_gid == 65532
