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
    trustedRoot: /sigstore/trusted_root.json   # default: the public-good Sigstore root embedded in sigstore
    transparencyLog: required    # or `skip` (only for key-based verification: keyless needs the log's time)
    threshold: 1                 # distinct keys/identities that must each have verified a signature
    formats: [bundle, oci-1.1, legacy]          # where to look (default: all three)

Reason codes: see `verifiers.cosign.model.Reason`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from verifiers.base import Context, OptionsError, Report, Subject
from verifiers.cosign import core
from verifiers.cosign.discovery import discover
from verifiers.cosign.model import (
    ATTESTATION_FORMATS,
    PREDICATE_TYPE_SIGN,
    CandidateResult,
    Identity,
    Reason,
    TrustedKey,
    TrustPolicy,
)

__all__ = ["CosignVerifier"]

_SIGNATURE_FORMATS = ("bundle", "oci-1.1", "legacy")
_KNOWN_OPTIONS = {"keys", "identities", "trustedRoot", "transparencyLog", "threshold", "formats"}


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
                data = Path(file).expanduser().read_bytes()
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
                try:
                    trusted_root = core.load_trusted_root(Path(root_path).expanduser().read_bytes())
                except (OSError, ValueError) as e:
                    raise OptionsError("trustedRoot", f"cannot load {root_path}: {e}") from e
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
        self.formats = frozenset(formats)
        self.threshold = threshold
        self.keys = keys
        self.identities = identities
        self.trusted_root = trusted_root
        self.require_tlog = tlog == "required"

    def policy(self) -> TrustPolicy:
        return TrustPolicy(
            keys=self.keys,
            identities=self.identities,
            trusted_root=self.trusted_root,
            require_tlog=self.require_tlog,
            now=datetime.now(UTC),
        )

    async def verify(self, subject: Subject, context: Context) -> Report:
        found = await discover(subject, context, self.formats)
        policy = self.policy()
        results: list[CandidateResult] = []
        for candidate in found.candidates:
            if candidate.format in ATTESTATION_FORMATS:
                continue
            result = core.verify_candidate(candidate, subject.digest, policy)
            if result.passed and result.predicate_type not in (None, PREDICATE_TYPE_SIGN):
                continue  # an attestation stored as a bundle is not a signature
            results.append(result)
        details: dict[str, Any] = {
            "threshold": self.threshold,
            "signatures": [r.as_details() for r in results],
        }
        if found.problems:
            details["problems"] = [
                {"format": p.format, "signature": p.manifest_digest, "message": p.message}
                for p in found.problems
            ]
        matched = sorted({r.anchor for r in results if r.passed and r.anchor is not None})
        details["matched"] = matched
        if len(matched) >= self.threshold:
            return Report.ok(
                Reason.VERIFIED,
                f"signed by {', '.join(matched)} ({len(matched)} of the {self.threshold} required)",
                **details,
            )
        if not results:
            extra = f"; {len(found.problems)} unreadable signature artifact(s)" if found.problems else ""
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
                Reason.PRIORITY.index(r.reason) if r.reason in Reason.PRIORITY else len(Reason.PRIORITY)
            ),
        )
        more = f" (and {len(results) - 1} other signature(s) failed)" if len(results) > 1 else ""
        return Report.fail(worst.reason, f"{worst.message}{more}", **details)
