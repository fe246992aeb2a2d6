"""A real RFC 3161 timestamp authority for tests: sigstore's ``timestamp-server`` on 127.0.0.1.

:class:`TsaCertificates` generates the authority's PKI with `cryptography`: a self-signed root CA (P-384)
and a TSA leaf (P-256) carrying the *critical* timeStamping extended key usage (RFC 3161 section 2.3), with
an intermediate CA between them on request. :class:`TimestampServer` runs the pinned ``timestamp-server``
(``tools/install.sh tsa``) with that key and chain (``--timestamp-signer file``) on a free port of
127.0.0.1, in its own temporary directory, and waits (bounded) until it answers; ``stop()`` (or leaving the
``with`` block, or the interpreter exiting) terminates it. NTP monitoring is off: nothing leaves the machine.

Talking to it::

    with TimestampServer(tmp_path / "tsa") as tsa:
        response = tsa.timestamp(hashlib.sha256(signature).digest(), "sha256")  # DER TimeStampResp
        chain_pem = tsa.certchain_pem()                   # GET /api/v1/timestamp/certchain
        annotation = cosign_timestamp_annotation(response)  # cosign's rfc3161timestamp annotation JSON

Trusting it: :func:`timestamp_authority_entry` is the ``timestampAuthorities[]`` item of a Sigstore trusted
root for a chain; :func:`with_timestamp_authorities` adds such items to a trusted-root document (for
instance ``PrivateSigstore.trusted_root_document()``), and :func:`write_trusted_root` writes one.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import pki
from tests.support.processes import LiveProcesses, StartStop, start_logged, terminate
from tests.support.registries import LOOPBACK, free_port
from tests.support.tools import ensure_tool

__all__ = [
    "HASH_OIDS",
    "TimestampServer",
    "TimestampServerError",
    "TsaCertificates",
    "cosign_timestamp_annotation",
    "der_length",
    "pem",
    "timestamp_authority_entry",
    "timestamp_request",
    "with_timestamp_authorities",
    "write_trusted_root",
]

_READY_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0
_HTTP_TIMEOUT = 10.0
#: The hash algorithms a request may use, and their OIDs.
HASH_OIDS: dict[str, str] = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_HASH_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}


class TimestampServerError(RuntimeError):
    """The timestamp server did not start, or answered a request with an error."""


# --- DER for requests (test side only; the verifier parses with rfc3161-client) ---------------------------


def der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, contents: bytes) -> bytes:
    return bytes([tag]) + der_length(len(contents)) + contents


def _oid(dotted: str) -> bytes:
    first, second, *rest = (int(part) for part in dotted.split("."))
    out = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _integer(value: int) -> bytes:
    raw = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    return _tlv(0x02, raw)


def timestamp_request(
    data_hash: bytes, algorithm: str = "sha256", *, nonce: int | None = None, cert_req: bool = True
) -> bytes:
    """The DER of an RFC 3161 ``TimeStampReq`` for ``data_hash`` (version 1, no policy)."""
    if algorithm not in HASH_OIDS:
        raise ValueError(f"unsupported hash algorithm {algorithm!r} (one of {sorted(HASH_OIDS)})")
    if len(data_hash) != _HASH_SIZES[algorithm]:
        raise ValueError(f"a {algorithm} hash has {_HASH_SIZES[algorithm]} bytes, not {len(data_hash)}")
    algorithm_identifier = _tlv(0x30, _oid(HASH_OIDS[algorithm]) + b"\x05\x00")
    message_imprint = _tlv(0x30, algorithm_identifier + _tlv(0x04, data_hash))
    body = _integer(1) + message_imprint
    if nonce is not None:
        body += _integer(nonce)
    if cert_req:
        body += b"\x01\x01\xff"
    return _tlv(0x30, body)


def cosign_timestamp_annotation(response: bytes) -> bytes:
    """cosign's ``dev.sigstore.cosign/rfc3161timestamp`` annotation value for a DER timestamp response."""
    return json.dumps({"SignedRFC3161Timestamp": base64.b64encode(response).decode("ascii")}).encode()


