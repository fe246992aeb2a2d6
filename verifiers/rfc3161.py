"""RFC 3161 timestamp tokens, parsed strictly: what the cosign and notation verifiers both read.

`parse_timestamp_response` takes a DER `TimeStampResp` (or a bare `TimeStampToken`, wrapped as a granted
response) and returns rfc3161-client's `TimeStampResponse`, or raises `TimestampFormatError` (a
`ValueError`). Verification (the CMS signature, the TSA chain, the imprint) is the caller's: cosign checks
against a Sigstore trusted root (`verifiers.cosign.timestamp`), notation against `tsa:` trust stores
(`verifiers.notation._timestamp`). Pure, no I/O.

Leniency: real TSAs put the certificates of the token's `SignedData.certificates` SET in an order DER
forbids (sigstore's own `timestamp-server --include-chain-in-response` does; so, per notation's test data,
does a GlobalSign token), which rfc3161-client's strict parser rejects (`InvalidSetOrdering`). Those
certificates are not covered by the token's signature (they only feed chain building), so a token that
fails to parse is retried once with that one SET's elements sorted into DER order; nothing else is
rewritten, and the result is parsed strictly again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from rfc3161_client import PKIStatus, TimeStampResponse, decode_timestamp_response

__all__ = ["IMPRINT_HASHES", "MAX_TIMESTAMP_BYTES", "TimestampFormatError", "parse_timestamp_response"]

_WHAT = "RFC 3161 timestamp"
MAX_TIMESTAMP_BYTES = 256 * 1024
#: The message-imprint hash algorithms accepted, by OID: SHA-256, SHA-384, SHA-512.
IMPRINT_HASHES: dict[str, Callable[[bytes], Any]] = {
    "2.16.840.1.101.3.4.2.1": hashlib.sha256,
    "2.16.840.1.101.3.4.2.2": hashlib.sha384,
    "2.16.840.1.101.3.4.2.3": hashlib.sha512,
}


class TimestampFormatError(ValueError):
    """Not a DER TimeStampResp or TimeStampToken, not granted, or without a usable token."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _header(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER TLV at `offset`; ValueError when it is not one."""
    if offset + 2 > end:
        raise ValueError("truncated")
    tag, first = data[offset], data[offset + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    if first < 0x80:
        length, start = first, offset + 2
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or offset + 2 + count > end:
            raise ValueError("bad length")
        length, start = int.from_bytes(data[offset + 2 : offset + 2 + count], "big"), offset + 2 + count
    if start + length > end:
        raise ValueError("truncated")
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The TLVs in `data[start:end]`: (tag, TLV start, content start, content end)."""
    out: list[tuple[int, int, int, int]] = []
    offset = start
    while offset < end:
        tag, content_start, content_end = _header(data, offset, end)
        out.append((tag, offset, content_start, content_end))
        offset = content_end
    return out


def _sort_certificate_set(data: bytes) -> bytes | None:
    """`data` (a TimeStampResp or a bare TimeStampToken) with its `SignedData.certificates` SET in DER
    order, or None when there is no such SET or it is in order already. Lengths do not change."""
    try:
        tag, start, end = _header(data, 0, len(data))
        if tag != 0x30 or end != len(data):
            return None
        top = _children(data, start, end)
        token = top[1] if len(top) >= 2 and top[0][0] == 0x30 else (0x30, 0, start, end)  # response?
        content_info = _children(data, token[2], token[3])
        if len(content_info) != 2 or content_info[0][0] != 0x06 or content_info[1][0] != 0xA0:
            return None
        (signed_data,) = _children(data, content_info[1][2], content_info[1][3])
        if signed_data[0] != 0x30:
            return None
        fields = _children(data, signed_data[2], signed_data[3])
        certificates = next((item for item in fields if item[0] == 0xA0), None)
        if certificates is None:
            return None
        elements = [data[item[1] : item[3]] for item in _children(data, certificates[2], certificates[3])]
    except ValueError:
        return None
    ordered = sorted(elements)
    if ordered == elements:
        return None
    return data[: certificates[2]] + b"".join(ordered) + data[certificates[3] :]


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _decode(data: bytes) -> TimeStampResponse:
    """A TimeStampResp as given, or a bare TimeStampToken (ContentInfo) wrapped as a granted response."""
    try:
        return decode_timestamp_response(data)
    except ValueError as first:
        if data[:1] == b"\x30":
            try:
                _, start, _ = _header(data, 0, len(data))
            except ValueError:
                raise first from None
            if data[start : start + 1] == b"\x06":  # ContentInfo: contentType OID first
                inner = b"\x30\x03\x02\x01\x00" + data  # PKIStatusInfo {status granted}
                return decode_timestamp_response(b"\x30" + _der_length(len(inner)) + inner)
        raise


def parse_timestamp_response(data: bytes) -> TimeStampResponse:
    """Parse a DER TimeStampResp or TimeStampToken; `TimestampFormatError` when neither, or not granted."""
    if not data or len(data) > MAX_TIMESTAMP_BYTES:
        raise TimestampFormatError(f"{_WHAT} is empty or larger than {MAX_TIMESTAMP_BYTES} bytes")
    try:
        try:
            response = _decode(data)
        except ValueError:
            sorted_data = _sort_certificate_set(data)
            if sorted_data is None:
                raise
            response = _decode(sorted_data)
    except ValueError as exc:
        raise TimestampFormatError(f"{_WHAT} is not a DER TimeStampResp or TimeStampToken: {exc}") from None
    if response.status != PKIStatus.GRANTED:
        # rfc3161-client (like sigstore's verifiers) accepts only `granted`, not `grantedWithMods`.
        raise TimestampFormatError(f"{_WHAT} response status is {response.status}, not granted (0)")
    try:
        response.tst_info  # noqa: B018 - parsed lazily: a granted response may still lack its token
        response.signed_data  # noqa: B018
    except ValueError as exc:
        raise TimestampFormatError(f"{_WHAT} response has no usable token: {exc}") from None
    return response
