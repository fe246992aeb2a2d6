"""Countersign and the real `notation verify` (1.3.2) agree on signer identities and on the inputs notation
reads loosely: the thumbprint annotation, `x509.subject:` trusted identities, leaf subjects it cannot parse.

Each case runs both on the same image, trust policy and trust store and asserts the same outcome.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from provider.config import parse_config
from provider.engine import Engine
from provider.outcome import Decided
from tests.support import notation
from tests.support.images import PushedImage, push_image
from tests.support.junk import push_manifest
from tests.support.notation import THUMBPRINT_ANNOTATION, NotationEnv, SigningChain
from tests.support.registries import Registry
from tests.support.tools import require_tool
from verifiers.base import OptionsError
from verifiers.notation.verifier import NotationVerifier

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[NotationEnv]:
    require_tool("notation")
    with NotationEnv(tmp_path / "notation") as made:
        yield made


async def _countersign(
    engines: Any, env: NotationEnv, registry: Registry, image: PushedImage
) -> dict[str, Any]:
    config = parse_config(
        {
            "registries": {registry.host: {"insecure": True}},
            "verifiers": {"notation": {"type": "digest-pin", "options": {}}},
            "policies": [{"scopes": ["*"], "allOf": ["notation"]}],
        }
    )
    engine: Engine = await engines(config)
    engine.verifiers["notation"] = NotationVerifier(
        "notation",
        {"trustPolicy": str(env.trust_policy_file), "trustStore": str(env.config_dir / "truststore")},
    )
    outcome = (await engine.verify([image.pinned], 30))[image.pinned]
    assert isinstance(outcome, Decided), outcome
    report: dict[str, Any] = outcome.value["verifiers"][0]
    return report


async def _signed(
    env: NotationEnv, registry: Registry, repo: str, chain: SigningChain, **kwargs: Any
) -> PushedImage:
    notation.install_key(env, "signer", chain.key_pem, chain.chain_pem, default=True)
    notation.add_trust_store(env, "ca", "shop", chain.root_pem)
    image = await asyncio.to_thread(push_image, registry, repo, "v1", seed=f"identities-{time.time_ns()}")
    await asyncio.to_thread(notation.sign, env, "signer", registry, image, **kwargs)
    return image


# --- 1. the thumbprint annotation ------------------------------------------------------------------------


def _upper_case_thumbprints(registry: Registry, image: PushedImage) -> str:
    """Re-push the image's one notation signature manifest with its thumbprint annotation in upper-case hex
    and point the `sha256-<hex>` referrers index at it instead of the original; the new manifest's digest."""
    repo = image.repository
    [signature] = notation.signature_artifacts(registry, repo, image.digest).signatures
    raw = json.loads(json.dumps(signature.manifest.raw))
    raw["annotations"][THUMBPRINT_ANNOTATION] = raw["annotations"][THUMBPRINT_ANNOTATION].upper()
    data = json.dumps(raw).encode()
    digest = push_manifest(registry.url, repo, data, MANIFEST)
    entry = {
        "mediaType": MANIFEST,
        "digest": digest,
        "size": len(data),
        "artifactType": notation.NOTARY_SIGNATURE_ARTIFACT_TYPE,
        "annotations": raw["annotations"],
    }
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]}
    tag = "sha256-" + image.digest.removeprefix("sha256:")
    push_manifest(registry.url, repo, json.dumps(index).encode(), INDEX, tag=tag)
    return digest


async def test_upper_case_thumbprints_verify_as_notation_verifies(
    env: NotationEnv, registry: Registry, repo_name: str, engines: Any
) -> None:
    chain = SigningChain(name="thumbprints")
    image = await _signed(env, registry, repo_name, chain, referrers="tag")
    digest = await asyncio.to_thread(_upper_case_thumbprints, registry, image)
    [signature] = notation.signature_artifacts(registry, image.repository, image.digest).signatures
    assert signature.referrer.digest == digest
    listed = json.loads(signature.manifest.annotations[THUMBPRINT_ANNOTATION])
    assert listed == [cert.fingerprint(hashes.SHA256()).hex().upper() for cert in chain.chain]

    notation.write_trust_policy(env, notation.trust_policy(["ca:shop"], [f"x509.subject: {chain.subject}"]))
    report = await _countersign(engines, env, registry, image)
    assert await notation.notation_accepts(env, registry, image)
    assert report["reason"] == "notation_verified", report
    assert report["details"]["signatures"][0]["signature"] == digest


