"""The real notation CLI (v1.3) as a signer and a verifier, fully offline, against the test-bed registries.

A :class:`NotationEnv` gives every command the isolation, proxy trap and strace guard of
tests/support/cosign.py (it runs them through a :class:`~tests.support.cosign.CosignEnv` sandbox):

* ``HOME``, ``XDG_CONFIG_HOME`` (notation's config: ``$XDG_CONFIG_HOME/notation``) and ``XDG_CACHE_HOME``
  point into the env's directory; no inherited ``NOTATION_*`` variable (no username/password either);
* ``HTTPS_PROXY``/``HTTP_PROXY`` point at a refused port of 127.0.0.1 (Go never proxies loopback), and a
  connect() away from loopback (under strace, when it works here) raises
  :class:`~tests.support.cosign.NetworkEscapeError`;
* plain-HTTP registries get ``--insecure-registry`` (``sign`` and ``verify``); HTTPS registries are not
  supported here (notation only trusts the system roots: the test CA would have to be installed there).

Layout under ``env.config_dir`` (``$XDG_CONFIG_HOME/notation``)::

    signingkeys.json                     {"default": NAME, "keys": [{"name", "keyPath", "certPath"}]}
    localkeys/NAME.key, NAME.crt         (``cert generate-test`` and :func:`install_key`)
    truststore/x509/{ca,signingAuthority,tsa}/STORE/*.crt
    trustpolicy.json                     (written by ``notation policy import --force``)

Where signatures land: notation 1.3 defaults to ``--force-referrers-tag=true`` (the ``sha256-<hex>`` index
tag, on any registry); ``referrers="api"`` passes ``--force-referrers-tag=false`` (the referrers API when
the registry has one, else the tag schema). Each signature is an OCI image manifest *without*
``artifactType``: its config has media type :data:`NOTARY_SIGNATURE_ARTIFACT_TYPE` (content ``{}``), so
that is its artifact type in referrer lists; one layer (the envelope: ``application/jose+json`` or
``application/cose``), a ``subject``, and the annotations
:data:`THUMBPRINT_ANNOTATION` (a JSON list of the chain's SHA-256 thumbprints, leaf first) and
``org.opencontainers.image.created``.

Every function is synchronous and runs subprocesses: from async code, call it through
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provider.engine import Engine
from provider.outcome import Decided, Outcome
from tests.support import pki
from tests.support.cosign import (
    CommandResult,
    CosignEnv,
    CosignError,
    NetworkEscapeError,
    Referrer,
    StoredManifest,
    _Http,
    _referrers,
    fetch_manifest,
)
from tests.support.cosign import signature_artifacts as _cosign_signature_artifacts
from tests.support.images import PushedImage
from tests.support.registries import Registry
from verifiers.notation.verifier import NotationVerifier

__all__ = [
    "ENVELOPE_MEDIA_TYPES",
    "NOTARY_SIGNATURE_ARTIFACT_TYPE",
    "THUMBPRINT_ANNOTATION",
    "ChainKeyKind",
    "CommandResult",
    "NetworkEscapeError",
    "NotationEnv",
    "NotationError",
    "NotationSignature",
    "NotationSignatures",
    "ReferrersMode",
    "SignatureFormat",
    "SigningChain",
    "SigningKey",
    "TrustStoreKind",
    "add_trust_store",
    "generate_test_key",
    "install_key",
    "notation_verify",
    "sign",
    "signature_artifacts",
    "trust_policy",
    "write_trust_policy",
]

SignatureFormat = Literal["jws", "cose"]
#: ``"tag"``: ``--force-referrers-tag`` (notation's default); ``"api"``/``"auto"``:
#: ``--force-referrers-tag=false`` (the referrers API, falling back to the tag schema without one).
ReferrersMode = Literal["api", "tag", "auto"]
TrustStoreKind = Literal["ca", "signingAuthority", "tsa"]
ChainKeyKind = Literal["rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521"]

NOTARY_SIGNATURE_ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
ENVELOPE_MEDIA_TYPES: dict[SignatureFormat, str] = {
    "jws": "application/jose+json",
    "cose": "application/cose",
}
THUMBPRINT_ANNOTATION = "io.cncf.notary.x509chain.thumbprint#S256"

_TIMEOUT = 60.0
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
#: stderr of a ``notation verify`` that ran and rejected (or found no) signatures.
_REJECTIONS = (
    "signature verification failed",
    "no signature is associated",
    "failed to verify signature",
)


class NotationError(CosignError):
    """A notation command failed; the message carries the command and its stderr."""


class _Sandbox(CosignEnv):
    """CosignEnv's isolation, trap and strace guard, without cosign's offline files."""

    def _offline_files(self) -> None:
        pass


# --- the environment -------------------------------------------------------------------------------------


@dataclass(eq=False)
class NotationEnv:
    """An isolated, offline notation home in ``directory`` (created if needed); close it (or ``with``)."""

    directory: Path
    timeout: float = _TIMEOUT
    #: Run commands under strace: ``None`` = when it works here; ``True`` = always (fails if it cannot).
    trace: bool | None = None
    _sandbox: _Sandbox = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._sandbox = _Sandbox(self.directory, timeout=self.timeout, trace=self.trace)
        self.directory = self._sandbox.directory
        for path in (self.config_dir, self.cache_dir, self.keys_dir):
            path.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._sandbox.close()

    # --- layout ------------------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self._sandbox.home

    @property
    def config_dir(self) -> Path:
        """``$XDG_CONFIG_HOME/notation``: keys, trust stores, trust policy."""
        return self.home / ".config" / "notation"

    @property
    def cache_dir(self) -> Path:
        return self.home / ".cache" / "notation"

    @property
    def keys_dir(self) -> Path:
        """``localkeys/``: where ``cert generate-test`` (and :func:`install_key`) put keys and chains."""
        return self.config_dir / "localkeys"

    @property
    def signing_keys_file(self) -> Path:
        return self.config_dir / "signingkeys.json"

    @property
    def trust_policy_file(self) -> Path:
        return self.config_dir / "trustpolicy.json"

    @property
    def work_dir(self) -> Path:
        return self._sandbox.work_dir

    def trust_store_dir(self, kind: TrustStoreKind, name: str) -> Path:
        return self.config_dir / "truststore" / "x509" / kind / name

    @property
    def trap_port(self) -> int:
        return self._sandbox.trap_port

    @property
    def traced(self) -> bool:
        return self._sandbox.traced

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The whole environment of a command (nothing else is inherited)."""
        return self._sandbox.environment(extra)

    # --- running -----------------------------------------------------------------------------------------

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """``notation ARGS`` in this env (bounded by ``timeout``, default ``self.timeout``).

        Raises :class:`NetworkEscapeError` whenever the command tried to leave 127.0.0.1, whatever its exit
        status; :class:`NotationError` on a time-out, or on a non-zero exit when ``check``.
        """
        try:
            return self._sandbox.run("notation", *args, check=check, timeout=timeout, extra_env=extra_env)
        except NetworkEscapeError:
            raise
        except CosignError as error:
            raise NotationError(str(error), error.result) from None


