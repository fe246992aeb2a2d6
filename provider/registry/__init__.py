"""Async access to OCI registries: the client, credentials, errors, and the cached reader verifiers use."""
