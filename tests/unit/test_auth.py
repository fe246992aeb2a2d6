"""Registry credentials (static, docker config.json, credential helpers) and WWW-Authenticate parsing."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import provider.registry.auth as auth
from provider.registry.auth import Challenge, Credentials, CredentialStore, parse_challenges, run_helper
from provider.registry.settings import RegistrySettings
from verifiers.base import Undecided
from verifiers.errors import AuthenticationFailed, Unavailable

# --- parse_challenges -------------------------------------------------------------------------------

CHALLENGES: list[tuple[str, str, list[Challenge]]] = [
    (
        "bearer",
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull"',
        [
            Challenge(
                "bearer",
                {
                    "realm": "https://auth.example.com/token",
                    "service": "registry.example.com",
                    "scope": "repository:team/app:pull",
                },
            )
        ],
    ),
    ("basic", 'Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    (
        "two challenges",
        'Basic realm="basic-realm", Bearer realm="https://t.example/token",service="svc"',
        [
            Challenge("basic", {"realm": "basic-realm"}),
            Challenge("bearer", {"realm": "https://t.example/token", "service": "svc"}),
        ],
    ),
    (
        "escaped quotes and commas inside quotes",
        r'Bearer realm="a \"quoted\" realm",scope="repository:a:pull,push",error="x, y"',
        [
            Challenge(
                "bearer", {"realm": 'a "quoted" realm', "scope": "repository:a:pull,push", "error": "x, y"}
            )
        ],
    ),
    ("escaped backslash", r'Bearer realm="C:\\dir"', [Challenge("bearer", {"realm": "C:\\dir"})]),
    (
        "case of scheme and names, not values",
        'BEARER Realm="Mixed.Case",SERVICE=Reg',
        [Challenge("bearer", {"realm": "Mixed.Case", "service": "Reg"})],
    ),
    (
        "spaces around '=' and ','",
        'Bearer  realm = "r" ,  service = "s"',
        [Challenge("bearer", {"realm": "r", "service": "s"})],
    ),
    (
        "unquoted tokens",
        "Bearer realm=example,service=reg",
        [Challenge("bearer", {"realm": "example", "service": "reg"})],
    ),
    ("empty parameter", "Bearer realm=", [Challenge("bearer", {"realm": ""})]),
    ("empty quoted", 'Bearer realm=""', [Challenge("bearer", {"realm": ""})]),
    ("scheme only", "Negotiate", [Challenge("negotiate", {})]),
    ("two bare schemes", "Negotiate, NTLM", [Challenge("negotiate", {}), Challenge("ntlm", {})]),
    ("empty", "", []),
    ("parameters without a scheme", 'realm="x"', []),
    ("unterminated quote", 'Bearer realm="abc', [Challenge("bearer", {"realm": "abc"})]),
]


@pytest.mark.parametrize(("header", "expected"), [c[1:] for c in CHALLENGES], ids=[c[0] for c in CHALLENGES])
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


@settings(deadline=None)
@given(st.text())
def test_parse_challenges_never_raises(header: str) -> None:
    for challenge in parse_challenges(header):
        assert challenge.scheme == challenge.scheme.lower() and challenge.scheme
        assert all(name == name.lower() and name for name in challenge.params)


@settings(deadline=None)
@given(st.text(alphabet='Bearer realm="\\,= BasicX', max_size=40))
def test_parse_challenges_never_raises_on_near_misses(header: str) -> None:
    assert isinstance(parse_challenges(header), list)


@settings(deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
        st.text(st.characters(codec="utf-8"), max_size=20),
        max_size=4,
    )
)
def test_quoted_parameters_round_trip(params: dict[str, str]) -> None:
    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = "Bearer " + ", ".join(f"{k}={quote(v)}" for k, v in params.items())
    assert parse_challenges(header) == [Challenge("bearer", params)]


# --- Credentials ------------------------------------------------------------------------------------


def test_credentials_repr_hides_the_secrets() -> None:
    credentials = Credentials("alice", "hunter2-secret", identity_token="refresh-token-secret")
    for text in (repr(credentials), str(credentials), repr(RegistrySettings(credentials=credentials))):
        assert "alice" in text
        assert "hunter2-secret" not in text
        assert "refresh-token-secret" not in text


def test_basic_header() -> None:
    header = Credentials("alice", "pa:ss wörd").basic_header()
    assert header.startswith("Basic ")
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "alice:pa:ss wörd"


# --- CredentialStore: static and docker config.json -------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def docker_config(tmp_path: Path, data: Any, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


async def test_static_credentials_win(tmp_path: Path) -> None:
    config = docker_config(tmp_path, {"auths": {"reg.example.com": {"auth": b64("docker:config")}}})
    store = CredentialStore({"reg.example.com": Credentials("static", "pw")}, [config])
    assert await store.get("reg.example.com") == Credentials("static", "pw")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"auth": b64("alice:secret")}, Credentials("alice", "secret")),
        ({"auth": b64("alice:pa:ss")}, Credentials("alice", "pa:ss")),  # split at the first ':'
        ({"auth": b64("alice:")}, Credentials("alice", "")),
        ({"username": "bob", "password": "pw"}, Credentials("bob", "pw")),
        ({"auth": b64("bob:"), "identitytoken": "refresh"}, Credentials("bob", "", identity_token="refresh")),
        ({"identitytoken": "refresh"}, Credentials("<token>", "", identity_token="refresh")),
        ({}, None),  # as written by `docker login` with a credsStore
        ({"auth": ""}, None),
        ({"username": "bob"}, None),
        ({"username": "", "password": "pw"}, None),
    ],
)
async def test_auths_entries(tmp_path: Path, entry: dict[str, str], expected: Credentials | None) -> None:
    store = CredentialStore(docker_configs=[docker_config(tmp_path, {"auths": {"reg.example.com": entry}})])
    assert await store.get("reg.example.com") == expected


@pytest.mark.parametrize(
    "config_key", ["reg.example.com:5000", "https://reg.example.com:5000", "http://reg.example.com:5000"]
)
async def test_auths_keys_with_a_scheme(tmp_path: Path, config_key: str) -> None:
    config = docker_config(tmp_path, {"auths": {config_key: {"auth": b64("u:p")}}})
    store = CredentialStore(docker_configs=[config])
    assert await store.get("reg.example.com:5000") == Credentials("u", "p")
    assert await store.get("reg.example.com") is None  # another host (no port)


@pytest.mark.parametrize(
    "config_key", ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
)
@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "registry-1.docker.io"])
async def test_docker_hub_aliases(tmp_path: Path, config_key: str, host: str) -> None:
    config = docker_config(tmp_path, {"auths": {config_key: {"auth": b64("hubuser:hubpass")}}})
    store = CredentialStore(docker_configs=[config])
    assert await store.get(host) == Credentials("hubuser", "hubpass")
    assert await store.get("quay.io") is None


async def test_unknown_host_and_empty_configs(tmp_path: Path) -> None:
    store = CredentialStore(docker_configs=[docker_config(tmp_path, {})])
    assert await store.get("reg.example.com") is None
    assert await CredentialStore().get("reg.example.com") is None


async def test_docker_configs_are_searched_in_order(tmp_path: Path) -> None:
    empty = docker_config(tmp_path, {"auths": {"other.io": {"auth": b64("o:o")}}}, "empty.json")
    first = docker_config(tmp_path, {"auths": {"reg.example.com": {"auth": b64("first:1")}}}, "first.json")
    second = docker_config(tmp_path, {"auths": {"reg.example.com": {"auth": b64("second:2")}}}, "second.json")
    assert await CredentialStore(docker_configs=[empty, first, second]).get("reg.example.com") == Credentials(
        "first", "1"
    )
    assert await CredentialStore(docker_configs=[second, first]).get("reg.example.com") == Credentials(
        "second", "2"
    )


@pytest.mark.parametrize(
    "auth_value", ["!!!not base64", b64("no-colon"), base64.b64encode(b"\xff:\xfe").decode()]
)
def test_malformed_auth_is_refused_at_construction_naming_the_file(tmp_path: Path, auth_value: str) -> None:
    config = docker_config(tmp_path, {"auths": {"reg.example.com": {"auth": auth_value}}})
    with pytest.raises(ValueError, match=re.escape("auths['reg.example.com']")) as info:
        CredentialStore(docker_configs=[config])
    assert str(config) in str(info.value)


@pytest.mark.parametrize(
    ("content", "fragment"), [("{not json", "docker config"), ("[1]", "not a JSON object")]
)
def test_unreadable_docker_configs_are_refused_at_construction(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=fragment):
        CredentialStore(docker_configs=[path])


def test_a_missing_docker_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="docker config"):
        CredentialStore(docker_configs=[tmp_path / "absent.json"])


# --- credential helpers -----------------------------------------------------------------------------

HELPER = r"""#!/bin/sh
[ "$1" = get ] || { echo "unexpected arguments: $*" >&2; exit 64; }
url=$(cat)
case "$url" in
  *notfound*) echo "credentials not found in native keychain"; exit 1 ;;
  *broken*) echo "keychain is locked" >&2; exit 2 ;;
  *hang*) exec sleep 30 ;;
  *badjson*) echo "this is not json"; exit 0 ;;
  *nosecret*) printf '{"Username":"u"}'; exit 0 ;;
  *token*) printf '{"ServerURL":"%s","Username":"<token>","Secret":"refresh-token"}' "$url"; exit 0 ;;