# --- keys ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A key in notation's key list: ``key_path`` (PEM) and ``cert_path`` (the chain, leaf first)."""

    name: str
    key_path: Path
    cert_path: Path

    @property
    def certificates(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.cert_path.read_bytes())

    @property
    def thumbprints(self) -> list[str]:
        """SHA-256 thumbprints (hex) of the chain, leaf first: what :data:`THUMBPRINT_ANNOTATION` lists."""
        return [certificate.fingerprint(hashes.SHA256()).hex() for certificate in self.certificates]

    @property
    def leaf_pem(self) -> bytes:
        return self.certificates[0].public_bytes(serialization.Encoding.PEM)

    @property
    def root_pem(self) -> bytes:
        return self.certificates[-1].public_bytes(serialization.Encoding.PEM)


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"name must be a plain file name, not {name!r}")


def generate_test_key(env: NotationEnv, name: str, *, bits: int = 2048, default: bool = True) -> SigningKey:
    """``notation cert generate-test [--default] NAME``: a self-signed RSA test certificate.

    notation writes ``localkeys/NAME.key``/``NAME.crt``, adds the key to ``signingkeys.json`` and the
    certificate to the trust store ``ca/NAME``. The certificate's subject is ``CN=NAME,O=Notary,L=Seattle,
    ST=WA,C=US``.
    """
    _check_name(name)
    args = ["cert", "generate-test", "--bits", str(bits)]
    if default:
        args.append("--default")
    env.run(*args, name)
    key = SigningKey(name, env.keys_dir / f"{name}.key", env.keys_dir / f"{name}.crt")
    if not key.key_path.is_file() or not key.cert_path.is_file():
        raise NotationError(f"notation cert generate-test did not write {key.key_path} and {key.cert_path}")
    return key


