"""The notation verifier's own logic: its options, and discovery and judgement over an in-memory registry.

The registry here is a small stand-in for `RegistryReader` (referrers, manifests and blobs from dicts, every
request recorded); the envelopes are the recorded notation-go vectors of ``../shared/testdata/notation``.
Real `notation sign` signatures through the engine are in tests/integration/test_notation.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.notation import SigningChain
from tests.unit.notation.signing import DIGEST, Spec, make_cose, make_jws
from verifiers.base import Context, Descriptor, OptionsError, Report, Subject, Undecided
from verifiers.errors import Unavailable
from verifiers.notation.envelope import COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, parse_and_verify
from verifiers.notation.verifier import ARTIFACT_TYPE, THUMBPRINT_ANNOTATION, NotationVerifier
from verifiers.reference import parse_reference
from verifiers.testing import EMPTY_CONFIG, InMemoryRegistry, artifact_manifest

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPOSITORY = "registry.test/shop/app"
SUBJECT_FIELD = {"mediaType": MANIFEST, "digest": "", "size": 0}


def _policy(stores: Sequence[str] = ("ca:alpine",), level: str = "strict", **extra: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "name": "shop",
        "registryScopes": ["*"],
        "signatureVerification": {"level": level},
        "trustStores": list(stores),
        "trustedIdentities": ["*"],
    }
    policy.update(extra)
    return {"version": "1.0", "trustPolicies": [policy]}


def _store(root: Path, kind: str, name: str, pem: bytes) -> Path:
    directory = root / "x509" / kind / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.crt").write_bytes(pem)
    return root


@pytest.fixture(scope="module")
def stranger_pem() -> bytes:
    """A self-signed CA certificate that did not sign the recorded envelopes."""
    return SigningChain(name="countersign-unit-stranger", intermediate=False).root_pem


@pytest.fixture
def store_dir(tmp_path: Path, stranger_pem: bytes) -> Path:
    return _store(tmp_path / "truststore", "ca", "alpine", stranger_pem)


# --- options -----------------------------------------------------------------------------------------------


def _options_error(options: Mapping[str, Any]) -> OptionsError:
    with pytest.raises(OptionsError) as caught:
        NotationVerifier("notary", options)
    return caught.value


def test_missing_options(store_dir: Path) -> None:
    assert _options_error({}).path == "trustPolicy"
    assert _options_error({"trustStore": str(store_dir)}).path == "trustPolicy"
    neither = _options_error({"trustPolicy": _policy()})
    assert neither.path == "trustStore"
    assert "trustStores" in neither.message
    assert _options_error({"trustPolicy": _policy(), "trustStore": ""}).path == "trustStore"
    assert _options_error({"trustPolicy": 42, "trustStore": str(store_dir)}).path == "trustPolicy"


def test_unknown_option(store_dir: Path) -> None:
    error = _options_error({"trustPolicy": _policy(), "trustStore": str(store_dir), "trustpolicy": "x"})
    assert error.path == "trustpolicy"
    assert "unknown option" in error.message


def test_trust_policy_file_errors(tmp_path: Path, store_dir: Path) -> None:
    missing = _options_error({"trustPolicy": str(tmp_path / "absent.json"), "trustStore": str(store_dir)})
    assert missing.path == "trustPolicy"
    assert "cannot read" in missing.message

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    invalid = _options_error({"trustPolicy": str(broken), "trustStore": str(store_dir)})
    assert invalid.path == "trustPolicy"
    assert "not valid JSON" in invalid.message


def test_trust_policy_file_is_read(tmp_path: Path, store_dir: Path) -> None:
    path = tmp_path / "trustpolicy.json"
    path.write_text(json.dumps(_policy()))
    verifier = NotationVerifier("notary", {"trustPolicy": str(path), "trustStore": str(store_dir)})
    assert [p.name for p in verifier.policies.policies] == ["shop"]
    assert set(verifier.stores) == {("ca", "alpine")}


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({**_policy(), "version": "2.0"}, "trustPolicy.version"),
        ({"version": "1.0", "trustPolicies": []}, "trustPolicy.trustPolicies"),
        (_policy(level="paranoid"), "trustPolicy.trustPolicies[0].signatureVerification.level"),
        (_policy(stores=["ca:alpine", "vault:x"]), "trustPolicy.trustPolicies[0].trustStores[1]"),
        (
            _policy(trustedIdentities=["x509.subject: CN=only"]),
            "trustPolicy.trustPolicies[0].trustedIdentities[0]",
        ),
    ],
)
def test_invalid_policy_names_the_field(store_dir: Path, document: dict[str, Any], path: str) -> None:
    assert _options_error({"trustPolicy": document, "trustStore": str(store_dir)}).path == path


def test_invalid_policy_file_names_the_field(tmp_path: Path, store_dir: Path) -> None:
    path = tmp_path / "trustpolicy.json"
    path.write_text(json.dumps(_policy(level="paranoid")))
    error = _options_error({"trustPolicy": str(path), "trustStore": str(store_dir)})
    assert error.path == "trustPolicy.trustPolicies[0].signatureVerification.level"


def test_trust_store_directory_errors(tmp_path: Path) -> None:
    error = _options_error({"trustPolicy": _policy(), "trustStore": str(tmp_path / "absent")})
    assert error.path == "trustStore"
    (tmp_path / "empty" / "x509" / "ca" / "alpine").mkdir(parents=True)
    error = _options_error({"trustPolicy": _policy(), "trustStore": str(tmp_path / "empty")})
    assert error.path == "trustStore"
    assert "holds no certificate" in error.message


def test_store_named_by_a_policy_must_exist(store_dir: Path) -> None:
    document = {
        "version": "1.0",
        "trustPolicies": [
            {**_policy()["trustPolicies"][0], "name": "a", "registryScopes": ["registry.test/a"]},
            {
                **_policy(stores=["ca:alpine", "tsa:clock"])["trustPolicies"][0],
                "name": "b",
                "registryScopes": ["registry.test/b"],
            },
        ],
    }
    error = _options_error({"trustPolicy": document, "trustStore": str(store_dir)})
    assert error.path == "trustPolicy.trustPolicies[1].trustStores[1]"
    assert "tsa:clock" in error.message


# --- inline trust stores (trustStores) beside the directory (trustStore) -----------------------------------


def test_inline_stores_without_a_directory(stranger_pem: bytes) -> None:
    verifier = NotationVerifier(
        "notary",
        {"trustPolicy": _policy(), "trustStores": [{"name": "ca:alpine", "pem": stranger_pem.decode()}]},
    )
    assert list(verifier.stores) == [("ca", "alpine")]
    [certificate] = verifier.stores[("ca", "alpine")]
    assert certificate.public_bytes(serialization.Encoding.PEM) == stranger_pem


def test_inline_and_directory_stores_together(store_dir: Path, stranger_pem: bytes) -> None:
    verifier = NotationVerifier(
        "notary",
        {
            "trustPolicy": _policy(stores=["ca:alpine", "tsa:clock"]),
            "trustStore": str(store_dir),
            "trustStores": [{"name": "tsa:clock", "pem": stranger_pem.decode()}],
        },
    )
    assert set(verifier.stores) == {("ca", "alpine"), ("tsa", "clock")}


def test_trust_store_options_are_not_confused(store_dir: Path, stranger_pem: bytes) -> None:
    inline = [{"name": "ca:alpine", "pem": stranger_pem.decode()}]
    error = _options_error({"trustPolicy": _policy(), "trustStore": inline})
    assert error.path == "trustStore"
    assert "inline certificates go in trustStores" in error.message
    error = _options_error({"trustPolicy": _policy(), "trustStores": str(store_dir)})
    assert error.path == "trustStores"
    assert "directory goes in trustStore" in error.message


def test_inline_store_errors_name_the_field(stranger_pem: bytes) -> None:
    error = _options_error(
        {
            "trustPolicy": _policy(),
            "trustStores": [
                {"name": "ca:alpine", "pem": stranger_pem.decode()},
                {
                    "name": "tsa:clock",
                    "pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                },
            ],
        }
    )
    assert error.path == "trustStores[1].pem"
    assert error.message.startswith("trust store tsa:clock: line 1: a 'PRIVATE KEY' block")


def test_a_store_defined_in_both_places_is_refused(store_dir: Path, stranger_pem: bytes) -> None:
    error = _options_error(
        {
            "trustPolicy": _policy(),
            "trustStore": str(store_dir),
            "trustStores": [
                {"name": "ca:inline", "pem": stranger_pem.decode()},
                {"name": "ca:alpine", "pem": stranger_pem.decode()},  # same certificate: still refused
            ],
        }
    )
    assert error.path == "trustStores[1].name"
    assert "trust store ca:alpine is also in the trust-store directory" in error.message
    assert f"{store_dir}/x509/ca/alpine" in error.message


def test_store_named_by_a_policy_must_exist_in_either_place(store_dir: Path, stranger_pem: bytes) -> None:
    inline = [{"name": "ca:inline", "pem": stranger_pem.decode()}]
    both = {"trustStore": str(store_dir), "trustStores": inline}
    NotationVerifier("notary", {"trustPolicy": _policy(stores=["ca:alpine", "ca:inline"]), **both})

    error = _options_error({"trustPolicy": _policy(stores=["ca:inline", "tsa:clock"]), **both})
    assert error.path == "trustPolicy.trustPolicies[0].trustStores[1]"
    assert error.message == (
        f"trust store tsa:clock not found under {store_dir}/x509/tsa/clock or in trustStores"
    )
    error = _options_error({"trustPolicy": _policy(stores=["ca:alpine"]), "trustStores": inline})
    assert error.path == "trustPolicy.trustPolicies[0].trustStores[0]"
    assert error.message == "trust store ca:alpine not found in trustStores"
    # The type is part of the name: an inline ca:inline is not a signingAuthority:inline.
    error = _options_error({"trustPolicy": _policy(stores=["signingAuthority:inline"]), **both})
    assert "signingAuthority:inline not found" in error.message


# --- verify(): the kit's in-memory registry -------------------------------------------------------------


def add_referrer(
    registry: InMemoryRegistry,
    subject: Subject,
    envelope: bytes,
    *,
    subject_digest: str | None = None,
    media_type: str = JWS_MEDIA_TYPE,
    artifact_type: str = ARTIFACT_TYPE,
    annotations: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """A notation-style signature manifest (config media type = artifact type, no artifactType field) listed
    among `subject`'s referrers, naming `subject_digest` (default: the subject's own); returns (manifest
    digest, envelope blob digest)."""
    blob = registry.push_blob(subject, envelope, media_type)
    claimed = Descriptor(MANIFEST, subject_digest or subject.digest, 0)
    config = Descriptor(artifact_type, EMPTY_CONFIG.digest, EMPTY_CONFIG.size)
    data = artifact_manifest(claimed, None, [blob], annotations=annotations, config=config)
    manifest = registry.push_manifest(subject, data)
    if claimed.digest != subject.digest:  # listed anyway, as a tag-schema index may list anything
        registry.list_referrer(
            subject,
            Descriptor(MANIFEST, manifest.digest, manifest.size, artifact_type, annotations or {}),
        )
    return manifest.digest, blob.digest


@pytest.fixture
def recorded(notation_testdata: Path) -> tuple[bytes, Subject]:
    """The recorded JWS envelope and the subject it signs (digest and size from the OCI layout)."""
    index = json.loads((notation_testdata / "oci-layout" / "index.json").read_bytes())
    [entry] = index["manifests"]
    digest, size, media_type = entry["digest"], entry["size"], entry["mediaType"]
    assert digest.startswith("sha256:19dbd2e4") and size == 481
    manifest = (
        notation_testdata / "oci-layout" / "blobs" / "sha256" / digest.removeprefix("sha256:")
    ).read_bytes()
    subject = Subject(
        reference=parse_reference(f"{REPOSITORY}@{digest}"),
        digest=digest,
        media_type=media_type,
        size=size,
        manifest=manifest,
    )
    return (notation_testdata / "jws_signature.sig").read_bytes(), subject


@pytest.fixture
def leaf_store(tmp_path: Path, recorded: tuple[bytes, Subject]) -> Path:
    """A notation trust-store directory whose ``ca:alpine`` holds the recorded envelope's self-signed leaf."""
    envelope = parse_and_verify(recorded[0], JWS_MEDIA_TYPE)
    pem = envelope.signer.leaf.public_bytes(serialization.Encoding.PEM)
    return _store(tmp_path / "leaf-store", "ca", "alpine", pem)


