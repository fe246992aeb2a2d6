"""Whatever a verifier returns or raises, only that verifier's outcome is affected (engine `_run`).

A report that is not plain JSON becomes that verifier's `verifier_error` (undecided) before any verdict is
built or cached, the policy then decides, and the batch's response always serialises. The registry here
is the kit's in-memory registry behind the engine's `resolve`: these tests are about the engine alone.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from typing import Any

import pytest

from provider.config import Config, Policy
from provider.engine import Engine
from provider.outcome import Decided, UndecidedKey
from provider.protocol import response_for
from tests.support.engine_registry import EngineRegistry
from verifiers.base import Context, Memo, Report, Subject, Undecided


class Registry(EngineRegistry):
    """The engine's registry holding one image in each repository the tests name."""

    def __init__(self) -> None:
        super().__init__(
            *(f"{repository}:1" for repository in ("reg.test/app", "reg.test/bad", "reg.test/good"))
        )


class Scripted:
    """A verifier that returns (or raises) what it is given, counting calls."""

    type = "scripted"

    def __init__(self, name: str, behaviour: Any) -> None:
        self.name = name
        self.behaviour = behaviour
        self.calls = 0

    async def verify(self, subject: Subject, context: Context) -> Report:
        self.calls += 1
        if isinstance(self.behaviour, BaseException):
            raise self.behaviour
        if callable(self.behaviour):
            return self.behaviour()  # type: ignore[no-any-return]
        return self.behaviour  # type: ignore[no-any-return]


GOOD = Report.ok("ok", "fine", signer="alice", count=3, ratio=0.5, nested={"a": [1, "b", None, True]})


def engine_for(mode: str, *verifiers: Scripted) -> Engine:
    names = tuple(v.name for v in verifiers)
    threshold = len(names) if mode == "allOf" else 1
    policy = Policy(name="p", scopes=("*",), namespaces=None, mode=mode, verifiers=names, threshold=threshold)
    config = Config(policies=(policy,), fingerprint="test")
    return Engine(config, Registry(), {v.name: v for v in verifiers})  # type: ignore[arg-type]


class _Weird:
    pass


def _cycle() -> dict[str, Any]:
    d: dict[str, Any] = {}
    d["self"] = d
    return d


BAD_REPORTS: dict[str, Any] = {
    "a set in details": Report.ok("ok", "fine", ids={1, 2}),
    "bytes in details": Report.ok("ok", "fine", raw=b"\x00"),
    "an object in details": Report.ok("ok", "fine", thing=_Weird()),
    "NaN in details": Report.ok("ok", "fine", score=math.nan),
    "infinity in details": Report.ok("ok", "fine", score=math.inf),
    "a non-string key": Report(True, "ok", "fine", {"a": {1: "x"}}),
    "a lone surrogate in details": Report.ok("ok", "fine", name="\ud800"),
    "a lone surrogate in the message": Report.ok("ok", "fine \udfff"),
    "a huge integer": Report.ok("ok", "fine", n=10**400),
    "nested 1000 deep": Report.ok("ok", "fine", deep=json.loads("[" * 900 + "]" * 900)),
    "a cycle": Report.ok("ok", "fine", loop=_cycle()),
    "too many values": Report.ok("ok", "fine", many=list(range(60_000))),
    "reason not a string": Report(True, 1, "fine"),  # type: ignore[arg-type]
    "empty reason": Report(True, "", "fine"),
    "a reason that is not snake_case": Report(True, "Signature-OK", "fine"),
    "a reason with a space": Report(True, "ok then", "fine"),
    "a reason ending in _": Report(True, "ok_", "fine"),
    "a reason of 65 characters": Report(True, "a" * 65, "fine"),
    "message None": Report(True, "ok", None),  # type: ignore[arg-type]
    "passed not a bool": Report("yes", "ok", "fine"),  # type: ignore[arg-type]
    "details a list": Report(True, "ok", "fine", [1]),  # type: ignore[arg-type]
    "not a report": {"passed": True},
    "None": None,
}


