"""A registry that lies, stalls, redirects, bloats and plants junk, against ``countersign serve``.

Every case goes through :meth:`Countersign.check_case`: answered within the verify deadline, in the right
class (decided / invalid / undecided), never allowed unless a valid signature sits beside the junk, and
the server healthy afterwards (``/healthz``, the known-good signed image still allowed, RSS bounded).
"""

from __future__ import annotations

import base64
import json

import pytest
from aiohttp import web

from tests.adversarial.conftest import PASSWORD, USERNAME, Listeners, TlsHostile
from tests.adversarial.harness import Countersign
from tests.support.hostile_registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    Hit,
    HostileRegistry,
    bearer_challenge,
    copy_image,
    deep_json,
    digest_mismatch,
    oversized,
    paging_bomb,
    redirect,
    redirect_loop,
    reset,
    serve_bytes,
    stall,
    status,
    trickle,
    wait_until,
)
from tests.support.images import PushedImage
from tests.support.registries import Registry

COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SPDX = "application/spdx+json"
METADATA = "169.254.169.254"


def _no_verifier_undecided(value: dict[str, object]) -> None:
    verifiers = value.get("verifiers")
    assert isinstance(verifiers, list)
    for verifier in verifiers:
        assert isinstance(verifier, dict)
        details = verifier.get("details")
        assert not (isinstance(details, dict) and details.get("undecided")), f"undecided verifier: {value}"


def test_signed_image_copied_from_a_real_registry_is_allowed(healthy: Countersign) -> None:
    """The control every case relies on: real cosign signature and SBOM, served by the hostile registry."""
    assert healthy.good_key is not None
    healthy.check_case(healthy.good_key, "decided", reason="verified", allowed=True)


# --- lies -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["digest", "tag"])
def test_digest_mismatch_is_an_integrity_denial(
    healthy: Countersign, hostile: HostileRegistry, by: str
) -> None:
    repo = f"bad/mismatch-{by}"
    digest = hostile.store.put_image(repo, f"mismatch-{by}", tag="1")
    hostile.script(repo, digest_mismatch(), kinds={"manifests"})
    key = f"{hostile.host}/{repo}@{digest}" if by == "digest" else f"{hostile.host}/{repo}:1"
    healthy.check_case(key, "decided", reason="registry_integrity_error")


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
def test_oversized_manifest_is_too_large(
    healthy: Countersign, hostile: HostileRegistry, content_length: bool
) -> None:
    repo = f"bad/oversized-{int(content_length)}"
    hostile.script(repo, oversized(5 * 1024 * 1024, content_length=content_length), kinds={"manifests"})
    healthy.check_case(f"{hostile.host}/{repo}:1", "decided", reason="content_too_large")


@pytest.mark.parametrize("shape", ["list", "object"])
def test_manifest_nested_100k_deep_is_content_invalid(
    healthy: Countersign, hostile: HostileRegistry, shape: str
) -> None:
    repo = f"bad/deep-manifest-{shape}"
    hostile.script(repo, serve_bytes(deep_json(100_000, kind=shape)), kinds={"manifests"})
    healthy.check_case(f"{hostile.host}/{repo}:1", "decided", reason="content_invalid")


def test_referrers_index_nested_100k_deep_is_decided(healthy: Countersign, hostile: HostileRegistry) -> None:
    repo = "bad/deep-referrers"
    digest = hostile.store.put_image(repo, "deep-referrers")
    hostile.script(repo, serve_bytes(deep_json(100_000, kind="object"), OCI_INDEX), kinds={"referrers"})
    answer = healthy.check_case(f"{hostile.host}/{repo}@{digest}", "decided")
    _no_verifier_undecided(answer.value(f"{hostile.host}/{repo}@{digest}"))


@pytest.mark.parametrize("kind", ["list", "object"])
def test_token_response_nested_100k_deep_is_an_authentication_failure(
    healthy: Countersign, hostile: HostileRegistry, kind: str
) -> None:
    """Under the token-size limit (200 KB of brackets), so the nesting bound is what answers: no token,
    an authentication failure (undecided, as every token failure: often transient), never a crash."""
    repo = f"auth/deep-token-{kind}"
    body = deep_json(100_000, kind=kind) if kind == "list" else deep_json(40_000, kind=kind)
    assert len(body) < 256 * 1024

    async def deep_token(hit: Hit) -> web.StreamResponse | None:
        if hit.kind != "token":
            return None
        return web.Response(body=body, content_type="application/json")

    hostile.script(repo, bearer_challenge(f"{hostile.url}/token", then=deep_token))
    answer = healthy.check_case(f"{hostile.host}/{repo}:1", "undecided", reason="registry_auth_failed")
    assert "nested" in answer.system_error, answer.describe()


# --- stalls and refusals ------------------------------------------------------------------------------------


