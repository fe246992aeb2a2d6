"""The fat-manifest attack: many keys naming distinct, valid manifests just under
``limits.maxManifestBytes``. The server's peak RSS must stay under the chart's budget whatever the number
of keys, and it must stay healthy."""

from __future__ import annotations

import json
import threading

from aiohttp import web

from tests.adversarial.harness import SLACK, Answer, Countersign
from tests.support.hostile_registry import OCI_MANIFEST, Behaviour, Hit, HostileRegistry, sha256

KEYS = 64
MANIFEST_BYTES = 3_900_000
PEAK_LIMIT_MIB = 256
#: Past this the server is stopped at once: the machine is shared, a runaway server must not take it down.
ABORT_MIB = 1024


def fat_manifest(tag: str, size: int = MANIFEST_BYTES) -> bytes:
    """A valid OCI image manifest of about ``size`` bytes (tens of thousands of layers), distinct per tag."""
    head = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(tag.encode()),
                "size": len(tag),
            },
            "annotations": {"tag": tag},
        }
    )[:-1].encode()
    seed = sha256(tag.encode())[7:15]
    layer = '{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s%056x","size":%d}'
    layers: list[str] = []
    total = len(head)
    i = 0
    while total < size - 200:
        entry = layer % (seed, i, 1000 + i)
        layers.append(entry)
        total += len(entry) + 1
        i += 1
    return head + b',"layers":[' + ",".join(layers).encode() + b"]}"


def fat_manifests() -> Behaviour:
    async def behave(hit: Hit) -> web.StreamResponse | None:
        if hit.kind != "manifests" or not hit.reference.isdigit():
            return None  # signature tags and referrers: the registry's (empty) answers
        data = fat_manifest(hit.reference)
        return web.Response(
            body=data, headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256(data)}
        )

    return behave


class _Watch:
    """Polls the server's RSS every 20 ms; stops the server if it runs away (past ABORT_MIB)."""

    def __init__(self, server: Countersign) -> None:
        self.server = server
        self.peak = 0.0
        self.aborted = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                rss, hwm = self.server.memory()
            except (AssertionError, OSError, KeyError):
                return
            self.peak = max(self.peak, rss, hwm)
            if self.peak > ABORT_MIB:
                self.aborted = True
                assert self.server.daemon is not None
                self.server.daemon.stop()
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def test_fat_manifests_keep_peak_rss_bounded(narrow: Countersign, hostile: HostileRegistry) -> None:
    repo = "fat/app"
    hostile.script(repo, fat_manifests(), kinds={"manifests"})
    keys = [f"{hostile.host}/{repo}:{i}" for i in range(KEYS)]
    _, baseline = narrow.memory()
    watch = _Watch(narrow)
    answers: list[Answer] = []
    try:
        answers.append(narrow.verify(*keys))
        first = answers[0]
        assert first.status == 200, first.describe()
        assert first.elapsed <= narrow.verify_deadline + SLACK, f"answered after {first.elapsed:.2f}s"
        # Again, until every key is decided (background verifications fill the verdict cache), or 5 rounds.
        for _ in range(5):
            if all(answers[-1].classify(key) == "decided" for key in keys):
                break
            answers.append(narrow.verify(*keys))
    finally:
        peak = watch.stop()
    assert not watch.aborted, f"stopped the server at {peak:.0f} MiB RSS (baseline {baseline:.0f} MiB)"
    for answer in answers:
        for key in keys:
            item = answer.item(key)
            if item is not None and "value" in item:
                assert item["value"]["allowed"] is False, answer.describe()
    assert peak < PEAK_LIMIT_MIB, (
        f"peak RSS {peak:.0f} MiB for {KEYS} fat manifests (baseline {baseline:.0f})"
    )
    narrow.assert_healthy()
