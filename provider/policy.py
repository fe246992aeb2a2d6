"""Which policy applies to an image: scope matching over the configuration's policies.

A scope is a glob over `registry/repository` (`fnmatch` rules: `*` crosses `/`); a scope without `/` names a
whole registry. The most specific matching scope wins: an exact repository beats any pattern, among
patterns more literal characters win, `*` is last; a policy restricted to namespaces that match beats one
that is not. The configuration (`provider.config`) holds the policies; this module only reads them.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from verifiers.reference import ImageReference

if TYPE_CHECKING:  # provider.config validates scopes with normalize_scope: imported there, not here
    from provider.config import Policy

__all__ = ["covers", "normalize_scope", "policy_for", "scope_specificity"]


def policy_for(policies: Iterable[Policy], reference: ImageReference, namespace: str | None) -> Policy | None:
    """The most specific policy whose scope matches the repository (and namespace, when set)."""
    best: tuple[tuple[int, int, int], Policy] | None = None
    for policy in policies:
        if policy.namespaces is not None and not any(
            fnmatch.fnmatchcase(namespace or "", pattern) for pattern in policy.namespaces
        ):
            continue
        for scope in policy.scopes:
            score = scope_specificity(scope, reference)
            if score is None:
                continue
            rank = (1 if policy.namespaces is not None else 0, *score)
            if best is None or rank > best[0]:
                best = (rank, policy)
    return best[1] if best is not None else None


def covers(policies: Iterable[Policy], reference: ImageReference) -> bool:
    """Whether some policy could apply to this repository, in some namespace (for /v1/mutate, whose keys
    carry no namespace): an image no policy covers is never contacted."""
    scopes = (scope for policy in policies for scope in policy.scopes)
    return any(scope_specificity(scope, reference) is not None for scope in scopes)


def normalize_scope(scope: str) -> str:
    """A scope without `/` names a whole registry: `registry.example.com` means `registry.example.com/*`."""
    return scope if ("/" in scope or scope == "*") else f"{scope}/*"


def scope_specificity(scope: str, reference: ImageReference) -> tuple[int, int] | None:
    """None when `scope` does not match; else a rank where higher is more specific.

    An exact repository beats any pattern; among patterns, more literal characters win; `*` is last.
    A scope without `/` names a whole registry (`registry.example.com` means `registry.example.com/*`).
    """
    name = reference.name
    pattern, glob, literal = _compiled_scope(scope)
    if glob is None:
        return (1, literal) if pattern == name else None
    return (0, literal) if glob.match(name) else None


_GLOB_META_RE = re.compile(r"\[[^\]]*\]|[*?]")


@functools.lru_cache(maxsize=4096)
def _compiled_scope(scope: str) -> tuple[str, re.Pattern[str] | None, int]:
    """A scope's normalized pattern, its compiled glob (None when literal) and its literal length: worked
    out once per scope, not at every key (`fnmatchcase` is exactly a match of `fnmatch.translate`)."""
    pattern = normalize_scope(scope)
    if not any(c in pattern for c in "*?["):
        return pattern, None, len(pattern)
    return pattern, re.compile(fnmatch.translate(pattern)), len(_GLOB_META_RE.sub("", pattern))
