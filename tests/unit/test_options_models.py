"""Verifier options on the shared pydantic mechanism: every problem at once, paths relative to `options`,
and through the configuration at `verifiers.<name>.options.<path>`."""

from __future__ import annotations

from typing import Annotated, ClassVar

import pytest
from pydantic import Field

from provider.config import ConfigError, parse_config
from provider.engine import build_verifiers
from verifiers.cosign.verifier import CosignVerifier
from verifiers.digest_pin import DigestPinVerifier
from verifiers.errors import FieldError, OptionsError
from verifiers.options import Duration, IntRange, Message, NonEmptyStr, OptionsModel, parse_options
from verifiers.plugins import PluginError, create_verifier
from verifiers.sbom import SbomVerifier


class PluginOptions(OptionsModel):
    """What a plugin author writes."""

    url: NonEmptyStr
    timeout: Annotated[float, Duration(0.1, 60)] = 5.0
    retries: Annotated[int, IntRange(0, 10)] = 3
    tags: Annotated[list[NonEmptyStr], Message("expected a list of tags")] = Field(default_factory=list)


def test_a_plugin_reads_its_options_with_the_same_mechanism() -> None:
    parsed = parse_options(PluginOptions, {"url": "https://x", "timeout": "900ms", "tags": ["a"]})
    assert (parsed.url, parsed.timeout, parsed.retries, parsed.tags) == ("https://x", 0.9, 3, ["a"])
    with pytest.raises(OptionsError) as info:
        parse_options(PluginOptions, {"timeout": True, "retries": "3", "tags": ["a", 1], "extra": 1})
    assert info.value.errors == [
        ("url", "required"),
        ("timeout", "expected a duration, got a boolean"),
        ("retries", "expected an integer, got a string"),
        ("tags", "expected a list of tags"),
        ("extra", "unknown option (known: retries, tags, timeout, url)"),
    ]
    assert isinstance(info.value, FieldError) and isinstance(info.value, ValueError)


def test_every_option_error_is_reported_at_once() -> None:
    with pytest.raises(OptionsError) as info:
        SbomVerifier("s", {"artifactTypes": ["text/plain"], "maxAge": "0s", "maxBytes": 0, "attestedBy": 3})
    assert info.value.errors == [
        ("maxBytes", "expected an integer between 1 and 1073741824"),
        ("attestedBy", "expected the name of a cosign verifier"),
    ]
    with pytest.raises(OptionsError) as info:
        SbomVerifier("s", {"artifactTypes": ["application/spdx+json", "text/plain"], "maxAge": "0s"})
    assert info.value.errors == [
        ("artifactTypes[1]", "'text/plain' is not a supported SBOM media type"),
        ("maxAge", "must be positive"),
    ]
    with pytest.raises(OptionsError) as info:
        DigestPinVerifier("p", {"zzz": 1, "exempt": "x", "verifyTag": 1, "aaa": 2})
    assert [path for path, _ in info.value.errors] == ["exempt", "verifyTag", "aaa", "zzz"]


def test_cosign_reports_shape_problems_of_every_key_and_identity() -> None:
    with pytest.raises(OptionsError) as info:
        CosignVerifier(
            "c",
            {
                "keys": [{}, {"pem": "x", "rsaPadding": "oaep"}, {"path": "/nonexistent", "colour": 1}],
                "identities": [{"issuer": "i", "subjectRegExp": "("}],
                "transparencyLog": "maybe",
            },
        )
    assert info.value.errors == [
        ("keys[0]", "set exactly one of path or pem"),
        ("keys[1].rsaPadding", "must be pkcs1v15 or pss"),
        ("keys[2].colour", "unknown field (known: name, path, pem, rsaPadding)"),
        (
            "identities[0].subjectRegExp",
            "invalid regular expression: missing ), unterminated subpattern at position 0",
        ),
        ("transparencyLog", "must be 'required' or 'skip'"),
    ]


def test_cosign_reports_every_unreadable_key() -> None:
    with pytest.raises(OptionsError) as info:
        CosignVerifier(
            "c", {"keys": [{"path": "/nonexistent/a.pub"}, {"pem": "not a key"}], "transparencyLog": "skip"}
        )
    assert [path for path, _ in info.value.errors] == ["keys[0].path", "keys[1].pem"]
    assert "cannot read" in info.value.errors[0][1]


def test_plugin_errors_carry_every_option_error_under_options() -> None:
    with pytest.raises(PluginError) as info:
        create_verifier("sbom", "s", {"maxBytes": "1", "bogus": 1})
    assert info.value.errors == [
        ("options.maxBytes", "expected an integer between 1 and 1073741824"),
        ("options.bogus", "unknown option (known: artifactTypes, attestedBy, maxAge, maxBytes)"),
    ]


