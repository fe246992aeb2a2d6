"""The test bed of ``make bench-peers`` (bench/peers.py): signed images, and both providers' configurations.

One olareg (plain HTTP, 127.0.0.1) holds ``count`` tiny images ``peers/app-NNN:v1``, each signed twice: by
the real cosign v2 (``cosign2 sign --key``, the legacy ``sha256-<hex>.sig`` tag) and by the real notation
CLI (JWS, a ``notation cert generate-test`` certificate, OCI 1.1 referrer). Each image is also tagged
``t00`` ... so that the memory scenario has distinct keys (``peers/app-NNN:tMM``; the signatures are on the
digest, so every tag of an image verifies). The agreement images: good (both signatures), unsigned, signed
with other keys (another cosign key, another notation certificate), only a cosign signature, only a
notation signature, and a tag that does not exist.

Both providers need both signatures: Countersign ``allOf: [cosign, notation]``; Ratify's ``configPolicy``
with an entry for each artifact type (each needs one passing signature, so an image with one of the two is
denied).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import cosign, notation
from tests.support.dual_signing import SIGNING_TOOLS, DualSigner, require_both
from tests.support.images import PushedImage, push_image
from tests.support.notation import NotationEnv
from tests.support.registries import Registry, start_olareg
from tests.support.tools import ToolNotFoundError, ensure_tool

__all__ = [
    "COSIGN_ARTIFACT_TYPE",
    "NOTATION_ARTIFACT_TYPE",
    "AgreementCase",
    "TestBed",
    "countersign_config",
    "countersign_server",
    "make_test_bed",
    "ratify_config",
    "served_test_bed",
]

COSIGN_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
NOTATION_ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
_SIGNER = "peers"
_OTHER_SIGNER = "other"
#: How long both providers wait for a request's verifications (both defaults are below 3 s; raised alike
#: so that a loaded machine measures slowness instead of failing a run).
VERIFY_DEADLINE_S = 29


@dataclass(frozen=True, slots=True)
class AgreementCase:
    name: str
    key: str
    allowed: bool  # the verdict both must give


@dataclass(slots=True)
class TestBed:
    registry: Registry
    images: list[PushedImage]
    extra_tags: int
    signer: DualSigner
    other_notation_env: NotationEnv
    agreement: list[AgreementCase]
    sign_seconds: float = 0.0

    def repositories(self) -> list[str]:
        """The signed images' repositories, in the order of :meth:`keys`."""
        return [image.repository for image in self.images]

    def keys(self, host: str | None = None) -> list[str]:
        """``HOST/peers/app-NNN:v1`` for every signed image (``host``: e.g. the delay proxy's)."""
        return [f"{host or self.registry.host}/{image.repository}:v1" for image in self.images]

    def tagged_keys(self) -> list[str]:
        """The distinct keys of the memory scenario: every image under every extra tag."""
        return [
            f"{self.registry.host}/{image.repository}:t{tag:02d}"
            for tag in range(self.extra_tags)
            for image in self.images
        ]

    def close(self) -> None:
        self.signer.close()
        self.other_notation_env.close()


async def _tag_all(registry: Registry, images: Sequence[PushedImage], tags: int) -> None:
    """PUT every image's manifest under ``t00`` ... ``t{tags-1}`` (16 at a time)."""
    limit = asyncio.Semaphore(16)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def put(image: PushedImage, tag: str) -> None:
            async with limit:
                url = f"{registry.url}/v2/{image.repository}/manifests/{tag}"
                headers = {"Content-Type": image.media_type}
                async with session.put(url, data=image.manifest, headers=headers) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"PUT {url}: HTTP {resp.status}: {(await resp.read())[:200]!r}")

        await asyncio.gather(*(put(image, f"t{t:02d}") for image in images for t in range(tags)))


