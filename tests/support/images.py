"""Small but realistic OCI images and SBOM referrers, built in Python and pushed with the real oras CLI.

No docker: an image is written as an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/``) and
pushed with ``oras cp --from-oci-layout``. Each image has a config blob, one gzip'd tar layer holding a file
with a seed in it (so distinct seeds give distinct digests, and equal seeds equal ones) and a manifest.
Referrers (SBOMs and arbitrary artifacts) are attached with ``oras attach``, through the referrers API on
registries that have it and through the ``sha256-<hex>`` tag schema on those that do not.

Every function here is synchronous and runs subprocesses: from async code, call it through
``asyncio.to_thread``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import secrets
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tests.support.registries import Registry
from tests.support.tools import ensure_tool

__all__ = [
    "CYCLONEDX_JSON",
    "DEFAULT_PACKAGES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "SBOM_MEDIA_TYPES",
    "SPDX_JSON",
    "Blob",
    "OciContent",
    "OrasError",
    "PushedImage",
    "PushedIndex",
    "SbomFormat",
    "attach_artifact",
    "attach_sbom",
    "build_image",
    "build_index",
    "cyclonedx_document",
    "digest_of",
    "oras",
    "push_image",
    "push_index",
    "sbom_document",
    "spdx_document",
    "write_oci_layout",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
SPDX_JSON = "application/spdx+json"
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"

SbomFormat = Literal["spdx", "cyclonedx"]
SBOM_MEDIA_TYPES: dict[SbomFormat, str] = {"spdx": SPDX_JSON, "cyclonedx": CYCLONEDX_JSON}

#: A fixed timestamp keeps built content (and so its digests) reproducible.
_CREATED = "2024-01-01T00:00:00Z"
_ORAS_TIMEOUT = 60.0
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    """Content with its media type; ``descriptor()`` is its OCI descriptor."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class OciContent:
    """A manifest or index (``top``) and every blob it needs, ``top`` included (children first)."""

    top: Blob
    blobs: tuple[Blob, ...]
    #: For an index: the platform manifests, in index order.
    children: tuple[OciContent, ...] = ()
    platform: str | None = None  # "os/architecture" of a platform manifest


# --- building ------------------------------------------------------------------------------------------


def _layer_tar(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_image(
    seed: str,
    *,
    os_name: str = "linux",
    architecture: str = "amd64",
    annotations: Mapping[str, str] | None = None,
) -> OciContent:
    """An OCI image manifest with a config and one gzip'd tar layer; its digest is a function of ``seed``."""
    tar = _layer_tar(
        {
            "etc/countersign-seed": f"{seed}\n".encode(),
            "app/hello.txt": f"countersign test image ({os_name}/{architecture}), seed {seed}\n".encode(),
        }
    )
    layer = Blob(OCI_LAYER_GZIP, gzip.compress(tar, compresslevel=6, mtime=0))
    config = Blob(
        OCI_CONFIG,
        _json_bytes(
            {
                "created": _CREATED,
                "architecture": architecture,
                "os": os_name,
                "config": {
                    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                    "Cmd": ["/bin/cat", "/app/hello.txt"],
                    "Labels": {"org.opencontainers.image.title": "countersign-test", "seed": seed},
                },
                "rootfs": {"type": "layers", "diff_ids": [digest_of(tar)]},
                "history": [{"created": _CREATED, "created_by": "countersign tests/support/images.py"}],
            }
        ),
    )
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    top = Blob(OCI_MANIFEST, _json_bytes(manifest))
    return OciContent(top=top, blobs=(config, layer, top), platform=f"{os_name}/{architecture}")


def build_index(
    seed: str,
    *,
    platforms: Sequence[tuple[str, str]] = (("linux", "amd64"), ("linux", "arm64")),
    annotations: Mapping[str, str] | None = None,
) -> OciContent:
    """An OCI image index over one image per ``(os, architecture)`` in ``platforms``."""
    children = tuple(
        build_image(f"{seed}/{os_name}/{arch}", os_name=os_name, architecture=arch)
        for os_name, arch in platforms
    )
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            child.top.descriptor(platform={"architecture": arch, "os": os_name})
            for child, (os_name, arch) in zip(children, platforms, strict=True)
        ],
    }
    if annotations:
        index["annotations"] = dict(annotations)
    top = Blob(OCI_INDEX, _json_bytes(index))
    blobs: dict[str, Blob] = {}
    for child in children:
        blobs.update((blob.digest, blob) for blob in child.blobs)
    blobs[top.digest] = top
    return OciContent(top=top, blobs=tuple(blobs.values()), children=children)


