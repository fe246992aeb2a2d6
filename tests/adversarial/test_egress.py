"""Where a key can make Countersign connect, and what the answer says about it.

A pod author picks the image reference, so any host and port. Loopback, link-local (the cloud metadata
address included) and unspecified addresses are refused unless the registry is named under
``registries:``; a refused key is a decided denial (``egress_refused``) that contacted nothing. Transport
failures say "cannot reach <registry>" whatever happened, so the answers are no port scanner: a closed
port, an open port that does not speak HTTP or TLS, and an unreachable network read the same.
"""

from __future__ import annotations

import json

import pytest

from tests.adversarial.conftest import Listeners, isolated
from tests.adversarial.harness import SLACK, Answer, Countersign
from tests.support.hostile_registry import wait_until
from tests.support.registries import LOOPBACK, free_port

REFUSED_KEYS = ["localhost:1/x", "[::1]:5000/x", "127.0.0.1:22/x", "169.254.169.254/x", "FORBIDDEN/x"]
#: Routed nowhere inside the test bed's network namespace: connect() fails at once (ENETUNREACH).
UNREACHABLE = "10.255.255.1:5000"


def _masked(text: str, host: str) -> str:
    return text.replace(host, "<HOST>")


@pytest.mark.parametrize("key", REFUSED_KEYS)
def test_key_naming_a_refused_address_is_denied_without_contact(
    healthy: Countersign, listeners: Listeners, key: str
) -> None:
    key = key.replace("FORBIDDEN", listeners.forbidden.host)
    before = listeners.forbidden.connections
    answer = healthy.check_case(key, "decided", reason="egress_refused")
    assert answer.value(key)["digest"] == "", answer.describe()
    assert not wait_until(lambda: listeners.forbidden.connections > before, 0.3), "the listener was contacted"


def test_refusals_do_not_tell_a_closed_port_from_an_open_one(
    healthy: Countersign, listeners: Listeners
) -> None:
    """Unlisted loopback keys: a port where nothing listens and one where something does get the same
    verdict, but for the host:port (and the open one is never contacted)."""
    closed = f"{LOOPBACK}:{free_port()}"
    opened = listeners.forbidden.host
    before = listeners.forbidden.connections
    texts = set()
    for host in (closed, opened):
        key = f"{host}/probe:1"
        answer = healthy.check_case(key, "decided", reason="egress_refused")
        texts.add(_masked(json.dumps(answer.value(key), sort_keys=True), host))
    assert len(texts) == 1, texts
    assert listeners.forbidden.connections == before, "the open port was contacted"


def test_transport_failures_do_not_reveal_port_state(healthy: Countersign, listeners: Listeners) -> None:
    """Registries named under ``registries:`` (so they are contacted): closed ports and open ports that do
    not speak HTTP or TLS, over plain HTTP and over HTTPS, and (inside the network namespace) an
    unreachable network all give the same undecided text, ``cannot reach <registry>``."""
    hosts = [listeners.closed, listeners.banner.host, listeners.closed_tls, listeners.banner_tls.host]
    if isolated():
        hosts.append(UNREACHABLE)
    else:
        print(f"not in a loopback-only network namespace: {UNREACHABLE} (unreachable network) not probed")
    texts: dict[str, str] = {}
    answers: dict[str, Answer] = {}
    for host in hosts:
        key = f"{host}/probe:1"
        answers[host] = answer = healthy.check_case(key, "undecided", reason="registry_unavailable")
        texts[host] = _masked(answer.system_error, host)
    assert len(set(texts.values())) == 1, json.dumps(texts, indent=1)
    assert "cannot reach <HOST> (the provider's log has the details) [registry_unavailable]" in next(
        iter(texts.values())
    ), texts
    # The control: the open ports were really contacted (what differs is hidden, not avoided).
    assert listeners.banner.connections > 0 and listeners.banner_tls.connections > 0


def test_mutate_refused_keys_are_item_errors_without_contact(
    healthy: Countersign, listeners: Listeners
) -> None:
    keys = [f"{listeners.forbidden.host}/x:1", "169.254.169.254/x:1", "localhost:1/x:1"]
    before = listeners.forbidden.connections
    answer = healthy.mutate(*keys)
    assert answer.status == 200, answer.describe()
    assert answer.elapsed <= healthy.mutate_deadline + SLACK, answer.describe()
    for key in keys:
        assert answer.classify(key) == "invalid", f"{key}: {answer.describe()}"
    assert not wait_until(lambda: listeners.forbidden.connections > before, 0.3), "the listener was contacted"
    healthy.assert_healthy()


def test_mutate_key_no_policy_covers_contacts_nothing(narrow: Countersign, listeners: Listeners) -> None:
    """The registry is reachable (named under ``registries:``) but no policy covers it: mutate, like
    verify, refuses it before contacting anything."""
    key = f"{listeners.unscoped.host}/app:1"
    before = listeners.unscoped.connections
    answer = narrow.mutate(key)
    assert answer.status == 200, answer.describe()
    assert answer.elapsed <= narrow.mutate_deadline + SLACK, answer.describe()
    assert answer.classify(key) == "invalid", answer.describe()
    verdict = narrow.verify(key)
    assert verdict.value(key)["reason"] == "no_policy", verdict.describe()
    assert not wait_until(lambda: listeners.unscoped.connections > before, 0.3), "the registry was contacted"
    narrow.assert_healthy()
