"""Paths in verifier options: relative to the configuration file's directory, not the working directory."""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import verifiers.plugins as plugins
from provider.config import ConfigError, load_config, parse_config
from provider.engine import build_verifiers
from tests.support import notation
from tests.support.notation import SigningChain
from verifiers import option_paths_relative_to, resolve_option_path
from verifiers.base import Context, OptionsError, OutsideOptionBase, Report, Subject, Verifier
from verifiers.cosign.verifier import CosignVerifier
from verifiers.notation.verifier import NotationVerifier

# --- the helper ---------------------------------------------------------------------------------------------


def test_absolute_paths_are_unchanged(tmp_path: Path) -> None:
    absolute = tmp_path / "keys" / "release.pub"
    assert resolve_option_path(str(absolute)) == absolute
    with option_paths_relative_to(tmp_path / "elsewhere"):
        assert resolve_option_path(str(absolute)) == absolute
        assert resolve_option_path(absolute) == absolute


def test_relative_paths_without_a_configuration_use_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    resolved = resolve_option_path("keys/release.pub")
    assert resolved == tmp_path / "keys" / "release.pub"
    assert resolved.is_absolute()


def test_relative_paths_within_a_configuration_use_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir, cwd = tmp_path / "config", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with option_paths_relative_to(config_dir):
        assert resolve_option_path("keys/release.pub") == config_dir / "keys" / "release.pub"
        assert resolve_option_path("../shared/root.json") == config_dir / ".." / "shared" / "root.json"
        with option_paths_relative_to(tmp_path / "inner"):
            assert resolve_option_path("k.pub") == tmp_path / "inner" / "k.pub"
        assert resolve_option_path("k.pub") == config_dir / "k.pub"  # the outer directory is back
    assert resolve_option_path("k.pub") == cwd / "k.pub"


def test_a_relative_configuration_directory_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with option_paths_relative_to(Path("etc")):
        assert resolve_option_path("k.pub") == tmp_path / "etc" / "k.pub"


def test_the_directory_is_restored_after_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError), option_paths_relative_to(Path("/elsewhere")):
        raise RuntimeError("a factory failed")
    assert resolve_option_path("k.pub") == tmp_path / "k.pub"


def test_tilde_is_expanded_and_not_joined_to_the_configuration_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    assert resolve_option_path("~/keys/release.pub") == home / "keys" / "release.pub"
    with option_paths_relative_to(tmp_path / "config"):
        assert resolve_option_path("~") == home
        assert resolve_option_path("~/keys/release.pub") == home / "keys" / "release.pub"


# --- build_verifiers sets the directory for factories and bind hooks --------------------------------------


class _Recorder:
    """A plugin that resolves its `file` option when built and when bound."""

    type = "recorder"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.built = resolve_option_path(str(options["file"]))
        self.bound: Path | None = None
        self.file = str(options["file"])

    def bind(self, verifiers: Mapping[str, Verifier]) -> None:
        self.bound = resolve_option_path(self.file)

    async def verify(self, subject: Subject, context: Context) -> Report:
        raise AssertionError("not called")


def test_build_verifiers_resolves_against_the_configuration_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugins, "load_factory", lambda type_name: _Recorder)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    doc = {
        "verifiers": {"r": {"type": "recorder", "options": {"file": "data/x.json"}}},
        "policies": [{"scope": "*", "allOf": ["r"]}],
    }
    config = parse_config(doc, base=tmp_path / "config")
    assert config.base_dir == tmp_path / "config"
    recorder = build_verifiers(config)["r"]
    assert isinstance(recorder, _Recorder)
    assert recorder.built == recorder.bound == tmp_path / "config" / "data" / "x.json"
    assert resolve_option_path("data/x.json") == cwd / "data" / "x.json"  # only while building

    # A configuration not read from a file: its paths are relative to the working directory.
    recorder = build_verifiers(parse_config(doc))["r"]
    assert isinstance(recorder, _Recorder)
    assert recorder.built == recorder.bound == cwd / "data" / "x.json"


# --- the built-in verifiers, from a configuration file -----------------------------------------------------


def _public_key_pem() -> tuple[ec.EllipticCurvePublicKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem


def _ca(name: str) -> SigningChain:
    return SigningChain(name=name, intermediate=False, leaf_kind="ecdsa-p256", ca_kind="ecdsa-p256")


def _notation_files(root: Path, ca_pem: bytes) -> None:
    notation.write_notation_layout(root, ca_pem)


def _write_config(directory: Path) -> Path:
    config = directory / "countersign.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "verifiers": {
                    "signed": {
                        "type": "cosign",
                        "options": {
                            "keys": [{"name": "release", "path": "keys/release.pub"}],
                            "transparencyLog": "skip",
                        },
                    },
                    "notary": {
                        "type": "notation",
                        "options": {
                            "trustPolicy": "notation/trustpolicy.json",
                            "trustStore": "notation/truststore",
                        },
                    },
                },
                "policies": [{"scope": "*", "allOf": ["signed", "notary"]}],
            }
        )
    )
    return config


