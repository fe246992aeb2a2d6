"""What the Kubernetes source costs in memory: the resident size of ``countersign serve`` once ready, with
the configuration from a file alone and with ``kubernetes.enabled`` (the Kubernetes client imported, five
informers listing and watching a real kube-apiserver, the same one digest-pin policy from a Verifier and a
ClusterImagePolicy), each started ``--runs`` times, alternating.

    python -m bench.kube_memory [--runs 3]

etcd and kube-apiserver come from the pinned tools (``tools/install.sh kube``), on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.kube import Cluster
from tests.support.kube_source import chart_crds, provider_rbac, service_account_kubeconfig
from tests.support.provider_process import start_provider

__all__ = ["main"]

API = "countersign.dev/v1alpha1"
NAMESPACE = "countersign"
SETTLE = 3.0  # seconds after ready before reading VmRSS


def _resources() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API,
            "kind": "Verifier",
            "metadata": {"name": "pinned"},
            "spec": {"type": "digest-pin"},
        },
        {
            "apiVersion": API,
            "kind": "ClusterImagePolicy",
            "metadata": {"name": "default"},
            "spec": {"scopes": ["*"], "allOf": ["pinned"]},
        },
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="countersign-kube-memory-"))
    cluster = Cluster(directory / "kube")
    try:
        cluster.etcd.start()
        cluster.apiserver.start()
        cluster.apply(chart_crds())
        cluster.kubectl("wait", "--for=condition=established", "crd", "--all", "--timeout=60s").check()
        cluster.namespace(NAMESPACE)
        cluster.apply(provider_rbac(NAMESPACE, "countersign"))
        cluster.apply(_resources()).check()
        kubeconfig = service_account_kubeconfig(cluster, directory / "kubeconfig", NAMESPACE, "countersign")
        configs: dict[str, dict[str, Any]] = {
            "file": {
                "apiVersion": API,
                "verifiers": {"pinned": {"type": "digest-pin"}},
                "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pinned"]}],
            },
            "kubernetes.enabled": {
                "apiVersion": API,
                "kubernetes": {"enabled": True, "namespace": NAMESPACE, "kubeconfig": str(kubeconfig)},
            },
        }
        rss: dict[str, list[float]] = {name: [] for name in configs}
        for run in range(args.runs):
            for name, config in configs.items():
                provider = start_provider(config, directory / f"{name}-{run}")
                try:
                    time.sleep(SETTLE)
                    rss[name].append(provider.rss_mib())
                finally:
                    provider.stop()
        print(f"{'configuration':<20} {'VmRSS once ready (MiB), median':>32} {'runs':>6}")
        for name, values in rss.items():
            print(f"{name:<20} {statistics.median(values):>32.1f} {len(values):>6}")
        extra = statistics.median(rss["kubernetes.enabled"]) - statistics.median(rss["file"])
        print(f"the Kubernetes source adds {extra:.1f} MiB")
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
