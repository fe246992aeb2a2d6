"""Sigstore trusted roots (`application/vnd.dev.sigstore.trustedroot+json;version=0.1`), parsed once.

`load_trusted_root(bytes)` is pure; `public_good_trusted_root()` and `staging_trusted_root()` read the roots
the installed sigstore-python distribution carries (no TUF, no network) and are the only file reads here.

The parsed `TrustRoot` keeps:

- the Fulcio certificate authorities, each a chain (as listed, leaf-most first) and its validity window
  (the period the CA issued certificates in);
- the transparency-log (Rekor) and certificate-transparency log keys, by log ID as the root declares it
  (for Rekor v1 and CT logs, the SHA-256 of the DER SubjectPublicKeyInfo), each with its validity window;
- the RFC 3161 timestamp authorities;
- sigstore-python's own `TrustedRoot`, used to verify certificate bundles.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sigstore.models import TrustedRoot as SigstoreTrustedRoot
from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootModel

from verifiers.cosign.keys import PublicKey, check_key_type

__all__ = [
    "TRUSTED_ROOT_MEDIA_TYPE",
    "CertificateAuthority",
    "LogKey",
    "TrustRoot",
    "Window",
    "load_trusted_root",
    "public_good_trusted_root",
    "staging_trusted_root",
]

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
_MAX_TRUSTED_ROOT_BYTES = 1024 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """A validity window; `end` None means open-ended."""

    start: datetime
    end: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment <= self.end)


@dataclass(frozen=True, slots=True)
class LogKey:
    """A transparency log's (or CT log's) public key."""

    log_id: bytes
    key: PublicKey
    window: Window
    base_url: str


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A Fulcio CA or a timestamp authority: its chain, leaf-most first, root last."""

    certificates: tuple[x509.Certificate, ...]
    window: Window
    uri: str


@dataclass(frozen=True, slots=True)
class TrustRoot:
    certificate_authorities: tuple[CertificateAuthority, ...]
    tlogs: Mapping[bytes, LogKey]
    ctlogs: Mapping[bytes, LogKey]
    timestamp_authorities: tuple[CertificateAuthority, ...]
    sigstore: SigstoreTrustedRoot


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"{where} is not valid base64: {exc}") from None


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be an RFC 3339 timestamp")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{where} is not an RFC 3339 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"{where} has no time zone: {value!r}")
    return moment


def _window(value: Any, where: str) -> Window:
    if value is None:
        return Window(start=_EPOCH)  # validFor is optional: always valid
    if not isinstance(value, dict) or "start" not in value:
        raise ValueError(f"{where}.validFor must be an object with a start")
    end = value.get("end")
    return Window(
        start=_time(value["start"], f"{where}.validFor.start"),
        end=None if end is None else _time(end, f"{where}.validFor.end"),
    )


def _log_keys(entries: Any, where: str) -> dict[bytes, LogKey]:
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise ValueError(f"{where} must be an array")
    out: dict[bytes, LogKey] = {}
    for index, entry in enumerate(entries):
        at = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{at} must be an object")
        public_key = entry.get("publicKey")
        log_id = entry.get("logId")
        if not isinstance(public_key, dict) or not isinstance(log_id, dict):
            raise ValueError(f"{at} needs publicKey and logId objects")
        raw = _b64(public_key.get("rawBytes"), f"{at}.publicKey.rawBytes")
        try:
            # SubjectPublicKeyInfo, or a bare PKCS#1 RSAPublicKey (old CT log entries use it).
            key = check_key_type(serialization.load_der_public_key(raw))
        except ValueError:
            # A key type this verifier does not implement (or a weak one) can never vouch for anything;
            # the rest of the root stays usable.
            continue
        ident = _b64(log_id.get("keyId"), f"{at}.logId.keyId")
        base_url = entry.get("baseUrl", "")
        out[ident] = LogKey(
            log_id=ident,
            key=key,
            window=_window(public_key.get("validFor"), f"{at}.publicKey"),
            base_url=base_url if isinstance(base_url, str) else "",
        )
    return out


