"""A registry of generated manifests on 127.0.0.1, for memory tests and the memory benchmark.

Pushing 100,000 images, or hundreds of 4 MB manifests, to a real registry takes longer than the test that
needs them; this server makes each manifest from its repository name instead, so it holds nothing:

- ``mem/small-<i>``: a small, valid OCI image manifest (a config and two layers, about 600 bytes), distinct
  for every ``i``;
- ``mem/fat-<i>``: a valid OCI image manifest of about ``fat_bytes`` (3.9 MB by default, under the 4 MiB
  manifest limit), distinct for every ``i``. ``fat_shape`` says what fills it: ``layers`` (layer descriptors,
  as a real manifest grows) or ``annotations`` (many short annotations: what costs most to parse).

A manifest is served by digest (``/v2/<repo>/manifests/sha256:...``, checked against what the repository
name generates) or by the tag ``latest``; everything else (referrers, other tags, blobs) is 404, so a
verifier that looks for signatures or SBOMs finds none. ``manifest_requests`` counts the manifests served.

:meth:`SyntheticRegistry.served` serves it on 127.0.0.1 in the running event loop; :func:`provider_config`
is a Countersign configuration whose policy covers it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.http_servers import served

__all__ = ["OCI_MANIFEST", "SyntheticRegistry", "fat_manifest", "provider_config", "small_manifest"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
_CONFIG = "application/vnd.oci.image.config.v1+json"
_PATH_RE = re.compile(r"/v2/mem/(small|fat)-(\d+)/manifests/([A-Za-z0-9_.:+-]+)")


def _fake_digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def small_manifest(index: int) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": _CONFIG, "digest": _fake_digest(f"config-{index}"), "size": 1469},
        "layers": [
            {"mediaType": _LAYER, "digest": _fake_digest(f"layer-{index}-{n}"), "size": 3_000_000 + n}
            for n in range(2)
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class _FatTemplate:
    prefix: bytes
    suffix: bytes


_templates: dict[tuple[str, int], _FatTemplate] = {}


def _fat_template(shape: str, size: int) -> _FatTemplate:
    """Everything but the index: built once per shape and size (the body is the same for every index)."""
    key = (shape, size)
    cached = _templates.get(key)
    if cached is not None:
        return cached
    head = (
        f'{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",'
        f'"config":{{"mediaType":"{_CONFIG}","digest":"{_fake_digest("config")}","size":2}},'
    ).encode()
    if shape == "layers":
        one = json.dumps(
            {"mediaType": _LAYER, "digest": _fake_digest("layer"), "size": 1234567},
            separators=(",", ":"),
        ).encode()
        count = (size - len(head) - 200) // (len(one) + 1)
        body = b'"layers":[' + b",".join([one] * count) + b'],"annotations":{"index":"'
        template = _FatTemplate(head + body, b'"}}')
    elif shape == "annotations":
        # ~1.3 short strings per 5 bytes: the JSON that costs most memory per byte once parsed.
        count = (size - len(head) - 300) // 14
        pairs = b",".join(b'"k%07d":"v"' % n for n in range(count))
        template = _FatTemplate(head + b'"layers":[],"annotations":{' + pairs + b',"index":"', b'"}}')
    else:
        raise ValueError(f"unknown fat manifest shape {shape!r}")
    _templates[key] = template
    return template


def fat_manifest(index: int, shape: str = "layers", size: int = 3_900_000) -> bytes:
    template = _fat_template(shape, size)
    return template.prefix + str(index).encode() + template.suffix


@dataclass
class SyntheticRegistry:
    fat_shape: str = "layers"
    fat_bytes: int = 3_900_000
    manifest_requests: int = 0
    _digests: dict[tuple[str, int], str] = field(default_factory=dict)

    def manifest(self, kind: str, index: int) -> bytes:
        if kind == "small":
            return small_manifest(index)
        return fat_manifest(index, self.fat_shape, self.fat_bytes)

    def digest(self, kind: str, index: int) -> str:
        key = (kind, index)
        found = self._digests.get(key)
        if found is None:
            found = "sha256:" + hashlib.sha256(self.manifest(kind, index)).hexdigest()
            if kind == "fat":  # hashing 4 MB again for every request would dominate the server's time
                self._digests[key] = found
        return found

    def reference(self, host: str, kind: str, index: int) -> str:
        """``host/mem/<kind>-<index>@<digest>``: a key naming that manifest by digest."""
        return f"{host}/mem/{kind}-{index}@{self.digest(kind, index)}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/", self._base)
        app.router.add_route("*", "/{tail:.*}", self._any)
        return app

    @asynccontextmanager
    async def served(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 (a port the OS picks) in the running loop; yields ``host:port``."""
        async with served(self.app()) as host:
            yield host

    async def _base(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _any(self, request: web.Request) -> web.StreamResponse:
        match = _PATH_RE.fullmatch(request.path)
        if match is None or request.method not in ("GET", "HEAD"):
            return web.Response(status=404)
        kind, index, reference = match.group(1), int(match.group(2)), match.group(3)
        digest = self.digest(kind, index)
        if reference not in ("latest", digest):
            return web.Response(status=404)
        data = self.manifest(kind, index)
        self.manifest_requests += 1
        headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        return web.Response(body=data, headers=headers)


def provider_config(host: str, verifiers: Sequence[str], cache: Mapping[str, Any]) -> dict[str, Any]:
    """A Countersign configuration (a document, before parsing) with one policy for every key, of
    ``verifiers`` (``pinned``: digest-pin, ``sbom``), ``host`` reached over plain HTTP, and ``cache``."""
    available = {"pinned": {"type": "digest-pin"}, "sbom": {"type": "sbom"}}
    return {
        "registries": {host: {"insecure": True}},
        "verifiers": {name: available[name] for name in verifiers},
        "policies": [{"name": "all", "scopes": ["*"], "allOf": list(verifiers)}],
        "cache": dict(cache),
    }
