"""Countersign on Kubernetes: policies, verifiers and their trust material as custom resources.

`provider.kube.resources` (pure: the resources' spec models and how they combine with the file),
`provider.kube.crds` (the CustomResourceDefinitions generated from those models). Only `provider.kube.api`
imports the `kubernetes` client, lazily, when the Kubernetes source is on.
"""
