"""Verifier discovery through entry points of the group `countersign.verifiers`, built-ins included."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import verifiers.plugins as plugins
from verifiers.base import BindsVerifiers, Context, Descriptor, HoldsResources, Report, Subject
from verifiers.digest_pin import DigestPinVerifier
from verifiers.plugins import ENTRY_POINT_GROUP, PluginError, available_types, create_verifier, load_factory
from verifiers.reference import parse_reference
from verifiers.sbom import SbomVerifier

BUILTINS = {
    "cosign": "verifiers.cosign.verifier:CosignVerifier",
    "digest-pin": "verifiers.digest_pin:DigestPinVerifier",
    "exec": "verifiers.exec:ExecVerifier",
    "notation": "verifiers.notation.verifier:NotationVerifier",
    "sbom": "verifiers.sbom:SbomVerifier",
}
MODULE = "cs_test_plugin"

PLUGIN_SOURCE = '''
"""A third-party verifier package, as an operator would install it."""

from verifiers.base import OptionsError, Report


class AlwaysPass:
    type = "always-pass"

    def __init__(self, name, options):
        unknown = sorted(set(options) - {"note"})
        if unknown:
            raise OptionsError(unknown[0], "unknown option (known: note)")
        self.name = name
        self.note = options.get("note", "")

    async def verify(self, subject, context):
        return Report.ok("always_pass", f"{subject.reference} accepted without checks", note=self.note)


def no_options(name, options):
    raise OptionsError("", "this verifier takes no options")


def incomplete(name, options):
    return object()


def renamed(name, options):
    verifier = AlwaysPass(name + "-other", {})
    verifier.type = "renamed"
    return verifier


NOT_CALLABLE = 42
'''


def write_distribution(root: Path, name: str, entry_points: Mapping[str, str]) -> None:
    """A minimal installed distribution: `<name>-0.1.dist-info` with METADATA and entry_points.txt."""
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path holding the plugin module; distributions are added to it by the tests."""
    (tmp_path / f"{MODULE}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(MODULE, None)


@pytest.fixture
def plugin(site: Path) -> Path:
    write_distribution(
        site,
        "cs-test-plugin",
        {
            "always-pass": f"{MODULE}:AlwaysPass",
            "no-options": f"{MODULE}:no_options",
            "incomplete": f"{MODULE}:incomplete",
            "mislabelled": f"{MODULE}:AlwaysPass",
            "renamed": f"{MODULE}:renamed",
            "not-callable": f"{MODULE}:NOT_CALLABLE",
            "missing-attribute": f"{MODULE}:Missing",
            "missing-module": "cs_test_plugin_absent:Thing",
        },
    )
    return site


# --- built-ins --------------------------------------------------------------------------------------


def test_available_types_include_the_builtins() -> None:
    types = available_types()
    assert types.items() >= BUILTINS.items()


def test_builtins_are_found_without_installed_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    assert available_types() == BUILTINS
    factory: object = load_factory("digest-pin")
    assert factory is DigestPinVerifier


@pytest.mark.parametrize(
    ("type_name", "factory"), [("digest-pin", DigestPinVerifier), ("sbom", SbomVerifier)]
)
def test_load_builtin_factories(type_name: str, factory: object) -> None:
    assert load_factory(type_name) is factory


def test_unknown_type_lists_the_available_ones() -> None:
    with pytest.raises(PluginError) as info:
        load_factory("notary")
    assert info.value.path == "type"
    assert info.value.message == (
        "unknown verifier type 'notary' (available: cosign, digest-pin, exec, notation, sbom)"
    )


def test_create_builtin_verifier() -> None:
    verifier = create_verifier("digest-pin", "pinned", {"exempt": ["localhost:5000"], "verifyTag": True})
    assert isinstance(verifier, DigestPinVerifier)
    assert (verifier.name, verifier.type) == ("pinned", "digest-pin")


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"exempt": "localhost:5000"}, "options.exempt"),
        ({"verifyTag": "yes"}, "options.verifyTag"),
        ({"verify_tag": True}, "options.verify_tag"),
    ],
)
def test_options_errors_become_plugin_errors_under_options(options: dict[str, object], path: str) -> None:
    with pytest.raises(PluginError) as info:
        create_verifier("digest-pin", "pinned", options)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")


# --- third-party plugins ----------------------------------------------------------------------------


def test_a_third_party_plugin_is_discovered(plugin: Path) -> None:
    types = available_types()
    assert types["always-pass"] == f"{MODULE}:AlwaysPass"
    assert types.items() >= BUILTINS.items()
    names = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert {"always-pass", "digest-pin", "sbom"} <= names


async def test_a_third_party_plugin_is_built_and_runs(plugin: Path) -> None:
    factory = load_factory("always-pass")
    assert getattr(factory, "__module__", None) == MODULE
    verifier = create_verifier("always-pass", "trusting", {"note": "test"})
    assert (verifier.name, verifier.type) == ("trusting", "always-pass")
    subject = Subject(
        reference=parse_reference("reg.example.com/app:1"),
        digest="sha256:" + "0" * 64,
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=2,
        manifest=b"{}",
    )
    report = await verifier.verify(subject, Context(registry=NoRegistry(), deadline=0.0))
    assert report == Report.ok("always_pass", "reg.example.com/app:1 accepted without checks", note="test")


