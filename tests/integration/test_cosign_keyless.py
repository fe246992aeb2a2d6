"""Keyless cosign signatures through real registries and the real engine, with a private Sigstore.

Nothing here talks to Sigstore's public services: a :class:`PrivateSigstore` (tests/support/
private_sigstore.py) plays Fulcio (a CA issuing short-lived leaf certificates with a SAN email, the OIDC
issuer extensions and an SCT), Rekor (a log key signing entry timestamps) and the trusted root (the
``trusted_root.json`` the verifier is configured with). Its signatures are stored in olareg and distribution
exactly where and how cosign stores them, then verified by an :class:`Engine` built from a parsed
configuration, so the discovery of the certificate annotations is covered end to end:

* legacy: a ``sha256-<hex>.sig`` tag holding an OCI manifest laid out as cosign2 writes it (checked against
  a real cosign2 signature below): config ``application/vnd.oci.image.config.v1+json`` (an empty image
  config whose ``rootfs.diff_ids`` are the layer digests), one ``application/vnd.dev.cosign.simplesigning.
  v1+json`` layer (the payload) annotated with the signature, certificate, chain and SET; pushed with
  ``oras cp --from-oci-layout``;
* bundle: a Sigstore bundle v0.3 (certificate, DSSE statement, Rekor entry with inclusion promise and
  proof) attached with ``oras attach --artifact-type application/vnd.dev.sigstore.bundle.v0.3+json`` (the
  referrers API on olareg, the ``sha256-<hex>`` tag schema on distribution).

Certificates are issued a few minutes before the real present and the log integrates the signature inside
their validity, as Fulcio and Rekor would: the verifier runs with the real current time.

Every verdict is also asked of the real ``cosign verify`` (v3 and v2), with
``--certificate-identity[-regexp]``, ``--certificate-oidc-issuer[-regexp]``, ``--trusted-root`` (the
private one) and ``--offline=true`` (without it cosign2 looks a signature that has no SET up in the public
Rekor, which the CosignEnv's trap refuses), so each test states that both tools agree. They deliberately
differ in one place: cosign's regular expressions match anywhere in the value (Go's ``MatchString``),
Countersign's must match all of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import http.client
import json
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from provider.config import Config, parse_config
from provider.engine import Engine
from provider.outcome import Decided, Outcome
from tests.support import cosign
from tests.support.images import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Blob,
    OciContent,
    PushedImage,
    attach_artifact,
    oras,
    push_image,
    write_oci_layout,
)
from tests.support.private_sigstore import (
    DEFAULT_ISSUER,
    Leaf,
    PrivateSigstore,
    cosign_layer_annotations,
    hashedrekord_body_for,
    simple_signing_payload,
)
from tests.support.registries import LOOPBACK, Registry
from tests.support.tools import require_tool
from verifiers.cosign.model import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_SIGNATURE,
    ARTIFACT_TYPE_BUNDLE,
    ARTIFACT_TYPE_COSIGN_SIG,
    SIMPLE_SIGNING_MEDIA_TYPE,
    BundleCandidate,
    SimpleSigningCandidate,
)

pytestmark = pytest.mark.integration

SIGNER = "signer@example.test"
RELEASE = "release@example.test"
ISSUER = DEFAULT_ISSUER
LOG_INDEX = 4242  # PrivateSigstore's default log index
#: The timestamps of the empty image config cosign writes as a `.sig` manifest's config (Go's zero time).
_COSIGN_EPOCH = "0001-01-01T00:00:00Z"


# --- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process connects to loopback only (the registries): never to Fulcio, Rekor or TUF. (The cosign
    CLIs run in a CosignEnv, which keeps them offline.)"""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if not (host.startswith("127.") or host in ("::1", "localhost")):
                raise AssertionError(f"connection to {address!r} attempted: tests stay on loopback")

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    yield


@pytest.fixture(scope="module")
def sigstore() -> PrivateSigstore:
    return PrivateSigstore(name="countersign-private")


@pytest.fixture(scope="module")
def other_sigstore() -> PrivateSigstore:
    """An unrelated Sigstore: nobody trusts its CAs or its log."""
    return PrivateSigstore(name="other-sigstore")