async def _verify(verifier: NotationVerifier, subject: Subject, registry: InMemoryRegistry) -> Report:
    return await verifier.verify(subject, Context(registry=registry, deadline=1e12))


def _verifier(store: Path, document: Mapping[str, Any] | None = None) -> NotationVerifier:
    return NotationVerifier("notary", {"trustPolicy": document or _policy(), "trustStore": str(store)})


async def test_recorded_envelope_is_verified(leaf_store: Path, recorded: tuple[bytes, Subject]) -> None:
    envelope, subject = recorded
    registry = InMemoryRegistry()
    signature, blob = add_referrer(registry, subject, envelope)
    report = await _verify(_verifier(leaf_store), subject, registry)
    assert report.passed, report
    assert report.reason == "notation_verified"
    assert report.details["policy"] == "shop"
    [entry] = report.details["signatures"]
    assert entry["passed"] is True
    assert entry["format"] == "jws"
    assert entry["signature"] == signature
    assert entry["signer"] == "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US"
    assert entry["signingScheme"] == "notary.x509"
    assert entry["signingTime"].startswith("2023-")
    assert entry["logged"] == []
    assert ("blob", blob) in registry.requests


async def test_no_referrers_is_no_signature_found(store_dir: Path, recorded: tuple[bytes, Subject]) -> None:
    report = await _verify(_verifier(store_dir), recorded[1], InMemoryRegistry())
    assert not report.passed
    assert report.reason == "no_signature_found"