def test_trickled_body_is_undecided_in_time(healthy: Countersign, hostile: HostileRegistry) -> None:
    repo = "bad/trickle"
    hostile.script(repo, trickle(0.2), kinds={"manifests"})
    healthy.check_case(f"{hostile.host}/{repo}:1", "undecided")


@pytest.mark.parametrize("after_headers", [False, True], ids=["no-headers", "no-body"])
def test_stalled_registry_is_undecided_in_time(
    healthy: Countersign, hostile: HostileRegistry, after_headers: bool
) -> None:
    repo = f"bad/stall-{int(after_headers)}"
    hostile.script(repo, stall(after_headers=after_headers))
    healthy.check_case(f"{hostile.host}/{repo}:1", "undecided")


def test_rate_limited_beyond_the_deadline_is_undecided(
    healthy: Countersign, hostile: HostileRegistry
) -> None:
    repo = "bad/429"
    hostile.script(repo, status(429, {"Retry-After": "60"}))
    healthy.check_case(f"{hostile.host}/{repo}:1", "undecided", reason="registry_rate_limited")


def test_server_errors_are_undecided(healthy: Countersign, hostile: HostileRegistry) -> None:
    repo = "bad/503"
    hostile.script(repo, status(503))
    healthy.check_case(f"{hostile.host}/{repo}:1", "undecided", reason="registry_unavailable")


def test_connection_reset_is_undecided_with_a_generic_text(
    healthy: Countersign, hostile: HostileRegistry
) -> None:
    repo = "bad/reset"
    hostile.script(repo, reset())
    key = f"{hostile.host}/{repo}:1"
    answer = healthy.check_case(key, "undecided", reason="registry_unavailable")
    assert (
        f"{key}: cannot reach {hostile.host} (the provider's log has the details) [registry_unavailable]"
        in answer.system_error
    ), answer.describe()


# --- redirects ----------------------------------------------------------------------------------------------


def test_redirect_loop_is_content_invalid(healthy: Countersign, hostile: HostileRegistry) -> None:
    repo = "bad/redirect-loop"
    hostile.script(repo, redirect_loop())
    healthy.check_case(f"{hostile.host}/{repo}:1", "decided", reason="content_invalid")


def test_redirect_to_cloud_metadata_is_refused(healthy: Countersign, hostile: HostileRegistry) -> None:
    repo = "bad/redirect-metadata"
    hostile.script(repo, redirect(f"http://{METADATA}/latest/meta-data/"))
    healthy.check_case(f"{hostile.host}/{repo}:1", "decided", reason="egress_refused")


def test_redirect_to_another_loopback_port_is_refused_without_contact(
    healthy: Countersign, hostile: HostileRegistry, listeners: Listeners
) -> None:
    repo = "bad/redirect-loopback"
    hostile.script(repo, redirect(f"http://{listeners.forbidden.host}/v2/x/manifests/1"))
    before = listeners.forbidden.connections
    healthy.check_case(f"{hostile.host}/{repo}:1", "decided", reason="egress_refused")
    assert not wait_until(lambda: listeners.forbidden.connections > before, 0.5), "the listener was contacted"


def test_redirect_from_https_to_http_is_an_integrity_denial(
    healthy: Countersign, hostile: HostileRegistry, hostile_tls: TlsHostile, signed_image: PushedImage
) -> None:
    repo = "bad/downgrade"
    target = f"{hostile.url}/v2/good/app/manifests/{signed_image.digest}"
    hostile_tls.registry.script(repo, redirect(target))
    healthy.check_case(f"{hostile_tls.registry.host}/{repo}:1", "decided", reason="registry_integrity_error")


# --- token realms and credentials ---------------------------------------------------------------------------


def _basic() -> str:
    return "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()


def test_credentials_go_to_the_registrys_own_realm(
    healthy: Countersign, hostile: HostileRegistry, source_registry: Registry, signed_image: PushedImage
) -> None:
    """The positive control of the realm cases: a realm on the registry's own origin gets the credentials,
    and the signed image behind the challenge is allowed."""
    repo = "auth/own-realm"
    copy_image(source_registry, "apps/signed", signed_image.digest, hostile, repo)
    hostile.script(repo, bearer_challenge(f"{hostile.url}/token"))
    healthy.check_case(f"{hostile.host}/{repo}@{signed_image.digest}", "decided", allowed=True)
    tokens = [r for r in hostile.seen(repo) if r.path == "/token"]
    assert tokens, "no token request reached the registry's own realm"
    assert all(r.authorization == _basic() for r in tokens), [r.authorization for r in tokens]


