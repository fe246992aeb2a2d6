"""Countersign's OCI image (``make image``) built, loaded into podman and run the way the chart runs it.

* :func:`build_image` runs tools/image/build.sh (a no-op when the cache already holds the image of this
  work tree) and returns what it built (:class:`BuiltImage`: the OCI layout, its digest, its packages).
* :func:`load_image` copies it into the project's podman storage (skopeo, no registry).
* :class:`KubeletVolume` lays files out as the kubelet does for ConfigMap and Secret volumes: a
  timestamped directory, ``..data`` linking to it, and each file a link into ``..data``; ``update`` swaps
  the content atomically as the kubelet does.
* :func:`chart_provider` runs it as the chart's Deployment runs the provider (the chart's command and args,
  the configuration, TLS and Gatekeeper-CA volumes in the kubelet's layout at the chart's mount points,
  more read-only mounts such as ``trustMaterial``), waits until it is ready and yields a
  :class:`ChartProvider`; :meth:`ChartProvider.verify` asks ``/v1/verify`` over mutual TLS as Gatekeeper
  does (:class:`ProviderPki`: the serving certificate and Gatekeeper's client CA).
* :func:`podman` / :func:`start_container` run the image as the chart's Deployment does: read-only root,
  UID/GID 65532, no capabilities, no privilege escalation, an in-memory /tmp, the chart's environment;
  ``--network host`` (everything listens on 127.0.0.1), ``--ulimit host --runtime runc`` (this host's
  facts: crun fails on its hybrid cgroup layout, podman's default ulimits are refused).

Building needs root and Debian's apt (tools/system-packages.sh installs buildah, podman, runc, mmdebstrap).
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import trustme

from tests.support.tools import in_ci, tools_dir

__all__ = [
    "CHART_ENV",
    "CLIENT_CA_DIR",
    "CONFIG_DIR",
    "FS_GROUP",
    "IMAGE_USER",
    "TLS_DIR",
    "TRUST_DIR",
    "BuiltImage",
    "ChartProvider",
    "Container",
    "KubeletVolume",
    "ProviderPki",
    "build_image",
    "chart_provider",
    "container_env",
    "http_status",
    "image_cache",
    "load_image",
    "podman",
    "require_image_building",
    "run_args",
    "running",
    "server_config",
    "start_container",
    "wait_until",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The chart's runAsUser / runAsGroup / fsGroup.
IMAGE_USER = 65532
FS_GROUP = 65532
#: The environment the chart's Deployment sets (read-only root: everything written goes to /tmp).
CHART_ENV: dict[str, str] = {
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}
_BUILD_TIMEOUT = 1200.0
#: The chart's mount points (charts/countersign/templates/_helpers.tpl, "countersign.paths").
CONFIG_DIR = "/etc/countersign/config"
TLS_DIR = "/etc/countersign/tls"
CLIENT_CA_DIR = "/etc/countersign/gatekeeper"
TRUST_DIR = "/etc/countersign/trust"
_LOOPBACK = "127.0.0.1"


def image_cache() -> Path:
    """The project's cache (``$(CACHE)`` of the Makefile): the parent of the tools cache."""
    return tools_dir().parent


def require_image_building() -> None:
    """Fail (CI=true) or skip unless this process can build and run images (root, apt-get, dpkg)."""
    reason = None
    if os.geteuid() != 0:
        reason = "building and running the image needs root (mmdebstrap --mode=root, chroot, podman)"
    elif not Path("/usr/bin/apt-get").exists():
        reason = "building the image needs a Debian host with apt-get (tools/system-packages.sh)"
    if reason is not None:
        _missing(reason)


def _missing(reason: str) -> NoReturn:
    import pytest

    if in_ci():
        pytest.fail(f"{reason} (CI=true: the image tests do not skip)", pytrace=False)
    pytest.skip(reason)