esac
printf '{"ServerURL":"%s","Username":"user for %s","Secret":"s3cret"}' "$url" "$url"
"""


@pytest.fixture
def helper_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`docker-credential-test` on PATH: it answers `get` with the server URL it read on stdin."""
    directory = tmp_path / "bin"
    directory.mkdir()
    program = directory / "docker-credential-test"
    program.write_text(HELPER)
    program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ.get('PATH', '')}")
    return program


async def test_cred_helpers(tmp_path: Path, helper_path: Path) -> None:
    config = docker_config(tmp_path, {"credHelpers": {"reg.example.com": "test"}})
    store = CredentialStore(docker_configs=[config])
    assert await store.get("reg.example.com") == Credentials("user for reg.example.com", "s3cret")
    assert await store.get("other.example.com") is None


async def test_cred_helpers_come_before_auths(tmp_path: Path, helper_path: Path) -> None:
    config = docker_config(
        tmp_path,
        {"credHelpers": {"reg.example.com": "test"}, "auths": {"reg.example.com": {"auth": b64("auths:pw")}}},
    )
    store = CredentialStore(docker_configs=[config])
    assert await store.get("reg.example.com") == Credentials("user for reg.example.com", "s3cret")


@pytest.mark.parametrize(
    ("host", "server_url"),
    [("reg.example.com", "reg.example.com"), ("docker.io", "https://index.docker.io/v1/")],
)
async def test_creds_store(tmp_path: Path, helper_path: Path, host: str, server_url: str) -> None:
    store = CredentialStore(docker_configs=[docker_config(tmp_path, {"credsStore": "test"})])
    assert await store.get(host) == Credentials(f"user for {server_url}", "s3cret")