def test_realm_on_an_unlisted_loopback_port_is_refused_and_gets_nothing(
    healthy: Countersign, hostile: HostileRegistry, listeners: Listeners
) -> None:
    repo = "auth/realm-elsewhere"
    hostile.script(repo, bearer_challenge(f"{listeners.realm.url}/token"))
    healthy.check_case(f"{hostile.host}/{repo}:1", "decided", reason="egress_refused")
    assert listeners.realm.requests == [], [(r.path_qs, r.authorization) for r in listeners.realm.requests]


def test_plain_http_realm_of_another_origin_never_gets_credentials(
    healthy: Countersign, hostile: HostileRegistry, listeners: Listeners
) -> None:
    """The realm is reachable (named under registries:) but is another origin over plain HTTP."""
    repo = "auth/realm-other-origin"
    hostile.script(repo, bearer_challenge(f"{listeners.realm_configured.url}/token"))
    healthy.check_case(f"{hostile.host}/{repo}:1", {"decided", "undecided"})
    leaked = [r.path_qs for r in listeners.realm_configured.requests if r.authorization]
    assert leaked == [], f"credentials sent to {listeners.realm_configured.host}: {leaked}"


def test_realm_at_cloud_metadata_is_refused(healthy: Countersign, hostile: HostileRegistry) -> None:
    repo = "auth/realm-metadata"
    hostile.script(repo, bearer_challenge(f"http://{METADATA}/token"))
    healthy.check_case(f"{hostile.host}/{repo}:1", "decided", reason="egress_refused")


# --- referrers ----------------------------------------------------------------------------------------------


def test_referrers_paging_bomb_is_decided(healthy: Countersign, hostile: HostileRegistry) -> None:
    repo = "bad/paging"
    digest = hostile.store.put_image(repo, "paging")
    hostile.script(repo, paging_bomb(), kinds={"referrers"})
    key = f"{hostile.host}/{repo}@{digest}"
    answer = healthy.check_case(key, "decided")
    _no_verifier_undecided(answer.value(key))


def test_signature_manifest_with_10000_layers_is_denied(
    healthy: Countersign, hostile: HostileRegistry
) -> None:
    repo = "bad/layers"
    store = hostile.store
    digest = store.put_image(repo, "layers")
    payload = {
        "critical": {
            "identity": {"docker-reference": f"{hostile.host}/{repo}"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    blob = store.put_blob(json.dumps(payload).encode())
    layers = [
        {
            "mediaType": SIMPLESIGNING,
            **blob,
            "annotations": {"dev.cosignproject.cosign/signature": base64.b64encode(b"x%05d" % i).decode()},
        }
        for i in range(10_000)
    ]
    config = store.put_blob(b"{}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": layers,
    }
    store.put_manifest(repo, json.dumps(manifest).encode(), tag=f"sha256-{digest.split(':')[1]}.sig")
    key = f"{hostile.host}/{repo}@{digest}"
    answer = healthy.check_case(key, "decided")
    _no_verifier_undecided(answer.value(key))


def test_junk_referrers_beside_a_valid_signature_and_sbom_do_not_block_it(
    healthy: Countersign, hostile: HostileRegistry, source_registry: Registry, signed_image: PushedImage
) -> None:
    """Anyone who can push can plant referrers: a signature referrer whose ``config`` is a list, an SBOM
    referrer whose ``subject`` is a string, a bundle referrer that is a JSON list. They are skipped (and
    noted), and the valid ``.sig`` signature and SBOM beside them still verify."""
    repo = "junk/app"
    copy_image(source_registry, "apps/signed", signed_image.digest, hostile, repo)
    store = hostile.store
    subject = {"mediaType": OCI_MANIFEST, "digest": signed_image.digest, "size": signed_image.size}
    layer = store.put_blob(b"junk")
    # Listed without an artifactType, so a reader must look at the manifest to learn what it is.
    config_a_list = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": [{"mediaType": COSIGN_SIG}],
        "layers": [{"mediaType": SIMPLESIGNING, **layer}],
        "subject": subject,
    }
    data = json.dumps(config_a_list).encode()
    digest = store.put_manifest(repo, data)
    store.add_referrer(
        repo, signed_image.digest, {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(data)}
    )
    sbom_bytes = b'{"spdxVersion": "SPDX-2.3"}'
    subject_a_string = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SPDX,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", **store.put_blob(b"{}")},
        "layers": [{"mediaType": SPDX, **store.put_blob(sbom_bytes)}],
        "subject": signed_image.digest,
    }
    data = json.dumps(subject_a_string).encode()
    digest = store.put_manifest(repo, data)
    store.add_referrer(
        repo,
        signed_image.digest,
        {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(data), "artifactType": SPDX},
    )
    as_list = json.dumps([subject]).encode()
    digest = store.put_manifest(repo, as_list)
    store.add_referrer(
        repo,
        signed_image.digest,
        {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(as_list), "artifactType": BUNDLE},
    )
    healthy.check_case(f"{hostile.host}/{repo}@{signed_image.digest}", "decided", allowed=True)
