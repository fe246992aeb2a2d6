"""Timestamped notation signatures end to end: `notation sign --timestamp-url` against sigstore's
timestamp-server on 127.0.0.1, judged by the whole engine and by `notation verify` under the same trust
policy and trust store.

* the engine and `notation verify` agree on `verifyTimestamp: always` and `afterCertExpiry`, on chains valid
  now and on a chain that expired after signing, and the verdict reports the timestamp's time;
* the TSA's certificate names an OCSP responder and a CRL (a local `RevocationServers`, bound to the TSA
  root), so both check the TSA chain's revocation as notation-go's verifyTimestamp does: a revoked TSA
  certificate denies (`timestamp_invalid`; `notation verify` rejects it too), and when neither responder
  answers Countersign is undecided (`revocation_unavailable`, never cached) where notation rejects.

One timestamp-server serves the module (it binds a metrics port of its own, so only one may run at a time);
the responders are module-scoped too (the TSA certificate names their URLs) and reset before each test.
Each test has its own notation home (notation caches CRLs there).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest

from provider.config import Config, parse_config
from provider.outcome import Outcome, UndecidedKey
from tests.support import notation
from tests.support.images import PushedImage, push_image
from tests.support.notation import NotationEnv, SigningChain
from tests.support.registries import Registry
from tests.support.revocation import RevocationServers
from tests.support.tools import require_tool
from tests.support.tsa import TimestampServer, TsaCertificates, pem
from verifiers.notation.verifier import NotationVerifier

pytestmark = pytest.mark.integration

Format = Literal["jws", "cose"]
Level = Literal["strict", "permissive"]
When = Literal["always", "afterCertExpiry"]
#: How long a deliberately short-lived signing certificate lives after it is made: enough to push nothing
#: and sign once (a timestamp later than the certificate's end would make `notation sign` fail).
SHORT_LIFE = timedelta(seconds=8)
#: genTime has whole seconds here, and the timestamp-server's clock is this machine's.
SLACK = timedelta(seconds=2)


# --- module-scoped: the responders and the one timestamp-server -------------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[RevocationServers]:
    with RevocationServers() as made:
        yield made


@pytest.fixture(scope="module")
def tsa_certificates(servers: RevocationServers) -> TsaCertificates:
    made = TsaCertificates(
        name="countersign-revocable-tsa", ocsp_url=servers.ocsp_url, crl_url=servers.crl_url
    )
    servers.bind(*made.issuer)
    return made


@pytest.fixture(scope="module")
def tsa(
    tmp_path_factory: pytest.TempPathFactory, tsa_certificates: TsaCertificates
) -> Iterator[TimestampServer]:
    require_tool("timestamp-server")
    with TimestampServer(tmp_path_factory.mktemp("tsa"), tsa_certificates) as server:
        yield server


@pytest.fixture(scope="module")
def tsa_root_file(tmp_path_factory: pytest.TempPathFactory, tsa_certificates: TsaCertificates) -> Path:
    path = tmp_path_factory.mktemp("tsa-root") / "root.pem"
    path.write_bytes(pem(tsa_certificates.root_cert))
    return path


@pytest.fixture(autouse=True)
def responders_up(servers: RevocationServers) -> None:
    """Every test starts with both responders up, nothing revoked and no request recorded."""
    servers.revoked.clear()
    servers.unknown.clear()
    servers.start_ocsp()
    servers.start_crl()
    servers.ocsp_requests.clear()
    servers.crl_requests = 0


# --- per test ---------------------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> Iterator[NotationEnv]:
    require_tool("notation")
    with NotationEnv(tmp_path / "notation") as made:
        yield made


@pytest.fixture
async def verifiers() -> AsyncIterator[list[NotationVerifier]]:
    made: list[NotationVerifier] = []
    yield made
    for verifier in made:
        await verifier.aclose()


@pytest.fixture
def chain() -> SigningChain:
    """A signing chain valid from an hour ago (it must predate the timestamp) with no revocation URL."""
    return SigningChain(name="countersign-stamped-it", leaf_kind="ecdsa-p256", ca_kind="ecdsa-p384")


def _config(registry: Registry) -> Config:
    return parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"notation": {"type": "digest-pin", "options": {}}},
            "policies": [{"scopes": ["*"], "allOf": ["notation"]}],
        }
    )


class Signed:
    """An image signed with a timestamp, and the window in which the timestamp was made."""

    def __init__(self, image: PushedImage, before: datetime, after: datetime) -> None:
        self.image, self.before, self.after = image, before, after

    def check_time(self, reported: object) -> datetime:
        assert isinstance(reported, str) and reported.endswith("Z"), reported
        moment = datetime.fromisoformat(reported.replace("Z", "+00:00"))
        assert self.before - SLACK <= moment <= self.after + SLACK, (moment, self.before, self.after)
        return moment


async def _sign(
    env: NotationEnv,
    chain: SigningChain,
    registry: Registry,
    repo: str,
    tsa: TimestampServer,
    tsa_root_file: Path,
    fmt: Format = "jws",
) -> Signed:
    notation.install_key(env, "signer", chain.key_pem, chain.chain_pem, default=True)
    notation.add_trust_store(env, "ca", "shop", chain.root_pem)
    notation.add_trust_store(env, "tsa", "stamps", await asyncio.to_thread(tsa_root_file.read_bytes))
    image = await asyncio.to_thread(push_image, registry, repo, "v1", seed=f"stamped-{fmt}-{time.time_ns()}")
    before = datetime.now(UTC)
    await asyncio.to_thread(
        notation.sign,
        env,
        "signer",
        registry,
        image,
        signature_format=fmt,
        timestamp_url=tsa.timestamp_url,
        timestamp_root=tsa_root_file,
    )
    return Signed(image, before, datetime.now(UTC))


def _policy(
    env: NotationEnv,
    *,
    when: When = "always",
    stores: tuple[str, ...] = ("ca:shop", "tsa:stamps"),
    level: Level = "strict",
) -> None:
    document = notation.trust_policy(list(stores), ["*"], level=level, verify_timestamp=when)
    notation.write_trust_policy(env, document)


async def _outcome(
    engines: Any, verifiers: list[NotationVerifier], env: NotationEnv, registry: Registry, image: PushedImage
) -> Outcome:
    return await notation.engine_outcome(await engines(_config(registry)), verifiers, env, image)


async def _agree(
    engines: Any, verifiers: list[NotationVerifier], env: NotationEnv, registry: Registry, image: PushedImage
) -> dict[str, Any]:
    """The engine's report, after checking that `notation verify` reaches the same verdict."""
    report = notation.report_of(await _outcome(engines, verifiers, env, registry, image))
    assert await notation.notation_accepts(env, registry, image) == report["passed"], report
    return report