# --- 2. trusted identities -------------------------------------------------------------------------------

Outcome = str  # "refused" (the policy, at load), "verified" or "denied"


def _notation_outcome(
    env: NotationEnv, registry: Registry, image: PushedImage, document: dict[str, Any]
) -> Outcome:
    """What the real notation does with ``document``: `notation policy import` refuses it, or `notation
    verify` accepts or rejects the image under it. A refused policy is also written in place and `notation
    verify` must fail on it without judging a signature."""
    source = env.directory / "staging" / "trustpolicy.json"
    source.parent.mkdir(exist_ok=True)
    source.write_text(json.dumps(document, indent=2))
    imported = env.run("policy", "import", "--force", str(source), check=False)
    if imported.ok:
        return "verified" if notation.notation_verify(env, registry, image) else "denied"
    assert "identit" in imported.stderr.lower(), imported.describe()
    env.trust_policy_file.write_text(json.dumps(document))
    verified = env.run("verify", "--insecure-registry", image_ref(registry, image), check=False)
    assert not verified.ok and "identit" in verified.stderr.lower(), verified.describe()
    return "refused"


def image_ref(registry: Registry, image: PushedImage) -> str:
    return f"{registry.host}/{image.repository}@{image.digest}"


async def _countersign_outcome(
    engines: Any, env: NotationEnv, registry: Registry, image: PushedImage, document: dict[str, Any]
) -> Outcome:
    env.trust_policy_file.write_text(json.dumps(document))
    try:
        report = await _countersign(engines, env, registry, image)
    except OptionsError as exc:
        assert "trustedIdentities" in str(exc), exc
        return "refused"
    assert report["reason"] in ("notation_verified", "untrusted_signer"), report
    return "verified" if report["passed"] else "denied"


ORG = "Acme Inc"
# (identities, what notation 1.3.2 does); the signer's subject is C=US, ST=WA, O=Acme Inc, CN=builder.
IDENTITY_CASES: list[tuple[str, list[str], Outcome]] = [
    ("plain", ["x509.subject: C=US, ST=WA, O=Acme Inc"], "verified"),
    ("S alias", ["x509.subject: C=US, S=WA, O=Acme Inc"], "verified"),
    ("semicolons", ["x509.subject: C=US; ST=WA; O=Acme Inc"], "verified"),
    ("no space, CN", ["x509.subject:C=US,ST=WA,O=Acme Inc,CN=builder"], "verified"),
    ("hex escape", [r"x509.subject: C=US, ST=WA, O=Acme\20Inc"], "verified"),
    ("empty OU matches none", ["x509.subject: C=US, ST=WA, O=Acme Inc, OU="], "verified"),
    ("quotes kept", ['x509.subject: C=US, ST=WA, O="Acme Inc"'], "denied"),
    ("lower-case cn", ["x509.subject: C=US, ST=WA, O=Acme Inc, cn=builder"], "denied"),
    ("empty CN", ["x509.subject: C=US, ST=WA, O=Acme Inc, CN="], "denied"),
    ("other kind only", ["x509.san:builder"], "denied"),
    ("space before colon", ["x509.subject : C=US, ST=WA, O=Acme Inc"], "denied"),
    (
        "other kind beside",
        ["x509.san:builder", "x509.san:builder", "x509.subject: C=US, ST=WA, O=Acme Inc"],
        "verified",
    ),
    ("lower-case types", ["x509.subject: c=US, st=WA, o=Acme Inc"], "refused"),
    ("multi-valued", ["x509.subject: C=US+ST=WA, O=Acme Inc"], "refused"),
    ("twice", ["x509.subject: C=US, ST=WA, O=Acme Inc, O=Other"], "refused"),
    ("hex value", ["x509.subject: C=US, ST=WA, O=#0c0141"], "refused"),
    ("comma in quotes", ['x509.subject: C=US, ST=WA, O="Acme, Inc"'], "refused"),
    ("missing ST", ["x509.subject: C=US, O=Acme Inc"], "refused"),
    ("empty", ["x509.subject:"], "refused"),
    (
        "overlap",
        ["x509.subject: C=US, ST=WA, O=Acme Inc", "x509.subject: C=US, S=WA, O=Acme Inc, CN=builder"],
        "refused",
    ),
]