def make_test_bed(registry: Registry, workdir: Path, count: int, extra_tags: int, workers: int) -> TestBed:
    """Push and sign everything (close the result). Signing runs the real CLIs, ``workers`` at a time."""
    started = time.perf_counter()
    # Countersign reads notation's own trust policy: strict, ca:peers, every repository.
    signer = DualSigner.create(workdir, _SIGNER)
    cosign_env = signer.cosign_env
    other_env = NotationEnv(workdir / "notation-other")
    try:
        other_key = cosign.generate_key_pair(cosign_env, "other")
        notation.generate_test_key(other_env, _OTHER_SIGNER)
        bed = TestBed(registry, [], extra_tags, signer, other_env, [])

        def one(index: int) -> PushedImage:
            image = push_image(registry, f"peers/app-{index:03d}", "v1", seed=f"countersign-peers-{index}")
            signer.sign(registry, image)
            return image

        def case(name: str) -> PushedImage:
            return push_image(registry, f"peers/agree-{name}", "v1", seed=f"countersign-peers-agree-{name}")

        def agreement() -> list[AgreementCase]:
            good, unsigned, other, only_cosign, only_notation = (
                case(n) for n in ("good", "unsigned", "other-keys", "only-cosign", "only-notation")
            )
            signer.sign(registry, good)
            cosign.sign_legacy(cosign_env, other_key, registry, other, tool="cosign2")
            notation.sign(other_env, _OTHER_SIGNER, registry, other, signature_format="jws")
            cosign.sign_legacy(cosign_env, signer.cosign_key, registry, only_cosign, tool="cosign2")
            notation.sign(signer.notation_env, _SIGNER, registry, only_notation, signature_format="jws")
            cases = [
                AgreementCase("good (both signatures)", good.reference, True),
                AgreementCase("unsigned", unsigned.reference, False),
                AgreementCase("other keys (both signatures)", other.reference, False),
                AgreementCase("only a cosign signature", only_cosign.reference, False),
                AgreementCase("only a notation signature", only_notation.reference, False),
                AgreementCase("missing image", f"{registry.host}/peers/agree-missing:v1", False),
            ]
            return cases

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="peers-sign") as pool:
            agreed = pool.submit(agreement)
            bed.images = list(pool.map(one, range(count)))
            bed.agreement = agreed.result()
        asyncio.run(_tag_all(registry, bed.images, extra_tags))
        bed.sign_seconds = time.perf_counter() - started
        return bed
    except BaseException:
        signer.close()
        other_env.close()
        raise


@contextmanager
def served_test_bed(workdir: Path, count: int, extra_tags: int, workers: int) -> Iterator[TestBed]:
    """An olareg in ``workdir/olareg`` holding the test bed of :func:`make_test_bed`; both stop on exit."""
    with start_olareg(workdir / "olareg") as registry:
        bed = make_test_bed(registry, workdir / "signing", count, extra_tags, workers)
        try:
            yield bed
        finally:
            bed.close()


def ensure_bed_tools() -> None:
    """Every tool a served test bed needs (olareg and the signing tools): ToolNotFoundError otherwise."""
    for tool in ("olareg", *SIGNING_TOOLS):
        ensure_tool(tool)


def main_on_test_bed(
    prog: str,
    count: int,
    run: Callable[[TestBed, Path], list[str]],
    check_tools: Callable[[], object] = lambda: None,
) -> int:
    """A bench's ``main`` around a served test bed of ``count`` images: every tool it needs there (olareg,
    the signing tools, and whatever ``check_tools`` checks), else exit 2 saying how to build them; then
    ``run(bed, scratch directory)``'s lines printed and 0, or ``FAILED`` and 1 on a runtime error."""
    try:
        ensure_bed_tools()
        check_tools()
    except ToolNotFoundError as error:
        print(f"{prog}: {error} (`make bench-peers` builds every tool it needs)", file=sys.stderr)
        return 2
    with (
        tempfile.TemporaryDirectory(prefix=f"countersign-{prog.rpartition('.')[2]}-") as scratch,
        served_test_bed(Path(scratch), count, 0, 4) as bed,
    ):
        try:
            lines = run(bed, Path(scratch))
        except RuntimeError as error:
            print(f"{prog}: FAILED: {error}", file=sys.stderr)
            return 1
    print("\n".join(lines))
    return 0


