"""The conformance checker (verifiers.testing.conformance) catches broken plugins; the built-ins pass it.

Each broken plugin below has one defect a real plugin could have; the checker must name the checks that
defect fails (and so the findings are not vacuous). The built-in verifiers, with sensible options, pass
every check: they are held to what plugin authors are told.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.notation import SigningChain
from tests.support.private_sigstore import pem_public_key, sign, simple_signing_payload
from verifiers.base import Context, Report, Subject, Undecided
from verifiers.cosign.model import ANNOTATION_SIGNATURE, ARTIFACT_TYPE_COSIGN_SIG, SIMPLE_SIGNING_MEDIA_TYPE
from verifiers.errors import RegistryError
from verifiers.reference import parse_reference
from verifiers.testing import InMemoryRegistry
from verifiers.testing.conformance import (
    Factory,
    Finding,
    assert_conforms,
    check_conformance,
    check_report,
    failures,
    format_findings,
)


async def check(plugin: Factory, *, passes_plain_image: bool = False) -> list[Finding]:
    """The checks with short deadlines (a hanging plugin costs the deadline in every check)."""
    return await check_conformance(
        plugin, passes_plain_image=passes_plain_image, deadline=0.2, grace=0.2, concurrency=3
    )


def failed(findings: list[Finding]) -> set[str]:
    return {f.check for f in failures(findings)}


class Base:
    type: ClassVar[str] = "broken"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name


class PassesEverything(Base):
    async def verify(self, subject: Subject, context: Context) -> Report:
        return Report.ok("accepted", f"{subject.reference} accepted")


class Hangs(Base):
    async def verify(self, subject: Subject, context: Context) -> Report:
        await asyncio.Event().wait()
        raise AssertionError


class BadReport(Base):
    async def verify(self, subject: Subject, context: Context) -> Report:
        return Report(False, "Not Snake Case", "bad", {"ids": {1, 2}})  # a set is not JSON


class ReadsReferrers(Base):
    """Reads the referrers and every manifest; fails when there is none. A baseline that behaves."""

    async def verify(self, subject: Subject, context: Context) -> Report:
        for descriptor in await context.registry.referrers(subject):
            try:
                await context.registry.manifest(subject.reference, descriptor.digest)
            except RegistryError:
                continue
        return Report.fail("nothing_found", "no approval")


class PassesWhenTheRegistryIsDown(ReadsReferrers):
    async def verify(self, subject: Subject, context: Context) -> Report:
        try:
            return await super().verify(subject, context)
        except Undecided:
            return Report.ok("registry_down", "could not check: let it through")


class CrashesOnJunk(Base):
    async def verify(self, subject: Subject, context: Context) -> Report:
        for descriptor in await context.registry.referrers(subject):
            data, _ = await context.registry.manifest(subject.reference, descriptor.digest)
            data.decode("ascii")  # UnicodeDecodeError or the like on junk? no: InvalidContent first
        raw: dict[str, Any] = {}
        return Report.fail("nothing_found", str(raw["missing"]))  # KeyError: a plain bug


class IgnoresCancellation(ReadsReferrers):
    async def verify(self, subject: Subject, context: Context) -> Report:
        try:
            return await super().verify(subject, context)
        except asyncio.CancelledError:
            return Report.fail("cancelled", "carried on")


class LeavesATaskBehind(ReadsReferrers):
    tasks: ClassVar[set[asyncio.Task[bool]]] = set()

    async def verify(self, subject: Subject, context: Context) -> Report:
        task = asyncio.ensure_future(asyncio.Event().wait())
        self.tasks.add(task)
        return await super().verify(subject, context)


class DependsOnOrder(ReadsReferrers):
    """Keeps per-image state on the instance: concurrent verifications see each other's."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(name, options)
        self.current: Subject | None = None

    async def verify(self, subject: Subject, context: Context) -> Report:
        self.current = subject
        await context.registry.referrers(subject)
        assert self.current is not None
        if self.current.digest != subject.digest:
            return Report.fail("confused", "another image's state")
        return Report.fail("nothing_found", "no approval")


