"""The egress policy and the credential rule, through the engine (and the client), against real registries.

A pod author picks the image reference (any host, any port) and a registry picks its redirects and token
realm. What these tests hold: a refused host or address is a decided ``egress_refused`` denial (an error
item for ``/v1/mutate``) and nothing at all reaches it; a name is checked on the address it resolves to;
credentials reach a token realm only over HTTPS or on the registry's own origin; and the text returned for
an unconfigured registry does not tell one kind of transport failure from another.

"Nothing reaches it" is measured, not assumed: a :class:`Listener` on the port a key names counts the TCP
connections it accepts. Real registries (olareg, distribution with ``auth: token`` and the token service of
``tests/support/token_issuer.py``) stand where a user would have them; a recording reverse proxy
(``tests.support.http_servers.Front``) plays the hostile registry (redirects, rewritten challenges).
Everything listens on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import pytest
from aiohttp import web

from provider.config import Config, parse_config
from provider.engine import Engine
from provider.outcome import Decided, Invalid, Outcome, UndecidedKey
from provider.registry.client import RegistryClient
from provider.registry.egress import EgressPolicy, EgressRefused
from provider.registry.settings import RegistrySettings
from tests.integration.conftest import EngineFactory
from tests.support.auth_registries import ConfiguredDistribution, start_configured_distribution
from tests.support.http_servers import Front
from tests.support.images import PushedImage, attach_sbom, push_image
from tests.support.registries import Registry, TlsFiles, free_port
from tests.support.token_issuer import TokenIssuer
from tests.support.tools import require_tool
from verifiers.reference import parse_reference

pytestmark = pytest.mark.integration

PUSHER = ("pusher", "push-secret")
READER = ("reader", "read-secret")
LOOPBACK_NET = "127.0.0.0/8"
METADATA = "169.254.169.254"


# --- helpers -------------------------------------------------------------------------------------------


class Listener:
    """A TCP listener on ``host`` (a free port) that counts the connections it accepts.

    ``banner`` set: written to each connection (a protocol that is not HTTP, e.g. SSH's greeting) before it
    is closed; otherwise the connection is closed at once.
    """

    def __init__(self, host: str = "127.0.0.1", banner: bytes | None = None) -> None:
        self.host = host
        self.banner = banner
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.banner is not None:
                writer.write(self.banner)
                await writer.drain()
                await asyncio.wait_for(reader.read(4096), 0.5)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def config_with(
    *,
    registries: dict[str, Any] | None = None,
    egress: dict[str, Any] | None = None,
    scopes: list[str] | None = None,
    verifier: str = "pinned",
) -> Config:
    doc: dict[str, Any] = {
        "verifiers": {"pinned": {"type": "digest-pin"}, "sbom": {"type": "sbom"}},
        "policies": [{"name": "default", "scopes": scopes or ["*"], "allOf": [verifier]}],
    }
    if registries is not None:
        doc["registries"] = registries
    if egress is not None:
        doc["egress"] = egress
    return parse_config(doc)


def insecure(*hosts: str, credentials: tuple[str, str] | None = None) -> dict[str, Any]:
    extra = {"username": credentials[0], "password": credentials[1]} if credentials else {}
    return {host: {"insecure": True, **extra} for host in hosts}


def decided(outcome: Outcome) -> dict[str, Any]:
    assert isinstance(outcome, Decided), outcome
    value: dict[str, Any] = outcome.value
    return value


def refused(outcome: Outcome) -> str:
    """The message of an ``egress_refused`` denial (asserting that is what ``outcome`` is)."""
    value = decided(outcome)
    assert value["allowed"] is False and value["reason"] == "egress_refused", value
    [message] = value["reasons"]
    assert isinstance(message, str) and message.endswith("[egress_refused]")
    return message


async def verify_one(engine: Engine, key: str, budget: float = 10.0) -> Outcome:
    return (await engine.verify([key], budget))[key]


def contacted(engine: Engine, registry: str) -> bool:
    """Whether the engine's client sent (or tried to send) anything for ``registry`` (its metrics)."""
    return f'registry="{registry}"'.encode() in engine.metrics.render()


async def push(registry: Registry, repo: str) -> PushedImage:
    return await asyncio.to_thread(push_image, registry, repo, "v1")


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)
    return context


# === 1. Keys naming refused addresses: decided denial, nothing connected ==================================


