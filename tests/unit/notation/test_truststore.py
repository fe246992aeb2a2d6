"""Inline notation trust stores (the verifier's `trustStores` option): strict PEM, bounds, field paths.

How inline stores combine with the `trustStore` directory, and that both give the same decisions, is in
test_verifier.py; `notation verify` agreeing with inline stores is in tests/integration/test_notation.py.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from provider.config import parse_config
from tests.support.notation import SigningChain
from tests.unit.notation.signing import certificate, ec_key
from verifiers.base import OptionsError
from verifiers.notation.trust import MAX_CERTIFICATE_FILE_BYTES, MAX_CERTIFICATES_PER_STORE
from verifiers.notation.truststore import (
    MAX_INLINE_STORES,
    PemError,
    parse_pem_certificates,
    parse_trust_stores_option,
)

BEGIN, END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"


@pytest.fixture(scope="module")
def chain() -> SigningChain:
    """root CA -> intermediate CA -> code-signing leaf."""
    return SigningChain(name="countersign-inline-store", ca_kind="ecdsa-p256", leaf_kind="ecdsa-p256")


@pytest.fixture(scope="module")
def other() -> SigningChain:
    return SigningChain(name="countersign-inline-other", intermediate=False, ca_kind="ecdsa-p256")


def pem(*certificates: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


def _error(value: object) -> OptionsError:
    with pytest.raises(OptionsError) as caught:
        parse_trust_stores_option(value)
    return caught.value


# --- valid stores ------------------------------------------------------------------------------------------


def test_stores_by_type_and_name(chain: SigningChain, other: SigningChain) -> None:
    assert chain.intermediate_cert is not None
    self_signed_leaf = certificate(ec_key("P-256"), "self-signed leaf")
    stores = parse_trust_stores_option(
        [
            {"name": "ca:shop", "pem": pem(chain.root_cert, chain.intermediate_cert)},
            {"name": "signingAuthority:shop", "pem": pem(chain.root_cert)},
            {"name": "tsa:clock", "pem": pem(other.root_cert)},
            {"name": "ca:pinned-leaf", "pem": pem(self_signed_leaf)},
        ]
    )
    assert stores == {
        ("ca", "shop"): (chain.root_cert, chain.intermediate_cert),
        ("signingAuthority", "shop"): (chain.root_cert,),
        ("tsa", "clock"): (other.root_cert,),
        ("ca", "pinned-leaf"): (self_signed_leaf,),
    }
    # Insertion order is the list's order.
    assert list(stores) == [
        ("ca", "shop"),
        ("signingAuthority", "shop"),
        ("tsa", "clock"),
        ("ca", "pinned-leaf"),
    ]


def test_pem_layout_is_tolerated(chain: SigningChain, other: SigningChain) -> None:
    """Blank lines, indentation and CRLF line ends are white space; a duplicate certificate is kept once."""
    text = "\n\n" + pem(chain.root_cert).replace("\n", "\r\n") + "\n   \n"
    indented = "".join(f"    {line}\n" for line in pem(other.root_cert).splitlines())
    stores = parse_trust_stores_option([{"name": "ca:shop", "pem": text + indented + pem(chain.root_cert)}])
    assert stores == {("ca", "shop"): (chain.root_cert, other.root_cert)}


def test_every_certificate_of_a_bundle_in_order(chain: SigningChain) -> None:
    assert chain.intermediate_cert is not None
    bundle = pem(chain.leaf_cert, chain.intermediate_cert, chain.root_cert)
    assert parse_pem_certificates(bundle) == [chain.leaf_cert, chain.intermediate_cert, chain.root_cert]


# --- only certificates -------------------------------------------------------------------------------------


def _body(cert: x509.Certificate) -> list[str]:
    return pem(cert).splitlines()[1:-1]


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda root, key: key, "'PRIVATE KEY' block"),
        (lambda root, key: root + key, "'PRIVATE KEY' block"),
        (lambda root, key: root.replace("CERTIFICATE", "PUBLIC KEY"), "'PUBLIC KEY' block"),
        (lambda root, key: root.replace("CERTIFICATE", "TRUSTED CERTIFICATE"), "'TRUSTED CERTIFICATE' block"),
        (lambda root, key: root.replace("CERTIFICATE", "X509 CRL"), "'X509 CRL' block"),
        (lambda root, key: "subject=CN=root\n" + root, "line 1: text outside"),
        (lambda root, key: root + "# the shop's root\n", "text outside"),
        (lambda root, key: root + root.replace(BEGIN, "----BEGIN CERTIFICATE-----"), "text outside"),
        (lambda root, key: root.replace(END, ""), "without -----END CERTIFICATE-----"),
        (
            lambda root, key: root.replace(END, "-----END PUBLIC KEY-----"),
            "expected -----END CERTIFICATE-----",
        ),
        (lambda root, key: root.replace(END, BEGIN), "expected -----END CERTIFICATE-----"),
        (lambda root, key: root.replace(BEGIN, BEGIN + "\nProc-Type: 4,ENCRYPTED"), "PEM headers"),
        (lambda root, key: root.replace(BEGIN, BEGIN + "\n!!!!"), "not valid base64"),
        (lambda root, key: root.replace(BEGIN, BEGIN + "\nAAAA"), "not an X.509 certificate"),
        (
            lambda root, key: f"{BEGIN}\n{base64.b64encode(b'garbage, not DER').decode()}\n{END}\n",
            "not an X.509 certificate",
        ),
        (lambda root, key: "", "holds no certificate"),
        (lambda root, key: " \n\t\n", "holds no certificate"),
        (lambda root, key: "not pem at all", "text outside"),
    ],
)
def test_anything_but_certificates_is_refused(chain: SigningChain, make: Any, fragment: str) -> None:
    key = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    text = make(pem(chain.root_cert), key)
    with pytest.raises(PemError, match=fragment):
        parse_pem_certificates(text)
    error = _error([{"name": "ca:shop", "pem": text}])
    assert error.path == "trustStores[0].pem"
    assert error.message.startswith("trust store ca:shop: ")


def test_the_line_of_the_problem_is_named(chain: SigningChain, other: SigningChain) -> None:
    text = pem(chain.root_cert) + "\n" + pem(other.root_cert).replace(BEGIN, BEGIN + "\n@@")
    lines = pem(chain.root_cert).count("\n")
    with pytest.raises(PemError, match=f"the certificate at line {lines + 2}: not valid base64"):
        parse_pem_certificates(text)


# --- certificate rules (as the directory loader) -----------------------------------------------------------


def test_store_certificate_rules(chain: SigningChain) -> None:
    assert chain.intermediate_cert is not None
    leaf = _error([{"name": "ca:shop", "pem": pem(chain.root_cert, chain.leaf_cert)}])
    assert leaf.path == "trustStores[0].pem"
    assert "trust store ca:shop: " in leaf.message
    assert "neither a CA nor a self-signed leaf" in leaf.message
    assert "countersign-inline-store" in leaf.message  # the offending certificate's subject

    intermediate = _error(
        [
            {"name": "ca:shop", "pem": pem(chain.root_cert)},
            {"name": "tsa:clock", "pem": pem(chain.intermediate_cert)},
        ]
    )
    assert intermediate.path == "trustStores[1].pem"
    assert (
        "trust store tsa:clock: " in intermediate.message and "root certificates only" in intermediate.message
    )

    self_signed_leaf = certificate(ec_key("P-256"), "self-signed leaf")
    tsa_leaf = _error([{"name": "tsa:clock", "pem": pem(self_signed_leaf)}])
    assert "not a root CA" in tsa_leaf.message


# --- the option's shape ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        ("/etc/notation/truststore", "trustStores", "goes in trustStore"),
        ({"ca:shop": "PEM"}, "trustStores", "expected a list"),
        ([], "trustStores", "must not be empty"),
        (["ca:shop"], "trustStores[0]", "expected a mapping"),
        ([{"name": "ca:shop", "pem": "", "path": "/x.pem"}], "trustStores[0].path", "unknown field"),
        ([{"name": "ca:shop", "certificates": "x"}], "trustStores[0].certificates", "unknown field"),
        ([{"pem": "x"}], "trustStores[0].name", "required"),
        ([{"name": 7, "pem": "x"}], "trustStores[0].name", "required"),
        ([{"name": "shop", "pem": "x"}], "trustStores[0].name", "expected ca:NAME"),
        ([{"name": "x509:shop", "pem": "x"}], "trustStores[0].name", "expected ca:NAME"),
        ([{"name": "ca:", "pem": "x"}], "trustStores[0].name", "expected ca:NAME"),
        ([{"name": "ca:a/b", "pem": "x"}], "trustStores[0].name", "expected ca:NAME"),
        ([{"name": "CA:shop", "pem": "x"}], "trustStores[0].name", "expected ca:NAME"),
        ([{"name": "ca:" + "a" * 256, "pem": "x"}], "trustStores[0].name", "expected ca:NAME"),
        ([{"name": "ca:shop"}], "trustStores[0].pem", "required"),
        ([{"name": "ca:shop", "pem": ["x"]}], "trustStores[0].pem", "required"),
    ],
)
def test_invalid_option_names_the_field(value: object, path: str, fragment: str) -> None:
    error = _error(value)
    assert error.path == path
    assert fragment in error.message


def test_a_store_is_defined_once(chain: SigningChain, other: SigningChain) -> None:
    error = _error(
        [
            {"name": "ca:shop", "pem": pem(chain.root_cert)},
            {"name": "tsa:shop", "pem": pem(other.root_cert)},  # another type: another store
            {"name": "ca:shop", "pem": pem(other.root_cert)},
        ]
    )
    assert error.path == "trustStores[2].name"
    assert error.message == "trust store ca:shop is already defined by trustStores[0]"


# --- bounds ------------------------------------------------------------------------------------------------


def test_bounds(chain: SigningChain) -> None:
    root = pem(chain.root_cert)
    at_most = [{"name": f"ca:s{i}", "pem": root} for i in range(MAX_INLINE_STORES)]
    assert len(parse_trust_stores_option(at_most)) == MAX_INLINE_STORES
    error = _error([*at_most, {"name": "ca:one-more", "pem": root}])
    assert (error.path, error.message) == ("trustStores", f"more than {MAX_INLINE_STORES} trust stores")

    # Certificates are counted as blocks, before duplicates are dropped, so the work is bounded.
    assert parse_pem_certificates(root * MAX_CERTIFICATES_PER_STORE) == [chain.root_cert] * 64
    error = _error([{"name": "ca:shop", "pem": root * (MAX_CERTIFICATES_PER_STORE + 1)}])
    assert error.path == "trustStores[0].pem"
    assert f"more than {MAX_CERTIFICATES_PER_STORE} certificates" in error.message

    padded = root + " " * (MAX_CERTIFICATE_FILE_BYTES - len(root))
    assert parse_trust_stores_option([{"name": "ca:shop", "pem": padded}])
    error = _error([{"name": "ca:shop", "pem": padded + " "}])
    assert error.path == "trustStores[0].pem"
    assert error.message == f"trust store ca:shop: larger than {MAX_CERTIFICATE_FILE_BYTES} bytes"
    multibyte = root + "é" * ((MAX_CERTIFICATE_FILE_BYTES - len(root)) // 2 + 1)  # counted in UTF-8 bytes
    assert "larger than" in _error([{"name": "ca:shop", "pem": multibyte}]).message


# --- the configuration fingerprint -------------------------------------------------------------------------


def test_inline_certificates_are_part_of_the_fingerprint(chain: SigningChain, other: SigningChain) -> None:
    def fingerprint(stores: list[dict[str, str]]) -> str:
        config = parse_config(
            {
                "verifiers": {
                    "notary": {
                        "type": "notation",
                        "options": {"trustPolicy": "/etc/notation/trustpolicy.json", "trustStores": stores},
                    }
                },
                "policies": [{"scopes": ["*"], "allOf": ["notary"]}],
            }
        )
        return config.fingerprint

    shop = fingerprint([{"name": "ca:shop", "pem": pem(chain.root_cert)}])
    assert shop == fingerprint([{"pem": pem(chain.root_cert), "name": "ca:shop"}])  # key order is moot
    assert shop != fingerprint([{"name": "ca:shop", "pem": pem(other.root_cert)}])
    assert shop != fingerprint([{"name": "ca:shop", "pem": pem(chain.root_cert, other.root_cert)}])
    assert shop != fingerprint([{"name": "ca:other", "pem": pem(chain.root_cert)}])


# --- robustness --------------------------------------------------------------------------------------------


@settings(deadline=None, max_examples=300)
@given(
    st.text(alphabet=st.sampled_from(list("-BEGINDCRTFA \n\r:=/+AQIDBAUG0123456789abc")), max_size=200)
    | st.text(max_size=100)
)
def test_pem_parser_never_raises_anything_else(text: str) -> None:
    try:
        parse_pem_certificates(text)
    except PemError:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None, max_examples=300)
@given(
    _json
    | st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["ca:a", "tsa:b", "x:y", "ca:a"]) | st.text(max_size=10)},
            optional={"pem": st.text(max_size=60), "other": _json},
        ),
        max_size=4,
    )
)
def test_option_never_raises_anything_but_options_error(value: Any) -> None:
    try:
        parse_trust_stores_option(value)
    except OptionsError:
        pass
