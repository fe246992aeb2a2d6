"""required-annotations: the image must carry OCI annotations (or image labels) matching patterns.

Options:

    require:                                   # annotation or label key -> glob its value must match
      org.opencontainers.image.source: "https://github.com/example/*"
    source: either                             # manifest | config | either (default): where to look

`manifest` reads the image manifest's `annotations` (already verified: the subject's bytes); `config`
reads the `config.Labels` of the image configuration blob (read through the registry, checked against its
digest); `either` takes the manifest's annotation and reads the configuration only for keys the manifest
does not carry. An image index has no configuration: only its own annotations count.

Reason codes: `annotations_present` (passed); `annotation_missing`, `annotation_mismatch`,
`config_unreadable`, `config_invalid` (failed). A registry that cannot answer raises `Undecided`.
"""

from countersign_required_annotations.verifier import RequiredAnnotationsVerifier

__all__ = ["RequiredAnnotationsVerifier"]
