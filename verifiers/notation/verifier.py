"""The `notation` verifier: Notary Project signatures (JWS or COSE) of an image, judged by a trust policy.

Options:

* `trustPolicy`: a path to notation's `trustpolicy.json`, or the policy document inline (an object);
* `trustStore`: a path to a notation trust-store directory (the one holding `x509/`);
* `trustStores`: trust stores inline, `[{name: "ca:shop", pem: "<PEM certificates>"}]`
  (`verifiers.notation.truststore`).

At least one of `trustStore` and `trustStores` is required; a store (`type:name`) may be defined in only
one of them. Every trust store a policy names must exist in one of them (checked when the verifier is built).
The paths of `trustPolicy` and `trustStore` are relative to the configuration file's directory, and `~` is
expanded (`verifiers.base.resolve_option_path`); both are read when the verifier is built.

`verify` lists the image's referrers whose artifactType (or, when a listing has none, the manifest's
artifactType or config.mediaType) is `application/vnd.cncf.notary.signature` (at most 32). A referrer whose
manifest does not fit `verifiers.oci`'s model is skipped, not counted as a signature, and noted in the
report's `details.skipped` (the first 16; `skippedCount`); at most 256 referrer manifests are read. The
manifest's `io.cncf.notary.x509chain.thumbprint#S256` annotation is unsigned and decides nothing (as in
notation-go). The single envelope layer is fetched (digest-checked), verified with
`parse_and_verify` and evaluated with `trust.evaluate`. The policy is the one for `subject.reference.name`.
At least one signature must pass; an enforced revocation check that cannot be made raises
`Undecided("revocation_unavailable")` unless another signature passes.

Revocation: when the evaluation wants it (a revocable chain, `revocation` not skipped, nothing enforced failed
before it), the chain is checked with OCSP then CRL (`verifiers.notation.revocation`) within the request's
deadline and evaluated again with that outcome: a revoked certificate fails with `certificate_revoked`. The
same goes for the chain of a verified RFC 3161 timestamp authority when `authenticTimestamp` checks the
timestamp (`needs_timestamp_revocation`; both chains are checked concurrently, same checker and deadline): a
revoked TSA certificate fails `authenticTimestamp` (`timestamp_invalid`); an unavailable status under an
enforced `authenticTimestamp` is undecided (`revocation_unavailable`), as for the signing chain. The
verifier's HTTP session for OCSP/CRL is created on first use and reused; `aclose()` closes it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self

from cryptography import x509
from pydantic import Field, WithJsonSchema, model_validator

from verifiers import oci
from verifiers.base import Context, Descriptor, OptionsError, Report, Subject, Undecided, resolve_option_path
from verifiers.errors import RegistryError
from verifiers.notation.envelope import (
    COSE_MEDIA_TYPE,
    JWS_MEDIA_TYPE,
    EnvelopeError,
    VerifiedEnvelope,
    parse_and_verify,
)
from verifiers.notation.reasons import Reason
from verifiers.notation.revocation import ChainStatus, RevocationChecker
from verifiers.notation.trust import (
    Evaluation,
    TrustStoreError,
    TrustStores,
    evaluate,
    load_trust_store_dir,
)
from verifiers.notation.trustpolicy import (
    PolicyError,
    TrustPolicy,
    TrustPolicyDocument,
    TrustStoreRef,
    parse_trust_policy,
)
from verifiers.notation.truststore import OPTION as INLINE_STORES
from verifiers.notation.truststore import parse_trust_stores_option
from verifiers.options import Message, NonEmptyStr, OptionsModel, check, parse_options

__all__ = ["ARTIFACT_TYPE", "NotationOptions", "NotationVerifier", "Reason"]

ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
# Written by notation on signature manifests; unsigned, so (as in notation-go) it decides nothing here.
THUMBPRINT_ANNOTATION = "io.cncf.notary.x509chain.thumbprint#S256"
MAX_SIGNATURES = 32
MAX_EXAMINED = 256  # referrer manifests read per image, malformed ones included
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
_POLICY_EXPECTED = "expected a path to trustpolicy.json or the policy object"
_STORE_EXPECTED = "expected the path of a notation trust-store directory"
# The shape of `trustStores` for JSON Schema; `verifiers.notation.truststore` validates it (and the PEM).
_INLINE_STORES_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "pem"],
        "properties": {"name": {"type": "string", "minLength": 1}, "pem": {"type": "string"}},
    },
}


class NotationOptions(OptionsModel):
    """The notation verifier's options; the trust policy and stores are read when the verifier is built."""

    required_messages: ClassVar[Mapping[str, str]] = {"trustPolicy": _POLICY_EXPECTED}
    trust_policy: Annotated[NonEmptyStr | dict[str, Any], Message(_POLICY_EXPECTED)] = Field(
        alias="trustPolicy"
    )
    trust_store: (
        Annotated[NonEmptyStr, Message(f"{_STORE_EXPECTED} (inline certificates go in {INLINE_STORES})")]
        | None
    ) = Field(None, alias="trustStore")
    trust_stores: Annotated[Any, WithJsonSchema(_INLINE_STORES_SCHEMA)] = Field(None, alias="trustStores")

    @model_validator(mode="after")
    def _some_store(self) -> Self:
        if self.trust_store is None and self.trust_stores is None:
            check(
                "NotationOptions", [("trustStore", f"{_STORE_EXPECTED} (or certificates in {INLINE_STORES})")]
            )
        return self


