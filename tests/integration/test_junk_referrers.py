"""Junk beside a signed image, on real registries: a real cosign signature and a valid SBOM still verify.

The junk referrers are the shapes of `tests.support.junk` (a `config` that is a list, a `subject` that is
a string, negative sizes, values nested 100,000 deep, ...). Those a real registry accepts are pushed to it
by raw HTTP (olareg keeps negative sizes, lone surrogates, duplicate keys and members nested 9,000 deep;
distribution also keeps a string `subject`); the others are added to the referrers listing by a recording
proxy in front of it, as a hostile registry would serve them. Every verdict is decided: allowed with the
good signature, denied (`no_signature_found`) without it, and never a crash, a traceback or undecided.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from provider.config import Config, parse_config
from provider.engine import Engine
from provider.outcome import Decided
from provider.registry.client import RegistryClient
from provider.registry.settings import Limits, RegistrySettings
from tests.support import cosign
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.http_servers import Front
from tests.support.images import SPDX_JSON, PushedImage, attach_sbom, push_image
from tests.support.junk import (
    OCI_MANIFEST,
    digest_of,
    junk_manifests,
    push_manifest,
    push_referenced_blobs,
)
from tests.support.registries import Registry
from tests.support.tools import require_tool
from verifiers.cosign.model import ARTIFACT_TYPE_BUNDLE
from verifiers.errors import AuthenticationFailed
from verifiers.reference import parse_reference

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosignEnv]:
    for tool in ("cosign", "cosign2"):
        require_tool(tool)
    with CosignEnv(tmp_path_factory.mktemp("cosign-junk")) as cosign_env:
        yield cosign_env


@pytest.fixture(scope="module")
def signer(env: CosignEnv) -> KeyPair:
    return cosign.generate_key_pair(env, "signer")


def config_for(host: str, signer: KeyPair) -> Config:
    return parse_config(
        {
            "registries": {host: {"insecure": True}},
            "verifiers": {
                "cosign": {"type": "cosign", "options": cosign.key_options(signer)},
                "sbom": {"type": "sbom"},
            },
            "policies": [{"scopes": ["*"], "allOf": ["cosign", "sbom"]}],
        }
    )


class Junk:
    """Junk referrers of one image: pushed to the registry where it accepts them, else served by a proxy."""

    def __init__(self, registry: Registry, image: PushedImage) -> None:
        self.registry = registry
        self.image = image
        self.pushed: dict[str, str] = {}  # name -> digest, kept by the registry
        self.served: dict[str, bytes] = {}  # digest -> bytes, only the proxy has them
        self.listed: list[Any] = []  # descriptors the proxy adds to the referrers listing

    def add(self, artifact_type: str) -> None:
        push_referenced_blobs(self.registry.url, self.image.repository)
        for name, data in junk_manifests(self.image.digest, artifact_type).items():
            name = f"{artifact_type}: {name}"
            try:
                self.pushed[name] = push_manifest(self.registry.url, self.image.repository, data)
            except urllib.error.HTTPError:
                digest = digest_of(data)
                self.served[digest] = data
                self.listed.append(
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": digest,
                        "size": len(data),
                        "artifactType": artifact_type,
                    }
                )
        # Junk in the listing itself: entries that are not descriptors at all.
        self.listed += [{"mediaType": OCI_MANIFEST, "digest": "sha256:zz", "size": 1}, "junk", {"size": -1}]

    async def intercept(self, front: Front, request: web.Request) -> web.StreamResponse | None:
        repo = self.image.repository
        if request.method == "GET" and request.path == f"/v2/{repo}/referrers/{self.image.digest}":
            upstream = await front.fetch_upstream(request)
            listing = json.loads(upstream.body)
            listing["manifests"] = (listing.get("manifests") or []) + self.listed
            return upstream.response(body=json.dumps(listing).encode())
        digest = request.path.rpartition("/manifests/")[2]
        if request.path.startswith(f"/v2/{repo}/manifests/") and digest in self.served:
            data = self.served[digest]
            headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest}
            return web.Response(body=b"" if request.method == "HEAD" else data, headers=headers)
        return None


async def verdict(engine: Engine, reference: str) -> dict[str, Any]:
    start = time.monotonic()
    outcome = (await engine.verify([reference], 20))[reference]
    assert time.monotonic() - start < 20
    assert isinstance(outcome, Decided), outcome  # never undecided: junk is decided like nothing at all
    json.dumps(outcome.value, allow_nan=False, ensure_ascii=False).encode("utf-8")  # the batch serialises
    value: dict[str, Any] = outcome.value
    return value


def reports(value: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in value["verifiers"]}


@pytest.mark.parametrize("fmt", ["bundle", "legacy"])
async def test_signed_image_with_sbom_beside_junk_is_allowed(
    env: CosignEnv,
    signer: KeyPair,
    olareg_registry: Registry,
    repo_name: str,
    engines: Any,
    fmt: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = await asyncio.to_thread(push_image, olareg_registry, repo_name, "v1", seed=f"junk-{fmt}")
    sign = cosign.sign_bundle if fmt == "bundle" else cosign.sign_legacy
    await asyncio.to_thread(sign, env, signer, olareg_registry, image)
    sbom = await asyncio.to_thread(attach_sbom, olareg_registry, image, fmt="spdx")
    junk = Junk(olareg_registry, image)
    await asyncio.to_thread(junk.add, ARTIFACT_TYPE_BUNDLE)
    await asyncio.to_thread(junk.add, SPDX_JSON)
    assert len(junk.pushed) >= 10, junk.pushed  # most of the junk sits in the real registry
    async with Front(olareg_registry.url, junk.intercept) as front:
        engine = await engines(config_for(front.host, signer))
        reference = f"{front.host}/{repo_name}@{image.digest}"
        value = await verdict(engine, reference)
        assert value["allowed"] is True, value["reasons"]
        by_name = reports(value)
        assert by_name["cosign"]["reason"] == "cosign_verified"
        assert by_name["sbom"]["reason"] == "sbom_verified"
        assert by_name["sbom"]["details"]["referrer"] == sbom
        # cosign reads every referrer: the junk was skipped and noted (the sbom verifier stops at the first
        # SBOM that verifies, so what it skipped depends on the registry's listing order)
        skipped = by_name["cosign"]["details"]["skipped"]
        assert by_name["cosign"]["details"]["skippedCount"] >= 10 and all(s["reason"] for s in skipped)
        # decided, so cached: the second answer reads nothing from the registry
        before = len(front.requests)
        assert (await verdict(engine, reference))["allowed"] is True
        assert len(front.requests) <= before + 1  # at most the (cached) digest resolution
    assert "Traceback" not in caplog.text


async def test_junk_without_a_signature_is_a_decided_denial(
    olareg_registry: Registry, repo_name: str, engines: Any, signer: KeyPair
) -> None:
    image = await asyncio.to_thread(push_image, olareg_registry, repo_name, "v1", seed="junk-unsigned")
    await asyncio.to_thread(attach_sbom, olareg_registry, image, fmt="spdx")
    junk = Junk(olareg_registry, image)
    await asyncio.to_thread(junk.add, ARTIFACT_TYPE_BUNDLE)
    await asyncio.to_thread(junk.add, "application/vnd.dev.cosign.artifact.sig.v1+json")
    async with Front(olareg_registry.url, junk.intercept) as front:
        engine = await engines(config_for(front.host, signer))
        value = await verdict(engine, f"{front.host}/{repo_name}@{image.digest}")
    assert value["allowed"] is False
    by_name = reports(value)
    assert by_name["cosign"]["reason"] == "no_signature_found"
    assert by_name["cosign"]["details"].get("skippedCount", 0) >= 10, by_name["cosign"]
    assert by_name["sbom"]["reason"] == "sbom_verified"


async def test_junk_in_the_tag_schema_index_on_distribution(
    env: CosignEnv, signer: KeyPair, distribution_registry: Registry, repo_name: str, engines: Any
) -> None:
    """No referrers API: the `sha256-<hex>` index anyone can rewrite lists junk entries and junk manifests."""
    registry = distribution_registry
    image = await asyncio.to_thread(push_image, registry, repo_name, "v1", seed="junk-tags")
    await asyncio.to_thread(cosign.sign_legacy, env, signer, registry, image)
    await asyncio.to_thread(attach_sbom, registry, image, fmt="spdx")
    junk = Junk(registry, image)
    await asyncio.to_thread(junk.add, SPDX_JSON)
    assert any("subject a string" in name for name in junk.pushed)  # distribution keeps it

    def rewrite_index() -> None:
        import urllib.request

        tag = image.digest.replace(":", "-")
        request = urllib.request.Request(
            f"{registry.url}/v2/{repo_name}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        with urllib.request.urlopen(request) as response:
            index = json.load(response)
        for digest in junk.pushed.values():
            index["manifests"].append(
                {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1, "artifactType": SPDX_JSON}
            )
        # an entry that is not a valid descriptor (distribution keeps a negative size)
        index["manifests"].insert(0, {**index["manifests"][0], "size": -1})
        data = json.dumps(index).encode()
        put = urllib.request.Request(
            f"{registry.url}/v2/{repo_name}/manifests/{tag}",
            data=data,
            method="PUT",
            headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
        )
        urllib.request.urlopen(put).close()

    await asyncio.to_thread(rewrite_index)
    engine = await engines(config_for(registry.host, signer))
    value = await verdict(engine, f"{registry.host}/{repo_name}@{image.digest}")
    assert value["allowed"] is True, value["reasons"]
    assert reports(value)["sbom"]["reason"] == "sbom_verified"


# --- the subject's own manifest and token responses ---------------------------------------------------------


async def test_a_deeply_nested_subject_manifest_is_a_decided_content_invalid(
    olareg_registry: Registry, engines: Any, signer: KeyPair
) -> None:
    deep = b'{"schemaVersion": 2, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if "/manifests/" in request.path:
            return web.Response(body=deep, headers={"Content-Type": OCI_MANIFEST})
        return None

    async with Front(olareg_registry.url, intercept) as front:
        engine = await engines(config_for(front.host, signer))
        value = await verdict(engine, f"{front.host}/deep/app:v1")
        assert value["allowed"] is False and value["reason"] == "content_invalid"
        assert "nested more than 64" in value["reasons"][0]
        seen = len(front.requests)
        await verdict(engine, f"{front.host}/deep/app:v1")
        assert len(front.requests) == seen + 1  # the tag is resolved again; nothing else


async def test_a_deeply_nested_token_response_is_an_authentication_failure(olareg_registry: Registry) -> None:
    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if request.path == "/token":
            return web.Response(body=b'{"token": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
        challenge = f'Bearer realm="{front.url}/token",service="test"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})

    async with Front(olareg_registry.url, intercept) as front:
        client = RegistryClient(settings={front.host: RegistrySettings(insecure=True)}, limits=Limits())
        try:
            with pytest.raises(AuthenticationFailed, match="invalid JSON"):
                await client.get_manifest(parse_reference(f"{front.host}/app:v1"))
        finally:
            await client.close()
