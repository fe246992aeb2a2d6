"""Configuration reload while serving, against a real registry: a new policy answers new requests without a
restart, a broken file leaves the old configuration serving, SIGHUP reloads, restart-only settings are
kept, and a request in flight finishes on the engine it started with."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from provider import heap
from provider.config import load_config
from provider.reload import ConfigReloader
from provider.server import RELOADER, build_app, run_server
from provider.tls import CertificateReloader
from tests.integration.test_server import Pki, post, provider_request
from tests.support.images import PushedImage, push_image
from tests.support.registries import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def write_config(
    path: Path,
    pki: Pki,
    registry: Registry,
    policy: list[str],
    *,
    sbom: dict[str, Any] | None = None,
    **server: Any,
) -> None:
    doc = {
        "server": {
            "address": "127.0.0.1",
            "port": 0,
            "configReloadInterval": "100ms",
            "tls": {"certFile": str(pki.cert), "keyFile": str(pki.key), "reloadInterval": "100ms"},
            **server,
        },
        "registries": {registry.host: {"insecure": True}},
        "verifiers": {"pinned": {"type": "digest-pin"}, "sbom": {"type": "sbom", "options": sbom or {}}},
        "policies": [{"name": "default", "scopes": ["*"], "allOf": policy}],
    }
    path.write_text(yaml.safe_dump(doc))


@asynccontextmanager
async def serving(path: Path) -> AsyncIterator[tuple[str, ConfigReloader]]:
    config = load_config(path)
    assert config.server.tls is not None
    certificates = CertificateReloader(config.server.tls)
    app = build_app(config, config_path=path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=certificates.listening)
    await site.start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}", app[RELOADER]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running(path: Path) -> AsyncIterator[str]:
    """`run_server` itself (signal handlers, heap settling) serving ``path``'s configuration; its URL."""
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(run_server(load_config(path), config_path=path, ready=ready.set_result))
    try:
        yield f"https://127.0.0.1:{await asyncio.wait_for(ready, 5)}"
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def allowed(url: str, pki: Pki, key: str) -> bool:
    status, body = await post(url, pki.client_context(), provider_request(key))
    assert status == 200, body
    assert body["response"]["systemError"] == "", body
    value: dict[str, Any] = body["response"]["items"][0]["value"]
    return bool(value["allowed"])


async def get(url: str, pki: Pki, path: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + path, ssl=pki.client_context()) as resp:
            assert resp.status == 200
            return await resp.text()


async def fingerprint(url: str, pki: Pki) -> str:
    value: str = yaml.safe_load(await get(url, pki, "/readyz"))["config"]
    return value


async def pushed(registry: Registry, repo: str) -> PushedImage:
    return await asyncio.to_thread(push_image, registry, repo, "v1")  # no SBOM attached


async def test_a_policy_change_answers_new_requests_without_a_restart(
    olareg_registry: Registry, repo_name: str, pki: Pki, tmp_path: Path
) -> None:
    image = await pushed(olareg_registry, repo_name)
    path = tmp_path / "config.yaml"
    write_config(path, pki, olareg_registry, ["pinned"])
    async with serving(path) as (url, reloader):
        assert await allowed(url, pki, image.pinned)
        first = await fingerprint(url, pki)

        write_config(path, pki, olareg_registry, ["sbom"])  # the image has no SBOM
        await until(lambda: reloader.reloads == 1)
        assert not await allowed(url, pki, image.pinned)
        assert await fingerprint(url, pki) == reloader.current.config.fingerprint != first  # type: ignore[union-attr]

        write_config(path, pki, olareg_registry, ["pinned"])  # back: not answered from the sbom verdicts
        await until(lambda: reloader.reloads == 2)
        assert await allowed(url, pki, image.pinned)
        assert await fingerprint(url, pki) == first
        metrics = await get(url, pki, "/metrics")
    assert 'countersign_config_reloads_total{result="success"} 2.0' in metrics
    assert 'countersign_config_reloads_total{result="failure"} 0.0' in metrics
    assert "countersign_config_last_reload_successful 1.0" in metrics
    assert "countersign_config_last_reload_success_timestamp_seconds " in metrics


@pytest.mark.parametrize(
    ("broken", "fields"),
    [
        ({"policy": ["nope"]}, ["policies[0].allOf[0]"]),  # rejected by load_config
        ({"policy": ["sbom"], "sbom": {"bogus": 1}}, ["verifiers.sbom.options.bogus"]),  # by the verifier
        (  # every problem is logged, not only the first
            {"policy": ["sbom"], "sbom": {"bogus": 1, "maxBytes": 0}},
            ["verifiers.sbom.options.maxBytes", "verifiers.sbom.options.bogus"],
        ),
    ],
    ids=["unknown-verifier", "bad-verifier-options", "several-problems"],
)
async def test_a_broken_configuration_keeps_the_old_one_serving(
    olareg_registry: Registry,
    repo_name: str,
    pki: Pki,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    broken: dict[str, Any],
    fields: list[str],
) -> None:
    image = await pushed(olareg_registry, repo_name)
    path = tmp_path / "config.yaml"
    write_config(path, pki, olareg_registry, ["pinned"])
    async with serving(path) as (url, reloader):
        first = await fingerprint(url, pki)
        write_config(path, pki, olareg_registry, broken.pop("policy"), **broken)
        await until(lambda: reloader.failures == 1)
        assert all(field in caplog.text for field in fields)
        assert f"{len(fields)} problem(s)" in caplog.text
        assert await allowed(url, pki, image.pinned)
        assert await fingerprint(url, pki) == first
        metrics = await get(url, pki, "/metrics")
        assert 'countersign_config_reloads_total{result="failure"} 1.0' in metrics
        assert "countersign_config_last_reload_successful 0.0" in metrics
        await asyncio.sleep(0.3)  # an unchanged broken file is reported once, not at every check
        assert reloader.failures == 1

        write_config(path, pki, olareg_registry, ["sbom"])  # fixed
        await until(lambda: reloader.reloads == 1)
        assert not await allowed(url, pki, image.pinned)
        assert "countersign_config_last_reload_successful 1.0" in await get(url, pki, "/metrics")


