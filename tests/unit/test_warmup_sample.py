"""The warm-up's sample (provider/warmup/sample.py): every reference resolves, every digest is its bytes',
both signatures point at the image, and the configuration that trusts them is valid.

That the sample verifies end to end, and that the real cosign and notation accept it, is in
tests/integration/test_warmup.py.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from provider.config import Config, parse_config
from provider.warmup import WarmUp, kinds_for
from provider.warmup.sample import REPOSITORY, TAG, Sample, make_sample
from verifiers.testing import digest_of

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
HOST = "127.0.0.1:5999"


def _manifest(sample: Sample, reference: str) -> dict[str, Any]:
    media_type, data = sample.manifests[reference]
    doc: dict[str, Any] = json.loads(data)
    assert doc["mediaType"] == media_type == "application/vnd.oci.image.manifest.v1+json"
    return doc


def _assert_blob(sample: Sample, descriptor: dict[str, Any]) -> bytes:
    data = sample.blobs[descriptor["digest"]]
    assert digest_of(data) == descriptor["digest"] and len(data) == descriptor["size"]
    return data


def test_every_manifest_and_blob_is_addressed_by_its_owndigest_of() -> None:
    sample = make_sample(HOST, NOW)
    for reference, (_, data) in sample.manifests.items():
        if reference.startswith("sha256:"):
            assert digest_of(data) == reference
        doc = _manifest(sample, reference)
        for descriptor in [doc["config"], *doc["layers"]]:
            _assert_blob(sample, descriptor)
    assert digest_of(sample.manifests[TAG][1]) == sample.digest
    assert sample.tagged == f"{HOST}/{REPOSITORY}:{TAG}"
    assert sample.pinned == f"{HOST}/{REPOSITORY}@{sample.digest}"


def test_the_cosign_signature_is_the_sig_tag_over_the_imagedigest_of() -> None:
    sample = make_sample(HOST, NOW)
    sig = _manifest(sample, sample.digest.replace(":", "-") + ".sig")
    (layer,) = sig["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = json.loads(_assert_blob(sample, layer))
    assert payload["critical"]["image"]["docker-manifest-digest"] == sample.digest
    assert payload["critical"]["identity"]["docker-reference"] == f"{HOST}/{REPOSITORY}"
    assert base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"], validate=True)


def test_the_notation_signature_is_a_referrer_of_the_image() -> None:
    sample = make_sample(HOST, NOW)
    index = json.loads(sample.referrers[sample.digest])
    (entry,) = index["manifests"]
    assert entry["artifactType"] == "application/vnd.cncf.notary.signature"
    signature = _manifest(sample, entry["digest"])
    assert signature["subject"] == {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sample.digest,
        "size": len(sample.manifests[TAG][1]),
    }
    (layer,) = signature["layers"]
    assert layer["mediaType"] == "application/jose+json"
    envelope = json.loads(_assert_blob(sample, layer))
    payload = json.loads(base64.urlsafe_b64decode(envelope["payload"] + "=="))
    assert payload == {"targetArtifact": signature["subject"]}
    assert len(envelope["header"]["x5c"]) == 2


def test_each_sample_has_its_own_keys() -> None:
    first, second = make_sample(HOST, NOW), make_sample(HOST, NOW)
    assert first.verifiers["cosign"] != second.verifiers["cosign"]
    assert first.verifiers["notation"] != second.verifiers["notation"]
    assert first.digest == second.digest  # the image itself is the same bytes


def test_the_configuration_trusting_the_sample_is_valid() -> None:
    sample = make_sample(HOST, NOW)
    config = parse_config(
        {
            "registries": {HOST: {"insecure": True}},
            "verifiers": dict(sample.verifiers),
            "policies": sample.policies,
        }
    )
    assert set(config.verifiers) == {"cosign", "notation"}
    assert [(p.mode, p.verifiers) for p in config.policies] == [("allOf", ("cosign", "notation"))]


@pytest.mark.parametrize("kinds", [(), ("cosign",), ("notation",), ("cosign", "notation")])
def test_a_sample_carries_the_signatures_asked_for_and_requires_them_all(kinds: tuple[str, ...]) -> None:
    sample = make_sample(HOST, NOW, kinds)
    sig_tag = sample.digest.replace(":", "-") + ".sig"
    assert (sig_tag in sample.manifests) == ("cosign" in kinds)
    assert (sample.digest in sample.referrers) == ("notation" in kinds)
    expected = list(kinds) or ["pinned"]
    assert list(sample.verifiers) == expected
    assert sample.policies == [{"name": "warm-up", "scopes": ["*"], "allOf": expected}]
    # A tag is resolved on the way (what most keys are); with the digest-pin verifier only, the pinned
    # reference is the one it allows.
    assert sample.key == (sample.tagged if kinds else sample.pinned)


def test_a_signature_kind_it_cannot_make_is_refused() -> None:
    with pytest.raises(ValueError, match="no sample signature of kind"):
        make_sample(HOST, NOW, ("cosign", "sigstore-bundle"))


def _config(verifiers: dict[str, Any], **extra: Any) -> Config:
    names = list(verifiers)
    policies = [{"name": "p", "scopes": ["*"], "allOf": names}]
    return parse_config({"verifiers": verifiers, "policies": policies, **extra})


def test_the_warm_up_signs_for_the_verifier_types_the_configuration_has() -> None:
    pinned = {"type": "digest-pin"}
    notation = make_sample(HOST, NOW, ("notation",)).verifiers["notation"]
    assert kinds_for(_config({"pinned": pinned})) == frozenset()
    assert kinds_for(_config({"pinned": pinned, "n": notation})) == {"notation"}
    # Kubernetes resources name their verifiers later: both kinds.
    kube = _config({"pinned": pinned}, kubernetes={"enabled": True, "namespace": "countersign"})
    assert kinds_for(kube) == {"cosign", "notation"}


def test_the_warm_up_logs_a_refused_sample_as_an_error_and_a_skipped_one_as_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="provider.warmup")
    WarmUp(0.05, None).log()
    WarmUp(0.05, "the sample was not allowed: {...}", refused=True).log()
    WarmUp(10.0, "took longer than 10 s").log()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "a sample image signed at start-up verified end to end in 0.050 s"),
        ("ERROR", "the sample image signed at start-up was not verified (the sample was not allowed: {...})"),
        ("WARNING", "skipped, it could not run (took longer than 10 s)"),
    ]
