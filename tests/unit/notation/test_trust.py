"""Trust evaluation: recorded notation-go vectors (read in place) and chains generated here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tests.support.notation import SigningChain
from tests.unit.notation.signing import DIGEST, Spec, make_cose, make_jws
from verifiers.notation.envelope import COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, VerifiedEnvelope, parse_and_verify
from verifiers.notation.revocation import ChainStatus
from verifiers.notation.trust import (
    Evaluation,
    TrustStoreError,
    TrustStores,
    evaluate,
    go_subject_string,
    load_trust_store_dir,
    subject_identity,
)
from verifiers.notation.trustpolicy import TrustPolicy, parse_trust_policy

NOW = datetime.now(UTC)
RECORDED_DIGEST = "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TS_DIGEST = "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda"
TS_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"


def policy(
    stores: list[str],
    level: str = "strict",
    identities: list[str] | None = None,
    **verification: Any,
) -> TrustPolicy:
    doc = parse_trust_policy(
        {
            "version": "1.0",
            "trustPolicies": [
                {
                    "name": "test",
                    "registryScopes": ["*"],
                    "signatureVerification": {"level": level, **verification},
                    "trustStores": stores,
                    "trustedIdentities": identities or ["*"],
                }
            ],
        }
    )
    found = doc.policy_for("registry.test/repo")
    assert found is not None
    return found


def load(path: Path) -> VerifiedEnvelope:
    data = path.read_bytes()
    return parse_and_verify(data, JWS_MEDIA_TYPE if data[:1] == b"{" else COSE_MEDIA_TYPE)


def run(
    envelope: VerifiedEnvelope,
    trust: TrustPolicy,
    stores: TrustStores,
    *,
    digest: str | None = None,
    size: int | None = None,
    media_type: str | None = None,
    now: datetime | None = None,
    timestamp_revocation: ChainStatus | None = None,
) -> Evaluation:
    target = envelope.payload.target
    return evaluate(
        envelope,
        digest or target.digest,
        target.size if size is None else size,
        media_type or target.media_type,
        trust,
        stores,
        # The moment of the call, not of collection: a test that builds an expiry relative to "now" must
        # not depend on how long the run took to reach it.
        datetime.now(UTC) if now is None else now,
        timestamp_revocation=timestamp_revocation,
    )


# The recorded timestamps come from GlobalSign's TSA, whose chain names OCSP responders and CRLs: its
# revocation status is an outcome the caller fetches (tests/unit/notation/test_timestamp_revocation.py).
TSA_GOOD = ChainStatus("good", "no certificate of the chain is revoked (OCSP/CRL)")


# --- recorded vectors -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recorded_stores(notation_testdata: Path) -> dict[tuple[str, str], tuple[x509.Certificate, ...]]:
    return load_trust_store_dir(notation_testdata / "truststore")


def test_load_recorded_trust_store(recorded_stores: TrustStores) -> None:
    assert set(recorded_stores) == {
        ("ca", "valid-trust-store"),
        ("tsa", "test-timestamp"),
        ("tsa", "test-mismatch"),
    }
    assert (
        len(recorded_stores[("ca", "valid-trust-store")]) == 5
    )  # GlobalSign .der and .crt are one certificate


@pytest.mark.parametrize("name", ["jws_signature.sig", "cose_signature.sig"])
def test_recorded_self_signed_leaf_is_its_own_anchor(notation_testdata: Path, name: str) -> None:
    envelope = load(notation_testdata / name)
    leaf = envelope.signer.leaf
    stores = {("ca", "alpine"): (leaf,)}
    result = run(
        envelope, policy(["ca:alpine"]), stores, digest=RECORDED_DIGEST, size=481, media_type=MANIFEST
    )
    assert result.passed, result.results
    assert result.trust_anchor == leaf
    assert result.results["revocation"].passed is True
    identity = "x509.subject: C=US, ST=WA, L=Seattle, O=Notary, CN=alpine"
    assert run(envelope, policy(["ca:alpine"], identities=[identity]), stores).passed
    other = run(envelope, policy(["ca:alpine"], identities=["x509.subject: C=US, ST=WA, O=Other"]), stores)
    assert not other.passed and other.failed is not None and other.failed.validation == "authenticity"
    assert "trusted identity" in other.failed.message


def test_recorded_target_mismatch_is_an_integrity_failure(notation_testdata: Path) -> None:
    envelope = load(notation_testdata / "jws_signature.sig")
    stores = {("ca", "alpine"): (envelope.signer.leaf,)}
    for kwargs in ({"digest": "sha256:" + "0" * 64}, {"size": 482}, {"media_type": "application/x"}):
        result = run(envelope, policy(["ca:alpine"]), stores, **kwargs)
        assert result.failed is not None and result.failed.validation == "integrity"
        assert result.results["authenticity"].passed is None  # not evaluated after an enforced failure


@pytest.mark.parametrize("name", ["jwsWithTimestamp.sig", "coseWithTimestamp.sig"])
def test_recorded_authentic_timestamp(
    notation_testdata: Path, recorded_stores: TrustStores, name: str
) -> None:
    envelope = load(notation_testdata / "timestamp" / name)
    trust = policy(["ca:valid-trust-store", "tsa:test-timestamp"], verifyTimestamp="always")
    first = run(envelope, trust, recorded_stores, digest=TS_DIGEST, size=528, media_type=TS_MEDIA)
    assert first.needs_timestamp_revocation and not first.passed and first.undecided is not None
    assert [c.subject.rfc4514_string() for c in first.timestamp_chain][-1].startswith("CN=GlobalSign,")
    result = run(
        envelope,
        trust,
        recorded_stores,
        digest=TS_DIGEST,
        size=528,
        media_type=TS_MEDIA,
        timestamp_revocation=TSA_GOOD,
    )
    assert result.passed, result.results
    assert result.timestamp is not None and result.timestamp.year == 2024
    mismatch = run(envelope, policy(["ca:valid-trust-store", "tsa:test-mismatch"]), recorded_stores)
    assert mismatch.failed is not None and mismatch.failed.validation == "authenticTimestamp"
    assert "trusted timestamp authority" in mismatch.failed.message
    # Without a tsa store the timestamp is not checked: the chain must be valid now (it is, to 2033).
    plain = run(envelope, policy(["ca:valid-trust-store"]), recorded_stores)
    assert plain.passed and "not verified" in plain.results["authenticTimestamp"].message


def _with_leaf_anchor(envelope: VerifiedEnvelope, recorded: TrustStores) -> dict[tuple[str, str], Any]:
    # The recorded expired/out-of-window leaves are not in valid-trust-store (notation-go's tests call its
    # timestamp check alone); anchor them here so the authentic-timestamp check is reached.
    return {**recorded, ("ca", "leaf"): (envelope.signer.leaf,)}


@pytest.mark.parametrize("name", ["jwsExpiredWithTimestamp.sig", "coseExpiredWithTimestamp.sig"])
def test_recorded_expired_certificate_with_timestamp(
    notation_testdata: Path, recorded_stores: TrustStores, name: str
) -> None:
    envelope = load(notation_testdata / "timestamp" / name)
    stores = _with_leaf_anchor(envelope, recorded_stores)
    for when in ("always", "afterCertExpiry"):
        trust = policy(["ca:leaf", "tsa:test-timestamp"], verifyTimestamp=when)
        assert run(envelope, trust, stores).needs_timestamp_revocation
        result = run(envelope, trust, stores, timestamp_revocation=TSA_GOOD)
        assert result.passed, result.results
    # Without a trusted timestamp an expired chain fails (strict) ...
    expired = run(envelope, policy(["ca:leaf"]), stores)
    assert expired.failed is not None and expired.failed.validation == "authenticTimestamp"
    assert "expired" in expired.failed.message
    # ... and is logged under permissive, as notation does.
    logged = run(envelope, policy(["ca:leaf"], level="permissive"), stores)
    assert logged.passed and [r.validation for r in logged.logged] == ["authenticTimestamp"]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("withoutTimestamp.sig", "no timestamp countersignature"),
        ("timestampBeforeNotBefore.sig", "not valid before"),
        ("timestampAfterNotAfter.sig", "expired at"),
    ],
)
def test_recorded_timestamp_failures(
    notation_testdata: Path, recorded_stores: TrustStores, name: str, words: str
) -> None:
    envelope = load(notation_testdata / "timestamp" / name)
    stores = _with_leaf_anchor(envelope, recorded_stores)
    result = run(envelope, policy(["ca:leaf", "tsa:test-timestamp"]), stores)
    assert result.failed is not None and result.failed.validation == "authenticTimestamp"
    assert words in result.failed.message


# --- trust-store loader -----------------------------------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def test_loader_reads_pem_and_der_and_rejects_bad_layouts(tmp_path: Path) -> None:
    chain = SigningChain(intermediate=False)
    ca = tmp_path / "x509" / "ca" / "shop"
    ca.mkdir(parents=True)
    (ca / "root.pem").write_bytes(_pem(chain.root_cert))
    (ca / "README.md").write_text("ignored")
    (ca / "root.der").write_bytes(chain.root_cert.public_bytes(serialization.Encoding.DER))
    assert load_trust_store_dir(tmp_path) == {("ca", "shop"): (chain.root_cert,)}

    (ca / "link.pem").symlink_to(ca / "root.pem")
    with pytest.raises(TrustStoreError, match="symbolic links"):
        load_trust_store_dir(tmp_path)
    os.unlink(ca / "link.pem")

    (ca / "leaf.crt").write_bytes(_pem(chain.leaf_cert))  # neither a CA nor self-signed
    with pytest.raises(TrustStoreError, match="neither a CA"):
        load_trust_store_dir(tmp_path)
    os.unlink(ca / "leaf.crt")

    tsa = tmp_path / "x509" / "tsa" / "stamps"
    tsa.mkdir(parents=True)
    (tsa / "bad.crt").write_bytes(b"not a certificate")
    with pytest.raises(TrustStoreError, match="not a PEM or DER"):
        load_trust_store_dir(tmp_path)
    (tsa / "bad.crt").write_bytes(b"x" * (256 * 1024 + 1))
    with pytest.raises(TrustStoreError, match="larger than"):
        load_trust_store_dir(tmp_path)
    os.unlink(tsa / "bad.crt")
    with pytest.raises(TrustStoreError, match="holds no certificate"):
        load_trust_store_dir(tmp_path)
    with pytest.raises(TrustStoreError, match="cannot be read"):
        load_trust_store_dir(tmp_path / "missing")


# --- generated chains -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain() -> SigningChain:
    return SigningChain()


def _envelope(
    chain: SigningChain,
    *,
    fmt: str = "jws",
    headers: Mapping[str, Any] | None = None,
    crit: list[str] | None = None,
) -> VerifiedEnvelope:
    spec = Spec(key=chain.leaf_key, alg="PS256", chain=list(chain.chain))
    if headers:
        spec.headers.update(headers)
        if headers.get("io.cncf.notary.signingScheme") == "notary.x509.signingAuthority":
            del spec.headers["io.cncf.notary.signingTime"]
    if crit:
        assert spec.crit is not None
        spec.crit.extend(crit)
    if fmt == "jws":
        return parse_and_verify(make_jws(spec), JWS_MEDIA_TYPE)
    return parse_and_verify(make_cose(spec), COSE_MEDIA_TYPE)


@pytest.mark.parametrize("fmt", ["jws", "cose"])
def test_generated_chain_trusted_and_untrusted(chain: SigningChain, fmt: str) -> None:
    envelope = _envelope(chain, fmt=fmt)
    stores = {
        ("ca", "shop"): (chain.root_cert,),
        ("ca", "other"): (SigningChain(intermediate=False).root_cert,),
    }
    identity = f"x509.subject: {chain.subject}"
    good = run(envelope, policy(["ca:shop"], identities=[identity]), stores, digest=DIGEST)
    assert good.passed, good.results
    assert good.trust_anchor == chain.root_cert
    assert (
        go_subject_string(chain.leaf_cert.subject)
        == "CN=countersign-test-signer,O=Countersign Tests,ST=WA,C=US"
    )
    assert subject_identity(chain.leaf_cert.subject) == {
        "C": "US",
        "ST": "WA",
        "O": "Countersign Tests",
        "CN": "countersign-test-signer",
    }

    untrusted = run(envelope, policy(["ca:other"]), stores)
    assert untrusted.failed is not None and untrusted.failed.validation == "authenticity"
    assert "contains no certificate of the trust stores ca:other" in untrusted.failed.message

    mismatch = run(
        envelope, policy(["ca:shop"], identities=["x509.subject: C=US, ST=WA, O=Someone Else"]), stores
    )
    assert mismatch.failed is not None and "trusted identity" in mismatch.failed.message

    wrong = run(envelope, policy(["ca:shop"]), stores, digest="sha256:" + "cd" * 32)
    assert wrong.failed is not None and wrong.failed.validation == "integrity"


def test_audit_logs_an_untrusted_signer(chain: SigningChain) -> None:
    envelope = _envelope(chain)
    other = SigningChain(intermediate=False)
    result = run(envelope, policy(["ca:other"], level="audit"), {("ca", "other"): (other.root_cert,)})
    assert result.passed
    assert [r.validation for r in result.logged] == ["authenticity"]


def test_signing_authority_scheme_needs_a_signing_authority_store(chain: SigningChain) -> None:
    moment = datetime.now(UTC).replace(microsecond=0)
    envelope = _envelope(
        chain,
        headers={
            "io.cncf.notary.signingScheme": "notary.x509.signingAuthority",
            "io.cncf.notary.authenticSigningTime": moment,
        },
        crit=["io.cncf.notary.authenticSigningTime"],
    )
    stores = {("ca", "shop"): (chain.root_cert,), ("signingAuthority", "shop"): (chain.root_cert,)}
    as_ca = run(envelope, policy(["ca:shop"]), stores)
    assert as_ca.failed is not None and "needs a signingAuthority trust store" in as_ca.failed.message
    result = run(envelope, policy(["signingAuthority:shop"]), stores)
    assert result.passed, result.results
    assert result.timestamp == moment


def test_expired_signature_by_level(chain: SigningChain) -> None:
    expiry = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
    envelope = _envelope(chain, headers={"io.cncf.notary.expiry": expiry}, crit=["io.cncf.notary.expiry"])
    stores = {("ca", "shop"): (chain.root_cert,)}
    strict = run(envelope, policy(["ca:shop"]), stores)
    assert strict.failed is not None and strict.failed.validation == "expiry"
    for level in ("permissive", "audit"):
        logged = run(envelope, policy(["ca:shop"], level=level), stores)
        assert logged.passed
        assert [r.validation for r in logged.logged] == ["expiry"]
        assert logged.logged[0].passed is False
    skipped = run(envelope, policy(["ca:shop"], override={"expiry": "skip"}), stores)
    assert skipped.passed and skipped.results["expiry"].passed is None
    # Before the expiry it passes.
    assert run(envelope, policy(["ca:shop"]), stores, now=expiry - timedelta(minutes=1)).passed


def test_revocable_chain_is_undecided_when_enforced(chain: SigningChain) -> None:
    revocable = SigningChain(ocsp_url="http://127.0.0.1:9/ocsp")
    envelope = _envelope(revocable)
    stores = {("ca", "shop"): (revocable.root_cert,)}
    strict = run(envelope, policy(["ca:shop"]), stores)
    assert not strict.passed and strict.failed is None
    assert strict.undecided is not None and "not implemented" in strict.undecided
    assert strict.results["revocation"].unavailable
    permissive = run(envelope, policy(["ca:shop"], level="permissive"), stores)
    assert permissive.passed and [r.validation for r in permissive.logged] == ["revocation"]
    skipped = run(envelope, policy(["ca:shop"], override={"revocation": "skip"}), stores)
    assert skipped.passed and not skipped.logged
    # An enforced failure wins over an undecided revocation.
    wrong = run(envelope, policy(["ca:shop"]), stores, digest="sha256:" + "cd" * 32)
    assert wrong.failed is not None and wrong.undecided is None


def test_expired_and_not_yet_valid_chains(chain: SigningChain) -> None:
    envelope = _envelope(chain)
    stores = {("ca", "shop"): (chain.root_cert,)}
    later = run(envelope, policy(["ca:shop"]), stores, now=NOW + timedelta(days=30))
    assert later.failed is not None and later.failed.validation == "authenticTimestamp"
    earlier = run(envelope, policy(["ca:shop"]), stores, now=NOW - timedelta(days=3))
    assert earlier.failed is not None and "not valid before" in earlier.failed.message


def test_chain_rules(chain: SigningChain) -> None:
    stores = {("ca", "shop"): (chain.root_cert,)}
    # The chain without its intermediate does not link.
    spec = Spec(key=chain.leaf_key, alg="PS256", chain=[chain.leaf_cert, chain.root_cert])
    envelope = parse_and_verify(make_jws(spec), JWS_MEDIA_TYPE)
    result = run(envelope, policy(["ca:shop"]), stores)
    assert result.failed is not None and "is not issued and signed by" in result.failed.message
    # A CA certificate used as the signing certificate.
    root_only = SigningChain(intermediate=False)
    spec = Spec(key=root_only.root_key, alg="PS384", chain=[root_only.root_cert])
    envelope = parse_and_verify(make_jws(spec), JWS_MEDIA_TYPE)
    result = run(envelope, policy(["ca:root"]), {("ca", "root"): (root_only.root_cert,)})
    assert result.failed is not None and "is a CA certificate" in result.failed.message
    with pytest.raises(ValueError, match="timezone-aware"):
        run(envelope, policy(["ca:root"]), {}, now=datetime(2024, 1, 1))


def _name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


_BASE = (
    (NameOID.COUNTRY_NAME, "US"),
    (NameOID.STATE_OR_PROVINCE_NAME, "WA"),
    (NameOID.ORGANIZATION_NAME, "A"),
)


# Leaf subjects as Go's pkix.Name.String() writes them (each string checked against Go 1.26's own output)
# and as notation-go then reads them (None: it cannot).
@pytest.mark.parametrize(
    ("attributes", "go_string", "identity"),
    [
        pytest.param(
            (*_BASE, (NameOID.COMMON_NAME, "b")),
            "CN=b,O=A,ST=WA,C=US",
            {"C": "US", "ST": "WA", "O": "A", "CN": "b"},
        ),
        pytest.param(
            ((NameOID.COMMON_NAME, "b"), (NameOID.ORGANIZATION_NAME, "A"), *_BASE[:2]),
            "CN=b,O=A,ST=WA,C=US",
            {"C": "US", "ST": "WA", "O": "A", "CN": "b"},
            id="Go's order",
        ),
        pytest.param(
            (*_BASE, (NameOID.ORGANIZATIONAL_UNIT_NAME, "x"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "y")),
            "OU=x+OU=y,O=A,ST=WA,C=US",
            None,
            id="two OUs",
        ),
        pytest.param(
            (*_BASE, (NameOID.COMMON_NAME, "first"), (NameOID.COMMON_NAME, "last")),
            "CN=last,O=A,ST=WA,C=US",
            {"C": "US", "ST": "WA", "O": "A", "CN": "last"},
            id="two CNs, the last kept",
        ),
        pytest.param(
            (*_BASE, (NameOID.EMAIL_ADDRESS, "a@b.c")),
            "O=A,ST=WA,C=US,1.2.840.113549.1.9.1=#0c056140622e63",
            None,
            id="emailAddress",
        ),
        pytest.param(
            (*_BASE, (NameOID.DOMAIN_COMPONENT, "com")),
            "O=A,ST=WA,C=US,0.9.2342.19200300.100.1.25=#1303636f6d",
            None,
            id="DC",
        ),
        pytest.param(
            (*_BASE, (NameOID.USER_ID, "u")),
            "O=A,ST=WA,C=US,0.9.2342.19200300.100.1.1=#130175",
            None,
            id="UID",
        ),
        pytest.param(_BASE[:2], "ST=WA,C=US", None, id="no O"),
        pytest.param(
            (
                *_BASE[:2],
                (NameOID.ORGANIZATION_NAME, ' #a, "b"+c; '),
            ),
            r"O=\ #a\, \"b\"\+c\;\ ,ST=WA,C=US",
            {"C": "US", "ST": "WA", "O": ' #a, "b"+c; '},
            id="escaped value",
        ),
        pytest.param(
            (*_BASE[:2], (NameOID.ORGANIZATION_NAME, "a=#b")), "O=a=#b,ST=WA,C=US", None, id="=# in a value"
        ),
    ],
)
def test_leaf_subjects_as_notation_reads_them(
    attributes: tuple[tuple[x509.ObjectIdentifier, str], ...],
    go_string: str,
    identity: dict[str, str] | None,
) -> None:
    name = _name(*attributes)
    assert go_subject_string(name) == go_string
    if identity is None:
        with pytest.raises(ValueError):
            subject_identity(name)
    else:
        assert subject_identity(name) == identity


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(
            ((NameOID.ORGANIZATIONAL_UNIT_NAME, "x"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "y")), id="two OUs"
        ),
        pytest.param(((NameOID.EMAIL_ADDRESS, "a@b.c"),), id="emailAddress"),
        pytest.param(((NameOID.DOMAIN_COMPONENT, "com"),), id="DC"),
    ],
)
def test_a_leaf_notation_cannot_read_is_trusted_only_by_star(
    extra: tuple[tuple[x509.ObjectIdentifier, str], ...],
) -> None:
    chain = SigningChain(name="unreadable", leaf_subject=_name(*_BASE, (NameOID.COMMON_NAME, "s"), *extra))
    envelope = _envelope(chain)
    stores = {("ca", "shop"): (chain.root_cert,)}
    denied = run(envelope, policy(["ca:shop"], identities=["x509.subject: C=US, ST=WA, O=A"]), stores)
    assert denied.failed is not None and denied.failed.validation == "authenticity"
    assert "cannot read the signing certificate's subject" in denied.failed.message
    allowed = run(envelope, policy(["ca:shop"], identities=["*"]), stores)
    assert allowed.passed, allowed.results


def test_identities_of_other_kinds_only_never_match(chain: SigningChain) -> None:
    stores = {("ca", "shop"): (chain.root_cert,)}
    result = run(_envelope(chain), policy(["ca:shop"], identities=["x509.san:anything"]), stores)
    assert result.failed is not None and "names no x509.subject" in result.failed.message
