"""Countersign verifiers: the plugin interface and the built-in verifiers.

Usable as a library: nothing here imports `provider` (the service); tests/unit/test_layering.py,
run by `make lint`, enforces it.
"""

from verifiers.base import (
    Context,
    Descriptor,
    Memo,
    OptionsError,
    RegistryReader,
    Report,
    Subject,
    Undecided,
    Verifier,
    VerifierFactory,
    option_paths_relative_to,
    resolve_option_path,
)

__all__ = [
    "Context",
    "Descriptor",
    "Memo",
    "OptionsError",
    "RegistryReader",
    "Report",
    "Subject",
    "Undecided",
    "Verifier",
    "VerifierFactory",
    "option_paths_relative_to",
    "resolve_option_path",
]
