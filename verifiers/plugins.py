"""Finding verifier types: entry points of the group `countersign.verifiers`, built-ins included.

A third-party package registers its verifier in its own pyproject.toml:

    [project.entry-points."countersign.verifiers"]
    my-check = "my_package.verifier:MyCheck"

and an operator then writes `type: my-check` in Countersign's config.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, cast

from verifiers.base import OptionsError, Verifier, VerifierFactory
from verifiers.errors import FieldError

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "available_types", "create_verifier", "load_factory"]

ENTRY_POINT_GROUP = "countersign.verifiers"

# Used when Countersign runs from a source tree that is not installed (its entry points are then absent).
_BUILTINS = {
    "cosign": "verifiers.cosign.verifier:CosignVerifier",
    "digest-pin": "verifiers.digest_pin:DigestPinVerifier",
    "exec": "verifiers.exec:ExecVerifier",
    "notation": "verifiers.notation.verifier:NotationVerifier",
    "sbom": "verifiers.sbom:SbomVerifier",
}


class PluginError(FieldError):
    """A verifier type is unknown, ambiguous, or cannot be loaded; `path` is relative to the verifier."""


def available_types() -> dict[str, str]:
    """Every verifier type known in this environment, mapped to its `module:attribute`."""
    found: dict[str, str] = {}
    sources: dict[str, list[str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        sources.setdefault(ep.name, []).append(ep.value)
        found[ep.name] = ep.value
    for name, values in sources.items():
        if len(set(values)) > 1:
            raise PluginError("type", f"verifier type {name!r} is registered by several packages: {values}")
    for name, value in _BUILTINS.items():
        if name in found and found[name] != value:
            raise PluginError("type", f"a plugin tries to replace the built-in verifier type {name!r}")
        found.setdefault(name, value)
    return found


def load_factory(type_name: str) -> VerifierFactory:
    types = available_types()
    target = types.get(type_name)
    if target is None:
        raise PluginError(
            "type", f"unknown verifier type {type_name!r} (available: {', '.join(sorted(types))})"
        )
    module_name, _, attribute = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # a broken plugin must give a config error, not a traceback
        raise PluginError(
            "type", f"verifier type {type_name!r} ({target}) cannot be loaded: {type(e).__name__}: {e}"
        ) from e
    if not callable(obj):
        raise PluginError("type", f"verifier type {type_name!r} ({target}) is not callable")
    return cast(VerifierFactory, obj)


def create_verifier(type_name: str, name: str, options: Mapping[str, Any]) -> Verifier:
    """Build a verifier; option errors come back as a PluginError with every problem's path under `options`
    (`options.keys[0].path`)."""
    factory = load_factory(type_name)
    try:
        verifier = factory(name, options)
    except OptionsError as e:
        raise PluginError.within("options", e) from e
    except Exception as e:
        raise PluginError(
            "type", f"verifier type {type_name!r} failed to build: {type(e).__name__}: {e}"
        ) from e
    for attr in ("name", "type", "verify"):
        if not hasattr(verifier, attr):
            raise PluginError("type", f"verifier type {type_name!r} built an object without {attr!r}")
    # Reports carry the verifier's own `type` and `name`, and Rego matches on them: they must be what the
    # configuration says, or a report would be labelled as another verifier's.
    if verifier.type != type_name:
        raise PluginError(
            "type",
            f"verifier type {type_name!r} built a verifier whose type is {verifier.type!r}: the entry point "
            "name and the verifier's `type` must be the same",
        )
    if verifier.name != name:
        raise PluginError(
            "type", f"verifier type {type_name!r} ignored its name: built {verifier.name!r}, not {name!r}"
        )
    return verifier