@pytest.mark.parametrize("report", BAD_REPORTS.values(), ids=BAD_REPORTS.keys())
async def test_a_bad_report_is_that_verifiers_error_and_the_policy_decides(report: Any) -> None:
    bad, good = Scripted("bad", report), Scripted("good", GOOD)
    engine = engine_for("anyOf", bad, good)
    outcome = (await engine.verify(["reg.test/app:1"], 5.0))["reg.test/app:1"]
    assert isinstance(outcome, Decided)
    assert outcome.value["allowed"] is True
    by_name = {v["name"]: v for v in outcome.value["verifiers"]}
    assert by_name["bad"]["reason"] == "verifier_error" and by_name["bad"]["details"] == {"undecided": True}
    assert by_name["good"]["passed"] is True
    json.dumps(outcome.value, allow_nan=False, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("report", BAD_REPORTS.values(), ids=BAD_REPORTS.keys())
async def test_a_bad_report_under_all_of_is_undecided_and_never_cached(report: Any) -> None:
    bad, good = Scripted("bad", report), Scripted("good", GOOD)
    engine = engine_for("allOf", bad, good)
    for _ in range(2):
        outcome = (await engine.verify(["reg.test/app:1"], 5.0))["reg.test/app:1"]
        assert isinstance(outcome, UndecidedKey)
        assert outcome.reason == "verifier_error"
    assert bad.calls == 2  # not cached: asked again


async def test_the_batch_always_serialises() -> None:
    """One image with a bad report beside a good one: both keys answered, the response is JSON."""
    engine = engine_for("allOf", Scripted("bad", BAD_REPORTS["a set in details"]))
    good_engine = engine_for("allOf", Scripted("good", GOOD))
    keys = ["reg.test/bad:1", "reg.test/good:1"]
    outcomes = {**(await engine.verify(keys[:1], 5.0)), **(await good_engine.verify(keys[1:], 5.0))}
    body = json.dumps(response_for(keys, outcomes), allow_nan=False, ensure_ascii=False).encode("utf-8")
    response = json.loads(body)["response"]
    assert [item["key"] for item in response["items"]] == ["reg.test/good:1"]
    assert "reg.test/bad:1" in response["systemError"] and "verifier_error" in response["systemError"]


async def test_a_report_changed_after_it_was_returned_does_not_change_the_cached_verdict() -> None:
    shared: dict[str, Any] = {"signer": "alice"}
    verifier = Scripted("v", Report.ok("ok", "fine", info=shared))
    engine = engine_for("allOf", verifier)
    first = (await engine.verify(["reg.test/app:1"], 5.0))["reg.test/app:1"]
    shared["signer"] = {1, 2}  # the verifier keeps a reference and later puts junk in it
    second = (await engine.verify(["reg.test/app:1"], 5.0))["reg.test/app:1"]
    assert isinstance(first, Decided) and isinstance(second, Decided)
    assert second.value["verifiers"][0]["details"] == {"info": {"signer": "alice"}}
    assert verifier.calls == 1  # the second answer came from the verdict cache
    json.dumps(second.value)


class _Undecided(Undecided):
    def __init__(self) -> None:
        Exception.__init__(self, "odd")
        self.reason = 42  # type: ignore[assignment]
        self.message = None  # type: ignore[assignment]


RAISED: dict[str, BaseException] = {
    "AttributeError": AttributeError("'list' object has no attribute 'get'"),
    "RecursionError": RecursionError("maximum recursion depth exceeded"),
    "KeyError": KeyError("config"),
    "SystemExit": SystemExit(1),
    "a bare BaseException": BaseException("odd"),
    "a CancelledError while not cancelled": asyncio.CancelledError(),
    "an exception group": BaseExceptionGroup("many", [ValueError("a"), GeneratorExit()]),
    "a message with a lone surrogate": ValueError("bad \ud800 text"),
    "an Undecided with a non-string reason": _Undecided(),
}


@pytest.mark.parametrize("error", RAISED.values(), ids=RAISED.keys())
async def test_no_exception_escapes_a_verifier(error: BaseException) -> None:
    engine = engine_for("anyOf", Scripted("raises", error), Scripted("good", GOOD))
    outcome = (await engine.verify(["reg.test/app:1"], 5.0))["reg.test/app:1"]
    assert isinstance(outcome, Decided) and outcome.value["allowed"] is True
    failing = outcome.value["verifiers"][0]
    assert failing["reason"] == "verifier_error"
    json.dumps(outcome.value, ensure_ascii=False).encode("utf-8")


async def test_an_undecided_with_a_lone_surrogate_is_cleaned() -> None:
    engine = engine_for("allOf", Scripted("v", Undecided("registry_unavailable", "down \ud800")))
    outcome = (await engine.verify(["reg.test/app:1"], 5.0))["reg.test/app:1"]
    assert isinstance(outcome, UndecidedKey) and outcome.reason == "registry_unavailable"
    outcome.message.encode("utf-8")


async def test_a_good_report_is_copied_as_plain_json() -> None:
    class Text(str):
        def __str__(self) -> str:
            return "changed"

    details: Mapping[str, Any] = {"t": (1, 2), "s": Text("kept")}
    engine = engine_for("allOf", Scripted("v", Report.ok("ok", "fine", **details)))
    outcome = (await engine.verify(["reg.test/app:1"], 5.0))["reg.test/app:1"]
    assert isinstance(outcome, Decided)
    got = outcome.value["verifiers"][0]["details"]
    assert got == {"t": [1, 2], "s": "kept"} and type(got["s"]) is str


class _MemoSpy:
    """Records the memo each verification hands it, and runs shared work through it."""

    type = "memo-spy"

    def __init__(self, name: str, memos: list[tuple[str, Memo]], runs: list[str]) -> None:
        self.name = name
        self.memos = memos
        self.runs = runs

    async def verify(self, subject: Subject, context: Context) -> Report:
        async def shared() -> str:
            self.runs.append(str(subject.reference))
            return "x"

        await context.memo.once(("spy", subject.digest), shared)
        self.memos.append((str(subject.reference), context.memo))  # kept alive: ids stay distinct
        return Report.ok("ok", "fine")


async def test_each_image_verification_has_its_own_memo_shared_by_its_verifiers() -> None:
    memos: list[tuple[str, Memo]] = []
    runs: list[str] = []
    one, two = _MemoSpy("one", memos, runs), _MemoSpy("two", memos, runs)
    engine = engine_for("allOf", one, two)  # type: ignore[arg-type]
    keys = ["reg.test/app:1", "reg.test/good:1"]
    outcomes = await engine.verify(keys, 5.0)
    assert all(isinstance(outcomes[k], Decided) for k in keys)
    by_image: dict[str, set[int]] = {}
    for reference, memo in memos:
        by_image.setdefault(reference, set()).add(id(memo))
    assert len(memos) == 4 and all(len(ids) == 1 for ids in by_image.values())  # shared within an image
    assert len(set().union(*by_image.values())) == 2  # not across images
    assert sorted(runs) == sorted(by_image)  # the shared work ran once per image, not once per verifier
