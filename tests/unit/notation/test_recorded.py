"""Envelopes recorded from notation-go verify, and expose what the layers above need."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID

from verifiers.notation.envelope import COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, is_expired, parse_and_verify

TIMESTAMPED = [
    ("jwsWithTimestamp.sig", JWS_MEDIA_TYPE),
    ("coseWithTimestamp.sig", COSE_MEDIA_TYPE),
    ("jwsExpiredWithTimestamp.sig", JWS_MEDIA_TYPE),
    ("coseExpiredWithTimestamp.sig", COSE_MEDIA_TYPE),
    ("timestampBeforeNotBefore.sig", JWS_MEDIA_TYPE),
    ("timestampAfterNotAfter.sig", COSE_MEDIA_TYPE),
]


def _subject_manifest(testdata: Path) -> dict[str, object]:
    index = json.loads((testdata / "oci-layout" / "index.json").read_bytes())
    [manifest] = index["manifests"]
    assert isinstance(manifest, dict)
    return manifest


@pytest.mark.parametrize(
    ("name", "media_type"), [("jws_signature.sig", JWS_MEDIA_TYPE), ("cose_signature.sig", COSE_MEDIA_TYPE)]
)
def test_recorded_envelope_verifies(notation_testdata: Path, name: str, media_type: str) -> None:
    verified = parse_and_verify((notation_testdata / name).read_bytes(), media_type)

    manifest = _subject_manifest(notation_testdata)
    target = verified.payload.target
    assert target.digest == manifest["digest"]
    assert target.size == manifest["size"]
    assert target.media_type == manifest["mediaType"]
    assert target.annotations == {}
    blob = notation_testdata / "oci-layout" / "blobs" / "sha256" / target.digest.removeprefix("sha256:")
    assert len(blob.read_bytes()) == target.size
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == target.digest

    signer = verified.signer
    assert signer.signing_scheme == "notary.x509"
    assert signer.algorithm == "PS256"
    assert signer.critical == ("io.cncf.notary.signingScheme",)
    assert signer.signing_time is not None and signer.signing_time.year == 2023
    assert signer.authentic_signing_time is None
    assert signer.expiry is None and not is_expired(signer, signer.signing_time)
    assert signer.signing_agent == "Notation/1.0.0"
    assert signer.timestamp_token is None
    assert len(signer.certificate_chain) == 1
    [cn] = signer.leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == "alpine"
    assert dict(signer.extended_attributes) == {}


def test_recorded_signing_times_agree(notation_testdata: Path) -> None:
    """JWS writes RFC 3339 with an offset, COSE writes epoch seconds; both decode to aware datetimes."""
    jws = parse_and_verify((notation_testdata / "jws_signature.sig").read_bytes(), JWS_MEDIA_TYPE)
    cose = parse_and_verify((notation_testdata / "cose_signature.sig").read_bytes(), COSE_MEDIA_TYPE)
    assert jws.signer.signing_time is not None and cose.signer.signing_time is not None
    assert jws.signer.signing_time.utcoffset() is not None
    assert jws.payload.target == cose.payload.target


@pytest.mark.parametrize(("name", "media_type"), TIMESTAMPED)
def test_timestamped_envelopes_expose_the_token(notation_testdata: Path, name: str, media_type: str) -> None:
    verified = parse_and_verify((notation_testdata / "timestamp" / name).read_bytes(), media_type)
    token = verified.signer.timestamp_token
    assert token is not None
    assert token[:1] == b"\x30"  # a DER SEQUENCE: the RFC 3161 ContentInfo, passed through untouched
    assert verified.payload.target.digest.startswith("sha256:c0669ef3")


def test_envelope_without_timestamp_exposes_none(notation_testdata: Path) -> None:
    raw = (notation_testdata / "timestamp" / "withoutTimestamp.sig").read_bytes()
    assert parse_and_verify(raw, JWS_MEDIA_TYPE).signer.timestamp_token is None


@pytest.mark.parametrize(
    ("name", "wrong"), [("jws_signature.sig", COSE_MEDIA_TYPE), ("cose_signature.sig", JWS_MEDIA_TYPE)]
)
def test_recorded_envelope_under_the_other_media_type_is_malformed(
    notation_testdata: Path, name: str, wrong: str
) -> None:
    from verifiers.notation.envelope import EnvelopeError

    with pytest.raises(EnvelopeError) as info:
        parse_and_verify((notation_testdata / name).read_bytes(), wrong)
    assert info.value.reason == "envelope_malformed"
