"""The informer's state machine (list, watch, 410 relist, resync, bounds) and its backoff, on a fake API."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from provider.kube.api import KubeApiError
from provider.kube.informer import Backoff, Informer, left_out, object_size, slim


def _obj(name: str, rv: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "resourceVersion": rv, "uid": f"uid-{name}"}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["managedFields"] = [{"manager": "kubectl"}]
    return {"metadata": metadata, "spec": {"n": name}, **extra}


class FakeApi:
    """Scripted answers: `pages` for lists (one list of pages per list call), `watches` for watches (a
    list of events or an exception, per watch call)."""

    def __init__(self) -> None:
        self.lists: list[list[dict[str, Any] | KubeApiError]] = []
        self.watches: list[list[dict[str, Any]] | KubeApiError] = []
        self.list_calls: list[Mapping[str, str] | None] = []
        self.watch_calls: list[tuple[str, int, Mapping[str, str] | None]] = []

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        self.list_calls.append(params)
        pages = self.lists[0]
        page = pages.pop(0)
        if not pages:
            self.lists.pop(0)
        if isinstance(page, KubeApiError):
            raise page
        return page

    def watch(
        self,
        path: str,
        resource_version: str,
        timeout_seconds: int,
        params: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        self.watch_calls.append((resource_version, timeout_seconds, params))
        script = self.watches.pop(0)
        if isinstance(script, KubeApiError):
            raise script
        for event in script:
            if event.get("type") == "ERROR":
                raise KubeApiError(int(event["object"]["code"]), "error event")
            yield event


def _page(items: list[dict[str, Any]], rv: str, cont: str = "") -> dict[str, Any]:
    metadata = {"resourceVersion": rv}
    if cont:
        metadata["continue"] = cont
    return {"items": items, "metadata": metadata}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _informer(api: FakeApi, **kwargs: Any) -> tuple[Informer, list[Mapping[str, dict[str, Any]]], Clock]:
    delivered: list[Mapping[str, dict[str, Any]]] = []
    clock = Clock()
    informer = Informer(
        api,
        "/apis/countersign.dev/v1alpha1/verifiers",
        delivered.append,
        None,
        clock=clock,
        backoff=Backoff(rng=random.Random(1)),
        **kwargs,
    )
    return informer, delivered, clock


def test_lists_all_pages_then_watches_from_the_lists_resource_version() -> None:
    api = FakeApi()
    api.lists = [[_page([_obj("a", "5")], "9", cont="tok"), _page([_obj("b", "7")], "10")]]
    api.watches = [
        [{"type": "ADDED", "object": _obj("c", "11")}, {"type": "DELETED", "object": _obj("a", "12")}]
    ]
    informer, delivered, _ = _informer(api, page_size=1)
    assert informer.step() == 0.0
    assert informer.synced and informer.resource_version == "10"
    assert api.list_calls == [{"limit": "1"}, {"limit": "1", "continue": "tok"}]
    assert set(delivered[-1]) == {"a", "b"}
    assert "managedFields" not in delivered[-1]["a"]["metadata"]  # slimmed
    informer.step()
    assert api.watch_calls[0][0] == "10"
    assert set(delivered[-1]) == {"b", "c"}
    assert informer.resource_version == "12"
    # Every delivery is a new mapping: what the loop holds never changes under it.
    assert set(delivered[1]) == {"a", "b", "c"}


def test_bookmarks_move_the_resource_version_without_a_delivery() -> None:
    api = FakeApi()
    api.lists = [[_page([], "3")]]
    api.watches = [[{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "40"}}}], []]
    informer, delivered, _ = _informer(api)
    informer.step()
    informer.step()
    assert informer.resource_version == "40" and len(delivered) == 1
    informer.step()
    assert api.watch_calls[1][0] == "40"


def test_gone_relists_at_once_and_replaces_the_objects() -> None:
    api = FakeApi()
    api.lists = [[_page([_obj("a", "1"), _obj("b", "2")], "2")], [_page([_obj("b", "8")], "9")]]
    api.watches = [[{"type": "ERROR", "object": {"code": 410}}]]
    informer, delivered, _ = _informer(api)
    informer.step()
    assert informer.step() == 0.0  # no backoff for 410
    assert informer.errors == 0
    informer.step()
    assert informer.lists == 2 and set(delivered[-1]) == {"b"} and informer.resource_version == "9"


def test_errors_back_off_exponentially_with_jitter_and_reset_after_a_success() -> None:
    api = FakeApi()
    failure = KubeApiError(503, "unavailable")
    api.lists = [[failure], [failure], [failure], [failure], [_page([], "1")]]
    informer, delivered, _ = _informer(api)
    delays = [informer.step() for _ in range(4)]
    assert not informer.synced and delivered == [] and informer.errors == 4
    ceilings = [0.5, 1.0, 2.0, 4.0]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays) > 0.5  # it grows
    assert informer.step() == 0.0 and informer.synced
    assert informer.backoff.failures == 0


def test_backoff_is_capped() -> None:
    backoff = Backoff(base=1.0, maximum=5.0, rng=random.Random(0))
    assert max(backoff.next() for _ in range(200)) <= 5.0
    assert backoff.failures == 32


def test_a_failed_watch_resumes_from_the_last_resource_version() -> None:
    api = FakeApi()
    api.lists = [[_page([], "3")]]
    api.watches = [[{"type": "ADDED", "object": _obj("a", "4")}], KubeApiError(0, "connection reset"), []]
    informer, _, _ = _informer(api)
    informer.step()
    informer.step()
    informer.step()
    assert informer.errors == 1
    informer.step()
    assert [call[0] for call in api.watch_calls] == ["3", "4", "4"]
    assert informer.lists == 1


def test_resync_lists_again_after_the_period_and_bounds_the_watch() -> None:
    api = FakeApi()
    api.lists = [[_page([_obj("a", "1")], "1")], [_page([_obj("z", "5")], "5")]]
    api.watches = [[]]
    informer, delivered, clock = _informer(api, resync=60.0, watch_timeout=300)
    informer.step()
    clock.now += 30
    informer.step()
    assert api.watch_calls[0][1] == 30  # the watch ends at the resync
    clock.now += 31
    informer.step()
    assert informer.lists == 2 and set(delivered[-1]) == {"z"}


def test_more_objects_than_allowed_is_an_error_not_growth() -> None:
    api = FakeApi()
    api.lists = [
        [_page([_obj("a", "1"), _obj("b", "2"), _obj("c", "3")], "3")],
        [_page([_obj("a", "1")], "4")],
    ]
    api.watches = [[{"type": "ADDED", "object": _obj("b", "5")}, {"type": "ADDED", "object": _obj("c", "6")}]]
    errors: list[KubeApiError] = []
    informer, delivered, _ = _informer(api, max_objects=2, on_error=errors.append)
    informer.step()
    assert not informer.synced and "more than 2 objects" in str(errors[0])
    informer.step()
    assert informer.synced
    informer.step()  # b fits, c does not
    assert len(errors) == 2 and set(informer.objects) == {"a", "b"}
    assert all(len(d) <= 2 for d in delivered)


def test_namespaced_keys_and_selectors_reach_the_watch() -> None:
    api = FakeApi()
    api.lists = [[_page([_obj("a", "1", namespace="team")], "1")]]
    api.watches = [[]]
    informer, delivered, _ = _informer(api, params={"fieldSelector": "type!=helm.sh/release.v1"})
    informer.step()
    informer.step()
    assert set(delivered[0]) == {"team/a"}
    assert api.list_calls[0] == {"fieldSelector": "type!=helm.sh/release.v1", "limit": "250"}
    assert api.watch_calls[0][2] == {"fieldSelector": "type!=helm.sh/release.v1"}


def test_slim_keeps_what_is_read() -> None:
    secret = {"metadata": {"name": "s", "labels": {"x": "y"}}, "type": "Opaque", "data": {"k": "dg=="}}
    assert slim(secret) == {"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dg=="}}


def test_an_object_without_a_name_is_an_error() -> None:
    api = FakeApi()
    api.lists = [[_page([{"metadata": {}}], "1")]]
    informer, _, _ = _informer(api)
    informer.step()
    assert informer.errors == 1 and not informer.synced
    assert "metadata.name" in str(informer.last_error)


def _sized(name: str, rv: str, payload: int) -> dict[str, Any]:
    return _obj(name, rv, data={"k": "x" * payload})


def test_an_object_over_the_per_object_bound_is_left_out_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeApi()
    api.lists = [[_page([_sized("a", "1", 100), _sized("big", "2", 5000)], "2")], [_page([], "9")]]
    api.watches = [
        [
            {"type": "MODIFIED", "object": _sized("big", "3", 5000)},  # still too large: a new version
            {"type": "MODIFIED", "object": _sized("big", "4", 10)},  # now it fits
            {"type": "MODIFIED", "object": _sized("a", "5", 6000)},  # grew past the bound: its data goes
        ]
    ]
    informer, delivered, _ = _informer(api, max_object_bytes=1000, max_bytes=10_000)
    with caplog.at_level(logging.WARNING):
        informer.step()
    assert informer.synced and set(delivered[-1]) == {"a", "big"}
    reason = left_out(delivered[-1]["big"])
    assert reason is not None and "more than the 1000 bytes held of one object" in reason
    assert "data" not in delivered[-1]["big"] and delivered[-1]["big"]["metadata"]["resourceVersion"] == "2"
    assert left_out(delivered[-1]["a"]) is None and delivered[-1]["a"]["data"] == {"k": "x" * 100}
    assert informer.bytes == object_size(delivered[-1]["a"]) and informer.bytes < 1000
    assert sum("big (resourceVersion 2) left out" in r.getMessage() for r in caplog.records) == 1
    informer.step()
    assert left_out(delivered[1]["big"]) is not None  # version 3, left out again
    assert delivered[2]["big"]["data"] == {"k": "x" * 10}  # version 4 is held
    assert left_out(delivered[3]["a"]) is not None and "data" not in delivered[3]["a"]
    assert informer.bytes == object_size(delivered[3]["big"])
    assert informer.errors == 0  # never an error: the rest of the collection is served


def test_the_collection_total_is_bounded_in_key_order_and_a_freed_budget_relists() -> None:
    api = FakeApi()
    # Three objects of ~500 bytes, 1200 bytes in all allowed: the third (in list order) is left out.
    objects = [_sized(n, "1", 400) for n in ("a", "b", "c")]
    api.lists = [[_page(objects, "1")], [_page([objects[1], objects[2]], "7")]]
    api.watches = [
        [
            {"type": "ADDED", "object": _sized("d", "5", 400)},  # no room either
            {"type": "DELETED", "object": objects[0]},  # room made: list again
            {"type": "ADDED", "object": _sized("e", "6", 1)},  # not read: the watch ends for the relist
        ]
    ]
    reasons: list[str] = []
    informer, delivered, _ = _informer(api, max_bytes=1200, on_list=reasons.append)
    informer.step()
    assert [k for k, v in delivered[-1].items() if left_out(v) is None] == ["a", "b"]
    assert "over the 1200 bytes held of this collection" in (left_out(delivered[-1]["c"]) or "")
    assert informer.bytes <= 1200
    informer.step()
    assert left_out(delivered[1]["d"]) is not None
    assert set(delivered[2]) == {"b", "c", "d"}
    assert all("e" not in d for d in delivered)
    informer.step()  # the relist the delete asked for
    assert reasons == ["initial", "budget"]
    assert all(left_out(v) is None for v in delivered[-1].values()) and set(delivered[-1]) == {"b", "c"}


def test_list_reasons_and_errors_are_reported() -> None:
    api = FakeApi()
    api.lists = [[KubeApiError(0, "refused")], [_page([], "1")], [_page([], "4")], [_page([], "8")]]
    api.watches = [[{"type": "ERROR", "object": {"code": 410}}], KubeApiError(500, "boom")]
    reasons: list[str] = []
    errors: list[KubeApiError] = []
    informer, _, clock = _informer(api, on_list=reasons.append, on_error=errors.append, resync=60)
    informer.step()  # the first list fails: an error, no list counted
    informer.step()
    informer.step()  # 410
    informer.step()
    informer.step()  # the watch fails: an error, resumed (no list)
    clock.now += 61
    informer.step()
    assert reasons == ["initial", "gone", "resync"]
    assert [e.status for e in errors] == [0, 500]
