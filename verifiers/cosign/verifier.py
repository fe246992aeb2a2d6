"""cosign: verifies cosign signatures in every storage format, key-based and keyless.

Options:
    keys:                        # key-based: ECDSA P-256/P-384/P-521, RSA (PKCS#1 v1.5 or PSS), Ed25519
      - name: release            # optional, defaults to key-1, key-2, ...
        path: /keys/cosign.pub   # or `pem: |` inline
        rsaPadding: pkcs1v15     # or pss
    identities:                  # keyless (Fulcio certificates)
      - name: ci
        issuer: https://token.actions.githubusercontent.com     # or issuerRegExp
        subject: https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main  # or subjectRegExp
        github: {workflowRepository, workflowRef, workflowTrigger, workflowSha}             # optional
    trustedRoot: /sigstore/trusted_root.json   # default: the public-good Sigstore root shipped
    transparencyLog: required    # or `skip` (only for key-based verification: keyless needs the log's time)
    threshold: 1                 # distinct keys/identities that must each have verified a signature
    formats: [bundle, oci-1.1, legacy]          # where to look (default: all three)
    attestations:                # optional: predicate types that must each have a verified attestation
      - https://slsa.dev/provenance/v1

File paths (`keys[].path`, `trustedRoot`) are relative to the configuration file's directory; `~` is expanded
(`verifiers.base.resolve_option_path`). The files are read when the verifier is built.

Attestations (`cosign attest`): in-toto statements in DSSE envelopes, found as Sigstore bundle v0.3
referrers (cosign v3; looked for when `bundle` is among the formats) and in the legacy
`sha256-<hex>.att` tag (cosign v2; looked for when `legacy` is among the formats). An attestation counts
only when it verified under the same policy as signatures (a configured key or identity, the
transparency-log rule, and a statement subject that is the image digest); it never counts as a
signature. The report's details list the verified ones:

    attestations: [{predicateType, format, matched, signature}]   # matched: the key or identity

With `attestations` set, the verifier passes only when the signature threshold is met and every listed
predicate type has a verified attestation (else reason `attestation_missing`, details
`missingAttestations`). cosign's `attest --type` values write these predicate types (v3 and v2 alike):
`spdxjson` https://spdx.dev/Document, `cyclonedx` https://cyclonedx.org/bom, `slsaprovenance`
https://slsa.dev/provenance/v0.2, `slsaprovenance1` https://slsa.dev/provenance/v1, `vuln`
https://cosign.sigstore.dev/attestation/vuln/v1, `custom` https://cosign.sigstore.dev/attestation/v1.

Other verifiers read verified attestations, predicate included, with `verified_attestations(subject,
context)` (the sbom verifier's `attestedBy`). One discovery and verification serves `verify` and every
`verified_attestations` call made with the same `Context` (one image verification), even concurrently:
the scan is kept in the context's `memo`, not on the verifier, which holds only its configuration.

Reason codes: see `verifiers.cosign.model.Reason`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from verifiers import oci
from verifiers.base import (
    Context,
    OptionsError,
    Report,
    Subject,
    VerifiedAttestation,
    resolve_option_path,
)
from verifiers.cosign import core
from verifiers.cosign.common import Failure
from verifiers.cosign.discovery import Problem, discover
from verifiers.cosign.model import (
    ATTESTATION_FORMATS,
    PREDICATE_TYPE_SIGN,
    REASON_PRIORITY,
    Candidate,
    CandidateResult,
    Identity,
    Reason,
    TrustedKey,
    TrustPolicy,
)
from verifiers.cosign.statements import attested_statement

__all__ = ["CosignVerifier", "VerifiedAttestation"]  # VerifiedAttestation: from verifiers.base

_SIGNATURE_FORMATS = ("bundle", "oci-1.1", "legacy")
_KNOWN_OPTIONS = {
    "keys",
    "identities",
    "trustedRoot",
    "transparencyLog",
    "threshold",
    "formats",
    "attestations",
}
MAX_NOTED = oci.MAX_SKIPPED  # problems listed in a report's details (all are counted)


@dataclass(frozen=True, slots=True)
class _Scan:
    """Every candidate of one image, decided once: signature results and attestations apart."""

    signatures: list[CandidateResult]
    attestations: list[VerifiedAttestation]
    rejected_attestations: list[CandidateResult]  # known attestations (legacy .att) that did not verify
    problems: list[Problem]
    skipped: list[oci.Skipped]


def _string(options: Mapping[str, Any], key: str, path: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise OptionsError(f"{path}.{key}" if path else key, "expected a non-empty string")
    return value


def _regexp(options: Mapping[str, Any], key: str, path: str) -> re.Pattern[str] | None:
    value = _string(options, key, path)
    if value is None:
        return None
    try:
        return re.compile(value)
    except re.error as e:
        raise OptionsError(f"{path}.{key}", f"invalid regular expression: {e}") from e


def _parse_keys(value: object) -> tuple[TrustedKey, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OptionsError("keys", "expected a list of {path | pem, name, rsaPadding}")
    keys: list[TrustedKey] = []
    for i, item in enumerate(value):
        path = f"keys[{i}]"
        if not isinstance(item, dict):
            raise OptionsError(path, "expected a mapping")
        unknown = sorted(set(item) - {"name", "path", "pem", "rsaPadding"})
        if unknown:
            raise OptionsError(f"{path}.{unknown[0]}", "unknown field (known: name, path, pem, rsaPadding)")
        name = _string(item, "name", path) or f"key-{i + 1}"
        padding = _string(item, "rsaPadding", path) or "pkcs1v15"
        if padding not in ("pkcs1v15", "pss"):
            raise OptionsError(f"{path}.rsaPadding", "must be pkcs1v15 or pss")
        file, pem = _string(item, "path", path), _string(item, "pem", path)
        if (file is None) == (pem is None):
            raise OptionsError(path, "set exactly one of path or pem")
        if file is not None:
            try:
                data = resolve_option_path(file).read_bytes()
            except OSError as e:
                raise OptionsError(f"{path}.path", f"cannot read: {e}") from e
        else:
            assert pem is not None
            data = pem.encode()
        try:
            keys.append(core.load_public_key(data, name, padding))  # type: ignore[arg-type]
        except ValueError as e:
            raise OptionsError(f"{path}.{'path' if file else 'pem'}", str(e)) from e
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise OptionsError("keys", "key names must be unique")
    return tuple(keys)


def _parse_identities(value: object) -> tuple[Identity, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OptionsError(
            "identities", "expected a list of {issuer | issuerRegExp, subject | subjectRegExp}"
        )
    identities: list[Identity] = []
    for i, item in enumerate(value):
        path = f"identities[{i}]"
        if not isinstance(item, dict):
            raise OptionsError(path, "expected a mapping")
        unknown = sorted(set(item) - {"name", "issuer", "issuerRegExp", "subject", "subjectRegExp", "github"})
        if unknown:
            raise OptionsError(f"{path}.{unknown[0]}", "unknown field")
        issuer, issuer_re = _string(item, "issuer", path), _regexp(item, "issuerRegExp", path)
        subject, subject_re = _string(item, "subject", path), _regexp(item, "subjectRegExp", path)
        # An identity must pin both who signed and who vouched for them: either alone admits anyone.
        if (issuer is None) == (issuer_re is None):
            raise OptionsError(path, "set exactly one of issuer or issuerRegExp")
        if (subject is None) == (subject_re is None):
            raise OptionsError(path, "set exactly one of subject or subjectRegExp")
        github = item.get("github") or {}
        if not isinstance(github, dict):
            raise OptionsError(f"{path}.github", "expected a mapping")
        known_github = {"workflowRepository", "workflowRef", "workflowTrigger", "workflowSha"}
        unknown = sorted(set(github) - known_github)
        if unknown:
            raise OptionsError(
                f"{path}.github.{unknown[0]}", f"unknown field (known: {', '.join(sorted(known_github))})"
            )
        identities.append(
            Identity(
                name=_string(item, "name", path) or f"identity-{i + 1}",
                issuer=issuer,
                issuer_regexp=issuer_re,
                subject=subject,
                subject_regexp=subject_re,
                github_workflow_repository=_string(github, "workflowRepository", f"{path}.github"),
                github_workflow_ref=_string(github, "workflowRef", f"{path}.github"),
                github_workflow_trigger=_string(github, "workflowTrigger", f"{path}.github"),
                github_workflow_sha=_string(github, "workflowSha", f"{path}.github"),
            )
        )
    names = [identity.name for identity in identities]
    if len(set(names)) != len(names):
        raise OptionsError("identities", "identity names must be unique")
    return tuple(identities)


class CosignVerifier:
    type: ClassVar[str] = "cosign"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - _KNOWN_OPTIONS)
        if unknown:
            raise OptionsError(unknown[0], f"unknown option (known: {', '.join(sorted(_KNOWN_OPTIONS))})")
        self.name = name
        keys = _parse_keys(options.get("keys"))
        identities = _parse_identities(options.get("identities"))
        if not keys and not identities:
            raise OptionsError("", "configure at least one of keys or identities")
        tlog = options.get("transparencyLog", "required")
        if tlog not in ("required", "skip"):
            raise OptionsError("transparencyLog", "must be 'required' or 'skip'")
        if tlog == "skip" and identities:
            raise OptionsError(
                "transparencyLog", "'skip' is only allowed for key-based verification (keyless needs the log)"
            )
        root_path = _string(options, "trustedRoot", "")
        trusted_root: Any = None
        if identities or root_path is not None or tlog == "required":
            if root_path is not None:
                root_file = resolve_option_path(root_path)
                try:
                    trusted_root = core.load_trusted_root(root_file.read_bytes())
                except (OSError, ValueError) as e:
                    raise OptionsError("trustedRoot", f"cannot load {root_file}: {e}") from e
            else:
                trusted_root = core.public_good_trusted_root()
        threshold = options.get("threshold", 1)
        anchors = len(keys) + len(identities)
        if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= anchors:
            raise OptionsError(
                "threshold", f"must be an integer from 1 to {anchors} (the keys and identities)"
            )
        formats = options.get("formats", list(_SIGNATURE_FORMATS))
        if (
            not isinstance(formats, list)
            or not formats
            or not all(isinstance(f, str) and f in _SIGNATURE_FORMATS for f in formats)
        ):
            raise OptionsError("formats", f"expected a non-empty list of {', '.join(_SIGNATURE_FORMATS)}")
        required = options.get("attestations", [])
        if not isinstance(required, list) or not all(isinstance(t, str) and t for t in required):
            raise OptionsError("attestations", "expected a list of predicate types (non-empty strings)")
        self.formats = frozenset(formats)
        self.threshold = threshold
        self.keys = keys
        self.identities = identities
        self.trusted_root = trusted_root
        self.require_tlog = tlog == "required"
        self.required_attestations: tuple[str, ...] = tuple(dict.fromkeys(required))
        # Attestations live in bundle referrers (format "bundle") and in the legacy .att tag.
        self._discovery_formats = self.formats | ({"legacy-att"} if "legacy" in self.formats else set())

    def policy(self) -> TrustPolicy:
        return TrustPolicy(
            keys=self.keys,
            identities=self.identities,
            trusted_root=self.trusted_root,
            require_tlog=self.require_tlog,
            now=datetime.now(UTC),
        )

    # --- one scan per image verification ----------------------------------------------------------------

    async def _scan_once(self, subject: Subject, context: Context) -> _Scan:
        """The scan of `subject`, shared by every call made with this `context` (concurrent ones too)."""
        key = (self, subject.reference.registry, subject.reference.repository, subject.digest)
        return await context.memo.once(key, functools.partial(self._scan, subject, context))

    async def _scan(self, subject: Subject, context: Context) -> _Scan:
        found = await discover(subject, context, self._discovery_formats)
        policy = self.policy()
        signatures: list[CandidateResult] = []
        attestations: list[VerifiedAttestation] = []
        rejected: list[CandidateResult] = []
        for candidate in found.candidates:
            result = core.verify_candidate(candidate, subject.digest, policy)
            if candidate.format in ATTESTATION_FORMATS:
                if not result.passed:
                    rejected.append(result)
                    continue
            elif not result.passed or result.predicate_type in (None, PREDICATE_TYPE_SIGN):
                # A bundle that failed cannot be told apart from a signature without trusting it.
                signatures.append(result)
                continue
            attestation = self._attestation(candidate, result, subject.digest)
            if isinstance(attestation, CandidateResult):
                rejected.append(attestation)
            else:
                attestations.append(attestation)
        return _Scan(signatures, attestations, rejected, found.problems, found.skipped)

    @staticmethod
    def _attestation(
        candidate: Candidate, result: CandidateResult, digest: str
    ) -> VerifiedAttestation | CandidateResult:
        try:
            statement = attested_statement(candidate, result, digest)
            if result.anchor is None:
                raise Failure(Reason.MALFORMED, "a verified attestation names no key or identity")
        except (Failure, ValueError) as exc:
            return CandidateResult(
                passed=False,
                reason=exc.reason if isinstance(exc, Failure) else Reason.MALFORMED,
                message=exc.message if isinstance(exc, Failure) else f"unreadable in-toto statement: {exc}",
                format=result.format,
                manifest_digest=result.manifest_digest,
                anchor=result.anchor,
            )
        return VerifiedAttestation(
            predicate_type=statement.predicate_type,
            predicate=statement.predicate,
            anchor=result.anchor,
            format=result.format,
            manifest_digest=result.manifest_digest,
        )

    async def verified_attestations(self, subject: Subject, context: Context) -> list[VerifiedAttestation]:
        """The attestations of `subject` that verified under this verifier's policy (Undecided propagates)."""
        return list((await self._scan_once(subject, context)).attestations)

    # --- the verifier ------------------------------------------------------------------------------------

    async def verify(self, subject: Subject, context: Context) -> Report:
        scan = await self._scan_once(subject, context)
        results = scan.signatures
        details: dict[str, Any] = {
            "threshold": self.threshold,
            "signatures": [r.as_details() for r in results],
            "attestations": [a.as_details() for a in scan.attestations],
        }
        if scan.rejected_attestations:
            details["rejectedAttestations"] = [r.as_details() for r in scan.rejected_attestations]
        if scan.problems:
            details["problems"] = [
                {"format": p.format, "signature": p.manifest_digest, "message": p.message}
                for p in scan.problems[:MAX_NOTED]
            ]
            details["problemCount"] = len(scan.problems)
        details.update(oci.skipped_details(scan.skipped))
        matched = sorted({r.anchor for r in results if r.passed and r.anchor is not None})
        details["matched"] = matched
        if len(matched) >= self.threshold:
            present = {a.predicate_type for a in scan.attestations}
            missing = [t for t in self.required_attestations if t not in present]
            if missing:
                details["missingAttestations"] = missing
                return Report.fail(
                    Reason.ATTESTATION_MISSING,
                    f"signed by {', '.join(matched)}, but no verified attestation of type "
                    f"{', '.join(missing)}"
                    + (f" (verified: {', '.join(sorted(present))})" if present else ""),
                    **details,
                )
            return Report.ok(
                Reason.VERIFIED,
                f"signed by {', '.join(matched)} ({len(matched)} of the {self.threshold} required)"
                + (
                    f"; attested: {', '.join(self.required_attestations)}"
                    if self.required_attestations
                    else ""
                ),
                **details,
            )
        if not results:
            extra = f"; {len(scan.problems)} unreadable signature artifact(s)" if scan.problems else ""
            extra += f"; {len(scan.skipped)} malformed referrer(s) skipped" if scan.skipped else ""
            return Report.fail(
                Reason.NO_SIGNATURE,
                f"no cosign signature found (looked in: {', '.join(sorted(self.formats))}){extra}",
                **details,
            )
        if matched:
            return Report.fail(
                Reason.THRESHOLD_NOT_MET,
                f"signed by {', '.join(matched)} only: {len(matched)} of {self.threshold} required",
                **details,
            )
        worst = min(
            (r for r in results if not r.passed),
            key=lambda r: (
                REASON_PRIORITY.index(r.reason) if r.reason in REASON_PRIORITY else len(REASON_PRIORITY)
            ),
        )
        more = f" (and {len(results) - 1} other signature(s) failed)" if len(results) > 1 else ""
        return Report.fail(worst.reason, f"{worst.message}{more}", **details)
