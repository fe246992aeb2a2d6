"""cosign signatures: discovery in every storage format and an I/O-free verification core.

The verifier type `cosign` is `verifiers.cosign.verifier.CosignVerifier`.
"""