async def test_trusted_identities_as_notation_reads_them(
    env: NotationEnv, registry: Registry, repo_name: str, engines: Any
) -> None:
    """One signature; each identity list in a policy of its own: notation and Countersign refuse the same
    policies and verify or deny the same way (and the table holds what notation 1.3.2 does)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "WA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, "builder"),
        ]
    )
    chain = SigningChain(name="identities", leaf_subject=subject)
    image = await _signed(env, registry, repo_name, chain)
    seen: dict[str, tuple[Outcome, Outcome]] = {}
    for case, identities, _ in IDENTITY_CASES:
        document = notation.trust_policy(["ca:shop"], identities)
        theirs = await asyncio.to_thread(_notation_outcome, env, registry, image, document)
        ours = await _countersign_outcome(engines, env, registry, image, document)
        seen[case] = (theirs, ours)
    assert {case: pair for case, pair in seen.items() if pair[0] != pair[1]} == {}
    assert {case: theirs for case, (theirs, _) in seen.items()} == {case: e for case, _, e in IDENTITY_CASES}


# --- 3. leaf subjects notation cannot read ---------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(
            [(NameOID.ORGANIZATIONAL_UNIT_NAME, "build"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "release")],
            id="two-OUs",
        ),
        pytest.param([(NameOID.EMAIL_ADDRESS, "builder@example.com")], id="emailAddress"),
        pytest.param([(NameOID.DOMAIN_COMPONENT, "com"), (NameOID.DOMAIN_COMPONENT, "example")], id="DC"),
    ],
)
async def test_a_leaf_notation_cannot_read_is_trusted_only_by_star(
    env: NotationEnv,
    registry: Registry,
    repo_name: str,
    engines: Any,
    extra: list[tuple[x509.ObjectIdentifier, str]],
) -> None:
    """notation cannot parse such a leaf subject (a repeated attribute is a multi-valued RDN in Go's string
    form; emailAddress and DC are written `OID=#<hex>`), so an `x509.subject:` identity never matches it,
    even one naming only C, ST and O; `*` trusts it."""
    base = [
        (NameOID.COUNTRY_NAME, "US"),
        (NameOID.STATE_OR_PROVINCE_NAME, "WA"),
        (NameOID.ORGANIZATION_NAME, ORG),
    ]
    subject = x509.Name([x509.NameAttribute(oid, value) for oid, value in [*base, *extra]])
    chain = SigningChain(name="unreadable", leaf_subject=subject)
    image = await _signed(env, registry, repo_name, chain)

    notation.write_trust_policy(
        env, notation.trust_policy(["ca:shop"], ["x509.subject: C=US, ST=WA, O=Acme Inc"])
    )
    report = await _countersign(engines, env, registry, image)
    assert not await notation.notation_accepts(env, registry, image)
    assert report["reason"] == "untrusted_signer", report
    assert "cannot read the signing certificate's subject" in report["details"]["signatures"][0]["message"]

    notation.write_trust_policy(env, notation.trust_policy(["ca:shop"], ["*"]))
    report = await _countersign(engines, env, registry, image)
    assert await notation.notation_accepts(env, registry, image)
    assert report["reason"] == "notation_verified", report
