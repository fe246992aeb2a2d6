"""`make demo GATEKEEPER=1`: the demo through the real Gatekeeper, in front of a real kube-apiserver.

1. starts etcd, kube-apiserver and Gatekeeper's manager on 127.0.0.1 (no containers: tests/support/kube.py);
2. starts an OCI registry and fills it with images signed by the real cosign and notation CLIs, with SBOMs
   (and some that must be denied: unsigned, signed by an unknown key, without an SBOM);
3. starts `countersign serve` with mutual TLS (Gatekeeper's webhook certificate is its client certificate);
4. applies gatekeeper-templates/ (Providers, the ConstraintTemplate, the sample constraint, the mutators);
5. runs `kubectl create` for a few Pods and a Deployment and prints what kubectl answers.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import yaml

from examples.demo import in_scratch_directory
from tests.support import cosign, notation
from tests.support.admission import deployment, install, pod, push_images, start_countersign
from tests.support.cosign import CosignEnv
from tests.support.kube import Cluster
from tests.support.notation import NotationEnv
from tests.support.registries import start_olareg


def banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def show(cluster: Cluster, document: dict[str, Any]) -> bool:
    kind, name = document["kind"], document["metadata"]["name"]
    images = [c["image"] for c in _containers(document)]
    print(f"$ kubectl create -f {kind.lower()}-{name}.yaml      # images: {', '.join(images)}")
    result = cluster.create(document)
    print("  " + result.output.strip().replace("\n", "\n  "))
    return result.ok


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document["spec"]
    spec = spec.get("template", {}).get("spec", spec)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def demo(work: Path) -> int:
    banner("starting etcd, kube-apiserver and Gatekeeper's manager on 127.0.0.1")
    began = time.monotonic()
    cluster = Cluster.start(work / "cluster")
    try:
        timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in cluster.timings.items())
        print(f"  ready in {time.monotonic() - began:.1f}s ({timings})")
        with (
            start_olareg(work / "registry") as registry,
            CosignEnv(work / "cosign") as cosign_env,
            NotationEnv(work / "notation") as notation_env,
        ):
            banner(f"pushing and signing images in the registry at {registry.url}")
            key = cosign.generate_key_pair(cosign_env, "trusted")
            notation.generate_test_key(notation_env, "e2e-signer")
            notation.write_trust_policy(notation_env, notation.trust_policy(["ca:e2e-signer"]))
            images = push_images(registry, cosign_env, key, notation_env)
            for field in ("signed", "notary", "unsigned", "untrusted", "no_sbom"):
                print(f"  {field:10} {getattr(images, field).reference}")

            banner("starting countersign serve (TLS 1.3; only Gatekeeper's client certificate is served)")
            provider = start_countersign(work / "countersign", cluster, registry, key, notation_env)
            try:
                print("  policy: every image needs a cosign signature by the trusted key, an SBOM, a digest;")
                print(f"          {registry.host}/notary/* needs a notation signature instead of cosign")
                config = yaml.safe_load((provider.directory / "countersign.yaml").read_text())
                policies = yaml.safe_dump(config["policies"], sort_keys=False).rstrip()
                print("  " + policies.replace("\n", "\n  "))

                banner("applying gatekeeper-templates/ (Providers, template, constraint, mutators)")
                install(cluster, provider, registry, images)
                cluster.namespace("demo")
                print("  Gatekeeper enforces the constraint and pins tags")

                banner("admission")
                results = [
                    show(cluster, pod("web", "demo", images.signed.reference, images.notary.reference)),
                    not show(cluster, pod("legacy", "demo", images.unsigned.reference)),
                    not show(
                        cluster, deployment("shop", "demo", images.signed.pinned, images.untrusted.pinned)
                    ),
                    not show(cluster, pod("report", "demo", images.no_sbom.pinned)),
                ]
                stored = cluster.get("pod", "web", "demo")
                banner("the admitted Pod as stored: tags pinned to digests by the mutation path")
                for container in stored["spec"]["containers"]:
                    print(f"  {container['name']}: {container['image']}")
            finally:
                provider.daemon.stop()
    finally:
        cluster.stop()
    return 0 if all(results) else 1


def main() -> int:
    return in_scratch_directory("countersign-demo-gk-", demo)


if __name__ == "__main__":
    sys.exit(main())