# --- the engine and notation agree on timestamped signatures ---------------------------------------------


@pytest.mark.parametrize("fmt", ["jws", "cose"])
async def test_timestamped_signature_always_and_after_cert_expiry(
    env: NotationEnv,
    chain: SigningChain,
    olareg_registry: Registry,
    repo_name: str,
    tsa: TimestampServer,
    tsa_root_file: Path,
    servers: RevocationServers,
    engines: Any,
    verifiers: list[NotationVerifier],
    fmt: Format,
) -> None:
    registry = olareg_registry
    signed = await _sign(env, chain, registry, repo_name, tsa, tsa_root_file, fmt)

    _policy(env, when="always")
    report = await _agree(engines, verifiers, env, registry, signed.image)
    assert report["passed"] and report["reason"] == "notation_verified", report
    [entry] = report["details"]["signatures"]
    assert entry["format"] == fmt and entry["logged"] == []
    signed.check_time(entry["timestamp"])
    # Both asked the TSA's OCSP responder (notation at signing time, then at verification).
    assert len(servers.ocsp_requests) >= 3 and servers.crl_requests == 0

    # afterCertExpiry with a chain valid now: the timestamp is not needed, so not verified or reported.
    _policy(env, when="afterCertExpiry")
    report = await _agree(engines, verifiers, env, registry, signed.image)
    assert report["passed"], report
    assert report["details"]["signatures"][0]["timestamp"] is None

    # Another TSA's root in the tsa store: the countersignature does not verify.
    other = TsaCertificates(name="countersign-other-tsa")
    notation.add_trust_store(env, "tsa", "other", pem(other.root_cert))
    _policy(env, when="always", stores=("ca:shop", "tsa:other"))
    report = await _agree(engines, verifiers, env, registry, signed.image)
    assert not report["passed"] and report["reason"] == "timestamp_invalid", report
    assert "trusted timestamp authority" in report["details"]["signatures"][0]["message"]