@pytest.fixture(scope="module")
def trusted_root(sigstore: PrivateSigstore, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sigstore.write_trusted_root(tmp_path_factory.mktemp("sigstore") / "trusted_root.json")


@pytest.fixture(scope="module")
def cosign_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cosign.CosignEnv]:
    for tool in ("cosign", "cosign2"):
        require_tool(tool)
    with cosign.CosignEnv(tmp_path_factory.mktemp("cosign")) as env:
        yield env


# --- signing as Fulcio and Rekor would, now ---------------------------------------------------------------


def present() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def fresh_leaf(
    sigstore: PrivateSigstore,
    *,
    issued_ago: timedelta = timedelta(minutes=3),
    lifetime: timedelta = timedelta(minutes=10),
    email: str = SIGNER,
) -> Leaf:
    """A Fulcio-like certificate issued ``issued_ago`` before now, valid for ``lifetime``."""
    return sigstore.issue(email=email, issuer=ISSUER, not_before=present() - issued_ago, lifetime=lifetime)


def keyless_signature(
    sigstore: PrivateSigstore,
    registry: Registry,
    image: PushedImage,
    *,
    leaf: Leaf | None = None,
    logged_ago: timedelta = timedelta(minutes=2),
    with_set: bool = True,
) -> SimpleSigningCandidate:
    """`cosign sign` keyless: a simple-signing payload naming ``image``, a leaf certificate, its chain, and
    the SET of the log entry integrated ``logged_ago`` before now."""
    payload = simple_signing_payload(image.digest, f"{registry.host}/{image.repository}")
    return sigstore.keyless_signature(
        image.digest,
        leaf=leaf or fresh_leaf(sigstore),
        payload=payload,
        with_set=with_set,
        integrated_time=present() - logged_ago,
    )


def keyless_bundle(
    sigstore: PrivateSigstore,
    digest: str,
    *,
    leaf: Leaf | None = None,
    logged_ago: timedelta = timedelta(minutes=2),
) -> BundleCandidate:
    return sigstore.keyless_bundle(
        digest, leaf=leaf or fresh_leaf(sigstore), integrated_time=present() - logged_ago
    )


# --- storing signatures as cosign does ----------------------------------------------------------------------


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _descriptor(blob: Blob, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    # go-containerregistry's field order: mediaType, size, digest, annotations.
    out: dict[str, Any] = {"mediaType": blob.media_type, "size": blob.size, "digest": blob.digest}
    if annotations:
        out["annotations"] = annotations
    return out


def cosign_signature_content(
    candidates: Sequence[SimpleSigningCandidate], subject: PushedImage | None = None
) -> OciContent:
    """The `sha256-<hex>.sig` manifest cosign2 writes: an empty image config naming the layers, and one
    simple-signing layer per signature with its annotations. With a ``subject``, the OCI 1.1 referrer that
    ``cosign2 sign --registry-referrers-mode=oci-1-1`` writes instead: the same, but the config's media
    type and the artifactType are ``application/vnd.dev.cosign.artifact.sig.v1+json``."""
    layers = [Blob(SIMPLE_SIGNING_MEDIA_TYPE, candidate.payload) for candidate in candidates]
    config = Blob(
        OCI_CONFIG if subject is None else ARTIFACT_TYPE_COSIGN_SIG,
        _json(
            {
                "architecture": "",
                "created": _COSIGN_EPOCH,
                "history": [{"created": _COSIGN_EPOCH}],
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
                "config": {},
            }
        ),
    )
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(config),
        "layers": [
            _descriptor(layer, cosign_layer_annotations(candidate))
            for layer, candidate in zip(layers, candidates, strict=True)
        ],
    }
    if subject is not None:
        manifest["subject"] = _descriptor(Blob(subject.media_type, subject.manifest))
        manifest["artifactType"] = ARTIFACT_TYPE_COSIGN_SIG
    top = Blob(OCI_MANIFEST, _json(manifest))
    return OciContent(top=top, blobs=(config, *layers, top))


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def push_legacy_signature(registry: Registry, image: PushedImage, *candidates: SimpleSigningCandidate) -> str:
    """Store ``candidates`` in ``image``'s `sha256-<hex>.sig` tag with ``oras cp --from-oci-layout``."""
    content = cosign_signature_content(candidates)
    destination = f"{registry.host}/{image.repository}:{signature_tag(image.digest)}"
    with tempfile.TemporaryDirectory(prefix="countersign-sig-") as scratch:
        layout = write_oci_layout(Path(scratch) / "layout", content, "sig")
        out = oras("cp", "--from-oci-layout", f"{layout}:sig", destination, *registry.oras_flags("to-"))
    assert content.top.digest in out, out
    return content.top.digest