@pytest.mark.parametrize(
    ("listen_on", "key_host"),
    [
        ("127.0.0.1", "localhost:{port}"),
        ("127.0.0.1", "127.0.0.1:{port}"),
        ("127.0.0.1", "0.0.0.0:{port}"),  # connecting to 0.0.0.0 reaches local listeners
        ("127.0.0.1", "127.1:{port}"),  # resolves to 127.0.0.1
        ("127.0.0.1", "2130706433:{port}"),  # 127.0.0.1 as one decimal number
        ("::1", "[::1]:{port}"),
    ],
)
async def test_keys_naming_loopback_are_refused_without_a_connection(
    engines: EngineFactory, listen_on: str, key_host: str
) -> None:
    async with Listener(listen_on) as listener:
        engine = await engines(config_with())
        registry = key_host.format(port=listener.port)
        key = f"{registry}/x:1"
        message = refused(await verify_one(engine, key))
        assert "refused unless egress.allowAddresses allows it" in message
        refused(await verify_one(engine, key))  # and again: nothing about the host was cached
        await asyncio.sleep(0.05)
    assert listener.connections == 0


@pytest.mark.parametrize(
    "key", [f"{METADATA}/latest/meta-data:1", f"{METADATA}:80/x:1", "[fe80::1]:5000/x:1"]
)
async def test_keys_naming_link_local_metadata_addresses_are_refused(
    engines: EngineFactory, key: str
) -> None:
    engine = await engines(config_with())
    message = refused(await verify_one(engine, key, 5.0))
    assert "link-local" in message
    registry = parse_reference(key).registry
    assert not contacted(engine, registry)


async def test_a_name_resolving_to_loopback_is_refused_on_its_address_unless_allowed(
    engines: EngineFactory,
) -> None:
    async with Listener() as listener:
        key = f"localhost:{listener.port}/x:1"
        engine = await engines(config_with())
        message = refused(await verify_one(engine, key))
        assert f"localhost:{listener.port} resolves to a loopback address" in message
        assert listener.connections == 0

        # With loopback allowed the name is contacted (over TLS: an unconfigured registry; the listener
        # is no TLS server, so the answer is "cannot reach", undecided).
        engine = await engines(config_with(egress={"allowAddresses": [LOOPBACK_NET]}))
        outcome = await verify_one(engine, key)
        assert isinstance(outcome, UndecidedKey) and outcome.reason == "registry_unavailable", outcome
        assert listener.connections >= 1


async def test_a_configured_registry_is_exempt_at_its_own_host_and_port_only(
    olareg_registry: Registry, repo_name: str, engines: EngineFactory
) -> None:
    image = await push(olareg_registry, repo_name)
    port = olareg_registry.host.rsplit(":", 1)[1]
    async with Front(olareg_registry.url) as front:
        # Configured by name: the name resolves to loopback, and is used all the same.
        engine = await engines(config_with(registries=insecure(f"localhost:{front.port}")))
        pinned = f"localhost:{front.port}/{image.repository}@{image.digest}"
        assert decided(await verify_one(engine, pinned))["allowed"] is True
        assert front.seen("/manifests/")
        # The same registry under another name, or another port of the same host, is not configured.
        seen = len(front.requests)
        refused(await verify_one(engine, f"127.0.0.1:{front.port}/{image.repository}@{image.digest}"))
        refused(await verify_one(engine, f"localhost:{port}/{image.repository}@{image.digest}"))
        assert len(front.requests) == seen


# === 2. egress.hosts ======================================================================================


async def test_hosts_restrict_which_registries_keys_may_name(engines: EngineFactory) -> None:
    async with Listener() as allowed, Listener() as other:
        egress = {"hosts": [f"127.0.0.1:{allowed.port}"], "allowAddresses": [LOOPBACK_NET]}
        engine = await engines(config_with(egress=egress))
        for key in (
            f"127.0.0.1:{other.port}/x:1",  # the right host, another port
            f"localhost:{allowed.port}/x:1",  # the right port under another name
            "registry.example.com/x:1",
        ):
            message = refused(await verify_one(engine, key))
            assert "is not allowed by the egress policy" in message
        assert (allowed.connections, other.connections) == (0, 0)
        # The allowed host:port is contacted (the listener speaks no TLS: undecided).
        outcome = await verify_one(engine, f"127.0.0.1:{allowed.port}/x:1")
        assert isinstance(outcome, UndecidedKey), outcome
        assert (allowed.connections >= 1, other.connections) == (True, 0)


