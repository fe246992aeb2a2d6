"""The registry client against real registries: auth, tokens, redirects, retries, limits, integrity, TLS.

Real processes wherever a real registry can be made to do it:

* distribution 2.8 with ``auth: htpasswd`` (Basic) and, over TLS, with ``auth: token`` trusting the HTTPS
  token service of ``tests/support/token_issuer.py`` (ES256 JWTs with ``x5c``; the registry and its token
  service share one CA, as a private registry and its auth service usually do), content pushed by oras
  with credentials;
* distribution with its ``redirect`` storage middleware, which answers blob GETs with a 307 to another
  origin (a "CDN": a small HTTPS server that serves the blob files from the registry's storage directory);
* olareg with ``--rate-limit 1``, which answers real 429s with ``Retry-After: 1``.

What no real registry does on demand (a given ``Retry-After``, a 503, tampered bytes, a paginated referrers
list, endless redirects) comes from a recording reverse proxy (``tests.support.http_servers.Front``) in front
of a real registry. Everything listens on 127.0.0.1.

The token service and the CDN listen on other loopback ports than the registry: the egress policy refuses
loopback addresses other than a configured registry's own host:port, so the clients that must reach them
allow 127.0.0.0/8 (``LOOPBACK_ALLOWED``), as the test bed's configuration does.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp
import pytest
import trustme
from aiohttp import web

from provider.registry.auth import Credentials, CredentialStore
from provider.registry.client import DEADLINE, RegistryClient
from provider.registry.egress import EgressPolicy
from provider.registry.settings import Limits, RegistrySettings
from tests.support.auth_registries import (
    ConfiguredDistribution,
    RateLimitedOlareg,
    htpasswd_entry,
    redirect_middleware,
    start_configured_distribution,
    write_docker_config,
)
from tests.support.http_servers import BackgroundServer, Front, Intercept, SeenRequest
from tests.support.images import OCI_INDEX, PushedImage, SbomFormat, attach_sbom, push_image
from tests.support.registries import Registry, TlsFiles
from tests.support.token_issuer import TokenIssuer, decode_jwt
from tests.support.tools import require_tool
from verifiers.base import Descriptor
from verifiers.errors import (
    AuthenticationFailed,
    IntegrityError,
    InvalidContent,
    RateLimited,
    TooLarge,
    Unavailable,
)
from verifiers.reference import ImageReference, parse_reference

pytestmark = pytest.mark.integration

PUSHER = ("pusher", "push-secret")
READER = ("reader", "read-secret")
ALICE = ("alice", "alice-secret")

Call = tuple[str, str, str]  # (registry, method, status or error) as the client's observer sees it

#: The service's default egress policy plus every loopback address: the token service and the CDN listen on
#: other loopback ports than the registry (a configured registry is exempt only at its own host:port).
LOOPBACK_ALLOWED = EgressPolicy(allow_addresses=(ipaddress.ip_network("127.0.0.0/8"),))


# --- helpers -------------------------------------------------------------------------------------------


@contextmanager
def deadline_in(seconds: float) -> Iterator[None]:
    """Set the client's DEADLINE context variable to ``seconds`` from now for the block."""
    token = DEADLINE.set(asyncio.get_running_loop().time() + seconds)
    try:
        yield
    finally:
        DEADLINE.reset(token)


def statuses(calls: list[Call], method: str = "GET") -> list[str]:
    return [status for _, m, status in calls if m == method]


def token_calls(calls: list[Call]) -> list[str]:
    return [status for _, m, status in calls if m.startswith("TOKEN")]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_and_config(image: PushedImage) -> tuple[Descriptor, Descriptor]:
    doc = json.loads(image.manifest)
    layer, config = doc["layers"][0], doc["config"]
    return (
        Descriptor(media_type=layer["mediaType"], digest=layer["digest"], size=layer["size"]),
        Descriptor(media_type=config["mediaType"], digest=config["digest"], size=config["size"]),
    )


def ref_at(image: PushedImage, host: str | None = None, *, tag: bool = True) -> ImageReference:
    """The image's reference (by tag, else by digest), on ``host`` instead of its registry if given."""
    host = host or image.registry_host
    name = f"{host}/{image.repository}"
    return parse_reference(f"{name}:{image.tag}" if tag and image.tag else f"{name}@{image.digest}")


class ClientFactory(Protocol):
    def __call__(
        self,
        settings: Mapping[str, RegistrySettings] | None = None,
        *,
        store: CredentialStore | None = None,
        limits: Limits | None = None,
        calls: list[Call] | None = None,
        egress: EgressPolicy | None = None,
    ) -> RegistryClient: ...


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """``make_client(settings, store=, limits=, calls=, egress=)``: a RegistryClient closed at teardown.

    ``egress`` defaults to the service's default policy (configured registries exempt at their host:port).
    """
    clients: list[RegistryClient] = []

    def factory(
        settings: Mapping[str, RegistrySettings] | None = None,
        *,
        store: CredentialStore | None = None,
        limits: Limits | None = None,
        calls: list[Call] | None = None,
        egress: EgressPolicy | None = None,
    ) -> RegistryClient:
        observe = None if calls is None else (lambda r, m, s: calls.append((r, m, s)))
        client = RegistryClient(
            settings=settings, credentials=store, limits=limits, observe=observe, egress=egress
        )
        clients.append(client)
        return client

    try:
        yield factory
    finally:
        for client in clients:
            await client.close()


def plain(host: str, credentials: tuple[str, str] | None = None) -> dict[str, RegistrySettings]:
    creds = Credentials(*credentials) if credentials else None
    return {host: RegistrySettings(insecure=True, credentials=creds)}


def tls(registry: Registry, credentials: tuple[str, str] | None = None) -> dict[str, RegistrySettings]:
    """Settings for a TLS registry of the module: its CA (which its token service and CDN share)."""
    creds = Credentials(*credentials) if credentials else None
    return {registry.host: RegistrySettings(ca_file=registry.ca_file, credentials=creds)}


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A server-side TLS context with the test bed's certificate (127.0.0.1 and localhost)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)
    return context


@dataclass
class PushedContent:
    image: PushedImage
    sbom: str  # digest of an SBOM referrer of image
    other: PushedImage  # an image in another repository


def push_content(registry: Registry, repo: str) -> PushedContent:
    image = push_image(registry, repo, "v1")
    sbom = attach_sbom(registry, image)
    other = push_image(registry, f"{repo}-other", "v1")
    return PushedContent(image, sbom, other)


# --- the "CDN" blobs are redirected to --------------------------------------------------------------------

