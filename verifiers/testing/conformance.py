"""The conformance checker: drives a verifier through what a hostile world does to it, and says what broke.

    from verifiers.testing.conformance import assert_conforms, check_conformance

    def test_my_verifier_conforms() -> None:              # a plain test
        assert_conforms(MyVerifier, {"allowed": ["registry.test/*"]})

    async def test_my_verifier_conforms_async() -> None:  # inside a running event loop
        findings = await check_conformance("my-type", {"allowed": ["registry.test/*"]})
        assert not failures(findings), format_findings(findings)

`countersign plugin check TYPE --options FILE.yaml` runs the same checks from a shell.

Each check builds its own `InMemoryRegistry`, pushes images into it, and verifies them through a context
made by `make_context`. The checks (one `Finding` each):

- `build`: the factory builds a verifier with the given name, a `type` and an async `verify`; its `bind`
  hook, if any, accepts a map holding only itself.
- `plain-image`: an unsigned image with no referrers and no annotations, named by tag. The verifier must
  not pass it unless `passes_plain_image=True`.
- `good-image` (only with `good_image`): the image `good_image(registry, repository)` pushes must pass.
- `malformed:*`: the plain image with hostile referrers of every common artifact type (and of
  `artifact_types`, and for an `exec` verifier of its `referrers.artifactTypes`): manifests that are
  not JSON (`not-json`), junk manifests as the registry client refuses them and as raw bytes
  (`junk-manifests`, `junk-manifests-unchecked`), junk in the `sha256-<hex>[.sig|.att|.sbom]` tags
  (`junk-tags`), valid manifests with junk blobs (`junk-blobs`), blobs and manifests served with wrong
  bytes (`integrity`), oversized blobs and manifests (`oversized`), referrers that point at nothing
  (`missing`). The verifier must not pass (unless it passes the plain image anyway) and must not raise
  anything but `Undecided` or a registry error (`verifiers.errors`).
- `good-image-with-junk` (with `good_image`): the same junk beside the good image: no crash.
- `corrupted`, `unavailable`, `deadline-past`, `stalled`: the good image (else the plain one) while every
  read is served wrong bytes, fails with `Unavailable`, starts after the deadline, or never answers until
  the deadline. The verifier must not pass unless it read nothing (and passes the image otherwise), and
  must return (or raise) within the deadline plus `grace` seconds.
- `cancelled`: the verification is cancelled while a read is stalled; it must end at once with
  `CancelledError` and leave no task running past its deadline.
- `concurrency`: `concurrency` images (plain, with junk, good) verified one after the other, then all at
  once with reads answering late in different orders: the same outcomes.
- `tag-independent` (only for a verifier that declares `tag_independent = True`, see
  `verifiers.base.TagIndependent`): the good image (else the plain one) named by two other tags of its
  digest gets the same report (or the same `Undecided`) under both, and neither names the tag.
- `reports`: every `Report` seen has `passed` a bool, `reason` a snake_case string, `message` a string and
  `details` JSON-compatible (string keys, finite floats, 64-bit integers, UTF-8-encodable strings, at most
  32 levels deep); every `Undecided` a snake_case `reason` and a string `message`.
- `leftovers` are checked everywhere: a verification must not leave tasks running past its deadline.
- `aclose` (when the verifier has the hook): it returns within `grace` seconds.

The checker cannot prove a verifier right: it checks that what every verifier must do holds. A verifier
that blocks the event loop, or ignores cancellation forever, can stall the checker itself.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from verifiers import base, oci
from verifiers.base import (
    BindsVerifiers,
    Context,
    Descriptor,
    HoldsResources,
    OptionsError,
    Report,
    Subject,
    Undecided,
    Verifier,
    is_tag_independent,
)
from verifiers.errors import RegistryError
from verifiers.exec import ExecVerifier
from verifiers.plugins import PluginError, create_verifier
from verifiers.reference import ImageReference
from verifiers.testing.builders import DEFAULT_REGISTRY, artifact_manifest, digest_of, make_context
from verifiers.testing.junk import ARTIFACT_TYPES, junk_blobs, junk_manifests
from verifiers.testing.registry import InMemoryRegistry

__all__ = [
    "Factory",
    "Finding",
    "GoodImage",
    "assert_conforms",
    "check_conformance",
    "check_report",
    "failures",
    "format_findings",
    "run_conformance",
]

#: What builds the verifier: `factory(name, options)` (a verifier class, say). Its result is checked when
#: it is built, so a class whose `type` is a `ClassVar` is accepted as it is.
Factory = Callable[[str, Mapping[str, Any]], object]

#: Pushes an image the verifier under test passes into `repository` of the registry; returns its subject.
GoodImage = Callable[[InMemoryRegistry, str], Subject]

REASON = base.REASON_CODE
REPOSITORY = f"{DEFAULT_REGISTRY}/conformance"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: `check` names it, `ok` says whether it held, `message` says what was seen."""

    check: str
    ok: bool
    message: str


