"""Unit tests of the notation envelope layer (verifiers.notation.envelope)."""
