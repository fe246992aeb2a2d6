"""A new tag of an already verified digest reuses its verdict when every verifier promises tag independence.

The engine looks up the exact key first; on a miss, when every verifier its policies name declares
`verifiers.base.TagIndependent`, a verdict made for another tag of the same digest (same configuration,
namespace and credentials) is served with only its `reference` changed. The registry here is the kit's
in-memory registry behind the engine's `resolve`: these tests are about the engine's verdict cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from provider.cache import PackedTTLCache
from provider.config import Config, Policy
from provider.engine import Engine, _verdict_key
from provider.metrics import Metrics
from provider.outcome import Decided
from provider.registry.auth import Credentials
from provider.registry.workload import WorkloadCredentials
from tests.support.engine_registry import EngineRegistry
from verifiers.base import (
    Context,
    Report,
    Subject,
    TagIndependent,
    VerifiedAttestation,
    is_tag_independent,
)
from verifiers.cosign.verifier import CosignVerifier
from verifiers.digest_pin import DigestPinVerifier
from verifiers.exec import ExecVerifier
from verifiers.notation.verifier import NotationVerifier
from verifiers.reference import Key
from verifiers.sbom import SbomVerifier

REPO = "reg.test/app"


class Registry(EngineRegistry):
    """The engine's registry: `REPO`'s image under v1, t2, t3 and t4, another image under `other`."""

    def __init__(self) -> None:
        super().__init__()
        self.digest = self.content.push_image(f"{REPO}:v1").digest
        for tag in ("t2", "t3", "t4"):
            self.content.tag(f"{REPO}:{tag}", self.digest)
        self.content.push_image(f"{REPO}:other", layers=(b"another image\n",))


class Counting:
    """A verifier counting its calls, passing (or failing) with a tag-free message and details; it declares
    the marker only when asked to."""

    type = "counting"

    def __init__(self, name: str, *, tag_independent: bool, passes: bool = True) -> None:
        self.name = name
        if tag_independent:
            self.tag_independent = True
        self.passes = passes
        self.calls: list[str] = []

    async def verify(self, subject: Subject, context: Context) -> Report:
        self.calls.append(str(subject.reference))
        what = f"{subject.reference.name}@{subject.digest}"
        if self.passes:
            return Report.ok("counted", f"{what} counted", digest=subject.digest, ratio=0.5)
        return Report.fail("not_counted", f"{what} refused", digest=subject.digest)


class Source:
    """A WorkloadSource: the credentials of a key's first pull secret (each secret a distinct user)."""

    async def credentials(self, key: Key) -> WorkloadCredentials:
        secret = key.pull_secrets[0]
        return WorkloadCredentials({"reg.test": Credentials(secret, f"{secret}-password")})

    async def aclose(self) -> None:
        pass


def policy(*names: str, name: str = "p", mode: str = "allOf") -> Policy:
    threshold = len(names) if mode == "allOf" else 1
    return Policy(name=name, scopes=("*",), namespaces=None, mode=mode, verifiers=names, threshold=threshold)


def engine_for(
    verifiers: Sequence[Any],
    policies: Sequence[Policy],
    *,
    fingerprint: str = "test",
    namespace_policies: Mapping[str, tuple[Policy, ...]] | None = None,
    registry: Registry | None = None,
    workload: Source | None = None,
) -> Engine:
    config = Config(
        policies=tuple(policies), fingerprint=fingerprint, namespace_policies=namespace_policies or {}
    )
    return Engine(
        config,
        registry or Registry(),  # type: ignore[arg-type]
        {v.name: v for v in verifiers},
        metrics=Metrics(),
        workload=workload,
    )


async def verdict(engine: Engine, key: str) -> Decided:
    outcome = (await engine.verify([key], 5.0))[key]
    assert isinstance(outcome, Decided), outcome
    return outcome


def lookups(engine: Engine, cache: str, result: str) -> float:
    value = engine.metrics.registry.get_sample_value(
        "countersign_cache_requests_total", {"cache": cache, "result": result}
    )
    return value or 0.0


