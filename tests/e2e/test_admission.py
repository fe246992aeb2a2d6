"""Admission through the real Gatekeeper: what `kubectl` returns, and what the API server stores.

Each test works in a namespace of its own: with `namespacedKeys` the keys Gatekeeper sends are
"[namespace]image", so no test sees another's verdicts in Gatekeeper's 3-minute response cache.
"""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
import trustme
import yaml

from tests.support.admission import REPO_ROOT, Admission, deployment, pod, signed_image
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.registries import LOOPBACK

DENIED = 'admission webhook "validation.gatekeeper.sh" denied the request'


def test_signed_pinned_pod_and_deployment_are_admitted(admission: Admission) -> None:
    images = admission.images
    ns = admission.fresh_namespace("admit")
    created = admission.create(
        pod("web", ns, images.signed.pinned, images.notary.pinned, init=(images.signed_other.pinned,))
    )
    assert created.ok, created.output
    stored = admission.cluster.get("pod", "web", ns)
    assert [c["image"] for c in stored["spec"]["containers"]] == [images.signed.pinned, images.notary.pinned]
    assert stored["spec"]["initContainers"][0]["image"] == images.signed_other.pinned

    created = admission.create(deployment("api", ns, images.signed.pinned))
    assert created.ok, created.output
    stored = admission.cluster.get("deployment", "api", ns)
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == images.signed.pinned


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("unsigned", "[no_signature_found]"),
        ("untrusted", "[untrusted_key]"),
        ("no_sbom", "[sbom_not_found]"),
    ],
)
def test_unverifiable_images_are_denied_with_image_and_reason(
    admission: Admission, which: str, reason: str
) -> None:
    image = getattr(admission.images, which)
    ns = admission.fresh_namespace(which.replace("_", "-"))
    result = admission.create(pod("bad", ns, image.pinned))
    message = result.stderr
    assert not result.ok and DENIED in message, result.output
    # The image, its digest, the policy and the failing verifier's reason, in kubectl's output.
    assert f"image {image.pinned} (digest {image.digest})" in message, message
    assert "policy 'signed-with-sbom'" in message, message
    assert reason in message, message
    assert admission.cluster.kubectl("get", "pod", "bad", "-n", ns).returncode != 0


def test_one_bad_image_among_several_is_the_only_one_named(admission: Admission) -> None:
    images = admission.images
    ns = admission.fresh_namespace("mixed")
    result = admission.create(
        deployment("mixed", ns, images.signed.pinned, images.untrusted.pinned, images.notary.pinned)
    )
    assert not result.ok and DENIED in result.stderr, result.output
    assert images.untrusted.pinned in result.stderr
    assert result.stderr.count("[countersign-verified-images]") == 1, result.stderr
    for good in (images.signed, images.notary):
        assert good.repository not in result.stderr, result.stderr


def test_tag_is_pinned_by_mutation_then_admitted(admission: Admission) -> None:
    images = admission.images
    ns = admission.fresh_namespace("pin")
    # Without the mutation the digest-pin verifier would deny these tags (not_pinned).
    created = admission.create(pod("tagged", ns, images.signed.reference, init=(images.notary.reference,)))
    assert created.ok, created.output
    stored = admission.cluster.get("pod", "tagged", ns)
    assert stored["spec"]["containers"][0]["image"] == images.signed.pinned
    assert stored["spec"]["initContainers"][0]["image"] == images.notary.pinned

    created = admission.create(deployment("tagged", ns, images.signed_other.reference))
    assert created.ok, created.output
    stored = admission.cluster.get("deployment", "tagged", ns)
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == images.signed_other.pinned


def test_provider_down_fails_closed_then_recovers(admission: Admission) -> None:
    images = admission.images
    daemon = admission.provider.daemon
    ns = admission.fresh_namespace("provider-down")
    daemon.stop()
    try:
        began = time.monotonic()
        result = admission.create(pod("while-down", ns, images.signed.pinned))
        elapsed = time.monotonic() - began
        assert not result.ok and DENIED in result.stderr, result.output
        assert images.signed.pinned in result.stderr
        assert "connection refused" in result.stderr, result.stderr
        # Denied by the template (Gatekeeper could not reach the provider), well within the 3 s webhook.
        assert elapsed < 3.5, f"denial took {elapsed:.1f}s"
    finally:
        daemon.start()
    # Admitted again as soon as the provider is back: the failure was not cached.
    result = admission.create(pod("after", ns, images.signed.pinned))
    assert result.ok, result.output


