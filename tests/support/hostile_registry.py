"""A registry that lies, stalls, redirects and bloats on demand: the attacker's side of tests/adversarial.

:class:`HostileRegistry` is an OCI distribution server on 127.0.0.1 (a :class:`BackgroundServer`, so it
outlives one test and serves a Countersign subprocess) that serves the content it is given, exactly, and
whatever a test scripts per repository instead::

    hostile = HostileRegistry().start()
    copy_image(olareg, "apps/signed", image.digest, hostile, "good/app")   # real cosign signatures, copied
    hostile.script("bad/stall", stall())                                    # every request of that repo
    hostile.script("bad/loop", redirect_loop(), kinds={"manifests"})        # only its manifests

Content lives in :class:`Store` (manifests by repository, digest and tag; blobs by digest). The referrers
API lists the stored manifests whose ``subject`` names the digest, plus descriptors a test adds by hand
(:meth:`Store.add_referrer`), which is how a referrer whose manifest is junk gets listed. A repository with
neither referrers nor a ``sha256-<hex>`` tag answers an empty index.

A :class:`Behaviour` (see the canned ones below: :func:`digest_mismatch`, :func:`oversized`,
:func:`trickle`, :func:`stall`, :func:`redirect`, :func:`redirect_loop`, :func:`bearer_challenge`,
:func:`paging_bomb`, :func:`status`, :func:`reset`, :func:`deep_json`) receives a :class:`Hit` and returns a
response, or ``None`` to let the stored content be served. ``/token`` requests are routed to the script of
the repository their ``scope`` names (``kind == "token"``).

Also here: :class:`TcpListener`, a raw TCP port that counts connections (optionally answering a banner,
i.e. an open port that does not speak HTTP), and :class:`RecordingHttp`, an HTTP server that records what
it receives (a token realm that must never see credentials). :func:`deep_json` builds JSON nested N deep
without recursion.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import select
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs

from aiohttp import web

from tests.support.http_servers import BackgroundServer, SeenRequest, ServedInBackground
from tests.support.registries import LOOPBACK, Registry

__all__ = [
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Behaviour",
    "Hit",
    "HostileRegistry",
    "RecordingHttp",
    "Store",
    "TcpListener",
    "bearer_challenge",
    "copy_image",
    "deep_json",
    "digest_mismatch",
    "oversized",
    "paging_bomb",
    "redirect",
    "redirect_loop",
    "reset",
    "sha256",
    "stall",
    "status",
    "trickle",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_ACCEPT_ALL = ", ".join(
    (
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
_PATH_RE = re.compile(r"^/v2/(?P<repo>.+?)/(?P<kind>manifests|blobs|referrers)/(?P<ref>[^/]+)$")
_SCOPE_RE = re.compile(r"^repository:(?P<repo>[^:]+):")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def deep_json(depth: int, *, kind: str = "list") -> bytes:
    """JSON nested ``depth`` deep: ``[[[...]]]`` or ``{"a":{"a":...}}``, built without recursion."""
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@dataclass
class _Manifest:
    media_type: str
    data: bytes


@dataclass
class Store:
    """What the registry holds. Thread-safe enough for its use: tests write before Countersign reads."""

    manifests: dict[str, dict[str, _Manifest]] = field(default_factory=dict)  # repo -> digest -> manifest
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # repo -> tag -> digest
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest -> bytes (one pool for every repo)
    extra_referrers: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def put_blob(self, data: bytes) -> dict[str, Any]:
        """Store ``data``; returns its descriptor fields (``digest``, ``size``)."""
        digest = sha256(data)
        self.blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    def put_manifest(
        self, repo: str, data: bytes, media_type: str = OCI_MANIFEST, *, tag: str | None = None
    ) -> str:
        """Store manifest bytes as they are (valid or not); returns their digest."""
        digest = sha256(data)
        self.manifests.setdefault(repo, {})[digest] = _Manifest(media_type, data)
        if tag is not None:
            self.tags.setdefault(repo, {})[tag] = digest
        return digest

    def put_image(self, repo: str, seed: str, *, tag: str | None = None) -> str:
        """A small OCI image (config + one layer; not a real tarball, nobody unpacks it); its digest."""
        config = self.put_blob(json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode())
        layer = self.put_blob(f"layer of {seed}".encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
        }
        return self.put_manifest(repo, json.dumps(manifest).encode(), tag=tag)

    def add_referrer(self, repo: str, subject: str, descriptor: Mapping[str, Any]) -> None:
        """List ``descriptor`` among the referrers of ``subject``, whatever its manifest holds."""
        self.extra_referrers.setdefault((repo, subject), []).append(dict(descriptor))

    def lookup(self, repo: str, reference: str) -> tuple[str, _Manifest] | None:
        digest = reference if reference.startswith("sha256:") else self.tags.get(repo, {}).get(reference)
        if digest is None:
            return None
        found = self.manifests.get(repo, {}).get(digest)
        return None if found is None else (digest, found)

    def referrers(self, repo: str, subject: str) -> list[dict[str, Any]]:
        """The hand-added descriptors first (junk is listed before what it should not hide), then the
        stored manifests whose subject is ``subject``."""
        out = list(self.extra_referrers.get((repo, subject), []))
        listed = {entry.get("digest") for entry in out}
        for digest, manifest in self.manifests.get(repo, {}).items():
            if digest in listed:
                continue
            try:
                doc = json.loads(manifest.data)
            except (ValueError, RecursionError):
                continue
            if not isinstance(doc, dict):
                continue
            sub = doc.get("subject")
            if not isinstance(sub, dict) or sub.get("digest") != subject:
                continue
            entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": digest}
            entry["size"] = len(manifest.data)
            config = doc.get("config")
            artifact_type = doc.get("artifactType") or (
                config.get("mediaType") if isinstance(config, dict) else None
            )
            if artifact_type:
                entry["artifactType"] = artifact_type
            if isinstance(doc.get("annotations"), dict):
                entry["annotations"] = doc["annotations"]
            out.append(entry)
        return out


@dataclass
class Hit:
    """One request to the hostile registry, as a behaviour sees it."""

    request: web.Request
    registry: HostileRegistry
    repo: str
    kind: str  # "manifests", "blobs", "referrers", "token" or "other"
    reference: str  # the tag or digest ("" for tokens and others)

    async def idle(self, seconds: float) -> bool:
        """Wait ``seconds``; False as soon as the client hung up or the registry is stopping."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            transport = self.request.transport
            if transport is None or transport.is_closing() or self.registry.stopping:
                return False
            await asyncio.sleep(min(0.05, max(end - loop.time(), 0)))
        return True

    async def serve(self) -> web.StreamResponse:
        """What the registry answers when nothing is scripted."""
        return await self.registry.serve_stored(self)


