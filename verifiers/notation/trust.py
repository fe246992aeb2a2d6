"""Trust evaluation of a verified Notary Project envelope against a trust policy, as notation does it.

`evaluate(envelope, subject_digest, subject_size, subject_media_type, policy, stores, now)` is pure and
returns an `Evaluation`: one `Result` per validation, combined with the policy level's actions:

* `integrity`: the envelope verified (the caller's `parse_and_verify`) and its `targetArtifact` names the
  subject (digest, size and media type all equal);
* `authenticity`: the x5c chain (leaf first) is a well-formed code-signing chain (notation's
  `ValidateCodeSigningCertChain`, without time: each certificate issued and signed by the next, the last
  self-signed; leaf: not a CA, digitalSignature, codeSigning if it has an EKU; CAs: basicConstraints CA
  with keyCertSign and path length honoured; RSA >= 2048 bits, EC P-256/384/521, no SHA-1/MD5
  signatures), one of its certificates is a certificate of one of the policy's `ca:` stores
  (`notary.x509`) or `signingAuthority:` stores (`notary.x509.signingAuthority`), as notation's
  `VerifyAuthenticity` does (a self-signed leaf in a `ca` store is its own anchor), and the leaf's subject
  is a trusted identity;
* `authenticTimestamp`: as notation-go's `verifyTimestamp`. signingAuthority: the chain is valid at the
  authentic signing time. notary.x509: when the policy names a `tsa:` store and `verifyTimestamp` is
  `always` (or `afterCertExpiry` and a certificate of the chain has expired), the RFC 3161
  countersignature must verify against those roots over the signature bytes and its time (with its
  accuracy) lie within every chain certificate's validity, and the TSA's own chain must not be revoked
  (notation-go's verifyTimestamp step 5): a revocable TSA chain (one naming an OCSP responder or CRL below
  its root) needs the caller's `timestamp_revocation` outcome (`RevocationChecker.check_chain` on
  `Evaluation.timestamp_chain`; `Evaluation.needs_timestamp_revocation` asks for it): `good` passes,
  `revoked` fails (the timestamp is not trusted), `unavailable` (or none given) is *unavailable* — notation
  fails it; here, enforced, it is undecided, never a pass. This check belongs to `authenticTimestamp`, not
  `revocation`: skipping `revocation` does not skip it, as in notation. Otherwise (no `tsa:` store:
  timestamps are not checked) every certificate of the chain must be valid `now`. Certificate validity is
  therefore judged here, not under `authenticity`, as in notation: a level that only logs
  `authenticTimestamp` lets an expired chain pass with a logged failure;
* `expiry`: the envelope's `io.cncf.notary.expiry` has not passed;
* `revocation`: a chain with no OCSP or CRL location passes ("not revocable"). Otherwise the caller's
  `revocation` outcome (`verifiers.notation.revocation.RevocationChecker.check_chain`, fetched outside this
  pure function) decides: `good` passes, `revoked` fails, `unavailable` (or no outcome given) is
  *unavailable*: enforced, the evaluation is undecided (`Evaluation.undecided`); logged, it is recorded.
  `Evaluation.needs_revocation` tells the caller that an outcome is wanted.

The caller runs `evaluate` once without outcomes, fetches what `needs_revocation` and
`needs_timestamp_revocation` ask for, and runs it again with them (`revocation`, `timestamp_revocation`).

Validations run in notation's order (integrity, authenticity, expiry, authenticTimestamp, revocation) and
stop at the first enforced failure. `log` failures are kept in `Evaluation.logged`. `skip` is not evaluated.

`load_trust_store_dir(path)` reads notation's trust-store layout and is the only I/O here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from verifiers.errors import FieldError
from verifiers.notation._timestamp import TimestampError, verify_countersignature
from verifiers.notation.model import SIGNING_SCHEME_X509_SIGNING_AUTHORITY, VerifiedEnvelope
from verifiers.notation.revocation import ChainStatus, is_revocable
from verifiers.notation.trustpolicy import Action, TrustPolicy, Validation, parse_distinguished_name

__all__ = [
    "MAX_CERTIFICATES_PER_STORE",
    "MAX_CERTIFICATE_FILE_BYTES",
    "MAX_STORES",
    "Evaluation",
    "Result",
    "StoreType",
    "TrustStoreError",
    "TrustStores",
    "check_store_certificate",
    "evaluate",
    "go_subject_string",
    "load_trust_store_dir",
    "subject_identity",
]

StoreType = Literal["ca", "signingAuthority", "tsa"]
TrustStores = Mapping[tuple[str, str], tuple[x509.Certificate, ...]]

STORE_TYPES: tuple[StoreType, ...] = ("ca", "signingAuthority", "tsa")
CERTIFICATE_SUFFIXES = (".crt", ".pem", ".cer", ".der")
MAX_STORES = 64  # per store type
MAX_CERTIFICATES_PER_STORE = 64
MAX_FILES_PER_STORE = 64
MAX_CERTIFICATE_FILE_BYTES = 256 * 1024
MAX_CHAIN = 10
ORDER: tuple[Validation, ...] = ("integrity", "authenticity", "expiry", "authenticTimestamp", "revocation")
_ALLOWED_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
_ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
# The attributes Go's pkix.Name keeps in named fields, in the order Name.String() writes them back (last
# first); every other attribute it writes as `OID=#<hex DER>`. Multi-valued ones are one `+`-joined RDN;
# CN and SERIALNUMBER hold one value (the last one read).
_GO_NAME_FIELDS = (
    (NameOID.COUNTRY_NAME, "C"),
    (NameOID.STATE_OR_PROVINCE_NAME, "ST"),
    (NameOID.LOCALITY_NAME, "L"),
    (NameOID.STREET_ADDRESS, "STREET"),
    (NameOID.POSTAL_CODE, "POSTALCODE"),
    (NameOID.ORGANIZATION_NAME, "O"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "OU"),
    (NameOID.COMMON_NAME, "CN"),
    (NameOID.SERIAL_NUMBER, "SERIALNUMBER"),
)
_GO_SINGLE = frozenset({NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER})


class TrustStoreError(FieldError):
    """A trust-store directory that cannot be used; `path` names the offending file or directory."""

    @classmethod
    def _line(cls, path: str, message: str) -> str:
        return f"{path}: {message}"


# --- trust stores ------------------------------------------------------------------------------------------


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _self_signed(cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _read_certificates(path: Path) -> list[x509.Certificate]:
    where = str(path)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise TrustStoreError(where, "not a regular file (symbolic links are refused)")
    if info.st_size > MAX_CERTIFICATE_FILE_BYTES:
        raise TrustStoreError(where, f"larger than {MAX_CERTIFICATE_FILE_BYTES} bytes")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_CERTIFICATE_FILE_BYTES + 1)
    if len(data) > MAX_CERTIFICATE_FILE_BYTES:
        raise TrustStoreError(where, f"larger than {MAX_CERTIFICATE_FILE_BYTES} bytes")
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise TrustStoreError(where, f"not a PEM or DER certificate file: {exc}") from None
    if not certs:
        raise TrustStoreError(where, "holds no certificate")
    return certs


def check_store_certificate(kind: StoreType, cert: x509.Certificate, where: str) -> None:
    """Refuse `cert` in a `kind` store (`TrustStoreError` naming `where`): a `ca` or `signingAuthority` store
    holds CA certificates or self-signed leaves, a `tsa` store root CAs only. Shared by both store loaders."""
    subject = cert.subject.rfc4514_string()
    if kind == "tsa":
        if not (_is_ca(cert) and _self_signed(cert)):
            raise TrustStoreError(
                where, f"{subject!r} is not a root CA; a tsa store holds root certificates only"
            )
    elif not _is_ca(cert) and not _self_signed(cert):
        raise TrustStoreError(where, f"{subject!r} is neither a CA nor a self-signed leaf certificate")


def load_trust_store_dir(path: str | os.PathLike[str]) -> dict[tuple[str, str], tuple[x509.Certificate, ...]]:
    """Read notation's layout `<path>/x509/{ca,signingAuthority,tsa}/<name>/*.{crt,pem,cer,der}` (PEM or DER).

    Symbolic links are refused anywhere below `path`; files with other suffixes and hidden files are
    ignored; counts and sizes are bounded. A store directory holding no certificate is an error (notation
    refuses it too). Raises `TrustStoreError`.
    """
    root = Path(path)
    base = root / "x509"
    for directory in (root, base):
        try:
            info = directory.lstat()
        except OSError as exc:
            raise TrustStoreError(str(directory), f"cannot be read: {exc.strerror}") from None
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise TrustStoreError(str(directory), "not a directory (symbolic links are refused)")
    stores: dict[tuple[str, str], tuple[x509.Certificate, ...]] = {}
    for kind in STORE_TYPES:
        kind_dir = base / kind
        try:
            info = kind_dir.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise TrustStoreError(str(kind_dir), "not a directory (symbolic links are refused)")
        names = sorted(entry for entry in os.listdir(kind_dir) if not entry.startswith("."))
        if len(names) > MAX_STORES:
            raise TrustStoreError(str(kind_dir), f"more than {MAX_STORES} trust stores")
        for name in names:
            store_dir = kind_dir / name
            info = store_dir.lstat()
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
                raise TrustStoreError(str(store_dir), "not a directory (symbolic links are refused)")
            files = sorted(entry for entry in os.listdir(store_dir) if not entry.startswith("."))
            if len(files) > MAX_FILES_PER_STORE:
                raise TrustStoreError(str(store_dir), f"more than {MAX_FILES_PER_STORE} files")
            certs: list[x509.Certificate] = []
            for file in files:
                file_path = store_dir / file
                if stat.S_ISLNK(file_path.lstat().st_mode):
                    raise TrustStoreError(str(file_path), "symbolic links are refused")
                if not file.lower().endswith(CERTIFICATE_SUFFIXES):
                    continue
                for cert in _read_certificates(file_path):
                    check_store_certificate(kind, cert, str(file_path))
                    if cert not in certs:
                        certs.append(cert)
                if len(certs) > MAX_CERTIFICATES_PER_STORE:
                    raise TrustStoreError(
                        str(store_dir), f"more than {MAX_CERTIFICATES_PER_STORE} certificates"
                    )
            if not certs:
                raise TrustStoreError(str(store_dir), "holds no certificate")
            stores[(kind, name)] = tuple(certs)
    return stores


# --- results ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """One validation's outcome. `passed` None: not evaluated (skipped, or after an enforced failure).

    `unavailable`: could not be determined (revocation, or the TSA chain's revocation under
    `authenticTimestamp`); `passed` is then None too.
    """

    validation: Validation
    action: Action
    passed: bool | None
    message: str
    unavailable: bool = False

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"action": self.action, "passed": self.passed, "message": self.message}
        if self.unavailable:
            out["unavailable"] = True
        return out


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The combined outcome.

    `passed`: no enforced validation failed and none is undecided. `failed`: the first enforced failure.
    `undecided`: the message when an enforced validation could not be determined (revocation of the
    signing chain, or of the TSA chain under `authenticTimestamp`) and nothing
    enforced failed — the caller turns it into `Undecided("revocation_unavailable", ...)`. `logged`: the
    failures (and unavailable results) of validations whose action is `log`.
    """

    results: Mapping[Validation, Result]
    failed: Result | None
    undecided: str | None
    logged: tuple[Result, ...]
    timestamp: datetime | None = None  # a verified RFC 3161 time (notary.x509) or authentic signing time
    trust_anchor: x509.Certificate | None = None
    needs_revocation: bool = False  # revocation was unavailable for want of a `revocation` outcome
    # The verified countersignature's TSA chain (leaf first, root last); empty when none was verified.
    timestamp_chain: tuple[x509.Certificate, ...] = ()
    # authenticTimestamp was unavailable for want of a `timestamp_revocation` outcome for that chain.
    needs_timestamp_revocation: bool = False

    @property
    def passed(self) -> bool:
        return self.failed is None and self.undecided is None