def push_oci11_signature(registry: Registry, image: PushedImage, *candidates: SimpleSigningCandidate) -> str:
    """Store ``candidates`` as an OCI 1.1 referrer of ``image`` (pushed by digest with ``oras cp``, which
    also maintains the ``sha256-<hex>`` referrers tag on registries without the referrers API)."""
    content = cosign_signature_content(candidates, subject=image)
    destination = f"{registry.host}/{image.repository}@{content.top.digest}"
    with tempfile.TemporaryDirectory(prefix="countersign-sig-") as scratch:
        layout = write_oci_layout(Path(scratch) / "layout", content, "sig")
        oras("cp", "--from-oci-layout", f"{layout}:sig", destination, *registry.oras_flags("to-"))
    return content.top.digest


def attach_bundle(registry: Registry, image: PushedImage, candidate: BundleCandidate) -> str:
    """Attach a Sigstore bundle as cosign v3 does: a referrer of the bundle's artifact type, one layer."""
    return attach_artifact(
        registry,
        image,
        artifact_type=ARTIFACT_TYPE_BUNDLE,
        content=candidate.bundle,
        media_type=ARTIFACT_TYPE_BUNDLE,
        filename="bundle.sigstore.json",
    )


# --- cosign's verdict ------------------------------------------------------------------------------------

_IDENTITY_FLAGS = {
    "subject": "--certificate-identity",
    "subjectRegExp": "--certificate-identity-regexp",
    "issuer": "--certificate-oidc-issuer",
    "issuerRegExp": "--certificate-oidc-issuer-regexp",
}
#: What `cosign verify` says when it ran and rejected every signature it found (else the harness is wrong);
#: in `--experimental-oci11` mode, cosign v3 says "no signatures found" when none of the referrers verified.
_COSIGN_REJECTIONS = ("no matching signatures", "no matching attestations", "no signatures found")


def cosign_accepts(
    env: cosign.CosignEnv,
    tool: cosign.Tool,
    registry: Registry,
    image: PushedImage,
    trusted_root: Path,
    identity: dict[str, str] | None = None,
    *,
    oci11: bool = False,
) -> bool:
    """Whether ``tool verify`` accepts a keyless signature of ``image`` by ``identity``, offline (with
    ``oci11``, legacy signatures stored as OCI 1.1 referrers: ``--experimental-oci11``)."""
    identity = identity or {"subject": SIGNER, "issuer": ISSUER}
    flags = [flag for key, value in identity.items() for flag in (_IDENTITY_FLAGS[key], value)]
    if oci11:
        flags.append("--experimental-oci11")
    result = env.run(
        tool,
        "verify",
        *flags,
        "--trusted-root",
        str(trusted_root),
        "--offline=true",
        *cosign.registry_flags(registry),
        image.pinned,
        check=False,
        extra_env={"COSIGN_EXPERIMENTAL": "1"} if oci11 else None,
    )
    if result.ok:
        return True
    if any(rejection in result.stderr for rejection in _COSIGN_REJECTIONS):
        return False
    raise cosign.CosignError(f"{tool} failed without rejecting a signature\n{result.describe()}", result)


async def cosign_agrees(
    env: cosign.CosignEnv,
    registry: Registry,
    image: PushedImage,
    trusted_root: Path,
    accepted: bool,
    identity: dict[str, str] | None = None,
    *,
    oci11: bool = False,
) -> None:
    """Both cosign versions reach the verdict ``accepted``."""
    tools: tuple[cosign.Tool, ...] = ("cosign", "cosign2")
    for tool in tools:
        verdict = await asyncio.to_thread(
            functools.partial(cosign_accepts, oci11=oci11), env, tool, registry, image, trusted_root, identity
        )
        assert verdict is accepted, f"{tool} verify {'rejected' if accepted else 'accepted'} {image.pinned}"


