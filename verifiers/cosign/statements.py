"""The in-toto statement of an attestation that has already verified: its predicate type and predicate.

`verify_candidate` decides an attestation (signature, key or identity, log, statement subject) and reports
its predicate type, but not the predicate. `attested_statement(candidate, result, digest)` takes the
candidate and the *passed* result `verify_candidate` returned for it, and extracts the statement again
from the same bytes, with the same strict parsers the core used (UTF-8, no duplicate keys, bounded size
and depth): a statement that did not verify is never parsed here, so no decision rests on unsigned data.

The extraction re-checks what the core checked and fails closed (`Failure`, reason `MALFORMED` or
`DIGEST_MISMATCH`) if anything disagrees: the result must be a pass for this very candidate, the
envelope must carry an in-toto statement naming `expected_digest`, and its predicate type must be the one
the core reported. For bundles the envelope is the bundle's `dsseEnvelope`, whose payload is exactly the
bytes the DSSE signature covers (PAE over that payload); for the legacy `.att` tag it is the layer itself.

The predicate is returned re-serialized as compact JSON (ASCII, keys in document order). A statement
without a predicate has the predicate `null`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from verifiers.cosign.common import fail, get_obj, load_json
from verifiers.cosign.dsse import Envelope, envelope_from_json, envelope_from_obj, statement_for
from verifiers.cosign.model import BundleCandidate, Candidate, CandidateResult, Reason

__all__ = ["AttestedStatement", "attested_statement"]


@dataclass(frozen=True, slots=True)
class AttestedStatement:
    statement_type: str  # the in-toto `_type`
    predicate_type: str
    predicate: bytes  # the predicate as JSON (compact, ASCII)


def _envelope(candidate: BundleCandidate) -> Envelope:
    if candidate.format == "bundle":
        document = load_json(candidate.bundle, "Sigstore bundle")
        return envelope_from_obj(get_obj(document, "dsseEnvelope", "Sigstore bundle"), "bundle DSSE envelope")
    if candidate.format == "legacy-att":
        return envelope_from_json(candidate.bundle, "attestation envelope")
    fail(Reason.MALFORMED, f"a {candidate.format!r} candidate carries no attestation")


def attested_statement(
    candidate: Candidate, result: CandidateResult, expected_digest: str
) -> AttestedStatement:
    """The statement of `candidate`, which `result` (from `verify_candidate`) says verified.

    Raises `Failure` when `result` is not a pass for this candidate, or the statement disagrees with it.
    """
    if not result.passed or result.predicate_type is None:
        fail(Reason.MALFORMED, "only an attestation that verified can be read")
    if (result.format, result.manifest_digest) != (candidate.format, candidate.manifest_digest):
        fail(Reason.MALFORMED, "the verification result is for another candidate")
    if not isinstance(candidate, BundleCandidate):
        fail(Reason.MALFORMED, "a simple-signing candidate carries no attestation")
    envelope = _envelope(candidate)
    statement = statement_for(envelope, expected_digest)  # payload type, statement type, subject digest
    if statement.predicate_type != result.predicate_type:
        fail(
            Reason.MALFORMED,
            f"statement predicate type {statement.predicate_type!r} is not the verified "
            f"{result.predicate_type!r}",
        )
    predicate = statement.predicate
    try:
        serialized = json.dumps(predicate, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except ValueError as exc:  # a number that overflowed to infinity
        fail(Reason.MALFORMED, f"in-toto statement predicate cannot be represented as JSON: {exc}")
    return AttestedStatement(
        statement_type=statement.type,
        predicate_type=statement.predicate_type,
        predicate=serialized.encode("ascii"),
    )