def test_registry_down_is_undecided_and_not_cached(
    admission: Admission, cosign_env: CosignEnv, trusted_key: KeyPair
) -> None:
    fresh = signed_image(admission.registry, cosign_env, trusted_key, "apps/fresh")
    ns = admission.fresh_namespace("registry-down")
    admission.registry.stop()
    try:
        result = admission.create(pod("while-down", ns, fresh.pinned))
        assert not result.ok and DENIED in result.stderr, result.output
        assert fresh.pinned in result.stderr
        assert "undecided" in result.stderr and "[registry_unavailable]" in result.stderr, result.stderr
    finally:
        admission.registry.start()
    # The same key, at once: neither Gatekeeper nor Countersign kept the undecided outcome.
    result = admission.create(pod("after", ns, fresh.pinned))
    assert result.ok, result.output


def test_provider_with_a_wrong_ca_bundle_is_refused(admission: Admission) -> None:
    cluster, images = admission.cluster, admission.images
    ns = admission.fresh_namespace("wrong-ca")
    impostor_ca = trustme.CA()

    cluster.apply(
        [
            {
                "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
                "kind": "Provider",
                "metadata": {"name": "countersign-wrong-ca"},
                "spec": {
                    "url": admission.provider.url("/v1/verify"),
                    "timeout": 3,
                    "caBundle": base64.b64encode(impostor_ca.cert_pem.bytes()).decode(),
                },
            }
        ]
    )
    constraint = {
        "apiVersion": "constraints.gatekeeper.sh/v1beta1",
        "kind": "CountersignVerifiedImages",
        "metadata": {"name": "wrong-ca"},
        "spec": {
            "match": {"namespaces": [ns], "kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]},
            "parameters": {"provider": "countersign-wrong-ca"},
        },
    }
    cluster.eventually(
        lambda: cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(constraint)),
        lambda result: result.ok,
        what="the wrong-ca constraint",
    )
    probe = pod("signed", ns, images.signed.pinned)
    result = cluster.eventually(
        lambda: cluster.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(probe)),
        lambda result: not result.ok and "wrong-ca" in result.stderr,
        what="a denial by the wrong-ca constraint",
    )
    assert images.signed.pinned in result.stderr
    assert "x509: certificate signed by unknown authority" in result.stderr, result.stderr
    cluster.kubectl("delete", "countersignverifiedimages", "wrong-ca").check()
    cluster.kubectl("delete", "provider", "countersign-wrong-ca").check()


def _handshake(port: int, context: ssl.SSLContext) -> int:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(f"https://{LOOPBACK}:{port}/healthz", timeout=5) as response:
        return int(response.status)


def test_clients_without_gatekeepers_certificate_are_refused(admission: Admission) -> None:
    provider, pki = admission.provider, admission.cluster.pki
    context = ssl.create_default_context()
    provider.ca.configure_trust(context)
    # No client certificate: TLS 1.3 reports the refusal after the handshake, on the first read.
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError, socket.timeout)):
        _handshake(provider.port, context)
    # A certificate from another CA.
    other = ssl.create_default_context()
    provider.ca.configure_trust(other)
    trustme.CA().issue_cert("gatekeeper-webhook-service.gatekeeper-system.svc").configure_cert(other)
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError, socket.timeout)):
        _handshake(provider.port, other)
    # Gatekeeper's own certificate is served.
    gatekeeper = ssl.create_default_context()
    provider.ca.configure_trust(gatekeeper)
    gatekeeper.load_cert_chain(
        str(pki.gatekeeper_cert_dir / "tls.crt"), str(pki.gatekeeper_cert_dir / "tls.key")
    )
    assert _handshake(provider.port, gatekeeper) == 200


def test_make_demo_gatekeeper_prints_what_kubectl_answers() -> None:
    """`make demo GATEKEEPER=1` runs this module: one Pod admitted (pinned), three workloads denied."""
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo_gatekeeper"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pod/web created" in done.stdout
    assert done.stdout.count(DENIED) == 3, done.stdout
    for reason in ("[no_signature_found]", "[untrusted_key]", "[sbom_not_found]"):
        assert reason in done.stdout
    pinned = done.stdout.split("tags pinned to digests by the mutation path")[1]
    assert pinned.count("@sha256:") == 2, pinned


def test_debug_container_images_are_verified(admission: Admission) -> None:
    """`kubectl debug` adds an ephemeral container through the pods/ephemeralcontainers subresource."""
    cluster, images = admission.cluster, admission.images
    ns = admission.fresh_namespace("debug")
    assert admission.create(pod("target", ns, images.signed.pinned)).ok
    refused = cluster.kubectl("debug", "target", "-n", ns, "--image", images.unsigned.pinned, "-c", "dbg1")
    assert not refused.ok and DENIED in refused.stderr, refused.output
    assert (
        f"image {images.unsigned.pinned}" in refused.stderr and "ephemeralContainers[dbg1]" in refused.stderr
    )
    allowed = cluster.kubectl(
        "debug", "target", "-n", ns, "--image", images.signed_other.pinned, "-c", "dbg2"
    )
    assert allowed.ok, allowed.output
    stored = cluster.get("pod", "target", ns)
    assert [c["image"] for c in stored["spec"]["ephemeralContainers"]] == [images.signed_other.pinned]
