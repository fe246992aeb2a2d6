"""Verification against real registries: olareg (referrers API) and distribution 2.8 (tag-schema fallback).

Images and SBOMs are pushed with the real oras CLI; tampering is done on the registry's own storage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from provider.config import Config, parse_config
from provider.outcome import Decided, Invalid, Outcome, UndecidedKey
from provider.server import build_app
from tests.support.images import (
    PushedImage,
    attach_artifact,
    attach_sbom,
    push_image,
    push_index,
    spdx_document,
)
from tests.support.registries import Registry

pytestmark = pytest.mark.integration

AiohttpClient = Callable[[web.Application], Any]


def config_for(*registries: Registry, policies: list[dict[str, Any]] | None = None, **extra: Any) -> Config:
    doc: dict[str, Any] = {
        "registries": {
            r.host: ({"caFile": str(r.ca_file)} if r.tls else {"insecure": True}) for r in registries
        },
        "verifiers": {
            "pinned": {"type": "digest-pin"},
            "pinned-tag": {"type": "digest-pin", "options": {"verifyTag": True}},
            "sbom": {"type": "sbom"},
        },
        "policies": policies or [{"name": "default", "scopes": ["*"], "allOf": ["sbom"]}],
        **extra,
    }
    return parse_config(doc)


def decided(outcome: Outcome) -> dict[str, Any]:
    assert isinstance(outcome, Decided), outcome
    value: dict[str, Any] = outcome.value
    return value


def verifier(value: dict[str, Any], name: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [v for v in value["verifiers"] if v["name"] == name]
    assert len(matches) == 1, value
    return matches[0]


async def push(registry: Registry, repo: str, tag: str | None = "v1", seed: str | None = None) -> PushedImage:
    return await asyncio.to_thread(push_image, registry, repo, tag, seed=seed)


@pytest.mark.parametrize("fmt", ["spdx", "cyclonedx"])
async def test_image_with_sbom_is_allowed(registry: Registry, repo_name: str, engines: Any, fmt: str) -> None:
    image = await push(registry, repo_name)
    referrer = await asyncio.to_thread(attach_sbom, registry, image, fmt=fmt)  # type: ignore[arg-type]
    engine = await engines(config_for(registry))
    value = decided((await engine.verify([image.reference], 10))[image.reference])
    assert value["allowed"] is True, value["reasons"]
    assert value["schemaVersion"] == 1
    assert value["digest"] == image.digest
    assert value["reference"] == image.reference
    assert value["reasons"] == []
    report = verifier(value, "sbom")
    assert report["passed"] is True
    assert report["reason"] == "sbom_verified"
    assert report["details"]["format"] == fmt
    assert report["details"]["packageCount"] == 2
    assert report["details"]["referrer"] == referrer


async def test_artifact_types_match_case_insensitively_and_without_parameters(
    olareg_registry: Registry, repo_name: str, engines: Any
) -> None:
    image = await push(olareg_registry, repo_name)
    await asyncio.to_thread(attach_sbom, olareg_registry, image, fmt="cyclonedx")
    config = parse_config(
        {
            "registries": {olareg_registry.host: {"insecure": True}},
            "verifiers": {
                "sbom": {
                    "type": "sbom",
                    "options": {"artifactTypes": ["Application/VND.CycloneDX+JSON; version=1.5"]},
                }
            },
            "policies": [{"scope": "*", "allOf": ["sbom"]}],
        }
    )
    engine = await engines(config)
    assert decided((await engine.verify([image.reference], 10))[image.reference])["allowed"] is True


async def test_large_sbom_is_parsed_and_counted(
    olareg_registry: Registry, repo_name: str, engines: Any
) -> None:
    packages = [(f"pkg-{i}", f"1.{i}", "MIT") for i in range(3000)]
    document = spdx_document(packages=packages)
    assert len(document) > 64 * 1024  # parsed off the event loop
    image = await push(olareg_registry, repo_name)
    await asyncio.to_thread(attach_sbom, olareg_registry, image, fmt="spdx", document=document)
    engine = await engines(config_for(olareg_registry))
    value = decided((await engine.verify([image.reference], 20))[image.reference])
    assert value["allowed"] is True
    assert verifier(value, "sbom")["details"]["packageCount"] == 3000


@pytest.mark.parametrize(
    ("max_age", "allowed", "reason"), [("3650d", True, "sbom_verified"), ("30d", False, "sbom_too_old")]
)
async def test_sbom_max_age(
    olareg_registry: Registry, repo_name: str, engines: Any, max_age: str, allowed: bool, reason: str
) -> None:
    image = await push(olareg_registry, repo_name)
    await asyncio.to_thread(attach_sbom, olareg_registry, image, fmt="spdx")  # created 2024-01-01
    config = parse_config(
        {
            "registries": {olareg_registry.host: {"insecure": True}},
            "verifiers": {"sbom": {"type": "sbom", "options": {"maxAge": max_age}}},
            "policies": [{"scope": "*", "allOf": ["sbom"]}],
        }
    )
    engine = await engines(config)
    value = decided((await engine.verify([image.reference], 10))[image.reference])
    assert value["allowed"] is allowed
    assert verifier(value, "sbom")["reason"] == reason


async def test_image_without_sbom_is_denied_with_reasons(
    registry: Registry, repo_name: str, engines: Any
) -> None:
    image = await push(registry, repo_name)
    await asyncio.to_thread(
        attach_artifact, registry, image, artifact_type="application/vnd.example.readme", content=b"hi"
    )
    engine = await engines(config_for(registry))
    value = decided((await engine.verify([image.reference], 10))[image.reference])
    assert value["allowed"] is False
    assert value["reason"] == "policy_not_satisfied"
    report = verifier(value, "sbom")
    assert report["reason"] == "sbom_not_found"
    assert report["details"]["referrers"] == 1
    assert any(image.digest in r for r in value["reasons"])
    assert any("sbom_not_found" in r for r in value["reasons"])


async def test_malformed_sbom_is_denied(registry: Registry, repo_name: str, engines: Any) -> None:
    image = await push(registry, repo_name)
    await asyncio.to_thread(attach_sbom, registry, image, fmt="spdx", document=b'{"spdxVersion": "SPDX-2.3"}')
    engine = await engines(config_for(registry))
    value = decided((await engine.verify([image.reference], 10))[image.reference])
    assert value["allowed"] is False
    assert verifier(value, "sbom")["reason"] == "sbom_invalid"


async def test_digest_pin(registry: Registry, repo_name: str, engines: Any) -> None:
    image = await push(registry, repo_name)
    other = await push(registry, repo_name, tag="v2", seed="other")
    engine = await engines(config_for(registry, policies=[{"scopes": ["*"], "allOf": ["pinned-tag"]}]))
    moved = f"{registry.host}/{repo_name}:v2@{image.digest}"  # tag v2 points at `other`, not `image`
    results = await engine.verify([image.reference, image.pinned, image.tagged_and_pinned, moved], 10)
    tagged = decided(results[image.reference])
    assert tagged["allowed"] is False
    assert verifier(tagged, "pinned-tag")["reason"] == "not_pinned"
    assert verifier(tagged, "pinned-tag")["details"]["suggested"] == image.pinned
    assert decided(results[image.pinned])["allowed"] is True
    assert decided(results[image.tagged_and_pinned])["allowed"] is True
    mismatch = verifier(decided(results[moved]), "pinned-tag")
    assert mismatch["reason"] == "tag_digest_mismatch"
    assert mismatch["details"]["current"] == other.digest


async def test_index_is_verified_at_the_digest_the_workload_names(
    registry: Registry, repo_name: str, engines: Any
) -> None:
    index = await asyncio.to_thread(push_index, registry, repo_name, "multi")
    await asyncio.to_thread(attach_sbom, registry, index, fmt="spdx")
    engine = await engines(config_for(registry))
    results = await engine.verify([index.reference, index.pinned], 10)
    for key in (index.reference, index.pinned):
        value = decided(results[key])
        assert value["digest"] == index.digest
        assert value["allowed"] is True
    # a platform manifest has no SBOM of its own: it is not covered by the index's SBOM
    child = f"{registry.host}/{repo_name}@{index.platform_digest('linux/arm64')}"
    assert decided((await engine.verify([child], 10))[child])["allowed"] is False


async def test_unknown_image_is_a_decided_denial(registry: Registry, repo_name: str, engines: Any) -> None:
    engine = await engines(config_for(registry))
    key = f"{registry.host}/{repo_name}:missing"
    value = decided((await engine.verify([key], 10))[key])
    assert value["allowed"] is False
    assert value["reason"] == "manifest_not_found"
    assert value["digest"] == ""


def stored_blob(registry: Registry, digest: str) -> Path:
    """The file the registry serves for `digest` (olareg: OCI layout; distribution: blobs/.../data)."""
    hex_part = digest.split(":")[1]
    candidates = [p for p in registry.data_dir.rglob(hex_part) if p.is_file()]
    candidates += [p / "data" for p in registry.data_dir.rglob(hex_part) if (p / "data").is_file()]
    assert len(candidates) >= 1, f"{digest} not found under {registry.data_dir}"
    return candidates[0]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


async def test_tampered_sbom_blob_is_never_allowed(
    registry_factory: Any, repo_name: str, engines: Any, tmp_path: Path
) -> None:
    for kind in ("olareg", "distribution"):
        registry = registry_factory(kind)
        image = await push(registry, repo_name)
        sbom = b'{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[]}'
        await asyncio.to_thread(attach_sbom, registry, image, fmt="cyclonedx", document=sbom)
        engine = await engines(config_for(registry))
        sbom_digest = "sha256:" + __import__("hashlib").sha256(sbom).hexdigest()
        flip_byte(stored_blob(registry, sbom_digest), 20)
        value = decided((await engine.verify([image.reference], 10))[image.reference])
        assert value["allowed"] is False, kind
        report = verifier(value, "sbom")
        assert report["reason"] == "sbom_invalid", kind
        assert "hash to" in report["message"], kind


async def test_tampered_manifest_is_never_allowed(
    registry_factory: Any, repo_name: str, engines: Any
) -> None:
    for kind in ("olareg", "distribution"):
        registry = registry_factory(kind)
        image = await push(registry, repo_name)
        await asyncio.to_thread(attach_sbom, registry, image, fmt="spdx")
        path = stored_blob(registry, image.digest)
        # flip a byte inside a JSON string value so the manifest is still valid JSON
        offset = path.read_bytes().index(b"sha256:") + 10
        flip_byte(path, offset)
        engine = await engines(config_for(registry))
        results = await engine.verify([image.reference, image.pinned], 10)
        for key in (image.reference, image.pinned):
            value = decided(results[key])
            assert value["allowed"] is False, (kind, key)
            assert value["reason"] == "registry_integrity_error", (kind, key, value)


async def test_stopped_registry_is_undecided_within_the_deadline(
    registry_factory: Any, repo_name: str, engines: Any
) -> None:
    registry = registry_factory("olareg")
    image = await push(registry, repo_name)
    await asyncio.to_thread(attach_sbom, registry, image, fmt="spdx")
    engine = await engines(config_for(registry, cache={"verdictTTL": 0, "tagTTL": 0}))
    registry.stop()
    started = time.monotonic()
    outcome = (await engine.verify([image.reference], 1.0))[image.reference]
    assert time.monotonic() - started < 1.5
    assert isinstance(outcome, UndecidedKey)
    assert outcome.reason == "registry_unavailable"
    # back up: decided again, nothing undecided was cached
    registry.restart()
    assert decided((await engine.verify([image.reference], 10))[image.reference])["allowed"] is True


async def test_hung_registry_misses_the_deadline_then_warms_the_cache(
    registry_factory: Any, repo_name: str, engines: Any
) -> None:
    registry = registry_factory("distribution")
    image = await push(registry, repo_name)
    await asyncio.to_thread(attach_sbom, registry, image, fmt="spdx")
    engine = await engines(config_for(registry))
    registry.freeze()
    started = time.monotonic()
    outcome = (await engine.verify([image.reference], 0.5))[image.reference]
    elapsed = time.monotonic() - started
    assert isinstance(outcome, UndecidedKey), outcome
    assert outcome.reason == "deadline_exceeded"
    assert elapsed < 0.9
    registry.thaw()
    # the verification goes on in the background; once done its verdict is served from the cache
    for _ in range(100):
        outcome = (await engine.verify([image.reference], 0.05))[image.reference]
        if isinstance(outcome, Decided):
            break
        await asyncio.sleep(0.1)
    assert decided(outcome)["allowed"] is True


async def test_concurrent_requests_share_one_verification(
    olareg_registry: Registry, repo_name: str, engines: Any
) -> None:
    image = await push(olareg_registry, repo_name)
    await asyncio.to_thread(attach_sbom, olareg_registry, image, fmt="spdx")
    engine = await engines(config_for(olareg_registry))
    keys = [image.reference, f"[team-a]{image.reference}", image.reference]
    batches = await asyncio.gather(*(engine.verify(keys, 10) for _ in range(20)))
    for results in batches:
        assert decided(results[image.reference])["allowed"] is True
        assert decided(results[f"[team-a]{image.reference}"])["namespace"] == "team-a"
    runs = engine.metrics.verifier_results.labels("sbom", "sbom", "passed")._value.get()
    assert runs == 2  # one per distinct (namespace, reference), not one per request
    manifest_gets = engine.metrics.registry_requests.labels(olareg_registry.host, "GET", "200")._value.get()
    # tag manifest + referrers + SBOM manifest + SBOM blob, shared by both namespaces
    assert manifest_gets == 4


async def test_provider_endpoints_against_a_real_registry(
    registry_factory: Any, repo_name: str, aiohttp_client: AiohttpClient
) -> None:
    registry = registry_factory("olareg")
    down = registry_factory("distribution")
    good = await push(registry, repo_name)
    await asyncio.to_thread(attach_sbom, registry, good, fmt="spdx")
    bare = await push(registry, repo_name, tag="bare", seed="bare")
    lost = await push(down, repo_name)
    down.stop()
    config = config_for(registry, down, server={"deadlines": {"verify": 1.5, "mutate": 0.9}})
    client: TestClient[Any, Any] = await aiohttp_client(build_app(config))
    keys = [good.reference, bare.reference, "Not A Ref", lost.reference, good.reference]
    body = {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {"keys": keys},
    }
    resp = await client.post("/v1/verify", json=body)
    assert resp.status == 200
    reply = await resp.json()
    items = reply["response"]["items"]
    assert [i["key"] for i in items] == [good.reference, bare.reference, "Not A Ref", good.reference]
    assert items[0]["value"]["allowed"] is True
    assert items[1]["value"]["allowed"] is False
    assert "error" in items[2]
    system_error = reply["response"]["systemError"]
    assert lost.reference in system_error
    assert good.reference not in system_error

    mutate = {**body, "request": {"keys": [good.reference, good.pinned, f"{registry.host}/{repo_name}:nope"]}}
    resp = await client.post("/v1/mutate", json=mutate)
    reply = await resp.json()
    items = {i["key"]: i for i in reply["response"]["items"]}
    assert items[good.reference]["value"] == good.pinned
    assert items[good.pinned]["value"] == good.pinned
    assert "error" in items[f"{registry.host}/{repo_name}:nope"]
    assert reply["response"]["systemError"] == ""
    assert reply["response"]["idempotent"] is True

    resp = await client.post("/v1/mutate", json={**body, "request": {"keys": [lost.reference]}})
    reply = await resp.json()
    assert reply["response"]["items"] == []
    assert lost.reference in reply["response"]["systemError"]


async def test_invalid_keys_are_item_errors(engines: Any) -> None:
    engine = await engines(
        parse_config({"verifiers": {"s": {"type": "sbom"}}, "policies": [{"scope": "*", "allOf": ["s"]}]})
    )
    results = await engine.verify(["library/UPPER:1", "[bad_ns]nginx", ""], 1)
    for key in ("library/UPPER:1", "[bad_ns]nginx", ""):
        assert isinstance(results[key], Invalid)


async def test_image_without_a_policy_is_denied_without_contacting_its_registry(engines: Any) -> None:
    config = parse_config(
        {
            "verifiers": {"sbom": {"type": "sbom"}},
            "policies": [{"scopes": ["registry.example.com/*"], "allOf": ["sbom"]}],
        }
    )
    engine = await engines(config)
    key = "127.0.0.1:9/anything:1"
    value = decided((await engine.verify([key], 5))[key])
    assert value["allowed"] is False
    assert value["reason"] == "no_policy"
    assert b"127.0.0.1:9" not in engine.metrics.render()  # no request was made


async def test_in_flight_verifications_are_bounded(
    registry_factory: Any, repo_name: str, engines: Any
) -> None:
    registry = registry_factory("olareg")
    first = await push(registry, repo_name, tag="a", seed="a")
    second = await push(registry, repo_name, tag="b", seed="b")
    engine = await engines(
        config_for(
            registry, server={"limits": {"maxInFlightVerifications": 1}, "deadlines": {"background": 2}}
        )
    )
    registry.freeze()
    try:
        results = await engine.verify([first.reference, second.reference], 0.3)
    finally:
        registry.thaw()
    first_outcome, second_outcome = results[first.reference], results[second.reference]
    assert isinstance(first_outcome, UndecidedKey)
    assert first_outcome.reason == "deadline_exceeded"
    assert isinstance(second_outcome, UndecidedKey)
    assert second_outcome.reason == "overloaded"