_ASN1_PRINTABLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


def _go_der(value: str | bytes) -> bytes:
    """A value as Go's asn1.Marshal writes it: a PrintableString when it can be one, else a UTF8String
    (bytes: an OCTET STRING)."""
    if isinstance(value, bytes):
        tag, body = 0x04, value
    else:
        body = value.encode("utf-8", "surrogatepass")
        tag = 0x13 if all(c in _ASN1_PRINTABLE for c in value) else 0x0C
    size = len(body)
    length = (
        bytes([size])
        if size < 0x80
        else bytes([0x80 | ((size.bit_length() + 7) // 8)])
        + size.to_bytes((size.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + body


def _go_escape(value: str) -> str:
    out: list[str] = []
    last = len(value) - 1
    for k, c in enumerate(value):
        if c in ',+"\\<>;' or (c == " " and k in (0, last)) or (c == "#" and k == 0):
            out.append("\\")
        out.append(c)
    return "".join(out)


def go_subject_string(name: x509.Name) -> str:
    """`name` as Go's pkix.Name.String() writes a parsed certificate subject (what notation-go matches
    trusted identities against): the named fields (C, ST, L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER),
    each type's values joined into one `+` RDN, written last field first; every other attribute (emailAddress,
    DC, UID, ...) as `OID=#<hex>`."""
    fields: dict[x509.ObjectIdentifier, list[str]] = {}
    others: list[str] = []
    for attribute in name:
        if not any(attribute.oid == oid for oid, _ in _GO_NAME_FIELDS):
            others.append(f"{attribute.oid.dotted_string}=#{_go_der(attribute.value).hex()}")
        elif not isinstance(attribute.value, str):
            continue  # a named type with a non-string value: Go drops it from its fields and String() alike
        elif attribute.oid in _GO_SINGLE:
            fields[attribute.oid] = [attribute.value]
        else:
            fields.setdefault(attribute.oid, []).append(attribute.value)
    rdns = others
    for oid, short in _GO_NAME_FIELDS:
        values = [v for v in fields.get(oid, []) if v or oid not in _GO_SINGLE]
        if values:
            rdns.append("+".join(f"{short}={_go_escape(v)}" for v in values))
    return ",".join(reversed(rdns))


def subject_identity(name: x509.Name) -> dict[str, str]:
    """The leaf subject as notation-go reads it (`parse_distinguished_name` of `go_subject_string`); a
    ValueError when notation cannot read it (repeated attributes, emailAddress/DC/other attributes Go writes
    as `=#`, a missing C, ST or O)."""
    return parse_distinguished_name(go_subject_string(name))


# --- certificate rules -----------------------------------------------------------------------------------


def _describe(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string())


def _check_key_and_signature(cert: x509.Certificate) -> str | None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            return (
                f"certificate {_describe(cert)} has an RSA key of {key.key_size} bits (at least 2048 needed)"
            )
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _ALLOWED_CURVES):
            return f"certificate {_describe(cert)} uses curve {key.curve.name} (P-256, P-384 or P-521 needed)"
    else:
        return f"certificate {_describe(cert)} has an unsupported key type {type(key).__name__}"
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:
        algorithm = None
    if not isinstance(algorithm, _ALLOWED_HASHES):
        name = algorithm.name if algorithm is not None else cert.signature_algorithm_oid.dotted_string
        return f"certificate {_describe(cert)} is signed with {name} (SHA-256, SHA-384 or SHA-512 needed)"
    return None


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _check_leaf(cert: x509.Certificate) -> str | None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if constraints.ca:
            return f"signing certificate {_describe(cert)} is a CA certificate"
    except x509.ExtensionNotFound:
        pass
    usage = _key_usage(cert)
    if usage is None or not usage.digital_signature:
        return f"signing certificate {_describe(cert)} lacks the digitalSignature key usage"
    if usage.key_cert_sign or usage.crl_sign:
        return f"signing certificate {_describe(cert)} has the keyCertSign or cRLSign key usage"
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        return f"signing certificate {_describe(cert)} has an extended key usage without codeSigning"
    return None


def _check_ca(cert: x509.Certificate, below: int) -> str | None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return f"CA certificate {_describe(cert)} lacks basicConstraints"
    if not constraints.ca:
        return f"certificate {_describe(cert)} issues certificates but is not a CA"
    if constraints.path_length is not None and below > constraints.path_length:
        return f"CA certificate {_describe(cert)} exceeds its path length constraint"
    usage = _key_usage(cert)
    if usage is None or not usage.key_cert_sign:
        return f"CA certificate {_describe(cert)} lacks the keyCertSign key usage"
    return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_chain(chain: Sequence[x509.Certificate]) -> str | None:
    """Notation's code-signing chain rules, without time; a failure message or None."""
    if not chain:
        return "the signature carries no certificate"
    if len(chain) > MAX_CHAIN:
        return f"the certificate chain has more than {MAX_CHAIN} certificates"
    for cert in chain:
        problem = _check_key_and_signature(cert)
        if problem:
            return problem
    problem = _check_leaf(chain[0])
    if problem:
        return problem
    for index, cert in enumerate(chain[:-1]):
        issuer = chain[index + 1]
        if not _issued_by(cert, issuer):
            return f"certificate {_describe(cert)} is not issued and signed by {_describe(issuer)}"
        problem = _check_ca(issuer, index)  # `index` CA certificates below it, the leaf excluded
        if problem:
            return problem
    if not _self_signed(chain[-1]):
        return f"the chain does not end in a self-signed root ({_describe(chain[-1])})"
    return None


def _outside_validity(chain: Sequence[x509.Certificate], earliest: datetime, latest: datetime) -> str | None:
    for cert in chain:
        if earliest < cert.not_valid_before_utc:
            return (
                f"certificate {_describe(cert)} is not valid before {cert.not_valid_before_utc.isoformat()}"
            )
        if latest > cert.not_valid_after_utc:
            return f"certificate {_describe(cert)} expired at {cert.not_valid_after_utc.isoformat()}"
    return None


# --- evaluation ---------------------------------------------------------------------------------------


def _store_certificates(
    policy: TrustPolicy, stores: TrustStores, kind: StoreType
) -> list[tuple[str, x509.Certificate]]:
    out: list[tuple[str, x509.Certificate]] = []
    for ref in policy.stores(kind):
        out.extend((str(ref), cert) for cert in stores.get((ref.type, ref.name), ()))
    return out


class _Run:
    def __init__(
        self,
        envelope: VerifiedEnvelope,
        policy: TrustPolicy,
        stores: TrustStores,
        now: datetime,
        revocation: ChainStatus | None,
        timestamp_revocation: ChainStatus | None = None,
    ) -> None:
        self.revocation_outcome = revocation
        self.needs_revocation = False
        self.timestamp_revocation_outcome = timestamp_revocation
        self.needs_timestamp_revocation = False
        self.timestamp_chain: tuple[x509.Certificate, ...] = ()
        self.envelope = envelope
        self.policy = policy
        self.stores = stores
        self.now = now
        self.timestamp: datetime | None = None
        self.anchor: x509.Certificate | None = None

    def authenticity(self) -> tuple[bool, str]:
        signer = self.envelope.signer
        chain = signer.certificate_chain
        problem = check_chain(chain)
        if problem:
            return False, problem
        kind: StoreType = (
            "signingAuthority" if signer.signing_scheme == SIGNING_SCHEME_X509_SIGNING_AUTHORITY else "ca"
        )
        if not self.policy.stores(kind):
            return (
                False,
                f"signing scheme {signer.signing_scheme} needs a {kind} trust store, the policy names none",
            )
        trusted = _store_certificates(self.policy, self.stores, kind)
        for store, anchor in trusted:
            if anchor in chain:
                self.anchor = anchor
                if self.policy.trusted_identities is None:
                    return True, f"chain anchored in {store} ({_describe(anchor)}); any identity is trusted"
                if not self.policy.trusted_identities:
                    return False, f"policy {self.policy.name!r} names no x509.subject trusted identity"
                try:
                    subject = subject_identity(chain[0].subject)
                except ValueError as e:
                    return False, f"notation cannot read the signing certificate's subject: {e}"
                if not self.policy.trusts_subject(subject):
                    return False, (
                        f"signing certificate {_describe(chain[0])} is not a trusted identity of policy "
                        f"{self.policy.name!r}"
                    )
                return True, f"chain anchored in {store} ({_describe(anchor)}); signer is a trusted identity"
        names = ", ".join(str(ref) for ref in self.policy.stores(kind))
        return False, f"the certificate chain contains no certificate of the trust stores {names}"

    def expiry(self) -> tuple[bool, str]:
        expiry = self.envelope.signer.expiry
        if expiry is not None and self.now > expiry:
            return False, f"the signature expired at {expiry.isoformat()}"
        return True, "the signature has not expired" if expiry is not None else "the signature has no expiry"

    def authentic_timestamp(self) -> tuple[bool | None, str]:
        signer = self.envelope.signer
        chain = signer.certificate_chain
        if signer.signing_scheme == SIGNING_SCHEME_X509_SIGNING_AUTHORITY:
            moment = signer.authentic_signing_time
            if moment is None:
                return False, "the signature has no authentic signing time"
            problem = _outside_validity(chain, moment, moment)
            if problem:
                return False, f"at the authentic signing time {moment.isoformat()}: {problem}"
            self.timestamp = moment
            return True, f"the chain was valid at the authentic signing time {moment.isoformat()}"
        perform = bool(self.policy.stores("tsa"))
        why_not = "no tsa trust store is configured"
        if perform and self.policy.level.verify_timestamp == "afterCertExpiry":
            if not any(self.now > cert.not_valid_after_utc for cert in chain):
                perform, why_not = False, "verifyTimestamp is afterCertExpiry and the chain has not expired"
        if not perform:
            problem = _outside_validity(chain, self.now, self.now)
            if problem:
                return False, f"{problem} (timestamp not verified: {why_not})"
            return True, f"the chain is valid now (timestamp not verified: {why_not})"
        if signer.timestamp_token is None:
            return False, "no timestamp countersignature was found in the signature envelope"
        roots = [cert for _, cert in _store_certificates(self.policy, self.stores, "tsa")]
        try:
            stamp = verify_countersignature(signer.timestamp_token, signer.signature, roots)
        except TimestampError as exc:
            return False, f"the timestamp countersignature does not verify: {exc}"
        problem = _outside_validity(chain, stamp.earliest, stamp.latest)
        if problem:
            return False, f"timestamp {stamp.time.isoformat()} lies outside the chain's validity: {problem}"
        self.timestamp_chain = stamp.chain
        at = stamp.time.isoformat()
        # notation-go verifyTimestamp step 5: the timestamping chain's revocation (the root is not checked).
        if not stamp.chain:
            return False, f"timestamp {at}: the timestamping certificate chain is unknown"
        if not any(is_revocable(cert) for cert in stamp.chain[:-1]):
            tsa_note = "the TSA chain names no OCSP responder or CRL (not revocable)"
        else:
            outcome = self.timestamp_revocation_outcome
            if outcome is None:
                self.needs_timestamp_revocation = True
                return None, (
                    f"timestamp {at} verified, but the revocation status of the timestamping chain "
                    "(OCSP/CRL) was not checked"
                )
            if outcome.status == "revoked":
                return (
                    False,
                    f"timestamp {at} is not trusted: its timestamping chain is revoked: {outcome.message}",
                )
            if outcome.status != "good":
                return None, (
                    f"timestamp {at} verified, but the revocation status of its timestamping chain is "
                    f"unavailable: {outcome.message}"
                )
            tsa_note = "the TSA chain is not revoked"
        self.timestamp = stamp.time
        return True, f"timestamp {at} verified; the chain was valid then; {tsa_note}"

    def revocation(self) -> tuple[bool | None, str]:
        if not any(is_revocable(cert) for cert in self.envelope.signer.certificate_chain):
            return True, "no certificate of the chain names an OCSP responder or CRL (not revocable)"
        outcome = self.revocation_outcome
        if outcome is None:
            self.needs_revocation = True
            return None, (
                "revocation checking (OCSP/CRL) is not implemented by the caller; "
                "the chain's revocation status is unknown"
            )
        if outcome.status == "good":
            return True, outcome.message
        if outcome.status == "revoked":
            return False, outcome.message
        return None, outcome.message


def evaluate(
    envelope: VerifiedEnvelope,
    subject_digest: str,
    subject_size: int,
    subject_media_type: str,
    policy: TrustPolicy,
    stores: TrustStores,
    now: datetime,
    revocation: ChainStatus | None = None,
    timestamp_revocation: ChainStatus | None = None,
) -> Evaluation:
    """Evaluate `envelope` (already `parse_and_verify`-ed) for the subject under `policy` (see the module).

    `revocation`: the signing chain's revocation outcome; `timestamp_revocation`: the TSA chain's
    (`Evaluation.timestamp_chain`). Either may be None on a first run: see `needs_*` in the result.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be timezone-aware")
    run = _Run(envelope, policy, stores, now, revocation, timestamp_revocation)
    results: dict[Validation, Result] = {}
    failed: Result | None = None
    undecided: str | None = None
    logged: list[Result] = []
    for validation in ORDER:
        action = policy.level.action(validation)
        if action == "skip":
            results[validation] = Result(validation, action, None, "skipped by the verification level")
            continue
        if failed is not None:
            results[validation] = Result(
                validation, action, None, "not evaluated: an enforced validation failed"
            )
            continue
        passed: bool | None
        if validation == "integrity":
            target = envelope.payload.target
            mismatches = [
                f"{what} {have!r} != {want!r}"
                for what, have, want in (
                    ("digest", target.digest, subject_digest),
                    ("size", target.size, subject_size),
                    ("mediaType", target.media_type, subject_media_type),
                )
                if have != want
            ]
            passed = not mismatches
            message = (
                "the envelope verifies and its target is the subject"
                if passed
                else f"the signed target is not the subject: {'; '.join(mismatches)}"
            )
        elif validation == "authenticity":
            passed, message = run.authenticity()
        elif validation == "expiry":
            passed, message = run.expiry()
        elif validation == "authenticTimestamp":
            passed, message = run.authentic_timestamp()
        else:
            passed, message = run.revocation()
        result = Result(validation, action, passed, message, unavailable=passed is None)
        results[validation] = result
        if passed:
            continue
        if action == "log":
            logged.append(result)
        elif passed is False:
            failed = result
        else:
            undecided = message
    if failed is not None:
        undecided = None
    return Evaluation(
        results=results,
        failed=failed,
        undecided=undecided,
        logged=tuple(logged),
        timestamp=run.timestamp,
        trust_anchor=run.anchor,
        needs_revocation=run.needs_revocation,
        timestamp_chain=run.timestamp_chain,
        needs_timestamp_revocation=run.needs_timestamp_revocation,
    )
