"""Finding every cosign signature and attestation of an image, through the shared registry reads.

Three storage formats, all looked up for one image digest:

- Sigstore bundle v0.3 referrers (cosign v3): artifactType `application/vnd.dev.sigstore.bundle.v0.3+json`,
  one layer holding the bundle JSON;
- cosign v2 OCI 1.1 referrers: artifactType `application/vnd.dev.cosign.artifact.sig.v1+json`, simple
  signing layers with the signature in annotations;
- the legacy tags `sha256-<hex>.sig` (simple signing layers) and `sha256-<hex>.att` (DSSE envelopes).

A referrer must name this image as its `subject` (a listing from the tag fallback is only a hint); every
manifest and blob is read through the registry reader, which checks it against its digest, and every
manifest is parsed with the validated model of `verifiers.oci`. A manifest that does not fit it (junk
pushed beside the image) is skipped and noted in `Discovery.skipped`; definite problems with one
well-formed candidate (a missing or tampered blob, a subject that is another image) are `problems`.
Neither fails the verifier or hides the other candidates; registry outages propagate as `Undecided`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from verifiers import oci
from verifiers.base import Context, Descriptor, Subject, Undecided
from verifiers.cosign.model import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_RFC3161,
    ANNOTATION_SIGNATURE,
    ARTIFACT_TYPE_BUNDLE,
    ARTIFACT_TYPE_COSIGN_SIG,
    DSSE_MEDIA_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE,
    BundleCandidate,
    Candidate,
    Format,
    SimpleSigningCandidate,
)
from verifiers.errors import NotFound, RegistryError
from verifiers.reference import ImageReference

__all__ = ["ALL_FORMATS", "Discovery", "Problem", "discover"]

ALL_FORMATS: frozenset[str] = frozenset({"bundle", "oci-1.1", "legacy", "legacy-att"})
MAX_CANDIDATES = 64
MAX_REFERRERS_EXAMINED = 256
MAX_PARALLEL_READS = 8
MAX_LAYERS = 64
MAX_SIGNATURE_BYTES = 4 * 1024 * 1024
EMPTY_MEDIA_TYPE = oci.EMPTY_MEDIA_TYPE


@dataclass(frozen=True, slots=True)
class Problem:
    """A signature artifact that could not be turned into a candidate (reported, never passed)."""

    format: str
    manifest_digest: str
    message: str


@dataclass(frozen=True, slots=True)
class Discovery:
    candidates: list[Candidate]
    problems: list[Problem]
    #: malformed referrers (and `.sig`/`.att` manifests) left out: `index` is their place in the listing
    skipped: list[oci.Skipped] = field(default_factory=list)


def _tag_reference(subject: Subject, suffix: str) -> ImageReference:
    algorithm, _, hex_part = subject.digest.partition(":")
    return ImageReference(
        registry=subject.reference.registry,
        repository=subject.reference.repository,
        tag=f"{algorithm}-{hex_part}.{suffix}",
    )


def _decode_b64(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""  # present but not base64: the core reports the signature as invalid


class _Walker:
    def __init__(self, subject: Subject, context: Context) -> None:
        self.subject = subject
        self.context = context
        self.candidates: list[Candidate] = []
        self.problems: list[Problem] = []
        self.skipped: list[oci.Skipped] = []

    def full(self) -> bool:
        return len(self.candidates) >= MAX_CANDIDATES

    async def manifest(self, digest: str) -> oci.ImageManifest:
        """A signature manifest, parsed with the validated model (ContentError when it is junk)."""
        _, manifest = await oci.read_image_manifest(self.context.registry, self.subject.reference, digest)
        return manifest

    async def blob(self, layer: Descriptor) -> bytes:
        return await self.context.registry.blob(self.subject.reference, layer, MAX_SIGNATURE_BYTES)

    async def referrer(self, descriptor: Descriptor, formats: Collection[str]) -> None:
        kinds = {ARTIFACT_TYPE_BUNDLE: "bundle", ARTIFACT_TYPE_COSIGN_SIG: "oci-1.1"}
        manifest: oci.ImageManifest | None = None
        artifact_type = descriptor.artifact_type
        if artifact_type in (None, "", EMPTY_MEDIA_TYPE):
            # Some writers leave the listing's artifactType empty (cosign v2's bundles in the tag-schema
            # index): the manifest itself says what it is.
            manifest = await self.manifest(descriptor.digest)
            artifact_type = manifest.kind
        fmt = kinds.get(artifact_type or "")
        if fmt is None or fmt not in formats:
            return
        if manifest is None:
            manifest = await self.manifest(descriptor.digest)
        if not manifest.refers_to(self.subject.digest):
            raise ValueError(f"its subject is not {self.subject.digest}")
        for layer in manifest.layers[:MAX_LAYERS]:
            if self.full():
                return
            if fmt == "bundle" and layer.media_type == ARTIFACT_TYPE_BUNDLE:
                await self.bundle(layer, "bundle", descriptor.digest, manifest.annotations)
            elif fmt == "oci-1.1" and layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE:
                await self.simple_signing(layer, "oci-1.1", descriptor.digest)

    async def bundle(
        self, layer: Descriptor, fmt: Format, manifest_digest: str, annotations: Mapping[str, str]
    ) -> None:
        data = await self.blob(layer)
        self.candidates.append(
            BundleCandidate(format=fmt, manifest_digest=manifest_digest, bundle=data, annotations=annotations)
        )

    async def simple_signing(self, layer: Descriptor, fmt: str, manifest_digest: str) -> None:
        annotations = layer.annotations
        payload = await self.blob(layer)
        signature = _decode_b64(annotations.get(ANNOTATION_SIGNATURE))

        def text(name: str) -> bytes | None:
            value = annotations.get(name)
            return value.encode() if value else None

        self.candidates.append(
            SimpleSigningCandidate(
                format=fmt,  # type: ignore[arg-type]
                manifest_digest=manifest_digest,
                payload=payload,
                signature=signature or b"",
                certificate=text(ANNOTATION_CERTIFICATE),
                chain=text(ANNOTATION_CHAIN),
                rekor_bundle=text(ANNOTATION_BUNDLE),
                rfc3161_timestamp=text(ANNOTATION_RFC3161),
            )
        )

    async def legacy(self, suffix: str) -> None:
        reference = _tag_reference(self.subject, suffix)
        try:
            target = await self.context.registry.resolve(reference)
        except NotFound:
            return
        try:
            manifest = await self.manifest(target.digest)
        except oci.ContentError as e:
            self.skipped.append(oci.Skipped(-1, target.digest, f"{suffix} tag: {e}"))
            return
        for layer in manifest.layers[:MAX_LAYERS]:
            if self.full():
                return
            if suffix == "sig" and layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE:
                await self.simple_signing(layer, "legacy", target.digest)
            elif suffix == "att" and layer.media_type == DSSE_MEDIA_TYPE:
                await self.bundle(layer, "legacy-att", target.digest, layer.annotations)


def _first(error: BaseException) -> BaseException:
    """The error to report from (nested) task groups: the first Undecided, else the first error."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves = [_first(e) for e in error.exceptions]
    return next((e for e in leaves if isinstance(e, Undecided)), leaves[0])


