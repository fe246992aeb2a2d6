"""`verifiers.base.check_report`: what a valid report is, checked before any verdict is built from it."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

import pytest

from verifiers.base import MAX_REASON_CHARS, InvalidReport, Report, check_report


class _Code(StrEnum):
    SIGNED = "image_signed"


@pytest.mark.parametrize(
    "reason", ["ok", "cosign_verified", "a1_b2", "x" * MAX_REASON_CHARS, _Code.SIGNED], ids=repr
)
def test_valid_reasons(reason: str) -> None:
    checked = check_report(Report.ok(reason, "fine"))
    assert checked.reason == reason and type(checked.reason) is str  # an enum member becomes a plain str


@pytest.mark.parametrize(
    "reason",
    ["", "OK", "Signature_ok", "ok-done", "ok done", "_ok", "ok_", "ok__done", "1ok", "é", "x" * 65, 3, None],
    ids=repr,
)
def test_invalid_reasons(reason: Any) -> None:
    with pytest.raises(InvalidReport, match="reason"):
        check_report(Report(False, reason, "no"))


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("report", "fragment"),
    [
        (Report(1, "ok", "fine"), "passed is int"),  # type: ignore[arg-type]
        (Report(True, "ok", b"fine"), "message"),  # type: ignore[arg-type]
        (Report(True, "ok", "x" * (64 * 1024 + 1)), "message"),
        (Report(True, "ok", "fine", [("a", 1)]), "details is list"),  # type: ignore[arg-type]
        (Report.ok("ok", "fine", n=math.nan), "details.n: nan is not a JSON number"),
        (Report.ok("ok", "fine", n=-math.inf), "not a JSON number"),
        (Report(True, "ok", "fine", {"a": {2: "x"}}), "details.a: a key is int"),
        (Report.ok("ok", "fine", raw=b"x"), "details.raw: bytes is not a JSON value"),
        (Report.ok("ok", "fine", n=2**63), "64-bit"),
        (Report.ok("ok", "fine", s="\udc00"), "unpaired surrogate"),
        (Report.ok("ok", "fine", deep=_nested(40)), "levels deep"),
        (Report.ok("ok", "fine", many=[0] * 50_001), "values"),
        (Report.ok("ok", "fine", text=["x" * 600_000, "y" * 600_000]), "characters of strings"),
        ({"passed": True}, "not a Report"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_invalid_reports(report: object, fragment: str) -> None:
    with pytest.raises(InvalidReport, match=fragment):
        check_report(report)
    assert issubclass(InvalidReport, ValueError)


def test_a_valid_report_is_copied_as_plain_json() -> None:
    details: dict[str, Any] = {"signer": "alice", "items": (1, 2.5, None, True), "nested": {"a": ["b"]}}
    checked = check_report(Report.ok(_Code.SIGNED, "fine", **details))
    assert checked == Report(True, "image_signed", "fine", {**details, "items": [1, 2.5, None, True]})
    details["nested"]["a"].append("changed")
    assert checked.details["nested"] == {"a": ["b"]}  # shares nothing with what the verifier holds