_CDN_SESSION = web.AppKey("cdn_session", aiohttp.ClientSession)


@dataclass
class BlobCdn:
    """Serves distribution's blob files (``/docker/registry/v2/...``) from ``data_dir``, recording requests.

    ``upstream`` set: ``/v2/...`` is proxied there, so that a registry whose redirect ``baseurl`` is this
    server redirects to the client's own origin when the client talks to the registry through it.
    """

    data_dir: Path | None = None
    upstream: str | None = None
    tamper: bool = False
    seen: list[SeenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.server = BackgroundServer(self._app, name="blob-cdn")

    def blob_requests(self) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.seen if r.path.startswith("/docker/")]

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.seen.append(SeenRequest.of(request))
        assert self.data_dir is not None
        path = (self.data_dir / request.path.lstrip("/")).resolve()
        if not path.is_relative_to(self.data_dir.resolve()) or not path.is_file():
            raise web.HTTPNotFound()
        data = path.read_bytes()
        if self.tamper:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return web.Response(body=data, content_type="application/octet-stream")

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.seen.append(SeenRequest.of(request))
        assert self.upstream is not None
        session: aiohttp.ClientSession = request.app[_CDN_SESSION]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with session.request(
            request.method, self.upstream + request.path_qs, headers=headers, allow_redirects=False
        ) as resp:
            body = await resp.read()
            out = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding")
            }
            return web.Response(status=resp.status, body=body, headers=out)

    def _app(self) -> web.Application:
        async def session_ctx(app: web.Application) -> AsyncIterator[None]:
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                app[_CDN_SESSION] = session
                yield

        app = web.Application()
        app.cleanup_ctx.append(session_ctx)
        app.router.add_get("/docker/{tail:.*}", self._blob)
        app.router.add_route("*", "/v2/{tail:.*}", self._proxy)
        return app


# --- module fixtures: real registries with auth ---------------------------------------------------------


@pytest.fixture(scope="module")
def _tools() -> None:
    require_tool("docker-registry")
    require_tool("oras")


@pytest.fixture(scope="module")
def _issuer(_tools: None, tls_files: TlsFiles) -> Iterator[TokenIssuer]:
    """The module's HTTPS token service (credentials go to a token realm only over HTTPS)."""
    with TokenIssuer(users=dict([PUSHER, READER]), ssl_context=server_context(tls_files)) as issuer:
        yield issuer


@pytest.fixture
def issuer(_issuer: TokenIssuer) -> Iterator[TokenIssuer]:
    """The module's token service, running, with default behaviour and no recorded requests."""
    _issuer.start()
    _issuer.clear()
    yield _issuer
    _issuer.expires_in, _issuer.refuse, _issuer.fail_status, _issuer.anonymous_actions = 300, False, None, ()


@pytest.fixture(scope="module")
def root_bundle(_issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _issuer.write_root_bundle(tmp_path_factory.mktemp("token-root") / "root.pem")


@pytest.fixture(scope="module")
def token_registry(
    _issuer: TokenIssuer, root_bundle: Path, tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConfiguredDistribution]:
    """distribution over TLS with ``auth: token`` trusting ``issuer``; ``pusher`` pushes, ``reader`` pulls."""
    registry = start_configured_distribution(
        tmp_path_factory.mktemp("token-registry"),
        auth=_issuer.distribution_auth(root_bundle),
        credentials=PUSHER,
        tls=tls_files,
    )
    with registry:
        yield registry


@pytest.fixture(scope="module")
def token_content(token_registry: ConfiguredDistribution) -> PushedContent:
    return push_content(token_registry, "t/tokens")


@pytest.fixture(scope="module")
def basic_registry(
    _tools: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConfiguredDistribution]:
    """distribution with ``auth: htpasswd`` (Basic) and one user, ``alice``."""
    workdir = tmp_path_factory.mktemp("basic-registry")
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(htpasswd_entry(*ALICE) + "\n")
    registry = start_configured_distribution(
        workdir, auth={"htpasswd": {"realm": "countersign-test", "path": str(htpasswd)}}, credentials=ALICE
    )
    with registry:
        yield registry


@pytest.fixture(scope="module")
def basic_content(basic_registry: ConfiguredDistribution) -> PushedContent:
    return push_content(basic_registry, "t/basic")


@dataclass
class RedirectSetup:
    registry: ConfiguredDistribution
    cdn: BlobCdn
    content: PushedContent
    issuer: TokenIssuer | None = None


@pytest.fixture(scope="module")
def _redirect_setup(_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedirectSetup]:
    # Plain HTTP throughout, the token service on another port granting anonymous pulls: what these
    # tests follow is the registry's Bearer token, which must not travel with a cross-origin redirect
    # (credentials are not sent to a plain-HTTP realm on another origin at all, see the tests below).
    workdir = tmp_path_factory.mktemp("redirect-registry")
    cdn = BlobCdn()
    with TokenIssuer(users=dict([PUSHER]), anonymous_actions=("pull",)) as issuer, cdn.server:
        registry = start_configured_distribution(
            workdir,
            auth=issuer.distribution_auth(issuer.write_root_bundle(workdir / "root.pem")),
            storage_middleware=redirect_middleware(cdn.server.url),
            credentials=PUSHER,
        )
        with registry:
            cdn.data_dir, cdn.upstream = registry.data_dir, registry.url
            yield RedirectSetup(registry, cdn, push_content(registry, "t/redirected"), issuer)


@pytest.fixture
def redirect_setup(_redirect_setup: RedirectSetup) -> RedirectSetup:
    """distribution (token auth, anonymous pulls) redirecting blob GETs to a CDN on another port."""
    _redirect_setup.cdn.clear()
    _redirect_setup.cdn.tamper = False
    assert _redirect_setup.issuer is not None
    _redirect_setup.issuer.clear()
    return _redirect_setup


@pytest.fixture(scope="module")
def _tls_redirect_setup(
    _tools: None, tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedirectSetup]:
    cdn = BlobCdn()
    with cdn.server:
        registry = start_configured_distribution(
            tmp_path_factory.mktemp("tls-redirect-registry"),
            storage_middleware=redirect_middleware(cdn.server.url),  # http://, from an https registry
            tls=tls_files,
        )
        with registry:
            cdn.data_dir = registry.data_dir
            image = push_image(registry, "t/tls-redirected", "v1")
            yield RedirectSetup(registry, cdn, PushedContent(image, "", image))


@pytest.fixture(scope="module")
def _rate_limited(
    _tools: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Registry, PushedImage]]:
    require_tool("olareg")
    registry = RateLimitedOlareg(kind="olareg", workdir=tmp_path_factory.mktemp("olareg-rate-limited"))
    with registry:
        image = push_image(registry, "t/limited", "v1")
        registry.limit(1)
        yield registry, image