def install_key(
    env: NotationEnv, name: str, key_pem: bytes, chain_pem: bytes, *, default: bool = False
) -> SigningKey:
    """Register a local key (PEM) and its chain (PEM, leaf first, root last) as ``name`` in notation.

    notation 1.3's ``key add`` only knows plugin keys: local keys are entries ``{"name", "keyPath",
    "certPath"}`` of ``signingkeys.json`` (what ``cert generate-test`` writes). Checked with ``key ls``.
    """
    _check_name(name)
    key_path, cert_path = env.keys_dir / f"{name}.key", env.keys_dir / f"{name}.crt"
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    cert_path.write_bytes(chain_pem)
    document: dict[str, Any] = {"keys": []}
    if env.signing_keys_file.exists():
        document = json.loads(env.signing_keys_file.read_text())
    keys = [entry for entry in document.get("keys") or [] if entry.get("name") != name]
    keys.append({"name": name, "keyPath": str(key_path), "certPath": str(cert_path)})
    document["keys"] = keys
    if default:
        document["default"] = name
    env.signing_keys_file.write_text(json.dumps(document, indent=4))
    listed = env.run("key", "ls").stdout
    if str(key_path) not in listed:
        raise NotationError(f"notation key ls does not list {name}:\n{listed}")
    return SigningKey(name, key_path, cert_path)


def _private_key(kind: ChainKeyKind) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa-")))
    curves: dict[str, ec.EllipticCurve] = {
        "ecdsa-p256": ec.SECP256R1(),
        "ecdsa-p384": ec.SECP384R1(),
        "ecdsa-p521": ec.SECP521R1(),
    }
    return ec.generate_private_key(curves[kind])