async def _from_referrer(
    subject: Subject,
    context: Context,
    index: int,
    descriptor: Descriptor,
    formats: Collection[str],
    slots: asyncio.Semaphore,
) -> _Walker:
    walker = _Walker(subject, context)
    async with slots:
        try:
            await walker.referrer(descriptor, formats)
        except Undecided:
            raise  # registry outages decide nothing
        except oci.ContentError as e:  # junk beside the image: skipped, noted
            walker.skipped.append(oci.Skipped(index, descriptor.digest, str(e)))
        except (RegistryError, ValueError, UnicodeDecodeError) as e:
            walker.problems.append(Problem(descriptor.artifact_type or "referrer", descriptor.digest, str(e)))
    return walker


async def _from_referrers(subject: Subject, context: Context, formats: Collection[str]) -> list[_Walker]:
    try:
        descriptors = await context.registry.referrers(subject)
    except Undecided:
        raise
    except (RegistryError, oci.ContentError) as e:  # unreadable: the `.sig`/`.att` tags may still hold some
        walker = _Walker(subject, context)
        walker.problems.append(Problem("referrers", "referrers listing", str(e)))
        return [walker]
    slots = asyncio.Semaphore(MAX_PARALLEL_READS)
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(_from_referrer(subject, context, i, d, formats, slots))
            for i, d in enumerate(descriptors[:MAX_REFERRERS_EXAMINED])
        ]
    return [t.result() for t in tasks]


async def _from_tag(subject: Subject, context: Context, suffix: str, fmt: str) -> list[_Walker]:
    walker = _Walker(subject, context)
    try:
        await walker.legacy(suffix)
    except Undecided:
        raise
    except (RegistryError, ValueError, UnicodeDecodeError) as e:
        walker.problems.append(Problem(fmt, f"{suffix} tag", str(e)))
    return [walker]


async def discover(subject: Subject, context: Context, formats: Collection[str] = ALL_FORMATS) -> Discovery:
    """Every candidate signature of `subject` in the given formats. Undecided errors propagate.

    The referrers listing and the `.sig` and `.att` tags are read concurrently, and so are the referrers
    (at most MAX_PARALLEL_READS at a time); results are merged in a fixed order (referrers as listed, then
    `.sig`, then `.att`), so reports do not depend on timing.
    """
    sources: list[asyncio.Task[list[_Walker]]] = []
    try:
        async with asyncio.TaskGroup() as group:  # an Undecided in one source cancels the others
            if {"bundle", "oci-1.1"} & set(formats):
                sources.append(group.create_task(_from_referrers(subject, context, formats)))
            for suffix, fmt in (("sig", "legacy"), ("att", "legacy-att")):
                if fmt in formats:
                    sources.append(group.create_task(_from_tag(subject, context, suffix, fmt)))
    except BaseExceptionGroup as group_error:
        raise _first(group_error) from None
    walkers = [w for task in sources for w in task.result()]
    candidates = [c for w in walkers for c in w.candidates][:MAX_CANDIDATES]
    problems = [p for w in walkers for p in w.problems]
    skipped = [s for w in walkers for s in w.skipped]
    return Discovery(candidates, problems, skipped)