def failures(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if not f.ok]


def format_findings(findings: Sequence[Finding]) -> str:
    """The findings as a table: check, result, message."""
    width = max([len("CHECK"), *(len(f.check) for f in findings)])
    lines = [f"{'CHECK':<{width}}  RESULT  MESSAGE"]
    lines += [f"{f.check:<{width}}  {'ok' if f.ok else 'FAILED':<6}  {f.message}" for f in findings]
    failed = len(failures(findings))
    lines.append(
        f"{len(findings) - failed} of {len(findings)} checks passed"
        + (f", {failed} failed" if failed else "")
    )
    return "\n".join(lines)


# --- reports ----------------------------------------------------------------------------------------------


def check_report(report: object) -> list[str]:
    """What is wrong with a verifier's report (empty when nothing is): Countersign's own check,
    `verifiers.base.check_report`, which makes a verifier whose report fails it undecided."""
    try:
        base.check_report(report)
    except base.InvalidReport as e:
        problems = [str(e)]
    else:
        return []
    # The check stops at the first problem; the details are checked on their own too, so a report with a
    # bad reason and bad details names both.
    if isinstance(report, Report) and isinstance(report.details, Mapping):
        try:
            base.plain_json(report.details)
        except base.InvalidReport as e:
            if str(e) not in problems:
                problems.append(str(e))
    return problems


def _undecided_problems(error: Undecided) -> list[str]:
    problems = []
    if not isinstance(error.reason, str) or REASON.fullmatch(error.reason) is None:
        problems.append(f"Undecided reason {error.reason!r:.80} is not a snake_case string")
    if not isinstance(error.message, str):
        problems.append(f"Undecided message is {type(error.message).__name__}, not a string")
    return problems


# --- running one verification -----------------------------------------------------------------------------


@dataclass
class _Run:
    report: object = None
    undecided: Undecided | None = None
    definite: RegistryError | None = None
    error: BaseException | None = None
    timed_out: bool = False
    stuck: bool = False
    leftover: int = 0
    bound: float = 0.0

    def summary(self) -> str:
        if self.timed_out:
            return "no answer"
        if self.error is not None:
            return f"raised {type(self.error).__name__}"
        if self.undecided is not None:
            return f"undecided ({self.undecided.reason})"
        if self.definite is not None:
            return f"raised {type(self.definite).__name__} (a definite failure)"
        if isinstance(self.report, Report):
            return f"{'passed' if self.report.passed is True else 'failed'} ({self.report.reason})"
        return f"returned {type(self.report).__name__}"

    def signature(self) -> tuple[str, object, object]:
        if isinstance(self.report, Report):
            return ("report", self.report.passed, self.report.reason)
        if self.undecided is not None:
            return ("undecided", self.undecided.reason, None)
        failure = self.definite or self.error
        return ("raised", type(failure).__name__ if failure is not None else "nothing", None)


def _said(run: _Run) -> str:
    """What a run says in words: its report's message and details, or its Undecided's message."""
    if isinstance(run.report, Report):
        return f"{run.report.message} {run.report.details!r}"
    if run.undecided is not None:
        return run.undecided.message
    return run.summary()


def _new_tasks(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t not in before and t is not current and not t.done()}


