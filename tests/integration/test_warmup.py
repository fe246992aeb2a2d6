"""The start-up warm-up (provider/warmup): it verifies and pins an image it signs itself, through the same
request path Gatekeeper's requests take; it fails loudly when that sample is not verified; the real cosign
and notation accept the sample; and a served provider warms up without contacting any registry it is
configured with and without counting the warm-up in its metrics.
"""

from __future__ import annotations

import dataclasses
import gc
import socket
import tempfile
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from provider.engine import Engine
from provider.warmup import warm_up
from provider.warmup.sample import REPOSITORY, Sample, make_sample
from tests.support.cosign import CosignEnv, Tool, cosign_verify
from tests.support.junk import push_blob, push_manifest
from tests.support.notation import NotationEnv, add_trust_store, notation_verify, write_trust_policy
from tests.support.provider_process import start_provider
from tests.support.registries import Registry


@pytest.mark.parametrize("kinds", [(), ("cosign",), ("notation",), ("cosign", "notation")])
async def test_the_warm_up_verifies_and_pins_its_sample(kinds: tuple[str, ...]) -> None:
    done = await warm_up(kinds=kinds)
    assert done.problem is None
    assert 0 < done.seconds < 10


def _live_engines() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Engine))


async def test_nothing_of_the_warm_up_engine_outlives_it() -> None:
    # aiohttp caches every application's middleware chain for the life of the process: what the warm-up's
    # application holds (a stopped reloader, metrics) must not hold its engine.
    before = _live_engines()
    assert (await warm_up()).problem is None
    assert _live_engines() == before


def _trusting_another_cosign_key(host: str, now: datetime, kinds: Collection[str]) -> Sample:
    sample, other = make_sample(host, now, kinds), make_sample(host, now, kinds)
    return dataclasses.replace(sample, verifiers={**sample.verifiers, "cosign": other.verifiers["cosign"]})


async def test_a_sample_the_warm_up_cannot_verify_is_reported_with_the_reason() -> None:
    done = await warm_up(make=_trusting_another_cosign_key)
    assert done.problem is not None and done.refused
    assert "the sample was not allowed" in done.problem
    assert "cosign" in done.problem and "untrusted" in done.problem.lower()


async def test_a_warm_up_over_its_bound_says_so() -> None:
    done = await warm_up(0.001)
    assert done.problem == "took longer than 0.001 s"
    assert not done.refused  # it could not run: not a verdict on verification


async def test_a_warm_up_that_cannot_write_its_certificate_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "absent"))
    done = await warm_up()
    assert done.problem is not None and "FileNotFoundError" in done.problem
    assert not done.refused


# --- the reference tools ----------------------------------------------------------------------------------


@pytest.fixture
def sample_in(olareg_registry: Registry) -> Sample:
    """The sample, signed for `olareg_registry` and pushed there (olareg lists the notation referrer)."""
    sample = make_sample(olareg_registry.host, datetime.now(UTC))
    base = f"http://{olareg_registry.host}"
    for data in sample.blobs.values():
        push_blob(base, REPOSITORY, data)
    for reference, (media_type, data) in sample.manifests.items():  # by digest, and under each tag
        tag = None if reference.startswith("sha256:") else reference
        push_manifest(base, REPOSITORY, data, media_type, tag=tag)
    return sample


@pytest.mark.parametrize("tool", ["cosign", "cosign2"])
def test_cosign_accepts_the_sample(
    tool: Tool, sample_in: Sample, olareg_registry: Registry, cosign_env: CosignEnv, tmp_path: Path
) -> None:
    public_key = tmp_path / "warm-up.pub"
    public_key.write_text(sample_in.verifiers["cosign"]["options"]["keys"][0]["pem"])
    image = f"{REPOSITORY}@{sample_in.digest}"
    assert cosign_verify(cosign_env, tool, public_key, olareg_registry, image)


def test_notation_accepts_the_sample(sample_in: Sample, olareg_registry: Registry, tmp_path: Path) -> None:
    options = sample_in.verifiers["notation"]["options"]
    with NotationEnv(tmp_path / "notation") as env:
        (store,) = options["trustStores"]
        kind, name = store["name"].split(":")
        add_trust_store(env, kind, name, store["pem"].encode())
        write_trust_policy(env, options["trustPolicy"])
        assert notation_verify(env, olareg_registry, f"{REPOSITORY}@{sample_in.digest}")


# --- a served provider ------------------------------------------------------------------------------------


@pytest.fixture
def silent_registry() -> Iterator[socket.socket]:
    """A listening socket nothing accepts from: a connection to it waits in its backlog."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        yield listener


def _connections(listener: socket.socket) -> int:
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


async def test_a_served_provider_warms_up_apart_from_what_it_serves(
    silent_registry: socket.socket, tmp_path: Path
) -> None:
    host = f"127.0.0.1:{silent_registry.getsockname()[1]}"
    config = {
        "registries": {host: {"insecure": True}},
        "verifiers": {"pinned": {"type": "digest-pin"}},
        "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pinned"]}],
    }
    provider = start_provider(config, tmp_path / "provider", log_level="info")
    try:
        log = provider.log_file.read_text()
        assert "provider.warmup: a sample image signed at start-up verified end to end" in log
        assert _connections(silent_registry) == 0  # no configured registry was contacted
        async with aiohttp.ClientSession() as session:
            metrics_url = f"http://127.0.0.1:{provider.health_port}/metrics"
            async with session.get(metrics_url) as response:
                metrics = await response.text()
            # The provider's series start at zero: the warm-up's requests were its own.
            assert 'countersign_requests_total{endpoint="verify",status="200"} 0.0' in metrics
            assert 'countersign_keys_total{endpoint="verify",outcome="allowed"} 0.0' in metrics
            assert "countersign_registry_requests_total{" not in metrics
            refused = "127.0.0.2:1/countersign/warm-up:v1"
            reply = await provider.post(session, [refused])
            (item,) = reply["response"]["items"]
            assert item["key"] == refused and item["value"]["allowed"] is False
            labels = {"endpoint": "verify", "status": "200"}
            assert await provider.metric(session, "countersign_requests_total", labels) == 1.0
        assert _connections(silent_registry) == 0
    finally:
        provider.stop()
    assert "provider.warmup" not in "\n".join(
        line for line in provider.log_file.read_text().splitlines() if "ERROR" in line or "WARNING" in line
    )


def test_a_provider_told_not_to_warm_up_does_not(tmp_path: Path) -> None:
    config = {
        "verifiers": {"pinned": {"type": "digest-pin"}},
        "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pinned"]}],
    }
    provider = start_provider(config, tmp_path / "provider", server={"warmUp": False}, log_level="info")
    try:
        log = provider.log_file.read_text()
        assert "countersign serving on" in log  # the info lines are there
        assert "provider.warmup" not in log
    finally:
        provider.stop()