@pytest.mark.parametrize(
    ("pattern", "allowed"),
    [
        ("127.0.0.1:{port}", True),
        ("127.0.0.1", True),  # no port: any port
        ("127.0.0.1:*", True),
        ("127.0.0.*:{port}", True),
        ("127.0.0.1:1", False),
        ("localhost:{port}", False),
        ("*.example.com", False),
    ],
)
async def test_host_port_patterns(engines: EngineFactory, pattern: str, allowed: bool) -> None:
    async with Listener() as listener:
        egress = {"hosts": [pattern.format(port=listener.port)], "allowAddresses": [LOOPBACK_NET]}
        engine = await engines(config_with(egress=egress))
        outcome = await verify_one(engine, f"127.0.0.1:{listener.port}/x:1")
        if allowed:
            assert isinstance(outcome, UndecidedKey) and listener.connections >= 1, outcome
        else:
            assert "not allowed by the egress policy" in refused(outcome)
            assert listener.connections == 0


async def test_hosts_bound_configured_registries_too(
    olareg_registry: Registry, repo_name: str, engines: EngineFactory
) -> None:
    image = await push(olareg_registry, repo_name)
    async with Front(olareg_registry.url) as front:
        config = config_with(registries=insecure(front.host), egress={"hosts": ["registry.example.com"]})
        engine = await engines(config)
        message = refused(await verify_one(engine, f"{front.host}/{image.repository}@{image.digest}"))
        assert "not allowed by the egress policy" in message
    assert front.requests == []


# === 3. Redirects chosen by a (configured) registry ======================================================


def _redirect(path_part: str, location: str) -> Any:
    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if path_part in request.path:
            raise web.HTTPTemporaryRedirect(location)
        return None

    return intercept


@pytest.mark.parametrize(
    "target",
    [
        f"http://{METADATA}/latest/meta-data/iam/security-credentials/",
        "http://127.0.0.1:{port}/stolen",
        "http://localhost:{port}/stolen",
        "http://[::ffff:127.0.0.1]:{port}/stolen",
        "http://0.0.0.0:{port}/stolen",
    ],
)
@pytest.mark.parametrize("what", ["manifest", "blob"])
async def test_redirect_to_a_refused_address_is_refused(
    olareg_registry: Registry, repo_name: str, engines: EngineFactory, target: str, what: str
) -> None:
    image = await push(olareg_registry, repo_name)
    await asyncio.to_thread(attach_sbom, olareg_registry, image)
    async with Listener() as listener:
        location = target.format(port=listener.port)
        path_part = "/manifests/" if what == "manifest" else "/blobs/"
        async with Front(olareg_registry.url, _redirect(path_part, location)) as front:
            engine = await engines(config_with(registries=insecure(front.host), verifier="sbom"))
            key = f"{front.host}/{image.repository}:v1"
            outcome = await verify_one(engine, key)
            if what == "manifest":
                message = refused(outcome)
            else:
                # The SBOM verifier's read was redirected: its report fails, carrying the refusal.
                value = decided(outcome)
                assert value["allowed"] is False, value
                [report] = value["verifiers"]
                assert report["passed"] is False
                message = report["message"]
            # An address literal is refused before sending ("redirect: ..."); a name on the address it
            # resolves to, when connecting.
            assert "redirect" in message or f"localhost:{listener.port}" in message, message
            assert "refused unless egress.allowAddresses allows it" in message, message
            assert front.seen(path_part)  # the registry was asked, and answered with the redirect
    assert listener.connections == 0


async def test_client_refuses_a_redirect_before_sending(olareg_registry: Registry, repo_name: str) -> None:
    image = await push(olareg_registry, repo_name)
    async with Listener() as listener:
        intercept = _redirect("/manifests/", f"http://127.0.0.1:{listener.port}/x")
        async with Front(olareg_registry.url, intercept) as front:
            client = RegistryClient(settings={front.host: RegistrySettings(insecure=True)})
            try:
                with pytest.raises(EgressRefused, match="redirect"):
                    await client.get_manifest(parse_reference(f"{front.host}/{image.repository}:v1"))
            finally:
                await client.close()
            # The same redirect under a permissive policy is followed (the listener is no registry).
            client = RegistryClient(
                settings={front.host: RegistrySettings(insecure=True)}, egress=EgressPolicy.permissive()
            )
            try:
                with pytest.raises(Exception) as failure:
                    await client.get_manifest(parse_reference(f"{front.host}/{image.repository}:v1"))
                assert not isinstance(failure.value, EgressRefused)
            finally:
                await client.close()
    assert listener.connections >= 1


# === 4. Token realms and credentials ======================================================================


