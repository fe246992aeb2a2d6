"""Admission latency through the real Gatekeeper: what a `kubectl apply` waits for.

The end-to-end test bed (tests/support/kube.py: etcd, kube-apiserver, Gatekeeper's manager, all on
127.0.0.1) with Countersign behind it (mutual TLS), and the shipped manifests of gatekeeper-templates/.
Each sample is one server-side dry-run `POST .../pods?dryRun=All` of a Pod with three images (two signed
with cosign, one with notation, each with an SBOM), straight to the API server (no kubectl process in the
measurement): mutating webhook (three tags pinned through /v1/mutate) then validating webhook (one
batched external_data call to /v1/verify), then the API server's answer.

Two rows:

* **new namespace**: every sample in a namespace of its own, so every validation key ("[namespace]image")
  is new to Gatekeeper's response cache and to Countersign's verdict cache: Countersign verifies the three
  images again (their manifests, signatures and SBOMs are in its content cache after the first sample).
  Mutation keys carry no namespace, so after the first sample Gatekeeper pins the tags from its cache;
* **same namespace**: the same Pod again and again: Gatekeeper answers from its own 3-minute cache.
"""

from __future__ import annotations

import gc
import itertools
import json
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.stats import Row, summarize, summary_row
from tests.support import cosign, notation
from tests.support.admission import Admission, install, pod, push_images, start_countersign
from tests.support.cosign import CosignEnv
from tests.support.kube import Cluster
from tests.support.notation import NotationEnv
from tests.support.registries import LOOPBACK, Registry

__all__ = ["AdmissionBenchError", "admission_scenarios"]


class AdmissionBenchError(RuntimeError):
    """The test bed did not admit what it must admit."""


def _dry_run(admission: Admission, context: ssl.SSLContext, namespace: str, images: list[str]) -> float:
    """Seconds for one dry-run Pod creation that must be admitted."""
    body = json.dumps(pod("bench", namespace, *images)).encode()
    url = (
        f"https://{LOOPBACK}:{admission.cluster.apiserver_port}/api/v1/namespaces/{namespace}/pods?dryRun=All"
    )
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=30) as response:
            status = int(response.status)
            created: Any = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AdmissionBenchError(
            f"the Pod was not admitted ({error.code}): {error.read()[:2000]!r}"
        ) from error
    elapsed = time.perf_counter() - started
    pinned = [c["image"] for c in created["spec"]["containers"]]
    if status != 201 or not all("@sha256:" in image for image in pinned):
        raise AdmissionBenchError(f"unexpected admission: {status} {pinned}")
    return elapsed


def _row(scenario: str, samples: list[float], detail: str) -> Row:
    summary = summarize(samples)
    throughput = f"{summary.count / summary.total:,.1f} Pods/s, sequential"
    return summary_row(scenario, summary, throughput, {"measure": detail, "samples_s": samples})


def admission_scenarios(registry: Registry, workdir: Path, runs: int) -> list[Row]:
    """Start the test bed, then time admissions (see the module). Everything is stopped on return."""
    cluster = Cluster.start(workdir / "cluster")
    try:
        with (
            CosignEnv(workdir / "admission-cosign") as cosign_env,
            NotationEnv(workdir / "admission-notation") as nenv,
        ):
            key = cosign.generate_key_pair(cosign_env, "trusted")
            notation.generate_test_key(nenv, "e2e-signer")
            notation.write_trust_policy(nenv, notation.trust_policy(["ca:e2e-signer"]))
            images = push_images(registry, cosign_env, key, nenv)
            provider = start_countersign(workdir / "admission-countersign", cluster, registry, key, nenv)
            try:
                admission = install(cluster, provider, registry, images)
                context = cluster.pki.admin_context()
                tags = [images.signed.reference, images.signed_other.reference, images.notary.reference]
                counter = itertools.count()
                fresh: list[float] = []
                for _ in range(runs):
                    namespace = f"bench-{next(counter)}"
                    cluster.namespace(namespace)  # not measured
                    gc.collect()
                    fresh.append(_dry_run(admission, context, namespace, tags))
                cluster.namespace("bench-same")
                _dry_run(admission, context, "bench-same", tags)  # fills Gatekeeper's cache
                same = [_dry_run(admission, context, "bench-same", tags) for _ in range(runs)]
            finally:
                provider.daemon.stop()
    finally:
        cluster.stop()
    return [
        _row(
            "admission, 3 images, new namespace",
            fresh,
            "wall seconds of a dry-run Pod POST: mutation (3 pins) + validation (3 verifications), keys new",
        ),
        _row(
            "admission, 3 images, GK cache hit",
            same,
            "wall seconds of a dry-run Pod POST whose keys Gatekeeper has cached",
        ),
    ]
