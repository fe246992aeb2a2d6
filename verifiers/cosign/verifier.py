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
    legacyAttestations: true     # read the legacy sha256-<hex>.att tag (false: one request less per image)

File paths (`keys[].path`, `trustedRoot`) are relative to the configuration file's directory; `~` is expanded
(`verifiers.base.resolve_option_path`). The files are read when the verifier is built.

Attestations (`cosign attest`): in-toto statements in DSSE envelopes, found as Sigstore bundle v0.3
referrers (cosign v3; looked for when `bundle` is among the formats) and in the legacy
`sha256-<hex>.att` tag (cosign v2; looked for when `legacy` is among the formats and `legacyAttestations` is
not false). An attestation counts
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

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
from verifiers.options import Message, NonEmptyStr, OneOf, OptionsModel, Shaped, check, parse_options

# VerifiedAttestation is defined in verifiers.base and re-exported here.
__all__ = [
    "CosignOptions",
    "CosignVerifier",
    "VerifiedAttestation",
]  # VerifiedAttestation: from verifiers.base

_SIGNATURE_FORMATS = ("bundle", "oci-1.1", "legacy")
MAX_NOTED = oci.MAX_SKIPPED  # problems listed in a report's details (all are counted)


@dataclass(frozen=True, slots=True)
class _Scan:
    """Every candidate of one image, decided once: signature results and attestations apart."""

    signatures: list[CandidateResult]
    attestations: list[VerifiedAttestation]
    rejected_attestations: list[CandidateResult]  # known attestations (legacy .att) that did not verify
    problems: list[Problem]
    skipped: list[oci.Skipped]


def _valid_regexp(value: str) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise PydanticCustomError(
            "countersign", "{message}", {"message": f"invalid regular expression: {e}"}
        ) from None
    return value


RegExp = Annotated[NonEmptyStr, AfterValidator(_valid_regexp)]


class KeyOptions(OptionsModel):
    """keys[i]: a public key, from a file (`path`) or inline (`pem`)."""

    name: NonEmptyStr | None = None
    path: NonEmptyStr | None = None
    pem: NonEmptyStr | None = None
    rsa_padding: Annotated[str, OneOf("pkcs1v15", "pss"), Message("must be pkcs1v15 or pss")] = Field(
        "pkcs1v15", alias="rsaPadding"
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.path is None) == (self.pem is None):
            check("KeyOptions", [((), "set exactly one of path or pem")])
        return self


class GitHubOptions(OptionsModel):
    """identities[i].github: GitHub workflow claims of the certificate, each matched exactly when set."""

    workflow_repository: NonEmptyStr | None = Field(None, alias="workflowRepository")
    workflow_ref: NonEmptyStr | None = Field(None, alias="workflowRef")
    workflow_trigger: NonEmptyStr | None = Field(None, alias="workflowTrigger")
    workflow_sha: NonEmptyStr | None = Field(None, alias="workflowSha")


class IdentityOptions(OptionsModel):
    """identities[i]: a keyless signer, pinned by both its OIDC issuer and its certificate subject."""

    name: NonEmptyStr | None = None
    issuer: NonEmptyStr | None = None
    issuer_regexp: RegExp | None = Field(None, alias="issuerRegExp")
    subject: NonEmptyStr | None = None
    subject_regexp: RegExp | None = Field(None, alias="subjectRegExp")
    github: GitHubOptions | None = None

    @model_validator(mode="after")
    def _pinned(self) -> Self:
        # An identity must pin both who signed and who vouched for them: either alone admits anyone.
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if (self.issuer is None) == (self.issuer_regexp is None):
            problems.append(((), "set exactly one of issuer or issuerRegExp"))
        if (self.subject is None) == (self.subject_regexp is None):
            problems.append(((), "set exactly one of subject or subjectRegExp"))
        check("IdentityOptions", problems)
        return self


