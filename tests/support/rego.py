"""The Rego of the shipped ConstraintTemplates, extracted for ``opa``, and the capabilities to check it with.

Gatekeeper keeps a template's Rego inside the YAML (``spec.targets[].code[engine=Rego].source``, or the legacy
``spec.targets[].rego``), so ``opa`` cannot read it there. :func:`extract` writes each template's Rego to
``<dir>/<template name>/template.rego`` (its ``libs`` to ``lib_<n>.rego``). ``python -m tests.support.rego
OUT`` does that into ``OUT/rego`` and writes ``OUT/capabilities.json``, ready for::

    opa check --strict --capabilities OUT/capabilities.json OUT/rego
    opa test -v --capabilities OUT/capabilities.json OUT/rego tests/rego

``capabilities.json`` (:func:`gatekeeper_capabilities`) holds the built-ins of the OPA that Gatekeeper embeds
(:data:`GATEKEEPER_OPA_VERSION`), so a template using a newer built-in fails here as it would in Gatekeeper,
plus Gatekeeper's ``external_data`` declaration, so the templates type-check and ``with external_data as f``
can replace the call in tests (``opa`` has no implementation of it: a function can replace it, a value
cannot).

(The capabilities file stays out of the Rego directory: ``opa`` would load a JSON file there as data.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import ensure_tool

__all__ = [
    "EXTERNAL_DATA_BUILTIN",
    "GATEKEEPER_OPA_VERSION",
    "REGO_TESTS_DIR",
    "REPO_ROOT",
    "TEMPLATES_DIR",
    "Extracted",
    "RegoSource",
    "extract",
    "gatekeeper_capabilities",
    "load_documents",
    "main",
    "rego_sources",
    "template_files",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = REPO_ROOT / "gatekeeper-templates"
REGO_TESTS_DIR = REPO_ROOT / "tests" / "rego"

#: The OPA module Gatekeeper v3.23.1 is built with (``github.com/open-policy-agent/opa`` in its go.mod).
GATEKEEPER_OPA_VERSION = "v1.17.1"

#: How Gatekeeper declares its built-in (the constraint framework's Rego driver: one argument, any types).
EXTERNAL_DATA_BUILTIN: dict[str, Any] = {
    "name": "external_data",
    "decl": {"type": "function", "args": [{"type": "any"}], "result": {"type": "any"}},
}

#: Gatekeeper's engine name for Rego in ``code[].engine``.
REGO_ENGINE = "Rego"


@dataclass(frozen=True, slots=True)
class RegoSource:
    """The Rego of one target of one ConstraintTemplate, as Gatekeeper would compile it."""

    template: str  # metadata.name
    kind: str  # spec.crd.spec.names.kind
    file: Path  # the YAML file it came from
    target: str  # spec.targets[].target
    version: str  # "v1" or "v0" (Gatekeeper's default when source.version is absent or empty)
    rego: str
    libs: tuple[str, ...]
    legacy: bool  # from spec.targets[].rego rather than code[]


@dataclass(frozen=True, slots=True)
class Extracted:
    """Where :func:`extract` wrote one template's Rego."""

    source: RegoSource
    directory: Path
    files: tuple[Path, ...]  # template.rego first, then lib_<n>.rego


