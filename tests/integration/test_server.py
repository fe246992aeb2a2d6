"""The HTTPS server in-process on 127.0.0.1: TLS 1.3 only, mutual TLS, certificate reload, bad input."""

from __future__ import annotations

import asyncio
import io
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web

from provider.config import Config, parse_config
from provider.server import build_app, guarded_site
from provider.site import GuardedSite
from provider.tls import CertificateReloader

pytestmark = pytest.mark.integration


class Pki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.server_ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.cert = root / "tls.crt"
        self.key = root / "tls.key"
        self.client_ca_file = root / "client-ca.crt"
        self.issue_server_cert()
        self.client_ca.cert_pem.write_to_path(str(self.client_ca_file))

    def issue_server_cert(self, ca: trustme.CA | None = None) -> trustme.LeafCert:
        leaf = (ca or self.server_ca).issue_cert("127.0.0.1", "localhost")
        leaf.private_key_pem.write_to_path(str(self.key))
        # cert chain: leaf then CA
        self.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        return leaf

    def client_context(
        self, *, cert_from: trustme.CA | None = None, max_version: ssl.TLSVersion | None = None
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.server_ca.configure_trust(ctx)
        if max_version is not None:
            ctx.maximum_version = max_version
        if cert_from is not None:
            cert_from.issue_cert("gatekeeper-webhook-service.gatekeeper-system.svc").configure_cert(ctx)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def make_config(pki: Pki, *, mtls: bool = False, **server: Any) -> Config:
    tls: dict[str, Any] = {"certFile": str(pki.cert), "keyFile": str(pki.key), "reloadInterval": 0.1}
    if mtls:
        tls["clientCAFile"] = str(pki.client_ca_file)
    server_doc: dict[str, Any] = {"address": "127.0.0.1", "port": 0, "tls": tls, **server}
    return parse_config(
        {
            "server": server_doc,
            "verifiers": {"pinned": {"type": "digest-pin"}},
            "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pinned"]}],
        }
    )


@asynccontextmanager
async def serving_site(config: Config) -> AsyncIterator[tuple[GuardedSite, CertificateReloader]]:
    """The application on 127.0.0.1 as run_server serves it: a GuardedSite with the configuration's limits."""
    assert config.server.tls is not None
    reloader = CertificateReloader(config.server.tls)
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = guarded_site(runner, app, port=0, ssl_context=reloader.listening, listener="provider")
    await site.start()
    watcher = asyncio.create_task(reloader.watch())
    try:
        yield site, reloader
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await runner.cleanup()


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[tuple[str, CertificateReloader]]:
    async with serving_site(config) as (site, reloader):
        yield f"https://127.0.0.1:{site.port}", reloader


def provider_request(*keys: Any) -> dict[str, Any]:
    return {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "ProviderRequest",
        "request": {"keys": list(keys)},
    }


async def post(
    url: str, ctx: ssl.SSLContext, body: bytes | dict[str, Any], path: str = "/v1/verify"
) -> tuple[int, dict[str, Any]]:
    data = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
    async with aiohttp.ClientSession() as session:
        async with session.post(url + path, data=data, ssl=ctx) as resp:
            return resp.status, await resp.json()


async def test_tls13_only(pki: Pki) -> None:
    async with serving(make_config(pki)) as (url, _):
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/healthz", ssl=pki.client_context()) as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientError):
                async with session.get(
                    url + "/healthz", ssl=pki.client_context(max_version=ssl.TLSVersion.TLSv1_2)
                ):
                    pass


async def test_mtls_requires_a_client_certificate_from_the_client_ca(pki: Pki) -> None:
    async with serving(make_config(pki, mtls=True)) as (url, _):
        status, body = await post(
            url, pki.client_context(cert_from=pki.client_ca), provider_request("bad ref!")
        )
        assert status == 200
        assert body["response"]["items"][0]["key"] == "bad ref!"
        for ctx in (pki.client_context(), pki.client_context(cert_from=trustme.CA())):
            with pytest.raises(aiohttp.ClientError):
                await post(url, ctx, provider_request("nginx"))
        # the server keeps serving the good client afterwards
        status, _ = await post(url, pki.client_context(cert_from=pki.client_ca), provider_request("x y"))
        assert status == 200