def countersign_config(bed: TestBed, hosts: Sequence[str]) -> dict[str, Any]:
    """Countersign: cosign (the key, no transparency log) and notation (strict, the test certificate's CA
    store) both required; tags and verdicts cached for an hour (the verify deadline: countersign_server).

    The same work as Ratify's: cosign reads signatures only (`legacyAttestations: false`; Ratify's cosign
    verifier verifies the `.sig` signatures and never reads the `.att` tag)."""
    verifiers = bed.signer.verifiers()
    verifiers["cosign"]["options"] = {**verifiers["cosign"]["options"], "legacyAttestations": False}
    return {
        "registries": {host: {"insecure": True} for host in hosts},
        "verifiers": verifiers,
        "policies": require_both(),
        "cache": {"tagTTL": 3600, "verdictTTL": 3600},
    }


def countersign_server() -> dict[str, Any]:
    """The verify deadline raised to 29 s, its maximum (default 2.5 s)."""
    return {"deadlines": {"verify": f"{VERIFY_DEADLINE_S}s"}}


def ratify_config(bed: TestBed, oras_cache: Path) -> dict[str, Any]:
    """Ratify v1.4.6's config.json for the same policy.

    - store ``oras``: plain HTTP, ``cosignEnabled`` (finds the legacy ``.sig`` tag), its in-memory cache of
      referrer listings on with a one-hour TTL (default 10 s), and its on-disk blob/manifest cache in
      ``oras_cache``, a fresh directory per process (by default ``~/.ratify/local_oras_cache``, which
      survives restarts and would make a "fresh process" warm);
    - verifier ``cosign``: a trust policy with the public key file, scope ``*``, ``tLogVerify: false``;
    - verifier ``notation``: the test certificate as the trust store ``ca:certs`` and a strict trust policy;
    - policy ``configPolicy``: an entry ``any`` for each signature type, so each needs one passing signature;
    - executor: the verify timeout raised to 29 s (default 2.9 s), as for Countersign.
    """
    return {
        "executor": {"verificationRequestTimeout": VERIFY_DEADLINE_S * 1000},
        "store": {
            "version": "1.0.0",
            "plugins": [
                {
                    "name": "oras",
                    "useHttp": True,
                    "cosignEnabled": True,
                    "localCachePath": str(oras_cache),
                    "cacheEnabled": True,
                    "ttl": 3600,
                }
            ],
        },
        "policy": {
            "version": "1.0.0",
            "plugin": {
                "name": "configPolicy",
                "artifactVerificationPolicies": {NOTATION_ARTIFACT_TYPE: "any", COSIGN_ARTIFACT_TYPE: "any"},
            },
        },
        "verifier": {
            "version": "1.0.0",
            "plugins": [
                {
                    "name": "cosign",
                    "artifactTypes": COSIGN_ARTIFACT_TYPE,
                    "trustPolicies": [
                        {
                            "name": "default",
                            "version": "1.0.0",
                            "scopes": ["*"],
                            "keys": [{"file": str(bed.signer.cosign_key.public_path)}],
                            "tLogVerify": False,
                        }
                    ],
                },
                {
                    "name": "notation",
                    "artifactTypes": NOTATION_ARTIFACT_TYPE,
                    "verificationCerts": [str(bed.signer.notation_key.cert_path)],
                    "trustPolicyDoc": {
                        "version": "1.0",
                        "trustPolicies": [
                            {
                                "name": "default",
                                "registryScopes": ["*"],
                                "signatureVerification": {"level": "strict"},
                                "trustStores": ["ca:certs"],
                                "trustedIdentities": ["*"],
                            }
                        ],
                    },
                },
            ],
        },
    }