@dataclass
class TokenSetup:
    registry: ConfiguredDistribution
    issuer: TokenIssuer
    image: PushedImage


def _token_setup(
    workdir: Path, *, tls: TlsFiles | None = None, anonymous: bool = False
) -> Iterator[TokenSetup]:
    require_tool("docker-registry")
    require_tool("oras")
    issuer = TokenIssuer(
        users=dict([PUSHER, READER]),
        ssl_context=server_context(tls) if tls else None,
        anonymous_actions=("pull",) if anonymous else (),
    )
    with issuer:
        registry = start_configured_distribution(
            workdir,
            auth=issuer.distribution_auth(issuer.write_root_bundle(workdir / "root.pem")),
            credentials=PUSHER,
            tls=tls,
        )
        with registry:
            image = push_image(registry, "t/realm", "v1")
            yield TokenSetup(registry, issuer, image)


@pytest.fixture(scope="module")
def _plain_token_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenSetup]:
    yield from _token_setup(tmp_path_factory.mktemp("plain-token"), anonymous=True)


@pytest.fixture
def plain_token_setup(_plain_token_setup: TokenSetup) -> TokenSetup:
    """distribution over plain HTTP, its token service plain HTTP on another port (anonymous pulls)."""
    _plain_token_setup.issuer.clear()
    return _plain_token_setup


