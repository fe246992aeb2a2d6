"""The real cosign CLIs (v3 ``cosign``, v2 ``cosign2``) and skopeo as signers, fully offline.

Everything runs against the test-bed registries on 127.0.0.1 (tests/support/registries.py) with key pairs
(no Fulcio, no Rekor, no TSA). Nothing may leave the machine, and cosign tries to by default (Sigstore's TUF
repository, Rekor, Fulcio). A :class:`CosignEnv` prevents and detects that:

* **isolation**: every command gets a minimal environment: ``HOME``, ``XDG_*``, ``TUF_ROOT``,
  ``DOCKER_CONFIG`` and ``REGISTRY_AUTH_FILE`` point into the env's directory; no inherited ``COSIGN_*``,
  ``SIGSTORE_*``, ``TUF_*``, OIDC or CI variables; ``COSIGN_PASSWORD`` is empty (unencrypted key files);
* **prevention**: cosign v3 ``sign``/``attest`` get ``--signing-config`` (``cosign signing-config create``:
  no Rekor, TSA nor Fulcio) *and* ``--trusted-root`` (``cosign trusted-root create``: empty), else they
  fetch ``trusted_root.json`` from TUF first; v3's legacy formats use ``--use-signing-config=false
  --tlog-upload=false --new-bundle-format=false``; cosign2 signs with ``--tlog-upload=false``;
  ``verify``/``verify-attestation`` get ``--key K --insecure-ignore-tlog=true --trusted-root EMPTY``
  (cosign2 fetches the TUF trusted root without ``--trusted-root`` even when verifying with a key);
* **a trap**: ``HTTPS_PROXY``/``HTTP_PROXY`` point at a port of 127.0.0.1 that the env holds bound but never
  listens on (Go never proxies loopback, so the registries are reached directly): any other HTTP(S) request,
  TUF included, is refused on the spot without even a DNS lookup, and says ``proxyconnect`` on stderr;
* **detection**: each command runs under ``strace -f -e trace=connect`` when strace works here (probed
  once); a connect() to anything but 127.0.0.0/8 or ::1 (DNS included), or to the trap, raises
  :class:`NetworkEscapeError`, as does a TUF/Sigstore-service/proxy message on stderr (checked always).

Registries: plain HTTP gets ``--allow-insecure-registry --allow-http-registry``; HTTPS gets
``--registry-cacert CA`` (both cosign versions); skopeo gets ``--src-cert-dir``/``--dest-cert-dir``.

Where each format lands (olareg has the referrers API; distribution 2.8 does not, and cosign then writes the
referrers tag schema: an index tagged ``sha256-<hex>`` listing the referrers):

=============================  ===============================================  =============================
signer (``tool=``)             olareg                                           distribution 2.8
=============================  ===============================================  =============================
``sign_bundle`` v3 / v2        referrer, artifactType BUNDLE_ARTIFACT_TYPE      ``sha256-<hex>`` index entry
``sign_legacy`` v2 / v3        tag ``sha256-<hex>.sig``                         tag ``sha256-<hex>.sig``
``sign_oci11`` v2 / v3         referrer, artifactType COSIGN_SIG_ARTIFACT_TYPE  ``sha256-<hex>`` index entry
``attest_bundle`` v3 / v2      referrer, artifactType BUNDLE_ARTIFACT_TYPE      ``sha256-<hex>`` index entry
``attest_legacy`` v2 / v3      tag ``sha256-<hex>.att``                         tag ``sha256-<hex>.att``
``skopeo_sign`` (>= 1.10)      tag ``sha256-<hex>.sig``                         tag ``sha256-<hex>.sig``
=============================  ===============================================  =============================

One quirk: in the ``sha256-<hex>`` index written by *cosign2* ``--new-bundle-format``, the entry's
artifactType is ``application/vnd.oci.empty.v1+json`` (the config media type), not the bundle type that the
manifest itself declares; cosign v3 writes the bundle type there.

Every function is synchronous and runs subprocesses (about half a second per signature): from async code,
call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support.images import PushedImage
from tests.support.registries import LOOPBACK, Registry
from tests.support.tools import ensure_tool, find_tool

__all__ = [
    "ATTESTATION_PREDICATE_TYPES",
    "BUNDLE_ARTIFACT_TYPE",
    "COSIGN_SIG_ARTIFACT_TYPE",
    "IMPORTABLE_KEY_KINDS",
    "SIGNATURE_DIGEST_ALGORITHMS",
    "SIMPLESIGNING_MEDIA_TYPE",
    "VERIFIABLE_KEY_KINDS",
    "AttestationType",
    "CommandResult",
    "CosignEnv",
    "CosignError",
    "KeyKind",
    "KeyPair",
    "NetworkEscapeError",
    "Referrer",
    "SignatureArtifacts",
    "SkopeoSigstoreUnsupportedError",
    "StoredManifest",
    "Tool",
    "attest_bundle",
    "attest_legacy",
    "cosign_verify",
    "fetch_manifest",
    "generate_key_pair",
    "import_key_pair",
    "iter_referrer_manifests",
    "key_options",
    "private_key",
    "registry_flags",
    "sign_bundle",
    "sign_legacy",
    "sign_oci11",
    "signature_artifacts",
    "skopeo_sign",
    "skopeo_supports_sigstore",
    "strace_available",
    "verify_args",
]

Tool = Literal["cosign", "cosign2"]
#: ``cosign attest --type`` values; ``custom`` is the default of both CLIs.
AttestationType = Literal["spdxjson", "cyclonedx", "custom", "slsaprovenance", "slsaprovenance1", "vuln"]
KeyKind = Literal["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]
#: Every kind is accepted by ``import-key-pair`` of cosign v3.1.3 and v2.6.5 (PKCS#8 and PKCS#1/SEC1 PEM),
#: and signs; but see :data:`SIGNATURE_DIGEST_ALGORITHMS` and :data:`VERIFIABLE_KEY_KINDS`.
IMPORTABLE_KEY_KINDS: tuple[KeyKind, ...] = (
    "ecdsa-p256",
    "ecdsa-p384",
    "ecdsa-p521",
    "rsa-2048",
    "rsa-3072",
    "rsa-4096",
    "ed25519",
)

#: cosign signs with the hash that goes with the key (P-384: SHA-384, P-521: SHA-512) but verifies with
#: ``--signature-digest-algorithm`` (default sha256): verifying such keys needs the flag (both versions).
SIGNATURE_DIGEST_ALGORITHMS: dict[KeyKind, str] = {
    "ecdsa-p256": "sha256",
    "ecdsa-p384": "sha384",
    "ecdsa-p521": "sha512",
    "rsa-2048": "sha256",
    "rsa-3072": "sha256",
    "rsa-4096": "sha256",
    "ed25519": "sha512",
}
#: Ed25519 is missing: cosign signs with Ed25519ph, ``verify --key`` only knows pure Ed25519, so neither
#: version verifies its own Ed25519 image signatures (and v3's bundle signing fails its own self-check).
VERIFIABLE_KEY_KINDS: tuple[KeyKind, ...] = tuple(kind for kind in IMPORTABLE_KEY_KINDS if kind != "ed25519")

#: Sigstore bundle v0.3 referrer (cosign v3 ``sign``/``attest``, cosign2 ``--new-bundle-format``).
BUNDLE_ARTIFACT_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
#: Legacy cosign signature stored as an OCI 1.1 referrer (``--registry-referrers-mode=oci-1-1``).
COSIGN_SIG_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
#: in-toto predicate types that ``--type`` maps to.
ATTESTATION_PREDICATE_TYPES: dict[str, str] = {
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "custom": "https://cosign.sigstore.dev/attestation/v1",
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
}

_TIMEOUT = 60.0
_HTTP_TIMEOUT = 10.0
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
#: Inherited variables a command may see; everything else (credentials, COSIGN_*, SIGSTORE_*, TUF_*, CI and
#: OIDC variables, proxies) is dropped.
_INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
#: stderr that means a command tried (or would have tried) to reach a Sigstore service or the internet.
_ESCAPE_MARKERS = (
    "tuf-repo-cdn",
    "trusted_root.json",
    "TUF",
    "rekor.sigstore.dev",
    "fulcio.sigstore.dev",
    "timestamp.sigstore.dev",
    "oauth2.sigstore.dev",
    "proxyconnect",
    "no such host",
)
#: stderr of a verification that ran and rejected what it found (anything else is an error of the harness).
_REJECTIONS = (
    "no matching signatures",
    "no matching attestations",
    "no signatures found",
    "no attestations found",
    "invalid signature",
    "signature verification failed",
    "failed to verify signature",
    "accepted signatures do not match threshold",
    "none of the attestations matched the predicate type",
)
_CONNECT_RE = re.compile(r"connect\(\d+, \{sa_family=(?P<family>AF_\w+)(?P<rest>.*?)\}, \d+\)")
_INET_RE = re.compile(r'sin_port=htons\((?P<port>\d+)\), sin_addr=inet_addr\("(?P<addr>[^"]+)"\)')
_INET6_RE = re.compile(r'sin6_port=htons\((?P<port>\d+)\).*?inet_pton\(AF_INET6, "(?P<addr>[^"]+)"')


class CosignError(RuntimeError):
    """A command failed (or misbehaved); the message carries the command and its stderr."""

    def __init__(self, message: str, result: CommandResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class NetworkEscapeError(CosignError):
    """A command tried to reach something other than 127.0.0.1 (or a Sigstore service, or the proxy trap)."""


class SkopeoSigstoreUnsupportedError(CosignError):
    """skopeo cannot make sigstore signatures (Debian's 1.9.3: "Debian-local change: sigstore disabled")."""


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    #: connect() calls seen by strace (``"AF_INET 127.0.0.1:5000"``); empty when strace was not used.
    connections: tuple[str, ...] = ()
    traced: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        return f"$ {' '.join(self.args)}\n(exit {self.returncode})\nstderr:\n{self.stderr.strip()}"


# --- strace ------------------------------------------------------------------------------------------------


@functools.cache
def strace_available() -> bool:
    """Whether ``strace -f`` works here (it is missing, or ptrace is forbidden, in some containers)."""
    strace = find_tool("strace")
    if strace is None:
        return False
    try:
        probe = subprocess.run(
            [str(strace), "-f", "-qq", "-e", "trace=connect", "-o", os.devnull, "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _loopback(family: str, address: str) -> bool:
    if family == "AF_INET":
        return address.startswith("127.")
    return address == "::1" or address.startswith("::ffff:127.")


def _connections(trace: str, trap_port: int) -> tuple[list[str], list[str]]:
    """(every connect() in an strace log, the ones that leave loopback or hit the trap)."""
    seen: list[str] = []
    escapes: list[str] = []
    for line in trace.splitlines():
        match = _CONNECT_RE.search(line)
        if match is None:
            continue
        family, rest = match.group("family"), match.group("rest")
        if family == "AF_UNSPEC":  # disconnecting a UDP socket
            continue
        inet = (_INET_RE if family == "AF_INET" else _INET6_RE).search(rest)
        if family in {"AF_INET", "AF_INET6"} and inet is not None:
            address, port = inet.group("addr"), int(inet.group("port"))
            shown = f"{family} {address}:{port}"
            seen.append(shown)
            if not _loopback(family, address) or port == trap_port:
                escapes.append(shown)
        else:  # AF_UNIX (a resolver or credential helper socket), AF_NETLINK, ...: not ours, not allowed
            shown = f"{family}{rest}"
            seen.append(shown)
            escapes.append(shown)
    return seen, escapes


# --- the environment -------------------------------------------------------------------------------------


@dataclass(eq=False)
class CosignEnv:
    """An isolated, offline home for cosign/skopeo commands in ``directory`` (created if needed).

    Use one per test or per module (``with CosignEnv(tmp_path / "cosign") as env:``, or call
    :meth:`close`); it holds the proxy trap port until closed.
    """

    directory: Path
    timeout: float = _TIMEOUT
    #: Run commands under strace: ``None`` = when it works here; ``True`` = always (fails if it cannot).
    trace: bool | None = None
    _trap: socket.socket = field(init=False, repr=False)
    _trap_port: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()
        for path in (self.home, self.tuf_root, self.keys_dir, self.docker_config, self.work_dir):
            path.mkdir(parents=True, exist_ok=True)
        (self.home / ".run").mkdir(mode=0o700, exist_ok=True)
        self._trap = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._trap.bind((LOOPBACK, 0))  # bound, never listening: connections to it are refused at once
        self._trap_port = self._trap.getsockname()[1]
        (self.docker_config / "config.json").write_text("{}")
        if self.trace and not strace_available():
            raise CosignError("strace was requested but does not work here (missing, or ptrace forbidden)")
        self._offline_files()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._trap.close()

    # --- layout ------------------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.directory / "home"

    @property
    def tuf_root(self) -> Path:
        """``TUF_ROOT``: stays empty as long as nothing talks to TUF (tests may assert that)."""
        return self.directory / "tuf"

    @property
    def keys_dir(self) -> Path:
        return self.directory / "keys"

    @property
    def docker_config(self) -> Path:
        return self.directory / "docker"

    @property
    def work_dir(self) -> Path:
        """The working directory of every command."""
        return self.directory / "work"

    @property
    def signing_config(self) -> Path:
        """A signing config without any service (``cosign signing-config create``)."""
        return self.directory / "signing-config.json"

    @property
    def trusted_root(self) -> Path:
        """A trusted root without any service (``cosign trusted-root create``)."""
        return self.directory / "trusted-root.json"

    @property
    def trap_port(self) -> int:
        """The refused 127.0.0.1 port that ``HTTPS_PROXY``/``HTTP_PROXY`` point at."""
        return self._trap_port

    @property
    def traced(self) -> bool:
        return strace_available() if self.trace is None else self.trace

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The whole environment of a command (nothing else is inherited)."""
        env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
        trap = f"http://{LOOPBACK}:{self.trap_port}"
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            XDG_DATA_HOME=str(self.home / ".local" / "share"),
            XDG_RUNTIME_DIR=str(self.home / ".run"),
            TUF_ROOT=str(self.tuf_root),
            DOCKER_CONFIG=str(self.docker_config),
            REGISTRY_AUTH_FILE=str(self.docker_config / "config.json"),
            COSIGN_PASSWORD="",
            HTTPS_PROXY=trap,
            HTTP_PROXY=trap,
            https_proxy=trap,
            http_proxy=trap,
            NO_PROXY=f"{LOOPBACK},localhost,::1",
            no_proxy=f"{LOOPBACK},localhost,::1",
        )
        env.update(extra or {})
        return env

    def _offline_files(self) -> None:
        if not self.signing_config.exists():
            self.run("cosign", "signing-config", "create", "--out", str(self.signing_config))
        if not self.trusted_root.exists():
            self.run("cosign", "trusted-root", "create", "--out", str(self.trusted_root))

    # --- running -----------------------------------------------------------------------------------------

    def run(
        self,
        tool: str,
        *args: str,
        extra_env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> CommandResult:
        """Run ``tool`` (``cosign``, ``cosign2``, ``skopeo`` or a path) with ``args`` in this env.

        Raises :class:`NetworkEscapeError` whenever the command tried to leave 127.0.0.1, whatever its exit
        status; :class:`CosignError` on a non-zero exit when ``check`` (the default) or on a time-out.
        """
        if self._trap.fileno() == -1:
            # The trap port may be reused by then (by a registry even): escapes would no longer be refused.
            raise CosignError(f"this CosignEnv ({self.directory}) is closed")
        program = tool if "/" in tool else str(ensure_tool(tool))
        command = [program, *args]
        shown = (Path(program).name, *args)
        trace_file: Path | None = None
        if self.traced:
            strace = ensure_tool("strace")
            handle, name = tempfile.mkstemp(prefix="strace-", suffix=".log", dir=self.directory)
            os.close(handle)
            trace_file = Path(name)
            command = [
                str(strace),
                "-f",
                "-qq",
                "-e",
                "trace=connect",
                "-e",
                "signal=none",
                "-o",
                name,
                *command,
            ]
        limit = timeout or self.timeout
        with subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.environment(extra_env),
            cwd=self.work_dir,
            start_new_session=True,  # its own process group: a time-out kills strace and the tool alike
        ) as process:
            try:
                stdout, stderr = process.communicate(stdin or "", timeout=limit)
                returncode = process.returncode
                timed_out = False
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                stdout, stderr = process.communicate()
                returncode, timed_out = -signal.SIGKILL, True
        seen: list[str] = []
        escapes: list[str] = []
        if trace_file is not None:
            seen, escapes = _connections(trace_file.read_text(errors="replace"), self.trap_port)
            trace_file.unlink(missing_ok=True)
        result = CommandResult(shown, returncode, stdout, stderr, tuple(seen), trace_file is not None)
        markers = [marker for marker in _ESCAPE_MARKERS if marker in stderr]
        if f"{LOOPBACK}:{self.trap_port}" in stderr:
            markers.append("the proxy trap")
        if escapes or markers:
            raise NetworkEscapeError(
                f"a command tried to leave 127.0.0.1 (connect: {escapes or 'n/a'}; stderr mentions: "
                f"{markers or 'nothing'})\n{result.describe()}",
                result,
            )
        if timed_out:
            raise CosignError(f"timed out after {limit:.0f}s\n{result.describe()}", result)
        if check and not result.ok:
            raise CosignError(f"command failed\n{result.describe()}", result)
        return result


# --- keys --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    """A cosign key pair: ``private_path`` is cosign's encrypted format (empty password)."""

    name: str
    private_path: Path
    public_path: Path
    public_pem: bytes
    kind: KeyKind = "ecdsa-p256"
    #: The PKCS#8 PEM that was imported (``None`` for keys made by ``generate-key-pair``).
    source_path: Path | None = None

    @property
    def digest_algorithm(self) -> str:
        """What ``cosign verify --signature-digest-algorithm`` needs for signatures made with this key."""
        return SIGNATURE_DIGEST_ALGORITHMS[self.kind]


def key_options(*keys: KeyPair, **extra: Any) -> dict[str, Any]:
    """Options of Countersign's cosign verifier that trust ``keys`` (each under its own name), offline
    (``transparencyLog: skip``: no Rekor on the test bed), with ``extra`` options."""
    return {
        "keys": [{"name": key.name, "path": str(key.public_path)} for key in keys],
        "transparencyLog": "skip",
        **extra,
    }


def _key_paths(env: CosignEnv, name: str) -> tuple[Path, Path]:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"key name must be a plain file name, not {name!r}")
    private, public = env.keys_dir / f"{name}.key", env.keys_dir / f"{name}.pub"
    if private.exists() or public.exists():
        raise FileExistsError(f"a key pair named {name!r} already exists in {env.keys_dir}")
    return private, public


def generate_key_pair(env: CosignEnv, name: str, *, tool: Tool = "cosign") -> KeyPair:
    """``cosign generate-key-pair``: an ECDSA P-256 key pair ``keys/NAME.key``/``keys/NAME.pub``."""
    private, public = _key_paths(env, name)
    env.run(tool, "generate-key-pair", "--output-key-prefix", str(env.keys_dir / name))
    return KeyPair(name, private, public, public.read_bytes())


def private_key(kind: KeyKind) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """A fresh private key of ``kind`` (made with cryptography)."""
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa-")))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    curves: dict[str, ec.EllipticCurve] = {
        "ecdsa-p256": ec.SECP256R1(),
        "ecdsa-p384": ec.SECP384R1(),
        "ecdsa-p521": ec.SECP521R1(),
    }
    return ec.generate_private_key(curves[kind])


def import_key_pair(env: CosignEnv, name: str, kind: KeyKind, *, tool: Tool = "cosign") -> KeyPair:
    """Make a ``kind`` private key (PKCS#8 PEM, unencrypted) and ``cosign import-key-pair --key`` it."""
    private, public = _key_paths(env, name)
    source = env.keys_dir / f"{name}.pkcs8.pem"
    source.write_bytes(
        private_key(kind).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    source.chmod(0o600)
    env.run(tool, "import-key-pair", "--key", str(source), "--output-key-prefix", str(env.keys_dir / name))
    return KeyPair(name, private, public, public.read_bytes(), kind, source)


# --- signing -----------------------------------------------------------------------------------------------


def registry_flags(registry: Registry) -> list[str]:
    """cosign's connection flags (v3 and v2 alike) for ``registry``."""
    if registry.ca_file is not None:
        return ["--registry-cacert", str(registry.ca_file)]
    return ["--allow-insecure-registry", "--allow-http-registry"]


def _pinned(registry: Registry, image: PushedImage | str) -> str:
    """``HOST/REPO@DIGEST`` for a :class:`PushedImage` or ``"repo@sha256:<hex>"`` in ``registry``."""
    if isinstance(image, PushedImage):
        return f"{registry.host}/{image.repository}@{image.digest}"
    repo, _, digest = image.partition("@")
    if not repo or not _DIGEST_RE.match(digest):
        raise ValueError(f"image must be a PushedImage or 'repo@sha256:<hex>', not {image!r}")
    return f"{registry.host}/{image}"


def _annotation_flags(annotations: Mapping[str, str] | None) -> list[str]:
    return [flag for key, value in (annotations or {}).items() for flag in ("-a", f"{key}={value}")]


def _v3_bundle_flags(env: CosignEnv) -> list[str]:
    return ["--signing-config", str(env.signing_config), "--trusted-root", str(env.trusted_root)]


_V3_LEGACY = ("--use-signing-config=false", "--tlog-upload=false", "--new-bundle-format=false")


def sign_bundle(
    env: CosignEnv,
    key: KeyPair,
    registry: Registry,
    image: PushedImage | str,
    *,
    tool: Tool = "cosign",
    annotations: Mapping[str, str] | None = None,
) -> CommandResult:
    """A Sigstore bundle v0.3 (DSSE, predicateType ``https://sigstore.dev/cosign/sign/v1``) as a referrer.

    cosign v3's default; ``tool="cosign2"`` uses ``--new-bundle-format --tlog-upload=false`` (same result).
    Lands as a referrer of artifactType :data:`BUNDLE_ARTIFACT_TYPE` (the ``sha256-<hex>`` index tag on
    registries without the referrers API).
    """
    if tool == "cosign":
        flags = _v3_bundle_flags(env)
    else:
        flags = ["--new-bundle-format", "--tlog-upload=false"]
    return env.run(
        tool,
        "sign",
        "--key",
        str(key.private_path),
        *flags,
        *_annotation_flags(annotations),
        *registry_flags(registry),
        "-y",
        _pinned(registry, image),
    )


def sign_legacy(
    env: CosignEnv,
    key: KeyPair,
    registry: Registry,
    image: PushedImage | str,
    *,
    tool: Tool = "cosign2",
    annotations: Mapping[str, str] | None = None,
) -> CommandResult:
    """A simple-signing signature in the ``sha256-<hex>.sig`` tag (cosign2; v3 with its deprecated flags)."""
    flags = list(_V3_LEGACY) if tool == "cosign" else ["--tlog-upload=false"]
    return env.run(
        tool,
        "sign",
        "--key",
        str(key.private_path),
        *flags,
        *_annotation_flags(annotations),
        *registry_flags(registry),
        "-y",
        _pinned(registry, image),
    )


def sign_oci11(
    env: CosignEnv,
    key: KeyPair,
    registry: Registry,
    image: PushedImage | str,
    *,
    tool: Tool = "cosign2",
    annotations: Mapping[str, str] | None = None,
) -> CommandResult:
    """A simple-signing signature as an OCI 1.1 referrer (``COSIGN_EXPERIMENTAL=1``, ``oci-1-1`` mode).

    artifactType :data:`COSIGN_SIG_ARTIFACT_TYPE`, one :data:`SIMPLESIGNING_MEDIA_TYPE` layer; on registries
    without the referrers API cosign falls back to the ``sha256-<hex>`` index tag.
    """
    flags = list(_V3_LEGACY) if tool == "cosign" else ["--tlog-upload=false"]
    return env.run(
        tool,
        "sign",
        "--key",
        str(key.private_path),
        *flags,
        "--registry-referrers-mode=oci-1-1",
        *_annotation_flags(annotations),
        *registry_flags(registry),
        "-y",
        _pinned(registry, image),
        extra_env={"COSIGN_EXPERIMENTAL": "1"},
    )


def attest_bundle(
    env: CosignEnv,
    key: KeyPair,
    registry: Registry,
    image: PushedImage | str,
    predicate_file: Path,
    type: AttestationType | str = "custom",
    *,
    tool: Tool = "cosign",
) -> CommandResult:
    """An in-toto attestation in a Sigstore bundle v0.3 referrer (cosign v3 ``attest``).

    ``type`` is ``spdxjson``, ``cyclonedx``, ``custom`` (``predicate_file`` is then any JSON), ... or a
    predicate type URI. ``tool="cosign2"`` uses ``--new-bundle-format --tlog-upload=false``.
    """
    if tool == "cosign":
        flags = _v3_bundle_flags(env)
    else:
        flags = ["--new-bundle-format", "--tlog-upload=false"]
    return env.run(
        tool,
        "attest",
        "--key",
        str(key.private_path),
        "--type",
        type,
        "--predicate",
        str(predicate_file),
        *flags,
        *registry_flags(registry),
        "-y",
        _pinned(registry, image),
    )


def attest_legacy(
    env: CosignEnv,
    key: KeyPair,
    registry: Registry,
    image: PushedImage | str,
    predicate_file: Path,
    type: AttestationType | str = "custom",
    *,
    tool: Tool = "cosign2",
) -> CommandResult:
    """A DSSE in-toto attestation in the ``sha256-<hex>.att`` tag (cosign2; v3 with deprecated flags)."""
    flags = list(_V3_LEGACY) if tool == "cosign" else ["--tlog-upload=false"]
    return env.run(
        tool,
        "attest",
        "--key",
        str(key.private_path),
        "--type",
        type,
        "--predicate",
        str(predicate_file),
        *flags,
        *registry_flags(registry),
        "-y",
        _pinned(registry, image),
    )


# --- verifying ---------------------------------------------------------------------------------------------


def verify_args(
    env: CosignEnv,
    tool: Tool,
    public_key_path: Path,
    registry: Registry,
    image: PushedImage | str,
    *,
    attestation_type: str | None = None,
    experimental_oci11: bool = False,
    digest_algorithm: str | None = None,
) -> list[str]:
    """The offline ``verify``/``verify-attestation`` command line (without the program)."""
    args = ["verify" if attestation_type is None else "verify-attestation", "--key", str(public_key_path)]
    if attestation_type is not None:
        args += ["--type", attestation_type]
    args += [
        "--insecure-ignore-tlog=true",
        "--trusted-root",
        str(env.trusted_root),
        *registry_flags(registry),
    ]
    if experimental_oci11:
        args.append("--experimental-oci11")
    if digest_algorithm is not None:
        args += ["--signature-digest-algorithm", digest_algorithm]
    args.append(_pinned(registry, image))
    return args


def cosign_verify(
    env: CosignEnv,
    tool: Tool,
    public_key_path: Path,
    registry: Registry,
    image: PushedImage | str,
    *,
    tlog: bool = False,
    attestation_type: str | None = None,
    experimental_oci11: bool = False,
    digest_algorithm: str | None = None,
) -> bool:
    """Whether ``tool verify`` (``verify-attestation`` with ``attestation_type``) accepts ``image``.

    Offline: ``--key KEY --insecure-ignore-tlog=true``. cosign v3 looks for bundle referrers first and falls
    back to the legacy ``.sig``/``.att`` tags; legacy signatures stored as OCI 1.1 referrers
    (:func:`sign_oci11`) need ``experimental_oci11=True`` (``--experimental-oci11``) with either version.
    Keys other than P-256/RSA need ``digest_algorithm`` (:attr:`KeyPair.digest_algorithm`).
    Beware: cosign v3 ``verify`` accepts *any* bundle referrer signed by the key, attestations included
    (it does not check the predicate type); cosign2 ``verify`` does too once it has found bundles.
    ``False`` means cosign ran and rejected what it found (or found nothing); any other failure raises.
    """
    if tlog:
        raise ValueError("verifying against a transparency log needs a Rekor: not available offline")
    args = verify_args(
        env,
        tool,
        public_key_path,
        registry,
        image,
        attestation_type=attestation_type,
        experimental_oci11=experimental_oci11,
        digest_algorithm=digest_algorithm,
    )
    extra = {"COSIGN_EXPERIMENTAL": "1"} if experimental_oci11 else None
    result = env.run(tool, *args, check=False, extra_env=extra)
    if result.ok:
        return True
    if any(rejection in result.stderr for rejection in _REJECTIONS):
        return False
    raise CosignError(f"{tool} failed without rejecting a signature\n{result.describe()}", result)


# --- skopeo ------------------------------------------------------------------------------------------------


def _skopeo_files(env: CosignEnv) -> tuple[Path, Path, Path]:
    base = env.directory / "skopeo"
    registries_d = base / "registries.d"
    registries_d.mkdir(parents=True, exist_ok=True)
    # Without this, sigstore signatures would not be written (skopeo's default is "simple signing" stores).
    (registries_d / "default.yaml").write_text("default-docker:\n  use-sigstore-attachments: true\n")
    policy = base / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    passphrase = base / "passphrase"
    passphrase.write_text("")  # cosign keys made here have an empty password
    (base / "registries.conf").write_text("")  # not the host's: no mirrors, no rewrites
    return registries_d, policy, passphrase


def _skopeo_tls_flags(registry: Registry, env: CosignEnv) -> list[str]:
    if registry.ca_file is None:
        return ["--src-tls-verify=false", "--dest-tls-verify=false"]
    cert_dir = env.directory / "skopeo" / f"certs-{registry.port}"
    cert_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(registry.ca_file, cert_dir / "ca.crt")
    return ["--src-cert-dir", str(cert_dir), "--dest-cert-dir", str(cert_dir)]


def skopeo_sign(
    env: CosignEnv,
    key: KeyPair,
    registry: Registry,
    image: PushedImage | str,
    *,
    skopeo: str = "skopeo",
) -> CommandResult:
    """Sign ``image`` with skopeo (``copy --preserve-digests --sign-by-sigstore-private-key`` onto itself).

    skopeo writes a cosign-compatible simple-signing signature in the ``sha256-<hex>.sig`` tag (sigstore
    attachments). Debian's skopeo 1.9.3 has the flag but refuses ("Debian-local change: sigstore
    disabled"): that raises :class:`SkopeoSigstoreUnsupportedError`; upstream skopeo >= 1.10 works.
    ``skopeo`` is a program name (found with the other tools) or a path.
    """
    registries_d, policy, passphrase = _skopeo_files(env)
    pinned = f"docker://{_pinned(registry, image)}"
    result = env.run(
        skopeo,
        "--registries.d",
        str(registries_d),
        "--policy",
        str(policy),
        "copy",
        "--preserve-digests",
        "--retry-times",
        "0",
        *_skopeo_tls_flags(registry, env),
        "--sign-by-sigstore-private-key",
        str(key.private_path),
        "--sign-passphrase-file",
        str(passphrase),
        pinned,
        pinned,
        check=False,
        extra_env={"CONTAINERS_REGISTRIES_CONF": str(registries_d.parent / "registries.conf")},
    )
    if not result.ok and "sigstore disabled" in result.stderr:
        raise SkopeoSigstoreUnsupportedError(
            f"this skopeo cannot make sigstore signatures (Debian disables it)\n{result.describe()}", result
        )
    if not result.ok:
        raise CosignError(f"skopeo copy --sign-by-sigstore-private-key failed\n{result.describe()}", result)
    return result


@functools.cache
def _skopeo_version(program: str) -> tuple[int, ...]:
    out = subprocess.run(
        [program, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else ()


@functools.cache
def skopeo_supports_sigstore(skopeo: str = "skopeo") -> bool:
    """Whether ``skopeo`` can sign with a sigstore key: >= 1.10, and not Debian's build (it disables that)."""
    program = skopeo if "/" in skopeo else str(find_tool(skopeo) or "")
    if not program or not Path(program).exists():
        return False
    if _skopeo_version(program) < (1, 10, 0):
        return False
    # Debian patches sigstore signing out of its build while keeping the flag; the binary says so.
    return b"Debian-local change: sigstore disabled" not in Path(program).read_bytes()


# --- what landed in the registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredManifest:
    """A manifest as stored in the registry (a referrer, or a ``.sig``/``.att`` tag)."""

    digest: str
    media_type: str
    #: ``artifactType``, else the config media type (the OCI 1.1 rule for referrers).
    artifact_type: str | None
    config_media_type: str | None
    layer_media_types: tuple[str, ...]
    annotations: Mapping[str, str]
    subject: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Referrer:
    """One descriptor of the referrers list (API or ``sha256-<hex>`` tag schema)."""

    digest: str
    media_type: str
    artifact_type: str | None
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class SignatureArtifacts:
    """What signers left for one subject digest in one repository."""

    repository: str
    digest: str
    #: ``"api"`` (``GET /v2/<repo>/referrers/<digest>``), ``"tag"`` (the ``sha256-<hex>`` index) or
    #: ``"none"`` (no referrers API and no such tag).
    referrers_source: Literal["api", "tag", "none"]
    referrers: tuple[Referrer, ...]
    #: cosign's tags for this digest (``sha256-<hex>.sig``, ``.att``, ``.sbom``), with their manifests.
    cosign_tags: Mapping[str, StoredManifest]
    #: Every tag of the repository (to assert that nothing else appeared).
    all_tags: tuple[str, ...]

    @property
    def tag_prefix(self) -> str:
        return self.digest.replace(":", "-")

    @property
    def referrer_artifact_types(self) -> list[str]:
        return sorted(referrer.artifact_type or "" for referrer in self.referrers)

    @property
    def signature_tag(self) -> str:
        return f"{self.tag_prefix}.sig"

    @property
    def attestation_tag(self) -> str:
        return f"{self.tag_prefix}.att"

    def referrers_of_type(self, artifact_type: str) -> list[Referrer]:
        return [referrer for referrer in self.referrers if referrer.artifact_type == artifact_type]


class _Http:
    """Minimal GETs against a test-bed registry (http.client: no proxies, only 127.0.0.1)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def get(self, path: str, accept: str) -> tuple[int, bytes, str]:
        connection: http.client.HTTPConnection
        if self.registry.tls:
            connection = http.client.HTTPSConnection(
                LOOPBACK, self.registry.port, timeout=_HTTP_TIMEOUT, context=self.registry.ssl_context()
            )
        else:
            connection = http.client.HTTPConnection(LOOPBACK, self.registry.port, timeout=_HTTP_TIMEOUT)
        try:
            connection.request("GET", path, headers={"Accept": accept})
            response = connection.getresponse()
            return response.status, response.read(), response.getheader("Content-Type") or ""
        finally:
            connection.close()

    def json(self, path: str, accept: str = "application/json") -> dict[str, Any] | None:
        """The JSON body, ``None`` on 404; anything else but 200 raises."""
        status, body, _ = self.get(path, accept)
        if status == 404:
            return None
        if status != 200:
            raise CosignError(f"GET {self.registry.url}{path}: HTTP {status}: {body[:300]!r}")
        value = json.loads(body)
        if not isinstance(value, dict):
            raise CosignError(f"GET {self.registry.url}{path}: not a JSON object")
        return value


_MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


def _stored(digest: str, manifest: Mapping[str, Any]) -> StoredManifest:
    config = manifest.get("config") or {}
    layers = manifest.get("layers") or []
    subject = manifest.get("subject") or {}
    return StoredManifest(
        digest=digest,
        media_type=str(manifest.get("mediaType", "")),
        artifact_type=manifest.get("artifactType") or config.get("mediaType"),
        config_media_type=config.get("mediaType"),
        layer_media_types=tuple(str(layer.get("mediaType", "")) for layer in layers),
        annotations=dict(manifest.get("annotations") or {}),
        subject=subject.get("digest"),
        raw=manifest,
    )


def fetch_manifest(registry: Registry, repo: str, reference: str) -> StoredManifest | None:
    """The manifest ``reference`` (tag or digest) of ``repo``, ``None`` when it does not exist."""
    http_ = _Http(registry)
    status, body, _ = http_.get(f"/v2/{repo}/manifests/{reference}", _MANIFEST_ACCEPT)
    if status == 404:
        return None
    if status != 200:
        raise CosignError(f"GET manifest {repo}:{reference}: HTTP {status}: {body[:300]!r}")
    digest = reference if _DIGEST_RE.match(reference) else "sha256:" + hashlib.sha256(body).hexdigest()
    return _stored(digest, json.loads(body))


def _referrers(index: Mapping[str, Any]) -> tuple[Referrer, ...]:
    return tuple(
        Referrer(
            digest=str(entry["digest"]),
            media_type=str(entry.get("mediaType", "")),
            artifact_type=entry.get("artifactType"),
            annotations=dict(entry.get("annotations") or {}),
        )
        for entry in index.get("manifests") or []
    )


def _tags(http_: _Http, repo: str) -> list[str]:
    listing = http_.json(f"/v2/{repo}/tags/list?n=10000")
    return list((listing or {}).get("tags") or [])


def signature_artifacts(registry: Registry, repo: str, digest: str) -> SignatureArtifacts:
    """What landed for ``repo@digest``: its referrers (API, else tag schema) and cosign's tags."""
    if not _DIGEST_RE.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    http_ = _Http(registry)
    source: Literal["api", "tag", "none"] = "none"
    referrers: tuple[Referrer, ...] = ()
    index = http_.json(f"/v2/{repo}/referrers/{digest}", "application/vnd.oci.image.index.v1+json")
    if index is not None:
        source, referrers = "api", _referrers(index)
    else:
        tag_index = fetch_manifest(registry, repo, digest.replace(":", "-"))
        if tag_index is not None:
            source, referrers = "tag", _referrers(tag_index.raw)
    tags = _tags(http_, repo)
    prefix = digest.replace(":", "-")
    cosign_tags: dict[str, StoredManifest] = {}
    for suffix in (".sig", ".att", ".sbom"):
        if prefix + suffix in tags:
            manifest = fetch_manifest(registry, repo, prefix + suffix)
            if manifest is not None:
                cosign_tags[prefix + suffix] = manifest
    return SignatureArtifacts(repo, digest, source, referrers, cosign_tags, tuple(sorted(tags)))


def iter_referrer_manifests(registry: Registry, artifacts: SignatureArtifacts) -> Iterator[StoredManifest]:
    """The manifests of ``artifacts.referrers``, in order."""
    for referrer in artifacts.referrers:
        manifest = fetch_manifest(registry, artifacts.repository, referrer.digest)
        if manifest is None:
            raise CosignError(f"referrer {referrer.digest} of {artifacts.digest} is listed but missing")
        yield manifest
