"""The cosign scenarios of the benchmark (bench/scenarios.py runs them after the SBOM scenarios).

1. CPU cost of one verification per format: ``time.process_time_ns`` around one
   ``verifiers.cosign.core.verify_candidate`` call on a candidate prepared in memory (no I/O at all), over
   many iterations. The material comes from a private Sigstore (tests/support/private_sigstore.py):

   - legacy, key: a simple-signing payload signed with an ECDSA P-256 key (the ``.sig`` layer of
     ``cosign sign --key``), policy ``keys`` with ``transparencyLog: skip``;
   - bundle, key: a Sigstore bundle v0.3 with a DSSE statement signed by that key (cosign v3 ``--key``),
     same policy;
   - legacy, keyless: a Fulcio-like P-256 leaf (P-384 intermediate and root, embedded SCT), the chain
     annotation and a Rekor SET; policy ``identities`` + the private trusted root;
   - bundle, keyless: a certificate bundle (DSSE, Rekor entry with inclusion promise, inclusion proof and
     signed checkpoint), verified through sigstore-python's ``Verifier``.

2. Cold verification of a 10-image batch on olareg, each image signed once with the real cosign CLIs in one
   format (bundle by cosign v3; legacy ``.sig`` and OCI 1.1 referrer by cosign2), key-based, offline;
   policy ``allOf [cosign]`` with the key and ``transparencyLog: skip``; a fresh Engine per run.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from bench.signed import SignedImage, cold_signed_scenario, single_verifier_config
from bench.stats import Row, cpu_row
from provider.config import Config
from tests.support import cosign
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.images import PushedImage, push_image
from tests.support.private_sigstore import (
    DEFAULT_ISSUER,
    EPOCH_2024,
    PrivateSigstore,
    pem_public_key,
)
from tests.support.registries import Registry
from verifiers.cosign.core import load_public_key, verify_candidate
from verifiers.cosign.model import Candidate, Identity, TrustPolicy

__all__ = [
    "COSIGN_BATCH",
    "CPU_WARMUP",
    "CosignImage",
    "CpuCase",
    "cold_cosign_scenario",
    "cosign_config",
    "cpu_cases",
    "cpu_scenarios",
    "sign_images",
]

COSIGN_BATCH = 10
CPU_WARMUP = 20  # unmeasured calls per case
_CPU_BUDGET_NS = 1_000_000_000  # CPU time measured per case (at least _MIN_ITERATIONS calls)
_MIN_ITERATIONS = 200
_MAX_ITERATIONS = 5000
_DIGEST = "sha256:" + "ab" * 32
_SIGNER = "ci@example.test"

#: (format, signer) of image i is _MIX[i % 3]: 4 bundles (cosign v3), 3 legacy and 3 OCI 1.1 (cosign2).
_MIX: tuple[tuple[str, cosign.Tool], ...] = (
    ("bundle", "cosign"),
    ("legacy", "cosign2"),
    ("oci-1.1", "cosign2"),
)
_SIGNERS: dict[str, Callable[..., Any]] = {
    "bundle": cosign.sign_bundle,
    "legacy": cosign.sign_legacy,
    "oci-1.1": cosign.sign_oci11,
}


class CosignBenchError(RuntimeError):
    """A cosign measurement would be meaningless (a candidate or an image did not verify)."""


# --- 1. CPU cost per format ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuCase:
    name: str
    candidate: Candidate
    policy: TrustPolicy


def cpu_cases() -> list[CpuCase]:
    """One prepared candidate and policy per format (generated keys, a private Sigstore)."""
    sigstore = PrivateSigstore(name="countersign-bench")
    key = ec.generate_private_key(ec.SECP256R1())
    now = EPOCH_2024 + timedelta(days=1)
    key_policy = TrustPolicy(
        keys=(load_public_key(pem_public_key(key), "bench"),), require_tlog=False, now=now
    )
    keyless_policy = TrustPolicy(
        identities=(Identity(name="ci", subject=_SIGNER, issuer=DEFAULT_ISSUER),),
        trusted_root=sigstore.trust_root(),
        now=now,
    )
    leaf = sigstore.issue(email=_SIGNER)
    return [
        CpuCase("legacy, key", sigstore.key_signature(key, _DIGEST), key_policy),
        CpuCase("bundle, key", sigstore.key_bundle_dsse(key, _DIGEST, rekor="none"), key_policy),
        CpuCase("legacy, keyless", sigstore.keyless_signature(_DIGEST, leaf=leaf), keyless_policy),
        CpuCase("bundle, keyless", sigstore.keyless_bundle(_DIGEST, leaf=leaf), keyless_policy),
    ]


def cpu_samples(case: CpuCase) -> list[int]:
    """CPU nanoseconds of single ``verify_candidate`` calls: at least _MIN_ITERATIONS, then until the
    budget is spent (at most _MAX_ITERATIONS). Every call must pass."""
    for _ in range(CPU_WARMUP):
        result = verify_candidate(case.candidate, _DIGEST, case.policy)
        if not result.passed:
            raise CosignBenchError(
                f"CPU case {case.name!r} does not verify: {result.reason}: {result.message}"
            )
    gc.collect()
    samples: list[int] = []
    spent = 0
    clock = time.process_time_ns
    while len(samples) < _MAX_ITERATIONS and (len(samples) < _MIN_ITERATIONS or spent < _CPU_BUDGET_NS):
        started = clock()
        result = verify_candidate(case.candidate, _DIGEST, case.policy)
        elapsed = clock() - started
        if not result.passed:
            raise CosignBenchError(f"CPU case {case.name!r} stopped verifying: {result.reason}")
        samples.append(elapsed)
        spent += elapsed
    return samples


def cpu_scenarios() -> list[Row]:
    return [
        cpu_row(
            f"cosign CPU, {case.name}", cpu_samples(case), "CPU time per verification", {"format": case.name}
        )
        for case in cpu_cases()
    ]


# --- 2. cold verification of cosign-signed images -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CosignImage:
    image: PushedImage
    format: str
    tool: str


def sign_images(
    registry: Registry, env: CosignEnv, key: KeyPair, count: int, workers: int
) -> list[CosignImage]:
    """``count`` images (one repository each), each signed once in the format of ``_MIX``, in parallel."""

    def one(index: int) -> CosignImage:
        fmt, tool = _MIX[index % len(_MIX)]
        image = push_image(
            registry, f"bench/signed-{index:02d}", "v1", seed=f"countersign-bench-cosign-{index}"
        )
        _SIGNERS[fmt](env, key, registry, image, tool=tool)
        return CosignImage(image, fmt, tool)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-cosign") as pool:
        return list(pool.map(one, range(count)))


def cosign_config(registry: Registry, key: KeyPair) -> Config:
    return single_verifier_config(
        registry.host,
        "cosign",
        cosign.key_options(key),
    )


async def cold_cosign_scenario(
    config: Config,
    images: Sequence[CosignImage],
    runs: int,
    cold_run: Callable[[Config, Sequence[str]], Any],
) -> Row:
    """A fresh engine per run over the whole batch; each image must verify in the format it was signed in."""
    signed = [SignedImage(i.image.reference, i.format, f"{i.format} by {i.tool}") for i in images]
    formats = [fmt for fmt, _ in _MIX]
    return await cold_signed_scenario(
        "cold cosign verify", config, signed, formats, runs, cold_run, CosignBenchError
    )


def cosign_key(workdir: Path) -> tuple[CosignEnv, KeyPair]:
    """An offline CosignEnv in ``workdir`` and an ECDSA P-256 key pair made by cosign v3 (close the env)."""
    env = CosignEnv(workdir)
    try:
        return env, cosign.generate_key_pair(env, "bench")
    except BaseException:
        env.close()
        raise
