"""Versioned (v1) Gatekeeper keys: the workload's service account and pull secrets, parsed strictly."""

from __future__ import annotations

import json

import pytest

from verifiers.reference import MAX_KEY_BYTES, MAX_PULL_SECRETS, ReferenceError, parse_key


def v1(**fields: object) -> str:
    doc: dict[str, object] = {
        "image": "registry.example/app:1",
        "imagePullSecrets": ["regcred"],
        "namespace": "team-a",
        "serviceAccount": "default",
        "v": 1,
    }
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not DROP}, sort_keys=True, separators=(",", ":"))


DROP = object()


def test_a_v1_key_carries_the_workloads_identity() -> None:
    raw = v1(imagePullSecrets=["regcred", "other.cred", "regcred"], serviceAccount="builder")
    key = parse_key(raw)
    assert key.raw == raw
    assert key.version == 1
    assert key.namespace == "team-a"
    assert str(key.reference) == "registry.example/app:1"
    assert key.service_account == "builder"
    assert key.pull_secrets == ("regcred", "other.cred")  # a name listed twice counts once, order kept


def test_what_opa_json_marshal_writes_parses() -> None:
    raw = '{"image":"nginx","imagePullSecrets":[],"namespace":"default","serviceAccount":"default","v":1}'
    key = parse_key(raw)
    assert (str(key.reference), key.pull_secrets, key.service_account) == (
        "docker.io/library/nginx:latest",
        (),
        "default",
    )
    # field order does not matter, white space neither (JSON)
    spaced = (
        '{ "v": 1, "namespace": "default", "serviceAccount": "default", "imagePullSecrets": [ ], '
        '"image": "nginx" }'
    )
    assert parse_key(spaced).reference == key.reference


def test_older_keys_keep_working_without_workload_identity() -> None:
    for raw, namespace in (("[prod]nginx:1", "prod"), ("nginx:1", None), ("[::1]:5000/app", None)):
        key = parse_key(raw)
        assert (key.namespace, key.version, key.service_account, key.pull_secrets) == (namespace, 0, None, ())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "must be a JSON object"),
        ("{}", "unsupported key version"),
        ("{]", "must be a JSON object"),
        ('{"v":1}x', "must be a JSON object"),
        (v1(v=2), "unsupported key version 2"),
        (v1(v="1"), "unsupported key version '1'"),
        (v1(v=True), "unsupported key version true"),
        (v1(v=1.0), "unsupported key version 1.0"),
        (v1(v=DROP), "unsupported key version null"),
        (v1(extra="x"), "unknown field 'extra'"),
        (v1(image=DROP), "field 'image' is missing"),
        (v1(imagePullSecrets=DROP), "field 'imagePullSecrets' is missing"),
        (v1(namespace=DROP), "field 'namespace' is missing"),
        (v1(serviceAccount=DROP), "field 'serviceAccount' is missing"),
        (v1(image=7), "image must be a string, got a number"),
        (v1(image="Bad!"), "repository name must be lowercase"),
        (v1(image="[ns]nginx"), "invalid image reference"),
        (v1(namespace="Team-A"), "is not a Kubernetes namespace name"),
        (v1(namespace=""), "is not a Kubernetes namespace name"),
        (v1(namespace=["a"]), "namespace an array is not a Kubernetes namespace name"),
        (v1(namespace="a" * 64), "is not a Kubernetes namespace name"),
        (v1(serviceAccount="sa_1"), "serviceAccount 'sa_1' is not a Kubernetes object name"),
        (v1(serviceAccount=None), "serviceAccount must be a string, got null"),
        (v1(serviceAccount="a" * 254), "is not a Kubernetes object name"),
        (v1(imagePullSecrets="regcred"), "imagePullSecrets must be a list, got a string"),
        (v1(imagePullSecrets={"name": "x"}), "imagePullSecrets must be a list, got an object"),
        (v1(imagePullSecrets=[{"name": "x"}]), "imagePullSecrets[0] must be a string, got an object"),
        (
            v1(imagePullSecrets=["ok", "../etc"]),
            "imagePullSecrets[1] '../etc' is not a Kubernetes object name",
        ),
        (v1(imagePullSecrets=["a/b"]), "is not a Kubernetes object name"),
        (v1(imagePullSecrets=[""]), "is not a Kubernetes object name"),
        (v1(imagePullSecrets=["s\ud800"]), "is not a Kubernetes object name"),
        (
            v1(imagePullSecrets=[f"s{i}" for i in range(MAX_PULL_SECRETS + 1)]),
            "more than 16 imagePullSecrets",
        ),
        (v1(imagePullSecrets=[[["x"]]]), "imagePullSecrets[0] must be a string, got an array"),
        (v1(imagePullSecrets=[[[["x"]]]]), "nested more than"),
        (
            '{"v":1,"v":1,"image":"a","imagePullSecrets":[],"namespace":"a","serviceAccount":"a"}',
            "duplicate key",
        ),
        (v1(v=float("nan")), "must be a JSON object"),
        ("{" * 3000, "nested more than"),
        ('{"v":1,"image":"a","imagePullSecrets":' + "[" * 2000 + "]" * 2000 + "}", "nested more than"),
        ("[" + "x" * 10, "'[' without a closing ']'"),
    ],
)
def test_an_invalid_v1_key_is_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(ReferenceError, match=None) as info:
        parse_key(raw)
    assert message in str(info.value), str(info.value)
    assert len(str(info.value)) < 400  # the message never echoes a huge key


def test_a_huge_v1_key_is_refused_before_it_is_parsed() -> None:
    raw = v1(image="registry.example/app:" + "x" * MAX_KEY_BYTES)
    with pytest.raises(ReferenceError, match=f"key longer than {MAX_KEY_BYTES} bytes"):
        parse_key(raw)
    secrets = [("s" * 250) for _ in range(MAX_PULL_SECRETS)]
    with pytest.raises(ReferenceError, match="key longer than"):
        parse_key(v1(imagePullSecrets=secrets))