# --- the engine ----------------------------------------------------------------------------------------


def config_for(registry: Registry, options: dict[str, Any]) -> Config:
    return parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"cosign": {"type": "cosign", "options": options}},
            "policies": [{"scopes": ["*"], "allOf": ["cosign"]}],
        }
    )


def keyless_options(trusted_root: Path, **identity: str) -> dict[str, Any]:
    identity = identity or {"subject": SIGNER, "issuer": ISSUER}
    return {"identities": [{"name": "ci", **identity}], "trustedRoot": str(trusted_root)}


async def verdict(engine: Engine, image: PushedImage) -> dict[str, Any]:
    outcome: Outcome = (await engine.verify([image.pinned], 30))[image.pinned]
    assert isinstance(outcome, Decided), outcome
    report: dict[str, Any] = outcome.value["verifiers"][0]
    assert report["type"] == "cosign"
    return report


async def push(registry: Registry, repo: str, seed: str) -> PushedImage:
    return await asyncio.to_thread(push_image, registry, repo, "v1", seed=seed)


def only_signature(report: dict[str, Any]) -> dict[str, Any]:
    signatures: list[dict[str, Any]] = report["details"]["signatures"]
    assert len(signatures) == 1, signatures
    return signatures[0]


def denied(report: dict[str, Any], reason: str) -> dict[str, Any]:
    assert report["passed"] is False, report
    assert report["reason"] == reason, report
    signature = only_signature(report)
    assert signature["passed"] is False and signature["reason"] == reason, signature
    return signature


# --- legacy `.sig` signatures ------------------------------------------------------------------------------


async def test_keyless_legacy_signature_verifies(
    sigstore: PrivateSigstore,
    trusted_root: Path,
    cosign_env: cosign.CosignEnv,
    registry: Registry,
    repo_name: str,
    engines: Any,
) -> None:
    image = await push(registry, repo_name, "keyless-legacy")
    candidate = keyless_signature(sigstore, registry, image, logged_ago=timedelta(seconds=90))
    manifest_digest = await asyncio.to_thread(push_legacy_signature, registry, image, candidate)

    stored = await asyncio.to_thread(cosign.fetch_manifest, registry, repo_name, signature_tag(image.digest))
    assert stored is not None and stored.digest == manifest_digest
    assert stored.config_media_type == OCI_CONFIG
    assert stored.layer_media_types == (SIMPLE_SIGNING_MEDIA_TYPE,)
    assert sorted(stored.raw["layers"][0]["annotations"]) == [
        ANNOTATION_SIGNATURE,
        ANNOTATION_BUNDLE,
        ANNOTATION_CERTIFICATE,
        ANNOTATION_CHAIN,
    ]

    engine = await engines(config_for(registry, keyless_options(trusted_root)))
    report = await verdict(engine, image)
    assert report["passed"] is True, report
    assert report["reason"] == "cosign_verified"
    assert report["details"]["matched"] == ["ci"]
    signature = only_signature(report)
    assert signature["format"] == "legacy"
    assert signature["signature"] == manifest_digest
    assert signature["matched"] == "ci"
    assert signature["subject"] == SIGNER
    assert signature["issuer"] == ISSUER
    assert signature["logIndex"] == LOG_INDEX
    logged = datetime.fromisoformat(signature["integratedTime"].replace("Z", "+00:00"))
    assert timedelta(seconds=60) <= datetime.now(UTC) - logged <= timedelta(minutes=5)
    assert signature["dockerReference"] == f"{registry.host}/{repo_name}"
    await cosign_agrees(cosign_env, registry, image, trusted_root, True)