async def _leftovers(before: set[asyncio.Task[Any]], until: float) -> int:
    """Tasks started since `before` still running at `until` (event loop time); they are then cancelled."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0)
    while True:
        pending = _new_tasks(before)
        remaining = until - loop.time()
        if not pending or remaining <= 0:
            break
        await asyncio.wait(pending, timeout=remaining)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1.0)
    return len(pending)


def _settle(task: asyncio.Future[Any], run: _Run) -> None:
    if task.cancelled():
        run.error = asyncio.CancelledError("verify raised CancelledError while not cancelled")
        return
    error = task.exception()
    if error is None:
        run.report = task.result()
    elif isinstance(error, Undecided):
        run.undecided = error
    elif isinstance(error, RegistryError):
        run.definite = error
    else:
        run.error = error


def _start(verifier: Verifier, subject: Subject, context: Context) -> asyncio.Future[Any]:
    """`verifier.verify(...)` as a task; a synchronous result or error becomes a failed future."""
    try:
        awaitable: object = verifier.verify(subject, context)
    except Exception as e:  # a plugin's bug is a finding, not the checker's crash
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(e)
        return failed
    if not inspect.isawaitable(awaitable):
        failed = asyncio.get_running_loop().create_future()
        failed.set_exception(TypeError(f"verify is not async: it returned {type(awaitable).__name__}"))
        return failed
    return asyncio.ensure_future(awaitable)


async def _run(
    verifier: Verifier, subject: Subject, registry: InMemoryRegistry, deadline_in: float, grace: float
) -> _Run:
    before = asyncio.all_tasks()
    context = make_context(registry, deadline_in=deadline_in)
    bound = max(deadline_in, 0.0) + grace
    run = _Run(bound=bound)
    task = _start(verifier, subject, context)
    done, _ = await asyncio.wait({task}, timeout=bound)
    if not done:
        run.timed_out = True
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=grace)
        run.stuck = not done
        if done and not task.cancelled():
            task.exception()  # retrieved: it is not the outcome
    else:
        _settle(task, run)
    run.leftover = await _leftovers(before, max(context.deadline, asyncio.get_running_loop().time()) + grace)
    return run


# --- the checks -------------------------------------------------------------------------------------------


@dataclass
class _Checker:
    verifier: Verifier
    good_image: GoodImage | None
    passes_plain_image: bool
    artifact_types: tuple[str, ...]
    deadline: float
    grace: float
    concurrency: int
    findings: list[Finding] = field(default_factory=list)
    reports: int = 0
    report_problems: list[str] = field(default_factory=list)
    counter: int = 0

    def add(self, check: str, problems: Sequence[str], ok_message: str) -> None:
        self.findings.append(Finding(check, not problems, "; ".join(problems) if problems else ok_message))

    def subject(self, registry: InMemoryRegistry, good: bool) -> Subject:
        self.counter += 1
        if good:
            assert self.good_image is not None
            return self.good_image(registry, f"{REPOSITORY}/good-{self.counter}")
        return registry.push_image(
            f"{REPOSITORY}/plain-{self.counter}:v1", layers=[f"plain {self.counter}\n".encode()]
        )

    def judge(
        self, check: str, run: _Run, *, allow_pass: bool, registry: InMemoryRegistry | None
    ) -> list[str]:
        """What is wrong with `run`; reports and undecideds are also counted for `reports`."""
        problems: list[str] = []
        if run.timed_out:
            problems.append(
                f"no answer within {run.bound:.2f}s (the deadline plus {self.grace:g}s)"
                + ("; it ignored being cancelled" if run.stuck else "")
            )
        if run.error is not None:
            problems.append(
                f"raised {type(run.error).__name__}: {str(run.error)[:200]} (bad content must give a failing "
                "Report, a transient problem Undecided)"
            )
        if run.undecided is not None:
            found = _undecided_problems(run.undecided)
            self.report_problems += [f"{check}: {p}" for p in found]
            problems += found
        if not run.timed_out and run.error is None and run.undecided is None and run.definite is None:
            self.reports += 1
            found = check_report(run.report)
            self.report_problems += [f"{check}: {p}" for p in found]
            problems += found
            if isinstance(run.report, Report) and run.report.passed is True and not allow_pass:
                read = (
                    f" after {len(registry.faulted)} faulted read(s)" if registry and registry.faulted else ""
                )
                problems.append(f"passed ({run.report.reason}){read}: this must never pass")
        if run.leftover:
            problems.append(f"left {run.leftover} task(s) running {self.grace:g}s past the deadline")
        return problems

    # --- scenarios -----------------------------------------------------------------------------------

    async def tag_independent(self, good: bool) -> None:
        """Two tags of one digest: the same outcome, and neither tag in it (the marker's promise)."""
        registry = InMemoryRegistry()
        subject = self.subject(registry, good=good)
        runs: list[_Run] = []
        tags = ("conformance-tag-a", "conformance-tag-b")
        for tag in tags:
            ref = ImageReference(subject.reference.registry, subject.reference.repository, tag=tag)
            registry.tag(ref, subject.digest)
            run = await _run(
                self.verifier, replace(subject, reference=ref), registry, self.deadline, self.grace
            )
            runs.append(run)
        problems = [
            p for run in runs for p in self.judge("tag-independent", run, allow_pass=True, registry=None)
        ]
        seen = [(run.report, _said(run), run.summary()) for run in runs]
        if not problems and seen[0] != seen[1]:
            problems.append(f"another tag, another outcome: {seen[0][2]} / {seen[1][2]}")
        for run in runs:
            named = [tag for tag in tags if tag in _said(run)]
            if named:
                problems.append(f"names the tag {named[0]!r}, although it declares tag_independent")
        self.add(
            "tag-independent", list(dict.fromkeys(problems)), f"the same for two tags: {runs[0].summary()}"
        )

    async def plain(self) -> bool:
        registry = InMemoryRegistry()
        subject = self.subject(registry, good=False)
        run = await _run(self.verifier, subject, registry, self.deadline, self.grace)
        problems = self.judge("plain-image", run, allow_pass=self.passes_plain_image, registry=None)
        if problems and not self.passes_plain_image and isinstance(run.report, Report) and run.report.passed:
            problems.append("(if it should pass images like this, say passes_plain_image=True)")
        self.add("plain-image", problems, run.summary())
        return isinstance(run.report, Report) and run.report.passed is True

    async def good(self) -> None:
        registry = InMemoryRegistry()
        subject = self.subject(registry, good=True)
        run = await _run(self.verifier, subject, registry, self.deadline, self.grace)
        problems = self.judge("good-image", run, allow_pass=True, registry=None)
        if not (isinstance(run.report, Report) and run.report.passed is True) and not problems:
            problems.append(f"the good image did not pass: {run.summary()}")
        self.add("good-image", problems, run.summary())

    def _artifact_types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.artifact_types, *ARTIFACT_TYPES)))

    def add_junk(self, registry: InMemoryRegistry, subject: Subject, kind: str) -> None:
        """Hostile referrers of `kind` for `subject`."""
        types = self._artifact_types()
        if kind == "not-json":
            for artifact_type in types:
                data = b'{"schemaVersion": 2, "mediaType": ' + artifact_type.encode() + b"\n"
                self._list(registry, subject, data, artifact_type)
        elif kind in ("junk-manifests", "junk-manifests-unchecked"):
            for artifact_type in types:
                for listed in (artifact_type, None):
                    for index, data in enumerate(junk_manifests(subject.digest, artifact_type).values()):
                        self._list(registry, subject, data + b" " * (index + 1), listed)
        elif kind == "junk-tags":
            hex_part = subject.digest.partition(":")[2]
            shapes = list(junk_manifests(subject.digest, ARTIFACT_TYPES[0]).values())
            for index, suffix in enumerate(("", ".sig", ".att", ".sbom")):
                registry.push_manifest(subject, shapes[index % len(shapes)], tag=f"sha256-{hex_part}{suffix}")
        elif kind == "junk-blobs":
            for artifact_type in types:
                for name, data in junk_blobs().items():
                    media_type = artifact_type if "+json" in artifact_type else "application/octet-stream"
                    registry.push_artifact(
                        subject, artifact_type, [(media_type, data)], annotations={"org.example.junk": name}
                    )
        elif kind == "integrity":
            for artifact_type in types:
                registry.push_artifact(subject, artifact_type, [(artifact_type, b'{"signed": true}')])
            registry.corrupt("blob")
            registry.corrupt("manifest")
        elif kind == "oversized":
            registry.max_manifest_bytes = 64 * 1024
            for artifact_type in types:
                huge = {"mediaType": artifact_type, "digest": digest_of(b"huge"), "size": 2**40}
                layer = registry.push_blob(subject, b"{}", artifact_type)
                data = artifact_manifest(subject.descriptor, artifact_type, [layer])
                # a layer claiming a terabyte, and a manifest over the registry client's limit
                big = data.replace(b'"layers":[', b'"layers":[' + _json(huge) + b",")
                self._list(registry, subject, big, artifact_type)
                padded = data[:-1] + b',"annotations":{"pad":"' + b"x" * 100_000 + b'"}}'
                self._list(registry, subject, padded, artifact_type)
        elif kind == "missing":
            for artifact_type in types:
                registry.list_referrer(
                    subject,
                    _descriptor(digest_of(artifact_type.encode()), 123, artifact_type),
                )
                layer = _descriptor(digest_of(b"absent " + artifact_type.encode()), 10, artifact_type)
                data = artifact_manifest(subject.descriptor, artifact_type, [layer])
                registry.push_manifest(subject, data)
        else:  # pragma: no cover - the kinds are ours
            raise AssertionError(kind)

    @staticmethod
    def _list(registry: InMemoryRegistry, subject: Subject, data: bytes, artifact_type: str | None) -> None:
        descriptor = registry.push_manifest(subject, data)
        registry.list_referrer(subject, _descriptor(descriptor.digest, descriptor.size, artifact_type))

    JUNK = (
        "not-json",
        "junk-manifests",
        "junk-manifests-unchecked",
        "junk-tags",
        "junk-blobs",
        "integrity",
        "oversized",
        "missing",
    )

    async def malformed(self, plain_passes: bool) -> None:
        for kind in self.JUNK:
            registry = InMemoryRegistry(check_manifests=kind != "junk-manifests-unchecked")
            subject = self.subject(registry, good=False)
            self.add_junk(registry, subject, kind)
            run = await _run(self.verifier, subject, registry, self.deadline, self.grace)
            check = f"malformed:{kind}"
            self.add(check, self.judge(check, run, allow_pass=plain_passes, registry=registry), run.summary())

    async def good_with_junk(self) -> None:
        registry = InMemoryRegistry()
        subject = self.subject(registry, good=True)
        for kind in ("not-json", "junk-manifests", "junk-tags", "junk-blobs", "missing"):
            self.add_junk(registry, subject, kind)
        run = await _run(self.verifier, subject, registry, self.deadline, self.grace)
        check = "good-image-with-junk"
        self.add(check, self.judge(check, run, allow_pass=True, registry=registry), run.summary())

    async def faults(self, target_passes: bool) -> None:
        good = self.good_image is not None
        for check, deadline_in in (
            ("corrupted", self.deadline),
            ("unavailable", self.deadline),
            ("deadline-past", -1.0),
            ("stalled", min(self.deadline, 0.5)),
        ):
            registry = InMemoryRegistry()
            subject = self.subject(registry, good=good)
            if check == "corrupted":
                registry.corrupt()
            elif check == "unavailable":
                registry.fail()
            elif check == "stalled":
                registry.stall()
            run = await _run(self.verifier, subject, registry, deadline_in, self.grace)
            allow = target_passes and not registry.faulted
            self.add(check, self.judge(check, run, allow_pass=allow, registry=registry), run.summary())

    async def cancelled(self) -> None:
        registry = InMemoryRegistry()
        subject = self.subject(registry, good=self.good_image is not None)
        registry.stall()
        before = asyncio.all_tasks()
        context = make_context(registry, deadline_in=self.deadline)
        task = _start(self.verifier, subject, context)
        reading = asyncio.ensure_future(registry.read_started.wait())
        await asyncio.wait({task, reading}, timeout=self.deadline / 2, return_when=asyncio.FIRST_COMPLETED)
        reading.cancel()
        if task.done():
            run = _Run()
            _settle(task, run)
            self.add(
                "cancelled", [], f"it finished before reading anything ({run.summary()}): nothing to cancel"
            )
            return
        if not registry.active:
            task.cancel()
            await asyncio.wait({task}, timeout=self.grace)
            self.add("cancelled", [], "it read nothing within half the deadline; cancelled while busy")
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=self.grace)
        problems = []
        if not done:
            problems.append(f"still running {self.grace:g}s after it was cancelled")
        elif not task.cancelled():
            run = _Run()
            _settle(task, run)
            problems.append(f"it swallowed the cancellation and {run.summary()}")
        leftover = await _leftovers(before, context.deadline + self.grace)
        if leftover:
            problems.append(f"left {leftover} task(s) running {self.grace:g}s past the deadline")
        self.add(
            "cancelled", problems, "cancelled during a stalled read: ended at once, nothing left running"
        )

    async def concurrent(self) -> None:
        registry = InMemoryRegistry()
        subjects: list[Subject] = []
        for index in range(self.concurrency):
            good = self.good_image is not None and index % 2 == 1
            subject = self.subject(registry, good=good)
            if index % 3 == 2:
                self.add_junk(registry, subject, "junk-manifests")
            subjects.append(subject)
        sequential = [await _run(self.verifier, s, registry, self.deadline, self.grace) for s in subjects]
        for index, subject in enumerate(subjects):
            registry.delay(0.002 * ((self.concurrency - index) % 4), "referrers", target=subject.digest)
        registry.delay(0.001, "manifest")
        before = asyncio.all_tasks()
        contexts = [make_context(registry, deadline_in=self.deadline) for _ in subjects]
        tasks = [_start(self.verifier, s, c) for s, c in zip(subjects, contexts, strict=True)]
        done, pending = await asyncio.wait(tasks, timeout=self.deadline + self.grace)
        for task in pending:
            task.cancel()
        concurrent = []
        for task in tasks:
            run = _Run(timed_out=task in pending)
            if task in done:
                _settle(task, run)
            concurrent.append(run)
        problems = []
        for index, (one, other) in enumerate(zip(sequential, concurrent, strict=True)):
            problems += self.judge("concurrency", one, allow_pass=True, registry=None)
            if other.timed_out:
                problems.append(f"image {index}: no answer within the deadline when verified concurrently")
            elif one.signature() != other.signature():
                problems.append(f"image {index}: {one.summary()} alone but {other.summary()} concurrently")
        leftover = await _leftovers(before, max(c.deadline for c in contexts) + self.grace)
        if leftover:
            problems.append(f"left {leftover} task(s) running {self.grace:g}s past the deadline")
        self.add(
            "concurrency",
            list(dict.fromkeys(problems)),
            f"{len(subjects)} images: the same outcomes one by one and all at once",
        )

    async def close(self) -> None:
        if not isinstance(self.verifier, HoldsResources):
            return
        try:
            await asyncio.wait_for(self.verifier.aclose(), self.grace)
        except TimeoutError:
            self.add("aclose", [f"aclose did not return within {self.grace:g}s"], "")
        except Exception as e:
            self.add("aclose", [f"aclose raised {type(e).__name__}: {e}"], "")
        else:
            self.add("aclose", [], "closed")


