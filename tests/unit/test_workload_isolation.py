"""Workload credentials are used for their host only, and what they obtain is never served without them.

A small registry on 127.0.0.1 (aiohttp, in process) with the distribution token flow: its token service
gives alice a token that reads `private/app`, bob a token that reads its manifests but not its referrers
(its signatures), anyone else an anonymous token that reads nothing. The tests read through the real
`RegistryClient`, `CachedRegistry` and `Engine` with `WORKLOAD` set as the engine sets it, and count what
the registry was asked.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from provider.config import Config, Policy
from provider.engine import Engine
from provider.outcome import Decided, UndecidedKey
from provider.registry.auth import Credentials
from provider.registry.cached import CachedRegistry
from provider.registry.client import RegistryClient
from provider.registry.settings import RegistrySettings
from provider.registry.workload import WORKLOAD, WorkloadCredentials
from tests.support.http_servers import served
from verifiers.base import Context, Report, Subject
from verifiers.errors import AuthenticationFailed
from verifiers.reference import Key, parse_key, parse_reference

ALICE = Credentials("alice", "a-secret")
BOB = Credentials("bob", "b-secret")
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
            "size": 2,
        },
        "layers": [],
    }
).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


@dataclass
class AuthRegistry:
    host: str = ""
    asked: list[tuple[str, str]] = field(default_factory=list)  # (path, token)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_get("/v2/{repo:.+}/manifests/{ref}", self.manifest)
        app.router.add_get("/v2/{repo:.+}/referrers/{digest}", self.referrers)
        return app

    async def token(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        user = ""
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (user, password) not in (("alice", "a-secret"), ("bob", "b-secret")):
                return web.Response(status=401)
        return web.json_response({"token": f"token-{user or 'anonymous'}", "expires_in": 300})

    def _challenge(self, repo: str) -> web.Response:
        realm = f'Bearer realm="http://{self.host}/token",service="test",scope="repository:{repo}:pull"'
        return web.Response(status=401, headers={"WWW-Authenticate": realm})

    async def manifest(self, request: web.Request) -> web.Response:
        repo, token = request.match_info["repo"], request.headers.get("Authorization", "")
        self.asked.append((request.path, token))
        if token not in ("Bearer token-alice", "Bearer token-bob"):
            return self._challenge(repo)
        headers = {
            "Docker-Content-Digest": DIGEST,
            "Content-Type": "application/vnd.oci.image.manifest.v1+json",
        }
        return web.Response(body=MANIFEST, headers=headers)

    async def referrers(self, request: web.Request) -> web.Response:
        repo, token = request.match_info["repo"], request.headers.get("Authorization", "")
        self.asked.append((request.path, token))
        if token != "Bearer token-alice":
            return self._challenge(repo)
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
        return web.json_response(index, content_type="application/vnd.oci.image.index.v1+json")


@pytest.fixture
async def registry() -> AsyncIterator[AuthRegistry]:
    registry = AuthRegistry()
    async with served(registry.app()) as host:
        registry.host = host
        yield registry


@pytest.fixture
async def cached(registry: AuthRegistry) -> AsyncIterator[CachedRegistry]:
    client = RegistryClient(settings={registry.host: RegistrySettings(insecure=True)})
    yield CachedRegistry(client, content_bytes=1 << 20, tag_ttl=60.0)
    await client.close()


def as_workload(creds: Credentials | None, host: str) -> WorkloadCredentials | None:
    return None if creds is None else WorkloadCredentials({host: creds})


def test_the_identity_is_a_digest_of_the_credentials_never_the_secret() -> None:
    a, b = WorkloadCredentials({"r.example": ALICE}), WorkloadCredentials({"r.example": BOB})
    again = WorkloadCredentials({"r.example": Credentials("alice", "a-secret")})
    assert len(a.identity) == 64 and a.identity == again.identity != b.identity
    assert a.host_identity("r.example") != b.host_identity("r.example")
    assert a.host_identity("other.example") == "" and WorkloadCredentials().identity == ""
    assert "a-secret" not in repr(a) and "a-secret" not in a.identity
    assert WorkloadCredentials({"other.example": ALICE}).identity != a.identity  # the host counts


async def test_a_tag_and_manifest_read_with_alices_credentials_are_never_served_without_them(
    registry: AuthRegistry, cached: CachedRegistry
) -> None:
    ref = parse_reference(f"{registry.host}/private/app:1")
    pinned = parse_reference(f"{registry.host}/private/app@{DIGEST}")
    WORKLOAD.set(as_workload(ALICE, registry.host))
    assert (await cached.resolve(ref)).digest == DIGEST
    assert (await cached.resolve(ref)).digest == DIGEST  # from the tag cache
    assert (await cached.manifest(pinned, DIGEST)).digest == DIGEST  # from the content cache
    assert await cached.referrers(ref, DIGEST) == []
    alice_reads = len(registry.asked)
    for other in (None, BOB, Credentials("alice", "wrong")):
        WORKLOAD.set(as_workload(other, registry.host))
        if other is not BOB:  # bob may read the manifests himself (with his own token)
            for read in (cached.resolve(ref), cached.resolve(pinned), cached.manifest(ref, DIGEST)):
                with pytest.raises(AuthenticationFailed):
                    await read
        with pytest.raises(AuthenticationFailed):
            await cached.referrers(ref, DIGEST)
    # every one of those reads went to the registry (nothing cached was served), never with alice's token
    later = registry.asked[alice_reads:]
    assert later and all(token != "Bearer token-alice" for _, token in later)
    # and alice still reads from her caches and her token, without asking again
    WORKLOAD.set(as_workload(ALICE, registry.host))
    before = len(registry.asked)
    assert (await cached.resolve(ref)).digest == DIGEST
    assert len(registry.asked) == before


async def test_credentials_for_another_host_change_nothing(
    registry: AuthRegistry, cached: CachedRegistry
) -> None:
    ref = parse_reference(f"{registry.host}/private/app:1")
    WORKLOAD.set(WorkloadCredentials({"elsewhere.example": ALICE}))
    with pytest.raises(AuthenticationFailed):
        await cached.resolve(ref)
    assert all(token != "Bearer token-alice" for _, token in registry.asked)


class Reads:
    """A verifier that passes when it can list the image's referrers (a read through the cache)."""

    type = "reads"
    name = "reads"

    def __init__(self) -> None:
        self.calls = 0

    async def verify(self, subject: Subject, context: Context) -> Report:
        self.calls += 1
        await context.registry.referrers(subject)
        return Report.ok("read", "the referrers were listed")


