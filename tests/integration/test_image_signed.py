"""Countersign admits itself: its image, signed as an operator signs it, passes examples/self-policy.yaml.

The image (``make image``, built once per session into the cache) is pushed to a local olareg and signed by
tools/image/sign.sh with the real CLIs, offline: an SPDX SBOM made by syft (tools/image/sbom.sh) attached
as a referrer (oras) and as a cosign attestation, a cosign signature (key, no transparency log) and a
notation signature (a ``notation cert generate-test`` certificate). Every command runs in an isolated home
with the proxy trap and, where strace works, the connect() guard of tests/support/cosign.py: nothing
leaves 127.0.0.1.

The image itself then runs as the provider, as the chart runs it (tests/support/container.py), with the
example's verifiers and policy, and is asked over mutual TLS about its own image: allowed, each verifier
with its reason. The same image copied without signatures, and signed by an impostor (another cosign key,
another certificate with the same subject), are denied with the reasons that say why; a tag is denied as
unpinned. ``countersign verify`` from the venv gives the same answers, and the signers' own verifiers
(``cosign verify``, ``cosign verify-attestation``, ``notation verify``) agree.

Cost: the image build (see test_image.py; a no-op when the cache holds it), about 5 s for the SBOM and
5 s per signing, the provider up in a few seconds.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.container import (
    TRUST_DIR,
    BuiltImage,
    build_image,
    chart_provider,
    container_env,
    image_cache,
    load_image,
    require_image_building,
    server_config,
)
from tests.support.cosign import CosignEnv, KeyPair, cosign_verify, generate_key_pair
from tests.support.notation import NotationEnv, generate_test_key, notation_verify, write_trust_policy
from tests.support.registries import LOOPBACK, Registry, start_registry
from tests.support.tools import require_tool, tools_dir
from verifiers.sbom_formats import parse_sbom

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples/self-policy.yaml"
SBOM_SH = REPO_ROOT / "tools/image/sbom.sh"
SIGN_SH = REPO_ROOT / "tools/image/sign.sh"
#: The key names the example policy trusts (its cosign key name and notation certificate subject).
RELEASE = "countersign-release"
REPO = "countersign"
VERIFIERS = ("pinned", "release-cosign", "release-notation", "release-sbom")
SPDX = "application/spdx+json"
_PYPI_NORMALIZE = re.compile(r"[-_.]+")


def _norm(name: str) -> str:
    return _PYPI_NORMALIZE.sub("-", name).lower()


@dataclass(frozen=True)
class Signer:
    """A signing home (cosign key pair, notation key and trust store) in which the scripts run."""

    env: CosignEnv
    key: KeyPair
    truststore: Path
    directory: Path

    def run(self, script: Path, *args: str) -> tuple[str, float]:
        """``script ARGS`` in the isolated, offline home; (stdout, seconds)."""
        start = time.monotonic()
        result = self.env.run(
            str(script),
            *args,
            timeout=900,
            # SHELL: bash looks the user up (through nscd's socket, which the connect() guard refuses)
            # when it is unset.
            extra_env={
                "COUNTERSIGN_TOOLS": str(tools_dir()),
                "CACHE": str(image_cache()),
                "SHELL": "/bin/bash",
            },
        )
        return result.stdout.strip(), time.monotonic() - start


@dataclass(frozen=True)
class Signed:
    registry: Registry
    built: BuiltImage
    sbom: Path
    trust: Path  # the trust material as the example expects it: cosign.pub and truststore/
    timings: dict[str, float]
    release: Signer

    def ref(self, repo: str, reference: str | None = None) -> str:
        return f"{self.registry.host}/{repo}{reference or '@' + self.built.digest}"


def _signer(directory: Path) -> Signer:
    env = CosignEnv(directory)
    key = generate_key_pair(env, RELEASE)
    # The same home for notation: its configuration is $XDG_CONFIG_HOME/notation of this env.
    with NotationEnv(directory) as notation:
        generate_test_key(notation, RELEASE)  # signing key, and its certificate in truststore ca/RELEASE
        truststore = notation.config_dir / "truststore"
    return Signer(env, key, truststore, directory)


@pytest.fixture(scope="module")
def built() -> BuiltImage:
    require_image_building()
    for tool in ("olareg", "skopeo", "oras", "cosign", "notation", "syft", "strace"):
        require_tool(tool)
    return build_image()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    started = start_registry("olareg", tmp_path_factory.mktemp("olareg-self"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def signed(
    built: BuiltImage, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Signed]:
    base = tmp_path_factory.mktemp("signed")
    release, impostor = _signer(base / "release"), _signer(base / "impostor")
    timings: dict[str, float] = {}
    image_dir = built.layout.parent
    try:
        sbom_path, timings["sbom"] = release.run(
            SBOM_SH, "--image", str(image_dir), "--out", str(base / "sbom.json")
        )
        common = ["--image", str(image_dir), "--no-tlog", "--plain-http", "--notation-key", RELEASE]
        out, timings["sign"] = release.run(
            SIGN_SH,
            *common,
            "--repository",
            f"{registry.host}/{REPO}",
            "--cosign-key",
            str(release.key.private_path),
            "--sbom",
            sbom_path,
        )
        assert out == f"{registry.host}/{REPO}@{built.digest}"
        # The impostor: another key pair and another certificate of the same subject; its SBOM is generated.
        out, timings["sign-impostor"] = impostor.run(
            SIGN_SH,
            *common,
            "--repository",
            f"{registry.host}/{REPO}-impostor",
            "--cosign-key",
            str(impostor.key.private_path),
        )
        assert out == f"{registry.host}/{REPO}-impostor@{built.digest}"
        # The same image, without anything attached.
        release.env.run(
            "skopeo",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
            built.oci,
            f"docker://{registry.host}/{REPO}-unsigned:{built.ref}",
        )
        # The trust material as the example expects it next to its configuration (plain files, no links).
        trust = base / "trust"
        trust.mkdir()
        shutil.copy(release.key.public_path, trust / "cosign.pub")
        shutil.copytree(release.truststore, trust / "truststore")
        for path in (trust, *trust.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        print(f"\nSBOM {timings['sbom']:.1f}s, push+attach+sign {timings['sign']:.1f}s")
        yield Signed(registry, built, Path(sbom_path), trust, timings, release)
    finally:
        release.env.close()
        impostor.env.close()


def _config(signed: Signed, trust_dir: str | None, server: dict[str, Any] | None = None) -> dict[str, Any]:
    """The example, for the test bed: its verifiers and policy unchanged but for the registry (plain
    HTTP on loopback), the policy's scopes (the three test repositories) and, for the container, the trust
    material's absolute path (``trust_dir``)."""
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    host = signed.registry.host
    assert list(doc["registries"]) == ["registry.example.com"]
    doc["registries"] = {host: {"insecure": True}}
    (policy,) = doc["policies"]
    assert policy["scopes"] == ["registry.example.com/platform/countersign"]
    assert policy["allOf"] == list(VERIFIERS)
    policy["scopes"] = [f"{host}/{REPO}", f"{host}/{REPO}-*"]
    if trust_dir is not None:
        doc["verifiers"]["release-cosign"]["options"]["keys"][0]["path"] = f"{trust_dir}/cosign.pub"
        doc["verifiers"]["release-notation"]["options"]["trustStore"] = f"{trust_dir}/truststore"
    if server is not None:
        doc["server"] = server
    return doc


