"""Countersign: an external-data provider for OPA Gatekeeper that verifies container images."""

__version__ = "0.1.0"
