"""Trust stores given inline in the notation verifier's options (`trustStores`). Pure, no I/O.

    trustStores:
      - name: ca:shop                  # TYPE:NAME, exactly as a trust policy's trustStores lists it
        pem: |                         # the store's certificates: one or more PEM CERTIFICATE blocks
          -----BEGIN CERTIFICATE-----
          ...
          -----END CERTIFICATE-----

`parse_trust_stores_option(value)` returns the same mapping as `trust.load_trust_store_dir`
(`(type, name) -> certificates`) and applies the same certificate rules: a `ca` or `signingAuthority`
store holds CA certificates or self-signed leaves, a `tsa` store root CAs only; a certificate listed twice
in a store is kept once; a store holds at least one and at most `MAX_CERTIFICATES_PER_STORE` certificates
in at most `MAX_CERTIFICATE_FILE_BYTES` of text; at most `MAX_INLINE_STORES` stores.

The PEM text is read strictly: only `CERTIFICATE` blocks and white space. Any other block (a private or
public key, a CRL, `TRUSTED CERTIFICATE`), text outside the blocks, headers or bad base64 inside a block, and
DER that is not exactly one X.509 certificate are refused, naming the store and the line. Errors are
`OptionsError`s whose path is relative to the verifier's options (`trustStores[1].pem`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from cryptography import x509

from verifiers.base import OptionsError
from verifiers.notation.trust import (
    MAX_CERTIFICATE_FILE_BYTES,
    MAX_CERTIFICATES_PER_STORE,
    TrustStoreError,
    check_store_certificate,
)
from verifiers.notation.trustpolicy import TrustStoreRef, parse_trust_store_ref

__all__ = [
    "MAX_INLINE_STORES",
    "OPTION",
    "PemError",
    "parse_pem_certificates",
    "parse_trust_stores_option",
]

OPTION = "trustStores"
MAX_INLINE_STORES = 64
_FIELDS = ("name", "pem")
_BEGIN = re.compile(r"-----BEGIN ([^-]*)-----")
_END = re.compile(r"-----END ([^-]*)-----")


class PemError(ValueError):
    """PEM text that is not a plain bundle of X.509 certificates."""


def parse_pem_certificates(text: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, in order; anything else in the text is a `PemError`.

    The caller bounds the text's size; the number of blocks is bounded here by
    `MAX_CERTIFICATES_PER_STORE`.
    """
    certificates: list[x509.Certificate] = []
    body: list[str] | None = None
    begun = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if body is None:
            if not line:
                continue
            begin = _BEGIN.fullmatch(line)
            if begin is None:
                raise PemError(f"line {number}: text outside a -----BEGIN CERTIFICATE----- block")
            if begin[1] != "CERTIFICATE":
                raise PemError(
                    f"line {number}: a {begin[1]!r} block; a trust store holds CERTIFICATE blocks only"
                )
            if len(certificates) >= MAX_CERTIFICATES_PER_STORE:
                raise PemError(f"more than {MAX_CERTIFICATES_PER_STORE} certificates")
            body, begun = [], number
            continue
        if _BEGIN.fullmatch(line) or _END.fullmatch(line):
            if line != "-----END CERTIFICATE-----":
                raise PemError(f"line {number}: expected -----END CERTIFICATE----- (block from line {begun})")
            certificates.append(_certificate("".join(body), begun))
            body = None
            continue
        body.append(line)
    if body is not None:
        raise PemError(f"line {begun}: -----BEGIN CERTIFICATE----- without -----END CERTIFICATE-----")
    if not certificates:
        raise PemError("holds no certificate")
    return certificates


def _certificate(encoded: str, line: int) -> x509.Certificate:
    where = f"the certificate at line {line}"
    if ":" in encoded:
        raise PemError(f"{where}: PEM headers are not accepted")
    try:
        der = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise PemError(f"{where}: not valid base64") from None
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PemError(f"{where}: not an X.509 certificate ({exc})") from None


def _store(item: object, path: str) -> tuple[TrustStoreRef, tuple[x509.Certificate, ...]]:
    if not isinstance(item, Mapping):
        raise OptionsError(path, "expected a mapping {name: TYPE:NAME, pem: PEM certificates}")
    unknown = sorted(str(key) for key in set(item) - set(_FIELDS))
    if unknown:
        raise OptionsError(f"{path}.{unknown[0]}", f"unknown field (known: {', '.join(_FIELDS)})")
    name = item.get("name")
    if not isinstance(name, str):
        raise OptionsError(f"{path}.name", "required: the store as a trust policy names it, e.g. ca:shop")
    try:
        ref = parse_trust_store_ref(name)
    except ValueError as exc:
        raise OptionsError(f"{path}.name", str(exc)) from exc
    pem = item.get("pem")
    if not isinstance(pem, str):
        raise OptionsError(f"{path}.pem", f"required: the certificates of {ref}, as PEM text")
    if len(pem.encode("utf-8", "surrogatepass")) > MAX_CERTIFICATE_FILE_BYTES:
        message = f"trust store {ref}: larger than {MAX_CERTIFICATE_FILE_BYTES} bytes"
        raise OptionsError(f"{path}.pem", message)
    try:
        parsed = parse_pem_certificates(pem)
    except PemError as exc:
        raise OptionsError(f"{path}.pem", f"trust store {ref}: {exc}") from exc
    certificates: list[x509.Certificate] = []
    for cert in parsed:
        try:
            check_store_certificate(ref.type, cert, str(ref))
        except TrustStoreError as exc:
            raise OptionsError(f"{path}.pem", f"trust store {ref}: {exc.message}") from exc
        if cert not in certificates:
            certificates.append(cert)
    return ref, tuple(certificates)


def parse_trust_stores_option(value: object) -> dict[tuple[str, str], tuple[x509.Certificate, ...]]:
    """Validate the `trustStores` option: a non-empty list of `{name, pem}`, each name defined once."""
    if not isinstance(value, list):
        raise OptionsError(
            OPTION,
            "expected a list of {name: TYPE:NAME, pem: PEM certificates}"
            " (a notation trust-store directory goes in trustStore)",
        )
    if not value:
        raise OptionsError(OPTION, "must not be empty (leave it out instead)")
    if len(value) > MAX_INLINE_STORES:
        raise OptionsError(OPTION, f"more than {MAX_INLINE_STORES} trust stores")
    stores: dict[tuple[str, str], tuple[x509.Certificate, ...]] = {}
    where: dict[tuple[str, str], int] = {}
    for i, item in enumerate(value):
        path = f"{OPTION}[{i}]"
        ref, certificates = _store(item, path)
        key = (ref.type, ref.name)
        if key in stores:
            raise OptionsError(
                f"{path}.name", f"trust store {ref} is already defined by {OPTION}[{where[key]}]"
            )
        stores[key] = certificates
        where[key] = i
    return stores