async def peer_certificate(url: str, ctx: ssl.SSLContext) -> bytes:
    host, port = url.removeprefix("https://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx, server_hostname="127.0.0.1")
    try:
        sslobj = writer.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        der = sslobj.getpeercert(binary_form=True)
        assert der is not None
        return der
    finally:
        writer.close()
        await writer.wait_closed()


async def test_certificate_is_reloaded_without_restart(pki: Pki) -> None:
    async with serving(make_config(pki)) as (url, reloader):
        before = await peer_certificate(url, pki.client_context())
        new_ca = trustme.CA()
        pki.issue_server_cert(new_ca)
        for _ in range(50):
            if reloader.reloads:
                break
            await asyncio.sleep(0.1)
        assert reloader.reloads == 1
        ctx = ssl.create_default_context()
        new_ca.configure_trust(ctx)
        after = await peer_certificate(url, ctx)
        assert after != before
        # the old CA no longer validates the new certificate
        with pytest.raises(ssl.SSLError):
            await peer_certificate(url, pki.client_context())


async def test_broken_new_certificate_keeps_the_old_one(pki: Pki) -> None:
    async with serving(make_config(pki)) as (url, reloader):
        before = await peer_certificate(url, pki.client_context())
        pki.key.write_text("not a key")
        await asyncio.sleep(0.5)
        assert reloader.reloads == 0
        assert await peer_certificate(url, pki.client_context()) == before


BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("not json", b"{nope", "not JSON"),
    ("not utf-8", b'{"kind": "\xff"}', "not UTF-8"),
    ("not an object", b"[1, 2]", "JSON object"),
    ("wrong kind", json.dumps({**provider_request("a"), "kind": "Nope"}).encode(), "kind must be"),
    ("wrong apiVersion", json.dumps({**provider_request("a"), "apiVersion": "v1"}).encode(), "apiVersion"),
    ("missing keys", json.dumps({**provider_request(), "request": {}}).encode(), "request.keys"),
    ("non-string key", json.dumps(provider_request("a", 3)).encode(), "keys[1]"),
    ("too many keys", json.dumps(provider_request(*[f"img{i}" for i in range(6)])).encode(), "too many keys"),
    ("key over 4 KiB", json.dumps(provider_request("a" * 4097)).encode(), "longer than 4096 bytes"),
    ("body over the limit", b'{"pad": "' + b"x" * 1_100_000 + b'"}', "over the limit"),
]


@pytest.mark.parametrize(
    ("body", "message"), [(b, m) for _, b, m in BAD_BODIES], ids=[i for i, _, _ in BAD_BODIES]
)
async def test_bad_input_is_a_400_provider_response_and_the_server_keeps_serving(
    pki: Pki, body: bytes, message: str
) -> None:
    async with serving(make_config(pki, limits={"maxKeys": 5})) as (url, _):
        ctx = pki.client_context()
        status, reply = await post(url, ctx, body)
        assert status == 400
        assert reply["kind"] == "ProviderResponse"
        assert reply["response"]["items"] == []
        assert reply["response"]["idempotent"] is True
        assert message in reply["response"]["systemError"]
        status, reply = await post(url, ctx, provider_request("also bad!"))
        assert status == 200
        assert reply["response"]["items"][0]["error"]


async def test_duplicate_keys_are_echoed_each_time(pki: Pki) -> None:
    async with serving(make_config(pki)) as (url, _):
        status, reply = await post(url, pki.client_context(), provider_request("Bad!", "ok?", "Bad!"))
        assert status == 200
        assert [i["key"] for i in reply["response"]["items"]] == ["Bad!", "ok?", "Bad!"]
        assert all("error" in i for i in reply["response"]["items"])
        assert reply["response"]["systemError"] == ""


async def test_health_readiness_and_metrics(pki: Pki) -> None:
    async with serving(make_config(pki)) as (url, _):
        ctx = pki.client_context()
        await post(url, ctx, provider_request("Bad!"))
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/readyz", ssl=ctx) as resp:
                assert resp.status == 200
                assert (await resp.json())["config"].startswith("sha256:")
            async with session.get(url + "/metrics", ssl=ctx) as resp:
                text = await resp.text()
        assert 'countersign_request_duration_seconds_count{endpoint="verify"} 1.0' in text
        assert 'countersign_keys_total{endpoint="verify",outcome="invalid"} 1.0' in text
        assert "countersign_registry_requests_total" in text
        assert "countersign_verifier_results_total" in text
