"""Registry content, checked before anything else sees it: digests, manifests, referrer listings.

CPU only, no I/O: the transport (client.py) hands over bytes read within their size limit, and these
functions hash them against the digest they must have and validate them with `verifiers.oci`, raising the
registry errors a verdict names (`IntegrityError`, `InvalidContent`). `off_loop` runs the work for large
content on one worker thread, so that a fat manifest does not hold the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from verifiers import oci
from verifiers.base import Descriptor
from verifiers.errors import IntegrityError, InvalidContent
from verifiers.reference import ImageReference

__all__ = [
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "OFF_LOOP_BYTES",
    "Manifest",
    "checked_manifest",
    "compute_digest",
    "index_descriptors",
    "listed_descriptors",
    "off_loop",
    "parse_descriptor",
]

log = logging.getLogger(__name__)

MANIFEST_MEDIA_TYPES = oci.MANIFEST_MEDIA_TYPES
INDEX_MEDIA_TYPES = oci.INDEX_MEDIA_TYPES

_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest's verified bytes and, fresh from the registry, their validated parse (`document`).

    What caches hold is the bytes alone (`bare`: what it costs is what they count); `document` travels
    from the client to the verification that read it (`ImageReader.checked_manifest`), whose memory
    account paid for the parse (`json_parse_cost`), so the verifier does not parse the bytes again."""

    digest: str
    media_type: str  # one of MANIFEST_MEDIA_TYPES (the shared constant, not a copy per manifest)
    data: bytes
    # `oci.manifest_from_json` of `data` as served (media type `media_type`); None once cached.
    document: oci.ImageManifest | oci.ImageIndex | None = field(default=None, compare=False, repr=False)

    def bare(self) -> Manifest:
        """This manifest without its parse (what a cache keeps)."""
        if self.document is None:
            return self
        return Manifest(self.digest, self.media_type, self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=self.size)


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    if algorithm == "sha256":
        return "sha256:" + hashlib.sha256(data).hexdigest()
    if algorithm == "sha512":
        return "sha512:" + hashlib.sha512(data).hexdigest()
    raise IntegrityError(f"unsupported digest algorithm {algorithm!r}")


def parse_descriptor(obj: object, where: str) -> Descriptor:
    """One OCI descriptor from untrusted JSON (`verifiers.oci.parse_descriptor`; errors as InvalidContent)."""
    try:
        return oci.parse_descriptor(obj, where)
    except oci.ContentError as e:
        raise InvalidContent(str(e)) from None


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object from untrusted bytes, nesting bounded (`verifiers.oci.load_object`)."""
    try:
        return oci.load_object(data)
    except oci.ContentError as e:
        raise InvalidContent(f"{what}: {e}") from None


def checked_document(
    doc: Mapping[str, Any], content_type: str, what: str
) -> oci.ImageManifest | oci.ImageIndex:
    """Validate the whole manifest or index (`verifiers.oci`); InvalidContent when it is not valid."""
    try:
        return oci.manifest_from_json(doc, content_type)
    except oci.ContentError as e:
        raise InvalidContent(f"manifest {what}: {e}") from None


def _shared(media_type: str) -> str:
    """The media type as one of the shared MANIFEST_MEDIA_TYPES strings (not a copy per manifest)."""
    return MANIFEST_MEDIA_TYPES[MANIFEST_MEDIA_TYPES.index(media_type)]


def checked_manifest(
    ref: ImageReference,
    reference: str,
    data: bytes,
    expected: str | None,
    header_digest: str | None,
    content_type: str,
) -> Manifest:
    """Hash and validate manifest bytes (CPU only: `get_manifest` runs it off the loop when large)."""
    algorithm = expected.split(":")[0] if expected else "sha256"
    digest = compute_digest(data, algorithm)
    if expected is not None and digest != expected:
        raise IntegrityError(
            f"registry served manifest bytes for {ref.name}@{expected} that hash to {digest}"
        )
    if expected is None and header_digest and header_digest.startswith("sha256:") and header_digest != digest:
        raise IntegrityError(
            f"registry reported digest {header_digest} for {ref.name}:{reference} "
            f"but the bytes hash to {digest}"
        )
    doc = parse_json(data, f"manifest {ref.name}@{digest}")
    document = checked_document(doc, content_type, f"{ref.name}@{digest}")
    del doc  # the JSON is not kept, its validated model is
    return Manifest(digest=digest, media_type=_shared(document.media_type), data=data, document=document)


def index_descriptors(data: bytes, what: str) -> list[Descriptor]:
    """The valid entries of one referrer listing; invalid entries are skipped (and logged), not fatal."""
    try:
        listing = oci.referrers_from_json(parse_json(data, what))
    except oci.ContentError as e:
        raise InvalidContent(f"{what}: {e}") from None
    return listed_descriptors(listing, what)


def listed_descriptors(listing: oci.ReferrerList | oci.ImageIndex, what: str) -> list[Descriptor]:
    """The valid entries of a referrer listing already parsed (`index_descriptors`, or a checked index's
    `document`: the same entries and skips, `oci.referrers_from_json` made both); skips logged."""
    entries = listing.referrers if isinstance(listing, oci.ReferrerList) else listing.manifests
    if listing.skipped_count:
        log.warning(
            "%s: skipped %d invalid entries: %s",
            what,
            listing.skipped_count,
            "; ".join(s.reason for s in listing.skipped),
        )
    return list(entries)


# Above this size, hashing and parsing registry content runs in a worker thread, so one large manifest or
# blob does not hold the event loop (hashlib releases the GIL; the JSON hooks let the loop in). One thread:
# parsing is bound by the GIL anyway, and each extra thread would get a malloc arena of its own, whose
# freed memory the rest of the process does not reuse (measured: 64 fat manifests parsed on six threads
# took the peak RSS from about 150 to 280 MiB).
OFF_LOOP_BYTES = 256 * 1024
_CONTENT_WORKER = concurrent.futures.ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="countersign-content"
)


async def off_loop(data: bytes, func: Callable[..., _R], *args: Any) -> _R:
    """`func(*args)`, on the content worker thread when `data` is large, else inline (a hop costs more)."""
    if len(data) < OFF_LOOP_BYTES:
        return func(*args)
    return await asyncio.get_running_loop().run_in_executor(_CONTENT_WORKER, functools.partial(func, *args))