def test_verifier_file_options_resolve_against_the_configuration_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir, cwd = tmp_path / "etc" / "countersign", tmp_path / "work"
    config_dir.mkdir(parents=True)
    cwd.mkdir()
    key, pem = _public_key_pem()
    (config_dir / "keys").mkdir()
    (config_dir / "keys" / "release.pub").write_bytes(pem)
    ca = _ca("countersign-option-paths")
    _notation_files(config_dir, ca.root_pem)
    # Decoys at the same relative paths under the working directory: they must not be read.
    (cwd / "keys").mkdir()
    (cwd / "keys" / "release.pub").write_bytes(_public_key_pem()[1])
    _notation_files(cwd, _ca("countersign-option-paths-decoy").root_pem)
    config_file = _write_config(config_dir)
    monkeypatch.chdir(cwd)

    built = build_verifiers(load_config(config_file))

    cosign = built["signed"]
    assert isinstance(cosign, CosignVerifier)
    (release,) = cosign.keys
    assert release.name == "release"
    assert release.key.public_numbers() == key.public_numbers()
    notary = built["notary"]
    assert isinstance(notary, NotationVerifier)
    assert notary.stores[("ca", "shop")] == (ca.root_cert,)
    assert [policy.name for policy in notary.policies.policies] == ["shop"]


def test_verifier_file_errors_name_the_resolved_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_dir, cwd = tmp_path / "config", tmp_path / "work"
    config_dir.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    config_file = _write_config(config_dir)  # none of the files exist yet
    with pytest.raises(ConfigError) as caught:
        build_verifiers(load_config(config_file))
    assert caught.value.path == "verifiers.notary.options.trustPolicy"
    assert str(config_dir / "notation" / "trustpolicy.json") in caught.value.message

    _notation_files(config_dir, _ca("countersign-option-paths").root_pem)
    with pytest.raises(ConfigError) as caught:
        build_verifiers(load_config(config_file))
    assert caught.value.path == "verifiers.signed.options.keys[0].path"
    assert str(config_dir / "keys" / "release.pub") in caught.value.message


def test_cosign_trusted_root_resolves_against_the_configuration_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded = resources.files("sigstore") / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
    config_dir, cwd = tmp_path / "config", tmp_path / "work"
    (config_dir / "sigstore").mkdir(parents=True)
    cwd.mkdir()
    (config_dir / "sigstore" / "trusted_root.json").write_bytes((embedded / "trusted_root.json").read_bytes())
    _, pem = _public_key_pem()
    options = {"keys": [{"pem": pem.decode()}], "trustedRoot": "sigstore/trusted_root.json"}
    monkeypatch.chdir(cwd)
    with option_paths_relative_to(config_dir):
        assert CosignVerifier("c", options).trusted_root is not None
    with pytest.raises(OptionsError) as caught:
        CosignVerifier("c", options)  # no configuration: the working directory, where it is not
    assert caught.value.path == "trustedRoot"
    assert str(cwd / "sigstore" / "trusted_root.json") in caught.value.message


# --- confined: a verifier defined by a Kubernetes resource reads only its own files ------------------------


@pytest.mark.parametrize(
    "value", ["/etc/passwd", "~/.kube/config", "~root/x", "..", "../x", "keys/../../x", "a/./../../b"]
)
def test_confined_paths_refuse_leaving_the_directory(tmp_path: Path, value: str) -> None:
    with option_paths_relative_to(tmp_path, confined=True), pytest.raises(OutsideOptionBase) as caught:
        resolve_option_path(value)
    assert caught.value.errno == errno.EACCES
    assert repr(value) in str(caught.value)
    # Unconfined, the same value resolves (the file-based configuration may name any path).
    with option_paths_relative_to(tmp_path):
        assert resolve_option_path(value).is_absolute()


def test_confined_paths_inside_the_directory_resolve_normalized(tmp_path: Path) -> None:
    with option_paths_relative_to(tmp_path, confined=True):
        assert resolve_option_path("keys/release.pub") == tmp_path / "keys" / "release.pub"
        assert resolve_option_path("keys/../root.json") == tmp_path / "root.json"
        assert resolve_option_path("./a") == tmp_path / "a"
        with option_paths_relative_to(tmp_path / "outer"):  # nesting replaces the confinement too
            assert resolve_option_path("/abs") == Path("/abs")
        with pytest.raises(OutsideOptionBase):
            resolve_option_path("/abs")


def test_a_confined_verifier_reports_an_escaping_path_at_its_field(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    outside = tmp_path / "outside.pub"
    outside.write_bytes(_public_key_pem()[1])
    config = parse_config(
        {
            "verifiers": {
                "signed": {
                    "type": "cosign",
                    "options": {"keys": [{"name": "k", "path": str(outside)}], "transparencyLog": "skip"},
                }
            },
            "policies": [{"scope": "*", "allOf": ["signed"]}],
        },
        base=tmp_path,
    )
    build_verifiers(config)  # from the file: any path
    confined = dataclasses.replace(
        config,
        verifiers={"signed": dataclasses.replace(config.verifiers["signed"], base_dir=files, confined=True)},
    )
    with pytest.raises(ConfigError) as caught:
        build_verifiers(confined)
    assert caught.value.path == "verifiers.signed.options.keys[0].path"
    assert "only paths relative to the verifier's files" in caught.value.message