def write_oci_layout(directory: Path, content: OciContent, tag: str) -> Path:
    """Write ``content`` as an OCI image layout in ``directory``, with ``content.top`` tagged ``tag``."""
    blob_dir = directory / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_bytes(_json_bytes({"imageLayoutVersion": "1.0.0"}))
    for blob in content.blobs:
        (blob_dir / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [content.top.descriptor(annotations={"org.opencontainers.image.ref.name": tag})],
    }
    (directory / "index.json").write_bytes(_json_bytes(index))
    return directory


# --- oras ----------------------------------------------------------------------------------------------


class OrasError(RuntimeError):
    """An oras command failed or timed out; the message carries its command line and stderr."""


def oras(*args: str, cwd: Path | None = None, timeout: float = _ORAS_TIMEOUT) -> str:
    """Run the pinned oras CLI with ``args`` (``--no-tty`` added) and return its stdout."""
    command = [str(ensure_tool("oras")), *args, "--no-tty"]
    try:
        completed = subprocess.run(
            command,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr
        raise OrasError(f"timed out after {timeout:.0f}s: {' '.join(command)}\n{stderr or ''}") from error
    if completed.returncode != 0:
        raise OrasError(
            f"exit status {completed.returncode}: {' '.join(command)}\n"
            f"{completed.stderr.strip()}\n{completed.stdout.strip()}"
        )
    return completed.stdout


@dataclass(frozen=True)
class PushedImage:
    """An image (or index) as pushed: where it is, and its exact manifest bytes."""

    registry_host: str
    repository: str
    tag: str | None
    digest: str
    manifest: bytes
    media_type: str
    seed: str
    #: ``"os/architecture"`` of an image manifest; ``None`` for an index.
    platform: str | None = None

    @property
    def size(self) -> int:
        return len(self.manifest)

    @property
    def reference(self) -> str:
        """``HOST/REPO:TAG`` (``HOST/REPO@DIGEST`` when untagged)."""
        return f"{self.registry_host}/{self.repository}:{self.tag}" if self.tag else self.pinned

    @property
    def pinned(self) -> str:
        """``HOST/REPO@sha256:...``."""
        return f"{self.registry_host}/{self.repository}@{self.digest}"

    @property
    def tagged_and_pinned(self) -> str:
        """``HOST/REPO:TAG@sha256:...`` (``HOST/REPO@DIGEST`` when untagged)."""
        if not self.tag:
            return self.pinned
        return f"{self.registry_host}/{self.repository}:{self.tag}@{self.digest}"


@dataclass(frozen=True)
class PushedIndex(PushedImage):
    """An image index as pushed, with its platform manifests (pushed untagged, by digest)."""

    children: tuple[PushedImage, ...] = ()

    def platform_digest(self, platform: str) -> str:
        """The digest of the manifest for ``"os/architecture"``."""
        for child in self.children:
            if child.platform == platform:
                return child.digest
        raise KeyError(platform)


def _push(registry: Registry, repo: str, tag: str | None, content: OciContent) -> None:
    layout_tag = tag or "latest"
    destination = f"{registry.host}/{repo}:{tag}" if tag else f"{registry.host}/{repo}@{content.top.digest}"
    with tempfile.TemporaryDirectory(prefix="countersign-layout-") as scratch:
        layout = write_oci_layout(Path(scratch) / "layout", content, layout_tag)
        out = oras(
            "cp", "--from-oci-layout", f"{layout}:{layout_tag}", destination, *registry.oras_flags("to-")
        )
    reported = re.search(r"^Digest: (sha256:[0-9a-f]{64})\s*$", out, re.MULTILINE)
    if reported is None or reported.group(1) != content.top.digest:
        raise OrasError(
            f"oras cp reported another digest than {content.top.digest} for {destination}:\n{out}"
        )


def _seed(seed: str | None) -> str:
    return seed if seed is not None else secrets.token_hex(8)


def push_image(
    registry: Registry,
    repo: str,
    tag: str | None,
    *,
    seed: str | None = None,
    os_name: str = "linux",
    architecture: str = "amd64",
    annotations: Mapping[str, str] | None = None,
) -> PushedImage:
    """Build an image (random ``seed`` unless given) and push it as ``repo:tag`` (by digest if no ``tag``)."""
    seed = _seed(seed)
    content = build_image(seed, os_name=os_name, architecture=architecture, annotations=annotations)
    _push(registry, repo, tag, content)
    return PushedImage(
        registry.host, repo, tag, content.top.digest, content.top.data, OCI_MANIFEST, seed, content.platform
    )


def push_index(
    registry: Registry,
    repo: str,
    tag: str | None,
    *,
    seed: str | None = None,
    platforms: Sequence[tuple[str, str]] = (("linux", "amd64"), ("linux", "arm64")),
    annotations: Mapping[str, str] | None = None,
) -> PushedIndex:
    """Build an OCI image index with one image per platform and push it (children go by digest)."""
    seed = _seed(seed)
    content = build_index(seed, platforms=platforms, annotations=annotations)
    _push(registry, repo, tag, content)
    children = tuple(
        PushedImage(
            registry.host, repo, None, child.top.digest, child.top.data, OCI_MANIFEST, seed, child.platform
        )
        for child in content.children
    )
    return PushedIndex(
        registry.host,
        repo,
        tag,
        content.top.digest,
        content.top.data,
        OCI_INDEX,
        seed,
        children=children,
    )


# --- SBOM documents --------------------------------------------------------------------------------------

#: (name, version, purl) of the packages/components in the default SBOM documents.
DEFAULT_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("openssl", "3.0.13", "pkg:deb/debian/openssl@3.0.13?arch=amd64"),
    ("zlib", "1.3.1", "pkg:deb/debian/zlib@1.3.1?arch=amd64"),
)


