"""The warm-up's registry: the sample's manifests, blobs and referrers, read-only, over plain HTTP on
127.0.0.1 (a port the OS picks), for as long as the warm-up runs.

It answers the reads the distribution spec defines (`/v2/`, manifests by tag or digest with
`Docker-Content-Digest`, blobs, the referrers API; `HEAD` as `GET` without the body) and 404 with an OCI
error for anything else. The sample is set once the port is known (the sample's signatures name it).
"""

from __future__ import annotations

import re

from aiohttp import web

from provider.warmup.sample import REPOSITORY, Sample
from verifiers import oci
from verifiers.testing.builders import digest_of

__all__ = ["SampleRegistry"]

_PATH = re.compile(rf"/v2/{re.escape(REPOSITORY)}/(manifests|blobs|referrers)/([A-Za-z0-9_.:+-]{{1,160}})")
_NO_REFERRERS = b'{"schemaVersion":2,"mediaType":"' + oci.OCI_INDEX.encode() + b'","manifests":[]}'
_NOT_FOUND = b'{"errors":[{"code":"NOT_FOUND","message":"not in the warm-up registry"}]}'


class SampleRegistry:
    """Serves `sample` (None until set: every read is 404) on 127.0.0.1 between `start` and `stop`."""

    def __init__(self) -> None:
        self.sample: Sample | None = None
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self) -> str:
        """Listen; the registry's `host:port`."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()

    def _find(self, kind: str, reference: str) -> tuple[str, bytes] | None:
        sample = self.sample
        if sample is None:
            return None
        if kind == "manifests":
            return sample.manifests.get(reference)
        if kind == "blobs":
            data = sample.blobs.get(reference)
            return None if data is None else ("application/octet-stream", data)
        if reference.startswith("sha256:"):  # referrers
            return (oci.OCI_INDEX, sample.referrers.get(reference, _NO_REFERRERS))
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405)
        if request.path == "/v2/":
            return web.Response(body=b"{}", content_type="application/json")
        match = _PATH.fullmatch(request.path)
        found = None if match is None else self._find(match.group(1), match.group(2))
        if match is None or found is None:
            return web.Response(status=404, body=_NOT_FOUND, content_type="application/json")
        media_type, data = found
        headers = {"Content-Type": media_type}
        if match.group(1) == "manifests":
            headers["Docker-Content-Digest"] = digest_of(data)
        return web.Response(body=data, headers=headers)