def _json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _descriptor(digest: str, size: int, artifact_type: str | None) -> Descriptor:
    return Descriptor(media_type=oci.OCI_MANIFEST, digest=digest, size=size, artifact_type=artifact_type)


def _build(plugin: str | Factory, options: Mapping[str, Any], name: str) -> Verifier | Finding:
    """The verifier, or the `build` finding saying why there is none."""
    if isinstance(plugin, str):
        try:
            return create_verifier(plugin, name, options)
        except PluginError as e:
            return Finding("build", False, str(e))
    try:
        built: Any = plugin(name, options)
    except OptionsError as e:
        return Finding(
            "build", False, f"options.{e.path}: {e.message}" if e.path else f"options: {e.message}"
        )
    except Exception as e:
        return Finding("build", False, f"the factory raised {type(e).__name__}: {e}")
    for attribute in ("name", "type", "verify"):
        if not hasattr(built, attribute):
            return Finding("build", False, f"built an object without {attribute!r}")
    verifier = cast(Verifier, built)
    if verifier.name != name:
        return Finding("build", False, f"ignored its name: built {verifier.name!r}, not {name!r}")
    if not isinstance(verifier.type, str) or not verifier.type:
        return Finding("build", False, f"its type {verifier.type!r} is not a non-empty string")
    return verifier