def test_the_marker_is_opt_in_and_exactly_true() -> None:
    marked, unmarked = Counting("a", tag_independent=True), Counting("b", tag_independent=False)
    assert isinstance(marked, TagIndependent) and is_tag_independent(marked)
    assert not isinstance(unmarked, TagIndependent) and not is_tag_independent(unmarked)
    unmarked.tag_independent = 1  # truthy is not the promise
    assert isinstance(unmarked, TagIndependent) and not is_tag_independent(unmarked)


def test_the_built_in_verifiers_declare_it_only_where_no_report_reads_the_tag() -> None:
    for kind in (CosignVerifier, NotationVerifier):
        assert is_tag_independent(kind.__new__(kind))  # a class attribute: every instance
    assert is_tag_independent(SbomVerifier("s", {}))
    assert not is_tag_independent(DigestPinVerifier("d", {}))  # verifyTag reads the tag
    assert not is_tag_independent(DigestPinVerifier("d", {"verifyTag": True}))
    assert not hasattr(ExecVerifier, "tag_independent")  # its program is given the tag


class Attester:
    """An `AttestationSource` that may or may not declare the marker (the sbom verifier's attestedBy)."""

    type = "attester"

    def __init__(self, name: str, *, tag_independent: bool) -> None:
        self.name = name
        self.tag_independent = tag_independent

    async def verify(self, subject: Subject, context: Context) -> Report:
        return Report.ok("ok", "fine")

    async def verified_attestations(
        self, subject: Subject, context: Context
    ) -> Sequence[VerifiedAttestation]:
        return []


@pytest.mark.parametrize("source_independent", [True, False])
def test_an_attested_sbom_verifier_is_tag_independent_only_while_its_source_is(
    source_independent: bool,
) -> None:
    sbom = SbomVerifier("sbom", {"attestedBy": "att"})
    verifiers: dict[str, Any] = {
        "sbom": sbom,
        "att": Attester("att", tag_independent=source_independent),
    }
    sbom.bind(verifiers)
    assert is_tag_independent(sbom) is source_independent


async def test_a_second_tag_of_a_verified_digest_runs_no_verifier() -> None:
    a, b = Counting("a", tag_independent=True), Counting("b", tag_independent=True)
    registry = Registry()
    engine = engine_for([a, b], [policy("a", "b")], registry=registry)
    first = await verdict(engine, f"{REPO}:v1")
    assert first.value["allowed"] is True and len(a.calls) == len(b.calls) == 1
    second = await verdict(engine, f"{REPO}:t2")
    assert len(a.calls) == len(b.calls) == 1, (a.calls, b.calls)  # nothing ran again
    assert registry.resolved == 2  # only the new tag was resolved
    assert second.value["reference"] == f"{REPO}:t2" and second.value["digest"] == registry.digest
    assert lookups(engine, "verdict_digest", "hit") == 1
    # The copy under the exact key answers next time (the warm path, no second lookup).
    again = await verdict(engine, f"{REPO}:t2")
    assert again.encoded == second.encoded and lookups(engine, "verdict_digest", "hit") == 1
    assert lookups(engine, "verdict", "hit") == 1
    # The digest itself, and a tag with the digest, share it too.
    for key in (f"{REPO}@{registry.digest}", f"{REPO}:t3@{registry.digest}"):
        pinned = await verdict(engine, key)
        assert pinned.value["reference"] == key
    assert len(a.calls) == len(b.calls) == 1
    assert lookups(engine, "verdict_digest", "hit") == 3


async def test_a_verified_digest_pinned_key_serves_the_tags_and_keeps_its_own_reference() -> None:
    a = Counting("a", tag_independent=True)
    registry = Registry()
    engine = engine_for([a], [policy("a")], registry=registry)
    pinned_key = f"{REPO}@{registry.digest}"
    pinned = await verdict(engine, pinned_key)
    tagged = await verdict(engine, f"{REPO}:t2")
    assert len(a.calls) == 1 and tagged.value["reference"] == f"{REPO}:t2"
    # The tag's copy never replaces the digest-pinned key's own entry.
    assert (await verdict(engine, pinned_key)).encoded == pinned.encoded
    assert pinned.value["reference"] == pinned_key


