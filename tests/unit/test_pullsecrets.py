"""provider/kube/pullsecrets.py: a v1 key's credentials from its namespace's Secrets (over a recorded API)."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from provider.kube.pullsecrets import DOCKERCFG, DOCKERCONFIGJSON, PullSecrets, registry_host
from provider.registry.auth import Credentials
from verifiers.base import Undecided
from verifiers.reference import parse_key


class ApiError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class Api:
    """`KubeGetter` over a dict of API paths; counts gets; a value that is an exception is raised."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.gets: list[str] = []

    async def get(self, path: str) -> dict[str, Any] | None:
        self.gets.append(path)
        found = self.objects.get(path)
        if isinstance(found, Exception):
            raise found
        return found


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.b64encode(raw).decode()


def dockerconfigjson(auths: dict[str, Any]) -> dict[str, Any]:
    return {"type": DOCKERCONFIGJSON, "data": {".dockerconfigjson": b64({"auths": auths})}}


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def key(namespace: str = "a", secrets: tuple[str, ...] = ("regcred",), sa: str = "default") -> Any:
    doc = {"image": "r.example/app:1", "imagePullSecrets": list(secrets), "namespace": namespace}
    return parse_key(json.dumps({**doc, "serviceAccount": sa, "v": 1}))


SECRETS = "/api/v1/namespaces/a/secrets/"


async def test_the_keys_secrets_give_credentials_by_host_first_secret_first() -> None:
    api = Api(
        {
            SECRETS + "regcred": dockerconfigjson(
                {"https://r.example/v1/": auth("alice", "pw"), "index.docker.io": auth("hub", "x")}
            ),
            SECRETS + "old": {
                "type": DOCKERCFG,
                "data": {".dockercfg": b64({"r.example": auth("bob", "b")})},
            },
        }
    )
    creds = await PullSecrets(api).credentials(key(secrets=("regcred", "old")))
    assert creds.for_host("r.example") == Credentials("alice", "pw")
    assert creds.for_host("docker.io") == Credentials("hub", "x")
    assert creds.notes == () and creds.identity
    old_only = await PullSecrets(api).credentials(key(secrets=("old",)))
    assert old_only.for_host("r.example") == Credentials("bob", "b")
    assert old_only.identity != creds.identity


async def test_without_secrets_in_the_key_the_service_accounts_are_read() -> None:
    api = Api(
        {
            "/api/v1/namespaces/a/serviceaccounts/builder": {"imagePullSecrets": [{"name": "regcred"}]},
            SECRETS + "regcred": dockerconfigjson({"r.example": auth("alice", "pw")}),
        }
    )
    creds = await PullSecrets(api).credentials(key(secrets=(), sa="builder"))
    assert creds.for_host("r.example") == Credentials("alice", "pw")
    # a key that names secrets does not read the service account (the API server already merged them)
    api.gets.clear()
    await PullSecrets(api).credentials(key(secrets=("regcred",), sa="builder"))
    assert api.gets == [SECRETS + "regcred"]


BAD_SECRETS: dict[str, tuple[Any, str]] = {
    "missing": (None, "Secret a/regcred not found"),
    "opaque": ({"type": "Opaque", "data": {}}, "is of type 'Opaque'"),
    "no data": ({"type": DOCKERCONFIGJSON}, "has no .dockerconfigjson"),
    "not base64": ({"type": DOCKERCONFIGJSON, "data": {".dockerconfigjson": "%%%"}}, "not base64 of a JSON"),
    "not json": (
        {"type": DOCKERCONFIGJSON, "data": {".dockerconfigjson": b64(b"{")}},
        "not base64 of a JSON",
    ),
    "no auths": ({"type": DOCKERCONFIGJSON, "data": {".dockerconfigjson": b64([])}}, "has no 'auths' object"),
    "huge": ({"type": DOCKERCONFIGJSON, "data": {".dockerconfigjson": "A" * 200_000}}, "larger than"),
    "bad auth": (dockerconfigjson({"r.example": {"auth": "%%%"}}), "'auth' is not base64"),
    "a path": (dockerconfigjson({"r.example/team": auth("x", "y")}), "is not a registry host"),
    "forbidden": (ApiError(403), "may not read it (HTTP 403"),
}


