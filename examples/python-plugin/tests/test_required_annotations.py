"""The required-annotations verifier, tested with Countersign's plugin authors' kit (verifiers.testing)."""

from __future__ import annotations

from typing import Any

import pytest
from countersign_required_annotations import RequiredAnnotationsVerifier

from verifiers.base import OptionsError, Subject, Undecided
from verifiers.testing import InMemoryRegistry, make_context
from verifiers.testing.conformance import assert_conforms

SOURCE = "org.opencontainers.image.source"
OPTIONS: dict[str, Any] = {"require": {SOURCE: "https://github.com/example/*"}}
GOOD = "https://github.com/example/app"


def verifier(**options: Any) -> RequiredAnnotationsVerifier:
    return RequiredAnnotationsVerifier("provenance", {**OPTIONS, **options})


async def test_an_annotated_image_passes() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1", annotations={SOURCE: GOOD})
    report = await verifier().verify(subject, make_context(registry))
    assert (report.passed, report.reason) == (True, "annotations_present")
    assert report.details == {"annotations": {SOURCE: GOOD}}
    assert registry.requests == []  # the manifest said it: the configuration was not read


async def test_a_labelled_image_passes_by_its_configuration() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1", labels={SOURCE: GOOD})
    report = await verifier().verify(subject, make_context(registry))
    assert report.passed, report.message
    assert [op for op, _ in registry.requests] == ["blob"]
    manifest_only = await verifier(source="manifest").verify(subject, make_context(registry))
    assert manifest_only.reason == "annotation_missing"


@pytest.mark.parametrize(
    ("annotations", "reason"),
    [({}, "annotation_missing"), ({SOURCE: "https://github.com/evil/app"}, "annotation_mismatch")],
)
async def test_a_missing_or_wrong_annotation_fails(annotations: dict[str, str], reason: str) -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1", annotations=annotations)
    report = await verifier().verify(subject, make_context(registry))
    assert (report.passed, report.reason) == (False, reason)


async def test_a_corrupted_configuration_fails_and_an_outage_is_undecided() -> None:
    registry = InMemoryRegistry()
    subject = registry.push_image("registry.test/app:1", labels={SOURCE: GOOD})
    registry.corrupt("blob", times=1)
    report = await verifier().verify(subject, make_context(registry))
    assert (report.passed, report.reason) == (False, "config_unreadable")
    registry.fail("blob")
    with pytest.raises(Undecided):
        await verifier().verify(subject, make_context(registry))


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"require": {}}, "require"),
        ({"require": {SOURCE: 1}}, f"require.{SOURCE}"),
        ({**OPTIONS, "source": "labels"}, "source"),
        ({**OPTIONS, "extra": True}, "extra"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], path: str) -> None:
    with pytest.raises(OptionsError) as info:
        RequiredAnnotationsVerifier("provenance", options)
    assert info.value.path == path


def annotated(registry: InMemoryRegistry, repository: str) -> Subject:
    return registry.push_image(f"{repository}:1", annotations={SOURCE: GOOD})


def labelled(registry: InMemoryRegistry, repository: str) -> Subject:
    return registry.push_image(f"{repository}:1", labels={SOURCE: GOOD})


@pytest.mark.parametrize(("source", "good_image"), [("either", annotated), ("config", labelled)])
def test_it_conforms(source: str, good_image: Any) -> None:
    assert_conforms(RequiredAnnotationsVerifier, {**OPTIONS, "source": source}, good_image=good_image)