@pytest.mark.parametrize(
    ("identity", "reason", "cosign_verdict"),
    [
        pytest.param({"subject": SIGNER, "issuer": ISSUER}, "cosign_verified", True, id="exact"),
        pytest.param(
            {"subject": "someone@example.test", "issuer": ISSUER}, "identity_mismatch", False, id="subject"
        ),
        pytest.param(
            {"subject": SIGNER, "issuer": "https://other.example.test"},
            "identity_mismatch",
            False,
            id="issuer",
        ),
        pytest.param(
            {
                "subjectRegExp": r"[a-z]+@example\.test",
                "issuerRegExp": r"https://issuer\.example\.(test|com)",
            },
            "cosign_verified",
            True,
            id="regexps",
        ),
        pytest.param(
            {"subjectRegExp": r".*@example\.com", "issuerRegExp": r"https://issuer\..*"},
            "identity_mismatch",
            False,
            id="subject-regexp",
        ),
        pytest.param(
            {"subjectRegExp": r"signer@.*", "issuerRegExp": r"https://accounts\.google\.com"},
            "identity_mismatch",
            False,
            id="issuer-regexp",
        ),
        # Deliberately stricter than cosign: a regular expression must match the whole SAN, and "signer"
        # only matches a part of it (cosign accepts: Go's MatchString finds it inside).
        pytest.param(
            {"subjectRegExp": "signer", "issuerRegExp": r"https://issuer\.example\.test"},
            "identity_mismatch",
            True,
            id="partial-regexp",
        ),
    ],
)
async def test_identities(
    sigstore: PrivateSigstore,
    trusted_root: Path,
    cosign_env: cosign.CosignEnv,
    registry: Registry,
    repo_name: str,
    engines: Any,
    identity: dict[str, str],
    reason: str,
    cosign_verdict: bool,
) -> None:
    image = await push(registry, repo_name, "keyless-identity")
    await asyncio.to_thread(
        push_legacy_signature, registry, image, keyless_signature(sigstore, registry, image)
    )
    engine = await engines(config_for(registry, keyless_options(trusted_root, **identity)))
    report = await verdict(engine, image)
    if reason == "cosign_verified":
        assert report["passed"] is True, report
        assert only_signature(report)["subject"] == SIGNER
    else:
        signature = denied(report, reason)
        assert SIGNER in signature["message"] and "ci:" in signature["message"]
    await cosign_agrees(cosign_env, registry, image, trusted_root, cosign_verdict, identity)


def _expired(sigstore: PrivateSigstore, registry: Registry, image: PushedImage) -> SimpleSigningCandidate:
    # Issued 30 minutes ago for 10 minutes; the log integrated the signature 5 minutes ago.
    leaf = fresh_leaf(sigstore, issued_ago=timedelta(minutes=30))
    return keyless_signature(sigstore, registry, image, leaf=leaf, logged_ago=timedelta(minutes=5))


def _set_by_unknown_key(
    sigstore: PrivateSigstore, registry: Registry, image: PushedImage
) -> SimpleSigningCandidate:
    # The trusted log's ID, but a signed entry timestamp made with a key the trusted root does not list.
    candidate = keyless_signature(sigstore, registry, image)
    rogue = ec.generate_private_key(ec.SECP256R1())
    bundle = sigstore.cosign_bundle_annotation(
        hashedrekord_body_for(candidate), integrated_time=present() - timedelta(minutes=2), key=rogue
    )
    return dataclasses.replace(candidate, rekor_bundle=bundle)


def _set_by_unknown_log(
    sigstore: PrivateSigstore, registry: Registry, image: PushedImage
) -> SimpleSigningCandidate:
    candidate = keyless_signature(sigstore, registry, image)
    other_log = PrivateSigstore(name="unknown-log")
    bundle = other_log.cosign_bundle_annotation(
        hashedrekord_body_for(candidate), integrated_time=present() - timedelta(minutes=2)
    )
    return dataclasses.replace(candidate, rekor_bundle=bundle)


def _no_set(sigstore: PrivateSigstore, registry: Registry, image: PushedImage) -> SimpleSigningCandidate:
    return keyless_signature(sigstore, registry, image, with_set=False)


