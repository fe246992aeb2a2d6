"""The registry client's connections: the configured limits are what the pool enforces, idle connections
are kept for the next batch, and TLS contexts are made once per registry at start-up.

The registry here is a small aiohttp application on 127.0.0.1 that holds every request until the test lets
it go and records which client connection (peer port) each request came on: what a real registry cannot be
made to do on demand.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from provider.registry.client import RegistryClient
from provider.registry.settings import Limits, RegistrySettings
from tests.support.http_servers import served
from verifiers.errors import NotFound
from verifiers.reference import parse_reference


@dataclass
class HeldRegistry:
    """Answers every manifest GET with a 404 once `release` is set; counts requests held at once."""

    host: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0
    most_held: int = 0
    peers: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.peers.append(peer[1] if peer else -1)
        self.held += 1
        self.most_held = max(self.most_held, self.held)
        try:
            await self.release.wait()
        finally:
            self.held -= 1
        return web.Response(status=404)


@pytest.fixture
async def held_registry() -> AsyncIterator[HeldRegistry]:
    registry = HeldRegistry()
    app = web.Application()
    app.router.add_get("/v2/{name:.+}/manifests/{reference}", registry.handle)
    async with served(app) as host:
        registry.host = host
        try:
            yield registry
        finally:
            registry.release.set()


async def _batch(client: RegistryClient, registry: HeldRegistry, count: int) -> None:
    """`count` manifest reads at once; released when they are all sent or the pool holds the rest back."""

    async def one(index: int) -> None:
        with pytest.raises(NotFound):
            await client.get_manifest(parse_reference(f"{registry.host}/repo{index}:v1"))

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    for _ in range(200):  # until the requests the pool lets through have arrived
        await asyncio.sleep(0.01)
        if registry.held >= min(count, client.limits.max_connections_per_registry):
            break
    await asyncio.sleep(0.05)  # any request past the limit would arrive now
    registry.release.set()
    await asyncio.gather(*tasks)
    registry.release.clear()


def _client(registry: HeldRegistry, limits: Limits) -> RegistryClient:
    return RegistryClient(settings={registry.host: RegistrySettings(insecure=True)}, limits=limits)


async def test_the_pool_gets_the_configured_limits(held_registry: HeldRegistry) -> None:
    limits = Limits(max_connections=7, max_connections_per_registry=3, idle_connection_timeout=42.0)
    client = _client(held_registry, limits)
    try:
        connector = client._session.connector
        assert connector is not None
        assert (connector.limit, connector.limit_per_host) == (7, 3)
        assert connector._keepalive_timeout == 42.0
    finally:
        await client.close()


@pytest.mark.parametrize("per_registry", [3, 8])
async def test_at_most_the_per_registry_limit_is_open_at_once(
    held_registry: HeldRegistry, per_registry: int
) -> None:
    client = _client(held_registry, Limits(max_connections=64, max_connections_per_registry=per_registry))
    try:
        await _batch(client, held_registry, 12)
    finally:
        await client.close()
    assert held_registry.most_held == per_registry
    assert len(held_registry.peers) == 12
    assert len(set(held_registry.peers)) == per_registry  # the rest waited for, then reused, those


async def test_idle_connections_are_kept_for_the_next_batch(held_registry: HeldRegistry) -> None:
    client = _client(held_registry, Limits(max_connections=16, max_connections_per_registry=4))
    try:
        await _batch(client, held_registry, 4)
        first = set(held_registry.peers)
        await asyncio.sleep(0.2)
        await _batch(client, held_registry, 4)
    finally:
        await client.close()
    assert len(first) == 4
    assert set(held_registry.peers[4:]) == first  # no new connection for the second batch


async def test_tls_contexts_are_made_once_per_registry_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        context = original()
        made.append(context)
        return context

    monkeypatch.setattr(ssl, "create_default_context", counting)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(trustme.CA().cert_pem.bytes())
    settings = {
        "a.example": RegistrySettings(ca_file=ca_file),
        "b.example": RegistrySettings(min_tls="1.3"),
        "plain.example": RegistrySettings(insecure=True),
    }
    client = RegistryClient(settings=settings)
    try:
        client.check_settings()
        assert len(made) == 3  # the shared default, a.example's, b.example's; none for plain HTTP
        contexts = {name: client._ssl_context(name) for name in (*settings, "unlisted.example", "x.example")}
        for _ in range(3):
            for name, context in contexts.items():
                assert client._ssl_context(name) is context
        assert len(made) == 3  # no request makes another
        assert contexts["plain.example"] is False
        assert contexts["unlisted.example"] is contexts["x.example"]
        assert len({id(contexts[n]) for n in ("a.example", "b.example", "unlisted.example")}) == 3
    finally:
        await client.close()