@pytest.fixture(scope="module")
def tls_token_setup(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[TokenSetup]:
    """distribution over TLS, its token service HTTPS on another port; one CA (``tls_files``)."""
    yield from _token_setup(tmp_path_factory.mktemp("tls-token"), tls=tls_files)


async def test_plain_http_realm_on_another_origin_gets_no_credentials(
    plain_token_setup: TokenSetup, engines: EngineFactory
) -> None:
    setup = plain_token_setup
    registries = insecure(setup.registry.host, credentials=READER)
    engine = await engines(config_with(registries=registries, egress={"allowAddresses": [LOOPBACK_NET]}))
    value = decided(await verify_one(engine, setup.image.pinned))
    assert value["allowed"] is True, value  # an anonymous token suffices here
    requests = setup.issuer.token_requests()
    assert requests and all(r.authorization is None for r in requests), requests


async def test_plain_http_realm_on_another_origin_is_refused_by_the_default_policy(
    plain_token_setup: TokenSetup, engines: EngineFactory
) -> None:
    setup = plain_token_setup
    engine = await engines(config_with(registries=insecure(setup.registry.host, credentials=READER)))
    message = refused(await verify_one(engine, setup.image.pinned))
    assert "token realm" in message
    assert setup.issuer.token_requests() == []


async def test_https_realm_gets_the_credentials(tls_token_setup: TokenSetup, engines: EngineFactory) -> None:
    setup = tls_token_setup
    setup.issuer.clear()
    registries = {
        setup.registry.host: {
            "caFile": str(setup.registry.ca_file),
            "username": READER[0],
            "password": READER[1],
        }
    }
    engine = await engines(config_with(registries=registries, egress={"allowAddresses": [LOOPBACK_NET]}))
    value = decided(await verify_one(engine, setup.image.pinned))
    assert value["allowed"] is True, value
    [request] = setup.issuer.token_requests()
    assert request.username == READER[0] and request.authorization is not None
    assert request.authorization.startswith("Basic ")


async def test_plain_http_realm_on_the_registry_own_origin_gets_the_credentials(
    plain_token_setup: TokenSetup, engines: EngineFactory
) -> None:
    # A registry whose token service lives on its own origin (host and port), plain HTTP as configured:
    # a front serves the registry and, at /token, its token service, naming itself as the realm.
    setup = plain_token_setup
    session = aiohttp.ClientSession()

    async def intercept(front: Front, request: web.Request) -> web.StreamResponse | None:
        if request.path == "/token":
            headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
            async with session.get(f"{setup.issuer.realm}?{request.query_string}", headers=headers) as resp:
                return web.Response(
                    status=resp.status, body=await resp.read(), content_type="application/json"
                )
        upstream = await front.fetch_upstream(request)
        challenge = upstream.headers.get("WWW-Authenticate")
        if upstream.status == 401 and challenge:
            own = challenge.replace(setup.issuer.realm, f"{front.url}/token")
            return upstream.response(headers={"WWW-Authenticate": own})
        return upstream.response()

    try:
        async with Front(setup.registry.url, intercept) as front:
            engine = await engines(config_with(registries=insecure(front.host, credentials=READER)))
            key = f"{front.host}/{setup.image.repository}@{setup.image.digest}"
            value = decided(await verify_one(engine, key))  # no allowAddresses: only the front is used
            assert value["allowed"] is True, value
            assert front.seen("/token")
    finally:
        await session.close()
    [request] = setup.issuer.token_requests()
    assert request.username == READER[0] and request.authorization is not None


# === 5. denyAddresses =====================================================================================


@pytest.mark.parametrize(("name", "deny"), [("127.0.0.1", "127.0.0.1/32"), ("localhost", LOOPBACK_NET)])
async def test_deny_addresses_beat_a_configured_registry(
    olareg_registry: Registry, repo_name: str, engines: EngineFactory, name: str, deny: str
) -> None:
    image = await push(olareg_registry, repo_name)
    async with Front(olareg_registry.url) as front:
        registry = f"{name}:{front.port}"
        egress = {"denyAddresses": [deny], "allowAddresses": [LOOPBACK_NET]}
        engine = await engines(config_with(registries=insecure(registry), egress=egress))
        message = refused(await verify_one(engine, f"{registry}/{image.repository}@{image.digest}"))
        assert "egress.denyAddresses" in message
    assert front.requests == []


# === 6. What an unconfigured registry's failure tells ====================================================


async def test_transport_failures_of_unconfigured_registries_read_the_same(engines: EngineFactory) -> None:
    async with (
        Listener(banner=b"SSH-2.0-OpenSSH_9.6\r\n") as ssh,
        Listener() as hangs_up,
    ):
        closed = free_port()
        engine = await engines(config_with(egress={"allowAddresses": [LOOPBACK_NET]}))
        hosts = [f"127.0.0.1:{closed}", f"127.0.0.1:{ssh.port}", f"127.0.0.1:{hangs_up.port}"]
        outcomes = await engine.verify([f"{h}/x:1" for h in hosts], 10.0)
        assert ssh.connections >= 1 and hangs_up.connections >= 1
    texts = set()
    for host in hosts:
        outcome = outcomes[f"{host}/x:1"]
        assert isinstance(outcome, UndecidedKey), outcome
        assert outcome.reason == "registry_unavailable"
        texts.add(outcome.message.replace(host, "<registry>"))
    assert texts == {"cannot reach <registry> (the provider's log has the details)"}


async def test_a_configured_registry_reads_the_same_and_logs_the_cause(
    engines: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    closed = free_port()
    registry = f"127.0.0.1:{closed}"
    engine = await engines(config_with(registries=insecure(registry)))
    with caplog.at_level(logging.WARNING, logger="provider.registry.client"):
        outcome = await verify_one(engine, f"{registry}/x:1")
    assert isinstance(outcome, UndecidedKey) and outcome.reason == "registry_unavailable", outcome
    assert outcome.message == f"cannot reach {registry} (the provider's log has the details)"
    # The operator's registry: the cause is a warning in the provider's log, not in the answer.
    assert any(
        r.levelno == logging.WARNING and f"cannot connect to 127.0.0.1:{closed}" in r.getMessage()
        for r in caplog.records
    ), caplog.text


# === 7. /v1/mutate ========================================================================================


async def test_mutate_contacts_nothing_for_uncovered_or_refused_keys(engines: EngineFactory) -> None:
    async with Listener() as listener:
        uncovered = f"127.0.0.1:{listener.port}/x:1"
        engine = await engines(
            config_with(scopes=["registry.example.com/*"], egress={"allowAddresses": [LOOPBACK_NET]})
        )
        outcome = (await engine.mutate([uncovered], 5.0))[uncovered]
        assert isinstance(outcome, Invalid) and "no policy scope matches" in outcome.error, outcome

        engine = await engines(config_with())
        for key in (f"127.0.0.1:{listener.port}/x:1", f"localhost:{listener.port}/x:1", f"{METADATA}/x:1"):
            outcome = (await engine.mutate([key], 5.0))[key]
            assert isinstance(outcome, Invalid), outcome
            assert "egress" in outcome.error or "refused unless" in outcome.error, outcome.error
        await asyncio.sleep(0.05)
    assert listener.connections == 0


async def test_mutate_pins_through_a_configured_registry(
    olareg_registry: Registry, repo_name: str, engines: EngineFactory
) -> None:
    image = await push(olareg_registry, repo_name)
    engine = await engines(config_with(registries=insecure(olareg_registry.host)))
    outcome = (await engine.mutate([image.reference], 5.0))[image.reference]
    assert isinstance(outcome, Decided) and outcome.value == image.pinned, outcome