async def test_auths_come_before_creds_store(tmp_path: Path, helper_path: Path) -> None:
    config = docker_config(
        tmp_path,
        {"credsStore": "test", "auths": {"reg.example.com": {"auth": b64("auths:pw")}, "other.io": {}}},
    )
    store = CredentialStore(docker_configs=[config])
    assert await store.get("reg.example.com") == Credentials("auths", "pw")
    assert await store.get("other.io") == Credentials("user for other.io", "s3cret")


async def test_a_helper_token_is_an_identity_token(helper_path: Path) -> None:
    assert await run_helper("test", "token.example.com") == Credentials(
        "<token>", "", identity_token="refresh-token"
    )


async def test_credentials_not_found_is_none(tmp_path: Path, helper_path: Path) -> None:
    config = docker_config(tmp_path, {"credHelpers": {"notfound.example.com": "test"}})
    assert await CredentialStore(docker_configs=[config]).get("notfound.example.com") is None


@pytest.mark.parametrize(
    ("server_url", "fragment"),
    [
        ("broken.example.com", "failed: keychain is locked"),
        ("badjson.example.com", "printed invalid JSON"),
        ("nosecret.example.com", "printed no Username/Secret"),
    ],
)
async def test_a_failing_helper_is_authentication_failed(
    helper_path: Path, server_url: str, fragment: str
) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        await run_helper("test", server_url)
    assert fragment in info.value.message
    assert "docker-credential-test" in info.value.message
    assert isinstance(info.value, Unavailable) and isinstance(info.value, Undecided)
    assert info.value.reason == "registry_auth_failed"


async def test_a_hanging_helper_times_out(helper_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "HELPER_TIMEOUT", 0.2)
    started = time.monotonic()
    with pytest.raises(AuthenticationFailed, match=r"did not answer in 0.2s"):
        await run_helper("test", "hang.example.com")
    assert time.monotonic() - started < 5


async def test_a_missing_helper(tmp_path: Path) -> None:
    store = CredentialStore(docker_configs=[docker_config(tmp_path, {"credsStore": "countersign-absent"})])
    with pytest.raises(
        AuthenticationFailed, match="docker-credential-countersign-absent could not be started"
    ):
        await store.get("reg.example.com")


@pytest.mark.parametrize("name", ["../test", "te st", "test;true", "a/b", "", "$(id)"])
async def test_invalid_helper_names_are_refused(helper_path: Path, name: str) -> None:
    with pytest.raises(AuthenticationFailed, match="is not valid"):
        await run_helper(name, "reg.example.com")


async def test_an_invalid_helper_name_in_a_config_is_refused(tmp_path: Path, helper_path: Path) -> None:
    config = docker_config(tmp_path, {"credHelpers": {"reg.example.com": "../bin/docker-credential-test"}})
    with pytest.raises(AuthenticationFailed, match="is not valid"):
        await CredentialStore(docker_configs=[config]).get("reg.example.com")
