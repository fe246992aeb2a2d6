"""Hostile clients of the listener itself: a slowloris, and keys that are not valid Unicode."""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time

from tests.adversarial.harness import SLACK, Countersign
from tests.support.hostile_registry import HostileRegistry
from tests.support.registries import LOOPBACK

#: A client that sends its headers at 1 byte per 0.5 s is disconnected within this many seconds.
SLOWLORIS_LIMIT = 15.0


def _slowloris(countersign: Countersign, result: dict[str, float | str]) -> None:
    """Connect (mutual TLS), then send a never-ending header one byte every 0.5 s until the server hangs
    up; ``result["closed_after"]`` is how long that took (absent when it never did within the limit)."""
    context = countersign.client_context()
    raw = socket.create_connection((LOOPBACK, countersign.port), timeout=5)
    started = time.monotonic()
    with context.wrap_socket(raw, server_hostname=LOOPBACK) as sock:
        sock.setblocking(False)
        header = b"GET /healthz HTTP/1.1\r\nHost: countersign\r\nX-Slow: " + b"a" * 1000
        for byte in header:
            if time.monotonic() - started > SLOWLORIS_LIMIT + 5:
                result["error"] = "still connected"
                return
            try:
                sock.send(bytes([byte]))
            except (BlockingIOError, ssl.SSLWantWriteError):
                pass
            except OSError:
                result["closed_after"] = time.monotonic() - started
                return
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except ssl.SSLWantReadError:
                    continue  # a TLS 1.3 session ticket, not data
                except OSError:
                    data = b""
                if not data or data.startswith(b"HTTP/1.1 4"):
                    result["closed_after"] = time.monotonic() - started
                    return
    result["error"] = "ran out of header bytes"


def test_slowloris_is_disconnected_while_others_are_served(healthy: Countersign) -> None:
    result: dict[str, float | str] = {}
    thread = threading.Thread(target=_slowloris, args=(healthy, result), daemon=True)
    thread.start()
    assert healthy.good_key is not None
    served = 0
    while thread.is_alive():
        answer = healthy.verify(healthy.good_key)
        assert answer.value(healthy.good_key)["allowed"] is True, answer.describe()
        assert answer.elapsed <= healthy.verify_deadline + SLACK, answer.describe()
        served += 1
        thread.join(1.0)
    assert served > 0
    closed_after = result.get("closed_after")
    assert isinstance(closed_after, float), f"slowloris never disconnected: {result}"
    assert closed_after <= SLOWLORIS_LIMIT, f"slowloris disconnected only after {closed_after:.1f}s"
    healthy.assert_healthy()


def test_lone_surrogate_key_is_an_error_for_that_key_alone(
    healthy: Countersign, hostile: HostileRegistry
) -> None:
    assert healthy.good_key is not None
    other = f"{hostile.host}/nothing/here:1"
    keys = json.dumps([healthy.good_key, other])[1:-1]
    body = (
        '{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest",'
        '"request":{"keys":["\\ud800/x",' + keys + "]}}"
    ).encode()
    answer = healthy.post("/v1/verify", body)
    assert answer.status == 200, answer.describe()
    assert answer.elapsed <= healthy.verify_deadline + SLACK, answer.describe()
    # Echoed as Go's encoding/json (Gatekeeper) decodes the escape: the lone surrogate becomes U+FFFD.
    assert answer.classify("\ufffd/x") == "invalid", answer.describe()
    assert answer.value(healthy.good_key)["allowed"] is True, answer.describe()
    assert answer.value(other)["allowed"] is False, answer.describe()
    healthy.assert_healthy()