async def check_conformance(
    plugin: str | Factory,
    options: Mapping[str, Any] | None = None,
    *,
    name: str = "conformance",
    good_image: GoodImage | None = None,
    passes_plain_image: bool = False,
    artifact_types: Sequence[str] = (),
    deadline: float = 2.0,
    grace: float = 1.0,
    concurrency: int = 6,
) -> list[Finding]:
    """Run every check (see the module docstring) on the verifier `plugin` builds; the findings.

    `plugin` is a verifier type (found among the `countersign.verifiers` entry points) or a factory
    (`factory(name, options)`, a verifier class for instance). `deadline` is each verification's time
    budget in seconds, `grace` how much longer it may take to answer.
    """
    built = _build(plugin, dict(options or {}), name)
    if isinstance(built, Finding):
        return [built]
    verifier = built
    if isinstance(verifier, BindsVerifiers):
        try:
            verifier.bind({name: verifier})
        except OptionsError as e:
            return [Finding("build", False, f"bind: options.{e.path}: {e.message}")]
        except Exception as e:
            return [Finding("build", False, f"bind raised {type(e).__name__}: {e}")]
    if not inspect.iscoroutinefunction(verifier.verify):
        return [Finding("build", False, "verify is not an async function")]
    checker = _Checker(
        verifier,
        good_image,
        passes_plain_image,
        tuple(dict.fromkeys((*artifact_types, *_declared_artifact_types(verifier)))),
        deadline,
        grace,
        concurrency,
    )
    checker.findings.append(Finding("build", True, f"built {name!r} of type {verifier.type!r}"))
    # A pass of the plain image that was not declared is a finding already: it excuses nothing later.
    plain_passes = await checker.plain() and passes_plain_image
    target_passes = plain_passes
    if good_image is not None:
        await checker.good()
        target_passes = True
    await checker.malformed(plain_passes)
    if good_image is not None:
        await checker.good_with_junk()
    await checker.faults(target_passes)
    await checker.cancelled()
    await checker.concurrent()
    if is_tag_independent(verifier):
        await checker.tag_independent(good_image is not None)
    checker.add(
        "reports",
        list(dict.fromkeys(checker.report_problems)),
        f"{checker.reports} reports, every one well-formed",
    )
    await checker.close()
    return checker.findings


def _declared_artifact_types(verifier: Verifier) -> tuple[str, ...]:
    """The artifact types a verifier's options say it reads, so the junk is of those types too.

    An `exec` verifier hands its plugin only the referrers of `referrers.artifactTypes`: junk of other
    types would never reach the plugin, and the malformed checks would not test it at all.
    """
    if isinstance(verifier, ExecVerifier) and verifier.referrers is not None:
        return verifier.referrers.artifact_types
    return ()


def run_conformance(
    plugin: str | Factory, options: Mapping[str, Any] | None = None, **kwargs: Any
) -> list[Finding]:
    """`check_conformance` from synchronous code (it runs its own event loop)."""
    return asyncio.run(check_conformance(plugin, options, **kwargs))


def assert_conforms(
    plugin: str | Factory, options: Mapping[str, Any] | None = None, **kwargs: Any
) -> list[Finding]:
    """Run the checks (from synchronous code: a plain pytest test) and fail with the table if any fails."""
    findings = run_conformance(plugin, options, **kwargs)
    if failures(findings):
        raise AssertionError("the verifier does not conform:\n" + format_findings(findings))
    return findings
