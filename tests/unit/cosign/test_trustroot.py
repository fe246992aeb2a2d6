"""Parsing Sigstore trusted roots: the embedded ones, generated ones, and broken ones."""

from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sigstore.models import TrustedRoot as SigstoreTrustedRoot

from tests.support.private_sigstore import PrivateSigstore
from verifiers.cosign.keys import key_id
from verifiers.cosign.trustroot import (
    EMBEDDED_ROOTS,
    load_trusted_root,
    public_good_trusted_root,
    staging_trusted_root,
)


def test_embedded_public_good_root_loads_offline() -> None:
    root = public_good_trusted_root()
    assert root.certificate_authorities
    assert root.tlogs and root.ctlogs
    # Rekor v1's log ID is the SHA-256 of its key's DER SubjectPublicKeyInfo.
    rekor_v1 = [log for log in root.tlogs.values() if log.base_url == "https://rekor.sigstore.dev"]
    assert rekor_v1 and all(key_id(log.key) == log.log_id for log in rekor_v1)


def test_embedded_staging_root_loads_offline() -> None:
    root = staging_trusted_root()
    assert root.timestamp_authorities
    assert any(log.base_url.startswith("https://log2025") for log in root.tlogs.values())


def test_recorded_public_good_root(testdata: Path) -> None:
    root = load_trusted_root((testdata / "cosign" / "trusted_root_pgi.json").read_bytes())
    windows = [authority.window for authority in root.certificate_authorities]
    assert windows[0].end is not None and windows[1].end is None


def test_generated_root_is_what_sigstore_python_reads(sigstore: PrivateSigstore, tmp_path: Path) -> None:
    path = sigstore.write_trusted_root(tmp_path / "trusted_root.json")
    theirs = SigstoreTrustedRoot.from_file(str(path))
    assert len(theirs.get_fulcio_certs()) == 2
    ours = load_trusted_root(path.read_bytes())
    assert set(ours.tlogs) == {sigstore.log_id}
    assert set(ours.ctlogs) == {sigstore.ct_log_id}
    assert ours.certificate_authorities[0].certificates == (sigstore.intermediate_cert, sigstore.root_cert)


def _mutate(sigstore: PrivateSigstore, change: Any) -> bytes:
    document = sigstore.trusted_root_document()
    change(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(mediaType="application/json"), "mediaType"),
        (lambda d: d["tlogs"][0]["publicKey"].update(rawBytes="%%%"), "not valid base64"),
        (lambda d: d["tlogs"][0]["publicKey"].update(validFor={"start": "yesterday"}), "RFC 3339"),
        (lambda d: d["tlogs"][0].pop("logId"), "publicKey and logId"),
        (
            lambda d: d["certificateAuthorities"][0]["certChain"]["certificates"][0].update(
                rawBytes=base64.b64encode(b"not DER").decode()
            ),
            "not a DER certificate",
        ),
        (lambda d: d["certificateAuthorities"][0]["certChain"].update(certificates=[]), "non-empty"),
        (lambda d: (d.update(tlogs=[]), d.update(certificateAuthorities=[])), "neither"),
        (lambda d: d.update(tlogs={}), "must be an array"),
    ],
    ids=["media-type", "key-base64", "validity", "log-id", "ca-der", "empty-chain", "empty", "tlogs-type"],
)
def test_broken_roots_are_value_errors(sigstore: PrivateSigstore, change: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_trusted_root(_mutate(sigstore, change))


@pytest.mark.parametrize(
    "data", [b"", b"[]", b"{", b"\xff", b"[" * 100_000], ids=["empty", "array", "eof", "utf8", "deep"]
)
def test_non_json_roots_are_value_errors(data: bytes) -> None:
    with pytest.raises(ValueError):
        load_trusted_root(data)


def test_unsupported_log_keys_are_skipped_not_fatal(sigstore: PrivateSigstore) -> None:
    def weaken(document: dict[str, Any]) -> None:
        extra = dict(document["tlogs"][0])
        extra["publicKey"] = dict(
            extra["publicKey"], rawBytes=base64.b64encode(b"\x30\x03\x02\x01\x01").decode()
        )
        extra["logId"] = {"keyId": base64.b64encode(b"x" * 32).decode()}
        document["tlogs"].append(extra)

    root = load_trusted_root(_mutate(sigstore, weaken))
    assert set(root.tlogs) == {sigstore.log_id}


@pytest.mark.parametrize("name", ["public-good", "staging"])
def test_the_embedded_roots_are_where_the_installed_sigstore_keeps_them(name: str) -> None:
    """The one read of a dependency's undocumented layout fails here, not in production, if it moves."""
    path = resources.files("sigstore").joinpath(EMBEDDED_ROOTS[name])
    assert path.is_file(), f"sigstore-python no longer has {EMBEDDED_ROOTS[name]}: see docs/decisions.md"
    root = public_good_trusted_root() if name == "public-good" else staging_trusted_root()
    assert root.certificate_authorities and root.tlogs