#: Answers a request instead of the stored content (return a response), or lets it through (``None``).
Behaviour = Callable[[Hit], Awaitable[web.StreamResponse | None]]


class HostileRegistry(ServedInBackground):
    """A scriptable OCI registry on 127.0.0.1 (plain HTTP, or HTTPS with ``ssl_context``)."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, name: str = "hostile-registry") -> None:
        self.store = Store()
        self.requests: list[SeenRequest] = []
        self._scripts: dict[str, tuple[Behaviour, frozenset[str] | None]] = {}
        self._lock = threading.Lock()
        self.stopping = False
        self._server = BackgroundServer(self._app, name=name, ssl_context=ssl_context)

    # --- lifecycle ---------------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def start(self) -> Self:
        self.stopping = False
        return super().start()

    def stop(self) -> None:
        self.stopping = True  # stalled handlers return, so the server's cleanup does not wait for them
        super().stop()

    # --- scripting ---------------------------------------------------------------------------------------

    def script(self, repo: str, behaviour: Behaviour, *, kinds: Iterable[str] | None = None) -> None:
        """Answer the requests for ``repo`` (of ``kinds`` only, if given) with ``behaviour``."""
        with self._lock:
            self._scripts[repo] = (behaviour, frozenset(kinds) if kinds is not None else None)

    def seen(self, repo: str) -> list[SeenRequest]:
        """Requests received for ``repo`` (token requests naming it included)."""
        with self._lock:
            return [
                r for r in self.requests if f"/v2/{repo}/" in r.path or f"repository:{repo}:" in r.path_qs
            ]

    # --- serving -----------------------------------------------------------------------------------------

    def _classify(self, request: web.Request) -> tuple[str, str, str]:
        if request.path == "/token":
            scopes = parse_qs(request.query_string).get("scope", [])
            for scope in scopes:
                match = _SCOPE_RE.match(scope)
                if match:
                    return match.group("repo"), "token", ""
            return "", "token", ""
        match = _PATH_RE.match(request.path)
        if match:
            return match.group("repo"), match.group("kind"), match.group("ref")
        return "", "other", ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.requests.append(SeenRequest.of(request))
        repo, kind, reference = self._classify(request)
        hit = Hit(request, self, repo, kind, reference)
        with self._lock:
            scripted = self._scripts.get(repo)
        if scripted is not None:
            behaviour, kinds = scripted
            if kinds is None or kind in kinds:
                answer = await behaviour(hit)
                if answer is not None:
                    return answer
        return await self.serve_stored(hit)

    async def serve_stored(self, hit: Hit) -> web.StreamResponse:
        store = self.store
        if hit.kind == "other":
            if hit.request.path in ("/v2", "/v2/"):
                return web.json_response({})
            return _error(404, "NAME_UNKNOWN", "unknown path")
        if hit.kind == "token":
            return web.json_response({"token": "hostile-token", "expires_in": 300})
        if hit.kind == "blobs":
            blob = store.blobs.get(hit.reference)
            if blob is None:
                return _error(404, "BLOB_UNKNOWN", "blob unknown")
            return web.Response(
                body=blob,
                content_type="application/octet-stream",
                headers={"Docker-Content-Digest": hit.reference},
            )
        if hit.kind == "referrers":
            index = {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": store.referrers(hit.repo, hit.reference),
            }
            return web.Response(body=json.dumps(index).encode(), content_type=OCI_INDEX)
        found = store.lookup(hit.repo, hit.reference)
        if found is None:
            return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        digest, manifest = found
        return web.Response(
            body=manifest.data,
            headers={"Content-Type": manifest.media_type, "Docker-Content-Digest": digest},
        )


def _error(status_code: int, code: str, message: str) -> web.Response:
    body = {"errors": [{"code": code, "message": message}]}
    return web.json_response(body, status=status_code)


# --- canned behaviours --------------------------------------------------------------------------------------


def digest_mismatch() -> Behaviour:
    """Manifests: the stored bytes with one more space, under the stored digest (tampered in transit)."""

    async def behave(hit: Hit) -> web.StreamResponse | None:
        found = hit.registry.store.lookup(hit.repo, hit.reference)
        if found is None:
            return None
        digest, manifest = found
        return web.Response(
            body=manifest.data + b" ",
            headers={"Content-Type": manifest.media_type, "Docker-Content-Digest": digest},
        )

    return behave


def oversized(size: int, *, content_length: bool, media_type: str = OCI_MANIFEST) -> Behaviour:
    """A body of ``size`` bytes (a JSON string's worth of ``a``), with or without a Content-Length."""

    async def behave(hit: Hit) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": media_type})
        if content_length:
            response.content_length = size
        else:
            response.enable_chunked_encoding()
        await response.prepare(hit.request)
        chunk = b"a" * 65536
        sent = 0
        try:
            while sent < size:
                piece = chunk[: size - sent]
                await response.write(piece)
                sent += len(piece)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return response

    return behave


def trickle(interval: float, *, total: int = 4096, media_type: str = OCI_MANIFEST) -> Behaviour:
    """Headers at once (Content-Length ``total``), then the body one byte every ``interval`` seconds."""

    async def behave(hit: Hit) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": media_type})
        response.content_length = total
        await response.prepare(hit.request)
        try:
            for _ in range(total):
                await response.write(b" ")
                if not await hit.idle(interval):
                    break
        except (ConnectionError, RuntimeError):
            pass
        return response

    return behave


def stall(*, after_headers: bool = False) -> Behaviour:
    """Accept the request and never answer (or send the headers and never the body)."""

    async def behave(hit: Hit) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": OCI_MANIFEST})
        if after_headers:
            response.content_length = 1024
            await response.prepare(hit.request)
        await hit.idle(3600)
        return response

    return behave


def redirect(location: str | Callable[[Hit], str], *, code: int = 307) -> Behaviour:
    """Answer every request with a redirect to ``location`` (a URL, or a function of the request)."""

    async def behave(hit: Hit) -> web.StreamResponse:
        target = location(hit) if callable(location) else location
        return web.Response(status=code, headers={"Location": target})

    return behave


def redirect_loop() -> Behaviour:
    """Redirect every request to itself, forever."""
    return redirect(lambda hit: hit.request.path_qs, code=302)


def bearer_challenge(realm: str | Callable[[Hit], str], *, then: Behaviour | None = None) -> Behaviour:
    """401 with a Bearer challenge naming ``realm`` until a request carries a Bearer token; then ``then``
    (default: the stored content). Token requests for the repository are served by ``then`` too."""

    async def behave(hit: Hit) -> web.StreamResponse | None:
        if hit.kind != "token" and not hit.request.headers.get("Authorization", "").startswith("Bearer "):
            target = realm(hit) if callable(realm) else realm
            challenge = f'Bearer realm="{target}",service="hostile",scope="repository:{hit.repo}:pull"'
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        return None if then is None else await then(hit)

    return behave


def paging_bomb() -> Behaviour:
    """The referrers API: an empty page with a ``Link: next`` to one more page, forever."""

    async def behave(hit: Hit) -> web.StreamResponse | None:
        if hit.kind != "referrers":
            return None
        page = int(hit.request.query.get("page", "0")) + 1
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        path = f"{hit.request.path}?page={page}"
        return web.Response(
            body=json.dumps(index).encode(),
            content_type=OCI_INDEX,
            headers={"Link": f'<{path}>; rel="next"'},
        )

    return behave


def status(code: int, headers: Mapping[str, str] | None = None) -> Behaviour:
    """Answer every request with HTTP ``code`` (e.g. 429 with a long Retry-After, 503)."""

    async def behave(hit: Hit) -> web.StreamResponse:
        return web.json_response(
            {"errors": [{"code": "UNAVAILABLE", "message": f"hostile {code}"}]},
            status=code,
            headers=dict(headers or {}),
        )

    return behave


def reset() -> Behaviour:
    """Drop the connection (RST) without answering."""

    async def behave(hit: Hit) -> web.StreamResponse:
        transport = hit.request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # linger 0: close() sends a RST instead of a FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            transport.abort()
        raise asyncio.CancelledError  # nothing more to say on a dead connection

    return behave


def serve_bytes(data: bytes, media_type: str = OCI_MANIFEST) -> Behaviour:
    """Serve ``data`` for every manifest request (no Docker-Content-Digest), whatever is stored."""

    async def behave(hit: Hit) -> web.StreamResponse:
        return web.Response(body=data, headers={"Content-Type": media_type})

    return behave


# --- copying real content in --------------------------------------------------------------------------------


def _get(url: str, accept: str = _ACCEPT_ALL) -> tuple[int, bytes, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status), response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), ""