async def test_a_plugin_that_behaves_conforms() -> None:
    findings = await check(ReadsReferrers)
    assert not failures(findings), format_findings(findings)
    checks = [f.check for f in findings]
    assert checks[:2] == ["build", "plain-image"]
    assert {"malformed:not-json", "unavailable", "stalled", "cancelled", "concurrency", "reports"} <= set(
        checks
    )


class NamesTheTag(ReadsReferrers):
    """Declares the marker, then names the key's tag in its message."""

    tag_independent = True

    async def verify(self, subject: Subject, context: Context) -> Report:
        await context.registry.referrers(subject)
        return Report.fail("nothing_found", f"no approval for {subject.reference}")


class DependsOnTheTag(ReadsReferrers):
    """Declares the marker, then decides by the tag (a tag-free message: only the outcome differs)."""

    tag_independent = True

    async def verify(self, subject: Subject, context: Context) -> Report:
        await context.registry.referrers(subject)
        if (subject.reference.tag or "").endswith("-b"):
            return Report.fail("other_tag", "no approval")
        return Report.fail("nothing_found", "no approval")


async def test_a_plugin_that_breaks_its_tag_independence_promise_is_caught() -> None:
    assert "tag-independent" not in {
        f.check for f in await check(ReadsReferrers)
    }  # not declared: not checked
    for plugin, expected in (
        (NamesTheTag, "names the tag"),
        (DependsOnTheTag, "another tag, another outcome"),
    ):
        findings = await check(plugin)
        assert failed(findings) == {"tag-independent"}, format_findings(findings)
        assert expected in next(f.message for f in findings if f.check == "tag-independent")


async def test_a_plugin_that_passes_everything_is_caught() -> None:
    findings = await check(PassesEverything)
    assert {"plain-image", "malformed:integrity", "malformed:junk-manifests", "unavailable"} <= failed(
        findings
    )
    by_check = {f.check: f for f in findings}
    assert "must never pass" in by_check["unavailable"].message
    assert "passes_plain_image=True" in by_check["plain-image"].message


async def test_passing_a_plain_image_can_be_declared_but_a_pass_after_faulted_reads_cannot() -> None:
    lenient = await check(PassesEverything, passes_plain_image=True)
    assert not failures(lenient), format_findings(lenient)  # it reads nothing: nothing hostile reached it
    findings = await check(PassesWhenTheRegistryIsDown)
    assert {"unavailable", "deadline-past", "stalled"} <= failed(findings)
    assert "plain-image" not in failed(findings)


async def test_a_plugin_that_hangs_is_caught() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    findings = await check(Hangs)
    assert {"plain-image", "malformed:not-json", "stalled", "deadline-past", "concurrency"} <= failed(
        findings
    )
    assert "no answer within" in {f.check: f for f in findings}["plain-image"].message
    assert loop.time() - start < 30  # every hang is bounded


async def test_a_plugin_that_returns_bad_reports_is_caught() -> None:
    findings = await check(BadReport)
    by_check = {f.check: f for f in findings}
    assert not by_check["reports"].ok
    assert "not a snake_case code" in by_check["reports"].message
    assert "details.ids: set is not a JSON value" in by_check["reports"].message
    assert not by_check["plain-image"].ok


async def test_a_plugin_that_crashes_is_caught() -> None:
    findings = await check(CrashesOnJunk)
    assert "raised KeyError" in {f.check: f for f in findings}["plain-image"].message


async def test_a_plugin_that_swallows_cancellation_is_caught() -> None:
    findings = await check(IgnoresCancellation)
    assert failed(findings) == {"cancelled"}
    assert "swallowed the cancellation" in {f.check: f for f in findings}["cancelled"].message


async def test_a_plugin_that_leaves_tasks_running_is_caught() -> None:
    findings = await check(LeavesATaskBehind)
    assert "left 1 task(s) running" in {f.check: f for f in findings}["plain-image"].message
    assert all(task.done() for task in LeavesATaskBehind.tasks)  # the checker cancelled them


async def test_a_plugin_with_state_on_the_instance_is_caught() -> None:
    findings = await check_conformance(DependsOnOrder, deadline=0.5, grace=0.5, concurrency=4)
    assert failed(findings) == {"concurrency"}
    assert "concurrently" in {f.check: f for f in findings}["concurrency"].message


