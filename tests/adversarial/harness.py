"""``countersign serve`` as a real subprocess, and the assertions every adversarial case makes.

:class:`Countersign` starts the server with mutual TLS (a throw-away CA issues its certificate and the
client's), answers ``verify``/``mutate`` with the raw :class:`Answer`, and reads the process's memory from
``/proc/<pid>/status``. :meth:`Countersign.check_case` is the contract of the suite: for one key, the answer
came within the deadline (plus slack), in the expected class (decided / invalid / undecided), never
``allowed``, and afterwards the server is healthy (``/healthz``, a known-good signed image still allowed)
with its RSS bounded.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import trustme
import yaml

from tests.support.daemons import Daemon
from tests.support.processes import StartStop
from tests.support.registries import LOOPBACK, free_port

__all__ = ["Answer", "Countersign", "KeyClass", "mib"]

REPO_ROOT = Path(__file__).resolve().parents[2]
KeyClass = Literal["decided", "invalid", "undecided", "missing"]

#: Answering later than the deadline by more than this is a failure (TLS, JSON, scheduling on a busy CI box).
SLACK = 1.0
#: RSS bound checked after every case (the fat-manifest case has its own, on the peak).
RSS_LIMIT_MIB = 256


def mib(kib: int) -> float:
    return kib / 1024


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange with Countersign: status, parsed body (``{}`` when not JSON), time taken."""

    status: int
    body: dict[str, Any]
    elapsed: float
    raw: bytes

    @property
    def items(self) -> list[dict[str, Any]]:
        response = self.body.get("response") or {}
        items = response.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    @property
    def system_error(self) -> str:
        response = self.body.get("response") or {}
        return str(response.get("systemError") or "")

    def item(self, key: str) -> dict[str, Any] | None:
        for item in self.items:
            if item.get("key") == key:
                return item
        return None

    def classify(self, key: str) -> KeyClass:
        item = self.item(key)
        if item is not None:
            return "invalid" if "error" in item else "decided"
        return "undecided" if key in self.system_error else "missing"

    def value(self, key: str) -> dict[str, Any]:
        item = self.item(key)
        assert item is not None and "value" in item, f"{key}: no decided item in {self.describe()}"
        value = item["value"]
        assert isinstance(value, dict), f"{key}: value is not an object: {value!r}"
        return value

    def describe(self) -> str:
        text = self.raw.decode("utf-8", "replace")
        return f"HTTP {self.status} after {self.elapsed:.2f}s: {text[:3000]}"


