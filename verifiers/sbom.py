"""sbom: passes when the image has a well-formed SBOM attached as an OCI referrer.

The referrer is found through the referrers API or the `sha256-<hex>` tag fallback. Its manifest is
fetched and checked against its digest, it must name this image as its `subject`, and its SBOM layer is
fetched, checked against its digest, and parsed: it must be a well-formed document of the declared format.
A referrer whose manifest is malformed (`verifiers.oci` refuses it) is skipped, noted in the report's
`details.skipped` ([{digest, reason}], the first 16; `skippedCount` counts them all), and the others are
still examined: junk alone is `sbom_not_found`, as if nothing were attached.

Options:
    artifactTypes: [application/spdx+json, application/vnd.cyclonedx+json]   # the default
    maxAge: 720h          # optional: the document's creation time must be this recent
    maxBytes: 16777216    # largest SBOM document fetched
    attestedBy: release   # optional: the name of a cosign verifier (see below)

With `attestedBy`, only an SBOM that arrives as a cosign attestation counts (`cosign attest --type
spdxjson` or `--type cyclonedx`): an in-toto statement that verified under the named cosign verifier's
policy (its keys or identities, transparency-log rule, and a statement subject that is this image's
digest), whose predicate type is https://spdx.dev/Document (SPDX JSON) or https://cyclonedx.org/bom
(CycloneDX JSON), each optionally followed by a version (`/v2.3`, `/v1.5`) that the document must then
have; `artifactTypes` still selects which of the two formats count. The predicate is the SBOM document
(a JSON string predicate is read as the document's text) and must be well formed, as above; `maxAge`
needs the document's own creation time. SBOMs attached as plain referrers do not count. The named
verifier need not be part of a policy; it is looked up when the configuration is loaded (`bind`), by
the protocol `verifiers.base.AttestationSource` (cosign is the built-in one; a plugin may be another).

Reason codes: sbom_verified (passed; with attestedBy its details add attestedBy, matched (the key or
identity), predicateType, signature); sbom_not_found, sbom_invalid, sbom_too_old, sbom_age_unknown, and
with attestedBy sbom_not_attested (an SBOM is attached as a plain referrer, but none arrived as a
verified attestation; details.sbomReferrers lists them) (failed). With attestedBy, failures' details carry
attestedBy and, when no SBOM attestation verified, `attestations`: the predicate types that did.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, model_validator

from verifiers import oci
from verifiers.base import (
    AttestationSource,
    Context,
    Descriptor,
    OptionsError,
    Report,
    Subject,
    Undecided,
    VerifiedAttestation,
    Verifier,
    is_tag_independent,
)
from verifiers.errors import RegistryError
from verifiers.options import Duration, IntRange, Message, NonEmptyStr, OptionsModel, check, parse_options
from verifiers.sbom_formats import (
    CYCLONEDX_JSON,
    DEFAULT_SBOM_MEDIA_TYPES,
    SPDX_JSON,
    SbomFormatError,
    SbomInfo,
    format_for_media_type,
    parse_sbom,
)

__all__ = ["Reason", "SbomOptions", "SbomVerifier"]

MAX_CANDIDATES = 16  # well-formed SBOM referrers examined
MAX_EXAMINED = 256  # referrer manifests read, malformed ones included
INLINE_PARSE_BYTES = 64 * 1024  # larger documents are parsed in a worker thread
PARSED_CACHE_ENTRIES = 4096
MAX_NAME_CHARS = 256  # of an SBOM's name, as reported in the verdict and kept in the cache
_CREATED_ANNOTATION = "org.opencontainers.image.created"
# The predicate types of SBOM attestations (`cosign attest --type spdxjson | cyclonedx`), optionally
# versioned as in the in-toto attestation framework's list (https://spdx.dev/Document/v2.3).
_SBOM_PREDICATE_TYPES = {"https://spdx.dev/Document": SPDX_JSON, "https://cyclonedx.org/bom": CYCLONEDX_JSON}
_PREDICATE_TYPE_RE = re.compile(
    r"(https://spdx\.dev/Document|https://cyclonedx\.org/bom)(?:/v([0-9]+(?:\.[0-9]+)*))?"
)


class Reason(StrEnum):
    """The sbom verifier's reason codes (`Report.reason`), listed in docs/rego.md."""

    VERIFIED = "sbom_verified"
    NOT_FOUND = "sbom_not_found"
    INVALID = "sbom_invalid"
    TOO_OLD = "sbom_too_old"
    AGE_UNKNOWN = "sbom_age_unknown"
    NOT_ATTESTED = "sbom_not_attested"  # with attestedBy: SBOM referrers, but no verified attestation


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: Reason
    message: str


