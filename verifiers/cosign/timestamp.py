"""RFC 3161 timestamps: a trusted timestamp authority (TSA) vouches that some bytes existed at a time.

cosign (v2 `sign --timestamp-server-url`, and v3's legacy formats) asks the TSA to timestamp the *raw
signature bytes* (the base64-decoded `dev.cosignproject.cosign/signature` annotation), SHA-256 imprint, and
stores the whole DER `TimeStampResp` in the layer annotation `dev.sigstore.cosign/rfc3161timestamp` as
JSON: ``{"SignedRFC3161Timestamp": "<base64 DER>"}`` (cosign's `internal/pkg/cosign/tsa/signer.go` and
`pkg/cosign/verify.go` `VerifyRFC3161Timestamp`, which verifies over the same raw signature bytes).

Parsing and verifying is rfc3161-client's (Trail of Bits; what sigstore-python uses for bundle timestamps):
`decode_timestamp_response` parses strictly (DER), and its `Verifier` checks the PKIStatus, the CMS
signature of the token with OpenSSL `PKCS7_verify` (signed attributes and content digest included), the
signer's chain to the given roots *at the token's genTime* with OpenSSL's timestamp-signing purpose (an
extended key usage of timeStamping only), that the signer is the pinned TSA certificate when one is given,
that its extended key usage extension is critical, and the message imprint. Only the token's signed content
(TSTInfo, via the signed attributes) is trusted; its unsigned parts (the certificates it carries, which only
feed chain building) cannot change what is reported. `verify_timestamp` adds, per `timestampAuthorities[]`
entry of the trusted root (read as sigstore-python and sigstore-go do: leaf first unless it is a CA, root
last):

- the imprint uses SHA-256, SHA-384 or SHA-512 and equals the hash of the covered bytes (checked first, so
  a timestamp over other bytes is told apart from an untrusted one);
- the authority's `validFor` window contains genTime.

Failures, in that order: unparseable annotation or DER, status not granted, an unsupported imprint hash:
`MALFORMED`; an imprint over other bytes: `SIGNATURE_INVALID`; no authority in the trusted root, a signer
that chains to none of them (or is not its pinned TSA certificate, or lacks the critical timeStamping EKU),
or a genTime outside the authority's window: `UNTRUSTED_CHAIN`; a signer that chains to a trusted
authority but whose CMS signature or content digest does not verify (altered token): `SIGNATURE_INVALID`.

Leniency: certificates of the token's `SignedData.certificates` SET in an order DER forbids are sorted
before a second strict parse (`verifiers.rfc3161`, shared with the notation verifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from rfc3161_client import TimeStampResponse, VerificationError, Verifier, VerifierBuilder

from verifiers.cosign.common import b64decode, fail, get_str, load_json, rfc3339
from verifiers.cosign.model import Reason
from verifiers.cosign.trustroot import CertificateAuthority, TrustRoot
from verifiers.rfc3161 import IMPRINT_HASHES, TimestampFormatError, parse_timestamp_response

__all__ = [
    "VerifiedTimestamp",
    "parse_timestamp",
    "timestamp_from_cosign_annotation",
    "verify_cosign_timestamp",
    "verify_timestamp",
]

_WHAT = "RFC 3161 timestamp"
# OpenSSL's PKCS7_verify reasons: it checks the signer's chain first ("certificate verify error"), then
# the signed attributes' content digest and the signature; the latter two mean the TSA is trusted but the
# token was altered.
_CHAIN_FAILURE = 'reason: "certificate verify error"'
_SIGNATURE_FAILURES = ('reason: "signature failure"', 'reason: "digest failure"')


@dataclass(frozen=True, slots=True)
class VerifiedTimestamp:
    """A timestamp that verified: its genTime, and the TSA certificate (subject) and authority that signed."""

    time: datetime
    authority: str  # the TSA signing certificate's subject, RFC 4514
    uri: str  # the trusted root's `uri` for that authority (may be empty)

    def details(self) -> dict[str, str]:
        """What a verified candidate reports (flat, as Sigstore bundles report their timestamps)."""
        return {"timestamp": rfc3339(self.time), "timestampAuthority": self.authority}


# --- parsing --------------------------------------------------------------------------------------------


def parse_timestamp(data: bytes) -> TimeStampResponse:
    """Parse a DER TimeStampResp or TimeStampToken (`MALFORMED` when neither, or not granted)."""
    try:
        return parse_timestamp_response(data)
    except TimestampFormatError as exc:
        fail(Reason.MALFORMED, exc.message)


def timestamp_from_cosign_annotation(annotation: bytes) -> bytes:
    """The DER bytes of cosign's `dev.sigstore.cosign/rfc3161timestamp` annotation (JSON)."""
    what = f"{_WHAT} annotation"
    document = load_json(annotation, what)
    if not isinstance(document, dict):
        fail(Reason.MALFORMED, f"{what} must be a JSON object")
    return b64decode(get_str(document, "SignedRFC3161Timestamp", what), f"{what} SignedRFC3161Timestamp")


