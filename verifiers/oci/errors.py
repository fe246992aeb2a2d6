"""The one error type of the OCI content model."""

from __future__ import annotations

__all__ = ["ContentError"]


class ContentError(ValueError):
    """Registry content that does not fit the model: not JSON, too deep, or the wrong shape.

    `path` names the offending field from the document's top level (`layers[2].digest`,
    `manifests[0].annotations`), or is "" when the problem is the document as a whole (encoding, syntax,
    nesting depth, size). `message` says what is wrong, with untrusted values shown short and ASCII-only.
    A `ValueError`, so code that already treats malformed input as `ValueError` keeps working.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message
