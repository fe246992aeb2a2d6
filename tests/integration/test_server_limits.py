"""Hostile clients against a real server on 127.0.0.1: slowloris headers, slow bodies, idle keep-alive,
stalled TLS handshakes, connection floods, and keys that are not valid Unicode.

Each case asserts that the offending connection is closed within its bound and that other clients are
answered meanwhile. The bounds here are short (0.5 s) so that the suite stays fast; `SLACK` covers a
loaded CI machine.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from provider.config import Config, parse_config
from provider.protocol import UNDECODABLE_KEY
from provider.site import GuardedSite
from tests.integration.test_server import Pki, post, provider_request, serving_site
from tests.support.registries import free_ports

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
BOUND = 0.5
FAST = {"requestHeaders": "0.5s", "requestBody": "0.5s", "idle": "0.5s", "tlsHandshake": "0.5s"}
SLACK = 2.5
UNCOVERED = "other.example/app:1"  # no policy covers it: decided (denied) without contacting anything


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def server_doc(pki: Pki, **server: Any) -> dict[str, Any]:
    return {
        "server": {
            "address": "127.0.0.1",
            "port": 0,
            "tls": {"certFile": str(pki.cert), "keyFile": str(pki.key)},
            **server,
        },
        "verifiers": {"pinned": {"type": "digest-pin"}},
        "policies": [{"name": "default", "scopes": ["reg.example.com/*"], "allOf": ["pinned"]}],
    }


def config_for(pki: Pki, **server: Any) -> Config:
    return parse_config(server_doc(pki, **server))


@asynccontextmanager
async def served(pki: Pki, **server: Any) -> AsyncIterator[tuple[GuardedSite, str]]:
    async with serving_site(config_for(pki, **server)) as (site, _):
        yield site, f"https://127.0.0.1:{site.port}"


async def tls_stream(port: int, pki: Pki) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1", port, ssl=pki.client_context(), server_hostname="127.0.0.1"
    )


async def closed_by_peer(
    reader: asyncio.StreamReader, within: float, started: float | None = None
) -> tuple[float, bytes]:
    """Read until the server closes the connection; (seconds since `started` (default now), what was read)."""
    started = time.monotonic() if started is None else started
    data = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        pytest.fail(f"the server did not close the connection within {within}s (read {data[:200]!r})")
    except (ConnectionError, ssl.SSLError):
        pass
    return time.monotonic() - started, data


async def trickle(writer: asyncio.StreamWriter, data: bytes, interval: float) -> None:
    """Send `data` one byte at a time, until done or the server hangs up."""
    with suppress(ConnectionError, ssl.SSLError, RuntimeError):
        for byte in data:
            if writer.is_closing():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(interval)


async def answered_promptly(url: str, pki: Pki) -> None:
    started = time.monotonic()
    status, reply = await post(url, pki.client_context(), provider_request(UNCOVERED))
    assert status == 200
    assert reply["response"]["items"][0]["value"]["allowed"] is False
    assert time.monotonic() - started < 1.5


def close(writer: asyncio.StreamWriter) -> None:
    with suppress(Exception):
        writer.close()


HEADERS = b"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


async def test_slowloris_headers_are_cut_within_the_bound_and_others_are_served(pki: Pki) -> None:
    bound = 2.0  # long enough for other clients to be served, surely, while the slow one is connected
    async with served(pki, timeouts={**FAST, "requestHeaders": f"{bound}s"}) as (site, url):
        reader, writer = await tls_stream(site.port, pki)
        trickler = asyncio.create_task(trickle(writer, HEADERS + b"X-Pad: " + b"a" * 500, 0.05))
        closing = asyncio.create_task(closed_by_peer(reader, bound + SLACK))
        for _ in range(3):
            await answered_promptly(url, pki)
        assert not closing.done()  # answered while the slow client holds its connection
        elapsed, data = await closing
        trickler.cancel()
        close(writer)
        assert bound - 0.1 <= elapsed <= bound + SLACK
        assert data == b""  # cut, not answered
        assert site.dropped_connections == {"request_headers": 1}
        await answered_promptly(url, pki)


async def test_a_connection_that_sends_nothing_is_closed(pki: Pki) -> None:
    async with served(pki, timeouts=FAST) as (site, _):
        reader, writer = await tls_stream(site.port, pki)
        elapsed, _ = await closed_by_peer(reader, BOUND + SLACK)
        close(writer)
        assert elapsed >= BOUND - 0.1
        assert site.dropped_connections == {"request_headers": 1}


def http_request(body: bytes, *, keep_alive: bool = True) -> bytes:
    connection = b"keep-alive" if keep_alive else b"close"
    return (
        HEADERS
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: "
        + connection
        + b"\r\n\r\n"
        + body
    )


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


async def test_idle_keep_alive_is_closed_and_a_slow_second_request_too(pki: Pki) -> None:
    async with served(pki, timeouts=FAST) as (site, url):
        body = json.dumps(provider_request(UNCOVERED)).encode()
        for slow_second_request in (False, True):
            reader, writer = await tls_stream(site.port, pki)
            writer.write(http_request(body))
            head, _ = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200")
            # keep-alive works: a second request on the same connection is answered
            writer.write(http_request(body))
            head, _ = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200")
            trickler = None
            if slow_second_request:
                await asyncio.sleep(BOUND / 2)  # idle a while, then start trickling the next request
                trickler = asyncio.create_task(trickle(writer, HEADERS + b"X-Pad: " + b"a" * 500, 0.05))
            elapsed, data = await closed_by_peer(reader, BOUND + SLACK)
            if trickler is not None:
                trickler.cancel()
            close(writer)
            assert data == b""
            assert elapsed >= BOUND - 0.1 - (BOUND / 2 if slow_second_request else 0)
        assert site.dropped_connections == {"idle": 1, "request_headers": 1}
        await answered_promptly(url, pki)


async def test_a_slow_body_gets_a_408_and_is_cut(pki: Pki) -> None:
    async with served(pki, timeouts=FAST) as (site, url):
        body = json.dumps(provider_request(UNCOVERED)).encode()
        reader, writer = await tls_stream(site.port, pki)
        writer.write(http_request(body)[: -len(body) + 5])  # the headers and 5 bytes of the body
        trickler = asyncio.create_task(trickle(writer, body[5:], 0.2))
        closing = asyncio.create_task(closed_by_peer(reader, BOUND + SLACK))
        await answered_promptly(url, pki)
        elapsed, data = await closing
        trickler.cancel()
        close(writer)
        assert BOUND - 0.1 <= elapsed <= BOUND + SLACK
        head, _, payload = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        reply = json.loads(payload)
        assert reply["kind"] == "ProviderResponse"
        assert reply["response"]["items"] == []
        assert "request body not received within 0.5s" in reply["response"]["systemError"]
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/metrics", ssl=pki.client_context()) as resp:
                metrics = await resp.text()
        assert 'countersign_requests_total{endpoint="verify",status="408"} 1.0' in metrics
        assert (
            'countersign_connections_dropped_total{listener="provider",reason="request_body"} 1.0' in metrics
        )


async def wait_for_open(site: GuardedSite, count: int) -> None:
    for _ in range(200):
        if site.open_connections == count:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{site.open_connections} connections open, expected {count}")


async def test_connections_over_the_limit_are_refused_until_one_closes(pki: Pki) -> None:
    limit, extra = 3, 4
    async with served(pki, limits={"maxConnections": limit}) as (site, url):
        held = [await tls_stream(site.port, pki) for _ in range(limit)]
        await wait_for_open(site, limit)
        for _ in range(extra):
            with pytest.raises((OSError, ssl.SSLError)):
                await asyncio.wait_for(tls_stream(site.port, pki), 5)
        assert site.dropped_connections == {"limit": extra}
        assert site.open_connections == limit
        # the held connections still work
        reader, writer = held[0]
        writer.write(http_request(json.dumps(provider_request(UNCOVERED)).encode()))
        head, _ = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200")
        close(writer)
        await wait_for_open(site, limit - 1)
        await answered_promptly(url, pki)  # a slot is free again
        for _, writer in held[1:]:
            close(writer)
        await wait_for_open(site, 0)


async def test_a_stalled_tls_handshake_is_cut_and_counts_against_the_limit(pki: Pki) -> None:
    async with served(pki, timeouts=FAST, limits={"maxConnections": 2}) as (site, url):
        # Plain TCP to the TLS port, sending nothing: a handshake that never starts.
        stalled = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(2)]
        await wait_for_open(site, 2)
        with pytest.raises((OSError, ssl.SSLError)):
            await asyncio.wait_for(tls_stream(site.port, pki), 5)
        for reader, writer in stalled:
            elapsed, _ = await closed_by_peer(reader, BOUND + SLACK)
            close(writer)
            assert elapsed <= BOUND + SLACK
        await wait_for_open(site, 0)
        assert site.dropped_connections == {"limit": 1, "tls_handshake": 2}
        await answered_promptly(url, pki)


async def test_a_key_that_is_not_unicode_is_an_error_item_for_itself_alone(pki: Pki) -> None:
    # Lone surrogates are legal JSON escapes but have no UTF-8 encoding; json.dumps cannot write them here.
    body = (
        b'{"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest", '
        b'"request": {"keys": ["\\ud800/x", "other.example/app:1", "\\udfff\\ud800", '
        b'"caf\\u00e9 \\u2028 \\ud83d\\ude00!"]}}'
    )
    async with served(pki) as (_, url):
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/v1/verify", data=body, ssl=pki.client_context()) as resp:
                assert resp.status == 200
                raw = await resp.read()
    text = raw.decode("utf-8")  # strictly valid UTF-8
    assert "\\ud8" not in text.lower() and "\\udf" not in text.lower()
    items = json.loads(text)["response"]["items"]
    assert [item["key"] for item in items] == [
        "\ufffd/x",  # what Go's encoding/json (Gatekeeper) decodes "\ud800/x" to
        UNCOVERED,
        "\ufffd\ufffd",
        "caf\u00e9 \u2028 \U0001f600!",  # a valid key, whatever its characters, comes back as sent
    ]
    assert items[0] == {"key": "\ufffd/x", "error": UNDECODABLE_KEY}
    assert items[1]["value"]["allowed"] is False
    assert items[2] == {"key": "\ufffd\ufffd", "error": UNDECODABLE_KEY}
    assert "invalid image reference" in items[3]["error"]
    assert json.loads(text)["response"]["systemError"] == ""


async def test_serve_guards_both_listeners(pki: Pki, tmp_path: Path) -> None:
    """`countersign serve` (run_server): the HTTPS listener and the plain-HTTP health listener alike."""
    port, health_port = free_ports(2)
    doc = server_doc(pki, port=port, healthPort=health_port, timeouts=FAST, limits={"maxConnections": 4})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(doc))
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "provider.cli", "serve", "--config", str(config)),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        health = f"http://127.0.0.1:{health_port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(150):
                with suppress(aiohttp.ClientError):
                    async with session.get(health + "/readyz") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"countersign serve did not start: {log.read_text()}")
        # slowloris on the health listener (plain HTTP) and on the provider listener (HTTPS)
        h_started = time.monotonic()
        h_reader, h_writer = await asyncio.open_connection("127.0.0.1", health_port)
        p_started = time.monotonic()
        p_reader, p_writer = await tls_stream(port, pki)
        pad = b"X-Pad: " + b"a" * 500
        tricklers = [
            asyncio.create_task(trickle(h_writer, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + pad, 0.05)),
            asyncio.create_task(trickle(p_writer, HEADERS + pad, 0.05)),
        ]
        closing = [
            asyncio.create_task(closed_by_peer(h_reader, BOUND + SLACK, h_started)),
            asyncio.create_task(closed_by_peer(p_reader, BOUND + SLACK, p_started)),
        ]
        await answered_promptly(f"https://127.0.0.1:{port}", pki)
        for closed in closing:
            elapsed, data = await closed
            assert data == b""
            assert BOUND - 0.1 <= elapsed <= BOUND + SLACK
        for task in tricklers:
            task.cancel()
        close(h_writer)
        close(p_writer)
        async with aiohttp.ClientSession() as session:
            async with session.get(health + "/metrics") as resp:
                metrics = await resp.text()
        for listener in ("health", "provider"):
            assert (
                f'countersign_connections_dropped_total{{listener="{listener}",reason="request_headers"}} 1.0'
                in metrics
            )
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            assert await asyncio.wait_for(proc.wait(), 10) == 0  # clean shutdown on SIGTERM
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