# --- verification ---------------------------------------------------------------------------------------


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _pinned_leaf(authority: CertificateAuthority) -> x509.Certificate | None:
    chain = authority.certificates
    return chain[0] if len(chain) >= 2 and not _is_ca(chain[0]) else None


def _verifier_for(authority: CertificateAuthority) -> Verifier:
    chain = authority.certificates
    leaf = _pinned_leaf(authority)
    builder = VerifierBuilder()
    if leaf is not None:
        builder = builder.tsa_certificate(leaf)
    builder = builder.add_root_certificate(chain[-1])
    for certificate in chain[1 if leaf is not None else 0 : -1]:
        if certificate not in chain[-1:]:
            builder = builder.add_intermediate_certificate(certificate)
    return builder.build()


def _signer(response: TimeStampResponse, authority: CertificateAuthority) -> x509.Certificate | None:
    """The certificate that signed the token (after the verifier accepted it with `authority`)."""
    pinned = _pinned_leaf(authority)
    if pinned is not None:
        return pinned
    signer_infos = list(response.signed_data.signer_infos)
    if len(signer_infos) != 1:
        return None
    info = signer_infos[0]
    for raw in response.signed_data.certificates:
        certificate = x509.load_der_x509_certificate(raw)
        if certificate.issuer == info.issuer and certificate.serial_number == info.serial_number:
            return certificate
    return None


def verify_timestamp(data: bytes, covered: bytes, root: TrustRoot) -> VerifiedTimestamp:
    """Verify a DER TimeStampResp/TimeStampToken over the bytes `covered` against the trusted root's
    timestamp authorities (module docstring: the checks and their reasons)."""
    response = parse_timestamp(data)
    info = response.tst_info
    imprint = info.message_imprint
    hash_function = IMPRINT_HASHES.get(imprint.hash_algorithm.dotted_string)
    if hash_function is None:
        fail(
            Reason.MALFORMED,
            f"{_WHAT} imprint uses hash {imprint.hash_algorithm.dotted_string}, not SHA-256/384/512",
        )
    digest: bytes = hash_function(covered).digest()
    if imprint.message != digest:
        fail(Reason.SIGNATURE_INVALID, f"{_WHAT} is over other data than this signature")
    gen_time = info.gen_time
    if not root.timestamp_authorities:
        fail(
            Reason.UNTRUSTED_CHAIN,
            f"signature carries an {_WHAT}, but the trusted root lists no timestamp authority",
        )

    errors: list[str] = []
    tampered = False
    for authority in root.timestamp_authorities:
        where = authority.uri or authority.certificates[-1].subject.rfc4514_string()
        try:
            verifier = _verifier_for(authority)
        except ValueError as exc:  # an odd trusted-root entry (repeated certificates): it vouches for nothing
            errors.append(f"{where}: {exc}")
            continue
        try:
            verifier.verify(response, digest)
        except VerificationError as exc:
            text = str(exc)
            if _CHAIN_FAILURE not in text and any(marker in text for marker in _SIGNATURE_FAILURES):
                tampered = True
            errors.append(f"{where}: {_short(text)}")
            continue
        except Exception as exc:
            # The token's own certificates, loaded by rfc3161-client with cryptography, can be hostile DER
            # (InvalidVersion, ValueError, ...): no authority can make that token valid.
            fail(Reason.MALFORMED, f"{_WHAT} carries malformed certificates: {type(exc).__name__}: {exc}")
        if not authority.window.contains(gen_time):
            errors.append(f"{where}: genTime {rfc3339(gen_time)} is outside the authority's validity window")
            continue
        signer = _signer(response, authority)
        subject = signer.subject.rfc4514_string() if signer is not None else where
        return VerifiedTimestamp(time=gen_time, authority=subject, uri=authority.uri)
    if tampered:
        fail(
            Reason.SIGNATURE_INVALID,
            f"{_WHAT} was signed by a trusted timestamp authority's certificate, but its CMS signature does "
            f"not verify (altered token): {'; '.join(errors)}",
        )
    fail(
        Reason.UNTRUSTED_CHAIN,
        f"{_WHAT} is not signed by a timestamp authority of the trusted root at {rfc3339(gen_time)}: "
        f"{'; '.join(errors)}",
    )


def _short(text: str, limit: int = 300) -> str:
    """rfc3161-client wraps OpenSSL's error stack; keep the reasons, not the source locations."""
    if "ErrorStack(" in text:
        reasons = [part.split('"')[1] for part in text.split("reason: ")[1:] if '"' in part]
        data = [part.split('"')[1] for part in text.split("data: ")[1:] if '"' in part]
        prefix = text.split("ErrorStack(")[0].rstrip(": ")
        text = f"{prefix}: {', '.join(dict.fromkeys(reasons + data))}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def verify_cosign_timestamp(annotation: bytes, covered: bytes, root: TrustRoot) -> VerifiedTimestamp:
    """cosign's `dev.sigstore.cosign/rfc3161timestamp` annotation, over `covered` (the raw signature)."""
    return verify_timestamp(timestamp_from_cosign_annotation(annotation), covered, root)