class Source:
    """A WorkloadSource: credentials by namespace/secret names, counting lookups."""

    def __init__(self, by_secret: dict[str, WorkloadCredentials | None]) -> None:
        self.by_secret = by_secret
        self.lookups = 0

    async def credentials(self, key: Key) -> WorkloadCredentials:
        self.lookups += 1
        found = self.by_secret.get(f"{key.namespace}/{','.join(key.pull_secrets)}")
        return found or WorkloadCredentials(notes=("Secret x/y not found",))

    async def aclose(self) -> None:
        pass


def v1(namespace: str, image: str, secrets: tuple[str, ...] = ("regcred",)) -> str:
    doc = {"image": image, "imagePullSecrets": list(secrets), "namespace": namespace}
    return json.dumps({**doc, "serviceAccount": "default", "v": 1}, sort_keys=True, separators=(",", ":"))


async def test_a_verdict_obtained_with_alices_credentials_is_never_served_to_another_key(
    registry: AuthRegistry, cached: CachedRegistry
) -> None:
    image = f"{registry.host}/private/app:1"
    source = Source(
        {
            "a/regcred": as_workload(ALICE, registry.host),
            "a/bobs": as_workload(BOB, registry.host),  # another Pod of namespace a, with bob's secret
            "b/regcred": as_workload(BOB, registry.host),
        }
    )
    verifier = Reads()
    policy = Policy(name="p", scopes=("*",), namespaces=None, mode="allOf", verifiers=("reads",), threshold=1)
    engine = Engine(Config(policies=(policy,), fingerprint="t"), cached, {"reads": verifier}, workload=source)
    in_a, in_b, in_c = v1("a", image), v1("b", image), v1("c", image)
    first = (await engine.verify([in_a], 5.0))[in_a]
    assert isinstance(first, Decided) and first.value["allowed"] is True, first
    assert verifier.calls == 1
    # B's credentials (they resolve the tag, then the verifier cannot list the signatures), none (a secret not
    # found), an old-style key of A's namespace, a bare key: undecided
    for key in (in_b, v1("a", image, ("bobs",)), in_c, f"[a]{image}", image):
        outcome = (await engine.verify([key], 5.0))[key]
        assert isinstance(outcome, UndecidedKey), (key, outcome)
        assert outcome.reason == "registry_auth_failed"
    c_outcome = (await engine.verify([in_c], 5.0))[in_c]
    assert (
        isinstance(c_outcome, UndecidedKey)
        and "workload pull secrets: Secret x/y not found" in c_outcome.message
    )
    assert verifier.calls == 3  # only bob's keys reached the verifiers (and was not given A's cached verdict)
    # A again: its cached verdict
    again = (await engine.verify([in_a], 5.0))[in_a]
    assert isinstance(again, Decided) and again.value["allowed"] is True and verifier.calls == 3


async def test_without_a_workload_source_v1_keys_use_the_operators_credentials(
    registry: AuthRegistry, cached: CachedRegistry
) -> None:
    image = f"{registry.host}/private/app:1"
    policy = Policy(name="p", scopes=("*",), namespaces=None, mode="allOf", verifiers=("reads",), threshold=1)
    engine = Engine(Config(policies=(policy,), fingerprint="t"), cached, {"reads": Reads()})
    outcome = (await engine.verify([v1("a", image)], 5.0))[v1("a", image)]
    assert isinstance(outcome, UndecidedKey) and outcome.reason == "registry_auth_failed"


def test_single_flight_keys_separate_what_decides_the_credentials() -> None:
    image = "r.example/app:1"
    keys = [parse_key(k) for k in (v1("a", image), v1("a", image, ("other",)), v1("b", image), f"[a]{image}")]
    assert len({(k.namespace, k.service_account, k.pull_secrets) for k in keys}) == 4


async def test_concurrent_keys_with_other_credentials_do_not_share_a_verification(
    registry: AuthRegistry, cached: CachedRegistry
) -> None:
    image = f"{registry.host}/private/app:1"
    source = Source(
        {"a/regcred": as_workload(ALICE, registry.host), "a/bobs": as_workload(BOB, registry.host)}
    )
    policy = Policy(name="p", scopes=("*",), namespaces=None, mode="allOf", verifiers=("reads",), threshold=1)
    engine = Engine(Config(policies=(policy,), fingerprint="t"), cached, {"reads": Reads()}, workload=source)
    alice, bob = v1("a", image), v1("a", image, ("bobs",))
    outcomes = await engine.verify([alice, bob, f"[a]{image}"], 5.0)
    allowed, refused = outcomes[alice], outcomes[bob]
    assert isinstance(allowed, Decided) and allowed.value["allowed"] is True
    assert isinstance(refused, UndecidedKey) and refused.reason == "registry_auth_failed"
    assert isinstance(outcomes[f"[a]{image}"], UndecidedKey)
