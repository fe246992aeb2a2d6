"""The cold-latency scenario shared by the signature benchmarks (cosign, notation)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.stats import Row, batch_row
from provider.config import Config, parse_config
from provider.engine import Engine
from provider.outcome import Decided, Outcome

__all__ = ["SignedImage", "check_formats", "cold_signed_scenario", "single_verifier_config"]


def single_verifier_config(registry_host: str, name: str, options: dict[str, Any]) -> Config:
    """A configuration whose one policy (every scope) needs verifier ``name`` (of type ``name``, with
    ``options``) on the insecure registry ``registry_host``; tags and verdicts cached for an hour."""
    return parse_config(
        {
            "registries": {registry_host: {"insecure": True}},
            "verifiers": {name: {"type": name, "options": options}},
            "policies": [{"name": "default", "scopes": ["*"], "allOf": [name]}],
            "cache": {"tagTTL": 3600, "verdictTTL": 3600},
        }
    )


@dataclass(frozen=True, slots=True)
class SignedImage:
    reference: str
    format: str  # the signature format the verifier must report for it
    how: str  # how it was signed, for error messages


def check_formats(images: Sequence[SignedImage], results: dict[str, Outcome], error: type[Exception]) -> None:
    """Each image was allowed by a signature in the format it was signed in."""
    for signed in images:
        outcome = results.get(signed.reference)
        if not isinstance(outcome, Decided) or outcome.value.get("allowed") is not True:
            raise error(f"{signed.reference} was not allowed: {outcome!r}")
        report = outcome.value["verifiers"][0]
        formats = [s["format"] for s in report["details"]["signatures"] if s["passed"]]
        if formats != [signed.format]:
            raise error(f"{signed.reference} ({signed.how}) verified as {formats}")


async def cold_signed_scenario(
    scenario: str,
    config: Config,
    images: Sequence[SignedImage],
    formats: Sequence[str],
    runs: int,
    cold_run: Callable[[Config, Sequence[str]], Any],
    error: type[Exception],
) -> Row:
    """A fresh engine per run over the whole batch (``cold_run`` is the SBOM scenarios' timing)."""
    keys = [signed.reference for signed in images]
    engine = await Engine.create(config)  # unmeasured: one-off costs, and the formats check
    try:
        check_formats(images, await engine.verify(keys, 30.0), error)
    finally:
        await engine.close()
    samples: list[float] = []
    for _ in range(runs):
        gc.collect()
        samples.append(await cold_run(config, keys))
    counts = {fmt: sum(1 for s in images if s.format == fmt) for fmt in formats}
    return batch_row(f"{scenario}, {len(keys)} images", samples, len(keys), formats=counts)
