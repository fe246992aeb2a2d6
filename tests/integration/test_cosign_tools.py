"""The signing tool kit (tests/support/cosign.py): real cosign v3/v2 and skopeo, offline, on both registries.

For each registry kind and each format: sign a fresh image, check exactly where the signature landed, and
check that cosign itself (both CLIs) accepts it with the signer's key and rejects it with another key. These
are the reference signatures the verifiers are tested against, so their shape is pinned here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from tests.support import cosign
from tests.support.cosign import (
    ATTESTATION_PREDICATE_TYPES,
    BUNDLE_ARTIFACT_TYPE,
    COSIGN_SIG_ARTIFACT_TYPE,
    IMPORTABLE_KEY_KINDS,
    SIMPLESIGNING_MEDIA_TYPE,
    CosignEnv,
    CosignError,
    KeyKind,
    KeyPair,
    NetworkEscapeError,
    SignatureArtifacts,
    SkopeoSigstoreUnsupportedError,
    StoredManifest,
    Tool,
)
from tests.support.images import PushedImage, cyclonedx_document, push_image, spdx_document
from tests.support.registries import Registry
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

Format = Literal["bundle", "legacy", "oci11"]
TOOLS: tuple[Tool, Tool] = ("cosign", "cosign2")
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


# --- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosignEnv]:
    """One offline cosign home for the module (under strace when it works here)."""
    for tool in ("cosign", "cosign2"):
        require_tool(tool)
    with CosignEnv(tmp_path_factory.mktemp("cosign")) as cosign_env:
        yield cosign_env


@pytest.fixture(scope="module")
def signer(env: CosignEnv) -> KeyPair:
    return cosign.generate_key_pair(env, "signer")


@pytest.fixture(scope="module")
def stranger(env: CosignEnv) -> KeyPair:
    """Another ECDSA P-256 key (made by cosign2): must never verify the signer's signatures."""
    return cosign.generate_key_pair(env, "stranger", tool="cosign2")


async def _push(registry: Registry, repo: str) -> PushedImage:
    return await asyncio.to_thread(push_image, registry, repo, "v1")


async def _artifacts(registry: Registry, image: PushedImage) -> SignatureArtifacts:
    return await asyncio.to_thread(cosign.signature_artifacts, registry, image.repository, image.digest)


async def _manifest(registry: Registry, image: PushedImage, reference: str) -> StoredManifest:
    manifest = await asyncio.to_thread(cosign.fetch_manifest, registry, image.repository, reference)
    assert manifest is not None, f"{reference} is missing"
    return manifest


async def _verdicts(
    env: CosignEnv,
    key: KeyPair,
    registry: Registry,
    image: PushedImage,
    *,
    attestation_type: str | None = None,
    experimental_oci11: bool = False,
) -> dict[Tool, bool]:
    """``cosign verify`` (or ``verify-attestation``) by both CLIs at once."""
    results = await asyncio.gather(
        *(
            asyncio.to_thread(
                cosign.cosign_verify,
                env,
                tool,
                key.public_path,
                registry,
                image,
                attestation_type=attestation_type,
                experimental_oci11=experimental_oci11,
                digest_algorithm=None if key.digest_algorithm == "sha256" else key.digest_algorithm,
            )
            for tool in TOOLS
        )
    )
    return dict(zip(TOOLS, results, strict=True))


def _assert_referrer_landing(
    registry: Registry, image: PushedImage, found: SignatureArtifacts, listed_type: str
) -> None:
    """Exactly one referrer, listed with ``listed_type``, and no cosign tag."""
    assert found.referrers_source == ("api" if registry.referrers_api else "tag")
    assert found.referrer_artifact_types == [listed_type]
    assert found.cosign_tags == {}
    expected_tags = {"v1"} if registry.referrers_api else {"v1", found.tag_prefix}
    assert set(found.all_tags) == expected_tags


def _assert_tag_landing(registry: Registry, found: SignatureArtifacts, tag: str) -> StoredManifest:
    """No referrer; exactly the cosign tag ``tag``; returns its manifest."""
    assert found.referrers == ()
    assert found.referrers_source == ("api" if registry.referrers_api else "none")
    assert list(found.cosign_tags) == [tag]
    assert set(found.all_tags) == {"v1", tag}
    return found.cosign_tags[tag]


# --- the guard --------------------------------------------------------------------------------------------


