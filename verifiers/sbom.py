"""sbom: passes when the image has a well-formed SBOM attached as an OCI referrer.

The referrer is found through the referrers API or the `sha256-<hex>` tag fallback. Its manifest is
fetched and checked against its digest, it must name this image as its `subject`, and its SBOM layer is
fetched, checked against its digest, and parsed: it must be a well-formed document of the declared format.

Options:
    artifactTypes: [application/spdx+json, application/vnd.cyclonedx+json]   # the default
    maxAge: 720h          # optional: the document's creation time must be this recent
    maxBytes: 16777216    # largest SBOM document fetched

Reason codes: sbom_verified (passed); sbom_not_found, sbom_invalid, sbom_too_old, sbom_age_unknown (failed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from provider.registry.errors import RegistryError
from verifiers.base import Context, Descriptor, OptionsError, Report, Subject, Undecided
from verifiers.sbom_formats import (
    DEFAULT_SBOM_MEDIA_TYPES,
    SbomFormatError,
    SbomInfo,
    format_for_media_type,
    parse_sbom,
)

__all__ = ["SbomVerifier"]

MAX_CANDIDATES = 16
INLINE_PARSE_BYTES = 64 * 1024  # larger documents are parsed in a worker thread
PARSED_CACHE_ENTRIES = 4096
_CREATED_ANNOTATION = "org.opencontainers.image.created"


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: str
    message: str


def _parse_age(value: object) -> timedelta:
    # Local import: provider.config is not needed by plugin authors who only read this module.
    from provider.config import ConfigError, parse_duration

    try:
        seconds = parse_duration(value, "maxAge")
    except ConfigError as e:
        raise OptionsError("maxAge", e.message) from e
    if seconds <= 0:
        raise OptionsError("maxAge", "must be positive")
    return timedelta(seconds=seconds)


class SbomVerifier:
    type: ClassVar[str] = "sbom"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - {"artifactTypes", "maxAge", "maxBytes"})
        if unknown:
            raise OptionsError(unknown[0], "unknown option (known: artifactTypes, maxAge, maxBytes)")
        self.name = name
        types = options.get("artifactTypes", list(DEFAULT_SBOM_MEDIA_TYPES))
        if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
            raise OptionsError("artifactTypes", "expected a non-empty list of media types")
        for i, t in enumerate(types):
            if format_for_media_type(t) is None:
                raise OptionsError(f"artifactTypes[{i}]", f"{t!r} is not a supported SBOM media type")
        self.artifact_types = tuple(dict.fromkeys(_essence(t) for t in types))
        self.max_age = _parse_age(options["maxAge"]) if "maxAge" in options else None
        max_bytes = options.get("maxBytes", 16 * 1024 * 1024)
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or not 1 <= max_bytes <= 1 << 30:
            raise OptionsError("maxBytes", "expected an integer between 1 and 1073741824")
        self.max_bytes = max_bytes
        # Parsed documents by content digest: the bytes behind a digest never change.
        self._parsed: dict[tuple[str, str], SbomInfo | SbomFormatError] = {}

    def _matches(self, media_type: str | None) -> bool:
        return media_type is not None and _essence(media_type) in self.artifact_types

    async def verify(self, subject: Subject, context: Context) -> Report:
        referrers = await context.registry.referrers(subject)
        candidates = [d for d in referrers if self._matches(d.artifact_type)]
        if not candidates:
            return Report.fail(
                "sbom_not_found",
                f"no SBOM is attached (looked for referrers of type {' or '.join(self.artifact_types)})",
                referrers=len(referrers),
            )
        failures: list[_Failure] = []
        for descriptor in candidates[:MAX_CANDIDATES]:
            result = await self._check(subject, context, descriptor)
            if isinstance(result, Report):
                return result
            failures.append(result)
        first = failures[0]
        return Report.fail(
            first.reason,
            first.message
            if len(failures) == 1
            else f"{first.message} (and {len(failures) - 1} more SBOMs failed)",
            candidates=len(candidates),
            failures=[f.message for f in failures],
        )

    async def _check(self, subject: Subject, context: Context, descriptor: Descriptor) -> Report | _Failure:
        where = f"SBOM referrer {descriptor.digest}"
        try:
            data, _ = await context.registry.manifest(subject.reference, descriptor.digest)
            manifest = json.loads(data)
            if not isinstance(manifest, dict):
                return _Failure("sbom_invalid", f"{where}: manifest is not a JSON object")
            subject_digest = (manifest.get("subject") or {}).get("digest")
            if subject_digest != subject.digest:
                return _Failure(
                    "sbom_invalid", f"{where}: its subject is {subject_digest}, not {subject.digest}"
                )
            layers = manifest.get("layers")
            if not isinstance(layers, list):
                return _Failure("sbom_invalid", f"{where}: manifest has no layers")
            layer = self._pick_layer(layers, descriptor.artifact_type)
            if layer is None:
                return _Failure("sbom_invalid", f"{where}: no layer holds an SBOM document")
            blob_descriptor, media_type = layer
            document = await context.registry.blob(subject.reference, blob_descriptor, self.max_bytes)
            info = await self._parse(blob_descriptor.digest, document, media_type)
        except Undecided:
            raise
        except RegistryError as e:
            return _Failure("sbom_invalid", f"{where}: {e}")
        except (SbomFormatError, ValueError) as e:
            return _Failure("sbom_invalid", f"{where}: {e}")
        created = info.created or _annotation_time(manifest)
        details = {**info.as_details(), "referrer": descriptor.digest, "mediaType": media_type}
        if self.max_age is not None:
            if created is None:
                return _Failure(
                    "sbom_age_unknown", f"{where}: the document has no creation time to check maxAge"
                )
            age = datetime.now(UTC) - created
            if age > self.max_age:
                return _Failure(
                    "sbom_too_old",
                    f"{where}: created {created.isoformat()}, older than the allowed {_human(self.max_age)}",
                )
        return Report.ok(
            "sbom_verified",
            f"{info.format} SBOM ({info.spec_version}, {info.package_count} "
            f"package{'' if info.package_count == 1 else 's'}) attached as {descriptor.digest}",
            **details,
        )

    async def _parse(self, digest: str, document: bytes, media_type: str) -> SbomInfo:
        """Parse once per (digest, media type); large documents off the event loop (parsing is CPU-bound)."""
        key = (digest, media_type)
        cached = self._parsed.get(key)
        if isinstance(cached, SbomFormatError):
            raise cached
        if cached is not None:
            return cached
        try:
            if len(document) > INLINE_PARSE_BYTES:
                info = await asyncio.to_thread(parse_sbom, document, media_type)
            else:
                info = parse_sbom(document, media_type)
        except SbomFormatError as e:
            self._remember(key, e)
            raise
        self._remember(key, info)
        return info

    def _remember(self, key: tuple[str, str], value: SbomInfo | SbomFormatError) -> None:
        self._parsed[key] = value
        if len(self._parsed) > PARSED_CACHE_ENTRIES:
            self._parsed.pop(next(iter(self._parsed)))

    def _pick_layer(self, layers: list[Any], artifact_type: str | None) -> tuple[Descriptor, str] | None:
        from provider.registry.client import parse_descriptor

        for i, layer in enumerate(layers[:64]):
            descriptor = parse_descriptor(layer, f"layers[{i}]")
            if self._matches(descriptor.media_type):
                return descriptor, _essence(descriptor.media_type)
        if len(layers) == 1 and artifact_type is not None:
            # e.g. pushed with a generic layer media type under an SBOM artifactType
            return parse_descriptor(layers[0], "layers[0]"), artifact_type
        return None


def _essence(media_type: str) -> str:
    """The media type without parameters, lower case (RFC 6838: type and subtype are case-insensitive)."""
    return media_type.split(";")[0].strip().lower()


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _annotation_time(manifest: Mapping[str, Any]) -> datetime | None:
    annotations = manifest.get("annotations") or {}
    value = annotations.get(_CREATED_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None