def _authorities(entries: Any, where: str) -> tuple[CertificateAuthority, ...]:
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ValueError(f"{where} must be an array")
    out: list[CertificateAuthority] = []
    for index, entry in enumerate(entries):
        at = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{at} must be an object")
        chain = entry.get("certChain")
        certificates = chain.get("certificates") if isinstance(chain, dict) else None
        if not isinstance(certificates, list) or not certificates:
            raise ValueError(f"{at}.certChain.certificates must be a non-empty array")
        parsed: list[x509.Certificate] = []
        for position, item in enumerate(certificates):
            where_cert = f"{at}.certChain.certificates[{position}]"
            raw = _b64(item.get("rawBytes") if isinstance(item, dict) else None, f"{where_cert}.rawBytes")
            try:
                parsed.append(x509.load_der_x509_certificate(raw))
            except ValueError as exc:
                raise ValueError(f"{where_cert} is not a DER certificate: {exc}") from None
        uri = entry.get("uri", "")
        out.append(
            CertificateAuthority(
                certificates=tuple(parsed),
                window=_window(entry.get("validFor"), at),
                uri=uri if isinstance(uri, str) else "",
            )
        )
    return tuple(out)


def load_trusted_root(data: bytes) -> TrustRoot:
    """Parse a Sigstore trusted root (JSON bytes). ValueError says what is wrong with it."""
    if len(data) > _MAX_TRUSTED_ROOT_BYTES:
        raise ValueError(f"trusted root is larger than {_MAX_TRUSTED_ROOT_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"trusted root is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ValueError("trusted root must be a JSON object")
    media_type = document.get("mediaType")
    if media_type != TRUSTED_ROOT_MEDIA_TYPE:
        raise ValueError(f"trusted root mediaType must be {TRUSTED_ROOT_MEDIA_TYPE!r}, not {media_type!r}")
    authorities = _authorities(document.get("certificateAuthorities"), "certificateAuthorities")
    tlogs = _log_keys(document.get("tlogs"), "tlogs")
    ctlogs = _log_keys(document.get("ctlogs"), "ctlogs")
    tsas = _authorities(document.get("timestampAuthorities"), "timestampAuthorities")
    if not authorities and not tlogs:
        raise ValueError("trusted root has neither certificate authorities nor transparency logs")
    try:
        # sigstore-python verifies certificate bundles; its public constructor reads a file, so the
        # model is built from the same bytes instead (no I/O, no TUF).
        sigstore_root = SigstoreTrustedRoot(TrustedRootModel.from_json(data))
    except Exception as exc:  # pydantic's ValidationError and sigstore's Error
        raise ValueError(f"trusted root rejected by sigstore-python: {exc}") from None
    return TrustRoot(
        certificate_authorities=authorities,
        tlogs=tlogs,
        ctlogs=ctlogs,
        timestamp_authorities=tsas,
        sigstore=sigstore_root,
    )


# The files of the installed sigstore distribution that hold the roots it embeds. sigstore-python has no
# public accessor for them (docs/decisions.md, "Only public APIs of dependencies": the one exception, and
# why the roots are not copied into Countersign instead); a unit test fails if an upgrade moves them.
EMBEDDED_ROOTS = {
    "public-good": "_store/https%3A%2F%2Ftuf-repo-cdn.sigstore.dev/trusted_root.json",
    "staging": "_store/https%3A%2F%2Ftuf-repo-cdn.sigstage.dev/trusted_root.json",
}


def _embedded(name: str) -> bytes:
    return resources.files("sigstore").joinpath(EMBEDDED_ROOTS[name]).read_bytes()


def public_good_trusted_root() -> TrustRoot:
    """The public-good Sigstore instance's trusted root, as the installed sigstore-python embeds it
    (offline; updated by upgrading sigstore, or replaced with the `trustedRoot` option)."""
    return load_trusted_root(_embedded("public-good"))


def staging_trusted_root() -> TrustRoot:
    """The staging Sigstore instance's trusted root, as the installed sigstore-python embeds it (offline;
    for tests)."""
    return load_trusted_root(_embedded("staging"))
