"""Reusable test bed: reference tools, local registries and OCI content, shared by tests, demo and bench."""