def _reasons(item: dict[str, Any]) -> tuple[bool, dict[str, str]]:
    value = item["value"]
    return value["allowed"], {entry["name"]: entry["reason"] for entry in value["verifiers"]}


def _expected(signed: Signed) -> dict[str, tuple[bool, dict[str, str]]]:
    ok = {
        "pinned": "pinned",
        "release-cosign": "cosign_verified",
        "release-notation": "notation_verified",
        "release-sbom": "sbom_verified",
    }
    return {
        signed.ref(REPO): (True, ok),
        signed.ref(REPO, f":{signed.built.ref}"): (False, {**ok, "pinned": "not_pinned"}),
        signed.ref(f"{REPO}-unsigned"): (
            False,
            {
                "pinned": "pinned",
                "release-cosign": "no_signature_found",
                "release-notation": "no_signature_found",
                "release-sbom": "sbom_not_found",
            },
        ),
        signed.ref(f"{REPO}-impostor"): (
            False,
            {
                "pinned": "pinned",
                "release-cosign": "untrusted_key",
                "release-notation": "untrusted_signer",
                "release-sbom": "sbom_not_attested",
            },
        ),
    }


# --- the SBOM --------------------------------------------------------------------------------------------


def _layer(built: BuiltImage) -> tarfile.TarFile:
    blobs = built.layout / "blobs" / "sha256"
    manifest = json.loads((blobs / built.digest.removeprefix("sha256:")).read_bytes())
    (layer,) = manifest["layers"]
    data = gzip.decompress((blobs / layer["digest"].removeprefix("sha256:")).read_bytes())
    return tarfile.open(fileobj=io.BytesIO(data))


