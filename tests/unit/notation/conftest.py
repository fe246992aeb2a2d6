"""Fixtures for the notation envelope tests: recorded vectors from notation-go, and cached signing keys.

The recorded vectors live in ``../shared/testdata/notation`` (relative to the repository root) and are read in
place. When that directory is missing, the tests that need it skip, or fail under ``CI=true``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.tools import in_ci

REPO_ROOT = Path(__file__).resolve().parents[3]
NOTATION_TESTDATA = REPO_ROOT.parent / "shared" / "testdata" / "notation"


@pytest.fixture(scope="session")
def notation_testdata() -> Path:
    """``../shared/testdata/notation`` (recorded vectors); skip when absent, fail under ``CI=true``."""
    if not (NOTATION_TESTDATA / "jws_signature.sig").is_file():
        message = f"recorded notation vectors not found at {NOTATION_TESTDATA}"
        if in_ci():
            pytest.fail(f"{message} (CI=true: missing test data fails the run)", pytrace=False)
        pytest.skip(message)
    return NOTATION_TESTDATA


@pytest.fixture(autouse=True)
def _fresh_now(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test module's ``NOW`` is the moment its test starts, not the moment the module was collected.

    Responses, CRLs and expiries are built from the real clock when a test runs; a ``NOW`` frozen at
    collection would lag behind by however long the run took to get there (minutes, in a full run), and
    turn "issued a minute ago" into "issued in the future".
    """
    if isinstance(getattr(request.module, "NOW", None), datetime):
        monkeypatch.setattr(request.module, "NOW", datetime.now(UTC))