async def test_restart_only_settings_keep_their_values_and_the_rest_applies(
    olareg_registry: Registry, repo_name: str, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = await pushed(olareg_registry, repo_name)
    path = tmp_path / "config.yaml"
    write_config(path, pki, olareg_registry, ["pinned"])
    async with serving(path) as (url, reloader):
        write_config(path, pki, olareg_registry, ["sbom"], port=18443, healthPort=18444, warmUp=False)
        await until(lambda: reloader.reloads == 1)
        assert reloader.current is not None
        server = reloader.current.config.server
        assert (server.port, server.health_port, server.warm_up) == (0, None, True)
        assert "server.port changed" in caplog.text and "server.healthPort changed" in caplog.text
        assert "server.warmUp changed" in caplog.text
        assert not await allowed(url, pki, image.pinned)
        assert "countersign_config_restart_required 1.0" in await get(url, pki, "/metrics")


async def test_sighup_reloads_even_an_unchanged_file(
    olareg_registry: Registry, repo_name: str, pki: Pki, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    write_config(path, pki, olareg_registry, ["pinned"], configReloadInterval="1h")
    async with running(path) as url:
        os.kill(os.getpid(), signal.SIGHUP)  # run_server handles it before calling `ready`
        for _ in range(250):
            if 'countersign_config_reloads_total{result="success"} 1.0' in await get(url, pki, "/metrics"):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("SIGHUP did not reload the configuration")


async def test_a_request_in_flight_finishes_on_the_engine_it_started_with(
    olareg_registry: Registry, repo_name: str, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = await pushed(olareg_registry, repo_name)
    path = tmp_path / "config.yaml"
    write_config(path, pki, olareg_registry, ["pinned"], deadlines={"verify": "8s"})
    async with serving(path) as (url, reloader):
        old = reloader.current
        assert old is not None
        olareg_registry.freeze()  # the first request waits for the manifest
        try:
            first = asyncio.create_task(allowed(url, pki, image.pinned))
            await until(lambda: old.requests == 1)
            write_config(path, pki, olareg_registry, ["sbom"], deadlines={"verify": "8s"})
            await until(lambda: reloader.reloads == 1)
            assert reloader.current is not old
            await asyncio.sleep(0.2)
            assert not first.done()
            assert not old.closed  # its request is still running on it
        finally:
            olareg_registry.thaw()
        assert await first  # answered under the old policy (digest-pin)
        assert not await allowed(url, pki, image.pinned)  # new requests: the new policy (sbom)
        await until(lambda: old.closed)
    assert "work still in flight" not in caplog.text


async def test_a_rotated_credential_file_reloads_the_configuration(
    olareg_registry: Registry, pki: Pki, tmp_path: Path
) -> None:
    """A docker config named by auth.dockerConfigs (a mounted Secret) changes: the configuration reloads,
    without a change to the configuration file itself."""
    path = tmp_path / "config.yaml"
    docker = tmp_path / "docker" / "config.json"
    docker.parent.mkdir()
    docker.write_text('{"auths": {}}')
    write_config(path, pki, olareg_registry, ["pinned"])
    doc = yaml.safe_load(path.read_text())
    doc["auth"] = {"dockerConfigs": [str(docker)]}
    path.write_text(yaml.safe_dump(doc))
    assert load_config(path).credential_files == (docker,)
    async with serving(path) as (_url, reloader):
        await asyncio.sleep(0.3)
        assert reloader.reloads == 0  # nothing changed: no reload
        docker.write_text('{"auths": {"registry.example": {"auth": "dXNlcjpwYXNz"}}}')
        await until(lambda: reloader.reloads == 1)
        await asyncio.sleep(0.3)
        assert reloader.reloads == 1  # the digest follows the new generation's files: no churn


async def test_the_heap_is_settled_when_serving_starts_and_after_a_replaced_engine_closes(
    olareg_registry: Registry, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled: list[int] = []
    real = heap.settle

    def counting() -> None:
        real()
        settled.append(gc.get_freeze_count())

    monkeypatch.setattr(heap, "settle", counting)
    path = tmp_path / "config.yaml"
    write_config(path, pki, olareg_registry, ["pinned"], configReloadInterval="1h")
    try:
        async with running(path) as url:
            await until(lambda: len(settled) == 1)
            assert settled[0] > 10_000  # start-up's modules and objects left the collector's walks
            write_config(path, pki, olareg_registry, ["sbom"], configReloadInterval="1h")
            os.kill(os.getpid(), signal.SIGHUP)
            await until(lambda: len(settled) == 2)  # the replaced engine closed, its cycles collected
            assert await fingerprint(url, pki) == load_config(path).fingerprint  # the new one serves
    finally:
        gc.unfreeze()  # leave the test process's collector as it found it (a failure included)
