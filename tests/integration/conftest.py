"""Fixtures shared by the integration tests (the registries and tools are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from provider.config import Config
from provider.engine import Engine

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
