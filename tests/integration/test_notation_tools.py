"""The notation kit (tests/support/notation.py): the real notation CLI, offline, on both registries.

For each registry kind and each envelope format: sign a fresh image, check exactly where the signature
landed and what it looks like, and check that ``notation verify`` itself accepts it under the right trust
policy and rejects it under a wrong one. These are the reference Notary Project signatures the verifiers are
tested against, so their shape is pinned here.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from tests.support import notation
from tests.support.images import OCI_MANIFEST, PushedImage, push_image
from tests.support.notation import (
    ENVELOPE_MEDIA_TYPES,
    NOTARY_SIGNATURE_ARTIFACT_TYPE,
    THUMBPRINT_ANNOTATION,
    ChainKeyKind,
    NotationEnv,
    NotationSignatures,
    SignatureFormat,
    SigningChain,
    SigningKey,
)
from tests.support.registries import Registry
from tests.support.tools import require_tool
from tests.support.tsa import TimestampServer, TsaCertificates, pem

pytestmark = pytest.mark.integration

FORMATS: tuple[SignatureFormat, ...] = ("jws", "cose")
#: notation cert generate-test's subject for the name "signer.example".
SIGNER_SUBJECT = "C=US, ST=WA, L=Seattle, O=Notary, CN=signer.example"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[NotationEnv]:
    """A fresh offline notation home per test (trust policy and stores are global to a home)."""
    for tool in ("notation", "oras", "olareg"):
        require_tool(tool)
    with NotationEnv(tmp_path / "notation") as notation_env:
        yield notation_env


@pytest.fixture
def signer(env: NotationEnv) -> SigningKey:
    return notation.generate_test_key(env, "signer.example")


async def _push(registry: Registry, repo: str) -> PushedImage:
    return await asyncio.to_thread(push_image, registry, repo, "v1")


async def _landed(registry: Registry, image: PushedImage) -> NotationSignatures:
    return await asyncio.to_thread(notation.signature_artifacts, registry, image.repository, image.digest)


async def _verify_with(
    env: NotationEnv,
    registry: Registry,
    image: PushedImage,
    trust_stores: list[str],
    identities: list[str],
    *,
    level: Literal["strict", "permissive"] = "strict",
    verify_timestamp: Literal["always", "afterCertExpiry"] | None = None,
) -> bool:
    policy = notation.trust_policy(trust_stores, identities, level=level, verify_timestamp=verify_timestamp)
    await asyncio.to_thread(notation.write_trust_policy, env, policy)
    return await asyncio.to_thread(notation.notation_verify, env, registry, image)


def _assert_loopback(result: notation.CommandResult, registry: Registry) -> None:
    if result.traced:
        assert result.connections, "strace saw no connection at all"
        assert set(result.connections) == {f"AF_INET {registry.host}"}


def _assert_envelope(fmt: SignatureFormat, envelope: bytes) -> None:
    if fmt == "jws":
        document = json.loads(envelope)
        assert set(document) >= {"payload", "protected", "header", "signature"}
        assert document["header"]["x5c"]
        payload = json.loads(base64.urlsafe_b64decode(document["payload"] + "=="))
        assert payload["targetArtifact"]["mediaType"] == OCI_MANIFEST
    else:
        assert envelope[:1] == b"\xd2"  # CBOR tag 18: COSE_Sign1


# --- where signatures land, and notation's own verdict -----------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_sign_lands_and_verifies(
    env: NotationEnv, signer: SigningKey, registry: Registry, repo_name: str, fmt: SignatureFormat
) -> None:
    image = await _push(registry, repo_name)
    result = await asyncio.to_thread(notation.sign, env, signer.name, registry, image, signature_format=fmt)
    _assert_loopback(result, registry)

    landed = await _landed(registry, image)
    tag = image.digest.replace(":", "-")
    if registry.referrers_api:
        assert landed.referrers_source == "api"
        assert tag not in landed.all_tags
    else:
        assert landed.referrers_source == "tag"
        assert tag in landed.all_tags
    assert set(landed.all_tags) <= {"v1", tag}
    assert len(landed.signatures) == 1
    signature = landed.signatures[0]
    assert signature.referrer.artifact_type == NOTARY_SIGNATURE_ARTIFACT_TYPE
    assert signature.manifest.media_type == OCI_MANIFEST
    assert signature.manifest.artifact_type == NOTARY_SIGNATURE_ARTIFACT_TYPE
    # notation 1.3 writes no artifactType: the config media type is the artifact type.
    assert "artifactType" not in signature.manifest.raw
    assert signature.manifest.config_media_type == NOTARY_SIGNATURE_ARTIFACT_TYPE
    assert signature.manifest.subject == image.digest
    assert signature.envelope_media_type == ENVELOPE_MEDIA_TYPES[fmt]
    assert signature.signature_format == fmt
    assert signature.thumbprints == signer.thumbprints
    assert (
        signature.referrer.annotations[THUMBPRINT_ANNOTATION]
        == signature.manifest.annotations[THUMBPRINT_ANNOTATION]
    )
    _assert_envelope(fmt, signature.envelope)

    assert await _verify_with(env, registry, image, ["ca:signer.example"], ["*"])
    assert await _verify_with(
        env, registry, image, ["ca:signer.example"], [f"x509.subject: {SIGNER_SUBJECT}"]
    )
    other_subject = SIGNER_SUBJECT.replace("signer.example", "someone-else.example")
    assert not await _verify_with(
        env, registry, image, ["ca:signer.example"], [f"x509.subject: {other_subject}"]
    )
    # A trust store holding another certificate: rejected.
    await asyncio.to_thread(notation.generate_test_key, env, "stranger.example", default=False)
    assert not await _verify_with(env, registry, image, ["ca:stranger.example"], ["*"])


async def test_forced_referrers_tag_on_olareg(
    env: NotationEnv, signer: SigningKey, olareg_registry: Registry, repo_name: str
) -> None:
    """``--force-referrers-tag`` (notation's own default) writes the tag schema even with a referrers API.

    olareg does not list such signatures in its referrers API, and ``notation verify`` only asks the API
    when there is one: notation does not find its own signature there.
    """
    image = await _push(olareg_registry, repo_name)
    await asyncio.to_thread(notation.sign, env, signer.name, olareg_registry, image, referrers="tag")
    landed = await _landed(olareg_registry, image)
    assert image.digest.replace(":", "-") in landed.all_tags
    assert [s.envelope_media_type for s in landed.signatures] == [ENVELOPE_MEDIA_TYPES["jws"]]
    assert landed.referrers_source == "tag"
    assert not await _verify_with(env, olareg_registry, image, ["ca:signer.example"], ["*"])


async def test_unsigned_image_is_rejected(
    env: NotationEnv, signer: SigningKey, olareg_registry: Registry, repo_name: str
) -> None:
    image = await _push(olareg_registry, repo_name)
    assert not await _verify_with(env, olareg_registry, image, ["ca:signer.example"], ["*"])


# --- chains built with cryptography --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaf_kind", "ca_kind", "fmt"),
    [
        ("rsa-2048", "rsa-3072", "jws"),
        ("rsa-3072", "rsa-3072", "cose"),
        ("ecdsa-p256", "ecdsa-p384", "cose"),
        ("ecdsa-p384", "ecdsa-p384", "jws"),
    ],
)
async def test_installed_chain(
    env: NotationEnv,
    olareg_registry: Registry,
    repo_name: str,
    leaf_kind: ChainKeyKind,
    ca_kind: ChainKeyKind,
    fmt: SignatureFormat,
) -> None:
    chain = await asyncio.to_thread(SigningChain, name="chain.example", leaf_kind=leaf_kind, ca_kind=ca_kind)
    key = await asyncio.to_thread(notation.install_key, env, "chain", chain.key_pem, chain.chain_pem)
    await asyncio.to_thread(notation.add_trust_store, env, "ca", "chain-root", chain.root_pem)
    image = await _push(olareg_registry, repo_name)
    await asyncio.to_thread(notation.sign, env, key.name, olareg_registry, image, signature_format=fmt)

    landed = await _landed(olareg_registry, image)
    assert [s.thumbprints for s in landed.signatures] == [key.thumbprints]
    assert len(key.thumbprints) == 3
    identity = f"x509.subject: {chain.subject}"
    assert await _verify_with(env, olareg_registry, image, ["ca:chain-root"], [identity])
    # Another PKI's root (same names, other keys) in the trust store: rejected.
    impostor = await asyncio.to_thread(SigningChain, name="chain.example", leaf_kind="ecdsa-p256")
    await asyncio.to_thread(notation.add_trust_store, env, "ca", "impostor-root", impostor.root_pem)
    assert not await _verify_with(env, olareg_registry, image, ["ca:impostor-root"], [identity])


# --- expiry and timestamps ------------------------------------------------------------------------------


async def test_expired_signature(
    env: NotationEnv, signer: SigningKey, olareg_registry: Registry, repo_name: str
) -> None:
    image = await _push(olareg_registry, repo_name)
    await asyncio.to_thread(notation.sign, env, signer.name, olareg_registry, image, expiry="1s")
    await asyncio.sleep(2)
    assert not await _verify_with(env, olareg_registry, image, ["ca:signer.example"], ["*"])
    # permissive only logs an expired signature.
    assert await _verify_with(env, olareg_registry, image, ["ca:signer.example"], ["*"], level="permissive")


async def test_timestamped_signature(
    env: NotationEnv, olareg_registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    """RFC 3161 countersignature from a real timestamp-server on 127.0.0.1, checked with ``tsa:`` stores.

    The signing certificate must predate the timestamp by more than its accuracy: ``cert generate-test``
    certificates start "now" and are rejected ("timestamp can be before certificate ... validity period"),
    so this uses a :class:`SigningChain` (valid from an hour ago).
    """
    require_tool("timestamp-server")
    chain = await asyncio.to_thread(SigningChain, name="stamped.example", leaf_kind="ecdsa-p256")
    key = await asyncio.to_thread(notation.install_key, env, "stamped", chain.key_pem, chain.chain_pem)
    await asyncio.to_thread(notation.add_trust_store, env, "ca", "stamped-root", chain.root_pem)
    certificates = TsaCertificates()
    root_file = tmp_path / "tsa-root.pem"
    root_file.write_bytes(pem(certificates.root_cert))
    image = await _push(olareg_registry, repo_name)
    with TimestampServer(tmp_path / "tsa", certificates) as tsa:
        result = await asyncio.to_thread(
            notation.sign,
            env,
            key.name,
            olareg_registry,
            image,
            signature_format="cose",
            timestamp_url=tsa.timestamp_url,
            timestamp_root=root_file,
        )
        if result.traced:
            assert f"AF_INET 127.0.0.1:{tsa.port}" in result.connections
    await asyncio.to_thread(notation.add_trust_store, env, "tsa", "test-tsa", pem(certificates.root_cert))
    stores = ["ca:stamped-root", "tsa:test-tsa"]
    assert await _verify_with(env, olareg_registry, image, stores, ["*"], verify_timestamp="always")
    # Another TSA root in the tsa store: the timestamp does not verify.
    other = TsaCertificates(name="other-tsa")
    await asyncio.to_thread(notation.add_trust_store, env, "tsa", "other-tsa", pem(other.root_cert))
    stores = ["ca:stamped-root", "tsa:other-tsa"]
    assert not await _verify_with(env, olareg_registry, image, stores, ["*"], verify_timestamp="always")