# --- the authority's PKI ---------------------------------------------------------------------------------


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class TsaCertificates:
    """A TSA's signing key and chain: root CA -> (intermediate CA ->) TSA leaf (timeStamping EKU, critical).

    The leaf is valid from ``not_before`` to ``not_after`` (default: an hour ago to a week ahead); the CAs
    a day longer on each side. ``eku_critical=False`` makes a leaf RFC 3161 forbids (for negative tests;
    ``timestamp-server`` refuses to sign with it, so such a chain is for trusted roots only).
    ``ocsp_url``/``crl_url`` give the leaf an OCSP responder (authorityInfoAccess) and a CRL distribution
    point, so its revocation can be checked (against its issuer: the root, or the intermediate); only use
    127.0.0.1 URLs (tests/support/revocation.py), as notation contacts them when it verifies a timestamp.
    """

    name: str = "countersign-test-tsa"
    intermediate: bool = False
    not_before: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=1))
    not_after: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(days=7))
    eku_critical: bool = True
    ocsp_url: str | None = None
    crl_url: str | None = None
    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    leaf_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    intermediate_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    root_cert: x509.Certificate = field(init=False)
    intermediate_cert: x509.Certificate | None = field(init=False, default=None)
    leaf_cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        ca_start, ca_end = self.not_before - timedelta(days=1), self.not_after + timedelta(days=1)
        root_name = _name(f"{self.name} root", self.name)
        self.root_cert = self._ca(root_name, root_name, self.root_key, self.root_key, ca_start, ca_end)
        issuer_name, issuer_key = root_name, self.root_key
        if self.intermediate:
            intermediate_name = _name(f"{self.name} intermediate", self.name)
            self.intermediate_cert = self._ca(
                intermediate_name, root_name, self.intermediate_key, self.root_key, ca_start, ca_end, 0
            )
            issuer_name, issuer_key = intermediate_name, self.intermediate_key
        leaf_name = _name(self.name, self.name)
        builder = pki.base_builder(
            leaf_name, issuer_name, self.leaf_key.public_key(), self.not_before, self.not_after
        )
        builder = pki.with_leaf_extensions(
            builder,
            self.leaf_key.public_key(),
            issuer_key.public_key(),
            ExtendedKeyUsageOID.TIME_STAMPING,
            eku_critical=self.eku_critical,
        )
        builder = pki.with_revocation_urls(builder, self.ocsp_url, self.crl_url)
        self.leaf_cert = builder.sign(issuer_key, hashes.SHA384())

    @property
    def issuer(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """The leaf's issuer and its key (what an OCSP responder or CRL for the leaf is signed with)."""
        if self.intermediate_cert is not None:
            return self.intermediate_cert, self.intermediate_key
        return self.root_cert, self.root_key

    @staticmethod
    def _ca(
        subject: x509.Name,
        issuer: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        issuer_key: ec.EllipticCurvePrivateKey,
        not_before: datetime,
        not_after: datetime,
        path_length: int | None = None,
    ) -> x509.Certificate:
        builder = pki.base_builder(subject, issuer, key.public_key(), not_before, not_after)
        builder = pki.with_ca_extensions(builder, key.public_key(), issuer_key.public_key(), path_length)
        if subject != issuer:
            # sigstore's timestamp-server enforces the timeStamping EKU on intermediates by default.
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA384())

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Leaf first, root last (the order of a trusted root's ``certChain`` and of the server's chain)."""
        middle = (self.intermediate_cert,) if self.intermediate_cert is not None else ()
        return (self.leaf_cert, *middle, self.root_cert)

    @property
    def chain_pem(self) -> bytes:
        return b"".join(pem(certificate) for certificate in self.chain)

    @property
    def key_pem(self) -> bytes:
        return self.leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def subject(self) -> str:
        """The TSA leaf's subject as RFC 4514 (what the verifier reports as the authority)."""
        return self.leaf_cert.subject.rfc4514_string()


