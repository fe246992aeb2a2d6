"""Fixtures shared by the integration tests (the registries and tools are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from provider.config import Config
from provider.engine import Engine
from tests.support.dual_signing import SIGNING_TOOLS, DualSigner
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


@pytest.fixture
def dual_signer(tmp_path: Path) -> Iterator[DualSigner]:
    """A cosign v2 key pair (made by cosign) and a notation test key in homes of this test's own."""
    for tool in SIGNING_TOOLS:
        require_tool(tool)
    with DualSigner.create(tmp_path, "signer") as made:
        yield made
