"""`InMemoryRegistry`: a `RegistryReader` over content pushed into it, for testing verifiers.

It answers the way Countersign's registry client answers a verifier, errors included:

- `manifest(reference, digest)`: the bytes and media type of a manifest in the reference's repository.
  Missing: `NotFound`. Bytes that do not hash to `digest`: `IntegrityError`. Over `max_manifest_bytes`:
  `TooLarge`. Not a valid OCI manifest or index (not JSON, wrong shape, nested too deep): `InvalidContent`
  (also a `verifiers.oci.ContentError`), unless built with `check_manifests=False`, which hands over the
  stored bytes unchecked (to test a verifier's own parsing).
- `blob(reference, descriptor, max_bytes)`: the blob's bytes. `descriptor.size` over
  `min(max_bytes, max_blob_bytes)`: `TooLarge`, before anything is read. Missing: `NotFound`. Served bytes
  of another size or digest: `IntegrityError`.
- `referrers(subject, artifact_type)`: the manifests pushed with `subject` set to the subject's digest (in
  its repository), as the OCI referrers API lists them (`artifactType` from the manifest, else its config's
  media type; the manifest's annotations), except those pushed with `listed=False`, plus what
  `list_referrer` added; filtered by `artifact_type`.
  More than `max_referrers`: `TooLarge`.
- `resolve(reference)`: what the reference's digest, else its tag, names (`NotFound` when nothing).

Every read is recorded in `requests` as `Request(op, target)` (`("manifest", digest)`, `("blob",
digest)`, `("referrers", subject digest)`, `("resolve", str(reference))`), so a test can say what was read
and what was not. Reads that a fault or a deadline changed are also in `faulted`; `active` counts reads in
progress; `read_started` (an `asyncio.Event`) is set by the first read.

Faults, for the reads that match `op` (one of `OPS`, or None for all) and `target` (as recorded, or None
for all), optionally only the next `times` of them:

- `fail(...)`: raise `error` (default: `Unavailable`, i.e. the registry is down);
- `stall(...)`: never answer: the read waits until the deadline of the context it was made through
  (`make_context`), then raises `Unavailable` as a timed-out request does; without a deadline, until it is
  cancelled;
- `corrupt(...)`: serve wrong bytes (`IntegrityError`, as the client's checks would find);
- `delay(seconds, ...)`: answer late.

`reader(deadline)` is the view one verification reads through: a read started after `deadline` (event
loop time) raises `Unavailable` with reason `deadline_exceeded`, as the client does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from verifiers import oci
from verifiers.base import Descriptor, Subject
from verifiers.errors import IntegrityError, InvalidContent, NotFound, TooLarge, Unavailable
from verifiers.reference import ImageReference, parse_reference
from verifiers.testing.builders import (
    EMPTY_CONFIG,
    artifact_manifest,
    digest_of,
    image_config,
    image_manifest,
)

__all__ = ["OPS", "Fault", "InMemoryRegistry", "Request"]

OPS = ("referrers", "manifest", "blob", "resolve")
Op = Literal["referrers", "manifest", "blob", "resolve"]
_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class Request(NamedTuple):
    """One read: `op` is one of `OPS`; `target` the digest, the subject digest, or the reference."""

    op: str
    target: str


@dataclass
class Fault:
    """One injected fault (see the module docstring); `times` None means every matching read."""

    kind: Literal["fail", "stall", "corrupt", "delay"]
    op: str | None = None
    target: str | None = None
    error: BaseException | None = None
    seconds: float = 0.0
    times: int | None = None

    def matches(self, request: Request) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        return (self.op is None or self.op == request.op) and (
            self.target is None or self.target == request.target
        )


def _repository(where: str | ImageReference | Subject) -> ImageReference:
    if isinstance(where, Subject):
        return where.reference
    if isinstance(where, ImageReference):
        return where
    return parse_reference(where)


def _wrong(data: bytes) -> bytes:
    """Other bytes of the same length (or one byte, for empty content)."""
    if not data:
        return b"\x00"
    return data[:-1] + bytes([data[-1] ^ 0x01])


class InMemoryRegistry:
    """A `verifiers.base.RegistryReader` over content pushed into it (see the module docstring)."""

    def __init__(
        self,
        *,
        check_manifests: bool = True,
        max_manifest_bytes: int = oci.MAX_DOCUMENT_BYTES,
        max_blob_bytes: int = 64 * 1024 * 1024,
        max_referrers: int = 1000,
    ) -> None:
        self.check_manifests = check_manifests
        self.max_manifest_bytes = max_manifest_bytes
        self.max_blob_bytes = max_blob_bytes
        self.max_referrers = max_referrers
        self._manifests: dict[str, dict[str, tuple[bytes, str]]] = {}
        self._blobs: dict[str, dict[str, bytes]] = {}
        self._tags: dict[str, dict[str, str]] = {}
        self._referrers: dict[tuple[str, str], list[Descriptor]] = {}
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.faulted: list[Request] = []
        self.active = 0
        self.read_started = asyncio.Event()

    # --- pushing content ------------------------------------------------------------------------------

    def push_blob(
        self, repository: str | ImageReference | Subject, data: bytes, media_type: str = _LAYER
    ) -> Descriptor:
        """Store a blob in `repository` (`registry/path`, or a reference or subject naming it)."""
        digest = digest_of(data)
        self._blobs.setdefault(_repository(repository).name, {})[digest] = bytes(data)
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    def push_manifest(
        self,
        repository: str | ImageReference | Subject,
        data: bytes,
        media_type: str | None = None,
        *,
        tag: str | None = None,
        listed: bool = True,
    ) -> Descriptor:
        """Store manifest bytes as they are (any bytes: junk too) and, with `tag`, tag them.

        `media_type` defaults to the document's own `mediaType`, else the OCI image manifest type. A
        valid manifest with a `subject` is listed among that subject's referrers, as registries do;
        with `listed=False` it is not, so a test can list it itself with `list_referrer` the way a
        lying listing would (another artifact type, other annotations, under another subject).
        """
        name = _repository(repository).name
        digest = digest_of(data)
        parsed: oci.ImageManifest | None = None
        try:
            document = oci.parse_manifest(data, media_type)
            if isinstance(document, oci.ImageManifest):
                parsed = document
            media_type = media_type or document.media_type
        except oci.ContentError:
            media_type = media_type or oci.OCI_MANIFEST
        self._manifests.setdefault(name, {})[digest] = (bytes(data), media_type)
        descriptor = Descriptor(media_type=media_type, digest=digest, size=len(data))
        if tag is not None:
            self._tags.setdefault(name, {})[tag] = digest
        if listed and parsed is not None and parsed.subject is not None:
            listing = Descriptor(
                media_type=media_type,
                digest=digest,
                size=len(data),
                artifact_type=parsed.kind,
                annotations=dict(parsed.annotations),
            )
            self._referrers.setdefault((name, parsed.subject.digest), []).append(listing)
        return descriptor

    def tag(self, reference: str | ImageReference, digest: str) -> None:
        """Point `reference`'s tag at `digest` (which need not exist: a tag can point at nothing)."""
        ref = _repository(reference)
        if ref.tag is None:
            raise ValueError(f"{reference} has no tag")
        self._tags.setdefault(ref.name, {})[ref.tag] = digest

    def untag(self, reference: str | ImageReference) -> None:
        ref = _repository(reference)
        self._tags.get(ref.name, {}).pop(ref.tag or "", None)

    def list_referrer(self, subject: Subject, descriptor: Descriptor) -> None:
        """List `descriptor` among `subject`'s referrers whatever it points to, as anyone who can push a
        tag-schema index (`sha256-<hex>`) can make a registry list it."""
        self._referrers.setdefault((subject.reference.name, subject.digest), []).append(descriptor)

    def push_image(
        self,
        reference: str,
        *,
        layers: Sequence[bytes] = (b"layer\n",),
        annotations: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        config: bytes | None = None,
    ) -> Subject:
        """Push an image (config, layers, manifest; tagged when `reference` has a tag) and return it as
        the `Subject` a workload naming `reference` would be verified as.

        `labels` go into the image configuration (`config.Labels`), `annotations` into the manifest;
        `config` replaces the whole configuration blob.
        """
        ref = _repository(reference)
        config_bytes = image_config(labels=labels) if config is None else config
        config_descriptor = self.push_blob(ref, config_bytes, _IMAGE_CONFIG)
        layer_descriptors = [self.push_blob(ref, layer, _LAYER) for layer in layers]
        data = image_manifest(config_descriptor, layer_descriptors, annotations=annotations)
        descriptor = self.push_manifest(ref, data, oci.OCI_MANIFEST, tag=ref.tag)
        if ref.digest is not None and ref.digest != descriptor.digest:
            raise ValueError(f"{reference} names {ref.digest}, but the image pushed is {descriptor.digest}")
        return Subject(
            reference=ref,
            digest=descriptor.digest,
            media_type=descriptor.media_type,
            size=descriptor.size,
            manifest=data,
        )

    def push_artifact(
        self,
        subject: Subject,
        artifact_type: str | None,
        blobs: Sequence[bytes | tuple[str, bytes] | tuple[str, bytes, Mapping[str, str]]] = (),
        *,
        annotations: Mapping[str, str] | None = None,
        config_media_type: str | None = None,
        listed: bool = True,
    ) -> Descriptor:
        """Push an artifact (a signature, an SBOM, ...) that refers to `subject`; its manifest descriptor.

        Each blob is bytes (media type `application/octet-stream`), `(media type, bytes)`, or `(media type,
        bytes, layer annotations)` (cosign keeps its signature in a layer annotation). By default
        the artifact is an OCI 1.1 artifact (`artifactType`, an empty config); with `config_media_type`
        the config carries that media type (notation's layout: pass `artifact_type=None`). The manifest is
        listed among `subject`'s referrers, unless `listed=False` (see `push_manifest`).
        """
        layers = []
        for blob in blobs:
            if isinstance(blob, bytes):
                blob = ("application/octet-stream", blob)
            layer = self.push_blob(subject, blob[1], blob[0])
            if len(blob) == 3:
                layer = dataclasses.replace(layer, annotations=dict(blob[2]))
            layers.append(layer)
        self.push_blob(subject, b"{}", oci.EMPTY_MEDIA_TYPE)
        config = EMPTY_CONFIG
        if config_media_type is not None:
            config = Descriptor(media_type=config_media_type, digest=EMPTY_CONFIG.digest, size=2)
        data = artifact_manifest(
            subject.descriptor, artifact_type, layers, annotations=annotations, config=config
        )
        return self.push_manifest(subject, data, oci.OCI_MANIFEST, listed=listed)

    # --- faults ---------------------------------------------------------------------------------------

    def fail(
        self,
        op: str | None = None,
        *,
        target: str | None = None,
        error: BaseException | None = None,
        times: int | None = None,
    ) -> Fault:
        """Matching reads raise `error` (default `Unavailable`: the registry is down)."""
        return self._add(Fault("fail", op, target, error=error, times=times))

    def stall(self, op: str | None = None, *, target: str | None = None, times: int | None = None) -> Fault:
        """Matching reads never answer: until the reader's deadline (then `Unavailable`), or cancelled."""
        return self._add(Fault("stall", op, target, times=times))

    def corrupt(self, op: str | None = None, *, target: str | None = None, times: int | None = None) -> Fault:
        """Matching reads are served wrong bytes (`IntegrityError`, as the client's checks find)."""
        return self._add(Fault("corrupt", op, target, times=times))

    def delay(
        self, seconds: float, op: str | None = None, *, target: str | None = None, times: int | None = None
    ) -> Fault:
        """Matching reads answer `seconds` late."""
        return self._add(Fault("delay", op, target, seconds=seconds, times=times))

    def clear_faults(self) -> None:
        self.faults.clear()

    def _add(self, fault: Fault) -> Fault:
        if fault.op is not None and fault.op not in OPS:
            raise ValueError(f"unknown operation {fault.op!r} (one of {', '.join(OPS)})")
        self.faults.append(fault)
        return fault

    # --- reading --------------------------------------------------------------------------------------

    def reader(self, deadline: float | None) -> _DeadlineReader:
        """The `RegistryReader` one verification reads through, keeping `deadline` (event loop time)."""
        return _DeadlineReader(self, deadline)

    async def referrers(self, subject: Subject, artifact_type: str | None = None) -> Sequence[Descriptor]:
        return await self._referrers_of(subject, artifact_type, None)

    async def manifest(self, reference: ImageReference, digest: str) -> tuple[bytes, str]:
        return await self._manifest(reference, digest, None)

    async def blob(self, reference: ImageReference, descriptor: Descriptor, max_bytes: int) -> bytes:
        return await self._blob(reference, descriptor, max_bytes, None)

    async def resolve(self, reference: ImageReference) -> Descriptor:
        return await self._resolve(reference, None)

    async def _begin(self, request: Request, host: str, deadline: float | None) -> bool:
        """Record the read and apply the faults; whether its bytes are to be corrupted."""
        self.requests.append(request)
        self.read_started.set()
        loop = asyncio.get_running_loop()
        if deadline is not None and loop.time() >= deadline:
            self.faulted.append(request)
            raise Unavailable(f"{host}: deadline reached before the request was sent", "deadline_exceeded")
        corrupt = False
        for fault in [f for f in self.faults if f.matches(request)]:
            if fault.times is not None:
                fault.times -= 1
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
                continue
            self.faulted.append(request)
            if fault.kind == "fail":
                raise (
                    fault.error
                    if fault.error is not None
                    else Unavailable(f"{host}: {request.op} {request.target}: HTTP 503")
                )
            if fault.kind == "stall":
                if deadline is None:
                    await asyncio.Event().wait()  # until cancelled
                else:
                    await asyncio.sleep(max(0.0, deadline - loop.time()))
                raise Unavailable(
                    f"cannot reach {host}: {request.op} {request.target} timed out", "registry_timeout"
                )
            corrupt = True
        return corrupt

    async def _referrers_of(
        self, subject: Subject, artifact_type: str | None, deadline: float | None
    ) -> Sequence[Descriptor]:
        self.active += 1
        try:
            corrupt = await self._begin(
                Request("referrers", subject.digest), subject.reference.registry, deadline
            )
            if corrupt:
                raise InvalidContent(f"referrers of {subject.reference.name}@{subject.digest}: not JSON")
            found = list(self._referrers.get((subject.reference.name, subject.digest), ()))
            if len(found) > self.max_referrers:
                raise TooLarge(
                    f"{subject.reference.name}@{subject.digest} has more than {self.max_referrers} referrers"
                )
            return [d for d in found if artifact_type is None or d.artifact_type == artifact_type]
        finally:
            self.active -= 1

    async def _manifest(
        self, reference: ImageReference, digest: str, deadline: float | None
    ) -> tuple[bytes, str]:
        self.active += 1
        try:
            corrupt = await self._begin(Request("manifest", digest), reference.registry, deadline)
            return self._checked_manifest(reference, digest, corrupt)
        finally:
            self.active -= 1

    def _checked_manifest(self, reference: ImageReference, digest: str, corrupt: bool) -> tuple[bytes, str]:
        stored = self._manifests.get(reference.name, {}).get(digest)
        if stored is None:
            raise NotFound(f"manifest {digest} not found in {reference.name}")
        data, media_type = stored
        if corrupt:
            data = _wrong(data)
        if len(data) > self.max_manifest_bytes:
            raise TooLarge(
                f"manifest {digest} is {len(data)} bytes, over the limit of {self.max_manifest_bytes}"
            )
        served = _digest(data, digest.split(":")[0])
        if served != digest:
            raise IntegrityError(
                f"registry served manifest bytes for {reference.name}@{digest} that hash to {served}"
            )
        if self.check_manifests:
            try:
                media_type = oci.parse_manifest(data, media_type).media_type
            except oci.ContentError as e:
                raise InvalidContent(f"manifest {reference.name}@{digest}: {e}") from None
        return data, media_type

    async def _blob(
        self, reference: ImageReference, descriptor: Descriptor, max_bytes: int, deadline: float | None
    ) -> bytes:
        self.active += 1
        try:
            corrupt = await self._begin(Request("blob", descriptor.digest), reference.registry, deadline)
            limit = min(max_bytes, self.max_blob_bytes)
            if descriptor.size > limit:
                raise TooLarge(
                    f"blob {descriptor.digest} is {descriptor.size} bytes, over the limit of {limit}"
                )
            data = self._blobs.get(reference.name, {}).get(descriptor.digest)
            if data is None:
                raise NotFound(f"blob {descriptor.digest} not found in {reference.name}")
            if corrupt:
                data = _wrong(data)
            if len(data) > descriptor.size:
                raise IntegrityError(
                    f"blob {descriptor.digest}: registry served more than {descriptor.size} bytes"
                )
            if len(data) != descriptor.size:
                raise IntegrityError(
                    f"blob {descriptor.digest}: expected {descriptor.size} bytes, got {len(data)}"
                )
            served = _digest(data, descriptor.digest.split(":")[0])
            if served != descriptor.digest:
                raise IntegrityError(
                    f"registry served blob bytes for {descriptor.digest} that hash to {served}"
                )
            return data
        finally:
            self.active -= 1

    async def _resolve(self, reference: ImageReference, deadline: float | None) -> Descriptor:
        self.active += 1
        try:
            corrupt = await self._begin(Request("resolve", str(reference)), reference.registry, deadline)
            digest = reference.digest
            if digest is None:
                digest = self._tags.get(reference.name, {}).get(reference.tag or "")
                if digest is None:
                    raise NotFound(f"manifest {reference.tag} not found in {reference.name}")
            data, media_type = self._checked_manifest(reference, digest, corrupt)
            return Descriptor(media_type=media_type, digest=digest, size=len(data))
        finally:
            self.active -= 1


def _digest(data: bytes, algorithm: str) -> str:
    if algorithm == "sha512":
        return "sha512:" + hashlib.sha512(data).hexdigest()
    return digest_of(data)


class _DeadlineReader:
    """The view of an `InMemoryRegistry` one verification reads through (see `InMemoryRegistry.reader`)."""

    def __init__(self, registry: InMemoryRegistry, deadline: float | None) -> None:
        self.registry = registry
        self.deadline = deadline

    async def referrers(self, subject: Subject, artifact_type: str | None = None) -> Sequence[Descriptor]:
        return await self.registry._referrers_of(subject, artifact_type, self.deadline)

    async def manifest(self, reference: ImageReference, digest: str) -> tuple[bytes, str]:
        return await self.registry._manifest(reference, digest, self.deadline)

    async def blob(self, reference: ImageReference, descriptor: Descriptor, max_bytes: int) -> bytes:
        return await self.registry._blob(reference, descriptor, max_bytes, self.deadline)

    async def resolve(self, reference: ImageReference) -> Descriptor:
        return await self.registry._resolve(reference, self.deadline)
