"""digest-pin: passes when the workload names the image by digest.

Options:
    exempt: ["registry.example.com/base/*", "localhost:5000"]   # globs over registry/repository;
                                                                # a bare registry means all of it
    verifyTag: false   # when the workload gives tag AND digest, also check the tag still points there

Reason codes: pinned, exempt (passed); not_pinned, tag_digest_mismatch, tag_not_found (failed).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import Field, StrictBool

from verifiers.base import Context, Report, Subject
from verifiers.errors import NotFound
from verifiers.options import Message, NonEmptyStr, OptionsModel, parse_options

__all__ = ["DigestPinOptions", "DigestPinVerifier", "Reason"]


class Reason(StrEnum):
    """The digest-pin verifier's reason codes (`Report.reason`), listed in docs/rego.md."""

    PINNED = "pinned"
    EXEMPT = "exempt"
    NOT_PINNED = "not_pinned"
    TAG_DIGEST_MISMATCH = "tag_digest_mismatch"
    TAG_NOT_FOUND = "tag_not_found"


class DigestPinOptions(OptionsModel):
    """The digest-pin verifier's options."""

    exempt: Annotated[list[NonEmptyStr], Message("expected a list of non-empty glob strings")] = Field(
        default_factory=list
    )
    verify_tag: Annotated[StrictBool, Message("expected true or false")] = Field(False, alias="verifyTag")


class DigestPinVerifier:
    type: ClassVar[str] = "digest-pin"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        parsed = parse_options(DigestPinOptions, options)
        self.name = name
        self.exempt = tuple(v if "/" in v else f"{v}/*" for v in parsed.exempt)
        self.verify_tag = parsed.verify_tag

    async def verify(self, subject: Subject, context: Context) -> Report:
        ref = subject.reference
        for pattern in self.exempt:
            if fnmatch.fnmatchcase(ref.name, pattern):
                return Report.ok(
                    Reason.EXEMPT, f"{ref.name} is exempt from digest pinning ({pattern})", pattern=pattern
                )
        if ref.digest is None:
            return Report.fail(
                Reason.NOT_PINNED,
                f"{ref} is referenced by tag, not by digest; pin it as {ref.pinned(subject.digest)}",
                suggested=ref.pinned(subject.digest),
            )
        if self.verify_tag and ref.tag is not None:
            tagged = ref.__class__(registry=ref.registry, repository=ref.repository, tag=ref.tag)
            try:
                current = await context.registry.resolve(tagged)
            except NotFound:
                return Report.fail(
                    Reason.TAG_NOT_FOUND,
                    f"tag {ref.tag} no longer exists in {ref.name}",
                    tag=ref.tag,
                    digest=ref.digest,
                )
            if current.digest != ref.digest:
                return Report.fail(
                    Reason.TAG_DIGEST_MISMATCH,
                    f"tag {ref.tag} of {ref.name} now points to {current.digest}, "
                    f"not to the pinned {ref.digest}",
                    tag=ref.tag,
                    pinned=ref.digest,
                    current=current.digest,
                )
        return Report.ok(Reason.PINNED, f"{ref.name} is pinned to {ref.digest}", digest=ref.digest)
