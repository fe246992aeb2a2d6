"""The required-annotations verifier (see the package docstring)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any, ClassVar

from verifiers import oci
from verifiers.base import Context, Descriptor, OptionsError, Report, Subject
from verifiers.errors import RegistryError, Unavailable

__all__ = ["RequiredAnnotationsVerifier"]

SOURCES = ("manifest", "config", "either")
MAX_CONFIG_BYTES = 1024 * 1024
MAX_SHOWN = 200  # characters of an untrusted value shown in a message


def _show(value: str) -> str:
    """An untrusted value, short and printable ASCII, for a message."""
    text = value.encode("ascii", "backslashreplace").decode("ascii")
    return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


class RequiredAnnotationsVerifier:
    type: ClassVar[str] = "required-annotations"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - {"require", "source"})
        if unknown:
            raise OptionsError(unknown[0], "unknown option (known: require, source)")
        require = options.get("require")
        if not isinstance(require, Mapping) or not require:
            raise OptionsError("require", "expected a non-empty mapping of annotation keys to glob patterns")
        for key, pattern in require.items():
            if not isinstance(key, str) or not key:
                raise OptionsError("require", f"the key {key!r} is not a non-empty string")
            if not isinstance(pattern, str) or not pattern:
                raise OptionsError(f"require.{key}", "expected a non-empty glob pattern string")
        source = options.get("source", "either")
        if source not in SOURCES:
            raise OptionsError("source", f"expected one of {', '.join(SOURCES)}")
        self.name = name
        self.require: dict[str, str] = dict(require)
        self.source: str = source

    async def verify(self, subject: Subject, context: Context) -> Report:
        try:
            document = oci.parse_manifest(subject.manifest, subject.media_type)
        except oci.ContentError as e:  # cannot happen for a subject Countersign resolved; fail closed anyway
            return Report.fail("config_invalid", f"the image manifest is not valid: {e}")
        found: dict[str, str] = {}
        if self.source in ("manifest", "either"):
            found.update({k: v for k, v in document.annotations.items() if k in self.require})
        wanted = [key for key in self.require if key not in found]
        if wanted and self.source in ("config", "either") and isinstance(document, oci.ImageManifest):
            labels = await self._labels(subject, document.config, context)
            if isinstance(labels, Report):
                return labels
            found.update({k: v for k, v in labels.items() if k in wanted})
        for key, pattern in self.require.items():
            if key not in found:
                return Report.fail(
                    "annotation_missing",
                    f"{subject.reference.name}@{subject.digest} carries no {key} ({self._where()})",
                    key=key,
                )
            if not fnmatch.fnmatchcase(found[key], pattern):
                return Report.fail(
                    "annotation_mismatch",
                    f"{key} is {_show(found[key])}, which does not match {pattern!r}",
                    key=key,
                    value=found[key][:MAX_SHOWN],
                    pattern=pattern,
                )
        return Report.ok(
            "annotations_present",
            f"{subject.reference.name} carries {', '.join(sorted(self.require))} as required",
            annotations={k: found[k][:MAX_SHOWN] for k in sorted(self.require)},
        )

    def _where(self) -> str:
        return {"manifest": "manifest annotations", "config": "image labels"}.get(
            self.source, "manifest annotations or image labels"
        )

    async def _labels(
        self, subject: Subject, config: Descriptor, context: Context
    ) -> dict[str, str] | Report:
        """The image configuration's `config.Labels`, or the failing report saying why there are none.

        `Undecided` (the registry could not answer) propagates: that is not a verdict."""
        try:
            data = await context.registry.blob(subject.reference, config, MAX_CONFIG_BYTES)
        except Unavailable:
            raise  # the registry could not answer now: undecided, not a verdict
        except RegistryError as e:  # not found, wrong bytes, too large: a definite failure
            return Report.fail("config_unreadable", f"the image configuration cannot be read: {e}")
        try:
            doc = oci.load_object(data)
        except oci.ContentError as e:
            return Report.fail("config_invalid", f"the image configuration is not a JSON object: {e}")
        section = doc.get("config")
        labels = section.get("Labels") if isinstance(section, dict) else None
        if labels is None:
            return {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            return Report.fail(
                "config_invalid", "the image configuration's config.Labels is not a map of strings"
            )
        return {str(k): v for k, v in labels.items()}
