"""The notation scenarios of the benchmark (bench/scenarios.py runs them after the cosign scenarios).

1. CPU cost of one verification per envelope: ``time.process_time_ns`` around
   ``verifiers.notation.envelope.parse_and_verify`` plus ``verifiers.notation.trust.evaluate`` (strict
   level) on an envelope recorded by notation-go, held in memory (no I/O), over many iterations. The
   recorded vectors are in ``../shared/testdata/notation``:

   - JWS, COSE: ``jws_signature.sig`` / ``cose_signature.sig`` (RSA-2048 PS256, one self-signed
     certificate), with an in-memory ``ca`` store holding that certificate;
   - JWS with timestamp: ``timestamp/jwsWithTimestamp.sig`` with the recorded trust store's
     ``ca:valid-trust-store`` and ``tsa:test-timestamp`` and ``verifyTimestamp: always`` (the RFC 3161
     countersignature is verified too).

   Without those vectors the rows are left out (with a note), or the run fails under ``CI=true``.

2. Cold verification of a 10-image batch on olareg, each image signed once with the real notation CLI
   (tests/support/notation.py; half JWS, half COSE; a ``notation cert generate-test`` RSA-2048 key; OCI 1.1
   referrers API), policy ``allOf [notation]`` with notation's own trustpolicy.json and trust store
   directory; a fresh Engine per run.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.signed import SignedImage, cold_signed_scenario, single_verifier_config
from bench.stats import Row, cpu_row
from provider.config import Config
from tests.support import notation
from tests.support.images import PushedImage, push_image
from tests.support.notation import NotationEnv, SignatureFormat
from tests.support.registries import Registry
from tests.support.tools import in_ci
from verifiers.notation._timestamp import _verify_countersignature
from verifiers.notation.envelope import COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, parse_and_verify
from verifiers.notation.revocation import ChainStatus
from verifiers.notation.trust import TrustStores, evaluate, load_trust_store_dir
from verifiers.notation.trustpolicy import TrustPolicy, parse_trust_policy

__all__ = [
    "NOTATION_BATCH",
    "NOTATION_TESTDATA",
    "NotationBenchError",
    "NotationImage",
    "cold_notation_scenario",
    "cpu_cases",
    "cpu_scenarios",
    "notation_config",
    "notation_key",
    "sign_images",
]

NOTATION_BATCH = 10
NOTATION_TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "notation"
_KEY = "bench"
_FORMATS: tuple[SignatureFormat, ...] = ("jws", "cose")
_CPU_BUDGET_NS = 1_000_000_000
_MIN_ITERATIONS = 200
_MAX_ITERATIONS = 5000
_RECORDED_DIGEST = "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
_RECORDED_SIZE = 481
_RECORDED_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
_TS_DIGEST = "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda"
_TS_SIZE = 528
_TS_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


class NotationBenchError(RuntimeError):
    """A notation measurement would be meaningless (an envelope or an image did not verify)."""


# --- 1. CPU cost per envelope -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuCase:
    name: str
    envelope: bytes
    media_type: str
    digest: str
    size: int
    subject_media_type: str
    policy: TrustPolicy
    stores: TrustStores


def _policy(stores: Sequence[str], **verification: str) -> TrustPolicy:
    document = parse_trust_policy(
        {
            "version": "1.0",
            "trustPolicies": [
                {
                    "name": "bench",
                    "registryScopes": ["*"],
                    "signatureVerification": {"level": "strict", **verification},
                    "trustStores": list(stores),
                    "trustedIdentities": ["*"],
                }
            ],
        }
    )
    policy = document.policy_for("registry.test/bench")
    assert policy is not None
    return policy


def cpu_cases(testdata: Path = NOTATION_TESTDATA) -> list[CpuCase]:
    """The recorded envelopes and their trust; empty when the vectors are missing (an error under CI)."""
    if not (testdata / "jws_signature.sig").is_file():
        if in_ci():
            raise NotationBenchError(f"recorded notation vectors not found at {testdata} (CI=true)")
        return []
    cases: list[CpuCase] = []
    leaf_policy = _policy(["ca:alpine"])
    for name, file, media_type in (
        ("JWS", "jws_signature.sig", JWS_MEDIA_TYPE),
        ("COSE", "cose_signature.sig", COSE_MEDIA_TYPE),
    ):
        data = (testdata / file).read_bytes()
        leaf = parse_and_verify(data, media_type).signer.leaf
        cases.append(
            CpuCase(
                name,
                data,
                media_type,
                _RECORDED_DIGEST,
                _RECORDED_SIZE,
                _RECORDED_MEDIA_TYPE,
                leaf_policy,
                {("ca", "alpine"): (leaf,)},
            )
        )
    timestamp_policy = _policy(["ca:valid-trust-store", "tsa:test-timestamp"], verifyTimestamp="always")
    timestamp_stores = load_trust_store_dir(testdata / "truststore")
    for name, file, media_type in (
        ("JWS with timestamp", "jwsWithTimestamp.sig", JWS_MEDIA_TYPE),
        ("COSE with timestamp", "coseWithTimestamp.sig", COSE_MEDIA_TYPE),
    ):
        cases.append(
            CpuCase(
                name,
                (testdata / "timestamp" / file).read_bytes(),
                media_type,
                _TS_DIGEST,
                _TS_SIZE,
                _TS_MEDIA_TYPE,
                timestamp_policy,
                timestamp_stores,
            )
        )
    return cases


# The CPU rows leave out revocation I/O: a chain that wants a status is given "good" (the cost of the
# OCSP/CRL checks themselves is in the cold rows and in the revocation unit tests).
_ASSUMED_GOOD = ChainStatus("good", "assumed by the benchmark: OCSP/CRL I/O is not part of the CPU row")


def _once(case: CpuCase, now: datetime) -> bool:
    _verify_countersignature.cache_clear()  # every iteration pays for its timestamp verification once
    envelope = parse_and_verify(case.envelope, case.media_type)
    args = (envelope, case.digest, case.size, case.subject_media_type, case.policy, case.stores, now)
    result = evaluate(*args)
    if result.needs_revocation or result.needs_timestamp_revocation:
        result = evaluate(*args, _ASSUMED_GOOD, _ASSUMED_GOOD)
    return result.passed and result.undecided is None


def cpu_samples(case: CpuCase, warmup: int) -> list[int]:
    """CPU nanoseconds of single parse-and-evaluate calls (as cosign_bench.cpu_samples); all must pass."""
    now = datetime.now(UTC)
    for _ in range(warmup):
        if not _once(case, now):
            raise NotationBenchError(f"notation CPU case {case.name!r} does not verify")
    gc.collect()
    samples: list[int] = []
    spent = 0
    clock = time.process_time_ns
    while len(samples) < _MAX_ITERATIONS and (len(samples) < _MIN_ITERATIONS or spent < _CPU_BUDGET_NS):
        started = clock()
        passed = _once(case, now)
        elapsed = clock() - started
        if not passed:
            raise NotationBenchError(f"notation CPU case {case.name!r} stopped verifying")
        samples.append(elapsed)
        spent += elapsed
    return samples


def cpu_scenarios(warmup: int) -> list[Row]:
    return [
        cpu_row(
            f"notation CPU, {case.name}",
            cpu_samples(case, warmup),
            "CPU time per parse_and_verify + evaluate",
            {"envelope": case.name},
        )
        for case in cpu_cases()
    ]


# --- 2. cold verification of notation-signed images ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotationImage:
    image: PushedImage
    format: SignatureFormat


def notation_key(workdir: Path) -> NotationEnv:
    """An offline notation home in ``workdir`` with a test key ``bench`` (also the trust store ``ca:bench``)
    and a strict trust policy for every repository trusting it (close the env)."""
    env = NotationEnv(workdir)
    try:
        notation.generate_test_key(env, _KEY)
        notation.write_trust_policy(env, notation.trust_policy([f"ca:{_KEY}"], name="bench"))
        return env
    except BaseException:
        env.close()
        raise


def sign_images(registry: Registry, env: NotationEnv, count: int, workers: int) -> list[NotationImage]:
    """``count`` images (one repository each), image i signed once in ``_FORMATS[i % 2]``, in parallel."""

    def one(index: int) -> NotationImage:
        fmt = _FORMATS[index % len(_FORMATS)]
        image = push_image(
            registry, f"bench/notary-{index:02d}", "v1", seed=f"countersign-bench-notation-{index}"
        )
        notation.sign(env, _KEY, registry, image, signature_format=fmt)
        return NotationImage(image, fmt)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-notation") as pool:
        return list(pool.map(one, range(count)))


def notation_config(registry: Registry, env: NotationEnv) -> Config:
    return single_verifier_config(
        registry.host,
        "notation",
        {
            "trustPolicy": str(env.trust_policy_file),
            "trustStore": str(env.trust_store_dir("ca", _KEY).parents[2]),
        },
    )


async def cold_notation_scenario(
    config: Config,
    images: Sequence[NotationImage],
    runs: int,
    cold_run: Callable[[Config, Sequence[str]], Any],
) -> Row:
    """A fresh engine per run over the whole batch; each image must verify in the format it was signed in."""
    signed = [SignedImage(i.image.reference, i.format, i.format) for i in images]
    return await cold_signed_scenario(
        "cold notation verify", config, signed, list(_FORMATS), runs, cold_run, NotationBenchError
    )
