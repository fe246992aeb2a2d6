"""Image references and Gatekeeper keys: parsing, normalization, and the error messages."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from verifiers.reference import (
    DOCKER_HUB,
    MAX_KEY_BYTES,
    ImageReference,
    ReferenceError,
    parse_key,
    parse_reference,
    validate_digest,
)

HEX = "0123456789abcdef"
SHA256 = "sha256:" + HEX * 4
SHA256_B = "sha256:" + "deadbeef" * 8
SHA512 = "sha512:" + HEX * 8

# input, registry, repository, tag, digest, str()
VALID: list[tuple[str, str, str, str | None, str | None, str]] = [
    # Docker Hub defaults
    ("nginx", "docker.io", "library/nginx", "latest", None, "docker.io/library/nginx:latest"),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", None, "docker.io/library/nginx:1.25"),
    ("library/nginx", "docker.io", "library/nginx", "latest", None, "docker.io/library/nginx:latest"),
    ("docker.io/nginx", "docker.io", "library/nginx", "latest", None, "docker.io/library/nginx:latest"),
    ("docker.io/library/nginx:1", "docker.io", "library/nginx", "1", None, "docker.io/library/nginx:1"),
    ("index.docker.io/nginx", "docker.io", "library/nginx", "latest", None, "docker.io/library/nginx:latest"),
    ("index.docker.io/bitnami/redis:7", "docker.io", "bitnami/redis", "7", None, "docker.io/bitnami/redis:7"),
    ("bitnami/redis", "docker.io", "bitnami/redis", "latest", None, "docker.io/bitnami/redis:latest"),
    ("a/b/c/d", "docker.io", "a/b/c/d", "latest", None, "docker.io/a/b/c/d:latest"),
    # other spellings of Hub are registries of their own, as in the runtimes
    (
        "registry-1.docker.io/library/nginx",
        "registry-1.docker.io",
        "library/nginx",
        "latest",
        None,
        "registry-1.docker.io/library/nginx:latest",
    ),
    (
        "registry-1.docker.io/nginx",
        "registry-1.docker.io",
        "nginx",
        "latest",
        None,
        "registry-1.docker.io/nginx:latest",
    ),
    ("Docker.io/nginx", "Docker.io", "nginx", "latest", None, "Docker.io/nginx:latest"),
    # localhost: a domain only when followed by a path
    ("localhost/foo", "localhost", "foo", "latest", None, "localhost/foo:latest"),
    ("localhost:5000/foo", "localhost:5000", "foo", "latest", None, "localhost:5000/foo:latest"),
    ("localhost", "docker.io", "library/localhost", "latest", None, "docker.io/library/localhost:latest"),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None, "docker.io/library/localhost:5000"),
    (
        "example.com:5000",
        "docker.io",
        "library/example.com",
        "5000",
        None,
        "docker.io/library/example.com:5000",
    ),
    # ports and tags after them
    ("host:5000/repo", "host:5000", "repo", "latest", None, "host:5000/repo:latest"),
    ("host:5000/repo:tag", "host:5000", "repo", "tag", None, "host:5000/repo:tag"),
    ("127.0.0.1:5000/x/y:v1", "127.0.0.1:5000", "x/y", "v1", None, "127.0.0.1:5000/x/y:v1"),
    ("host:0/r", "host:0", "r", "latest", None, "host:0/r:latest"),
    # IPv6
    ("[::1]:5000/repo", "[::1]:5000", "repo", "latest", None, "[::1]:5000/repo:latest"),
    ("[::1]/repo:v2", "[::1]", "repo", "v2", None, "[::1]/repo:v2"),
    (
        "[2001:DB8::1]:443/team/app",
        "[2001:DB8::1]:443",
        "team/app",
        "latest",
        None,
        "[2001:DB8::1]:443/team/app:latest",
    ),
    # uppercase allowed in the domain, which makes a first component a domain
    ("Example.COM/app", "Example.COM", "app", "latest", None, "Example.COM/app:latest"),
    ("UPPER/app", "UPPER", "app", "latest", None, "UPPER/app:latest"),
    # separators
    (
        "a_b__c-d---e/f.g/x0",
        "docker.io",
        "a_b__c-d---e/f.g/x0",
        "latest",
        None,
        "docker.io/a_b__c-d---e/f.g/x0:latest",
    ),
    (
        "my-registry.example.com/a.b/c_d",
        "my-registry.example.com",
        "a.b/c_d",
        "latest",
        None,
        "my-registry.example.com/a.b/c_d:latest",
    ),
    # tags
    ("nginx:_x", "docker.io", "library/nginx", "_x", None, "docker.io/library/nginx:_x"),
    ("nginx:V1.0-rc_1", "docker.io", "library/nginx", "V1.0-rc_1", None, "docker.io/library/nginx:V1.0-rc_1"),
    (
        "nginx:" + "t" * 128,
        "docker.io",
        "library/nginx",
        "t" * 128,
        None,
        "docker.io/library/nginx:" + "t" * 128,
    ),
    # digests, alone and with a tag (both kept)
    (f"nginx@{SHA256}", "docker.io", "library/nginx", None, SHA256, f"docker.io/library/nginx@{SHA256}"),
    (
        f"ghcr.io/org/sub/app@{SHA256_B}",
        "ghcr.io",
        "org/sub/app",
        None,
        SHA256_B,
        f"ghcr.io/org/sub/app@{SHA256_B}",
    ),
    (f"gcr.io/proj/app:v1@{SHA256}", "gcr.io", "proj/app", "v1", SHA256, f"gcr.io/proj/app:v1@{SHA256}"),
    (f"quay.io/a/b@{SHA512}", "quay.io", "a/b", None, SHA512, f"quay.io/a/b@{SHA512}"),
    (f"host:5000/repo:tag@{SHA512}", "host:5000", "repo", "tag", SHA512, f"host:5000/repo:tag@{SHA512}"),
    # a 64-hex name is fine once it is not the whole reference
    (HEX * 4 + ":v1", "docker.io", "library/" + HEX * 4, "v1", None, f"docker.io/library/{HEX * 4}:v1"),
    # the longest name: 255 characters
    ("r.io/" + "a" * 250, "r.io", "a" * 250, "latest", None, "r.io/" + "a" * 250 + ":latest"),
    (
        "a" * 237,
        "docker.io",
        "library/" + "a" * 237,
        "latest",
        None,
        "docker.io/library/" + "a" * 237 + ":latest",
    ),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest", "normalized"), VALID)
def test_valid(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None, normalized: str
) -> None:
    ref = parse_reference(text)
    assert ref == ImageReference(registry=registry, repository=repository, tag=tag, digest=digest)
    assert str(ref) == normalized
    assert ref.name == f"{registry}/{repository}"
    assert parse_reference(normalized) == ref
    assert ref.reference == (digest if digest is not None else tag)


# input, a fragment the message must contain (the offending part)
INVALID: list[tuple[str, str]] = [
    ("", "empty"),
    (" nginx", "white space"),
    ("nginx ", "white space"),
    ("nginx\n", "white space"),
    ("ng inx", "white space"),
    ("nginx:\tv1", "white space"),
    ("nginx\u00a0", "white space"),
    # repository path
    ("Nginx", "'Nginx'"),
    ("docker.io/Library/nginx", "'Library'"),
    ("foo/Bar:v1", "'Bar'"),
    ("a//b", "path component ''"),
    ("/nginx", "path component ''"),
    ("nginx/", "path component ''"),
    ("-nginx", "'-nginx'"),
    ("nginx-", "'nginx-'"),
    ("nginx_", "'nginx_'"),
    (".nginx", "'.nginx'"),
    ("ngin..x", "'ngin..x'"),
    ("a___b", "'a___b'"),
    ("a._b", "'a._b'"),
    ("nginx:1.0:2.0", "'nginx:1.0'"),
    ("\uff4eginx", repr("\uff4eginx")),
    ("ngïnx", "'ngïnx'"),
    ("app\x00", repr("app\x00")),
    ("app\x1b[0m", repr("app\x1b[0m")),
    ("host.io/a/\x7f", repr("\x7f")),
    (HEX * 4, "image ID"),
    # no name at all
    (":v1", "no repository name"),
    (f"@{SHA256}", "no repository name"),
    ("localhost:5000/", "no repository name"),
    # registry
    ("host:port/repo", "'host:port'"),
    ("host:/repo", "'host:'"),
    ("host:5000:6000/repo", "'host:5000:6000'"),
    ("-host.com/repo", "'-host.com'"),
    ("host-.com/repo", "'host-.com'"),
    ("host.com./repo", "'host.com.'"),
    ("ho_st.com/repo", "'ho_st.com'"),
    ("a_b.c/x", "'a_b.c'"),  # a '.' makes the first component a domain, where '_' is not allowed
    ("exämple.com/app", "'exämple.com'"),
    ("[::1/repo", "'[::1'"),
    ("[]:5000/repo", "'[]:5000'"),
    ("[::g]:5000/repo", "'[::g]:5000'"),
    ("[fe80::1%eth0]:5000/x", "'[fe80::1%eth0]:5000'"),
    ("[::1]:/x", "'[::1]:'"),
    # tag
    ("nginx:", "invalid tag ''"),
    ("nginx:-v1", "'-v1'"),
    ("nginx:.v1", "'.v1'"),
    ("nginx:v+1", "'v+1'"),
    ("nginx:" + "t" * 129, "'" + "t" * 129 + "'"),
    ("nginx:vé", "'vé'"),
    ("nginx:\u0661", repr("\u0661")),
    ("nginx:v1\x7f", repr("v1\x7f")),
    # digest
    ("nginx@", "invalid digest ''"),
    ("nginx@" + SHA256.upper(), SHA256.upper()),
    ("nginx@sha256:" + (HEX * 4).upper(), "sha256:" + (HEX * 4).upper()),
    ("nginx@" + SHA256[:-1], "got 63"),
    ("nginx@" + SHA256 + "0", "got 65"),
    ("nginx@sha512:" + HEX * 4, "got 64"),
    ("nginx@md5:" + HEX * 2, "md5:" + HEX * 2),
    ("nginx@sha384:" + HEX * 6, "sha384:"),
    ("nginx@sha256+b64:" + HEX * 4, "sha256+b64:"),
    ("nginx@" + HEX * 4, HEX * 4),
    ("nginx:v1@sha256:xyz", "'sha256:xyz'"),
    (f"nginx@{SHA256}@{SHA256}", "more than one '@'"),
    (f"nginx@{SHA256}/x", f"{SHA256}/x"),
    # length
    ("r.io/" + "a" * 251, "255"),
    ("a" * 238, "255"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid(text: str, fragment: str) -> None:
    with pytest.raises(ReferenceError) as info:
        parse_reference(text)
    assert fragment in str(info.value)


def test_reference_error_is_a_value_error() -> None:
    assert issubclass(ReferenceError, ValueError)


@pytest.mark.parametrize("digest", [SHA256, SHA256_B, SHA512])
def test_validate_digest_accepts(digest: str) -> None:
    assert validate_digest(digest) == digest


@pytest.mark.parametrize(
    "digest",
    [
        "",
        SHA256 + "\n",
        SHA512 + "\n",
        "\n" + SHA256,
        SHA256.upper(),
        "sha256:" + HEX * 3,
        "sha512:" + HEX * 4,
        "sha1:" + HEX * 2 + "01234567",
        "sha256:" + HEX * 4 + ":",
        " " + SHA256,
    ],
)
def test_validate_digest_rejects(digest: str) -> None:
    with pytest.raises(ReferenceError) as info:
        validate_digest(digest)
    assert repr(digest) in str(info.value)


def test_pinned_and_reference() -> None:
    ref = parse_reference(f"ghcr.io/org/app:v1@{SHA256}")
    assert ref.reference == SHA256
    assert ref.pinned(SHA512) == f"ghcr.io/org/app@{SHA512}"
    assert parse_reference("nginx").reference == "latest"
    assert parse_reference("nginx").pinned(SHA256) == f"docker.io/library/nginx@{SHA256}"


# ---------------------------------------------------------------------------------------------- keys

VALID_KEYS: list[tuple[str, str | None, str]] = [
    ("nginx", None, "docker.io/library/nginx:latest"),
    ("[default]nginx", "default", "docker.io/library/nginx:latest"),
    ("[kube-system]registry.k8s.io/pause:3.9", "kube-system", "registry.k8s.io/pause:3.9"),
    ("[a]b", "a", "docker.io/library/b:latest"),
    ("[" + "n" * 63 + "]nginx", "n" * 63, "docker.io/library/nginx:latest"),
    ("[0-9]nginx", "0-9", "docker.io/library/nginx:latest"),
    # a bracketed IPv6 registry is not a namespace prefix
    ("[::1]:5000/repo", None, "[::1]:5000/repo:latest"),
    ("[::1]/repo", None, "[::1]/repo:latest"),
    ("[ns][::1]:5000/repo:v1", "ns", "[::1]:5000/repo:v1"),
    (f"[prod]quay.io/a/b@{SHA512}", "prod", f"quay.io/a/b@{SHA512}"),
]


@pytest.mark.parametrize(("raw", "namespace", "normalized"), VALID_KEYS)
def test_valid_key(raw: str, namespace: str | None, normalized: str) -> None:
    key = parse_key(raw)
    assert key.raw == raw
    assert key.namespace == namespace
    assert str(key.reference) == normalized


INVALID_KEYS: list[tuple[str, str]] = [
    ("", "empty"),
    ("[]nginx", "namespace ''"),
    ("[Default]nginx", "'Default'"),
    ("[a_b]nginx", "'a_b'"),
    ("[a.b]nginx", "'a.b'"),
    ("[-ns]nginx", "'-ns'"),
    ("[ns-]nginx", "'ns-'"),
    ("[" + "n" * 64 + "]nginx", "'" + "n" * 64 + "'"),
    ("[default\n]nginx", repr("default\n")),
    ("[défaut]nginx", "'défaut'"),
    ("[::1]nginx", "'::1'"),
    ("[default", "without a closing"),
    ("[default]", "empty"),
    ("[default] nginx", "white space"),
    ("[default]Nginx", "'Nginx'"),
    ("[default]/nginx", "'[default]'"),
    ("[]:5000/repo", "'[]:5000'"),
    ("a" * (MAX_KEY_BYTES + 1), f"{MAX_KEY_BYTES} bytes"),
    ("[ns]" + "a" * MAX_KEY_BYTES, f"{MAX_KEY_BYTES} bytes"),
    ("é" * (MAX_KEY_BYTES // 2 + 1), f"{MAX_KEY_BYTES} bytes"),  # 4098 bytes in 2049 characters
]


@pytest.mark.parametrize(("raw", "fragment"), INVALID_KEYS)
def test_invalid_key(raw: str, fragment: str) -> None:
    with pytest.raises(ReferenceError) as info:
        parse_key(raw)
    assert fragment in str(info.value)


def test_key_at_the_byte_limit_is_not_refused_for_its_size() -> None:
    with pytest.raises(ReferenceError) as info:
        parse_key("a" * MAX_KEY_BYTES)
    assert "bytes" not in str(info.value)
    assert "255" in str(info.value)


# ------------------------------------------------------------------------------------ properties

LOWER_ALNUM = string.ascii_lowercase + string.digits
TAG_FIRST = string.ascii_letters + string.digits + "_"

alnum_runs = st.text(alphabet=LOWER_ALNUM, min_size=1, max_size=6)
separators = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    runs = draw(st.lists(alnum_runs, min_size=1, max_size=3))
    out = runs[0]
    for run in runs[1:]:
        out += draw(separators) + run
    return out


domain_labels = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
ports = st.text(alphabet=string.digits, min_size=1, max_size=5)


@st.composite
def domains(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["dns", "localhost", "ipv6", "hub"]))
    if kind == "hub":
        return draw(st.sampled_from(["docker.io", "index.docker.io", "registry-1.docker.io"]))
    if kind == "localhost":
        host = "localhost"
    elif kind == "ipv6":
        host = "[" + draw(st.text(alphabet=HEX + "ABCDEF:", min_size=1, max_size=39)) + "]"
    else:
        host = ".".join(draw(st.lists(domain_labels, min_size=1, max_size=4)))
    if draw(st.booleans()):
        host += ":" + draw(ports)
    # The first component is a domain only if it has '.' or ':', is localhost, or has uppercase.
    assume("." in host or ":" in host or host == "localhost" or host.lower() != host)
    return host


tags = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(TAG_FIRST),
    st.text(alphabet=TAG_FIRST + ".-", max_size=127),
)
digests = st.one_of(
    st.text(alphabet=HEX, min_size=64, max_size=64).map(lambda h: "sha256:" + h),
    st.text(alphabet=HEX, min_size=128, max_size=128).map(lambda h: "sha512:" + h),
)
namespaces = st.from_regex(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


@st.composite
def references(draw: st.DrawFn) -> tuple[str, ImageReference]:
    """A valid reference as text, and the ImageReference it must normalize to."""
    domain = draw(st.none() | domains())
    path = "/".join(draw(st.lists(path_components(), min_size=1, max_size=4)))
    tag = draw(st.none() | tags)
    digest = draw(st.none() | digests)
    if domain is None:  # else the first component would be taken for a domain
        assume("." not in path.split("/")[0] or "/" not in path)
    text = path if domain is None else f"{domain}/{path}"
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"
    registry = DOCKER_HUB if domain in (None, "docker.io", "index.docker.io") else domain
    assert registry is not None
    repository = f"library/{path}" if registry == DOCKER_HUB and "/" not in path else path
    assume(len(registry) + 1 + len(repository) <= 255)
    assume(not (len(text) == 64 and all(c in HEX for c in text)))  # an image ID, refused
    expected = ImageReference(
        registry=registry,
        repository=repository,
        tag=tag if tag is not None or digest is not None else "latest",
        digest=digest,
    )
    return text, expected


HUB_ALIAS_CASE = ("registry-1.docker.io/nginx", ImageReference("registry-1.docker.io", "nginx", "latest"))
IPV6_CASE = ("[::1]:5000/repo", ImageReference("[::1]:5000", "repo", "latest"))


@settings(deadline=None)
@given(references())
@example(HUB_ALIAS_CASE)
@example(IPV6_CASE)
def test_property_parse_recovers_the_parts_and_round_trips(case: tuple[str, ImageReference]) -> None:
    text, expected = case
    ref = parse_reference(text)
    assert ref == expected
    again = parse_reference(str(ref))
    assert again == ref
    assert str(again) == str(ref)


def _never_raises_but_reference_error(text: str) -> None:
    for parse in (parse_reference, parse_key):
        try:
            parsed = parse(text)
        except ReferenceError:
            continue
        ref = parsed.reference if not isinstance(parsed, ImageReference) else parsed
        assert isinstance(ref, ImageReference)
        assert parse_reference(str(ref)) == ref  # whatever is accepted normalizes idempotently


@settings(deadline=None)
@given(st.text())
def test_property_arbitrary_text_only_raises_reference_error(text: str) -> None:
    _never_raises_but_reference_error(text)


@settings(deadline=None)
@given(st.text(alphabet="abcA0.:/@_-[]sh256\n ", max_size=40))
def test_property_reference_like_text_only_raises_reference_error(text: str) -> None:
    _never_raises_but_reference_error(text)


@settings(deadline=None)
@given(namespaces, references())
@example("default", IPV6_CASE)
def test_property_key_namespace_prefix(namespace: str, case: tuple[str, ImageReference]) -> None:
    text, _ = case
    raw = f"[{namespace}]{text}"
    key = parse_key(raw)
    assert key.raw == raw
    assert key.namespace == namespace
    assert key.reference == parse_reference(text)
    bare = parse_key(text)
    assert bare.namespace is None
    assert bare.reference == parse_reference(text)


# ------------------------------------------------------------------ an oracle: the grammar, declaratively

# distribution/reference's grammar as one regular expression (ReferenceRegexp), with ParseNormalizedNamed's
# rules applied afterwards: independent of parse_reference's step-by-step parsing (partition on '@', the
# last ':' after the last '/', then the domain). As documented, only sha256 and sha512 digests are accepted.
_O_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_O_DOMAIN = rf"(?:{_O_DOMAIN_COMPONENT}(?:\.{_O_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_O_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_O_REFERENCE = re.compile(
    rf"(?P<name>(?:{_O_DOMAIN}/)?{_O_COMPONENT}(?:/{_O_COMPONENT})*)"
    r"(?::(?P<tag>\w[\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}))?",
    re.ASCII,
)


def oracle(text: str) -> ImageReference | None:
    """What the grammar and the runtimes' normalization make of `text`; None when it is not a reference."""
    if re.fullmatch(r"[a-f0-9]{64}", text):  # an image ID
        return None
    m = _O_REFERENCE.fullmatch(text)
    if m is None:
        return None
    name = m["name"]
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, path = first, rest
        if not re.fullmatch(_O_DOMAIN, domain):  # a first component taken for a registry must be one
            return None
    else:
        domain, path = DOCKER_HUB, name
    if not re.fullmatch(rf"{_O_COMPONENT}(?:/{_O_COMPONENT})*", path):
        return None
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if len(domain) + 1 + len(path) > 255:
        return None
    tag = m["tag"] if m["tag"] is not None or m["digest"] is not None else "latest"
    return ImageReference(registry=domain, repository=path, tag=tag, digest=m["digest"])