def _other_ca(sigstore: PrivateSigstore, registry: Registry, image: PushedImage) -> SimpleSigningCandidate:
    # Certificate and chain from another CA; the SET is from the trusted log: only the chain is wrong.
    other_ca = PrivateSigstore(name="other-ca")
    candidate = keyless_signature(other_ca, registry, image, leaf=fresh_leaf(other_ca))
    bundle = sigstore.cosign_bundle_annotation(
        hashedrekord_body_for(candidate), integrated_time=present() - timedelta(minutes=2)
    )
    return dataclasses.replace(candidate, rekor_bundle=bundle)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(_expired, "certificate_expired", id="expired-before-logged"),
        pytest.param(_set_by_unknown_key, "tlog_invalid", id="set-unknown-key"),
        pytest.param(_set_by_unknown_log, "tlog_invalid", id="set-unknown-log"),
        pytest.param(_no_set, "tlog_missing", id="no-set"),
        pytest.param(_other_ca, "untrusted_chain", id="other-ca"),
    ],
)
async def test_legacy_signature_failures(
    sigstore: PrivateSigstore,
    trusted_root: Path,
    cosign_env: cosign.CosignEnv,
    registry: Registry,
    repo_name: str,
    engines: Any,
    make: Callable[[PrivateSigstore, Registry, PushedImage], SimpleSigningCandidate],
    reason: str,
) -> None:
    image = await push(registry, repo_name, f"keyless-{reason}")
    candidate = make(sigstore, registry, image)
    await asyncio.to_thread(push_legacy_signature, registry, image, candidate)
    stored = await asyncio.to_thread(cosign.fetch_manifest, registry, repo_name, signature_tag(image.digest))
    assert stored is not None
    assert (ANNOTATION_BUNDLE in stored.raw["layers"][0]["annotations"]) is (reason != "tlog_missing")
    engine = await engines(config_for(registry, keyless_options(trusted_root)))
    signature = denied(await verdict(engine, image), reason)
    if reason == "certificate_expired":
        assert "logged at" in signature["message"]
    await cosign_agrees(cosign_env, registry, image, trusted_root, False)


async def test_signature_copied_to_another_image(
    sigstore: PrivateSigstore,
    trusted_root: Path,
    cosign_env: cosign.CosignEnv,
    registry: Registry,
    repo_name: str,
    engines: Any,
) -> None:
    signed = await push(registry, repo_name, "keyless-copied-from")
    target = await push(registry, repo_name, "keyless-copied-to")
    candidate = keyless_signature(sigstore, registry, signed)
    # The very same signature manifest, stored under the other image's `.sig` tag.
    await asyncio.to_thread(push_legacy_signature, registry, signed, candidate)
    await asyncio.to_thread(push_legacy_signature, registry, target, candidate)
    engine = await engines(config_for(registry, keyless_options(trusted_root)))
    assert (await verdict(engine, signed))["passed"] is True
    signature = denied(await verdict(engine, target), "signed_digest_mismatch")
    assert signed.digest in signature["message"]
    await cosign_agrees(cosign_env, registry, target, trusted_root, False)


async def test_two_signers_and_a_threshold(
    sigstore: PrivateSigstore,
    trusted_root: Path,
    cosign_env: cosign.CosignEnv,
    olareg_registry: Registry,
    repo_name: str,
    engines: Any,
) -> None:
    """Two layers in one `.sig` manifest (cosign appends one per `cosign sign`), each its own identity."""
    registry = olareg_registry
    image = await push(registry, repo_name, "keyless-two-signers")
    first = keyless_signature(sigstore, registry, image)
    second = keyless_signature(sigstore, registry, image, leaf=fresh_leaf(sigstore, email=RELEASE))
    await asyncio.to_thread(push_legacy_signature, registry, image, first, second)
    options = {
        "identities": [
            {"name": "ci", "subject": SIGNER, "issuer": ISSUER},
            {"name": "release", "subject": RELEASE, "issuer": ISSUER},
        ],
        "trustedRoot": str(trusted_root),
        "threshold": 2,
    }
    engine = await engines(config_for(registry, options))
    report = await verdict(engine, image)
    assert report["passed"] is True, report
    assert report["details"]["matched"] == ["ci", "release"]
    for subject in (SIGNER, RELEASE):
        await cosign_agrees(
            cosign_env, registry, image, trusted_root, True, {"subject": subject, "issuer": ISSUER}
        )