def test_strace_connect_lines_are_classified() -> None:
    def inet(fd: int, address: str, port: int) -> str:
        sockaddr = f'sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr("{address}")'
        return f"12 connect({fd}, {{{sockaddr}}}, 16)"

    trace = "\n".join(
        (
            inet(5, "127.0.0.1", 5000) + " = 0",
            "12 connect(6, {sa_family=AF_INET6, sin6_port=htons(5000), sin6_flowinfo=htonl(0), "
            'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
            '12 connect(7, {sa_family=AF_UNSPEC, sa_data=""}, 16) = 0',
            inet(8, "10.255.255.53", 53) + " = 0",  # a DNS query
            inet(9, "127.0.0.1", 4000) + " = -1 ECONNREFUSED (Connection refused)",  # the proxy trap
            '14 connect(3, {sa_family=AF_UNIX, sun_path="/run/nscd/socket"}, 110) = -1 ENOENT',
        )
    )
    seen, escapes = cosign._connections(trace, trap_port=4000)
    assert seen[:2] == ["AF_INET 127.0.0.1:5000", "AF_INET6 ::1:5000"]
    assert escapes == [
        "AF_INET 10.255.255.53:53",
        "AF_INET 127.0.0.1:4000",
        'AF_UNIX, sun_path="/run/nscd/socket"',
    ]