@pytest.mark.parametrize("kind", ["unmarked", "digest-pin"])
async def test_a_verifier_without_the_marker_makes_every_tag_verify_again(kind: str) -> None:
    marked = Counting("marked", tag_independent=True)
    other: Any = (
        Counting("other", tag_independent=False) if kind == "unmarked" else DigestPinVerifier("other", {})
    )
    engine = engine_for([marked, other], [policy("marked", "other", mode="anyOf")])
    await verdict(engine, f"{REPO}:v1")
    await verdict(engine, f"{REPO}:t2")
    assert marked.calls == [f"{REPO}:v1", f"{REPO}:t2"]
    assert lookups(engine, "verdict_digest", "hit") == lookups(engine, "verdict_digest", "miss") == 0


async def test_a_namespace_policy_naming_an_unmarked_verifier_makes_its_keys_verify_again() -> None:
    marked, unmarked = Counting("marked", tag_independent=True), Counting("unmarked", tag_independent=False)
    engine = engine_for(
        [marked, unmarked], [policy("marked")], namespace_policies={"team": (policy("unmarked", name="np"),)}
    )
    await verdict(engine, f"[team]{REPO}:v1")
    await verdict(engine, f"[team]{REPO}:t2")
    assert len(marked.calls) == len(unmarked.calls) == 2
    await verdict(engine, f"[other]{REPO}:v1")
    await verdict(engine, f"[other]{REPO}:t2")  # no namespace policy there: shared
    assert len(marked.calls) == 3 and len(unmarked.calls) == 2


def _scenarios() -> list[tuple[str, list[Counting], list[Policy], dict[str, tuple[Policy, ...]]]]:
    def pair(passes: bool) -> list[Counting]:
        return [Counting("a", tag_independent=True), Counting("b", tag_independent=True, passes=passes)]

    return [
        ("allowed", pair(True), [policy("a", "b")], {}),
        ("denied", pair(False), [policy("a", "b")], {}),
        ("denied-by-the-namespace", pair(False), [policy("a")], {"team": (policy("b", name="np"),)}),
        ("both-denied", pair(False), [policy("b")], {"team": (policy("a", "b", name="np"),)}),
    ]


@pytest.mark.parametrize("namespace", ["", "[team]"])
@pytest.mark.parametrize("scenario", _scenarios(), ids=lambda s: s[0])
async def test_a_reused_verdict_is_the_one_a_fresh_verification_of_the_tag_makes(
    scenario: tuple[str, list[Counting], list[Policy], dict[str, tuple[Policy, ...]]], namespace: str
) -> None:
    _, verifiers, policies, namespace_policies = scenario
    reusing = engine_for(verifiers, policies, namespace_policies=namespace_policies)
    fresh = engine_for(verifiers, policies, namespace_policies=namespace_policies)
    await verdict(reusing, f"{namespace}{REPO}:v1")
    calls = [len(v.calls) for v in verifiers]
    reused = await verdict(reusing, f"{namespace}{REPO}:t2")
    assert [len(v.calls) for v in verifiers] == calls  # reused, not verified
    made = await verdict(fresh, f"{namespace}{REPO}:t2")
    assert [len(v.calls) for v in verifiers] != calls  # this one was verified
    assert reused.encoded == made.encoded  # byte for byte: reasons, namespace, policies, reports
    assert json.loads(reused.encoded) == made.value
    assert made.value["reference"] == f"{REPO}:t2" and made.value["namespace"] == namespace.strip("[]")