def test_a_third_party_options_error(plugin: Path) -> None:
    with pytest.raises(PluginError) as info:
        create_verifier("always-pass", "trusting", {"nope": 1})
    assert info.value.path == "options.nope"
    with pytest.raises(PluginError) as info:
        create_verifier("no-options", "x", {})
    assert info.value.path == "options"
    assert str(info.value) == "options: this verifier takes no options"


@pytest.mark.parametrize(
    ("type_name", "fragment"),
    [
        ("not-callable", "is not callable"),
        ("missing-attribute", "cannot be loaded"),
        ("missing-module", "cannot be loaded"),
    ],
)
def test_broken_plugins(plugin: Path, type_name: str, fragment: str) -> None:
    with pytest.raises(PluginError) as info:
        load_factory(type_name)
    assert info.value.path == "type"
    assert fragment in info.value.message
    assert repr(type_name) in info.value.message


def test_a_factory_that_builds_no_verifier(plugin: Path) -> None:
    with pytest.raises(PluginError) as info:
        create_verifier("incomplete", "x", {})
    assert info.value.path == "type"
    assert "built an object without 'name'" in info.value.message


def test_a_plugin_cannot_reuse_a_builtin_type_name(site: Path) -> None:
    write_distribution(site, "cs-evil-plugin", {"digest-pin": f"{MODULE}:AlwaysPass"})
    with pytest.raises(PluginError) as info:
        available_types()
    assert info.value.path == "type"
    assert "'digest-pin'" in info.value.message
    with pytest.raises(PluginError):
        load_factory("digest-pin")  # refused, never silently replaced
    with pytest.raises(PluginError):
        create_verifier("sbom", "s", {})  # the configuration as a whole is refused


def test_a_plugin_cannot_replace_a_builtin_when_countersign_is_not_installed(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_distribution(site, "cs-evil-plugin", {"digest-pin": f"{MODULE}:AlwaysPass"})
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        plugins,
        "entry_points",
        lambda group: [ep for ep in real(group=group) if ep.dist is None or ep.dist.name == "cs-evil-plugin"],
    )
    with pytest.raises(PluginError, match="tries to replace the built-in verifier type 'digest-pin'"):
        available_types()


def test_the_builtin_registered_twice_identically_is_fine(site: Path) -> None:
    write_distribution(site, "cs-copy", {"digest-pin": BUILTINS["digest-pin"]})
    assert available_types().items() >= BUILTINS.items()


def test_two_packages_registering_one_name_is_refused(site: Path) -> None:
    write_distribution(site, "cs-one", {"shared": f"{MODULE}:AlwaysPass"})
    write_distribution(site, "cs-two", {"shared": f"{MODULE}:no_options"})
    with pytest.raises(PluginError, match="'shared' is registered by several packages") as info:
        available_types()
    assert info.value.path == "type"


class NoRegistry:
    """A RegistryReader that must not be used."""

    async def referrers(self, subject: Subject, artifact_type: str | None = None) -> list[Descriptor]:
        raise AssertionError("not expected")

    async def manifest(self, reference: object, digest: str) -> tuple[bytes, str]:
        raise AssertionError("not expected")

    async def blob(self, reference: object, descriptor: Descriptor, max_bytes: int) -> bytes:
        raise AssertionError("not expected")

    async def resolve(self, reference: object) -> Descriptor:
        raise AssertionError("not expected")


async def test_engine_close_awaits_verifiers_aclose() -> None:
    from provider.config import parse_config
    from provider.engine import Engine

    engine = await Engine.create(
        parse_config(
            {"verifiers": {"pin": {"type": "digest-pin"}}, "policies": [{"scope": "*", "allOf": ["pin"]}]}
        )
    )
    closed: list[str] = []

    class Closable:
        name = "closable"
        type = "test"

        async def verify(self, subject: object, context: object) -> object:  # pragma: no cover - not called
            raise AssertionError

        async def aclose(self) -> None:
            closed.append(self.name)

    engine.verifiers["closable"] = Closable()  # type: ignore[assignment]
    await engine.close()
    assert closed == ["closable"]


def test_the_optional_hooks_are_found_by_protocol() -> None:
    sbom = create_verifier("sbom", "sbom", {"attestedBy": "release"})
    pinned = create_verifier("digest-pin", "pinned", {})
    notation_type = load_factory("notation")
    assert isinstance(sbom, BindsVerifiers) and not isinstance(sbom, HoldsResources)
    assert not isinstance(pinned, BindsVerifiers) and not isinstance(pinned, HoldsResources)
    assert isinstance(notation_type, type) and issubclass(notation_type, HoldsResources)


@pytest.mark.parametrize(
    ("type_name", "fragment"),
    [
        ("mislabelled", "built a verifier whose type is 'always-pass'"),  # registered under another name
        ("renamed", "ignored its name: built 'p-other', not 'p'"),
    ],
)
def test_a_verifier_must_carry_its_configured_type_and_name(
    plugin: Path, type_name: str, fragment: str
) -> None:
    with pytest.raises(PluginError) as info:
        create_verifier(type_name, "p", {})
    assert info.value.path == "type"
    assert fragment in info.value.message