def _failed(failures: list[_Failure], what: str, **details: Any) -> Report:
    """The report when every candidate failed: the first failure's reason, every failure's message."""
    first = failures[0]
    more = f" (and {len(failures) - 1} more {what} failed)" if len(failures) > 1 else ""
    return Report.fail(first.reason, first.message + more, **details, failures=[f.message for f in failures])


class SbomOptions(OptionsModel):
    """The sbom verifier's options."""

    artifact_types: Annotated[
        list[str], Message("expected a non-empty list of media types"), Field(min_length=1)
    ] = Field(default_factory=lambda: list(DEFAULT_SBOM_MEDIA_TYPES), alias="artifactTypes")
    max_age: Annotated[float, Duration()] | None = Field(None, alias="maxAge")
    max_bytes: Annotated[
        int, IntRange(1, 1 << 30), Message("expected an integer between 1 and 1073741824")
    ] = Field(16 * 1024 * 1024, alias="maxBytes")
    attested_by: Annotated[NonEmptyStr, Message("expected the name of a cosign verifier")] | None = Field(
        None, alias="attestedBy"
    )

    @model_validator(mode="after")
    def _supported(self) -> Self:
        check(
            "SbomOptions",
            [
                (("artifactTypes", i), f"{t!r} is not a supported SBOM media type")
                for i, t in enumerate(self.artifact_types)
                if format_for_media_type(t) is None
            ]
            + ([("maxAge", "must be positive")] if self.max_age is not None and self.max_age <= 0 else []),
        )
        return self