def _parsed_or_none(text: str) -> ImageReference | None:
    try:
        return parse_reference(text)
    except ReferenceError:
        return None


EDIT_CHARACTERS = "aZ09-_.:/@[]\u00e9 \n" + "\ud800"


@st.composite
def mutated_references(draw: st.DrawFn) -> str:
    """A valid reference with a few characters inserted, deleted or replaced (or a Hub/ID edge case)."""
    text, _ = draw(references())
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(EDIT_CHARACTERS))
        if edit == "insert":
            text = text[:where] + char + text[where:]
        elif edit == "delete":
            text = text[:where] + text[where + 1 :]
        else:
            text = text[:where] + char + text[where + 1 :]
    return text


@settings(deadline=None, max_examples=400)
@given(mutated_references())
@example("localhost:5000")  # a Hub repository named localhost, tag 5000
@example("Foo/bar")  # an upper-case first component is a registry
@example("foo/Bar")
@example("[::1]/x:1@" + SHA256)
@example("a" * 64)
@example("a" * 63 + "/x")
@example("d_ocker.io/0")  # taken for a registry (it has a '.'), and not a valid one
def test_property_parse_agrees_with_the_grammar(text: str) -> None:
    assert _parsed_or_none(text) == oracle(text)


@settings(deadline=None, max_examples=150)
@given(st.none() | namespaces, mutated_references())
def test_property_keys_round_trip(namespace: str | None, text: str) -> None:
    raw = text if namespace is None else f"[{namespace}]{text}"
    try:
        key = parse_key(raw)
    except ReferenceError:
        assert namespace is None or oracle(text) is None  # a valid namespace never makes a good ref bad
        return
    assert key.raw == raw
    assert key.reference == oracle(raw if key.namespace is None else raw[raw.index("]") + 1 :])
    again = parse_key(str(key.reference) if key.namespace is None else f"[{key.namespace}]{key.reference}")
    assert (again.namespace, again.reference) == (key.namespace, key.reference)


any_code_points = st.lists(
    st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udfff", "[", "]", "/", ":", "@"]),
    max_size=40,
).map("".join)


@settings(deadline=None, max_examples=150)
@given(any_code_points)
def test_property_any_code_points_only_raise_reference_error(text: str) -> None:
    _never_raises_but_reference_error(text)
    assert _parsed_or_none(text) == oracle(text)