class CosignOptions(OptionsModel):
    """The cosign verifier's options (files are read by the verifier, once these are valid)."""

    keys: Annotated[list[KeyOptions], Shaped(list, "a list of {path | pem, name, rsaPadding}")] = Field(
        default_factory=list
    )
    identities: Annotated[
        list[IdentityOptions], Shaped(list, "a list of {issuer | issuerRegExp, subject | subjectRegExp}")
    ] = Field(default_factory=list)
    trusted_root: NonEmptyStr | None = Field(None, alias="trustedRoot")
    transparency_log: Annotated[str, OneOf("required", "skip"), Message("must be 'required' or 'skip'")] = (
        Field("required", alias="transparencyLog")
    )
    # At most the number of keys and identities: checked below.
    threshold: Annotated[int, WithJsonSchema({"type": "integer", "minimum": 1})] = 1
    formats: Annotated[
        list[Annotated[str, OneOf(*_SIGNATURE_FORMATS)]],
        Field(min_length=1),
        Message(f"expected a non-empty list of {', '.join(_SIGNATURE_FORMATS)}"),
    ] = Field(default_factory=lambda: list(_SIGNATURE_FORMATS))
    attestations: Annotated[
        list[NonEmptyStr], Message("expected a list of predicate types (non-empty strings)")
    ] = Field(default_factory=list)
    # Whether the legacy `sha256-<hex>.att` tag is read (with `legacy` among the formats): one registry
    # request per image that only attestations need.
    legacy_attestations: Annotated[bool, Message("expected true or false")] = Field(
        True, alias="legacyAttestations"
    )

    def key_names(self) -> list[str]:
        return [k.name or f"key-{i + 1}" for i, k in enumerate(self.keys)]

    def identity_names(self) -> list[str]:
        return [identity.name or f"identity-{i + 1}" for i, identity in enumerate(self.identities)]

    @model_validator(mode="after")
    def _rules(self) -> Self:
        problems: list[tuple[tuple[str | int, ...] | str, str]] = []
        if len(set(self.key_names())) != len(self.keys):
            problems.append(("keys", "key names must be unique"))
        if len(set(self.identity_names())) != len(self.identities):
            problems.append(("identities", "identity names must be unique"))
        anchors = len(self.keys) + len(self.identities)
        if not anchors:
            problems.append(((), "configure at least one of keys or identities"))
        if self.transparency_log == "skip" and self.identities:
            message = "'skip' is only allowed for key-based verification (keyless needs the log)"
            problems.append(("transparencyLog", message))
        if anchors and not 1 <= self.threshold <= anchors:
            problems.append(
                ("threshold", f"must be an integer from 1 to {anchors} (the keys and identities)")
            )
        check("CosignOptions", problems)
        return self


def _load_keys(options: CosignOptions) -> tuple[tuple[TrustedKey, ...], list[tuple[str, str]]]:
    """The configured keys, read and parsed; and the problems with those that could not be."""
    keys: list[TrustedKey] = []
    problems: list[tuple[str, str]] = []
    for i, (item, name) in enumerate(zip(options.keys, options.key_names(), strict=True)):
        field = "path" if item.path is not None else "pem"
        if item.path is not None:
            try:
                data = resolve_option_path(item.path).read_bytes()
            except OSError as e:
                problems.append((f"keys[{i}].path", f"cannot read: {e}"))
                continue
        else:
            assert item.pem is not None
            data = item.pem.encode()
        try:
            keys.append(core.load_public_key(data, name, item.rsa_padding))  # type: ignore[arg-type]
        except ValueError as e:
            problems.append((f"keys[{i}].{field}", str(e)))
    return tuple(keys), problems


def _identities(options: CosignOptions) -> tuple[Identity, ...]:
    return tuple(
        Identity(
            name=name,
            issuer=item.issuer,
            issuer_regexp=re.compile(item.issuer_regexp) if item.issuer_regexp is not None else None,
            subject=item.subject,
            subject_regexp=re.compile(item.subject_regexp) if item.subject_regexp is not None else None,
            github_workflow_repository=item.github.workflow_repository if item.github else None,
            github_workflow_ref=item.github.workflow_ref if item.github else None,
            github_workflow_trigger=item.github.workflow_trigger if item.github else None,
            github_workflow_sha=item.github.workflow_sha if item.github else None,
        )
        for item, name in zip(options.identities, options.identity_names(), strict=True)
    )


def _verify_all(candidates: Sequence[Candidate], digest: str, policy: TrustPolicy) -> list[CandidateResult]:
    return [core.verify_candidate(candidate, digest, policy) for candidate in candidates]


class CosignVerifier:
    type: ClassVar[str] = "cosign"
    # Signatures are found and checked by digest (referrers, `sha256-<hex>.sig` tags): no report names the
    # key's tag, so a verdict is shared by every tag of the digest (verifiers.base.TagIndependent).
    tag_independent = True

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        parsed = parse_options(CosignOptions, options)
        self.name = name
        keys, problems = _load_keys(parsed)
        identities = _identities(parsed)
        tlog = parsed.transparency_log
        trusted_root: Any = None
        if identities or parsed.trusted_root is not None or tlog == "required":
            if parsed.trusted_root is not None:
                root_file = resolve_option_path(parsed.trusted_root)
                try:
                    trusted_root = core.load_trusted_root(root_file.read_bytes())
                except (OSError, ValueError) as e:
                    problems.append(("trustedRoot", f"cannot load {root_file}: {e}"))
            else:
                trusted_root = core.public_good_trusted_root()
        if problems:
            raise OptionsError.of(problems)
        formats, threshold, required = parsed.formats, parsed.threshold, parsed.attestations
        self.formats = frozenset(formats)
        self.threshold = threshold
        self.keys = keys
        self.identities = identities
        self.trusted_root = trusted_root
        self.require_tlog = tlog == "required"
        self.required_attestations: tuple[str, ...] = tuple(dict.fromkeys(required))
        # Attestations live in bundle referrers (format "bundle") and in the legacy .att tag, read unless
        # `legacyAttestations: false`.
        legacy_att = "legacy" in self.formats and parsed.legacy_attestations
        self._discovery_formats = self.formats | ({"legacy-att"} if legacy_att else set())

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
        # Every candidate's signature, chain and log checks: one hop to the engine's CPU pool (no I/O).
        results = (
            await context.run_cpu(_verify_all, found.candidates, subject.digest, policy)
            if found.candidates
            else []
        )
        for candidate, result in zip(found.candidates, results, strict=True):
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