def _document_uuid(subject: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"countersign-test-sbom:{subject}")


def spdx_document(
    subject: str = "countersign-test-image",
    *,
    packages: Sequence[tuple[str, str, str]] = DEFAULT_PACKAGES,
) -> bytes:
    """A valid SPDX 2.3 JSON document describing ``packages`` (deterministic for a given ``subject``)."""
    spdx_packages = [
        {
            "name": name,
            "SPDXID": f"SPDXRef-Package-{position}-{re.sub(r'[^A-Za-z0-9.-]', '-', name)}",
            "versionInfo": version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "supplier": "NOASSERTION",
            "externalRefs": [
                {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}
            ],
        }
        for position, (name, version, purl) in enumerate(packages, start=1)
    ]
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject,
        "documentNamespace": f"https://countersign.invalid/spdx/{_document_uuid(subject)}",
        "creationInfo": {"created": _CREATED, "creators": ["Tool: countersign-testbed-0.1"]},
        "packages": spdx_packages,
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": package["SPDXID"],
            }
            for package in spdx_packages
        ],
    }
    return json.dumps(document, indent=2).encode()


def cyclonedx_document(
    subject: str = "countersign-test-image",
    *,
    components: Sequence[tuple[str, str, str]] = DEFAULT_PACKAGES,
) -> bytes:
    """A valid CycloneDX 1.5 JSON BOM listing ``components`` (deterministic for a given ``subject``)."""
    document = {
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{_document_uuid(subject)}",
        "version": 1,
        "metadata": {
            "timestamp": _CREATED,
            "tools": {
                "components": [{"type": "application", "name": "countersign-testbed", "version": "0.1"}]
            },
            "component": {"type": "container", "name": subject, "bom-ref": "subject"},
        },
        "components": [
            {"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl}
            for name, version, purl in components
        ],
    }
    return json.dumps(document, indent=2).encode()


def sbom_document(fmt: SbomFormat, subject: str = "countersign-test-image") -> bytes:
    """The default SBOM document of format ``fmt``."""
    return spdx_document(subject) if fmt == "spdx" else cyclonedx_document(subject)


# --- referrers -----------------------------------------------------------------------------------------


def _subject(registry: Registry, image: PushedImage | str) -> str:
    if isinstance(image, PushedImage):
        return f"{registry.host}/{image.repository}@{image.digest}"
    repo, _, digest = image.partition("@")
    if not repo or not _DIGEST_RE.match(digest):
        raise ValueError(f"subject must be a PushedImage or 'repo@sha256:<hex>', not {image!r}")
    return f"{registry.host}/{image}"


def attach_artifact(
    registry: Registry,
    image: PushedImage | str,
    *,
    artifact_type: str,
    content: bytes | None = None,
    media_type: str = "application/octet-stream",
    filename: str = "artifact.bin",
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Attach a referrer of ``artifact_type`` to ``image`` with ``oras attach``; returns its manifest digest.

    ``content`` becomes its single layer (of ``media_type``); ``None`` attaches a manifest without layers
    (oras then needs an annotation: a description is added when ``annotations`` is empty).
    ``image`` is a :class:`PushedImage` or ``"repo@sha256:<hex>"`` in ``registry`` (e.g. another referrer).
    The referrers API is used on registries that have it, the ``sha256-<hex>`` tag schema on the others.
    """
    subject = _subject(registry, image)
    args = [
        "attach",
        "--artifact-type",
        artifact_type,
        "--distribution-spec",
        registry.oras_distribution_spec(),
        "--format",
        "json",
        *registry.oras_flags(),
    ]
    if content is None and not annotations:
        # oras attach refuses a referrer with neither a file nor an annotation.
        annotations = {"org.opencontainers.image.description": "countersign test artifact without layers"}
    for key, value in (annotations or {}).items():
        args += ["--annotation", f"{key}={value}"]
    with tempfile.TemporaryDirectory(prefix="countersign-attach-") as scratch:
        args.append(subject)
        if content is not None:
            # oras refuses paths outside its working directory, so the file is named relative to it.
            if "/" in filename or filename.startswith("."):
                raise ValueError(f"filename must be a plain file name, not {filename!r}")
            (Path(scratch) / filename).write_bytes(content)
            args.append(f"{filename}:{media_type}")
        out = oras(*args, cwd=Path(scratch))
    try:
        digest = json.loads(out)["digest"]
    except (ValueError, KeyError, TypeError) as error:
        raise OrasError(f"unexpected output from oras attach to {subject}:\n{out}") from error
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise OrasError(f"oras attach to {subject} reported an invalid digest {digest!r}")
    return digest


def attach_sbom(
    registry: Registry,
    image: PushedImage | str,
    *,
    fmt: SbomFormat = "spdx",
    document: bytes | None = None,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Attach an SBOM (the default document of ``fmt`` unless ``document`` is given) to ``image``.

    The layer's media type is the SBOM media type (``application/spdx+json`` or
    ``application/vnd.cyclonedx+json``), and so is the artifact type unless ``artifact_type`` overrides it.
    Returns the digest of the referrer manifest.
    """
    media_type = SBOM_MEDIA_TYPES[fmt]
    if document is None:
        name = image.reference if isinstance(image, PushedImage) else f"{registry.host}/{image}"
        document = sbom_document(fmt, name)
    return attach_artifact(
        registry,
        image,
        artifact_type=artifact_type or media_type,
        content=document,
        media_type=media_type,
        filename="sbom.spdx.json" if fmt == "spdx" else "sbom.cdx.json",
        annotations=annotations,
    )
