"""Kubernetes: policies, verifiers and trust material from custom resources, Secrets and ConfigMaps."""