def _copy_manifest(source: Registry, repo: str, reference: str, target: HostileRegistry, to_repo: str) -> str:
    code, data, content_type = _get(f"{source.url}/v2/{repo}/manifests/{reference}")
    if code != 200:
        raise RuntimeError(f"{source.host}/{repo}:{reference}: HTTP {code}")
    doc = json.loads(data)
    media_type = content_type.split(";")[0].strip() or doc.get("mediaType") or OCI_MANIFEST
    descriptors = [doc["config"]] if isinstance(doc.get("config"), dict) else []
    descriptors += [layer for layer in doc.get("layers", []) if isinstance(layer, dict)]
    for descriptor in descriptors:
        digest = descriptor["digest"]
        if digest in target.store.blobs:
            continue
        code, blob, _ = _get(f"{source.url}/v2/{repo}/blobs/{digest}", "*/*")
        if code != 200 or sha256(blob) != digest:
            raise RuntimeError(f"{source.host}/{repo} blob {digest}: HTTP {code}")
        target.store.blobs[digest] = blob
    for child in doc.get("manifests", []) if media_type == OCI_INDEX else []:
        _copy_manifest(source, repo, child["digest"], target, to_repo)
    tag = None if reference.startswith("sha256:") else reference
    return target.store.put_manifest(to_repo, data, media_type, tag=tag)