@pytest.fixture
async def rate_limited(_rate_limited: tuple[Registry, PushedImage]) -> tuple[Registry, PushedImage]:
    """olareg with ``--rate-limit 1`` (burst 1) holding an image, with its one token available again."""
    await asyncio.sleep(1.1)
    return _rate_limited


# === 1. Basic auth (distribution + htpasswd) ============================================================


async def test_basic_auth_reads_manifest_blobs_and_referrers(
    basic_registry: ConfiguredDistribution, basic_content: PushedContent, make_client: ClientFactory
) -> None:
    calls: list[Call] = []
    client = make_client(plain(basic_registry.host, ALICE), calls=calls)
    image = basic_content.image
    ref = ref_at(image)

    manifest = await client.get_manifest(ref)
    assert (manifest.digest, manifest.data) == (image.digest, image.manifest)
    for descriptor in layer_and_config(image):
        assert sha256(await client.get_blob(ref, descriptor)) == descriptor.digest
    referrers = await client.list_referrers(ref, image.digest)  # distribution: the sha256-<hex> tag schema
    assert [r.digest for r in referrers] == [basic_content.sbom]
    assert referrers[0].artifact_type == "application/spdx+json"

    # One challenge, then Basic is sent up front on every request.
    gets = statuses(calls)
    assert gets[0] == "401" and gets.count("401") == 1, gets
    assert token_calls(calls) == []


@pytest.mark.parametrize(
    "credentials",
    [(ALICE[0], "wrong-password"), ("mallory", ALICE[1]), None],
    ids=["wrong-password", "unknown-user", "none"],
)
async def test_basic_auth_refused(
    basic_registry: ConfiguredDistribution,
    basic_content: PushedContent,
    make_client: ClientFactory,
    credentials: tuple[str, str] | None,
) -> None:
    client = make_client(plain(basic_registry.host, credentials))
    with pytest.raises(AuthenticationFailed) as failure:
        await client.get_manifest(ref_at(basic_content.image))
    assert isinstance(failure.value, Unavailable)  # undecided, never a definite verdict
    assert failure.value.reason == "registry_auth_failed"


@pytest.mark.parametrize("key", ["host", "http://host", "https://host"])
async def test_basic_credentials_from_a_docker_config_file(
    basic_registry: ConfiguredDistribution,
    basic_content: PushedContent,
    make_client: ClientFactory,
    tmp_path: Path,
    key: str,
) -> None:
    config = write_docker_config(
        tmp_path / "config.json",
        {key.replace("host", basic_registry.host): ALICE, "127.0.0.1:1": ("someone", "else")},
    )
    client = make_client(plain(basic_registry.host), store=CredentialStore(docker_configs=[config]))
    manifest = await client.get_manifest(ref_at(basic_content.image))
    assert manifest.digest == basic_content.image.digest


async def test_docker_config_with_wrong_credentials_is_refused_and_settings_take_precedence(
    basic_registry: ConfiguredDistribution,
    basic_content: PushedContent,
    make_client: ClientFactory,
    tmp_path: Path,
) -> None:
    config = write_docker_config(tmp_path / "config.json", {basic_registry.host: (ALICE[0], "stale")})
    store = CredentialStore(docker_configs=[config])
    with pytest.raises(AuthenticationFailed):
        await make_client(plain(basic_registry.host), store=store).get_manifest(ref_at(basic_content.image))
    # The registry's own credentials in Countersign's settings win over the docker config.
    client = make_client(plain(basic_registry.host, ALICE), store=store)
    assert (await client.get_manifest(ref_at(basic_content.image))).digest == basic_content.image.digest


# === 2. Bearer tokens (distribution + auth: token + the test token service) ==============================


async def test_token_flow_reads_manifest_blobs_and_referrers(
    token_registry: ConfiguredDistribution,
    token_content: PushedContent,
    issuer: TokenIssuer,
    make_client: ClientFactory,
) -> None:
    calls: list[Call] = []
    client = make_client(tls(token_registry, READER), calls=calls, egress=LOOPBACK_ALLOWED)
    image = token_content.image
    ref = ref_at(image)

    manifest = await client.get_manifest(ref)
    assert manifest.digest == image.digest
    by_digest = await client.get_manifest(ref, image.digest)
    assert by_digest.data == image.manifest
    for descriptor in layer_and_config(image):
        assert sha256(await client.get_blob(ref, descriptor)) == descriptor.digest
    assert [r.digest for r in await client.list_referrers(ref, image.digest)] == [token_content.sbom]

    [request] = issuer.token_requests()
    assert request.username == READER[0]
    assert request.service == issuer.service
    assert request.scopes == (f"repository:{image.repository}:pull",)
    assert request.granted == (("repository", image.repository, ("pull",)),)
    assert token_calls(calls) == ["200"]
    assert statuses(calls).count("401") == 1


async def test_token_is_cached_for_a_repository(
    token_registry: ConfiguredDistribution,
    token_content: PushedContent,
    issuer: TokenIssuer,
    make_client: ClientFactory,
) -> None:
    client = make_client(tls(token_registry, READER), egress=LOOPBACK_ALLOWED)
    ref = ref_at(token_content.image)
    layer, config = layer_and_config(token_content.image)
    for _ in range(5):
        await client.get_manifest(ref)
        await client.get_blob(ref, config)
    await client.get_blob(ref, layer)
    assert len(issuer.token_requests()) == 1


async def test_concurrent_first_reads_fetch_one_token(
    token_registry: ConfiguredDistribution,
    token_content: PushedContent,
    issuer: TokenIssuer,
    make_client: ClientFactory,
) -> None:
    calls: list[Call] = []
    client = make_client(tls(token_registry, READER), calls=calls, egress=LOOPBACK_ALLOWED)
    ref = ref_at(token_content.image)
    manifests = await asyncio.gather(*(client.get_manifest(ref) for _ in range(10)))
    assert {m.digest for m in manifests} == {token_content.image.digest}
    assert len(issuer.token_requests()) == 1  # the per-(registry, scope) lock
    assert token_calls(calls) == ["200"]


async def test_concurrent_first_reads_fetch_one_short_lived_token(
    token_registry: ConfiguredDistribution,
    token_content: PushedContent,
    issuer: TokenIssuer,
    make_client: ClientFactory,
) -> None:
    issuer.expires_in = 5
    client = make_client(tls(token_registry, READER), egress=LOOPBACK_ALLOWED)
    ref = ref_at(token_content.image)
    await asyncio.gather(*(client.get_manifest(ref) for _ in range(10)))
    assert len(issuer.token_requests()) == 1