def _image_packages(built: BuiltImage) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(Debian, Python) packages as (name, version), read from the image's own layer: the dpkg status
    database and the venv's *.dist-info/METADATA."""
    debian: set[tuple[str, str]] = set()
    python: set[tuple[str, str]] = set()
    with _layer(built) as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./")
            if name == "var/lib/dpkg/status":
                status = tar.extractfile(member)
                assert status is not None
                for stanza in status.read().decode().split("\n\n"):
                    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.MULTILINE))
                    if fields:
                        debian.add((fields["Package"], fields["Version"]))
            elif re.fullmatch(
                r"opt/countersign/lib/python3\.11/site-packages/[^/]+\.dist-info/METADATA", name
            ):
                metadata = tar.extractfile(member)
                assert metadata is not None
                fields = dict(re.findall(r"^(Name|Version): (.*)$", metadata.read().decode(), re.MULTILINE))
                python.add((_norm(fields["Name"]), fields["Version"]))
    return debian, python


def _sbom_packages(document: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    found: dict[str, set[tuple[str, str]]] = {}
    for package in document["packages"]:
        for ref in package.get("externalRefs", []):
            if ref["referenceType"] == "purl":
                kind = ref["referenceLocator"].split("/")[0]
                name = _norm(package["name"]) if kind == "pkg:pypi" else package["name"]
                found.setdefault(kind, set()).add((name, package.get("versionInfo", "")))
    return found


def _get(registry: Registry, path: str, accept: str = "*/*") -> bytes:
    conn = http.client.HTTPConnection(LOOPBACK, registry.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": accept})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status, body[:300])
        return body
    finally:
        conn.close()


def _referrers(signed: Signed, repo: str) -> list[dict[str, Any]]:
    index = json.loads(_get(signed.registry, f"/v2/{repo}/referrers/{signed.built.digest}"))
    manifests: list[dict[str, Any]] = index["manifests"]
    return manifests


def _layer_blob(signed: Signed, repo: str, manifest_digest: str) -> bytes:
    manifest = json.loads(
        _get(
            signed.registry,
            f"/v2/{repo}/manifests/{manifest_digest}",
            "application/vnd.oci.image.manifest.v1+json",
        )
    )
    assert manifest["subject"]["digest"] == signed.built.digest
    (layer,) = manifest["layers"]
    blob = _get(signed.registry, f"/v2/{repo}/blobs/{layer['digest']}")
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    return blob


def test_the_sbom_describes_the_image(signed: Signed) -> None:
    data = signed.sbom.read_bytes()
    info = parse_sbom(data, f"{SPDX}; version=2.3")  # Countersign's own SBOM check
    document = json.loads(data)
    assert info.spec_version == "SPDX-2.3" and info.name == "countersign"
    assert any(creator.startswith("Tool: syft-") for creator in document["creationInfo"]["creators"])
    # Its subject is this image: the manifest digest, and the version.
    (root,) = [p for p in document["packages"] if p.get("primaryPackagePurpose") == "CONTAINER"]
    assert root["name"] == "countersign" and root["versionInfo"] == signed.built.version
    assert root["checksums"] == [
        {"algorithm": "SHA256", "checksumValue": signed.built.digest.removeprefix("sha256:")}
    ]
    # Every Debian and Python package in the image, at its version, and nothing else of those kinds.
    debian, python = _image_packages(signed.built)
    assert len(debian) > 20 and len(python) > 20
    assert ("python3.11-minimal", next(v for n, v in debian if n == "python3.11-minimal")) in debian
    assert ("countersign", signed.built.version) in python
    found = _sbom_packages(document)
    assert found.pop("pkg:deb") == debian
    assert found.pop("pkg:pypi") == python
    assert set(found) == {"pkg:oci"}, f"other kinds of packages in the SBOM: {sorted(found)}"
    # And the build's own notes agree with the image.
    assert {tuple(line.split()) for line in signed.built.debian} == debian
    assert {(_norm(line.split()[0]), line.split()[1]) for line in signed.built.python} == python


def test_the_sbom_is_attached_and_attested(signed: Signed) -> None:
    referrers = _referrers(signed, REPO)
    types = sorted(str(r.get("artifactType")) for r in referrers)
    # oras's SBOM, cosign's attestation and signature (Sigstore bundles), notation's signature.
    assert types == [
        "application/spdx+json",
        "application/vnd.cncf.notary.signature",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    ], referrers
    (plain,) = [r for r in referrers if r.get("artifactType") == SPDX]
    assert _layer_blob(signed, REPO, plain["digest"]) == signed.sbom.read_bytes()
    predicates = []
    for referrer in referrers:
        if referrer.get("artifactType") == "application/vnd.dev.sigstore.bundle.v0.3+json":
            bundle = json.loads(_layer_blob(signed, REPO, referrer["digest"]))
            statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
            assert statement["subject"][0]["digest"] == {
                "sha256": signed.built.digest.removeprefix("sha256:")
            }
            predicates.append((statement["predicateType"], statement["predicate"]))
    spdx = [predicate for kind, predicate in predicates if kind == "https://spdx.dev/Document"]
    assert spdx == [json.loads(signed.sbom.read_bytes())]


def test_the_signers_own_verifiers_agree(signed: Signed) -> None:
    """``cosign verify``, ``cosign verify-attestation --type spdxjson`` (the release key) and ``notation
    verify`` (the example's own trust policy, imported into notation) accept the signed image and reject
    the impostor's and the unsigned copy."""
    env, key, registry = signed.release.env, signed.release.key.public_path, signed.registry
    images = {
        repo: f"{repo}@{signed.built.digest}" for repo in (REPO, f"{REPO}-impostor", f"{REPO}-unsigned")
    }
    assert {repo: cosign_verify(env, "cosign", key, registry, ref) for repo, ref in images.items()} == {
        REPO: True,
        f"{REPO}-impostor": False,
        f"{REPO}-unsigned": False,
    }
    attested = {
        repo: cosign_verify(env, "cosign", key, registry, ref, attestation_type="spdxjson")
        for repo, ref in images.items()
    }
    assert attested == {REPO: True, f"{REPO}-impostor": False, f"{REPO}-unsigned": False}
    example = yaml.safe_load(EXAMPLE.read_text())
    with NotationEnv(signed.release.directory) as notation:
        write_trust_policy(notation, example["verifiers"]["release-notation"]["options"]["trustPolicy"])
        verdicts = {repo: notation_verify(notation, registry, ref) for repo, ref in images.items()}
    assert verdicts == {REPO: True, f"{REPO}-impostor": False, f"{REPO}-unsigned": False}


# --- Countersign's verdicts ------------------------------------------------------------------------------


def test_countersign_admits_itself(signed: Signed, tmp_path: Path) -> None:
    """The image, run as the chart runs it, asked over mutual TLS about its own image (and the others)."""
    env = container_env()
    image = load_image(signed.built, env)
    trust_dir = f"{TRUST_DIR}/{RELEASE}"

    def config(port: int, health_port: int) -> bytes:
        return yaml.safe_dump(_config(signed, trust_dir, server_config(port, health_port))).encode()

    expected = _expected(signed)
    with chart_provider(image, env, tmp_path, config, mounts={signed.trust: trust_dir}) as provider:
        start = time.monotonic()
        items = provider.verify(*expected)
        seconds = time.monotonic() - start
        status = provider.container.stop()
    assert status == 0, provider.container.log_tail()
    print(f"\nprovider ready after {provider.ready_after:.1f}s; /v1/verify of 4 keys in {seconds:.1f}s")
    answers = {key: _reasons(item) for key, item in items.items()}
    assert answers == expected
    allowed = items[signed.ref(REPO)]["value"]
    assert allowed["reason"] == "verified" and allowed["digest"] == signed.built.digest
    sbom = next(entry for entry in allowed["verifiers"] if entry["name"] == "release-sbom")
    assert sbom["details"]["attestedBy"] == "release-cosign"
    assert sbom["details"]["packageCount"] == len(json.loads(signed.sbom.read_bytes())["packages"])


def test_the_cli_gives_the_same_answers(signed: Signed, tmp_path: Path) -> None:
    """``countersign verify`` from the venv, with the example's relative paths (cosign.pub and truststore/
    next to the configuration)."""
    shutil.copytree(signed.trust, tmp_path, dirs_exist_ok=True)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(_config(signed, None)))
    expected = _expected(signed)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "provider.cli",
            "verify",
            "--config",
            str(tmp_path / "config.yaml"),
            "--output",
            "json",
            *expected,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 1, result.stderr  # one allowed, the others denied, none undecided
    answers = {key: _reasons(item) for key, item in json.loads(result.stdout).items()}
    assert answers == expected
    text = subprocess.run(
        [
            sys.executable,
            "-m",
            "provider.cli",
            "verify",
            "--config",
            str(tmp_path / "config.yaml"),
            signed.ref(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT,
    )
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.startswith(f"ALLOWED    {signed.ref(REPO)}")