@pytest.mark.parametrize("traced", [True, False], ids=["strace", "stderr-only"])
async def test_guard_catches_a_tuf_fetch(
    traced: bool, olareg_registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    """cosign2 ``verify`` without ``--trusted-root`` fetches TUF: the proxy trap refuses it, the guard fails.

    Everything before that stays offline: ``TUF_ROOT`` is still empty.
    """
    require_tool("cosign2")
    if traced and not cosign.strace_available():
        pytest.skip("strace is missing or cannot trace here")
    with CosignEnv(tmp_path / "cosign", trace=traced) as env:
        key = await asyncio.to_thread(cosign.generate_key_pair, env, "k", tool="cosign2")
        image = await _push(olareg_registry, repo_name)
        await asyncio.to_thread(cosign.sign_legacy, env, key, olareg_registry, image)
        assert await asyncio.to_thread(
            cosign.cosign_verify, env, "cosign2", key.public_path, olareg_registry, image
        )
        assert list(env.tuf_root.iterdir()) == []

        args = cosign.verify_args(env, "cosign2", key.public_path, olareg_registry, image)
        at = args.index("--trusted-root")
        del args[at : at + 2]
        with pytest.raises(NetworkEscapeError) as caught:
            await asyncio.to_thread(env.run, "cosign2", *args)
    assert "proxyconnect" in str(caught.value)
    result = caught.value.result
    assert result is not None and result.traced is traced
    if traced:
        assert f"AF_INET 127.0.0.1:{env.trap_port}" in result.connections
        assert all(connection.startswith("AF_INET 127.0.0.1:") for connection in result.connections)


# --- signatures --------------------------------------------------------------------------------------------

SIGNERS: list[tuple[Format, Tool]] = [
    ("bundle", "cosign"),
    ("bundle", "cosign2"),
    ("legacy", "cosign2"),
    ("legacy", "cosign"),
    ("oci11", "cosign2"),
    ("oci11", "cosign"),
]


@pytest.mark.parametrize(("fmt", "tool"), SIGNERS, ids=[f"{fmt}-{tool}" for fmt, tool in SIGNERS])
async def test_signature_lands_where_expected_and_cosign_agrees(
    fmt: Format,
    tool: Tool,
    env: CosignEnv,
    signer: KeyPair,
    stranger: KeyPair,
    registry: Registry,
    repo_name: str,
) -> None:
    image = await _push(registry, repo_name)
    sign = {"bundle": cosign.sign_bundle, "legacy": cosign.sign_legacy, "oci11": cosign.sign_oci11}[fmt]
    await asyncio.to_thread(sign, env, signer, registry, image, tool=tool)
    found = await _artifacts(registry, image)

    if fmt == "legacy":
        manifest = _assert_tag_landing(registry, found, found.signature_tag)
        assert manifest.layer_media_types == (SIMPLESIGNING_MEDIA_TYPE,)
        assert "dev.cosignproject.cosign/signature" in manifest.raw["layers"][0]["annotations"]
        assert manifest.subject is None
    else:
        expected_type = BUNDLE_ARTIFACT_TYPE if fmt == "bundle" else COSIGN_SIG_ARTIFACT_TYPE
        listed_type = expected_type
        if fmt == "bundle" and tool == "cosign2" and not registry.referrers_api:
            # cosign2 (go-containerregistry) lists the config media type in the referrers tag schema index.
            listed_type = OCI_EMPTY
        _assert_referrer_landing(registry, image, found, listed_type)
        manifest = await _manifest(registry, image, found.referrers[0].digest)
        assert manifest.artifact_type == expected_type
        assert manifest.subject == image.digest
        if fmt == "bundle":
            assert manifest.config_media_type == OCI_EMPTY
            assert manifest.layer_media_types == (BUNDLE_ARTIFACT_TYPE,)
            assert manifest.annotations["dev.sigstore.bundle.predicateType"] == SIGN_PREDICATE
            assert manifest.annotations["dev.sigstore.bundle.content"] == "dsse-envelope"
        else:
            assert manifest.config_media_type == COSIGN_SIG_ARTIFACT_TYPE
            assert manifest.layer_media_types == (SIMPLESIGNING_MEDIA_TYPE,)

    oci11 = fmt == "oci11"
    assert await _verdicts(env, signer, registry, image, experimental_oci11=oci11) == {
        "cosign": True,
        "cosign2": True,
    }
    assert await _verdicts(env, stranger, registry, image, experimental_oci11=oci11) == {
        "cosign": False,
        "cosign2": False,
    }
    if oci11:
        # Without --experimental-oci11 neither version looks at OCI 1.1 referrers of the legacy kind.
        assert await _verdicts(env, signer, registry, image) == {"cosign": False, "cosign2": False}


# --- attestations ------------------------------------------------------------------------------------------

ATTESTERS: list[tuple[Literal["bundle", "legacy"], str]] = [
    ("bundle", "spdxjson"),
    ("bundle", "cyclonedx"),
    ("legacy", "spdxjson"),
    ("legacy", "custom"),
]


@pytest.mark.parametrize(("fmt", "kind"), ATTESTERS, ids=[f"{fmt}-{kind}" for fmt, kind in ATTESTERS])
async def test_attestation_lands_where_expected_and_cosign_agrees(
    fmt: Literal["bundle", "legacy"],
    kind: str,
    env: CosignEnv,
    signer: KeyPair,
    stranger: KeyPair,
    registry: Registry,
    repo_name: str,
) -> None:
    image = await _push(registry, repo_name)
    predicate = env.directory / f"predicate-{repo_name.replace('/', '-')}.json"
    if kind == "spdxjson":
        predicate.write_bytes(spdx_document(image.reference))
    elif kind == "cyclonedx":
        predicate.write_bytes(cyclonedx_document(image.reference))
    else:
        predicate.write_text(json.dumps({"built-by": "countersign tests", "image": image.reference}))
    if fmt == "bundle":
        await asyncio.to_thread(cosign.attest_bundle, env, signer, registry, image, predicate, kind)
    else:
        await asyncio.to_thread(cosign.attest_legacy, env, signer, registry, image, predicate, kind)
    found = await _artifacts(registry, image)

    if fmt == "bundle":
        _assert_referrer_landing(registry, image, found, BUNDLE_ARTIFACT_TYPE)
        manifest = await _manifest(registry, image, found.referrers[0].digest)
        assert manifest.artifact_type == BUNDLE_ARTIFACT_TYPE and manifest.subject == image.digest
        assert manifest.layer_media_types == (BUNDLE_ARTIFACT_TYPE,)
        assert manifest.annotations["dev.sigstore.bundle.predicateType"] == ATTESTATION_PREDICATE_TYPES[kind]
    else:
        manifest = _assert_tag_landing(registry, found, found.attestation_tag)
        assert manifest.layer_media_types == (DSSE_ENVELOPE,)
        assert manifest.raw["layers"][0]["annotations"]["predicateType"] == ATTESTATION_PREDICATE_TYPES[kind]

    assert await _verdicts(env, signer, registry, image, attestation_type=kind) == {
        "cosign": True,
        "cosign2": True,
    }
    assert await _verdicts(env, stranger, registry, image, attestation_type=kind) == {
        "cosign": False,
        "cosign2": False,
    }
    other = "cyclonedx" if kind != "cyclonedx" else "spdxjson"
    assert await _verdicts(env, signer, registry, image, attestation_type=other) == {
        "cosign": False,
        "cosign2": False,
    }
    # Pinned gotcha: `cosign verify` (signatures) accepts any bundle signed by the key, attestations too;
    # a legacy .att tag is not a signature to it.
    expected = fmt == "bundle"
    assert await _verdicts(env, signer, registry, image) == {"cosign": expected, "cosign2": expected}


# --- key types ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("importer", TOOLS)
async def test_import_key_pair_accepts_every_kind(importer: Tool, env: CosignEnv) -> None:
    keys = await asyncio.gather(
        *(
            asyncio.to_thread(cosign.import_key_pair, env, f"import-{importer}-{kind}", kind, tool=importer)
            for kind in IMPORTABLE_KEY_KINDS
        )
    )
    for key, kind in zip(keys, IMPORTABLE_KEY_KINDS, strict=True):
        assert key.kind == kind
        assert key.private_path.read_text().startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
        assert key.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")


SIGNING_KINDS: list[KeyKind] = ["rsa-2048", "rsa-3072", "ecdsa-p384", "ecdsa-p521"]


@pytest.mark.parametrize("kind", SIGNING_KINDS)
async def test_imported_keys_sign_in_both_formats(
    kind: KeyKind, env: CosignEnv, stranger: KeyPair, olareg_registry: Registry, repo_name: str
) -> None:
    key = await asyncio.to_thread(cosign.import_key_pair, env, f"signing-{kind}", kind)
    bundle_image, legacy_image = await asyncio.gather(
        _push(olareg_registry, repo_name), _push(olareg_registry, repo_name + "-legacy")
    )
    await asyncio.gather(
        asyncio.to_thread(cosign.sign_bundle, env, key, olareg_registry, bundle_image),
        asyncio.to_thread(cosign.sign_legacy, env, key, olareg_registry, legacy_image),
    )
    for image in (bundle_image, legacy_image):
        assert await _verdicts(env, key, olareg_registry, image) == {"cosign": True, "cosign2": True}
        assert await _verdicts(env, stranger, olareg_registry, image) == {"cosign": False, "cosign2": False}
    if key.digest_algorithm != "sha256":
        # Signed with the key's own hash, verified with sha256 unless told: cosign rejects its own signature.
        verdict = await asyncio.to_thread(
            cosign.cosign_verify, env, "cosign", key.public_path, olareg_registry, legacy_image
        )
        assert verdict is False


async def test_ed25519_image_signatures_do_not_verify_with_cosign(
    env: CosignEnv, olareg_registry: Registry, repo_name: str
) -> None:
    """Pinned limitation: cosign signs with Ed25519ph, ``verify --key`` only knows pure Ed25519."""
    key = await asyncio.to_thread(cosign.import_key_pair, env, "signing-ed25519", "ed25519")
    image = await _push(olareg_registry, repo_name)
    with pytest.raises(CosignError, match="accepted signatures do not match threshold"):
        await asyncio.to_thread(cosign.sign_bundle, env, key, olareg_registry, image)  # its own check fails
    await asyncio.to_thread(cosign.sign_legacy, env, key, olareg_registry, image)
    found = await _artifacts(olareg_registry, image)
    assert list(found.cosign_tags) == [found.signature_tag]
    assert await _verdicts(env, key, olareg_registry, image) == {"cosign": False, "cosign2": False}


# --- skopeo ------------------------------------------------------------------------------------------------


async def test_skopeo_signature_is_cosign_compatible(
    env: CosignEnv, signer: KeyPair, stranger: KeyPair, registry: Registry, repo_name: str
) -> None:
    require_tool("skopeo")
    image = await _push(registry, repo_name)
    if not cosign.skopeo_supports_sigstore():
        with pytest.raises(SkopeoSigstoreUnsupportedError):
            await asyncio.to_thread(cosign.skopeo_sign, env, signer, registry, image)
        pytest.skip("this skopeo cannot sign with sigstore keys (Debian disables it; upstream >= 1.10 can)")
    await asyncio.to_thread(cosign.skopeo_sign, env, signer, registry, image)
    found = await _artifacts(registry, image)
    manifest = _assert_tag_landing(registry, found, found.signature_tag)
    assert manifest.layer_media_types == (SIMPLESIGNING_MEDIA_TYPE,)
    assert await _verdicts(env, signer, registry, image) == {"cosign": True, "cosign2": True}
    assert await _verdicts(env, stranger, registry, image) == {"cosign": False, "cosign2": False}