def test_the_configuration_reports_every_option_error_at_its_full_path() -> None:
    config = parse_config(
        {
            "verifiers": {"pin": {"type": "digest-pin", "options": {"exempt": [1], "verifyTag": "no"}}},
            "policies": [{"scope": "*", "allOf": ["pin"]}],
        }
    )
    with pytest.raises(ConfigError) as info:
        build_verifiers(config)
    assert info.value.errors == [
        ("verifiers.pin.options.exempt", "expected a list of non-empty glob strings"),
        ("verifiers.pin.options.verifyTag", "expected true or false"),
    ]
    assert str(info.value) == "\n".join(f"{p}: {m}" for p, m in info.value.errors)


def test_every_verifier_s_errors_are_reported_at_once() -> None:
    config = parse_config(
        {
            "verifiers": {
                "pin": {"type": "digest-pin", "options": {"verifyTag": "no"}},
                "sbom": {"type": "sbom", "options": {"maxBytes": 0}},
                "late": {"type": "sbom", "options": {"attestedBy": "nobody"}},
            },
            "policies": [{"scope": "*", "allOf": ["pin", "sbom", "late"]}],
        }
    )
    with pytest.raises(ConfigError) as info:
        build_verifiers(config)
    assert info.value.errors == [
        ("verifiers.pin.options.verifyTag", "expected true or false"),
        ("verifiers.sbom.options.maxBytes", "expected an integer between 1 and 1073741824"),
    ]  # "late" is bound only once everything is built: its reference is checked on the next attempt


def test_every_binding_error_is_reported_at_once() -> None:
    config = parse_config(
        {
            "verifiers": {
                "one": {"type": "sbom", "options": {"attestedBy": "nobody"}},
                "two": {"type": "sbom", "options": {"attestedBy": "one"}},
            },
            "policies": [{"scope": "*", "allOf": ["one", "two"]}],
        }
    )
    with pytest.raises(ConfigError) as info:
        build_verifiers(config)
    assert [path for path, _ in info.value.errors] == [
        "verifiers.one.options.attestedBy",
        "verifiers.two.options.attestedBy",
    ]


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (FieldError("a.b", "bad"), "a.b: bad"),
        (FieldError("", "bad"), "bad"),
        (FieldError.of([("a", "one"), ("", "two")]), "a: one\ntwo"),
        (OptionsError.within("options", OptionsError.of([("x", "1"), ("[0]", "2"), ("", "3")])), ""),
    ],
)
def test_field_error_text(error: FieldError, text: str) -> None:
    if text:
        assert str(error) == text
    else:
        assert error.errors == [("options.x", "1"), ("options[0]", "2"), ("options", "3")]
        assert (error.path, error.message) == ("options.x", "1")


class BoundedOptions(OptionsModel):
    """The building blocks the exec verifier's options added: an exclusive lower bound on a duration, the
    refused value in a message, and how unknown keys of a nested model are named."""

    unknown_name: ClassVar[str | None] = "setting"

    wait: Annotated[float, Duration(above=0, maximum=60)] = 1.0
    slots: Annotated[int, IntRange(1, 8), Message("expected an integer between 1 and 8", got=True)] = 1


class OuterOptions(OptionsModel):
    inner: BoundedOptions | None = None
    other: BoundedOptions | None = None


def test_exclusive_duration_bounds_refused_values_and_unknown_names() -> None:
    assert parse_options(BoundedOptions, {"wait": "1ms", "slots": 8}).wait == 0.001
    with pytest.raises(OptionsError) as info:
        parse_options(BoundedOptions, {"wait": 0, "slots": True, "colour": 1})
    assert info.value.errors == [
        ("wait", "must be more than 0s and at most 60s, got 0s"),
        ("slots", "expected an integer between 1 and 8, got True"),
        ("colour", "unknown setting (known: slots, wait)"),
    ]
    with pytest.raises(OptionsError) as info:
        parse_options(BoundedOptions, {"wait": "2m"})
    assert info.value.errors == [("wait", "must be more than 0s and at most 60s, got 120s")]
    with pytest.raises(OptionsError) as info:
        parse_options(OuterOptions, {"inner": {"x": 1}, "y": 2})
    assert info.value.errors == [
        ("inner.x", "unknown setting (known: slots, wait)"),
        ("y", "unknown option (known: inner, other)"),
    ]
    wait = BoundedOptions.model_json_schema()["properties"]["wait"]["anyOf"][0]
    assert wait == {"type": "number", "exclusiveMinimum": 0, "maximum": 60}
    with pytest.raises(ValueError, match="minimum or above"):
        Duration(minimum=0, above=0)