_REASON_FOR = {
    "integrity": Reason.INTEGRITY,
    "authenticity": Reason.UNTRUSTED,
    "expiry": Reason.EXPIRED,
    "authenticTimestamp": Reason.TIMESTAMP,
    "revocation": Reason.REVOKED,
}
# When no signature passes, the report names the most telling failure.
_PRECEDENCE = (
    Reason.REVOKED,
    Reason.TIMESTAMP,
    Reason.EXPIRED,
    Reason.UNTRUSTED,
    Reason.INTEGRITY,
    Reason.NO_SIGNATURE,
)


def _verify_envelope(
    data: bytes,
    media_type: str,
    subject: Subject,
    policy: TrustPolicy,
    stores: TrustStores,
    now: datetime,
) -> tuple[VerifiedEnvelope, Evaluation] | EnvelopeError:
    """`parse_and_verify` then `evaluate` (no revocation status yet); an envelope that does not verify is
    returned as its `EnvelopeError` (what `evaluate` raises propagates)."""
    try:
        envelope = parse_and_verify(data, media_type)
    except EnvelopeError as exc:
        return exc
    return envelope, evaluate(envelope, subject.digest, subject.size, subject.media_type, policy, stores, now)


def _rfc3339(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment is not None else None


class NotationVerifier:
    type = "notation"
    # Trust policies match the repository, signatures are the digest's referrers and reports name
    # `name@digest`, never the key's tag (verifiers.base.TagIndependent).
    tag_independent = True

    def __init__(
        self, name: str, options: Mapping[str, Any], *, revocation: RevocationChecker | None = None
    ) -> None:
        self.name = name
        self.revocation = revocation if revocation is not None else RevocationChecker()
        parsed = parse_options(NotationOptions, options)
        problems: list[tuple[str, str]] = []
        try:
            self.policies = self._load_policy(parsed.trust_policy)
        except OptionsError as e:
            problems += e.errors
        directory = resolve_option_path(parsed.trust_store) if parsed.trust_store is not None else None
        inline = parsed.trust_stores
        try:
            self.stores = self._load_stores(directory, inline)
        except OptionsError as e:
            problems += e.errors
        if problems:
            raise OptionsError.of(problems)
        for i, policy in enumerate(self.policies.policies):
            for j, ref in enumerate(policy.trust_stores):
                if (ref.type, ref.name) not in self.stores:
                    problems.append(
                        (
                            f"trustPolicy.trustPolicies[{i}].trustStores[{j}]",
                            self._missing_store(ref, directory, inline is not None),
                        )
                    )
        if problems:
            raise OptionsError.of(problems)

    async def aclose(self) -> None:
        """Close the OCSP/CRL HTTP session (if one was opened)."""
        await self.revocation.aclose()

    @staticmethod
    def _load_stores(directory: Path | None, inline: object) -> TrustStores:
        """The stores of the `trustStore` directory and of the inline `trustStores`, each defined once."""
        stores: dict[tuple[str, str], tuple[x509.Certificate, ...]] = {}
        if directory is not None:
            try:
                stores.update(load_trust_store_dir(directory))
            except TrustStoreError as exc:
                raise OptionsError("trustStore", str(exc)) from exc
        if inline is not None:
            # A store defined in both places is refused rather than merged or overridden: which roots
            # a policy trusts must be readable from one definition.
            for i, (key, certificates) in enumerate(parse_trust_stores_option(inline).items()):
                if key in stores:
                    kind, name = key
                    raise OptionsError(
                        f"{INLINE_STORES}[{i}].name",
                        f"trust store {kind}:{name} is also in the trust-store directory"
                        f" ({directory}/x509/{kind}/{name}); define each store once",
                    )
                stores[key] = certificates
        return stores

    @staticmethod
    def _missing_store(ref: TrustStoreRef, directory: Path | None, inline: bool) -> str:
        places = [f"under {directory}/x509/{ref.type}/{ref.name}"] if directory is not None else []
        if inline:
            places.append(f"in {INLINE_STORES}")
        return f"trust store {ref} not found {' or '.join(places)}"

    @staticmethod
    def _load_policy(value: str | Mapping[str, Any]) -> TrustPolicyDocument:
        source: bytes | Mapping[str, Any] = value if isinstance(value, Mapping) else b""
        if isinstance(value, str):
            file = resolve_option_path(value)
            try:
                source = file.read_bytes()
            except OSError as exc:
                raise OptionsError("trustPolicy", f"cannot read {file}: {exc.strerror}") from exc
        try:
            return parse_trust_policy(source)
        except PolicyError as exc:
            raise OptionsError(f"trustPolicy.{exc.path}" if exc.path else "trustPolicy", exc.message) from exc

    async def verify(self, subject: Subject, context: Context) -> Report:
        repository = subject.reference.name
        policy = self.policies.policy_for(repository)
        if policy is None:
            return Report.fail(Reason.NO_POLICY, f"no notation trust policy applies to {repository}")
        if policy.level.name == "skip":
            return Report.ok(
                Reason.SKIPPED,
                f"trust policy {policy.name!r} skips verification for {repository}",
                policy=policy.name,
            )
        verified = f"{repository}@{subject.digest}"  # what was verified; never the key's tag
        referrers = await context.registry.referrers(subject)
        signatures: list[dict[str, Any]] = []
        skipped: list[oci.Skipped] = []
        undecided: str | None = None
        count = examined = 0
        for index, descriptor in enumerate(referrers):
            if count >= MAX_SIGNATURES or examined >= MAX_EXAMINED:
                break
            try:
                manifest = await self._signature_manifest(subject, context, descriptor)
            except Undecided:
                raise
            except oci.ContentError as exc:  # junk beside the image: skipped, noted, not a signature
                examined += 1
                skipped.append(oci.Skipped(index, descriptor.digest, str(exc)))
                continue
            except (RegistryError, ValueError) as exc:
                signatures.append(self._failure(descriptor.digest, None, Reason.INTEGRITY, str(exc)))
                count += 1
                continue
            if manifest is None:
                continue
            count += 1
            entry, maybe_undecided = await self._one(subject, context, descriptor, manifest, policy)
            signatures.append(entry)
            if entry["passed"]:
                return Report.ok(
                    Reason.VERIFIED,
                    f"{verified} has a notation signature trusted by policy {policy.name!r}",
                    policy=policy.name,
                    signatures=signatures,
                    **oci.skipped_details(skipped),
                )
            if maybe_undecided and undecided is None:
                undecided = maybe_undecided
        if undecided is not None:
            raise Undecided(Reason.REVOCATION, undecided)
        if not signatures:
            extra = f" ({len(skipped)} malformed referrer(s) skipped)" if skipped else ""
            return Report.fail(
                Reason.NO_SIGNATURE,
                f"{verified} has no notation signature{extra}",
                policy=policy.name,
                **oci.skipped_details(skipped),
            )
        reasons = {entry["reason"] for entry in signatures}
        reason = next((r for r in _PRECEDENCE if r in reasons), Reason.INTEGRITY)
        messages = "; ".join(f"{entry['signature']}: {entry['message']}" for entry in signatures[:4])
        return Report.fail(
            reason,
            f"no notation signature of {verified} is trusted by policy {policy.name!r}: {messages}",
            policy=policy.name,
            signatures=signatures,
            **oci.skipped_details(skipped),
        )

    async def _signature_manifest(
        self, subject: Subject, context: Context, descriptor: Descriptor
    ) -> oci.ImageManifest | None:
        """The referrer's manifest when it is a notation signature; ContentError when it is junk."""
        if descriptor.artifact_type not in (None, "", ARTIFACT_TYPE):
            return None
        _, manifest = await oci.read_image_manifest(context.registry, subject.reference, descriptor.digest)
        if manifest.kind != ARTIFACT_TYPE:
            return None
        if not manifest.refers_to(subject.digest):
            raise ValueError(f"signature manifest's subject is not {subject.digest}")
        return manifest

    @staticmethod
    def _failure(digest: str, fmt: str | None, reason: Reason, message: str) -> dict[str, Any]:
        return {"format": fmt, "signature": digest, "passed": False, "reason": reason, "message": message}

    async def _one(
        self,
        subject: Subject,
        context: Context,
        descriptor: Descriptor,
        manifest: oci.ImageManifest,
        policy: TrustPolicy,
    ) -> tuple[dict[str, Any], str | None]:
        if len(manifest.layers) != 1:
            return self._failure(
                descriptor.digest, None, Reason.INTEGRITY, "expected exactly one layer"
            ), None
        layer = manifest.layers[0]
        fmt = {JWS_MEDIA_TYPE: "jws", COSE_MEDIA_TYPE: "cose"}.get(layer.media_type)
        if fmt is None:
            message = f"envelope media type {layer.media_type!r} is not supported"
            return self._failure(descriptor.digest, None, Reason.INTEGRITY, message), None
        try:
            envelope_bytes = await context.registry.blob(subject.reference, layer, MAX_ENVELOPE_BYTES)
        except Undecided:
            raise
        except RegistryError as exc:
            return self._failure(descriptor.digest, fmt, Reason.INTEGRITY, str(exc)), None
        now = datetime.now(UTC)
        # The envelope's parse, signature and chain checks and the policy's evaluation: one hop to the
        # engine's CPU pool (no I/O in any of it).
        checked = await context.run_cpu(
            _verify_envelope, envelope_bytes, layer.media_type, subject, policy, self.stores, now
        )
        if isinstance(checked, EnvelopeError):
            return self._failure(descriptor.digest, fmt, Reason.INTEGRITY, str(checked)), None
        envelope, result = checked
        if result.needs_revocation or result.needs_timestamp_revocation:
            # The signing chain and the TSA chain concurrently, on one checker (one cache) and one deadline.
            signing, stamping = await asyncio.gather(
                self._chain_status(
                    result.needs_revocation, envelope.signer.certificate_chain, now, context.deadline
                ),
                self._chain_status(
                    result.needs_timestamp_revocation, result.timestamp_chain, now, context.deadline
                ),
            )
            result = await context.run_cpu(
                functools.partial(
                    evaluate,
                    envelope,
                    subject.digest,
                    subject.size,
                    subject.media_type,
                    policy,
                    self.stores,
                    now,
                    revocation=signing,
                    timestamp_revocation=stamping,
                )
            )
        return self._entry(descriptor.digest, fmt, envelope.signer, result), result.undecided

    async def _chain_status(
        self, wanted: bool, chain: Sequence[x509.Certificate], now: datetime, deadline: float
    ) -> ChainStatus | None:
        return await self.revocation.check_chain(chain, now, deadline) if wanted else None

    @staticmethod
    def _entry(digest: str, fmt: str, signer: Any, result: Evaluation) -> dict[str, Any]:
        leaf = signer.leaf
        if result.failed is not None:
            reason, message = (
                _REASON_FOR.get(result.failed.validation, Reason.INTEGRITY),
                result.failed.message,
            )
        elif result.undecided is not None:
            reason, message = Reason.REVOCATION, result.undecided
        else:
            reason, message = Reason.VERIFIED, "trusted"
        return {
            "format": fmt,
            "signature": digest,
            "passed": result.passed,
            "reason": reason,
            "message": message,
            "signer": leaf.subject.rfc4514_string(),
            "issuer": leaf.issuer.rfc4514_string(),
            "serial": format(leaf.serial_number, "x"),
            "signingScheme": signer.signing_scheme,
            "signingTime": _rfc3339(signer.signing_time or signer.authentic_signing_time),
            "timestamp": _rfc3339(result.timestamp),
            "logged": [
                {"validation": r.validation, "message": r.message, "unavailable": r.unavailable}
                for r in result.logged
            ],
        }
