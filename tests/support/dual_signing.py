"""Images signed twice, by the real cosign v2 (a key, the legacy ``sha256-<hex>.sig`` tag) and by the real
notation CLI (JWS, a ``notation cert generate-test`` certificate), and Countersign's verifiers that trust
both: the set-up of the benchmarks (bench/trace_bench.py, bench/cpu_profile.py, bench/peer_setup.py) and of
the integration tests (the ``dual_signer`` fixture of tests/integration/conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support import cosign, notation
from tests.support.cosign import CosignEnv, KeyPair
from tests.support.images import PushedImage
from tests.support.notation import NotationEnv, SigningKey
from tests.support.registries import Registry

__all__ = ["SIGNING_TOOLS", "DualSigner", "require_both"]

#: The CLIs a DualSigner runs: cosign v3 generates the key pair, cosign v2 signs, notation does both.
SIGNING_TOOLS = ("cosign", "cosign2", "notation")


@dataclass(frozen=True, slots=True)
class DualSigner:
    """A cosign key pair and a notation test key, both named ``name``, in their own homes; notation's trust
    policy (what Countersign reads) is strict, trusts ``ca:NAME`` and covers every repository. Close it
    (or ``with``)."""

    cosign_env: CosignEnv
    cosign_key: KeyPair
    notation_env: NotationEnv
    notation_key: SigningKey

    @classmethod
    def create(cls, workdir: Path, name: str) -> DualSigner:
        """Fresh homes ``workdir/cosign`` and ``workdir/notation`` with the keys and the trust policy."""
        cosign_env = CosignEnv(workdir / "cosign")
        notation_env = NotationEnv(workdir / "notation")
        try:
            key = cosign.generate_key_pair(cosign_env, name)
            signing_key = notation.generate_test_key(notation_env, name)
            notation.write_trust_policy(notation_env, notation.trust_policy([f"ca:{name}"], name=name))
        except BaseException:
            cosign_env.close()
            notation_env.close()
            raise
        return cls(cosign_env, key, notation_env, signing_key)

    def sign(self, registry: Registry, image: PushedImage) -> None:
        """Sign ``image`` with both: cosign v2 (legacy ``.sig``) and notation (JWS, OCI 1.1 referrer)."""
        cosign.sign_legacy(self.cosign_env, self.cosign_key, registry, image, tool="cosign2")
        notation.sign(self.notation_env, self.notation_key.name, registry, image, signature_format="jws")

    def verifiers(self) -> dict[str, Any]:
        """Countersign's ``verifiers``: ``cosign`` (the key, offline) and ``notation`` (notation's trust
        policy and the test certificate's trust store)."""
        store = self.notation_env.trust_store_dir("ca", self.notation_key.name).parents[2]
        return {
            "cosign": {"type": "cosign", "options": cosign.key_options(self.cosign_key)},
            "notation": {
                "type": "notation",
                "options": {
                    "trustPolicy": str(self.notation_env.trust_policy_file),
                    "trustStore": str(store),
                },
            },
        }

    def close(self) -> None:
        self.cosign_env.close()
        self.notation_env.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def require_both() -> list[dict[str, Any]]:
    """Countersign's ``policies``: every image needs both verifiers (``allOf [cosign, notation]``)."""
    return [{"name": "default", "scopes": ["*"], "allOf": ["cosign", "notation"]}]