async def test_what_decides_a_verdict_is_never_shared() -> None:
    a = Counting("a", tag_independent=True)
    registry = Registry()
    engine = engine_for([a], [policy("a")], registry=registry, workload=Source())
    await verdict(engine, f"[ns-a]{REPO}:v1")
    await verdict(engine, f"[ns-b]{REPO}:t2")  # another namespace
    await verdict(engine, f"{REPO}:t2")  # no namespace
    await verdict(engine, f"[ns-a]{REPO}:other")  # another digest of the repository
    assert len(a.calls) == 4
    # Another repository holding the same digest.
    registry.content.push_image("reg.test/elsewhere:v9")
    registry.content.tag("reg.test/elsewhere:v9", registry.digest)
    await verdict(engine, "[ns-a]reg.test/elsewhere:v9")
    assert len(a.calls) == 5
    # Workload credentials: alice's verdict is shared with alice's other tags, never with bob's.
    alice_v1, alice_t3, bob_t3 = (
        v1_key("ns-a", f"{REPO}:{t}", secret)
        for t, secret in (("v1", "alice"), ("t3", "alice"), ("t3", "bob"))
    )
    await verdict(engine, alice_v1)
    assert len(a.calls) == 6
    await verdict(engine, alice_t3)
    assert len(a.calls) == 6
    await verdict(engine, bob_t3)
    assert len(a.calls) == 7
    # Another configuration (another engine, another fingerprint) never shares a cache; the keys differ too.
    digest = registry.digest
    exact = _verdict_key("f1", "ns", f"{REPO}@{digest}", digest)
    shared = _verdict_key("f1", "ns", f"{REPO}@{digest}", digest, any_tag=True)
    assert exact != shared  # a digest-pinned key's own entry is never the shared one
    assert (
        len(
            {
                shared,
                _verdict_key("f2", "ns", f"{REPO}@{digest}", digest, any_tag=True),
                _verdict_key("f1", "other", f"{REPO}@{digest}", digest, any_tag=True),
                _verdict_key("f1", "ns", f"reg.test/x@{digest}", digest, any_tag=True),
                _verdict_key("f1", "ns", f"{REPO}@sha256:{'0' * 64}", f"sha256:{'0' * 64}", any_tag=True),
                _verdict_key("f1", "ns", f"{REPO}@{digest}", digest, "identity", any_tag=True),
            }
        )
        == 6
    )


def v1_key(namespace: str, image: str, secret: str) -> str:
    doc = {"image": image, "imagePullSecrets": [secret], "namespace": namespace, "serviceAccount": "default"}
    return json.dumps({**doc, "v": 1}, sort_keys=True, separators=(",", ":"))


def test_a_copy_expires_when_the_entry_it_was_copied_from_does() -> None:
    now = [0.0]
    cache: PackedTTLCache[str] = PackedTTLCache(10, 10, 100_000, clock=lambda: now[0])
    cache.put("shared", b"verdict")
    now[0] = 6.0
    found = cache.get_expiring("shared")
    assert found == (b"verdict", 10.0)
    cache.put("copy", found[0], expires=found[1])
    cache.put("later", b"verdict", expires=100.0)  # never beyond the cache's own TTL
    now[0] = 9.9
    assert cache.get("copy") == b"verdict"
    now[0] = 10.0
    assert cache.get("copy") is None and cache.get_expiring("shared") is None
    assert cache.get("later") == b"verdict"
    now[0] = 16.0
    assert cache.get("later") is None


async def test_a_reused_verdict_is_never_kept_longer_than_the_verification_it_came_from() -> None:
    a = Counting("a", tag_independent=True)
    engine = engine_for([a], [policy("a")])
    now = [1000.0]
    engine._verdicts._clock = lambda: now[0]  # the verdict cache's clock, moved by hand
    ttl = engine.config.cache.verdict_ttl
    await verdict(engine, f"{REPO}:v1")
    now[0] += ttl * 0.75
    await verdict(engine, f"{REPO}:t2")
    assert len(a.calls) == 1
    now[0] += ttl * 0.25  # v1's verdict expires, and so does t2's copy of it
    await verdict(engine, f"{REPO}:t2")
    assert a.calls == [f"{REPO}:v1", f"{REPO}:t2"]