async def test_referrer_of_another_artifact_type_is_ignored(
    store_dir: Path, recorded: tuple[bytes, Subject]
) -> None:
    envelope, subject = recorded
    registry = InMemoryRegistry()
    add_referrer(registry, subject, envelope, artifact_type="application/spdx+json")
    report = await _verify(_verifier(store_dir), subject, registry)
    assert report.reason == "no_signature_found"
    # Not even its manifest was read: the listing's artifactType said what it is.
    assert [kind for kind, _ in registry.requests] == ["referrers"]


async def test_referrer_naming_another_subject_fails(
    leaf_store: Path, recorded: tuple[bytes, Subject]
) -> None:
    envelope, subject = recorded
    registry = InMemoryRegistry()
    _, blob = add_referrer(registry, subject, envelope, subject_digest="sha256:" + "0" * 64)
    report = await _verify(_verifier(leaf_store), subject, registry)
    assert not report.passed
    assert report.reason == "integrity_failed"
    [entry] = report.details["signatures"]
    assert "subject" in entry["message"]
    assert ("blob", blob) not in registry.requests


async def test_no_trust_policy_for_the_repository(store_dir: Path, recorded: tuple[bytes, Subject]) -> None:
    document = _policy()
    document["trustPolicies"][0]["registryScopes"] = ["registry.test/elsewhere"]
    registry = InMemoryRegistry()
    report = await _verify(_verifier(store_dir, document), recorded[1], registry)
    assert not report.passed
    assert report.reason == "no_trust_policy"
    assert registry.requests == []