def template_files(root: Path = TEMPLATES_DIR) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` under ``root``, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in {".yaml", ".yml"})


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of ``path`` (empty documents dropped); raises ``ValueError`` on a non-mapping."""
    documents: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as stream:
        for index, document in enumerate(yaml.safe_load_all(stream)):
            if document is None:
                continue
            if not isinstance(document, dict):
                raise ValueError(f"{path}: document {index} is a {type(document).__name__}, not a mapping")
            documents.append(document)
    return documents


def _templates(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in template_files(root):
        for document in load_documents(path):
            if document.get("kind") == "ConstraintTemplate":
                yield path, document


def _rego_of_target(target: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...], bool] | None:
    """(rego, version, libs, legacy) as Gatekeeper picks them: a legacy ``rego`` field wins over ``code``."""
    legacy = target.get("rego")
    if isinstance(legacy, str) and legacy:
        return legacy, "v0", tuple(str(lib) for lib in target.get("libs") or ()), True
    for code in target.get("code") or ():
        if not isinstance(code, Mapping) or code.get("engine") != REGO_ENGINE:
            continue
        source = code.get("source")
        if not isinstance(source, Mapping) or not isinstance(source.get("rego"), str):
            raise ValueError(f"code[engine={REGO_ENGINE}].source has no rego string")
        version = source.get("version") or "v0"
        libs = tuple(str(lib) for lib in source.get("libs") or ())
        return source["rego"], str(version), libs, False
    return None


def rego_sources(root: Path = TEMPLATES_DIR) -> list[RegoSource]:
    """The Rego of every target of every ConstraintTemplate under ``root``."""
    sources: list[RegoSource] = []
    for path, document in _templates(root):
        name = str(document.get("metadata", {}).get("name", ""))
        kind = str(document.get("spec", {}).get("crd", {}).get("spec", {}).get("names", {}).get("kind", ""))
        for target in document.get("spec", {}).get("targets") or ():
            try:
                found = _rego_of_target(target)
            except ValueError as e:
                raise ValueError(f"{path}: template {name}: {e}") from e
            if found is None:
                continue
            rego, version, libs, legacy = found
            sources.append(
                RegoSource(
                    template=name,
                    kind=kind,
                    file=path,
                    target=str(target.get("target", "")),
                    version=version,
                    rego=rego,
                    libs=libs,
                    legacy=legacy,
                )
            )
    return sources


def extract(out_dir: Path, root: Path = TEMPLATES_DIR) -> list[Extracted]:
    """Write each template's Rego under ``out_dir/<template>/`` (replacing what was there)."""
    extracted: list[Extracted] = []
    seen: set[str] = set()
    for source in rego_sources(root):
        if not source.template or source.template in seen or "/" in source.template:
            raise ValueError(
                f"{source.file}: template name {source.template!r} is empty, repeated or unusable"
            )
        seen.add(source.template)
        directory = out_dir / source.template
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        files = [directory / "template.rego"]
        files[0].write_text(source.rego, encoding="utf-8")
        for index, lib in enumerate(source.libs):
            lib_file = directory / f"lib_{index}.rego"
            lib_file.write_text(lib, encoding="utf-8")
            files.append(lib_file)
        extracted.append(Extracted(source=source, directory=directory, files=tuple(files)))
    return extracted


def gatekeeper_capabilities(opa: Path, version: str = GATEKEEPER_OPA_VERSION) -> dict[str, Any]:
    """``opa capabilities --version VERSION`` plus Gatekeeper's ``external_data`` built-in."""
    result = subprocess.run(
        [str(opa), "capabilities", "--version", version],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"opa capabilities --version {version} failed: {result.stderr.strip()}")
    capabilities: dict[str, Any] = json.loads(result.stdout)
    builtins: list[dict[str, Any]] = capabilities.setdefault("builtins", [])
    if not any(b.get("name") == EXTERNAL_DATA_BUILTIN["name"] for b in builtins):
        builtins.append(EXTERNAL_DATA_BUILTIN)
    return capabilities


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m tests.support.rego OUT_DIR", file=sys.stderr)
        return 2
    out_dir = Path(args[0])
    (out_dir / "rego").mkdir(parents=True, exist_ok=True)
    for item in extract(out_dir / "rego"):
        for file in item.files:
            print(f"{file}  ({item.source.kind}, Rego {item.source.version}, from {item.source.file.name})")
    capabilities = out_dir / "capabilities.json"
    capabilities.write_text(json.dumps(gatekeeper_capabilities(ensure_tool("opa"))), encoding="utf-8")
    print(capabilities)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