async def test_expired_chain_passes_on_its_timestamp(
    env: NotationEnv,
    olareg_registry: Registry,
    repo_name: str,
    tsa: TimestampServer,
    tsa_root_file: Path,
    engines: Any,
    verifiers: list[NotationVerifier],
) -> None:
    registry = olareg_registry
    short = SigningChain(
        name="countersign-short-lived",
        leaf_kind="ecdsa-p256",
        ca_kind="ecdsa-p384",
        not_after=datetime.now(UTC) + SHORT_LIFE,
    )
    signed = await _sign(env, short, registry, repo_name, tsa, tsa_root_file)
    assert signed.after < short.leaf_cert.not_valid_after_utc  # signed while the leaf was valid
    await asyncio.sleep((short.leaf_cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() + 1.5)
    assert datetime.now(UTC) > short.leaf_cert.not_valid_after_utc

    for when in ("afterCertExpiry", "always"):
        _policy(env, when=when)
        report = await _agree(engines, verifiers, env, registry, signed.image)
        assert report["passed"] and report["reason"] == "notation_verified", (when, report)
        stamp = signed.check_time(report["details"]["signatures"][0]["timestamp"])
        assert stamp <= short.leaf_cert.not_valid_after_utc

    # Without a tsa store the timestamp is not looked at: the expired chain fails (strict) ...
    _policy(env, stores=("ca:shop",))
    report = await _agree(engines, verifiers, env, registry, signed.image)
    assert not report["passed"] and report["reason"] == "timestamp_invalid", report
    assert "expired" in report["details"]["signatures"][0]["message"]
    # ... and is only logged under permissive, by both.
    _policy(env, stores=("ca:shop",), level="permissive")
    report = await _agree(engines, verifiers, env, registry, signed.image)
    assert report["passed"], report
    logged = report["details"]["signatures"][0]["logged"]
    assert [entry["validation"] for entry in logged] == ["authenticTimestamp"]


# --- revocation of the TSA chain ---------------------------------------------------------------------------


async def test_revoked_tsa_certificate_is_denied(
    env: NotationEnv,
    chain: SigningChain,
    olareg_registry: Registry,
    repo_name: str,
    tsa: TimestampServer,
    tsa_root_file: Path,
    tsa_certificates: TsaCertificates,
    servers: RevocationServers,
    engines: Any,
    verifiers: list[NotationVerifier],
) -> None:
    registry = olareg_registry
    signed = await _sign(env, chain, registry, repo_name, tsa, tsa_root_file)  # signed while the TSA is good
    servers.revoke(tsa_certificates.leaf_cert.serial_number)

    _policy(env)
    outcome = await _outcome(engines, verifiers, env, registry, signed.image)
    report = notation.report_of(outcome)
    assert not report["passed"] and report["reason"] == "timestamp_invalid", report
    [entry] = report["details"]["signatures"]
    assert "timestamping chain is revoked" in entry["message"] and "keyCompromise" in entry["message"]
    assert entry["timestamp"] is None
    # notation verify agrees: a revoked timestamping certificate fails authenticTimestamp ("timestamping
    # certificate with subject ... is revoked"), which strict enforces.
    assert not await notation.notation_accepts(env, registry, signed.image)

    # permissive only logs authenticTimestamp: both let it through, Countersign with the failure logged.
    _policy(env, level="permissive")
    report = await _agree(engines, verifiers, env, registry, signed.image)
    assert report["passed"], report
    logged = report["details"]["signatures"][0]["logged"]
    assert [(e["validation"], e["unavailable"]) for e in logged] == [("authenticTimestamp", False)]
    assert "revoked" in logged[0]["message"]

    # The CRL says the same when the OCSP responder is down.
    servers.stop_ocsp()
    _policy(env)
    report = notation.report_of(await _outcome(engines, verifiers, env, registry, signed.image))
    assert report["reason"] == "timestamp_invalid" and "by CRL" in report["message"], report
    assert servers.crl_requests >= 1


async def test_tsa_responders_down_is_undecided(
    env: NotationEnv,
    chain: SigningChain,
    olareg_registry: Registry,
    repo_name: str,
    tsa: TimestampServer,
    tsa_root_file: Path,
    servers: RevocationServers,
    engines: Any,
    verifiers: list[NotationVerifier],
) -> None:
    registry = olareg_registry
    signed = await _sign(env, chain, registry, repo_name, tsa, tsa_root_file)
    _policy(env)

    # Both down: notation rejects ("revocation status is unknown" fails authenticTimestamp); Countersign
    # cannot decide, so the key is undecided (systemError, not cached) and not admitted. (This env's
    # notation has no CRL cached yet: it only fetched the CRL when OCSP failed.)
    servers.stop_ocsp()
    servers.stop_crl()
    outcome = await _outcome(engines, verifiers, env, registry, signed.image)
    assert isinstance(outcome, UndecidedKey), outcome
    assert outcome.reason == "revocation_unavailable", outcome
    assert "timestamping chain" in outcome.message and "unavailable" in outcome.message
    assert not await notation.notation_accepts(env, registry, signed.image)
    assert servers.crl_requests == 0

    # The CRL back, OCSP still down: both fall back on it (good).
    servers.start_crl()
    report = await _agree(engines, verifiers, env, registry, signed.image)
    assert report["passed"], report
    assert servers.crl_requests >= 2