@pytest.mark.parametrize("secret", BAD_SECRETS.values(), ids=BAD_SECRETS.keys())
async def test_an_unusable_secret_contributes_nothing_and_says_why_without_its_contents(
    secret: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    value, note = secret
    api = Api({SECRETS + "regcred": value})
    with caplog.at_level(logging.WARNING):
        creds = await PullSecrets(api).credentials(key())
    assert creds.hosts == {} and creds.identity == ""
    assert any(note in n for n in creds.notes), creds.notes
    assert note in caplog.text
    assert "%%%" not in caplog.text and "AAAA" not in caplog.text


async def test_a_secret_in_another_namespace_is_never_read() -> None:
    api = Api({"/api/v1/namespaces/b/secrets/regcred": dockerconfigjson({"r.example": auth("b", "b")})})
    creds = await PullSecrets(api).credentials(key(namespace="a"))
    assert creds.hosts == {} and api.gets == [SECRETS + "regcred"]


async def test_an_unreachable_api_server_is_undecided() -> None:
    with pytest.raises(Undecided) as info:
        await PullSecrets(Api({SECRETS + "regcred": ApiError(0)})).credentials(key())
    assert info.value.reason == "kubernetes_unavailable"


async def test_lookups_are_cached_for_the_ttl_and_bounded() -> None:
    api = Api({SECRETS + "regcred": dockerconfigjson({"r.example": auth("alice", "pw")})})
    source = PullSecrets(api, ttl=60.0)
    for _ in range(3):
        await source.credentials(key())
    assert api.gets == [SECRETS + "regcred"]
    uncached = PullSecrets(api, ttl=0.0)
    await uncached.credentials(key())
    await uncached.credentials(key())
    assert len(api.gets) == 3
    small = PullSecrets(Api({}), max_entries=2)
    for i in range(10):
        await small.credentials(key(secrets=(f"s{i}",)))
    assert len(small._cache) == 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("absent", [None, ApiError(403), ApiError(401)], ids=["missing", "403", "401"])
async def test_a_missing_or_unreadable_object_is_remembered_for_the_negative_ttl_only(
    absent: Exception | None,
) -> None:
    found = dockerconfigjson({"r.example": auth("alice", "pw")})
    api = Api({SECRETS + "regcred": absent, SECRETS + "found": found})
    clock = Clock()
    source = PullSecrets(api, ttl=30.0, negative_ttl=5.0, clock=clock)
    missing, present = key(secrets=("regcred",)), key(secrets=("found",))
    assert (await source.credentials(missing)).hosts == {}
    await source.credentials(present)
    assert len(api.gets) == 2
    clock.now += 4.9  # both still cached
    await source.credentials(missing)
    await source.credentials(present)
    assert len(api.gets) == 2
    # The tenant creates the Secret (or the operator grants the RBAC): used once the negative TTL is over,
    # while the Secret that was found is not read again before its own TTL.
    api.objects[SECRETS + "regcred"] = found
    clock.now += 0.2
    assert (await source.credentials(missing)).hosts == {"r.example": Credentials("alice", "pw")}
    await source.credentials(present)
    assert api.gets == [SECRETS + "regcred", SECRETS + "found", SECRETS + "regcred"]
    clock.now += 25.0  # 30.1 s after the first read of "found"; 25 s after "regcred" was found
    await source.credentials(present)
    await source.credentials(missing)
    assert api.gets[3:] == [SECRETS + "found"]


async def test_the_negative_ttl_is_at_most_the_ttl() -> None:
    api = Api({})
    clock = Clock()
    source = PullSecrets(api, ttl=2.0, negative_ttl=5.0, clock=clock)
    await source.credentials(key())
    clock.now += 2.5
    await source.credentials(key())
    assert len(api.gets) == 2


@pytest.mark.parametrize(
    ("config_key", "host"),
    [
        ("r.example", "r.example"),
        ("https://r.example:5000", "r.example:5000"),
        ("https://r.example/v2/", "r.example"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("R.Example", "r.example"),
        ("r.example/team/app", None),
        ("https://r.example/?x=1", None),
        ("", None),
    ],
)
def test_registry_hosts_of_docker_config_keys(config_key: str, host: str | None) -> None:
    assert registry_host(config_key) == host