async def test_each_repository_gets_its_own_token(
    token_registry: ConfiguredDistribution,
    token_content: PushedContent,
    issuer: TokenIssuer,
    make_client: ClientFactory,
) -> None:
    client = make_client(tls(token_registry, READER), egress=LOOPBACK_ALLOWED)
    first, other = token_content.image, token_content.other
    await client.get_manifest(ref_at(first))
    await client.get_manifest(ref_at(other))
    await client.get_manifest(ref_at(first))
    await client.get_manifest(ref_at(other))
    requests = issuer.token_requests()
    assert [r.scopes for r in requests] == [
        (f"repository:{first.repository}:pull",),
        (f"repository:{other.repository}:pull",),
    ]


async def test_expired_token_is_refreshed(
    token_registry: ConfiguredDistribution,
    token_content: PushedContent,
    issuer: TokenIssuer,
    make_client: ClientFactory,
) -> None:
    issuer.expires_in = 1
    client = make_client(tls(token_registry, READER), egress=LOOPBACK_ALLOWED)
    ref = ref_at(token_content.image)
    await client.get_manifest(ref)
    await client.get_manifest(ref)
    assert len(issuer.token_requests()) == 1
    await asyncio.sleep(1.1)
    await client.get_manifest(ref)
    requests = issuer.token_requests()
    assert len(requests) == 2 and all(r.status == 200 for r in requests)


async def test_token_rejected_by_the_registry_is_replaced(
    _tools: None, tls_files: TlsFiles, tmp_path: Path, make_client: ClientFactory
) -> None:
    # Its own token service and registry: the key rotation below must not touch the module's ones.
    with TokenIssuer(users=dict([PUSHER, READER]), ssl_context=server_context(tls_files)) as issuer:
        bundle = issuer.write_root_bundle(tmp_path / "root.pem")
        registry = start_configured_distribution(
            tmp_path / "registry", auth=issuer.distribution_auth(bundle), credentials=PUSHER, tls=tls_files
        )
        with registry:
            image = await asyncio.to_thread(push_image, registry, "t/rotated", "v1")
            issuer.clear()
            client = make_client(tls(registry, READER), egress=LOOPBACK_ALLOWED)
            ref = ref_at(image)
            await client.get_manifest(ref)
            # The token service rotates its signing key and the registry now trusts only the new one, so
            # the client's cached token (valid for ~5 more minutes by its expires_in) is answered 401.
            issuer.rotate_key()
            issuer.write_root_bundle(bundle)
            await asyncio.to_thread(registry.restart)
            fresh = make_client(tls(registry, READER), egress=LOOPBACK_ALLOWED)
            assert (await fresh.get_manifest(ref)).digest == image.digest  # new tokens are accepted
            assert len(issuer.token_requests()) == 2

            manifest = await client.get_manifest(ref)  # the first client must drop its rejected token
            assert manifest.digest == image.digest
            assert len(issuer.token_requests()) == 3


@pytest.mark.parametrize("how", ["wrong-password", "issuer-refuses"])
async def test_token_service_refusing_credentials(
    token_registry: ConfiguredDistribution,
    token_content: PushedContent,
    issuer: TokenIssuer,
    make_client: ClientFactory,
    how: str,
) -> None:
    if how == "issuer-refuses":
        issuer.refuse = True
    credentials = (READER[0], "wrong") if how == "wrong-password" else READER
    client = make_client(tls(token_registry, credentials), egress=LOOPBACK_ALLOWED)
    with pytest.raises(AuthenticationFailed) as failure:
        await client.get_manifest(ref_at(token_content.image))
    assert failure.value.reason == "registry_auth_failed"
    assert [(r.username, r.status) for r in issuer.token_requests()] == [(READER[0], 401)]


