"""Keys the caches answer are answered on the spot, exactly as the full path would answer them.

`Engine._answer_from_caches` serves a key whose tag digest, manifest and verdict are all cached (and a key
its name alone denies) without a task, a deadline or a memory account. Its answer and the metrics it
counts must be those of `_verify_image`; anything not fully cached takes the full path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provider.config import Config, Policy
from provider.engine import Engine
from provider.metrics import Metrics
from provider.outcome import Decided, Outcome
from provider.registry.cached import CachedRegistry
from provider.registry.content import Manifest
from verifiers.base import Context, Report, Subject
from verifiers.oci import Descriptor
from verifiers.reference import ImageReference
from verifiers.testing import InMemoryRegistry

REPO = "reg.test/app"


class Client:
    """The registry client's reads over the kit's in-memory registry, counted."""

    def __init__(self) -> None:
        self.content = InMemoryRegistry()
        self.digest = self.content.push_image(f"{REPO}:v1").digest
        self.content.tag(f"{REPO}:v2", self.digest)
        self.reads: list[str] = []

    async def get_manifest(self, ref: ImageReference, reference: str) -> Manifest:
        self.reads.append(reference)
        if reference.startswith("sha256:"):
            digest = reference
        else:
            digest = (await self.content.resolve(ref)).digest
        data, media_type = await self.content.manifest(ref, digest)
        return Manifest(digest=digest, media_type=media_type, data=data)

    async def get_blob(self, ref: ImageReference, descriptor: Descriptor, max_bytes: int) -> bytes:
        raise AssertionError("no verifier here reads a blob")

    async def list_referrers(self, ref: ImageReference, digest: str) -> list[Descriptor]:
        return []

    async def close(self) -> None:
        pass


class Counting:
    type = "counting"

    def __init__(self, name: str, passes: bool) -> None:
        self.name = name
        self.passes = passes
        self.calls = 0

    async def verify(self, subject: Subject, context: Context) -> Report:
        self.calls += 1
        if self.passes:
            return Report.ok("counted", f"{subject.reference} counted", digest=subject.digest)
        return Report.fail("refused", f"{subject.reference} refused", digest=subject.digest)


def engine_for(passes: bool, policies: Sequence[Policy] = ()) -> tuple[Engine, Client, Counting]:
    client = Client()
    metrics = Metrics()
    registry = CachedRegistry(client, content_bytes=1 << 20, tag_ttl=60.0, metrics=metrics)  # type: ignore[arg-type]
    verifier = Counting("count", passes)
    policy = Policy("p", (f"{REPO}",), None, "allOf", ("count",), 1)
    config = Config(policies=(policy, *policies), fingerprint="t")
    return Engine(config, registry, {"count": verifier}, metrics=metrics), client, verifier


def counts(engine: Engine) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in engine.metrics.registry.collect():
        if family.name == "countersign_cache_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["cache"], sample.labels["result"]] = sample.value
    return out


async def verify(engine: Engine, keys: Sequence[str]) -> dict[str, Outcome]:
    return await engine.verify(list(keys), 5.0)


def no_full_path(engine: Engine) -> None:
    async def refuse(*args: Any) -> Outcome:
        raise AssertionError("took the full path")

    engine._bounded = refuse  # type: ignore[method-assign,assignment]


async def test_a_cached_verdict_is_answered_on_the_spot_and_counted_as_the_full_path_counts() -> None:
    for passes in (True, False):
        engine, client, verifier = engine_for(passes)
        keys = [f"{REPO}:v1", f"[team-a]{REPO}:v1", f"{REPO}@{client.digest}"]
        first = await verify(engine, keys)
        assert verifier.calls == 3 and set(client.reads) == {"v1", client.digest}
        reads = list(client.reads)
        before = counts(engine)
        # The same keys again through the full path (the fast path switched off): what it answers and counts.
        engine.registry.cached_digest = lambda ref: None  # type: ignore[method-assign]
        full = await verify(engine, keys)
        full_counts = {k: v - before.get(k, 0.0) for k, v in counts(engine).items()}
        del engine.registry.cached_digest  # the class's own again
        before = counts(engine)
        no_full_path(engine)
        fast = await verify(engine, keys)
        fast_counts = {k: v - before.get(k, 0.0) for k, v in counts(engine).items()}
        assert verifier.calls == 3 and client.reads == reads  # nothing verified or read again
        for key in keys:
            assert isinstance(fast[key], Decided) and isinstance(full[key], Decided)
            assert fast[key].encoded == full[key].encoded == first[key].encoded  # type: ignore[union-attr]
            assert fast[key].allowed is passes  # type: ignore[union-attr]
        assert fast_counts == full_counts
        assert fast_counts[("verdict", "hit")] == 3 and fast_counts[("tag", "hit")] == 2


async def test_denials_decided_by_the_name_alone_need_no_cache() -> None:
    unavailable = Policy("broken", ("reg.test/broken",), None, "allOf", ("count",), 1, unavailable="x")
    engine, client, verifier = engine_for(True, [unavailable])
    no_full_path(engine)
    out = await verify(engine, ["other.test/app:v1", "reg.test/broken:v1"])
    assert out["other.test/app:v1"].value["reason"] == "no_policy"  # type: ignore[union-attr]
    assert out["reg.test/broken:v1"].value["reason"] == "policy_unavailable"  # type: ignore[union-attr]
    assert verifier.calls == 0 and client.reads == []


async def test_anything_not_fully_cached_takes_the_full_path() -> None:
    engine, client, verifier = engine_for(True)
    await verify(engine, [f"{REPO}:v1"])
    # A new tag: its digest is not cached (read, then verified: the verifier declares no tag independence).
    await verify(engine, [f"{REPO}:v2"])
    assert client.reads == ["v1", "v2"] and verifier.calls == 2
    # The verdict gone (the tag and manifest still cached): verified again, counted as a verdict miss.
    engine._verdicts._data.clear()
    before = counts(engine)
    await verify(engine, [f"{REPO}:v1"])
    assert verifier.calls == 3 and client.reads == ["v1", "v2"]
    assert counts(engine)[("verdict", "miss")] == before.get(("verdict", "miss"), 0.0) + 1
