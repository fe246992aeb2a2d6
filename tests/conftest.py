"""Shared fixtures: real registries on 127.0.0.1 (see tests/support), started lazily, stopped at teardown.

* ``olareg_registry`` / ``distribution_registry``: plain HTTP, one per session (use ``repo_name`` so tests do
  not see each other's content); ``registry`` runs a test against both (ids ``olareg``, ``distribution``).
* ``olareg_tls_registry`` / ``distribution_tls_registry``: HTTPS with a certificate from ``tls_ca``
  (a ``trustme.CA``); ``registry.ca_file`` is the CA in PEM, ``registry.ssl_context()`` a client context.
* ``registry_factory``: fresh registries owned by one test, e.g. to stop, restart or freeze them.
* ``cosign_env`` / ``trusted_key``: an offline cosign home and a cosign key pair named ``trusted`` in it, one
  per session (the adversarial and end-to-end beds sign with them).
* ``private_registry``: distribution requiring Basic auth for every read (alice), one per module (the pull
  secrets tests).

A missing tool skips the tests that need it, or fails them under ``CI=true`` (see tests/support/tools.py).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from tests.support import cosign
from tests.support.auth_registries import ConfiguredDistribution
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.private_registry import htpasswd_distribution
from tests.support.registries import (
    Registry,
    RegistryFactory,
    RegistryKind,
    TlsFiles,
    start_registry,
    write_tls_files,
)
from tests.support.tools import require_tool

# Property-based tests are deterministic under CI=true: the same examples on every run (a failure is
# reproducible from the log), no example database, no wall-clock deadline on a loaded machine.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
if os.environ.get("CI", "").lower() == "true":
    hypothesis_settings.load_profile("ci")

_BINARIES: dict[RegistryKind, str] = {"olareg": "olareg", "distribution": "docker-registry"}


def _require(kind: RegistryKind) -> None:
    require_tool(_BINARIES[kind])
    require_tool("oras")  # every user of a registry fixture pushes content with it


def _session_registry(
    kind: RegistryKind, factory: pytest.TempPathFactory, tls: TlsFiles | None = None
) -> Iterator[Registry]:
    _require(kind)
    registry = start_registry(kind, factory.mktemp(f"{kind}{'-tls' if tls else ''}"), tls=tls)
    try:
        yield registry
    finally:
        registry.stop()


def _healthy(registry: Registry) -> Registry:
    """Undo what a test may have done to a shared registry (stop or freeze it)."""
    registry.thaw()
    return registry.start()


@pytest.fixture(scope="session")
def _olareg_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _session_registry("olareg", tmp_path_factory)


@pytest.fixture(scope="session")
def _distribution_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _session_registry("distribution", tmp_path_factory)


@pytest.fixture
def olareg_registry(_olareg_session: Registry) -> Registry:
    """olareg (OCI 1.1, referrers API) over plain HTTP, shared by the session."""
    return _healthy(_olareg_session)


@pytest.fixture
def distribution_registry(_distribution_session: Registry) -> Registry:
    """distribution 2.8 (no referrers API: ``sha256-<hex>`` tag schema), plain HTTP, shared by the session."""
    return _healthy(_distribution_session)


@pytest.fixture(params=["olareg", "distribution"], ids=["olareg", "distribution"])
def registry(request: pytest.FixtureRequest) -> Registry:
    """Each shared plain-HTTP registry in turn."""
    kind: str = request.param
    registry: Registry = request.getfixturevalue(f"{kind}_registry")
    return registry


@pytest.fixture(scope="session")
def tls_ca() -> Any:
    """A throw-away certificate authority (``trustme.CA``) for the session."""
    import trustme

    return trustme.CA()


@pytest.fixture(scope="session")
def tls_files(tls_ca: Any, tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A server certificate for 127.0.0.1 and localhost issued by ``tls_ca``, and the CA, as PEM files."""
    return write_tls_files(tls_ca, tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def _olareg_tls_session(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[Registry]:
    yield from _session_registry("olareg", tmp_path_factory, tls_files)


@pytest.fixture(scope="session")
def _distribution_tls_session(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[Registry]:
    yield from _session_registry("distribution", tmp_path_factory, tls_files)


@pytest.fixture
def olareg_tls_registry(_olareg_tls_session: Registry) -> Registry:
    """olareg over HTTPS with a ``tls_ca`` certificate; trust ``registry.ca_file``."""
    return _healthy(_olareg_tls_session)


@pytest.fixture
def distribution_tls_registry(_distribution_tls_session: Registry) -> Registry:
    """distribution 2.8 over HTTPS with a ``tls_ca`` certificate; trust ``registry.ca_file``."""
    return _healthy(_distribution_tls_session)


@pytest.fixture
def registry_factory(tmp_path: Path, tls_files: TlsFiles) -> Iterator[RegistryFactory]:
    """``factory(kind, *, tls=False, memory=False) -> Registry``: a started registry owned by this test.

    Stop, restart or freeze it at will; it is stopped at teardown.
    """
    started: list[Registry] = []

    def factory(kind: RegistryKind, *, tls: bool = False, memory: bool = False) -> Registry:
        _require(kind)
        workdir = tmp_path / f"{kind}-{len(started)}"
        registry = start_registry(kind, workdir, tls=tls_files if tls else None, memory=memory)
        started.append(registry)
        return registry

    try:
        yield factory
    finally:
        for registry in started:
            registry.stop()


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name unique to this test (valid in the distribution spec), e.g. ``t/test-x-1a2b3c``."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:48].strip("-") or "test"
    return f"t/{slug}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def cosign_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosignEnv]:
    """An offline cosign home (no network, no TUF) for the session."""
    with CosignEnv(tmp_path_factory.mktemp("cosign")) as env:
        yield env


@pytest.fixture(scope="session")
def trusted_key(cosign_env: CosignEnv) -> KeyPair:
    """A key pair named ``trusted`` made by the real cosign CLI."""
    require_tool("cosign")
    return cosign.generate_key_pair(cosign_env, "trusted")


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfiguredDistribution]:
    """distribution requiring Basic auth (htpasswd) for every read; alice pushes (one per module: the pull
    secrets tests of tests/integration/test_kube_source_files.py, test_workload_pull_secrets.py and
    tests/e2e/test_workload_pull_secrets.py)."""
    require_tool("docker-registry")
    require_tool("oras")
    with htpasswd_distribution(tmp_path_factory.mktemp("private-registry")) as registry:
        yield registry