# --- trusted roots ---------------------------------------------------------------------------------------


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp_authority_entry(
    chain: Sequence[x509.Certificate],
    *,
    uri: str = "http://tsa.countersign.test",
    window: tuple[datetime, datetime | None] | None = None,
    name: str = "countersign-test-tsa",
) -> dict[str, Any]:
    """A trusted root's ``timestampAuthorities[]`` item for ``chain`` (leaf first, root last).

    ``window`` is the authority's ``validFor`` (default: from the root's notBefore, open-ended).
    """
    start, end = window if window is not None else (chain[-1].not_valid_before_utc, None)
    valid_for = {"start": _rfc3339(start)}
    if end is not None:
        valid_for["end"] = _rfc3339(end)
    return {
        "subject": {"organization": name, "commonName": name},
        "uri": uri,
        "certChain": {
            "certificates": [
                {"rawBytes": base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii")}
                for c in chain
            ]
        },
        "validFor": valid_for,
    }


def with_timestamp_authorities(
    document: Mapping[str, Any], entries: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """A copy of the trusted-root ``document`` with ``entries`` appended to its ``timestampAuthorities``."""
    out = copy.deepcopy(dict(document))
    out.setdefault("timestampAuthorities", [])
    out["timestampAuthorities"].extend(copy.deepcopy(dict(entry)) for entry in entries)
    return out


def write_trusted_root(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(document, indent=2))
    return path


# --- the server ------------------------------------------------------------------------------------------

_live: LiveProcesses[TimestampServer] = LiveProcesses()


@dataclass(eq=False)
class TimestampServer(StartStop):
    """sigstore's ``timestamp-server`` on 127.0.0.1 with a file signer (``certificates``' leaf key).

    ``directory`` (default: a new temporary directory, removed by ``stop()``) holds the key, the chain and
    the log. ``include_chain`` makes responses carry the whole chain instead of the leaf only.
    """

    directory: Path | None = None
    certificates: TsaCertificates = field(default_factory=TsaCertificates)
    include_chain: bool = False
    port: int = field(default=0, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owned_directory: bool = field(default=False, init=False, repr=False)

    # --- layout ------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def timestamp_url(self) -> str:
        """What ``cosign sign --timestamp-server-url`` takes."""
        return f"{self.url}/api/v1/timestamp"

    @property
    def root(self) -> Path:
        if self.directory is None:
            raise TimestampServerError("the timestamp server has not been started")
        return self.directory

    @property
    def log_file(self) -> Path:
        return self.root / "timestamp-server.log"

    @property
    def chain_file(self) -> Path:
        return self.root / "chain.pem"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- lifecycle ---------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = _READY_TIMEOUT) -> Self:
        """Start the server and wait until ``GET /ping`` answers 200 (at most ``timeout`` seconds)."""
        if self.running:
            return self
        program = ensure_tool("timestamp-server")
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="countersign-tsa-"))
            self._owned_directory = True
        self.directory.mkdir(parents=True, exist_ok=True)
        key_file = self.root / "tsa-key.pem"
        key_file.write_bytes(self.certificates.key_pem)
        key_file.chmod(0o600)
        self.chain_file.write_bytes(self.certificates.chain_pem)
        self.port = free_port()
        command = [
            str(program),
            "serve",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--timestamp-signer",
            "file",
            "--file-signer-key-path",
            str(key_file),
            "--certificate-chain-path",
            str(self.chain_file),
            "--disable-ntp-monitoring",
            "--log-type",
            "prod",
        ]
        if self.include_chain:
            command.append("--include-chain-in-response")
        self._process = start_logged(command, self.log_file, cwd=self.root)
        _live.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``timeout``) and reap it; idempotent."""
        process, self._process = self._process, None
        _live.discard(self)
        if process is not None:
            terminate(process, timeout)
        if self._owned_directory and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory, self._owned_directory = None, False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise TimestampServerError(
                    f"timestamp-server exited during start-up (status {code}); log {self.log_file}:\n"
                    f"{self.log_tail()}"
                )
            try:
                status, _, _ = self._request("GET", "/ping", timeout=2)
            except (OSError, http.client.HTTPException) as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                if status == 200:
                    return
                last_error = f"GET /ping answered {status}"
            if time.monotonic() >= deadline:
                raise TimestampServerError(
                    f"timestamp-server did not answer GET {self.url}/ping within {timeout:.0f}s "
                    f"({last_error}); log {self.log_file}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    # --- requests ----------------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = _HTTP_TIMEOUT,
    ) -> tuple[int, bytes, str]:
        connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return response.status, response.read(), response.getheader("Content-Type", "")
        finally:
            connection.close()

    def timestamp(
        self, data_hash: bytes, algorithm: str = "sha256", *, nonce: bool = True, cert_req: bool = True
    ) -> bytes:
        """A DER ``TimeStampResp`` for ``data_hash`` (``algorithm``: sha256, sha384 or sha512)."""
        if not self.running:
            raise TimestampServerError("the timestamp server is not running")
        request = timestamp_request(
            data_hash, algorithm, nonce=secrets.randbits(63) if nonce else None, cert_req=cert_req
        )
        status, body, content_type = self._request(
            "POST",
            "/api/v1/timestamp",
            body=request,
            headers={"Content-Type": "application/timestamp-query"},
        )
        if status not in (200, 201) or content_type != "application/timestamp-reply":
            raise TimestampServerError(
                f"POST /api/v1/timestamp answered {status} ({content_type}): {body[:300]!r}"
            )
        return body

    def certchain_pem(self) -> bytes:
        """The server's certificate chain (PEM, leaf first) from ``GET /api/v1/timestamp/certchain``."""
        status, body, _ = self._request("GET", "/api/v1/timestamp/certchain")
        if status != 200:
            raise TimestampServerError(f"GET /api/v1/timestamp/certchain answered {status}: {body[:300]!r}")
        return body

    def authority_entry(self, **options: Any) -> dict[str, Any]:
        """This server's ``timestampAuthorities[]`` item (see :func:`timestamp_authority_entry`)."""
        options.setdefault("uri", self.url)
        return timestamp_authority_entry(self.certificates.chain, **options)