async def test_level_skip_passes_without_reading(store_dir: Path, recorded: tuple[bytes, Subject]) -> None:
    document = {
        "version": "1.0",
        "trustPolicies": [
            {"name": "anything-goes", "registryScopes": ["*"], "signatureVerification": {"level": "skip"}}
        ],
    }
    registry = InMemoryRegistry()
    report = await _verify(_verifier(store_dir, document), recorded[1], registry)
    assert report.passed
    assert report.reason == "verification_skipped"
    assert report.details["policy"] == "anything-goes"
    assert registry.requests == []


@pytest.mark.parametrize(
    "listed",
    [
        pytest.param(lambda leaf: [leaf.upper()], id="upper-case"),
        pytest.param(lambda leaf: [leaf], id="lower-case"),
        pytest.param(lambda leaf: ["ab" * 32], id="a-stranger"),
        pytest.param(lambda leaf: [], id="empty"),
    ],
)
async def test_the_thumbprint_annotation_decides_nothing(
    leaf_store: Path, recorded: tuple[bytes, Subject], listed: Callable[[str], list[str]]
) -> None:
    """The annotation is unsigned and notation-go does not decide by it: whatever it lists (upper-case hex as
    the Notary specification's example writes it, or a stranger's thumbprint), the envelope is judged."""
    envelope, subject = recorded
    leaf = parse_and_verify(envelope, JWS_MEDIA_TYPE).signer.leaf
    thumbprint = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    registry = InMemoryRegistry()
    _, blob = add_referrer(
        registry, subject, envelope, annotations={THUMBPRINT_ANNOTATION: json.dumps(listed(thumbprint))}
    )
    report = await _verify(_verifier(leaf_store), subject, registry)
    assert report.reason == "notation_verified", report.message
    assert ("blob", blob) in registry.requests


async def test_untrusted_signer_after_reading_the_blob(
    store_dir: Path, recorded: tuple[bytes, Subject]
) -> None:
    """Without the thumbprint annotation the envelope is read and judged: the store does not trust it."""
    envelope, subject = recorded
    registry = InMemoryRegistry()
    _, blob = add_referrer(registry, subject, envelope)
    report = await _verify(_verifier(store_dir), subject, registry)
    assert report.reason == "untrusted_signer"
    assert ("blob", blob) in registry.requests


async def test_registry_unavailable_propagates(store_dir: Path, recorded: tuple[bytes, Subject]) -> None:
    registry = InMemoryRegistry()
    registry.fail("referrers", error=Unavailable("registry.test: connection refused"))
    with pytest.raises(Undecided) as caught:
        await _verify(_verifier(store_dir), recorded[1], registry)
    assert isinstance(caught.value, Unavailable)
    assert caught.value.reason == "registry_unavailable"


