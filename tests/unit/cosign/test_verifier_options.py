"""The cosign verifier's options: every mistake is refused with the field that is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from verifiers.base import OptionsError
from verifiers.cosign.verifier import CosignVerifier


@pytest.fixture
def pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


IDENTITY = {"issuer": "https://issuer.example", "subject": "dev@example.test"}


def test_key_based_options(pem: str, tmp_path: Path) -> None:
    path = tmp_path / "cosign.pub"
    path.write_text(pem)
    verifier = CosignVerifier(
        "c",
        {
            "keys": [{"pem": pem}, {"name": "file", "path": str(path)}],
            "transparencyLog": "skip",
            "threshold": 2,
        },
    )
    assert [k.name for k in verifier.keys] == ["key-1", "file"]
    assert verifier.require_tlog is False
    assert verifier.threshold == 2
    assert verifier.formats == {"bundle", "oci-1.1", "legacy"}


def test_keyless_options_default_to_the_embedded_public_good_root() -> None:
    verifier = CosignVerifier(
        "c",
        {"identities": [{**IDENTITY, "github": {"workflowRepository": "org/repo"}}], "formats": ["bundle"]},
    )
    assert verifier.trusted_root is not None
    assert verifier.require_tlog is True
    assert verifier.identities[0].github_workflow_repository == "org/repo"
    assert verifier.formats == {"bundle"}


@pytest.mark.parametrize(
    ("options", "path", "fragment"),
    [
        ({}, "", "at least one of keys or identities"),
        ({"keys": [{"pem": "PEM"}], "bogus": 1}, "bogus", "unknown option"),
        ({"keys": "x"}, "keys", "expected a list"),
        ({"keys": [{"pem": "not a key"}]}, "keys[0].pem", ""),
        ({"keys": [{}]}, "keys[0]", "exactly one of path or pem"),
        ({"keys": [{"path": "/nonexistent/key.pub"}]}, "keys[0].path", "cannot read"),
        ({"keys": [{"pem": "@PEM", "rsaPadding": "oaep"}]}, "keys[0].rsaPadding", "pkcs1v15 or pss"),
        ({"keys": [{"pem": "@PEM", "color": 1}]}, "keys[0].color", "unknown field"),
        ({"identities": [{"issuer": "i"}]}, "identities[0]", "subject or subjectRegExp"),
        ({"identities": [{"subject": "s"}]}, "identities[0]", "issuer or issuerRegExp"),
        ({"identities": [{**IDENTITY, "subjectRegExp": "x"}]}, "identities[0]", "exactly one of subject"),
        ({"identities": [{"issuer": "i", "subjectRegExp": "("}]}, "identities[0].subjectRegExp", "regular"),
        ({"identities": [{**IDENTITY, "github": {"wf": 1}}]}, "identities[0].github.wf", "unknown field"),
        (
            {"identities": [IDENTITY], "transparencyLog": "skip"},
            "transparencyLog",
            "only allowed for key-based",
        ),
        ({"keys": [{"pem": "@PEM"}], "transparencyLog": "maybe"}, "transparencyLog", "required' or 'skip"),
        ({"keys": [{"pem": "@PEM"}], "threshold": 2}, "threshold", "from 1 to 1"),
        ({"keys": [{"pem": "@PEM"}], "threshold": True}, "threshold", "integer"),
        ({"keys": [{"pem": "@PEM"}], "formats": ["legacy-att"]}, "formats", "non-empty list"),
        ({"keys": [{"pem": "@PEM"}], "trustedRoot": "/nonexistent.json"}, "trustedRoot", "cannot load"),
        ({"keys": [{"pem": "@PEM", "name": "a"}, {"pem": "@PEM", "name": "a"}]}, "keys", "unique"),
    ],
)
def test_bad_options_name_the_field(pem: str, options: dict[str, Any], path: str, fragment: str) -> None:
    def fill(value: Any) -> Any:
        if value == "@PEM":
            return pem
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    with pytest.raises(OptionsError) as info:
        CosignVerifier("c", fill(options))
    assert info.value.path == path
    assert fragment in info.value.message
