"""`make image`: Countersign's OCI image, reproducible, and run the way the chart runs it.

The image is built once per session into the cache (tools/image/build.sh; a no-op when the cache holds the
image of this work tree), then again from scratch into a scratch directory: both builds must give the same
manifest digest. It is loaded into podman (the project's own storage, no registry) and run as the chart's
Deployment runs it: read-only root, UID/GID 65532, no capabilities, an in-memory /tmp, the configuration and
the TLS files mounted in the kubelet's layout (``..data`` links), the probes on the health port, and
/v1/verify over mutual TLS against a real registry on 127.0.0.1.

Cost: a cold build (Debian packages and wheels downloaded) about a minute and a half, a warm one about 35 s;
the second build is always a full one.
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import re
import ssl
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.container import (
    FS_GROUP,
    IMAGE_USER,
    BuiltImage,
    KubeletVolume,
    ProviderPki,
    build_image,
    container_env,
    load_image,
    podman,
    require_image_building,
    run_args,
    running,
    wait_until,
)
from tests.support.images import PushedImage, attach_sbom, push_image
from tests.support.registries import LOOPBACK, Registry, free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_VALUES = REPO_ROOT / "charts/countersign/values.yaml"
# The chart's mount points (charts/countersign/templates/_helpers.tpl, "countersign.paths").
CONFIG_DIR = "/etc/countersign/config"
TLS_DIR = "/etc/countersign/tls"
CLIENT_CA_DIR = "/etc/countersign/gatekeeper"


@pytest.fixture(scope="module")
def built() -> BuiltImage:
    require_image_building()
    return build_image()


@pytest.fixture(scope="module")
def env(built: BuiltImage) -> dict[str, str]:
    return container_env()


@pytest.fixture(scope="module")
def image(built: BuiltImage, env: dict[str, str]) -> str:
    return load_image(built, env)


def _blob(image: BuiltImage, digest: str) -> bytes:
    return (image.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def _manifest_and_config(image: BuiltImage) -> tuple[dict[str, Any], dict[str, Any]]:
    manifest: dict[str, Any] = json.loads(_blob(image, image.digest))
    config: dict[str, Any] = json.loads(_blob(image, manifest["config"]["digest"]))
    return manifest, config


def _layer_members(image: BuiltImage) -> dict[str, tarfile.TarInfo]:
    manifest, _ = _manifest_and_config(image)
    (layer,) = manifest["layers"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(_blob(image, layer["digest"])))) as tar:
        return {member.name.removeprefix("./").rstrip("/"): member for member in tar.getmembers()}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def test_two_builds_give_the_same_digest(built: BuiltImage, tmp_path: Path) -> None:
    again = build_image(tmp_path / "again", force=True)
    assert again.digest == built.digest, (
        f"the image is not reproducible: {built.digest} ({built.layout}) then {again.digest} "
        f"({again.layout}); compare the two layouts' layers (e.g. diffoscope)"
    )
    assert again.debian == built.debian
    print(f"\nimage {built.digest}: rebuilt in {again.seconds:.0f}s with the same digest")


def test_image_configuration(built: BuiltImage) -> None:
    manifest, config = _manifest_and_config(built)
    values = yaml.safe_load(CHART_VALUES.read_text())
    ports = {f"{values['server']['port']}/tcp", f"{values['server']['healthPort']}/tcp"}
    assert config["os"] == "linux"
    assert config["config"]["User"] == f"{IMAGE_USER}:{IMAGE_USER}"
    assert config["config"]["Entrypoint"] == ["/opt/countersign/bin/countersign"]
    assert set(config["config"]["ExposedPorts"]) == ports
    assert "PATH=/opt/countersign/bin:/usr/bin" in config["config"]["Env"]
    labels = config["config"]["Labels"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert labels["org.opencontainers.image.revision"] in (head, f"{head}-dirty")
    assert labels["org.opencontainers.image.version"] == built.version
    commit_time = subprocess.run(
        ["git", "log", "-1", "--format=%ct"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(commit_time)))
    assert labels["org.opencontainers.image.created"] == created == config["created"]
    assert len(manifest["layers"]) == 1


def test_image_contents(built: BuiltImage) -> None:
    members = _layer_members(built)
    # No shell, no package manager, no perl: only the interpreter in /usr/bin.
    for path in (
        "usr/bin/sh",
        "usr/bin/bash",
        "usr/bin/dash",
        "usr/bin/dpkg",
        "usr/bin/apt-get",
        "usr/bin/perl",
    ):
        assert path not in members, path
    programs = sorted(name for name in members if re.fullmatch(r"usr/s?bin/[^/]+", name))
    assert programs == ["usr/bin/python3.11"], programs
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    # The users: root and the chart's 65532, whose home is its own.
    assert members["home/nonroot"].uid == IMAGE_USER and members["home/nonroot"].mode & 0o777 == 0o700
    # Nothing host- or build-specific.
    for path in ("etc/machine-id", "etc/hostname", "etc/resolv.conf"):
        assert members[path].size == 0, path
    assert not [name for name in members if name.startswith(("etc/apt", "var/lib/apt", "var/cache/", "tmp/"))]
    assert not [name for name in members if name.endswith((".key", "id_rsa", ".netrc"))]
    # Every Python distribution is the one constraints.txt pins; countersign is this checkout's version.
    pins = _pins()
    installed = {}
    for name in members:
        found = re.fullmatch(
            r"opt/countersign/lib/python3\.11/site-packages/([^/]+)-([^-/]+)\.dist-info", name
        )
        if found:
            installed[re.sub(r"[-_.]+", "-", found.group(1)).lower()] = found.group(2)
    assert installed.pop("countersign") == built.version
    assert installed, "no dependencies installed"
    assert {name: pins.get(name) for name in installed} == installed
    # Byte code for every module, validated by hash (never by a timestamp).
    pyc = [m for name, m in members.items() if name.endswith(".pyc")]
    assert len(pyc) > 1000
    assert members["opt/countersign/lib/python3.11/site-packages/provider/__pycache__/cli.cpython-311.pyc"]
    # The Kubernetes client without its unused asynchronous twin (tools/image/build.sh).
    site = "opt/countersign/lib/python3.11/site-packages/"
    assert members[f"{site}kubernetes/client/__pycache__/api_client.cpython-311.pyc"]
    assert not [name for name in members if name.startswith(f"{site}kubernetes/aio")]
    # The Debian packages left are what runs Python, with their licences.
    debian = {line.split()[0] for line in built.debian}
    assert {"python3.11-minimal", "libpython3.11-stdlib", "libssl3", "ca-certificates"} <= debian
    assert not debian & {"dpkg", "apt", "bash", "dash", "coreutils", "perl-base", "debconf"}
    status = [name for name in members if name == "var/lib/dpkg/status"]
    assert status, "no dpkg status for SBOM scanners"


def _podman_run(
    image: str, env: dict[str, str], *args: str, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return podman(*run_args(image, args, **kwargs), env=env, check=False)


def test_runs_read_only_as_65532_without_a_shell(image: str, env: dict[str, str], tmp_path: Path) -> None:
    version = _podman_run(image, env, "--version")
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"countersign \S+\n", version.stdout), version.stdout

    probe = _podman_run(
        image,
        env,
        "-c",
        # The Kubernetes client imports without what the build prunes of it.
        "import os, ssl, kubernetes.client, kubernetes.config; ctx = ssl.create_default_context(); "
        "print(os.getuid(), os.getgid(), len(ctx.get_ca_certs()) > 100, os.access('/', os.W_OK))",
        entrypoint="/opt/countersign/bin/python",
    )
    assert probe.returncode == 0, probe.stderr
    # 65532, the system CA bundle (for registries on the Internet), a read-only root.
    assert probe.stdout.split() == [str(IMAGE_USER), str(IMAGE_USER), "True", "False"]

    for shell in ("/bin/sh", "/bin/bash"):
        no_shell = _podman_run(image, env, "-c", "true", entrypoint=shell)
        assert no_shell.returncode != 0

    config = KubeletVolume(tmp_path / "config")
    config.write(
        {"config.yaml": b"verifiers: {pin: {type: digest-pin}}\npolicies: [{scope: '*', allOf: [pin]}]\n"}
    )
    valid = _podman_run(
        image, env, "config", "validate", f"{CONFIG_DIR}/config.yaml", mounts={config.directory: CONFIG_DIR}
    )
    assert valid.returncode == 0, valid.stderr
    assert "valid (fingerprint sha256:" in valid.stdout


def _config(registry: Registry, port: int, health_port: int, policy: list[str]) -> bytes:
    doc = {
        "server": {
            "address": LOOPBACK,
            "port": port,
            "healthPort": health_port,
            "configReloadInterval": "200ms",
            "tls": {
                "certFile": f"{TLS_DIR}/tls.crt",
                "keyFile": f"{TLS_DIR}/tls.key",
                "clientCAFile": f"{CLIENT_CA_DIR}/ca.crt",
            },
        },
        "registries": {registry.host: {"insecure": True}},
        "verifiers": {"sbom": {"type": "sbom"}, "pinned": {"type": "digest-pin"}},
        "policies": [{"name": "default", "scopes": ["*"], "allOf": policy}],
    }
    return yaml.safe_dump(doc).encode()


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _verify(port: int, ctx: ssl.SSLContext, *keys: str) -> dict[str, Any]:
    body = {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {"keys": keys},
    }
    conn = http.client.HTTPSConnection(LOOPBACK, port, context=ctx, timeout=30)
    try:
        conn.request("POST", "/v1/verify", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        assert response.status == 200, payload[:300]
    finally:
        conn.close()
    items = json.loads(payload)["response"]["items"]
    return {item["key"]: item for item in items}


@pytest.fixture
def images(olareg_registry: Registry, repo_name: str) -> Iterator[tuple[PushedImage, PushedImage]]:
    good = push_image(olareg_registry, repo_name, "good")
    attach_sbom(olareg_registry, good, fmt="cyclonedx")
    bare = push_image(olareg_registry, repo_name, "bare")
    yield good, bare


def test_serves_as_the_chart_runs_it(
    image: str,
    env: dict[str, str],
    olareg_registry: Registry,
    images: tuple[PushedImage, PushedImage],
    tmp_path: Path,
) -> None:
    good, bare = images
    pki = ProviderPki()
    port, health_port = free_ports(2)
    config = KubeletVolume(tmp_path / "config")
    config.write({"config.yaml": _config(olareg_registry, port, health_port, ["sbom"])})
    tls = KubeletVolume(tmp_path / "tls", mode=0o440)  # the chart's defaultMode, readable through fsGroup
    tls.write(pki.tls_files())
    client_ca = KubeletVolume(tmp_path / "gatekeeper", mode=0o444)
    client_ca.write({"ca.crt": pki.client_ca.cert_pem.bytes()})
    # The chart's command and args (templates/deployment.yaml).
    args = ["--log-level=info", "serve", f"--config={CONFIG_DIR}/config.yaml"]
    mounts = {config.directory: CONFIG_DIR, tls.directory: TLS_DIR, client_ca.directory: CLIENT_CA_DIR}
    assert (tmp_path / "tls" / "tls.key").stat().st_gid == FS_GROUP

    start = time.monotonic()
    with running(image, args, tmp_path / "container.log", env, mounts=mounts) as container:
        wait_until(lambda: _get(health_port, "/healthz") == 200, 60, "no /healthz", container)
        healthy = time.monotonic() - start
        wait_until(lambda: _get(health_port, "/readyz") == 200, 60, "not ready", container)
        ready = time.monotonic() - start
        print(f"\ncontainer: /healthz after {healthy:.2f}s, /readyz after {ready:.2f}s")

        items = _verify(port, pki.client(), good.reference, bare.pinned)
        assert items[good.reference]["value"]["allowed"] is True, items
        assert items[bare.pinned]["value"]["allowed"] is False, items
        assert "sbom_not_found" in json.dumps(items[bare.pinned]), items

        # Mutual TLS: without Gatekeeper's client certificate the handshake fails.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _verify(port, pki.client(with_certificate=False), good.reference)

        # The kubelet updates the ConfigMap volume (a new timestamped directory, ..data swapped):
        # the running container reloads it.
        config.write({"config.yaml": _config(olareg_registry, port, health_port, ["pinned"])})
        wait_until(
            lambda: _verify(port, pki.client(), bare.pinned)[bare.pinned]["value"]["allowed"] is True,
            30,
            "the updated configuration was not applied",
            container,
        )
        status = container.stop()
    # SIGTERM is a clean shutdown.
    assert status == 0, container.log_tail()