# --- the same certificates in the directory or inline: the same decisions ----------------------------------


def _both_ways(
    root: Path, stores: Mapping[str, bytes], document: Mapping[str, Any]
) -> tuple[NotationVerifier, NotationVerifier]:
    """One verifier reading ``stores`` ({"ca:shop": PEM}) from a notation directory, one from trustStores."""
    for name, pem in stores.items():
        kind, _, store = name.partition(":")
        _store(root, kind, store, pem)
    from_directory = NotationVerifier("notary", {"trustPolicy": document, "trustStore": str(root)})
    inline = [{"name": name, "pem": pem.decode()} for name, pem in stores.items()]
    from_inline = NotationVerifier("notary", {"trustPolicy": document, "trustStores": inline})
    assert from_directory.stores == from_inline.stores
    return from_directory, from_inline


@pytest.mark.parametrize(("trusted", "reason"), [(True, "notation_verified"), (False, "untrusted_signer")])
async def test_recorded_envelope_same_decision_both_ways(
    tmp_path: Path, recorded: tuple[bytes, Subject], stranger_pem: bytes, trusted: bool, reason: str
) -> None:
    envelope, subject = recorded
    leaf_pem = parse_and_verify(envelope, JWS_MEDIA_TYPE).signer.leaf.public_bytes(serialization.Encoding.PEM)
    registry = InMemoryRegistry()
    add_referrer(registry, subject, envelope)
    verifiers = _both_ways(tmp_path, {"ca:alpine": leaf_pem if trusted else stranger_pem}, _policy())
    reports = [await _verify(verifier, subject, registry) for verifier in verifiers]
    assert reports[0] == reports[1]
    assert reports[0].reason == reason


@pytest.fixture(scope="module")
def shop_chain() -> SigningChain:
    return SigningChain(name="countersign-unit-shop", ca_kind="ecdsa-p256", leaf_kind="ecdsa-p256")


@pytest.mark.parametrize("fmt", ["jws", "cose"])
@pytest.mark.parametrize(
    ("anchors", "policy_stores", "level", "reason"),
    [
        ({"ca:shop": "root"}, ["ca:shop"], "strict", "notation_verified"),
        ({"ca:shop": "intermediate"}, ["ca:shop"], "strict", "notation_verified"),
        ({"ca:shop": "root+stranger"}, ["ca:shop"], "strict", "notation_verified"),
        ({"ca:shop": "stranger"}, ["ca:shop"], "strict", "untrusted_signer"),
        ({"ca:shop": "stranger", "ca:other": "root"}, ["ca:shop"], "strict", "untrusted_signer"),
        ({"ca:shop": "stranger", "ca:other": "root"}, ["ca:shop", "ca:other"], "strict", "notation_verified"),
        ({"signingAuthority:shop": "root"}, ["signingAuthority:shop"], "strict", "untrusted_signer"),
        ({"ca:shop": "stranger"}, ["ca:shop"], "audit", "notation_verified"),
    ],
)
async def test_generated_chain_same_decision_both_ways(
    tmp_path: Path,
    shop_chain: SigningChain,
    stranger_pem: bytes,
    fmt: str,
    anchors: Mapping[str, str],
    policy_stores: list[str],
    level: str,
    reason: str,
) -> None:
    assert shop_chain.intermediate_cert is not None
    pems = {
        "root": shop_chain.root_pem,
        "intermediate": shop_chain.intermediate_cert.public_bytes(serialization.Encoding.PEM),
        "stranger": stranger_pem,
        "root+stranger": shop_chain.root_pem + stranger_pem,
    }
    spec = Spec(key=shop_chain.leaf_key, alg="ES256", chain=list(shop_chain.chain))
    envelope = make_jws(spec) if fmt == "jws" else make_cose(spec)
    subject = Subject(
        reference=parse_reference(f"{REPOSITORY}@{DIGEST}"),
        digest=DIGEST,
        media_type=MANIFEST,
        size=1234,
        manifest=b"{}",
    )
    registry = InMemoryRegistry()
    add_referrer(registry, subject, envelope, media_type=JWS_MEDIA_TYPE if fmt == "jws" else COSE_MEDIA_TYPE)
    stores = {name: pems[which] for name, which in anchors.items()}
    verifiers = _both_ways(tmp_path, stores, _policy(stores=policy_stores, level=level))
    reports = [await _verify(verifier, subject, registry) for verifier in verifiers]
    assert reports[0] == reports[1]
    assert reports[0].reason == reason, reports[0]