async def test_a_factory_that_refuses_its_options_is_one_finding() -> None:
    assert await check_conformance("digest-pin", {"exmpt": []}) == [
        Finding("build", False, "options.exmpt: unknown option (known: exempt, verifyTag)")
    ]
    [finding] = await check_conformance("no-such-type")
    assert not finding.ok and "unknown verifier type 'no-such-type'" in finding.message


def test_check_report() -> None:
    assert check_report(Report.ok("fine", "ok", n=1, f=0.5, nested={"a": [None, True]})) == []
    assert check_report({"passed": True}) == ["returned dict, not a Report"]
    # Countersign's own check (verifiers.base.check_report): the first problem found, and any in the details.
    bad = Report("yes", "", 1, {"x": float("nan"), 2: 1})  # type: ignore[arg-type, dict-item]
    assert check_report(bad) == ["passed is str, not a bool", "details.x: nan is not a JSON number"]
    bad = dataclasses.replace(bad, passed=True)
    assert check_report(bad)[0] == "reason must be a string of 1 to 64 characters"
    bad = dataclasses.replace(bad, reason="Not Snake")
    assert check_report(bad)[0] == "reason Not Snake is not a snake_case code ([a-z][a-z0-9]*, joined by _)"
    bad = dataclasses.replace(bad, reason="fine")
    assert check_report(bad)[0] == "message must be a string of at most 65536 characters"
    bad = dataclasses.replace(bad, message="ok")
    assert len(check_report(bad)) == 1 and "nan" in check_report(bad)[0]
    both = Report(True, "Bad Reason", "ok", {"ids": {1}})
    assert len(check_report(both)) == 2 and "details.ids" in check_report(both)[1]


# --- the built-in verifiers ---------------------------------------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())


def pinned_image(registry: InMemoryRegistry, repository: str) -> Subject:
    subject = registry.push_image(f"{repository}:v1")
    return dataclasses.replace(subject, reference=parse_reference(f"{repository}:v1@{subject.digest}"))


def cosign_signed_image(registry: InMemoryRegistry, repository: str) -> Subject:
    subject = registry.push_image(f"{repository}:v1")
    payload = simple_signing_payload(subject.digest, repository)
    signature = base64.b64encode(sign(KEY, payload)).decode()
    registry.push_artifact(
        subject,
        ARTIFACT_TYPE_COSIGN_SIG,
        [(SIMPLE_SIGNING_MEDIA_TYPE, payload, {ANNOTATION_SIGNATURE: signature})],
    )
    return subject


def test_digest_pin_conforms() -> None:
    assert_conforms("digest-pin", {}, good_image=pinned_image)
    assert_conforms("digest-pin", {"verifyTag": True}, good_image=pinned_image)


def test_cosign_conforms() -> None:
    options = {"keys": [{"name": "release", "pem": pem_public_key(KEY).decode()}], "transparencyLog": "skip"}
    findings = assert_conforms("cosign", options, good_image=cosign_signed_image)
    assert {"good-image", "good-image-with-junk", "tag-independent"} <= {f.check for f in findings}
    assert "passed" in next(f.message for f in findings if f.check == "tag-independent")


def test_sbom_conforms() -> None:
    assert "tag-independent" in {f.check for f in assert_conforms("sbom", {})}


def test_notation_conforms() -> None:
    chain = SigningChain(name="countersign-conformance", intermediate=False)
    policy = {
        "version": "1.0",
        "trustPolicies": [
            {
                "name": "all",
                "registryScopes": ["*"],
                "signatureVerification": {"level": "strict"},
                "trustStores": ["ca:shop"],
                "trustedIdentities": ["*"],
            }
        ],
    }
    options = {"trustPolicy": policy, "trustStores": [{"name": "ca:shop", "pem": chain.root_pem.decode()}]}
    assert "tag-independent" in {f.check for f in assert_conforms("notation", options)}


@pytest.mark.parametrize("plugin", ["digest-pin", "sbom"])
def test_the_findings_print_as_a_table(plugin: str) -> None:
    findings = assert_conforms(plugin, {})
    table = format_findings(findings).splitlines()
    assert table[0].split() == ["CHECK", "RESULT", "MESSAGE"]
    assert table[-1] == f"{len(findings)} of {len(findings)} checks passed"