# --- cosign2 OCI 1.1 referrers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaf_email", "reason"),
    [(SIGNER, "cosign_verified"), ("someone@example.test", "identity_mismatch")],
    ids=["verifies", "identity-mismatch"],
)
async def test_keyless_oci11_referrer(
    sigstore: PrivateSigstore,
    trusted_root: Path,
    cosign_env: cosign.CosignEnv,
    registry: Registry,
    repo_name: str,
    engines: Any,
    leaf_email: str,
    reason: str,
) -> None:
    image = await push(registry, repo_name, f"keyless-oci11-{reason}")
    candidate = keyless_signature(sigstore, registry, image, leaf=fresh_leaf(sigstore, email=leaf_email))
    referrer = await asyncio.to_thread(push_oci11_signature, registry, image, candidate)
    artifacts = await asyncio.to_thread(cosign.signature_artifacts, registry, repo_name, image.digest)
    assert artifacts.referrers_source == ("api" if registry.referrers_api else "tag")
    assert [r.digest for r in artifacts.referrers_of_type(ARTIFACT_TYPE_COSIGN_SIG)] == [referrer]
    engine = await engines(config_for(registry, keyless_options(trusted_root)))
    report = await verdict(engine, image)
    if reason == "cosign_verified":
        assert report["passed"] is True, report
        signature = only_signature(report)
        assert (signature["format"], signature["signature"]) == ("oci-1.1", referrer)
        assert (signature["subject"], signature["issuer"], signature["logIndex"]) == (
            SIGNER,
            ISSUER,
            LOG_INDEX,
        )
    else:
        assert denied(report, reason)["format"] == "oci-1.1"
    await cosign_agrees(cosign_env, registry, image, trusted_root, reason == "cosign_verified", oci11=True)


# --- Sigstore bundle v0.3 referrers ------------------------------------------------------------------------


async def test_keyless_bundle_referrer_verifies(
    sigstore: PrivateSigstore,
    trusted_root: Path,
    cosign_env: cosign.CosignEnv,
    registry: Registry,
    repo_name: str,
    engines: Any,
) -> None:
    image = await push(registry, repo_name, "keyless-bundle")
    referrer = await asyncio.to_thread(attach_bundle, registry, image, keyless_bundle(sigstore, image.digest))
    engine = await engines(config_for(registry, keyless_options(trusted_root)))
    report = await verdict(engine, image)
    assert report["passed"] is True, report
    signature = only_signature(report)
    assert signature["format"] == "bundle"
    assert signature["signature"] == referrer
    assert signature["subject"] == SIGNER
    assert signature["issuer"] == ISSUER
    assert signature["logIndex"] == LOG_INDEX
    assert signature["predicateType"] == "https://sigstore.dev/cosign/sign/v1"
    await cosign_agrees(cosign_env, registry, image, trusted_root, True)


async def test_keyless_bundle_failures(
    sigstore: PrivateSigstore,
    other_sigstore: PrivateSigstore,
    trusted_root: Path,
    cosign_env: cosign.CosignEnv,
    registry: Registry,
    repo_name: str,
    engines: Any,
) -> None:
    """One image per failure, each with a single bundle referrer, all decided by one engine."""
    cases: dict[str, tuple[str, Callable[[PushedImage], BundleCandidate]]] = {
        "other-ca": (
            "untrusted_chain",
            lambda image: keyless_bundle(other_sigstore, image.digest, leaf=fresh_leaf(other_sigstore)),
        ),
        "expired": (
            "certificate_expired",
            lambda image: keyless_bundle(
                sigstore,
                image.digest,
                leaf=fresh_leaf(sigstore, issued_ago=timedelta(minutes=30)),
                logged_ago=timedelta(minutes=5),
            ),
        ),
        "identity": (
            "identity_mismatch",
            lambda image: keyless_bundle(
                sigstore, image.digest, leaf=fresh_leaf(sigstore, email="someone@example.test")
            ),
        ),
        "other-digest": (
            "signed_digest_mismatch",
            lambda image: keyless_bundle(sigstore, "sha256:" + "ab" * 32),
        ),
    }
    images: dict[str, PushedImage] = {}
    for name, (_, make) in cases.items():
        image = await push(registry, repo_name, f"keyless-bundle-{name}")
        await asyncio.to_thread(attach_bundle, registry, image, make(image))
        images[name] = image
    engine = await engines(config_for(registry, keyless_options(trusted_root)))
    for name, (reason, _) in cases.items():
        signature = denied(await verdict(engine, images[name]), reason)
        assert signature["format"] == "bundle", name
        await cosign_agrees(cosign_env, registry, images[name], trusted_root, False)