def copy_image(source: Registry, repo: str, digest: str, target: HostileRegistry, to_repo: str) -> None:
    """Copy ``repo@digest`` from a real registry into ``target`` as ``to_repo``, byte for byte, with its
    referrers (API) and cosign's ``sha256-<hex>.sig``/``.att`` tags, so real signatures verify there."""
    _copy_manifest(source, repo, digest, target, to_repo)
    code, data, _ = _get(f"{source.url}/v2/{repo}/referrers/{digest}", OCI_INDEX)
    if code == 200:
        for entry in json.loads(data).get("manifests") or []:
            _copy_manifest(source, repo, entry["digest"], target, to_repo)
    hex_part = digest.split(":", 1)[1]
    for suffix in (".sig", ".att"):
        tag = f"sha256-{hex_part}{suffix}"
        code, _, _ = _get(f"{source.url}/v2/{repo}/manifests/{tag}")
        if code == 200:
            _copy_manifest(source, repo, tag, target, to_repo)


# --- listeners that must not be contacted -------------------------------------------------------------------


class TcpListener:
    """A TCP port on 127.0.0.1 that accepts, records and closes connections, sending ``banner`` first
    if given (an open port that does not speak HTTP, e.g. ``SSH-2.0-...``)."""

    def __init__(self, banner: bytes | None = None) -> None:
        self.banner = banner
        self.connections = 0
        self.received: list[bytes] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOOPBACK, 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"tcp-listener-{self.port}", daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.1)
            if not ready:
                continue
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(0.5)
                try:
                    if self.banner is not None:
                        conn.sendall(self.banner)
                    self.received.append(conn.recv(4096))
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


class RecordingHttp(ServedInBackground):
    """An HTTP server on 127.0.0.1 that records every request and answers a token (a token realm)."""

    def __init__(self) -> None:
        self.requests: list[SeenRequest] = []
        self._server = BackgroundServer(self._app, name="recording-http")

    def _app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.requests.append(SeenRequest.of(request))
            return web.json_response({"token": "realm-token", "expires_in": 300})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
