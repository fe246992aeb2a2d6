"""Every reason code a built-in verifier can produce is documented, and every documented code exists.

The codes are the `Reason` enums (the verifiers' internal failure types take those enums, so mypy keeps
anything else out). docs/rego.md's verifier-reason table, docs/cosign.md's and docs/notation.md's
reason-code tables must list exactly them.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from verifiers.cosign.model import Reason as CosignReason
from verifiers.digest_pin import Reason as DigestPinReason
from verifiers.notation.reasons import Reason as NotationReason
from verifiers.sbom import Reason as SbomReason

DOCS = Path(__file__).resolve().parents[2] / "docs"
CODE = re.compile(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)*)`")
UNDECIDED = {NotationReason.REVOCATION}  # raised as Undecided: named in the table's text, not as a code
BY_TYPE: dict[str, type[StrEnum]] = {
    "digest-pin": DigestPinReason,
    "sbom": SbomReason,
    "cosign": CosignReason,
    "notation": NotationReason,
}


def _section(text: str, heading: str) -> str:
    start = text.index(heading) + len(heading)
    end = re.search(r"^#", text[start:], re.MULTILINE)
    return text[start : start + end.start()] if end else text[start:]


def _rows(section: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ][1:]  # the header row


def test_every_enum_member_is_a_distinct_snake_case_code() -> None:
    for enum in BY_TYPE.values():
        values = [member.value for member in enum]
        assert len(set(values)) == len(values)
        assert all(CODE.fullmatch(f"`{value}`") and len(value) <= 64 for value in values)


def test_rego_md_lists_exactly_the_codes_of_each_built_in_verifier() -> None:
    rows = _rows(_section((DOCS / "rego.md").read_text(), "### Verifier reasons"))
    documented: dict[str, set[str]] = {}
    mentioned: dict[str, str] = {}
    for kind, codes, _passed, meaning in rows:
        kind = kind.strip("`")
        documented.setdefault(kind, set()).update(CODE.findall(codes))
        mentioned[kind] = mentioned.get(kind, "") + meaning
    assert set(documented) == set(BY_TYPE)
    for kind, enum in BY_TYPE.items():
        expected = {m.value for m in enum if m not in UNDECIDED}
        assert documented[kind] == expected, kind
        for member in UNDECIDED & set(enum):
            assert f"`{member.value}` is undecided" in mentioned[kind]


@pytest.mark.parametrize(("page", "enum"), [("cosign.md", CosignReason), ("notation.md", NotationReason)])
def test_the_verifier_page_lists_exactly_its_codes(page: str, enum: type[StrEnum]) -> None:
    rows = _rows(_section((DOCS / page).read_text(), "## Reason codes"))
    documented = {code for row in rows for code in CODE.findall(row[0])}
    assert documented == {m.value for m in enum}
