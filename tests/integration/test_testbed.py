"""The test bed itself: real registries, real oras, and content that is what it claims to be."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import ssl
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.support import tools
from tests.support.images import (
    CYCLONEDX_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    SPDX_JSON,
    PushedImage,
    SbomFormat,
    attach_artifact,
    attach_sbom,
    build_image,
    build_index,
    push_image,
    push_index,
)
from tests.support.registries import Registry, RegistryError, RegistryFactory, RegistryKind, TlsFiles

pytestmark = pytest.mark.integration

MANIFEST_ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def get(
    http: aiohttp.ClientSession,
    registry: Registry,
    path: str,
    *,
    accept: str = MANIFEST_ACCEPT,
    **params: str,
) -> tuple[int, CIMultiDict[str], bytes]:
    ssl_arg: ssl.SSLContext | bool = registry.ssl_context() or True
    async with http.get(
        f"{registry.url}{path}", headers={"Accept": accept}, params=params, ssl=ssl_arg
    ) as resp:
        return resp.status, resp.headers.copy(), await resp.read()  # case-insensitive names


async def manifest(
    http: aiohttp.ClientSession, registry: Registry, repo: str, ref: str
) -> tuple[CIMultiDict[str], bytes]:
    status, headers, body = await get(http, registry, f"/v2/{repo}/manifests/{ref}")
    assert status == 200, f"GET manifest {repo}:{ref} -> {status} {body[:300]!r}"
    return headers, body


async def blob(http: aiohttp.ClientSession, registry: Registry, repo: str, digest: str) -> bytes:
    status, _, body = await get(http, registry, f"/v2/{repo}/blobs/{digest}", accept="*/*")
    assert status == 200, f"GET blob {digest} -> {status}"
    assert sha256(body) == digest
    return body


async def referrers(
    http: aiohttp.ClientSession, registry: Registry, image: PushedImage
) -> list[dict[str, Any]]:
    """The referrers of ``image``, through the API or the tag schema, as the registry supports."""
    if registry.referrers_api:
        status, headers, body = await get(http, registry, f"/v2/{image.repository}/referrers/{image.digest}")
        assert status == 200
        assert headers["Content-Type"] == OCI_INDEX
    else:
        _, body = await manifest(http, registry, image.repository, image.digest.replace(":", "-"))
    found: list[dict[str, Any]] = json.loads(body)["manifests"]
    return found


# --- content -------------------------------------------------------------------------------------------


def test_built_content_is_deterministic_per_seed() -> None:
    assert build_image("a").top.digest == build_image("a").top.digest
    assert build_image("a").top.digest != build_image("b").top.digest
    assert build_image("a", architecture="arm64").top.digest != build_image("a").top.digest
    index = build_index("a")
    assert index.top.digest == build_index("a").top.digest
    assert [child.platform for child in index.children] == ["linux/amd64", "linux/arm64"]


async def test_pushed_image_is_fetchable_by_digest_and_by_tag(
    http: aiohttp.ClientSession, registry: Registry, repo_name: str
) -> None:
    image = await asyncio.to_thread(push_image, registry, repo_name, "v1", seed="fetch-me")
    assert image.reference == f"{registry.host}/{repo_name}:v1"
    assert image.pinned == f"{registry.host}/{repo_name}@{image.digest}"

    headers, body = await manifest(http, registry, repo_name, image.digest)
    assert sha256(body) == image.digest
    assert body == image.manifest and len(body) == image.size
    assert headers["Docker-Content-Digest"] == image.digest
    assert headers["Content-Type"] == OCI_MANIFEST

    tag_headers, tag_body = await manifest(http, registry, repo_name, "v1")
    assert tag_body == body and tag_headers["Docker-Content-Digest"] == image.digest

    parsed = json.loads(body)
    assert parsed["mediaType"] == OCI_MANIFEST and parsed["config"]["mediaType"].endswith("config.v1+json")
    config = json.loads(await blob(http, registry, repo_name, parsed["config"]["digest"]))
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    layer_gz = await blob(http, registry, repo_name, parsed["layers"][0]["digest"])
    layer_tar = gzip.decompress(layer_gz)
    assert config["rootfs"]["diff_ids"] == [sha256(layer_tar)]
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as tar:
        seed_file = tar.extractfile("etc/countersign-seed")
        assert seed_file is not None and seed_file.read() == b"fetch-me\n"

    status, _, _ = await get(http, registry, f"/v2/{repo_name}/manifests/sha256:{'0' * 64}")
    assert status == 404


async def test_pushed_index_lists_both_platforms(
    http: aiohttp.ClientSession, registry: Registry, repo_name: str
) -> None:
    index = await asyncio.to_thread(push_index, registry, repo_name, "multi")
    headers, body = await manifest(http, registry, repo_name, "multi")
    assert sha256(body) == index.digest == headers["Docker-Content-Digest"]
    assert headers["Content-Type"] == OCI_INDEX
    listed = {
        f"{entry['platform']['os']}/{entry['platform']['architecture']}": entry["digest"]
        for entry in json.loads(body)["manifests"]
    }
    assert listed == {
        "linux/amd64": index.platform_digest("linux/amd64"),
        "linux/arm64": index.platform_digest("linux/arm64"),
    }
    for child in index.children:
        _, child_body = await manifest(http, registry, repo_name, child.digest)
        assert child_body == child.manifest


# --- referrers -----------------------------------------------------------------------------------------


async def test_olareg_serves_referrers_api_with_artifact_type_filter(
    http: aiohttp.ClientSession, olareg_registry: Registry, repo_name: str
) -> None:
    registry = olareg_registry
    image = await asyncio.to_thread(push_image, registry, repo_name, "v1")
    sbom = await asyncio.to_thread(attach_sbom, registry, image)
    other = await asyncio.to_thread(
        attach_artifact, registry, image, artifact_type="application/vnd.example.not-an-sbom", content=b"x"
    )

    status, headers, body = await get(http, registry, f"/v2/{repo_name}/referrers/{image.digest}")
    assert status == 200 and headers["Content-Type"] == OCI_INDEX
    by_digest = {entry["digest"]: entry for entry in json.loads(body)["manifests"]}
    assert set(by_digest) == {sbom, other}
    assert by_digest[sbom]["artifactType"] == SPDX_JSON
    assert by_digest[sbom]["mediaType"] == OCI_MANIFEST
    assert "OCI-Filters-Applied" not in headers

    status, headers, body = await get(
        http, registry, f"/v2/{repo_name}/referrers/{image.digest}", artifactType=SPDX_JSON
    )
    assert status == 200 and headers.get("OCI-Filters-Applied") == "artifactType"
    assert [entry["digest"] for entry in json.loads(body)["manifests"]] == [sbom]

    # No referrers tag is written when the API is there.
    status, _, _ = await get(http, registry, f"/v2/{repo_name}/manifests/{image.digest.replace(':', '-')}")
    assert status == 404


async def test_distribution_has_no_referrers_api_and_uses_the_tag_schema(
    http: aiohttp.ClientSession, distribution_registry: Registry, repo_name: str
) -> None:
    registry = distribution_registry
    image = await asyncio.to_thread(push_image, registry, repo_name, "v1")
    sbom = await asyncio.to_thread(attach_sbom, registry, image)

    status, _, _ = await get(http, registry, f"/v2/{repo_name}/referrers/{image.digest}")
    assert status == 404

    headers, body = await manifest(
        http, registry, repo_name, "sha256-" + image.digest.removeprefix("sha256:")
    )
    assert headers["Content-Type"] == OCI_INDEX
    entries = json.loads(body)["manifests"]
    assert [(entry["digest"], entry["artifactType"]) for entry in entries] == [(sbom, SPDX_JSON)]


@pytest.mark.parametrize("fmt", ["spdx", "cyclonedx"])
async def test_attached_sbom_is_a_valid_referrer(
    http: aiohttp.ClientSession, registry: Registry, repo_name: str, fmt: SbomFormat
) -> None:
    media_type = SPDX_JSON if fmt == "spdx" else CYCLONEDX_JSON
    image = await asyncio.to_thread(push_image, registry, repo_name, "v1")
    sbom = await asyncio.to_thread(attach_sbom, registry, image, fmt=fmt)

    assert [(entry["digest"], entry["artifactType"]) for entry in await referrers(http, registry, image)] == [
        (sbom, media_type)
    ]
    _, body = await manifest(http, registry, repo_name, sbom)
    referrer = json.loads(body)
    assert referrer["artifactType"] == media_type
    assert referrer["subject"] == {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.size}
    [layer] = referrer["layers"]
    assert layer["mediaType"] == media_type
    document = json.loads(await blob(http, registry, repo_name, layer["digest"]))
    if fmt == "spdx":
        assert document["spdxVersion"] == "SPDX-2.3"
        assert [package["name"] for package in document["packages"]] == ["openssl", "zlib"]
    else:
        assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.5")
        assert [component["name"] for component in document["components"]] == ["openssl", "zlib"]


async def test_referrer_of_a_referrer_and_custom_document(
    http: aiohttp.ClientSession, registry: Registry, repo_name: str
) -> None:
    image = await asyncio.to_thread(push_image, registry, repo_name, None)
    assert image.reference == image.pinned  # pushed untagged
    sbom = await asyncio.to_thread(attach_sbom, registry, image, document=b'{"spdxVersion":"SPDX-2.3"}')
    signature = await asyncio.to_thread(
        attach_artifact, registry, f"{repo_name}@{sbom}", artifact_type="application/vnd.example.signature"
    )
    sbom_subject = PushedImage(registry.host, repo_name, None, sbom, b"", OCI_MANIFEST, "")
    assert [entry["digest"] for entry in await referrers(http, registry, sbom_subject)] == [signature]
    _, body = await manifest(http, registry, repo_name, sbom)
    assert await blob(http, registry, repo_name, json.loads(body)["layers"][0]["digest"]) == (
        b'{"spdxVersion":"SPDX-2.3"}'
    )


# --- outages and TLS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["olareg", "distribution"])
async def test_stopped_registry_refuses_and_restarted_one_serves_the_same_content(
    http: aiohttp.ClientSession, registry_factory: RegistryFactory, kind: RegistryKind
) -> None:
    registry = registry_factory(kind)
    image = await asyncio.to_thread(push_image, registry, "outage/app", "v1")
    port = registry.port

    registry.stop()
    assert not registry.running
    with pytest.raises(aiohttp.ClientConnectorError) as refused:
        await get(http, registry, "/v2/")
    assert isinstance(refused.value.os_error, ConnectionRefusedError)

    registry.start()
    assert registry.port == port
    _, body = await manifest(http, registry, "outage/app", "v1")
    assert body == image.manifest


async def test_frozen_registry_times_out_and_thawed_one_answers(registry_factory: RegistryFactory) -> None:
    registry = registry_factory("olareg", memory=True)
    registry.freeze()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as session:
        with pytest.raises(TimeoutError):
            await get(session, registry, "/v2/")
    registry.thaw()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        status, _, _ = await get(session, registry, "/v2/")
    assert status == 200


@pytest.mark.parametrize("kind", ["olareg", "distribution"])
async def test_tls_registry_trusts_only_the_test_ca(
    http: aiohttp.ClientSession, kind: str, request: pytest.FixtureRequest
) -> None:
    registry: Registry = request.getfixturevalue(f"{kind}_tls_registry")
    assert registry.tls and registry.url.startswith("https://127.0.0.1:")
    assert registry.ca_file is not None and registry.ca_file.read_bytes().startswith(
        b"-----BEGIN CERTIFICATE-----"
    )

    image = await asyncio.to_thread(push_image, registry, "tls/app", "v1")  # oras with --to-ca-file
    sbom = await asyncio.to_thread(attach_sbom, registry, image)  # oras with --ca-file
    _, body = await manifest(http, registry, "tls/app", image.digest)
    assert body == image.manifest
    assert [entry["digest"] for entry in await referrers(http, registry, image)] == [sbom]

    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        async with http.get(f"{registry.url}/v2/", ssl=ssl.create_default_context()):
            pass
    async with http.get(f"http://{registry.host}/v2/") as plain:  # plain HTTP to the TLS port
        assert plain.status == 400


def test_registry_refuses_to_start_on_a_taken_port(registry_factory: RegistryFactory) -> None:
    running = registry_factory("olareg", memory=True)
    clash = Registry(kind="olareg", workdir=running.workdir / "clash", port=running.port, memory=True)
    with pytest.raises(RegistryError, match="address already in use"):
        clash.start(timeout=5)
    assert not clash.running and running.running


@pytest.mark.parametrize("kind", ["olareg", "distribution"])
def test_registry_start_failure_carries_the_log(tmp_path: Path, kind: RegistryKind) -> None:
    tools.require_tool("olareg" if kind == "olareg" else "docker-registry")
    missing = tmp_path / "missing"
    broken = Registry(
        kind=kind,
        workdir=tmp_path,
        tls_files=TlsFiles(missing / "c.pem", missing / "k.pem", missing / "ca.pem"),
    )
    with pytest.raises(
        RegistryError, match=r"exited during start-up(.|\n)*no such file or directory"
    ) as failure:
        broken.start(timeout=10)
    assert str(broken.log_file) in str(failure.value)
    assert not broken.running


# --- tools ---------------------------------------------------------------------------------------------


def test_missing_tool_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("COUNTERSIGN_TOOLS", "/nonexistent/tools")
    assert tools.tools_dir().as_posix() == "/nonexistent/tools"
    assert tools.find_tool("oras") is None

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"tools/install.sh oras"):
        tools.require_tool("oras")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install docker-registry"):
        tools.require_tool("docker-registry")
    with pytest.raises(tools.ToolNotFoundError, match=r"tools/install.sh tsa") as missing:
        tools.ensure_tool("timestamp-server")
    assert isinstance(missing.value, RuntimeError)


def test_tools_are_found_in_the_cache_before_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached, on_path = tmp_path / "cache" / "bin", tmp_path / "path"
    for directory in (cached, on_path):
        directory.mkdir(parents=True)
        (directory / "skopeo").write_text("#!/bin/sh\n")
        (directory / "skopeo").chmod(0o755)
    (on_path / "redis-server").write_text("#!/bin/sh\n")
    (on_path / "redis-server").chmod(0o755)
    (cached / "not-executable").write_text("")
    monkeypatch.setenv("COUNTERSIGN_TOOLS", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(on_path))
    assert tools.find_tool("skopeo") == cached / "skopeo"
    assert tools.find_tool("redis-server") == on_path / "redis-server"
    assert tools.find_tool("not-executable") is None
    assert tools.require_tool("skopeo") == cached / "skopeo"