def _hash_for(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    size = key.key_size
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return hashes.SHA256() if size <= 256 else hashes.SHA384() if size <= 384 else hashes.SHA512()
    return hashes.SHA256() if size < 3072 else hashes.SHA384() if size < 4096 else hashes.SHA512()


@dataclass
class SigningChain:
    """A code-signing PKI made with cryptography: root CA -> (intermediate CA ->) leaf.

    The leaf has digitalSignature (critical) and codeSigning EKU; ``ocsp_url``/``crl_url`` add the
    authorityInfoAccess/CRL distribution point (careful: notation then checks revocation under ``strict``
    and would contact those URLs: only use 127.0.0.1 ones). Validity: ``not_before`` to ``not_after``
    (default: an hour ago to a week ahead); the CAs a day longer on each side.
    """

    name: str = "countersign-test-signer"
    leaf_kind: ChainKeyKind = "rsa-2048"
    ca_kind: ChainKeyKind = "rsa-3072"
    intermediate: bool = True
    ocsp_url: str | None = None
    crl_url: str | None = None
    not_before: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=1))
    not_after: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(days=7))
    organization: str = "Countersign Tests"
    #: The leaf's subject; default C=US, ST=WA, O=``organization``, CN=``name``.
    leaf_subject: x509.Name | None = None
    root_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    intermediate_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = field(init=False, repr=False)
    leaf_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    root_cert: x509.Certificate = field(init=False, repr=False)
    intermediate_cert: x509.Certificate | None = field(init=False, repr=False, default=None)
    leaf_cert: x509.Certificate = field(init=False, repr=False)

    def _name(self, common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "WA"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def __post_init__(self) -> None:
        ca_start, ca_end = self.not_before - timedelta(days=1), self.not_after + timedelta(days=1)
        self.root_key = _private_key(self.ca_kind)
        root_name = self._name(f"{self.name} root")
        self.root_cert = self._ca(root_name, root_name, self.root_key, self.root_key, ca_start, ca_end, None)
        issuer_name, issuer_key = root_name, self.root_key
        self.intermediate_key = None
        if self.intermediate:
            self.intermediate_key = _private_key(self.ca_kind)
            intermediate_name = self._name(f"{self.name} intermediate")
            self.intermediate_cert = self._ca(
                intermediate_name, root_name, self.intermediate_key, self.root_key, ca_start, ca_end, 0
            )
            issuer_name, issuer_key = intermediate_name, self.intermediate_key
        self.leaf_key = _private_key(self.leaf_kind)
        builder = pki.base_builder(
            self.leaf_subject if self.leaf_subject is not None else self._name(self.name),
            issuer_name,
            self.leaf_key.public_key(),
            self.not_before,
            self.not_after,
        )
        builder = pki.with_leaf_extensions(
            builder, self.leaf_key.public_key(), issuer_key.public_key(), ExtendedKeyUsageOID.CODE_SIGNING
        )
        builder = pki.with_revocation_urls(builder, self.ocsp_url, self.crl_url)
        self.leaf_cert = builder.sign(issuer_key, _hash_for(issuer_key))

    @staticmethod
    def _ca(
        subject: x509.Name,
        issuer: x509.Name,
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        issuer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        not_before: datetime,
        not_after: datetime,
        path_length: int | None,
    ) -> x509.Certificate:
        builder = pki.base_builder(subject, issuer, key.public_key(), not_before, not_after)
        builder = pki.with_ca_extensions(builder, key.public_key(), issuer_key.public_key(), path_length)
        return builder.sign(issuer_key, _hash_for(issuer_key))

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Leaf first, root last (what notation's ``certPath`` holds)."""
        middle = (self.intermediate_cert,) if self.intermediate_cert is not None else ()
        return (self.leaf_cert, *middle, self.root_cert)

    @property
    def chain_pem(self) -> bytes:
        return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in self.chain)

    @property
    def root_pem(self) -> bytes:
        return self.root_cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def subject(self) -> str:
        """The leaf's subject for an ``x509.subject:`` identity (notation needs C, ST and O in it)."""
        return f"C=US, ST=WA, O={self.organization}, CN={self.name}"


# --- trust -----------------------------------------------------------------------------------------------


def add_trust_store(env: NotationEnv, kind: TrustStoreKind, name: str, cert_pem: bytes) -> Path:
    """Add the certificate(s) in ``cert_pem`` to the trust store ``kind:name`` (``notation cert add``)."""
    _check_name(name)
    certificates = x509.load_pem_x509_certificates(cert_pem)
    staging = env.directory / "staging"
    staging.mkdir(exist_ok=True)
    files: list[str] = []
    for certificate in certificates:
        thumbprint = certificate.fingerprint(hashes.SHA256()).hex()[:16]
        path = staging / f"{name}-{thumbprint}.crt"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        files.append(str(path))
    env.run("cert", "add", "--type", kind, "--store", name, *files)
    return env.trust_store_dir(kind, name)


def trust_policy(
    trust_stores: Sequence[str],
    trusted_identities: Sequence[str] = ("*",),
    *,
    name: str = "countersign-test",
    registry_scopes: Sequence[str] = ("*",),
    level: Literal["strict", "permissive", "audit", "skip"] = "strict",
    verify_timestamp: Literal["always", "afterCertExpiry"] | None = None,
    override: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A trust policy document (``version`` 1.0) with one policy; ``trust_stores`` like ``"ca:NAME"``."""
    verification: dict[str, Any] = {"level": level}
    if override:
        verification["override"] = dict(override)
    if verify_timestamp is not None:
        verification["verifyTimestamp"] = verify_timestamp
    policy: dict[str, Any] = {
        "name": name,
        "registryScopes": list(registry_scopes),
        "signatureVerification": verification,
    }
    if level != "skip":
        policy["trustStores"] = list(trust_stores)
        policy["trustedIdentities"] = list(trusted_identities)
    return {"version": "1.0", "trustPolicies": [policy]}


def write_notation_layout(root: Path, ca_pem: bytes, store: str = "shop") -> Path:
    """A notation configuration under ``root/notation`` as Countersign reads one (no CLI involved):
    ``truststore/x509/ca/STORE/STORE.crt`` and a strict ``trustpolicy.json`` trusting ``ca:STORE`` for every
    repository. Returns ``root/notation``."""
    _check_name(store)
    directory = root / "notation"
    certificates = directory / "truststore" / "x509" / "ca" / store
    certificates.mkdir(parents=True)
    (certificates / f"{store}.crt").write_bytes(ca_pem)
    document = trust_policy([f"ca:{store}"], name=store)
    (directory / "trustpolicy.json").write_text(json.dumps(document))
    return directory


def write_trust_policy(env: NotationEnv, policy: Mapping[str, Any]) -> Path:
    """Install ``policy`` (a whole trust policy document) with ``notation policy import --force``."""
    source = env.directory / "staging" / "trustpolicy.json"
    source.parent.mkdir(exist_ok=True)
    source.write_text(json.dumps(policy, indent=2))
    env.run("policy", "import", "--force", str(source))
    return env.trust_policy_file


# --- signing and verifying -------------------------------------------------------------------------------


def _pinned(registry: Registry, image: PushedImage | str) -> str:
    """``HOST/REPO@DIGEST`` for a :class:`PushedImage` or ``"repo@sha256:<hex>"`` in ``registry``."""
    if isinstance(image, PushedImage):
        return f"{registry.host}/{image.repository}@{image.digest}"
    repo, _, digest = image.partition("@")
    if not repo or not _DIGEST_RE.match(digest):
        raise ValueError(f"image must be a PushedImage or 'repo@sha256:<hex>', not {image!r}")
    return f"{registry.host}/{image}"


def _registry_flags(registry: Registry) -> list[str]:
    if registry.tls:
        raise NotImplementedError("notation trusts only the system roots: use a plain-HTTP registry")
    return ["--insecure-registry"]


def sign(
    env: NotationEnv,
    key_name: str,
    registry: Registry,
    image: PushedImage | str,
    *,
    signature_format: SignatureFormat = "jws",
    expiry: str | None = None,
    timestamp_url: str | None = None,
    timestamp_root: Path | None = None,
    referrers: ReferrersMode = "api",
    user_metadata: Mapping[str, str] | None = None,
) -> CommandResult:
    """``notation sign --key KEY`` ``image`` (pinned by digest), offline.

    ``expiry`` is a Go duration (``"1s"``, ``"24h"``). ``timestamp_url`` (RFC 3161) needs
    ``timestamp_root``, a PEM file with the TSA's root. ``referrers``: see :data:`ReferrersMode`.
    """
    args = ["sign", "--key", key_name, "--signature-format", signature_format, *_registry_flags(registry)]
    args.append(f"--force-referrers-tag={'true' if referrers == 'tag' else 'false'}")
    if expiry is not None:
        args += ["--expiry", expiry]
    if timestamp_url is not None:
        if timestamp_root is None:
            raise ValueError("notation needs --timestamp-root-cert with --timestamp-url")
        args += ["--timestamp-url", timestamp_url, "--timestamp-root-cert", str(timestamp_root)]
    for key, value in (user_metadata or {}).items():
        args += ["--user-metadata", f"{key}={value}"]
    args.append(_pinned(registry, image))
    return env.run(*args)


def notation_verify(
    env: NotationEnv,
    registry: Registry,
    image: PushedImage | str,
    *,
    user_metadata: Mapping[str, str] | None = None,
) -> bool:
    """Whether ``notation verify`` accepts ``image`` under the env's trust policy and stores (offline).

    ``False`` means notation ran and rejected the signatures (or found none); any other failure raises.
    """
    args = ["verify", *_registry_flags(registry)]
    for key, value in (user_metadata or {}).items():
        args += ["--user-metadata", f"{key}={value}"]
    result = env.run(*args, _pinned(registry, image), check=False)
    if result.ok:
        return True
    if any(rejection in result.stderr for rejection in _REJECTIONS):
        return False
    raise NotationError(f"notation verify failed without rejecting a signature\n{result.describe()}", result)


# --- what landed in the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class NotationSignature:
    """One notation signature: its referrer entry, manifest and envelope."""

    referrer: Referrer
    manifest: StoredManifest
    envelope_media_type: str
    envelope_digest: str
    envelope: bytes

    @property
    def thumbprints(self) -> list[str]:
        """The manifest's :data:`THUMBPRINT_ANNOTATION`, decoded (leaf first)."""
        value = self.manifest.annotations.get(THUMBPRINT_ANNOTATION)
        return list(json.loads(value)) if value else []

    @property
    def signature_format(self) -> SignatureFormat | None:
        for fmt, media_type in ENVELOPE_MEDIA_TYPES.items():
            if media_type == self.envelope_media_type:
                return fmt
        return None


@dataclass(frozen=True)
class NotationSignatures:
    """The notation signatures of one subject: where the referrers were found, and each signature."""

    repository: str
    digest: str
    #: ``"api"`` (the referrers API), ``"tag"`` (the ``sha256-<hex>`` index) or ``"none"``.
    referrers_source: Literal["api", "tag", "none"]
    signatures: tuple[NotationSignature, ...]
    #: Every tag of the repository.
    all_tags: tuple[str, ...]


def _blob(registry: Registry, repo: str, digest: str) -> bytes:
    status, body, _ = _Http(registry).get(f"/v2/{repo}/blobs/{digest}", "*/*")
    if status != 200:
        raise NotationError(f"GET blob {repo}@{digest}: HTTP {status}: {body[:300]!r}")
    return body


def signature_artifacts(registry: Registry, repo: str, digest: str) -> NotationSignatures:
    """The notation signatures of ``repo@digest`` (referrers API, else the tag schema), with envelopes.

    ``referrers_source`` says where the notation signatures were listed: the referrers API first; on a
    registry that has it, signatures written with ``--force-referrers-tag`` are found in the
    ``sha256-<hex>`` index instead (olareg does not list them in its API).
    """
    found = _cosign_signature_artifacts(registry, repo, digest)
    source: Literal["api", "tag", "none"] = "none"
    entries = found.referrers_of_type(NOTARY_SIGNATURE_ARTIFACT_TYPE)
    if entries:
        source = found.referrers_source
    elif found.referrers_source == "api" and found.tag_prefix in found.all_tags:
        # Written with --force-referrers-tag on a registry that has the API (and does not list them there).
        index = fetch_manifest(registry, repo, found.tag_prefix)
        if index is not None:
            entries = [
                entry
                for entry in _referrers(index.raw)
                if entry.artifact_type == NOTARY_SIGNATURE_ARTIFACT_TYPE
            ]
            source = "tag" if entries else "none"
    signatures: list[NotationSignature] = []
    for referrer in entries:
        manifest = fetch_manifest(registry, repo, referrer.digest)
        if manifest is None:
            raise NotationError(f"referrer {referrer.digest} of {digest} is listed but missing")
        layers = manifest.raw.get("layers") or []
        if len(layers) != 1:
            raise NotationError(f"notation signature {referrer.digest} has {len(layers)} layers, not 1")
        layer = layers[0]
        envelope = _blob(registry, repo, str(layer["digest"]))
        signatures.append(
            NotationSignature(referrer, manifest, str(layer["mediaType"]), str(layer["digest"]), envelope)
        )
    return NotationSignatures(repo, digest, source, tuple(signatures), found.all_tags)


# --- through the engine ----------------------------------------------------------------------------------


async def engine_outcome(
    engine: Engine, verifiers: list[NotationVerifier], env: NotationEnv, image: PushedImage
) -> Outcome:
    """The engine's outcome for ``image``, its ``notation`` verifier built from the env's trust policy and
    trust store (appended to ``verifiers``, which the caller closes)."""
    verifier = NotationVerifier(
        "notation",
        {"trustPolicy": str(env.trust_policy_file), "trustStore": str(env.config_dir / "truststore")},
    )
    verifiers.append(verifier)
    engine.verifiers["notation"] = verifier
    return (await engine.verify([image.pinned], 30))[image.pinned]


def report_of(outcome: Outcome) -> dict[str, Any]:
    """The (first) verifier report of a decided outcome."""
    assert isinstance(outcome, Decided), outcome
    report: dict[str, Any] = outcome.value["verifiers"][0]
    return report


async def notation_accepts(env: NotationEnv, registry: Registry, image: PushedImage) -> bool:
    """:func:`notation_verify`, off the event loop."""
    return await asyncio.to_thread(notation_verify, env, registry, image)