@dataclass
class Countersign(StartStop):
    """``python -m provider.cli serve`` with ``config`` (server.tls/port/healthPort are filled in)."""

    directory: Path
    config: dict[str, Any]
    verify_deadline: float = 2.5
    mutate_deadline: float = 0.9
    good_key: str | None = None  # a signed image that must stay allowed (health check)
    ca: trustme.CA = field(default_factory=trustme.CA)
    port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    daemon: Daemon | None = None

    def start(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        leaf = self.ca.issue_cert(LOOPBACK)
        leaf.private_key_pem.write_to_path(str(self.directory / "tls.key"))
        (self.directory / "tls.crt").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        self.ca.cert_pem.write_to_path(str(self.directory / "client-ca.crt"))
        server = self.config.setdefault("server", {})
        server.update(
            {
                "address": LOOPBACK,
                "port": self.port,
                "healthPort": self.health_port,
                "tls": {
                    "certFile": str(self.directory / "tls.crt"),
                    "keyFile": str(self.directory / "tls.key"),
                    "clientCAFile": str(self.directory / "client-ca.crt"),
                },
            }
        )
        deadlines = server.setdefault("deadlines", {})
        deadlines.setdefault("verify", f"{self.verify_deadline}s")
        deadlines.setdefault("mutate", f"{self.mutate_deadline}s")
        config_file = self.directory / "countersign.yaml"
        config_file.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.daemon = Daemon(
            "countersign",
            [sys.executable, "-m", "provider.cli", "serve", "--config", str(config_file)],
            log_file=self.directory / "countersign.log",
            ready=self._ready,
            cwd=REPO_ROOT,
            ready_timeout=30,
        )
        self.daemon.start()
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    # --- talking to it -----------------------------------------------------------------------------------

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        self.ca.issue_cert("gatekeeper-client").configure_cert(context)
        return context

    def _ready(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{LOOPBACK}:{self.health_port}/readyz", timeout=2) as response:
            return int(response.status) == 200

    def post(self, path: str, body: bytes, timeout: float = 30.0) -> Answer:
        connection = http.client.HTTPSConnection(
            LOOPBACK, self.port, timeout=timeout, context=self.client_context()
        )
        started = time.monotonic()
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            raw = response.read()
            status = response.status
        finally:
            connection.close()
        elapsed = time.monotonic() - started
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {}
        return Answer(status, parsed if isinstance(parsed, dict) else {}, elapsed, raw)

    @staticmethod
    def request_body(keys: list[str]) -> bytes:
        doc = {"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "ProviderRequest"}
        doc["request"] = {"keys": keys}  # type: ignore[assignment]
        return json.dumps(doc).encode()

    def verify(self, *keys: str) -> Answer:
        return self.post("/v1/verify", self.request_body(list(keys)))

    def mutate(self, *keys: str) -> Answer:
        return self.post("/v1/mutate", self.request_body(list(keys)))

    # --- its state ---------------------------------------------------------------------------------------

    def memory(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MiB."""
        assert self.daemon is not None and self.daemon.pid is not None, "countersign is not running"
        status = Path(f"/proc/{self.daemon.pid}/status").read_text()
        values = {
            m.group(1): int(m.group(2)) for m in re.finditer(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)
        }
        return mib(values["VmRSS"]), mib(values["VmHWM"])

    def log_tail(self, lines: int = 60) -> str:
        return self.daemon.log_tail(lines) if self.daemon is not None else "(not started)"

    def healthz(self) -> int:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self.client_context())
        )
        with opener.open(f"https://{LOOPBACK}:{self.port}/healthz", timeout=5) as response:
            return int(response.status)

    def assert_healthy(self, rss_limit_mib: float = RSS_LIMIT_MIB) -> None:
        """Alive, /healthz answers, the known-good image is still allowed, RSS under ``rss_limit_mib``."""
        assert self.daemon is not None and self.daemon.running, f"countersign died:\n{self.log_tail()}"
        assert self.healthz() == 200
        if self.good_key is not None:
            answer = self.verify(self.good_key)
            assert answer.status == 200, answer.describe()
            value = answer.value(self.good_key)
            assert value["allowed"] is True, f"known-good image no longer allowed: {answer.describe()}"
        rss, _ = self.memory()
        assert rss < rss_limit_mib, f"RSS {rss:.0f} MiB after the case (limit {rss_limit_mib} MiB)"

    def check_case(
        self,
        key: str,
        expected: KeyClass | set[KeyClass],
        *,
        reason: str | None = None,
        allowed: bool = False,
    ) -> Answer:
        """Verify ``key`` alone and assert the suite's contract; returns the answer for further checks.

        ``expected`` is the class of the answer; ``reason``, for a decided key, the verdict's reason code
        (for an undecided key, the code in brackets in ``systemError``). ``allowed`` is only true for the
        cases where hostile content sits beside a valid signature (junk referrers).
        """
        answer = self.verify(key)
        context = f"{key}: {answer.describe()}\n--- countersign log:\n{self.log_tail(30)}"
        assert answer.status == 200, context
        assert answer.elapsed <= self.verify_deadline + SLACK, (
            f"answered after {answer.elapsed:.2f}s (deadline {self.verify_deadline}s + {SLACK}s): {context}"
        )
        got = answer.classify(key)
        wanted = expected if isinstance(expected, set) else {expected}
        assert got in wanted, f"expected {' or '.join(sorted(wanted))}, got {got}: {context}"
        if got == "decided":
            value = answer.value(key)
            assert value.get("allowed") is allowed, context
            if reason is not None:
                assert value.get("reason") == reason, f"expected reason {reason}: {context}"
        elif got == "undecided" and reason is not None:
            assert f"[{reason}]" in answer.system_error, f"expected [{reason}] in systemError: {context}"
        self.assert_healthy()
        return answer