def container_env() -> dict[str, str]:
    """os.environ plus CONTAINERS_CONF / CONTAINERS_STORAGE_CONF (tools/system-packages.sh, idempotent)."""
    env = {**os.environ, "CACHE": str(image_cache())}
    out = subprocess.run(
        [str(REPO_ROOT / "tools/system-packages.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"tools/system-packages.sh failed:\n{out.stderr}")
    for line in out.stdout.splitlines():
        name, _, value = line.partition("=")
        env[name] = value
    return env


@dataclass(frozen=True)
class BuiltImage:
    layout: Path
    ref: str
    digest: str
    version: str
    revision: str
    created: str
    python: tuple[str, ...]
    debian: tuple[str, ...]
    seconds: float

    @property
    def oci(self) -> str:
        """The ``oci:`` transport reference skopeo and buildah understand."""
        return f"oci:{self.layout}:{self.ref}"


def build_image(out: Path | None = None, *, force: bool = False) -> BuiltImage:
    """tools/image/build.sh into ``out`` (default the cache's image/), with this interpreter as PY."""
    command = [str(REPO_ROOT / "tools/image/build.sh")]
    if out is not None:
        command += ["--out", str(out)]
    if force:
        command.append("--force")
    env = {**os.environ, "CACHE": str(image_cache()), "PY": sys.executable}
    start = time.monotonic()
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, timeout=_BUILD_TIMEOUT, cwd=REPO_ROOT
    )
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    meta: dict[str, Any] = json.loads(((out or image_cache() / "image") / "countersign.json").read_text())
    return BuiltImage(
        layout=Path(meta["layout"]),
        ref=meta["ref"],
        digest=meta["digest"],
        version=meta["version"],
        revision=meta["revision"],
        created=meta["created"],
        python=tuple(meta["python"]),
        debian=tuple(meta["debian"]),
        seconds=seconds,
    )


def podman(
    *args: str, env: Mapping[str, str], timeout: float = 120.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], env=dict(env), capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def load_image(image: BuiltImage, env: Mapping[str, str]) -> str:
    """Copy the OCI layout into podman's storage (the cache's); returns the name to run. Images an
    earlier call loaded (other digests) are removed unless a container uses them."""
    name = f"localhost/countersign:{image.ref}-{image.digest[7:19]}"
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/countersign", env=env)
    stale = [line for line in listed.stdout.split() if line != name]
    if stale:
        podman("rmi", *stale, env=env, check=False)
    subprocess.run(
        ["skopeo", "copy", "-q", image.oci, f"containers-storage:{name}"],
        env=dict(env),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return name


@dataclass
class KubeletVolume:
    """A ConfigMap/Secret volume as the kubelet writes it: ``..<timestamp>/`` with the files,
    ``..data -> ..<timestamp>``, ``NAME -> ..data/NAME``; files owned root:fsGroup with ``mode``."""

    directory: Path
    mode: int = 0o644
    group: int = FS_GROUP
    _generation: int = field(default=0, init=False)

    def write(self, files: Mapping[str, bytes]) -> None:
        """Publish ``files`` (all of the volume's content) atomically, as an update by the kubelet."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        self._generation += 1
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y_%m_%d_%H_%M_%S")
        timestamped = self.directory / f"..{stamp}.{self._generation}{secrets.token_hex(4)}"
        timestamped.mkdir(mode=0o755)
        timestamped.chmod(0o755)
        for name, data in files.items():
            path = timestamped / name
            path.write_bytes(data)
            os.chown(path, 0, self.group)
            path.chmod(self.mode)
        data_link = self.directory / "..data"
        old = os.readlink(data_link) if data_link.is_symlink() else None
        tmp_link = self.directory / "..data_tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        tmp_link.symlink_to(timestamped.name)
        os.rename(tmp_link, data_link)
        for name in files:
            link = self.directory / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        for entry in self.directory.iterdir():
            if entry.is_symlink() and entry.name not in files and not entry.name.startswith(".."):
                entry.unlink()
        if old is not None:
            shutil.rmtree(self.directory / old)


@dataclass
class Container:
    name: str
    process: subprocess.Popen[bytes]
    log_file: Path
    env: Mapping[str, str]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """``podman stop`` (SIGTERM, then SIGKILL after ``timeout``); the exit status of ``podman run``."""
        podman("stop", "-t", str(int(timeout)), self.name, env=self.env, check=False, timeout=timeout + 30)
        try:
            return self.process.wait(timeout + 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return None
        finally:
            podman("rm", "-f", self.name, env=self.env, check=False)


def run_args(
    image: str,
    args: Sequence[str],
    *,
    mounts: Mapping[Path, str] | None = None,
    entrypoint: str | None = "countersign",
    extra_env: Mapping[str, str] | None = None,
) -> list[str]:
    """``podman run`` arguments for the image as the chart's container spec runs it."""
    command = [
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--network",
        "host",
        "--ulimit",
        "host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs",
        "/tmp:rw,nosuid,nodev,size=64m,mode=1777",
        "--user",
        f"{IMAGE_USER}:{IMAGE_USER}",
        "--group-add",
        str(FS_GROUP),
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--pull",
        "never",
    ]
    for key, value in {**CHART_ENV, **(extra_env or {})}.items():
        command += ["--env", f"{key}={value}"]
    for source, target in (mounts or {}).items():
        command += ["--volume", f"{source}:{target}:ro"]
    if entrypoint is not None:
        command += ["--entrypoint", entrypoint]
    return [*command, image, *args]


def start_container(
    image: str,
    args: Sequence[str],
    log_file: Path,
    env: Mapping[str, str],
    *,
    mounts: Mapping[Path, str] | None = None,
) -> Container:
    name = f"countersign-test-{secrets.token_hex(4)}"
    command = ["podman", *run_args(image, args, mounts=mounts)]
    command[2:2] = ["--name", name]
    with log_file.open("ab") as log:
        log.write(f"--- starting: {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=dict(env)
        )
    return Container(name, process, log_file, env)


@contextlib.contextmanager
def running(
    image: str,
    args: Sequence[str],
    log_file: Path,
    env: Mapping[str, str],
    *,
    mounts: Mapping[Path, str] | None = None,
) -> Iterator[Container]:
    container = start_container(image, args, log_file, env, mounts=mounts)
    try:
        yield container
    finally:
        container.stop()


class ProviderPki:
    """The provider's serving certificate (from a CA the client trusts) and Gatekeeper's client CA."""

    def __init__(self) -> None:
        self.server_ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.leaf = self.server_ca.issue_cert(_LOOPBACK, "countersign.gatekeeper-system.svc")

    def tls_files(self) -> dict[str, bytes]:
        return {
            "tls.crt": b"".join(blob.bytes() for blob in self.leaf.cert_chain_pems),
            "tls.key": self.leaf.private_key_pem.bytes(),
        }

    def client(self, *, with_certificate: bool = True) -> ssl.SSLContext:
        """A client context trusting the serving CA, with Gatekeeper's client certificate unless told not."""
        ctx = ssl.create_default_context()
        self.server_ca.configure_trust(ctx)
        if with_certificate:
            self.client_ca.issue_cert("gatekeeper-webhook-service.gatekeeper-system.svc").configure_cert(ctx)
        return ctx


def server_config(port: int, health_port: int) -> dict[str, Any]:
    """The ``server`` section the chart renders (listener and TLS files at the chart's paths)."""
    return {
        "address": _LOOPBACK,
        "port": port,
        "healthPort": health_port,
        "configReloadInterval": "200ms",
        "tls": {
            "certFile": f"{TLS_DIR}/tls.crt",
            "keyFile": f"{TLS_DIR}/tls.key",
            "clientCAFile": f"{CLIENT_CA_DIR}/ca.crt",
        },
    }


def http_status(port: int, path: str) -> int:
    """The status of a plain-HTTP GET on 127.0.0.1 (the health port)."""
    conn = http.client.HTTPConnection(_LOOPBACK, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, container: Container) -> float:
    """Seconds until ``predicate()`` holds (connection errors count as not yet); fails the test with the
    container's log when it exits or ``timeout`` passes (``what`` says what did not happen)."""
    import pytest

    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except OSError:
            pass
        if container.process.poll() is not None:
            pytest.fail(f"the container exited ({container.process.returncode}):\n{container.log_tail()}")
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what} within {timeout}s:\n{container.log_tail()}")
        time.sleep(0.05)


@dataclass
class ChartProvider:
    """A provider container started by :func:`chart_provider`."""

    container: Container
    pki: ProviderPki
    port: int
    health_port: int
    #: Seconds from ``podman run`` to /readyz answering 200.
    ready_after: float

    def verify(self, *keys: str, ctx: ssl.SSLContext | None = None, timeout: float = 60) -> dict[str, Any]:
        """POST a ProviderRequest for ``keys`` to /v1/verify over mutual TLS (Gatekeeper's client
        certificate unless ``ctx`` says otherwise); the response's items by key."""
        body = {
            "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
            "kind": "ProviderRequest",
            "request": {"keys": keys},
        }
        conn = http.client.HTTPSConnection(
            _LOOPBACK, self.port, context=ctx or self.pki.client(), timeout=timeout
        )
        try:
            conn.request("POST", "/v1/verify", json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"/v1/verify answered {response.status}: {payload[:300]!r}")
        finally:
            conn.close()
        items = json.loads(payload)["response"]["items"]
        return {item["key"]: item for item in items}


@contextlib.contextmanager
def chart_provider(
    image: str,
    env: Mapping[str, str],
    directory: Path,
    config: Callable[[int, int], bytes],
    *,
    mounts: Mapping[Path, str] | None = None,
    ready_timeout: float = 60,
) -> Iterator[ChartProvider]:
    """Run ``image`` as the chart runs the provider: ``config(port, health_port)`` is the configuration
    (it should use :func:`server_config`), published with the TLS files and Gatekeeper's CA in the
    kubelet's volume layout under ``directory``; ``mounts`` adds read-only mounts (host dir -> path).
    Yields once /readyz answers 200; stops the container (SIGTERM) afterwards."""
    from tests.support.registries import free_ports

    pki = ProviderPki()
    port, health_port = free_ports(2)
    config_volume = KubeletVolume(directory / "config")
    config_volume.write({"config.yaml": config(port, health_port)})
    tls = KubeletVolume(directory / "tls", mode=0o440)  # the chart's defaultMode, readable through fsGroup
    tls.write(pki.tls_files())
    client_ca = KubeletVolume(directory / "gatekeeper", mode=0o444)
    client_ca.write({"ca.crt": pki.client_ca.cert_pem.bytes()})
    # The chart's command and args (templates/deployment.yaml).
    args = ["--log-level=info", "serve", f"--config={CONFIG_DIR}/config.yaml"]
    all_mounts = {
        config_volume.directory: CONFIG_DIR,
        tls.directory: TLS_DIR,
        client_ca.directory: CLIENT_CA_DIR,
        **(mounts or {}),
    }
    start = time.monotonic()
    with running(image, args, directory / "container.log", env, mounts=all_mounts) as container:
        wait_until(lambda: http_status(health_port, "/readyz") == 200, ready_timeout, "not ready", container)
        yield ChartProvider(container, pki, port, health_port, time.monotonic() - start)
