"""Malformed referrer manifests, as anyone who can push could attach them, and pushing raw bytes.

`junk_manifests(subject_digest, artifact_type)` (from the plugin authors' kit, `verifiers.testing.junk`)
gives each junk shape as raw manifest bytes (most of them otherwise valid, so only the junk makes them
invalid). Unit tests of verifiers hand them over through `verifiers.testing.InMemoryRegistry(
check_manifests=False)`; the integration tests push the same bytes to a real registry with `push_manifest`.
"""

from __future__ import annotations

from typing import Any

from verifiers import oci
from verifiers.testing import digest_of
from verifiers.testing.junk import EMPTY, LAYER, LAYER_BYTES, junk_manifests

__all__ = [
    "EMPTY",
    "LAYER",
    "LAYER_BYTES",
    "OCI_MANIFEST",
    "digest_of",
    "junk_manifests",
    "push_blob",
    "push_manifest",
    "push_referenced_blobs",
]

OCI_MANIFEST = oci.OCI_MANIFEST


# --- pushing raw content to a real registry (plain HTTP test registries) ------------------------------------


def _request(method: str, url: str, data: bytes | None = None, content_type: str | None = None) -> Any:
    import urllib.request

    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    return urllib.request.urlopen(request, timeout=30)  # a test registry on 127.0.0.1


def push_blob(base_url: str, repo: str, data: bytes) -> str:
    """Upload `data` as a blob (monolithic POST + PUT); its digest."""
    from urllib.parse import urljoin

    digest = digest_of(data)
    with _request("POST", f"{base_url}/v2/{repo}/blobs/uploads/") as response:
        location = urljoin(f"{base_url}/", response.headers["Location"])
    separator = "&" if "?" in location else "?"
    with _request("PUT", f"{location}{separator}digest={digest}", data, "application/octet-stream"):
        pass
    return digest


def push_manifest(
    base_url: str, repo: str, data: bytes, media_type: str = OCI_MANIFEST, *, tag: str | None = None
) -> str:
    """PUT raw manifest bytes by digest (or under `tag`); raises urllib.error.HTTPError when the registry
    refuses them. Returns the digest."""
    digest = digest_of(data)
    with _request("PUT", f"{base_url}/v2/{repo}/manifests/{tag or digest}", data, media_type):
        pass
    return digest


def push_referenced_blobs(base_url: str, repo: str) -> None:
    """The blobs the junk manifests name (an empty config and a 5-byte layer), so a registry finds them."""
    assert push_blob(base_url, repo, b"{}") == EMPTY["digest"]
    assert push_blob(base_url, repo, LAYER_BYTES) == LAYER["digest"]
