"""Notary Project (notation) signatures: an I/O-free envelope layer (JWS and COSE_Sign1).

`verifiers.notation.envelope.parse_and_verify` checks that an envelope is well-formed, self-consistent and
signed by the key of the leaf certificate it carries. It does not decide trust: chains, trust stores, trust
policy, timestamps, expiry and revocation belong to the layers above it.
"""
