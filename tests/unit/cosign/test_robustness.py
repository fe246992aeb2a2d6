"""Hostile input never escapes `verify_candidate` as an exception, and never passes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import mutations
from tests.support.private_sigstore import PrivateSigstore, pem_public_key
from tests.unit.cosign.conftest import DIGEST, NOW
from verifiers.cosign.core import load_public_key, verify_candidate
from verifiers.cosign.model import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    REASON_PRIORITY,
    BundleCandidate,
    TrustPolicy,
)
from verifiers.cosign.trustroot import TrustRoot

_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = mutations.json_values(max_text=20, max_items=4, max_key=12, max_leaves=20, floats=False)


def _policy(sigstore: PrivateSigstore, root: TrustRoot, identity: Any, key: Any) -> TrustPolicy:
    return TrustPolicy(
        keys=(load_public_key(pem_public_key(key), "release"),),
        identities=(identity,),
        trusted_root=root,
        now=NOW,
    )


def _never_passes(result: Any) -> None:
    assert not result.passed
    assert result.reason in REASON_PRIORITY
    assert isinstance(result.message, str) and result.message


@_FUZZ
@given(payload=st.binary(max_size=300), signature=st.binary(max_size=80), bundle=st.binary(max_size=300))
def test_random_simple_signing_material(
    sigstore: PrivateSigstore,
    root: TrustRoot,
    identity: Any,
    signing_key: Any,
    payload: bytes,
    signature: bytes,
    bundle: bytes,
) -> None:
    candidate = dataclasses.replace(
        sigstore.keyless_signature(DIGEST), payload=payload, signature=signature, rekor_bundle=bundle
    )
    _never_passes(verify_candidate(candidate, DIGEST, _policy(sigstore, root, identity, signing_key)))


@_FUZZ
@given(data=st.binary(max_size=400))
def test_random_bundle_bytes(
    sigstore: PrivateSigstore, root: TrustRoot, identity: Any, signing_key: Any, data: bytes
) -> None:
    formats: tuple[Literal["bundle", "legacy-att"], ...] = ("bundle", "legacy-att")
    for fmt in formats:
        candidate = BundleCandidate(format=fmt, manifest_digest="m", bundle=data)
        _never_passes(verify_candidate(candidate, DIGEST, _policy(sigstore, root, identity, signing_key)))


@_FUZZ
@given(data=st.data(), value=json_values)
def test_any_field_of_a_valid_bundle_replaced(
    sigstore: PrivateSigstore, root: TrustRoot, identity: Any, signing_key: Any, data: Any, value: Any
) -> None:
    kind = data.draw(st.sampled_from(["key", "keyless", "key-v2"]))
    if kind == "key":
        candidate = sigstore.key_bundle_dsse(signing_key, DIGEST)
    elif kind == "key-v2":
        candidate = sigstore.key_bundle_dsse(signing_key, DIGEST, rekor="v2")
    else:
        candidate = sigstore.keyless_bundle(DIGEST)
    document = json.loads(candidate.bundle)
    path = data.draw(st.sampled_from(mutations.json_paths(document)))
    mutated = mutations.replaced(document, path, value)
    if mutated == document:
        return
    result = verify_candidate(
        dataclasses.replace(candidate, bundle=json.dumps(mutated).encode()),
        DIGEST,
        _policy(sigstore, root, identity, signing_key),
    )
    # Unauthenticated hints change nothing that is verified: the public-key hint, DSSE key IDs, and (for an
    # entry with only an inclusion proof) the entry's global log index. Everything else must fail.
    if path[:2] == ("verificationMaterial", "publicKey") and (len(path) > 2 or isinstance(value, dict)):
        return
    if path[-1:] == ("keyid",):
        return
    if kind == "key-v2" and path[-1:] == ("logIndex",) and "inclusionProof" not in path:
        return
    _never_passes(result)


@_FUZZ
@given(certificate=st.text(max_size=200), bundle=st.text(max_size=200))
def test_random_attestation_annotations(
    sigstore: PrivateSigstore, root: TrustRoot, identity: Any, signing_key: Any, certificate: str, bundle: str
) -> None:
    candidate = sigstore.legacy_attestation(DIGEST, leaf=sigstore.issue())
    annotations = {**candidate.annotations, ANNOTATION_CERTIFICATE: certificate, ANNOTATION_BUNDLE: bundle}
    result = verify_candidate(
        dataclasses.replace(candidate, annotations=annotations),
        DIGEST,
        _policy(sigstore, root, identity, signing_key),
    )
    _never_passes(result)