class SbomVerifier:
    type: ClassVar[str] = "sbom"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        parsed = parse_options(SbomOptions, options)
        self.name = name
        self.artifact_types = tuple(dict.fromkeys(_essence(t) for t in parsed.artifact_types))
        self.max_age = timedelta(seconds=parsed.max_age) if parsed.max_age is not None else None
        self.max_bytes = parsed.max_bytes
        self.attested_by: str | None = parsed.attested_by
        # Referrers and attestations are the digest's and no report names the key's tag
        # (verifiers.base.TagIndependent); with `attestedBy`, only while its source says so too (`bind`).
        self.tag_independent = True
        self._attester: AttestationSource | None = None
        # Parsed documents by content digest: the bytes behind a digest never change.
        self._parsed: dict[tuple[str, str], SbomInfo | SbomFormatError] = {}

    def bind(self, verifiers: Mapping[str, Verifier]) -> None:
        """Find the verifier `attestedBy` names among all configured verifiers (called once built): any
        `AttestationSource` (the built-in one is cosign)."""
        if self.attested_by is None:
            return
        target = verifiers.get(self.attested_by)
        if target is None:
            known = sorted(n for n, v in verifiers.items() if isinstance(v, AttestationSource))
            raise OptionsError(
                "attestedBy",
                f"no verifier named {self.attested_by!r} is configured "
                f"(verifiers that yield attestations, such as cosign: {', '.join(known) or 'none'})",
            )
        if not isinstance(target, AttestationSource):
            raise OptionsError(
                "attestedBy",
                f"verifier {self.attested_by!r} is of type {getattr(target, 'type', '?')!r}, not cosign "
                "(or another verifier that yields verified attestations)",
            )
        self._attester = target
        self.tag_independent = is_tag_independent(target)

    def _matches(self, media_type: str | None) -> bool:
        return media_type is not None and _essence(media_type) in self.artifact_types

    async def verify(self, subject: Subject, context: Context) -> Report:
        if self.attested_by is not None:
            return await self._verify_attested(subject, context, self.attested_by)
        referrers = await context.registry.referrers(subject)
        candidates = [d for d in referrers if self._matches(d.artifact_type)]
        if not candidates:
            return Report.fail(
                Reason.NOT_FOUND,
                f"no SBOM is attached (looked for referrers of type {' or '.join(self.artifact_types)})",
                referrers=len(referrers),
            )
        failures: list[_Failure] = []
        skipped: list[oci.Skipped] = []
        for index, descriptor in enumerate(candidates[:MAX_EXAMINED]):
            if len(failures) >= MAX_CANDIDATES:
                break
            result = await self._check(subject, context, descriptor)
            if isinstance(result, Report):
                return Report(
                    result.passed,
                    result.reason,
                    result.message,
                    {**result.details, **oci.skipped_details(skipped)},
                )
            if isinstance(result, str):
                skipped.append(oci.Skipped(index, descriptor.digest, result))
            else:
                failures.append(result)
        if not failures:
            return Report.fail(
                Reason.NOT_FOUND,
                f"no SBOM is attached: {len(skipped)} malformed referrer(s) of an SBOM type skipped",
                referrers=len(referrers),
                **oci.skipped_details(skipped),
            )
        return _failed(failures, "SBOMs", candidates=len(candidates), **oci.skipped_details(skipped))

    async def _verify_attested(self, subject: Subject, context: Context, attested_by: str) -> Report:
        if self._attester is None:
            # Building verifiers without binding them is a bug of the caller, not a verdict on the image.
            raise RuntimeError(f"sbom verifier {self.name!r} was not bound to its attestedBy {attested_by!r}")
        attestations = await self._attester.verified_attestations(subject, context)
        candidates = [
            (attestation, media_type)
            for attestation in attestations
            if (media_type := _predicate_media_type(attestation.predicate_type)) is not None
            and self._matches(media_type)
        ]
        verified = sorted({a.predicate_type for a in attestations})
        if not candidates:
            referrers = await context.registry.referrers(subject)
            plain = [d for d in referrers if self._matches(d.artifact_type)]
            kinds = " or ".join(self.artifact_types)
            if plain:
                return Report.fail(
                    Reason.NOT_ATTESTED,
                    f"{len(plain)} SBOM(s) attached as referrers, but none as an attestation that verifies "
                    f"under cosign verifier {attested_by!r} ({kinds})",
                    attestedBy=attested_by,
                    sbomReferrers=[d.digest for d in plain],
                    attestations=verified,
                )
            return Report.fail(
                Reason.NOT_FOUND,
                f"no SBOM attestation that verifies under cosign verifier {attested_by!r} ({kinds}), "
                "and no SBOM referrer",
                attestedBy=attested_by,
                attestations=verified,
            )
        failures: list[_Failure] = []
        for attestation, media_type in candidates[:MAX_CANDIDATES]:
            result = await self._check_attested(attestation, media_type, attested_by)
            if isinstance(result, Report):
                return result
            failures.append(result)
        return _failed(failures, "SBOM attestations", attestedBy=attested_by, candidates=len(candidates))

    async def _check_attested(
        self, attestation: VerifiedAttestation, media_type: str, attested_by: str
    ) -> Report | _Failure:
        where = f"SBOM attestation {attestation.manifest_digest} ({attestation.predicate_type})"
        document = attestation.predicate
        try:
            if document.startswith(b'"'):  # a JSON string: the document's text (cosign's plain `spdx`)
                text = json.loads(document)
                document = text.encode("utf-8") if isinstance(text, str) else document
            if len(document) > self.max_bytes:
                return _Failure(
                    Reason.INVALID, f"{where}: the document is larger than maxBytes ({self.max_bytes})"
                )
            digest = "sha256:" + hashlib.sha256(document).hexdigest()
            info = await self._parse(digest, document, media_type)
        except (SbomFormatError, ValueError) as e:  # UnicodeEncodeError (lone surrogates) included
            return _Failure(Reason.INVALID, f"{where}: {e}")
        failure = self._age_failure(info.created, where)
        if failure is not None:
            return failure
        return Report.ok(
            Reason.VERIFIED,
            f"{info.format} SBOM ({info.spec_version}, {info.package_count} "
            f"package{'' if info.package_count == 1 else 's'}) attested by {attestation.anchor} "
            f"(cosign verifier {attested_by}) in {attestation.manifest_digest}",
            **info.as_details(),
            attestedBy=attested_by,
            matched=attestation.anchor,
            predicateType=attestation.predicate_type,
            signature=attestation.manifest_digest,
            attestationFormat=attestation.format,
            mediaType=media_type,
        )

    def _age_failure(self, created: datetime | None, where: str) -> _Failure | None:
        if self.max_age is None:
            return None
        if created is None:
            return _Failure(Reason.AGE_UNKNOWN, f"{where}: the document has no creation time to check maxAge")
        age = datetime.now(UTC) - created
        if age > self.max_age:
            return _Failure(
                Reason.TOO_OLD,
                f"{where}: created {created.isoformat()}, older than the allowed {_human(self.max_age)}",
            )
        return None

    async def _check(
        self, subject: Subject, context: Context, descriptor: Descriptor
    ) -> Report | _Failure | str:
        """The report when this referrer's SBOM verifies, a failure, or (a str) why its manifest is junk."""
        where = f"SBOM referrer {descriptor.digest}"
        try:
            _, manifest = await oci.read_image_manifest(
                context.registry, subject.reference, descriptor.digest
            )
        except Undecided:
            raise
        except oci.ContentError as e:
            return str(e)
        except RegistryError as e:
            return _Failure(Reason.INVALID, f"{where}: {e}")
        try:
            if not manifest.refers_to(subject.digest):
                subject_digest = manifest.subject.digest if manifest.subject is not None else None
                return _Failure(
                    Reason.INVALID, f"{where}: its subject is {subject_digest}, not {subject.digest}"
                )
            layer = self._pick_layer(manifest.layers, descriptor.artifact_type)
            if layer is None:
                return _Failure(Reason.INVALID, f"{where}: no layer holds an SBOM document")
            blob_descriptor, media_type = layer
            document = await context.registry.blob(subject.reference, blob_descriptor, self.max_bytes)
            info = await self._parse(blob_descriptor.digest, document, media_type)
        except Undecided:
            raise
        except RegistryError as e:
            return _Failure(Reason.INVALID, f"{where}: {e}")
        except (SbomFormatError, ValueError) as e:
            return _Failure(Reason.INVALID, f"{where}: {e}")
        created = info.created or _annotation_time(manifest)
        details = {**info.as_details(), "referrer": descriptor.digest, "mediaType": media_type}
        failure = self._age_failure(created, where)
        if failure is not None:
            return failure
        return Report.ok(
            Reason.VERIFIED,
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
        if info.name is not None and len(info.name) > MAX_NAME_CHARS:
            # Anyone who can push picks the name: kept whole, 4096 cached facts could hold gigabytes.
            info = dataclasses.replace(info, name=info.name[:MAX_NAME_CHARS] + "...")
        self._remember(key, info)
        return info

    def _remember(self, key: tuple[str, str], value: SbomInfo | SbomFormatError) -> None:
        self._parsed[key] = value  # entries are small: `_parse` bounds the only free-form field, the name
        if len(self._parsed) > PARSED_CACHE_ENTRIES:
            self._parsed.pop(next(iter(self._parsed)))

    def _pick_layer(
        self, layers: Sequence[Descriptor], artifact_type: str | None
    ) -> tuple[Descriptor, str] | None:
        for descriptor in layers[:64]:
            if self._matches(descriptor.media_type):
                return descriptor, _essence(descriptor.media_type)
        if len(layers) == 1 and artifact_type is not None:
            # e.g. pushed with a generic layer media type under an SBOM artifactType
            return layers[0], artifact_type
        return None


def _predicate_media_type(predicate_type: str) -> str | None:
    """The SBOM media type an attestation's predicate type stands for (with its version), else None."""
    match = _PREDICATE_TYPE_RE.fullmatch(predicate_type)
    if match is None:
        return None
    media_type = _SBOM_PREDICATE_TYPES[match.group(1)]
    return media_type if match.group(2) is None else f"{media_type}; version={match.group(2)}"


def _essence(media_type: str) -> str:
    """The media type without parameters, lower case (RFC 6838: type and subtype are case-insensitive)."""
    return media_type.split(";")[0].strip().lower()


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _annotation_time(manifest: oci.ImageManifest) -> datetime | None:
    value = manifest.annotations.get(_CREATED_ANNOTATION)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None