async def test_legacy_and_bundle_side_by_side(
    sigstore: PrivateSigstore, trusted_root: Path, registry: Registry, repo_name: str, engines: Any
) -> None:
    image = await push(registry, repo_name, "keyless-both")
    await asyncio.to_thread(
        push_legacy_signature, registry, image, keyless_signature(sigstore, registry, image)
    )
    await asyncio.to_thread(attach_bundle, registry, image, keyless_bundle(sigstore, image.digest))
    engine = await engines(config_for(registry, keyless_options(trusted_root)))
    report = await verdict(engine, image)
    assert report["passed"] is True, report
    signatures = report["details"]["signatures"]
    assert sorted(s["format"] for s in signatures) == ["bundle", "legacy"]
    assert all(s["passed"] and s["subject"] == SIGNER for s in signatures), signatures


# --- the layout matches cosign's ---------------------------------------------------------------------------


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys and types, with digests, sizes and strings blanked."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value[:1]]
    return type(value).__name__


async def test_sig_manifest_has_cosign2_layout(
    sigstore: PrivateSigstore, olareg_registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    """Our `.sig` manifest and config have the shape of the ones a real `cosign2 sign` writes."""
    require_tool("cosign2")
    registry = olareg_registry
    real = await push(registry, repo_name, "signed-by-cosign2")
    ours = await push(registry, repo_name, "signed-here")
    with cosign.CosignEnv(tmp_path / "cosign") as env:
        key = await asyncio.to_thread(cosign.generate_key_pair, env, "k", tool="cosign2")
        await asyncio.to_thread(cosign.sign_legacy, env, key, registry, real)
    await asyncio.to_thread(
        push_legacy_signature, registry, ours, keyless_signature(sigstore, registry, ours)
    )
    stored: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for name, image in (("real", real), ("ours", ours)):
        manifest = await asyncio.to_thread(
            cosign.fetch_manifest, registry, repo_name, signature_tag(image.digest)
        )
        assert manifest is not None
        config = await asyncio.to_thread(_blob, registry, repo_name, manifest.raw["config"]["digest"])
        stored[name] = (dict(manifest.raw), json.loads(config))
    (real_manifest, real_config), (our_manifest, our_config) = stored["real"], stored["ours"]
    # Keyless adds the certificate, chain and SET annotations to the signature a key-based one has.
    real_annotations = real_manifest["layers"][0].pop("annotations")
    our_annotations = our_manifest["layers"][0].pop("annotations")
    assert set(real_annotations) == {ANNOTATION_SIGNATURE}
    assert set(our_annotations) == {
        ANNOTATION_SIGNATURE,
        ANNOTATION_CERTIFICATE,
        ANNOTATION_CHAIN,
        ANNOTATION_BUNDLE,
    }
    assert _shape(our_manifest) == _shape(real_manifest)
    assert list(our_manifest["layers"][0]) == list(real_manifest["layers"][0])
    assert our_manifest["config"]["mediaType"] == real_manifest["config"]["mediaType"] == OCI_CONFIG
    assert _shape(our_config) == _shape(real_config)
    assert {k: v for k, v in our_config.items() if k != "rootfs"} == {
        k: v for k, v in real_config.items() if k != "rootfs"
    }
    for layout, image_config in ((real_manifest, real_config), (our_manifest, our_config)):
        assert image_config["rootfs"]["diff_ids"] == [layer["digest"] for layer in layout["layers"]]


def _blob(registry: Registry, repo: str, digest: str) -> bytes:
    connection = http.client.HTTPConnection(LOOPBACK, registry.port, timeout=10)
    try:
        connection.request("GET", f"/v2/{repo}/blobs/{digest}")
        response = connection.getresponse()
        assert response.status == 200, response.status
        return response.read()
    finally:
        connection.close()