async def test_token_service_down_is_unavailable(
    token_registry: ConfiguredDistribution,
    token_content: PushedContent,
    issuer: TokenIssuer,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    issuer.stop()  # the registry still answers 401 with a realm nobody listens on
    client = make_client(tls(token_registry, READER), egress=LOOPBACK_ALLOWED)
    with caplog.at_level(logging.WARNING, logger="provider.registry.client"):
        with pytest.raises(Unavailable) as failure:
            await client.get_manifest(ref_at(token_content.image))
    assert not isinstance(failure.value, AuthenticationFailed)
    assert failure.value.reason == "registry_unavailable"
    assert str(failure.value) == f"cannot reach {token_registry.host} (the provider's log has the details)"
    assert "token service: cannot connect" in caplog.text  # the cause, for the operator

    issuer.start()  # back on the same port: the same client recovers
    assert (await client.get_manifest(ref_at(token_content.image))).digest == token_content.image.digest


async def test_token_service_error_is_unavailable(
    token_registry: ConfiguredDistribution,
    token_content: PushedContent,
    issuer: TokenIssuer,
    make_client: ClientFactory,
) -> None:
    issuer.fail_status = 503
    client = make_client(tls(token_registry, READER), egress=LOOPBACK_ALLOWED)
    with pytest.raises(Unavailable) as failure:
        await client.get_manifest(ref_at(token_content.image))
    assert not isinstance(failure.value, AuthenticationFailed)


async def test_anonymous_token(
    token_registry: ConfiguredDistribution,
    token_content: PushedContent,
    issuer: TokenIssuer,
    make_client: ClientFactory,
) -> None:
    client = make_client(tls(token_registry), egress=LOOPBACK_ALLOWED)
    with pytest.raises(AuthenticationFailed):  # anonymous access not granted (yet)
        await client.get_manifest(ref_at(token_content.image))

    issuer.anonymous_actions = ("pull",)
    issuer.clear()
    client = make_client(tls(token_registry), egress=LOOPBACK_ALLOWED)
    image = token_content.image
    assert (await client.get_manifest(ref_at(image))).digest == image.digest
    layer, _ = layer_and_config(image)
    assert sha256(await client.get_blob(ref_at(image), layer)) == layer.digest
    [request] = issuer.token_requests()
    assert request.username is None and request.granted == (("repository", image.repository, ("pull",)),)


def test_issued_tokens_carry_what_distribution_checks(issuer: TokenIssuer) -> None:
    header, claims = decode_jwt(issuer.issue("reader", [("repository", "t/app", ("pull",))]))
    assert header["alg"] == "ES256" and len(header["x5c"]) == 1
    assert claims["iss"] == issuer.issuer and claims["aud"] == issuer.service and claims["sub"] == "reader"
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
    assert claims["access"] == [{"type": "repository", "name": "t/app", "actions": ["pull"]}]


# === 3. Redirects (distribution's redirect storage middleware; fronts for the odd cases) ================


async def test_cross_origin_blob_redirect_drops_authorization(
    redirect_setup: RedirectSetup, make_client: ClientFactory
) -> None:
    registry, cdn, image = redirect_setup.registry, redirect_setup.cdn, redirect_setup.content.image
    calls: list[Call] = []
    client = make_client(plain(registry.host), calls=calls, egress=LOOPBACK_ALLOWED)
    ref = ref_at(image)
    layer, config = layer_and_config(image)

    assert sha256(await client.get_blob(ref, layer)) == layer.digest
    assert json.loads(await client.get_blob(ref, config))["os"] == "linux"

    served = cdn.blob_requests()
    assert len(served) == 2, served
    assert all(r.authorization is None for r in served), [r.headers for r in served]
    # The registry itself did get the bearer token: 401, then the redirect, then the CDN's 200.
    assert statuses(calls) == ["401", "307", "200", "307", "200"]
    assert redirect_setup.issuer is not None
    assert [(r.username, r.status) for r in redirect_setup.issuer.token_requests()] == [(None, 200)]


async def test_credentials_are_not_sent_to_a_plain_http_realm_on_another_origin(
    redirect_setup: RedirectSetup, make_client: ClientFactory
) -> None:
    # A plain-HTTP registry whose token realm is plain HTTP on another port: the configured credentials
    # would cross the network in the clear to a host the operator never named, so the token is asked for
    # anonymously (this token service grants anonymous pulls).
    registry, image, issuer = redirect_setup.registry, redirect_setup.content.image, redirect_setup.issuer
    assert issuer is not None
    client = make_client(plain(registry.host, PUSHER), egress=LOOPBACK_ALLOWED)
    assert (await client.get_manifest(ref_at(image))).digest == image.digest
    [request] = issuer.token_requests()
    assert (request.authorization, request.status) == (None, 200)

    # Refused anonymous pulls, the client does not fall back to sending the credentials.
    issuer.anonymous_actions = ()
    try:
        client = make_client(plain(registry.host, PUSHER), egress=LOOPBACK_ALLOWED)
        with pytest.raises(AuthenticationFailed):
            await client.get_manifest(ref_at(image))
    finally:
        issuer.anonymous_actions = ("pull",)
    assert [r.authorization for r in issuer.token_requests()] == [None, None]


async def test_same_origin_redirect_keeps_authorization(
    redirect_setup: RedirectSetup, make_client: ClientFactory
) -> None:
    # Talking to the registry through the CDN's host, the registry's redirect stays on the client's origin.
    cdn, image = redirect_setup.cdn, redirect_setup.content.image
    client = make_client(plain(cdn.server.host), egress=LOOPBACK_ALLOWED)
    ref = ref_at(image, cdn.server.host)
    layer, _ = layer_and_config(image)
    assert sha256(await client.get_blob(ref, layer)) == layer.digest
    [served] = cdn.blob_requests()
    assert served.authorization is not None and served.authorization.startswith("Bearer ")


async def test_redirected_blob_is_digest_checked(
    redirect_setup: RedirectSetup, make_client: ClientFactory
) -> None:
    redirect_setup.cdn.tamper = True
    client = make_client(plain(redirect_setup.registry.host), egress=LOOPBACK_ALLOWED)
    layer, _ = layer_and_config(redirect_setup.content.image)
    with pytest.raises(IntegrityError, match="hash to"):
        await client.get_blob(ref_at(redirect_setup.content.image), layer)


async def test_https_registry_redirecting_to_http_is_refused(
    _tls_redirect_setup: RedirectSetup, make_client: ClientFactory
) -> None:
    registry, cdn, image = (
        _tls_redirect_setup.registry,
        _tls_redirect_setup.cdn,
        _tls_redirect_setup.content.image,
    )
    cdn.clear()
    client = make_client({registry.host: RegistrySettings(ca_file=registry.ca_file)})
    ref = ref_at(image)
    assert (await client.get_manifest(ref)).digest == image.digest  # the TLS registry itself is fine
    layer, _ = layer_and_config(image)
    with pytest.raises(IntegrityError, match="https to http"):
        await client.get_blob(ref, layer)
    assert cdn.blob_requests() == []


def _hops_intercept(final_after: int | None) -> Intercept:
    """Blob GETs are redirected /hop/1 -> /hop/2 -> ...; after ``final_after`` hops, to the real blob."""

    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if "/blobs/" in request.path and not request.query.get("final"):
            raise web.HTTPTemporaryRedirect(f"/hop/1?blob={request.path}")
        if request.path.startswith("/hop/"):
            n = int(request.path.rsplit("/", 1)[1])
            blob = request.query["blob"]
            if final_after is not None and n >= final_after:
                raise web.HTTPTemporaryRedirect(f"{blob}?final=1")
            raise web.HTTPTemporaryRedirect(f"/hop/{n + 1}?blob={blob}")
        return None

    return intercept


@pytest.mark.parametrize(("hops", "ok"), [(3, True), (4, False)])
async def test_redirect_hops_are_bounded(
    distribution_registry: Registry, repo_name: str, make_client: ClientFactory, hops: int, ok: bool
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")
    layer, _ = layer_and_config(image)
    limits = Limits(max_redirects=3)
    async with Front(distribution_registry.url, _hops_intercept(hops - 1)) as front:
        client = make_client(plain(front.host), limits=limits)
        ref = ref_at(image, front.host)
        if ok:
            assert sha256(await client.get_blob(ref, layer)) == layer.digest
        else:
            with pytest.raises(InvalidContent, match="more than 3 redirects"):
                await client.get_blob(ref, layer)
        assert len(front.requests) == min(hops, limits.max_redirects) + 1


@pytest.mark.parametrize(
    ("location", "match"), [(None, "without a Location"), ("ftp://127.0.0.1/blob", "unsupported URL scheme")]
)
async def test_bad_redirects(
    distribution_registry: Registry,
    repo_name: str,
    make_client: ClientFactory,
    location: str | None,
    match: str,
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")

    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if "/blobs/" in request.path:
            return web.Response(status=302, headers={"Location": location} if location else {})
        return None

    async with Front(distribution_registry.url, intercept) as front:
        with pytest.raises(InvalidContent, match=match):
            await make_client(plain(front.host)).get_blob(
                ref_at(image, front.host), layer_and_config(image)[0]
            )


# === 4. 429 / 5xx and Retry-After within the deadline ===================================================


async def test_real_429_from_olareg_is_retried_within_the_deadline(
    rate_limited: tuple[Registry, PushedImage], make_client: ClientFactory
) -> None:
    registry, image = rate_limited
    calls: list[Call] = []
    client = make_client(plain(registry.host), calls=calls)
    ref = ref_at(image)
    _, config = layer_and_config(image)
    with deadline_in(3.0):
        start = time.monotonic()
        await client.get_manifest(ref, image.digest)
        assert json.loads(await client.get_blob(ref, config))["os"] == "linux"  # 429, Retry-After: 1, 200
        elapsed = time.monotonic() - start
    assert statuses(calls) == ["200", "429", "200"]
    assert 1.0 <= elapsed < 2.5


async def test_real_429_from_olareg_beyond_the_deadline_is_rate_limited(
    rate_limited: tuple[Registry, PushedImage], make_client: ClientFactory
) -> None:
    registry, image = rate_limited
    calls: list[Call] = []
    client = make_client(plain(registry.host), calls=calls)
    with deadline_in(0.8):
        await client.get_manifest(ref_at(image), image.digest)
        start = time.monotonic()
        with pytest.raises(RateLimited) as failure:
            await client.get_manifest(ref_at(image), image.digest)
        assert time.monotonic() - start < 0.3
    assert failure.value.reason == "registry_rate_limited"
    assert statuses(calls) == ["200", "429"]


def _fail_first(count: int, status: int, headers: Mapping[str, str] | None = None) -> Intercept:
    """An intercept answering ``status`` to the first ``count`` manifest requests (``count < 0``: all)."""
    answered = 0

    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        nonlocal answered
        if "/manifests/" in request.path and (count < 0 or answered < count):
            answered += 1
            return web.Response(status=status, headers=dict(headers or {}))
        return None

    return intercept


async def test_retry_after_within_the_deadline_is_honoured(
    distribution_registry: Registry, repo_name: str, make_client: ClientFactory
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")
    async with Front(distribution_registry.url, _fail_first(2, 429, {"Retry-After": "0.2"})) as front:
        client = make_client(plain(front.host))
        with deadline_in(3.0):
            start = time.monotonic()
            manifest = await client.get_manifest(ref_at(image, front.host))
            elapsed = time.monotonic() - start
    assert manifest.digest == image.digest
    assert len(front.seen("/manifests/")) == 3
    assert 0.4 <= elapsed < 1.5


@pytest.mark.parametrize(
    ("retry_after", "limits", "deadline"),
    [
        ("5", Limits(), 1.0),  # does not fit the deadline
        ("2", Limits(max_retry_after=1.0), 10.0),  # over max_retry_after, though the deadline allows it
        ("http-date", Limits(), 2.0),  # an HTTP-date 30 s from now
    ],
    ids=["beyond-deadline", "beyond-max-retry-after", "http-date"],
)
async def test_retry_after_that_does_not_fit_raises_promptly(
    distribution_registry: Registry,
    repo_name: str,
    make_client: ClientFactory,
    retry_after: str,
    limits: Limits,
    deadline: float,
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")
    if retry_after == "http-date":
        retry_after = email.utils.formatdate(time.time() + 30, usegmt=True)
    async with Front(distribution_registry.url, _fail_first(-1, 429, {"Retry-After": retry_after})) as front:
        client = make_client(plain(front.host), limits=limits)
        with deadline_in(deadline):
            start = time.monotonic()
            with pytest.raises(RateLimited):
                await client.get_manifest(ref_at(image, front.host))
            assert time.monotonic() - start < 0.5
    assert len(front.seen("/manifests/")) == 1


async def test_503_then_success_is_retried(
    distribution_registry: Registry, repo_name: str, make_client: ClientFactory
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")
    async with Front(distribution_registry.url, _fail_first(1, 503)) as front:
        with deadline_in(3.0):
            manifest = await make_client(plain(front.host)).get_manifest(ref_at(image, front.host))
    assert manifest.digest == image.digest
    assert len(front.seen("/manifests/")) == 2


@pytest.mark.parametrize(("status", "attempts"), [(503, 3), (502, 2), (504, 1), (429, 3)])
async def test_persistent_failure_is_unavailable_after_max_attempts(
    distribution_registry: Registry, repo_name: str, make_client: ClientFactory, status: int, attempts: int
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")
    headers = {"Retry-After": "0"} if status == 429 else {}
    async with Front(distribution_registry.url, _fail_first(-1, status, headers)) as front:
        client = make_client(plain(front.host), limits=Limits(max_attempts=attempts))
        with deadline_in(5.0), pytest.raises(Unavailable) as failure:
            await client.get_manifest(ref_at(image, front.host))
    if status == 429:
        assert isinstance(failure.value, RateLimited) and "after the last attempt" in str(failure.value)
    else:
        assert f"HTTP {status}" in str(failure.value)
    assert len(front.seen("/manifests/")) == attempts


async def test_auth_challenge_does_not_use_up_a_retry_attempt(
    basic_registry: ConfiguredDistribution, basic_content: PushedContent, make_client: ClientFactory
) -> None:
    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if "/manifests/" in request.path and request.headers.get("Authorization"):
            return web.Response(status=503)
        return None  # unauthenticated: the registry's own 401 challenge

    async with Front(basic_registry.url, intercept) as front:
        client = make_client(plain(front.host, ALICE), limits=Limits(max_attempts=3))
        with deadline_in(5.0), pytest.raises(Unavailable):
            await client.get_manifest(ref_at(basic_content.image, front.host))
    authorized = [r for r in front.seen("/manifests/") if r.authorization is not None]
    assert len(authorized) == 3


async def test_deadline_already_passed_sends_nothing(
    distribution_registry: Registry, repo_name: str, make_client: ClientFactory
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")
    calls: list[Call] = []
    client = make_client(plain(distribution_registry.host), calls=calls)
    with deadline_in(-0.1), pytest.raises(Unavailable) as failure:
        await client.get_manifest(ref_at(image))
    assert failure.value.reason == "deadline_exceeded"
    assert calls == []


# === 5. Limits and integrity ============================================================================


async def test_manifest_over_the_limit_is_too_large(
    distribution_registry: Registry, repo_name: str, make_client: ClientFactory
) -> None:
    image = await asyncio.to_thread(
        push_image, distribution_registry, repo_name, "big", annotations={"padding": "x" * 8192}
    )
    client = make_client(plain(distribution_registry.host), limits=Limits(max_manifest_bytes=4096))
    with pytest.raises(TooLarge, match="over the limit of 4096"):
        await client.get_manifest(ref_at(image))
    # Under a larger limit the same manifest is fine.
    client = make_client(plain(distribution_registry.host), limits=Limits(max_manifest_bytes=16384))
    assert (await client.get_manifest(ref_at(image))).digest == image.digest


async def test_streamed_manifest_over_the_limit_is_not_read_to_the_end(
    distribution_registry: Registry, make_client: ClientFactory
) -> None:
    total = 64 * 1024 * 1024
    chunk = b"x" * (64 * 1024)
    sent = 0
    handler_done = asyncio.Event()

    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        nonlocal sent
        if "/manifests/" not in request.path:
            return None
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        resp.enable_chunked_encoding()  # no Content-Length: the client must count
        await resp.prepare(request)
        try:
            while sent < total:
                await resp.write(chunk)
                sent += len(chunk)
        except ConnectionError:
            pass
        finally:
            handler_done.set()
        return resp

    async with Front(distribution_registry.url, intercept) as front:
        client = make_client(plain(front.host), limits=Limits(max_manifest_bytes=256 * 1024))
        start = time.monotonic()
        with pytest.raises(TooLarge, match="over the limit of 262144 bytes"):
            await client.get_manifest(parse_reference(f"{front.host}/t/huge:v1"))
        assert time.monotonic() - start < 2.0
        await asyncio.wait_for(handler_done.wait(), 10)
    assert sent < total // 2


async def test_blob_over_the_limit_is_refused_before_any_request(
    distribution_registry: Registry, repo_name: str, make_client: ClientFactory
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")
    layer, _ = layer_and_config(image)
    calls: list[Call] = []
    client = make_client(
        plain(distribution_registry.host), limits=Limits(max_blob_bytes=layer.size - 1), calls=calls
    )
    with pytest.raises(TooLarge):
        await client.get_blob(ref_at(image), layer)
    with pytest.raises(TooLarge):  # the caller's own, smaller bound
        await make_client(plain(distribution_registry.host), calls=calls).get_blob(
            ref_at(image), layer, max_bytes=layer.size - 1
        )
    assert calls == []


def _tamper_blob(how: str) -> Intercept:
    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if "/blobs/" not in request.path:
            return None
        upstream = await front.fetch_upstream(request)
        body = upstream.body
        if how == "missing-byte":
            return upstream.response(body=body[:-1])
        if how == "flipped-byte":
            return upstream.response(body=bytes([body[0] ^ 1]) + body[1:])
        if how == "extra-byte":
            return upstream.response(body=body + b"\0")
        # extra byte without a Content-Length: the client sees the excess only while reading
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(body + b"\0")
        await resp.write_eof()
        return resp

    return intercept


@pytest.mark.parametrize(
    "how",
    [
        "missing-byte",
        "flipped-byte",
        "extra-byte",
        "extra-byte-chunked",
    ],
)
async def test_blob_with_wrong_bytes_is_an_integrity_error(
    distribution_registry: Registry, repo_name: str, make_client: ClientFactory, how: str
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")
    layer, _ = layer_and_config(image)
    async with Front(distribution_registry.url, _tamper_blob(how)) as front:
        with pytest.raises(IntegrityError):
            await make_client(plain(front.host)).get_blob(ref_at(image, front.host), layer)


async def test_manifest_tag_with_a_lying_digest_header_is_an_integrity_error(
    distribution_registry: Registry, repo_name: str, make_client: ClientFactory
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")
    other = sha256(b"something else")

    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if "/manifests/" not in request.path:
            return None
        upstream = await front.fetch_upstream(request)
        return upstream.response(headers={"Docker-Content-Digest": other})

    async with Front(distribution_registry.url, intercept) as front:
        with pytest.raises(IntegrityError, match=f"reported digest {other}"):
            await make_client(plain(front.host)).get_manifest(ref_at(image, front.host))


async def test_manifest_by_digest_with_tampered_bytes_is_an_integrity_error(
    distribution_registry: Registry, repo_name: str, make_client: ClientFactory
) -> None:
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")

    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if "/manifests/" not in request.path:
            return None
        upstream = await front.fetch_upstream(request)
        doc = json.loads(upstream.body)
        doc["annotations"] = {"injected": "yes"}
        return upstream.response(body=json.dumps(doc).encode())  # the digest header still says the original

    async with Front(distribution_registry.url, intercept) as front:
        with pytest.raises(IntegrityError, match=f"@{image.digest}"):
            await make_client(plain(front.host)).get_manifest(ref_at(image, front.host, tag=False))


def _paginate_referrers(next_link: str = "relative") -> Intercept:
    """Serve the registry's referrers list one descriptor per page, linked by ``Link: <...>; rel="next"``."""

    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if "/referrers/" not in request.path:
            return None
        upstream = await front.fetch_upstream(request, request.path)
        doc = json.loads(upstream.body)
        page = int(request.query.get("page", "0"))
        entries = doc["manifests"]
        doc["manifests"] = entries[page : page + 1]
        headers = {"Content-Type": OCI_INDEX}
        if page + 1 < len(entries):
            target = f"{request.path}?page={page + 1}"
            if next_link == "other-host":
                target = f"http://127.0.0.2:{front.port}{target}"
            elif next_link == "absolute-same-origin":
                target = f"{front.url}{target}"
            headers["Link"] = f'<{target}>; rel="next"'
        return web.Response(body=json.dumps(doc).encode(), headers=headers)

    return intercept


@pytest.fixture
async def image_with_three_referrers(
    olareg_registry: Registry, repo_name: str
) -> tuple[PushedImage, set[str]]:
    image = await asyncio.to_thread(push_image, olareg_registry, repo_name, "v1")
    referrers = set()
    formats: tuple[SbomFormat, ...] = ("spdx", "cyclonedx", "spdx")
    for n, fmt in enumerate(formats):
        annotations = {"org.example.n": str(n)}
        referrers.add(
            await asyncio.to_thread(attach_sbom, olareg_registry, image, fmt=fmt, annotations=annotations)
        )
    assert len(referrers) == 3
    return image, referrers


async def test_referrers_pages_are_all_collected(
    olareg_registry: Registry,
    image_with_three_referrers: tuple[PushedImage, set[str]],
    make_client: ClientFactory,
) -> None:
    image, referrers = image_with_three_referrers
    async with Front(olareg_registry.url, _paginate_referrers()) as front:
        found = await make_client(plain(front.host)).list_referrers(ref_at(image, front.host), image.digest)
        assert len(front.seen("/referrers/")) == 3
    assert {d.digest for d in found} == referrers and len(found) == 3


async def test_more_referrer_pages_than_the_limit_is_too_large(
    olareg_registry: Registry,
    image_with_three_referrers: tuple[PushedImage, set[str]],
    make_client: ClientFactory,
) -> None:
    image, _ = image_with_three_referrers
    async with Front(olareg_registry.url, _paginate_referrers()) as front:
        client = make_client(plain(front.host), limits=Limits(max_referrer_pages=2))
        with pytest.raises(TooLarge, match="more than 2 pages"):
            await client.list_referrers(ref_at(image, front.host), image.digest)
        assert len(front.seen("/referrers/")) == 2


async def test_referrers_next_link_to_another_host_is_invalid(
    olareg_registry: Registry,
    image_with_three_referrers: tuple[PushedImage, set[str]],
    make_client: ClientFactory,
) -> None:
    image, _ = image_with_three_referrers
    async with Front(olareg_registry.url, _paginate_referrers("other-host")) as front:
        with pytest.raises(InvalidContent, match="leaves the registry"):
            await make_client(plain(front.host)).list_referrers(ref_at(image, front.host), image.digest)
        assert len(front.seen("/referrers/")) == 1


async def test_referrers_next_link_absolute_on_the_same_origin_is_followed(
    olareg_registry: Registry,
    image_with_three_referrers: tuple[PushedImage, set[str]],
    make_client: ClientFactory,
) -> None:
    image, referrers = image_with_three_referrers
    async with Front(olareg_registry.url, _paginate_referrers("absolute-same-origin")) as front:
        found = await make_client(plain(front.host)).list_referrers(ref_at(image, front.host), image.digest)
    assert {d.digest for d in found} == referrers


async def test_image_manifest_under_the_referrers_tag_means_no_referrers(
    distribution_registry: Registry,
    repo_name: str,
    make_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`cosign copy` onto a registry without the referrers API leaves the copied image under the tag
    ``sha256-<hex>``: no index there is "no referrers by the tag schema" (as go-containerregistry reads it),
    not invalid content; an index under that tag is still read."""
    image = await asyncio.to_thread(push_image, distribution_registry, repo_name, "v1")
    tag = "sha256-" + image.digest.removeprefix("sha256:")
    squatter = await asyncio.to_thread(push_image, distribution_registry, repo_name, tag)
    client = make_client(plain(distribution_registry.host))
    ref = ref_at(image)
    assert (await client.get_manifest(ref, tag)).digest == squatter.digest  # the tag holds a manifest
    with caplog.at_level(logging.DEBUG, logger="provider.registry.client"):
        assert await client.list_referrers(ref, image.digest) == []
    assert f"{tag} is a {squatter.media_type}" in caplog.text and "not an index" in caplog.text

    # The referrers tag rewritten as an index (oras maintains it when attaching): its entries are listed.
    sbom = await asyncio.to_thread(attach_sbom, distribution_registry, image)
    assert [d.digest for d in await client.list_referrers(ref, image.digest)] == [sbom]


# === 6. TLS with a custom CA ============================================================================


async def test_tls_registry_with_its_ca(
    distribution_tls_registry: Registry, repo_name: str, make_client: ClientFactory
) -> None:
    image = await asyncio.to_thread(push_image, distribution_tls_registry, repo_name, "v1")
    host = distribution_tls_registry.host
    client = make_client({host: RegistrySettings(ca_file=distribution_tls_registry.ca_file)})
    assert (await client.get_manifest(ref_at(image))).digest == image.digest
    layer, _ = layer_and_config(image)
    assert sha256(await client.get_blob(ref_at(image), layer)) == layer.digest


@pytest.mark.parametrize("trust", ["system", "another-ca"])
async def test_tls_registry_without_its_ca_is_a_tls_error(
    distribution_tls_registry: Registry,
    repo_name: str,
    make_client: ClientFactory,
    tmp_path: Path,
    trust: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = await asyncio.to_thread(push_image, distribution_tls_registry, repo_name, "v1")
    ca_file = None
    if trust == "another-ca":
        ca_file = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(ca_file))
    calls: list[Call] = []
    client = make_client({distribution_tls_registry.host: RegistrySettings(ca_file=ca_file)}, calls=calls)
    with caplog.at_level(logging.WARNING, logger="provider.registry.client"):
        with pytest.raises(Unavailable) as failure:
            await client.get_manifest(ref_at(image))
    # The same words as any other transport failure (keys must not probe ports); the cause is in the
    # log and in the metrics' status label.
    assert failure.value.reason == "registry_unavailable"
    assert statuses(calls) == ["tls_error"]
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


async def test_plain_http_settings_against_a_tls_registry_fail(
    distribution_tls_registry: Registry, repo_name: str, make_client: ClientFactory
) -> None:
    image = await asyncio.to_thread(push_image, distribution_tls_registry, repo_name, "v1")
    client = make_client(plain(distribution_tls_registry.host))
    with pytest.raises((Unavailable, InvalidContent)):  # Go answers 400 to plain HTTP on a TLS port
        await client.get_manifest(ref_at(image))


@pytest.mark.parametrize(
    "realm_host",
    [
        "127.0.0.1",
        "localhost",
    ],
    ids=["realm-on-the-registry-host", "realm-on-another-host"],
)
async def test_tls_token_service_is_trusted_through_the_registry_ca(
    _tools: None, tls_files: TlsFiles, tmp_path: Path, make_client: ClientFactory, realm_host: str
) -> None:
    # One private CA for the registry (127.0.0.1) and its token service (127.0.0.1 or localhost), as
    # with e.g. GitLab's registry and its /jwt/auth realm on the GitLab host.
    server_ctx = server_context(tls_files)
    with TokenIssuer(users=dict([PUSHER, READER]), ssl_context=server_ctx, realm_host=realm_host) as issuer:
        bundle = issuer.write_root_bundle(tmp_path / "root.pem")
        registry = start_configured_distribution(
            tmp_path / "registry", auth=issuer.distribution_auth(bundle), credentials=PUSHER, tls=tls_files
        )
        with registry:
            image = await asyncio.to_thread(push_image, registry, "t/tls-token", "v1")  # oras trusts the CA
            settings = RegistrySettings(ca_file=tls_files.ca_file, credentials=Credentials(*READER))
            client = make_client({registry.host: settings}, egress=LOOPBACK_ALLOWED)
            assert (await client.get_manifest(ref_at(image))).digest == image.digest
            assert [r.username for r in issuer.token_requests()][-1] == READER[0]
