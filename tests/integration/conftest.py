"""Fixtures shared by the integration tests (the registries and tools are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from provider.config import Config
from provider.engine import Engine
from tests.support.auth_registries import ConfiguredDistribution
from tests.support.private_registry import htpasswd_distribution
from tests.support.tools import require_tool

EngineFactory = Callable[[Config], Awaitable[Engine]]


@pytest.fixture
async def engines() -> AsyncIterator[EngineFactory]:
    """Build engines for a test (each with its own registry client and caches); all closed at the end."""
    made: list[Engine] = []

    async def factory(config: Config) -> Engine:
        engine = await Engine.create(config)
        made.append(engine)
        return engine

    yield factory
    for engine in made:
        await engine.close()


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfiguredDistribution]:
    """distribution requiring Basic auth (htpasswd) for every read; alice pushes (one per module: the pull
    secrets tests of tests/integration/test_kube_source_files.py and test_workload_pull_secrets.py)."""
    require_tool("docker-registry")
    require_tool("oras")
    with htpasswd_distribution(tmp_path_factory.mktemp("private-registry")) as registry:
        yield registry
