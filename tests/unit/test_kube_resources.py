"""provider.kube.resources: the resources' spec models and how they combine with the file (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from provider.config import ConfigError, parse_config
from provider.kube.resources import (
    CLUSTER_IMAGE_POLICY,
    IMAGE_POLICY,
    NO_FILES,
    VERIFIER,
    ClusterImagePolicySpec,
    Composition,
    ImagePolicySpec,
    Resource,
    ResourceError,
    ResourceStatus,
    VerifierSpec,
    attribute,
    compose,
)
from verifiers.options import field_errors

BASE = Path("/etc/countersign")
FILE: dict[str, Any] = {
    "verifiers": {"pin": {"type": "digest-pin"}, "sbom": {"type": "sbom"}},
    "policies": [{"name": "default", "scopes": ["*"], "allOf": ["pin"]}],
}


def res(
    kind: str,
    name: str,
    spec: Mapping[str, Any],
    *,
    uid: str | None = None,
    generation: int = 1,
    created: str = "2026-01-01T00:00:00Z",
    namespace: str | None = None,
) -> Resource:
    return Resource(kind, namespace, name, uid or f"uid-{namespace or ''}-{name}", generation, created, spec)


def files_dir(resource: Resource) -> Path | None:
    return (
        Path("/run/countersign/files") / f"{resource.name}-{resource.generation}"
        if resource.spec.get("files")
        else None
    )


def run(
    resources: list[Resource],
    last_good: Mapping[str, Resource] | None = None,
    *,
    file: Mapping[str, Any] = FILE,
    allow_exec: bool = False,
    refused: Mapping[tuple[str, int], tuple[str, str]] | None = None,
    files: Any = files_dir,
) -> Composition:
    return compose(
        file, resources, last_good or {}, files_dir=files, allow_exec=allow_exec, base=BASE, refused=refused
    )


def errors_of(model: type[Any], spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as e:
        model.model_validate(dict(spec))
    return field_errors(e.value, model)


# --- parse_config(require_policies=False) -----------------------------------------------------------------


def test_the_file_alone_still_needs_verifiers_and_policies() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({})
    assert {p for p, _ in e.value.errors} == {"verifiers", "policies"}
    with pytest.raises(ConfigError):
        parse_config({"verifiers": {}, "policies": []})


def test_with_resources_the_file_may_have_no_verifiers_or_policies() -> None:
    assert parse_config({}, require_policies=False).policies == ()
    config = parse_config({"verifiers": {}, "policies": []}, require_policies=False)
    assert config.verifiers == {} and config.policies == ()
    # Every other rule stays.
    with pytest.raises(ConfigError) as e:
        parse_config({"policies": [{"scopes": ["*"], "allOf": ["x"]}]}, require_policies=False)
    assert e.value.errors == [("policies[0].allOf[0]", "unknown verifier 'x' (defined: none)")]
    with pytest.raises(ConfigError) as e:
        parse_config({"verifiers": [], "server": {"port": -1}}, require_policies=False)
    assert {p for p, _ in e.value.errors} == {"verifiers", "server.port"}


# --- spec models ----------------------------------------------------------------------------------------


def test_policy_specs_apply_the_file_policy_rules() -> None:
    ok = ClusterImagePolicySpec.model_validate(
        {"scopes": ["reg.io/app"], "namespaces": ["a"], "anyOf": ["x"]}
    )
    assert ok.namespaces == ["a"]
    assert errors_of(ClusterImagePolicySpec, {"scopes": ["*"], "allOf": ["a"], "anyOf": ["b"]}) == [
        ("", "set exactly one of allOf, anyOf or threshold")
    ]
    assert errors_of(
        ClusterImagePolicySpec, {"scopes": ["*"], "threshold": {"count": 3, "of": ["a", "b"]}}
    ) == [("threshold.count", "must be between 1 and 2, got 3")]
    assert errors_of(ImagePolicySpec, {"scopes": ["reg.io/app:v1"], "allOf": ["a", "a"]}) == [
        ("scopes[0]", "scope 'reg.io/app:v1' names a tag; scopes match repositories (registry/repository)"),
        ("allOf", "lists a verifier twice"),
    ]
    assert errors_of(ImagePolicySpec, {"allOf": ["a"]}) == [
        ("scopes", "expected a list of strings, got nothing")
    ]


def test_an_image_policy_has_no_namespaces_and_no_policy_has_a_name() -> None:
    (problem,) = errors_of(ImagePolicySpec, {"scopes": ["*"], "allOf": ["a"], "namespaces": ["x"]})
    assert problem[0] == "namespaces" and problem[1].startswith("unknown field")
    (problem,) = errors_of(ClusterImagePolicySpec, {"name": "x", "scopes": ["*"], "allOf": ["a"]})
    assert problem[0] == "name"


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/etc/passwd", "expected a relative path"),
        ("../x", "no '.' or '..' component"),
        ("a/../../b", "no '.' or '..' component"),
        ("./a", "no '.' or '..' component"),
        ("a//b", "expected a relative path"),
        ("a/", "expected a relative path"),
        ("a b", "expected a relative path"),
        ("x" * 254, "at most 253"),
    ],
)
def test_verifier_file_paths_stay_inside_the_directory(path: str, fragment: str) -> None:
    spec = {"type": "cosign", "files": {path: {"secret": {"name": "keys"}}}}
    ((where, message),) = errors_of(VerifierSpec, spec)
    assert where == f"files[{path!r}]" and fragment in message


def test_verifier_files_take_exactly_one_source_each() -> None:
    ok = VerifierSpec.model_validate(
        {
            "type": "cosign",
            "files": {
                "keys/a.pub": {"secretKeyRef": {"name": "keys", "key": "a.pub"}},
                "policy.json": {"configMapKeyRef": {"name": "trust", "key": "policy.json"}},
                "store": {"configMap": {"name": "store"}},
                "more": {"secret": {"name": "more-keys"}},
            },
        }
    )
    assert [f.source() for f in ok.files.values()] == [
        ("Secret", "keys", "a.pub"),
        ("ConfigMap", "trust", "policy.json"),
        ("ConfigMap", "store", None),
        ("Secret", "more-keys", None),
    ]
    two = {"secret": {"name": "a"}, "configMap": {"name": "b"}}
    none: dict[str, Any] = {}
    assert errors_of(VerifierSpec, {"type": "cosign", "files": {"a": two, "b": none}}) == [
        ("files['a']", "set exactly one of secretKeyRef, configMapKeyRef, secret, configMap"),
        ("files['b']", "set exactly one of secretKeyRef, configMapKeyRef, secret, configMap"),
    ]
    bad_ref = {"secretKeyRef": {"name": "Not_A_Name", "key": "a/b"}}
    assert [p for p, _ in errors_of(VerifierSpec, {"type": "x", "files": {"a": bad_ref}})] == [
        "files['a'].secretKeyRef.name",
        "files['a'].secretKeyRef.key",
    ]


def test_verifier_files_do_not_overlap_and_are_bounded() -> None:
    spec = {"type": "x", "files": {"d": {"secret": {"name": "a"}}, "d/k.pub": {"secret": {"name": "b"}}}}
    assert errors_of(VerifierSpec, spec) == [
        ("files['d/k.pub']", "is inside 'd', which is a file or directory")
    ]
    many = {f"f{i}": {"secret": {"name": "a"}} for i in range(65)}
    assert errors_of(VerifierSpec, {"type": "x", "files": many}) == [("files", "at most 64 entries, got 65")]
    assert errors_of(VerifierSpec, {"type": ""}) == [
        ("type", "expected a non-empty string, got an empty string")
    ]


# --- Resource and ResourceStatus ------------------------------------------------------------------------


def test_a_resource_from_an_api_object() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "ImagePolicy",
        "metadata": {
            "name": "p",
            "namespace": "team",
            "uid": "u1",
            "generation": 4,
            "creationTimestamp": "2026-02-03T04:05:06Z",
        },
        "spec": {"scopes": ["*"], "allOf": ["pin"]},
    }
    r = Resource.from_object(obj)
    assert r == Resource(IMAGE_POLICY, "team", "p", "u1", 4, "2026-02-03T04:05:06Z", obj["spec"])
    assert r.describe() == "ImagePolicy 'team/p'"
    with pytest.raises(ValueError, match="not a Countersign resource"):
        Resource.from_object({**obj, "kind": "Pod"})
    with pytest.raises(ValueError, match="without a name"):
        Resource.from_object({**obj, "metadata": {"name": "p"}})


def test_status_body_conditions_and_transition_times() -> None:
    valid = ResourceStatus(CLUSTER_IMAGE_POLICY, None, "p", "u", 2, 2, (), "all of [pin]")
    body = valid.body(None, "T1")
    assert body == {
        "observedGeneration": 2,
        "servingGeneration": 2,
        "summary": "all of [pin]",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Serving", "message": "generation 2 serving",
             "observedGeneration": 2, "lastTransitionTime": "T1"},
            {"type": "Invalid", "status": "False", "reason": "Valid", "message": "",
             "observedGeneration": 2, "lastTransitionTime": "T1"},
        ],
    }  # fmt: skip
    errors = (("spec.allOf[0]", "unknown verifier 'x'"), ("spec.scopes[1]", "taken"))
    invalid = ResourceStatus(CLUSTER_IMAGE_POLICY, None, "p", "u", 3, 2, errors, "all of [pin]")
    again = invalid.body(body, "T2")
    ready, flagged = again["conditions"]
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("False", "Invalid", "T2")
    assert ready["message"] == "generation 3 refused; generation 2 serving"
    assert flagged["message"] == "spec.allOf[0]: unknown verifier 'x'\nspec.scopes[1]: taken"
    assert (flagged["reason"], flagged["observedGeneration"]) == ("InvalidSpec", 3)
    # Unchanged condition statuses keep their time; servingGeneration is absent when nothing serves.
    still = invalid.body(again, "T3")
    assert [c["lastTransitionTime"] for c in still["conditions"]] == ["T2", "T2"]
    gone = ResourceStatus(CLUSTER_IMAGE_POLICY, None, "p", "u", 3, None, errors, "").body(again, "T4")
    assert "servingGeneration" not in gone
    assert gone["conditions"][0]["message"] == "generation 3 refused; nothing serving"


# --- compose: by-name override, merging -----------------------------------------------------------------


def test_resources_join_the_file_and_replace_by_name() -> None:
    files = {"k.pub": {"secretKeyRef": {"name": "s", "key": "k"}}}
    verifier = res(
        VERIFIER, "pin", {"type": "cosign", "options": {"keys": [{"path": "k.pub"}]}, "files": files}
    )
    default = res(CLUSTER_IMAGE_POLICY, "default", {"scopes": ["reg.io"], "anyOf": ["pin", "sbom"]})
    extra = res(CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"], "allOf": ["sbom"]})
    c = run([extra, verifier, default])
    pin = c.config.verifiers["pin"]
    assert (pin.type, dict(pin.options)) == ("cosign", {"keys": [{"path": "k.pub"}]})
    assert (pin.base_dir, pin.confined) == (Path("/run/countersign/files/pin-1"), True)
    # A file verifier not replaced keeps the file's base directory, unconfined.
    assert (c.config.verifiers["sbom"].base_dir, c.config.verifiers["sbom"].confined) == (None, False)
    # The replacing policy takes the file policy's place; new ones follow.
    assert [(p.name, p.scopes, p.mode) for p in c.config.policies] == [
        ("default", ("reg.io",), "anyOf"),
        ("app", ("reg.io/app",), "allOf"),
    ]
    assert c.owners == {"verifiers.pin": verifier.uid, "policies[0]": default.uid, "policies[1]": extra.uid}
    assert all(s.valid for s in c.statuses.values())
    assert c.statuses[default.uid].summary == "any of [pin, sbom]"
    assert c.statuses[verifier.uid].summary == "cosign"
    assert c.serving == {r.uid: r for r in (verifier, default, extra)}


def test_a_file_policy_named_after_its_scope_is_replaced_by_that_name() -> None:
    file = {"verifiers": {"pin": {"type": "digest-pin"}}, "policies": [{"scope": "reg.io", "allOf": ["pin"]}]}
    c = run([res(CLUSTER_IMAGE_POLICY, "reg.io", {"scopes": ["other.io"], "allOf": ["pin"]})], file=file)
    assert [(p.name, p.scopes) for p in c.config.policies] == [("reg.io", ("other.io",))]


def test_a_verifier_without_files_is_confined_to_nothing() -> None:
    c = run([res(VERIFIER, "plain", {"type": "cosign", "options": {"keys": [{"pem": "..."}]}})])
    assert (c.config.verifiers["plain"].base_dir, c.config.verifiers["plain"].confined) == (NO_FILES, True)
    assert not NO_FILES.exists()


def test_the_file_may_be_empty_when_resources_define_everything() -> None:
    policy = res(CLUSTER_IMAGE_POLICY, "p", {"scopes": "*", "allOf": "v"})
    c = run([res(VERIFIER, "v", {"type": "digest-pin"}), policy], file={})
    assert [p.name for p in c.config.policies] == ["p"] and set(c.config.verifiers) == {"v"}
    assert run([], file={}).config.policies == ()


# --- compose: scope conflicts ---------------------------------------------------------------------------


def test_a_cluster_policy_cannot_claim_a_scope_the_file_claims() -> None:
    p = res(CLUSTER_IMAGE_POLICY, "mine", {"scopes": ["reg.io/a", "*"], "allOf": ["sbom"]})
    status = run([p]).statuses[p.uid]
    assert status.errors == (("spec.scopes[1]", "scope '*' is already claimed by policy 'default' of the "
                                                 "configuration file"),)  # fmt: skip
    assert status.serving_generation is None and status.summary == ""


def test_scope_conflicts_among_cluster_policies_go_to_the_older_then_the_name() -> None:
    spec = {"scopes": ["reg.io/app"], "allOf": ["pin"]}
    older = res(CLUSTER_IMAGE_POLICY, "zzz", spec, created="2026-01-01T00:00:00Z")
    newer = res(CLUSTER_IMAGE_POLICY, "aaa", spec, created="2026-01-02T00:00:00Z")
    twin = res(
        CLUSTER_IMAGE_POLICY, "zz", {**spec, "scopes": ["reg.io/app/*"]}, created="2026-01-03T00:00:00Z"
    )
    same_time = res(
        CLUSTER_IMAGE_POLICY, "zzzz", {**spec, "scopes": ["reg.io/app/*"]}, created=twin.creation_timestamp
    )
    c = run([newer, same_time, older, twin])
    assert c.statuses[older.uid].valid and c.statuses[twin.uid].valid
    assert c.statuses[newer.uid].errors == (
        ("spec.scopes[0]", "scope 'reg.io/app' is already claimed by ClusterImagePolicy 'zzz'"),
    )
    assert c.statuses[same_time.uid].errors == (
        ("spec.scopes[0]", "scope 'reg.io/app/*' is already claimed by ClusterImagePolicy 'zz'"),
    )
    assert [p.name for p in c.config.policies] == ["default", "zzz", "zz"]


def test_equivalent_scope_spellings_conflict_and_namespaces_separate_them() -> None:
    a = res(CLUSTER_IMAGE_POLICY, "a", {"scopes": ["reg.io"], "allOf": ["pin"]})
    b = res(
        CLUSTER_IMAGE_POLICY, "b", {"scopes": ["reg.io/*"], "allOf": ["pin"]}, created="2026-02-01T00:00:00Z"
    )
    c_ = res(CLUSTER_IMAGE_POLICY, "c", {"scopes": ["reg.io"], "namespaces": ["x"], "allOf": ["pin"]},
             created="2026-03-01T00:00:00Z")  # fmt: skip
    c = run([a, b, c_])
    assert not c.statuses[b.uid].valid and c.statuses[c_.uid].valid
    assert [p.name for p in c.config.policies] == ["default", "a", "c"]


# --- compose: invalid resources and the last good generation --------------------------------------------


def test_an_invalid_edit_keeps_the_last_good_generation_serving() -> None:
    good = res(
        CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"], "allOf": ["pin", "sbom"]}, generation=2
    )
    first = run([good])
    assert first.serving == {good.uid: good}
    edited = res(
        CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"], "allOf": ["pin", "nope"]}, generation=3
    )
    c = run([edited], first.serving)
    status = c.statuses[edited.uid]
    assert status.errors == (("spec.allOf[1]", "unknown verifier 'nope' (defined: pin, sbom)"),)
    assert (status.observed_generation, status.serving_generation) == (3, 2)
    assert status.summary == "all of [pin, sbom]"
    assert [p.verifiers for p in c.config.policies if p.name == "app"] == [("pin", "sbom")]
    assert c.serving == {good.uid: good}
    # A spec the schema refuses falls back the same way.
    broken = res(CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"]}, generation=4)
    c = run([broken], c.serving)
    assert c.statuses[broken.uid].errors == (("spec", "set exactly one of allOf, anyOf or threshold"),)
    assert c.statuses[broken.uid].serving_generation == 2
    # Fixed: the new generation serves.
    fixed = res(CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"], "anyOf": ["pin"]}, generation=5)
    c = run([fixed], c.serving)
    assert c.statuses[fixed.uid].valid and c.serving == {fixed.uid: fixed}


def test_a_last_good_generation_that_no_longer_holds_leaves_the_policy_unavailable() -> None:
    verifier = res(VERIFIER, "cos", {"type": "cosign"})
    good = res(CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"], "allOf": ["cos"]}, generation=1)
    first = run([verifier, good])
    edited = res(CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"], "allOf": ["gone"]}, generation=2)
    c = run([edited], first.serving)  # the Verifier was deleted: generation 1 names it too
    status = c.statuses[edited.uid]
    assert status.serving_generation is None and status.errors[0][0] == "spec.allOf[0]"
    assert "gone" in status.errors[0][1]
    # Never weaken: nothing of it serves, yet it still claims reg.io/app (its images are denied), rather
    # than leave them to `default` (digest pin only).
    assert [p.name for p in c.config.policies] == ["default", "app"] and c.serving == {}
    app = c.config.policies[1]
    assert app.scopes == ("reg.io/app",) and app.verifiers == ()
    assert app.unavailable is not None and app.unavailable.startswith("ClusterImagePolicy 'app'")
    assert "spec.allOf[0]: unknown verifier 'gone'" in app.unavailable
    assert status.denying and status.summary == "unavailable: denies its images"
    conditions = {c["type"]: c for c in status.conditions()}
    assert conditions["Ready"]["status"] == "False"
    assert "nothing serving; images in its scopes are denied" in conditions["Ready"]["message"]
    assert "images in its scopes are denied" in conditions["Invalid"]["message"]
    assert c.config.verifiers.keys() == FILE["verifiers"].keys()  # the stand-in verifier is never built


def test_a_deleted_resource_does_not_serve_from_last_good() -> None:
    good = res(CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"], "allOf": ["pin"]})
    c = run([], {good.uid: good})
    assert [p.name for p in c.config.policies] == ["default"] and c.serving == {} and c.statuses == {}


def test_a_verifier_left_out_takes_the_policies_naming_it_with_it() -> None:
    bad = res(VERIFIER, "x" * 70, {"type": "cosign"})  # a valid object name, too long for a verifier name
    uses = res(CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"], "allOf": ["x" * 70]})
    c = run([bad, uses])
    assert c.statuses[bad.uid].errors[0][0] == "metadata.name"
    assert c.statuses[uses.uid].errors[0][0] == "spec.allOf[0]"
    assert [(p.name, p.verifiers) for p in c.config.policies] == [("default", ("pin",)), ("app", ())]
    assert c.config.policies[1].unavailable is not None and c.statuses[uses.uid].denying


def test_exec_verifiers_from_resources_need_the_files_permission() -> None:
    ex = res(VERIFIER, "ex", {"type": "exec", "options": {"command": ["/bin/true"]}})
    status = run([ex]).statuses[ex.uid]
    assert status.errors[0][0] == "spec.type" and "allowExecVerifiers" in status.errors[0][1]
    assert "ex" not in run([ex]).config.verifiers
    assert run([ex], allow_exec=True).config.verifiers["ex"].type == "exec"
    # The file's own exec verifiers are the operator's: not refused.
    file = {**FILE, "verifiers": {**FILE["verifiers"], "fx": {"type": "exec"}}}
    assert run([], file=file).config.verifiers["fx"].type == "exec"


def test_files_that_cannot_be_had_make_the_verifier_invalid() -> None:
    spec = {"type": "cosign", "files": {"cosign.pub": {"secretKeyRef": {"name": "s", "key": "k"}}}}
    v = res(VERIFIER, "cos", spec)

    def missing(resource: Resource) -> Path | None:
        raise ResourceError("spec.files['cosign.pub']", "Secret 's' has no key 'k'")

    c = run([v], files=missing)
    assert c.statuses[v.uid].errors == (("spec.files['cosign.pub']", "Secret 's' has no key 'k'"),)
    c = run([v], files=lambda r: None)
    assert c.statuses[v.uid].errors == (("spec.files", "the files could not be written"),)
    assert "cos" not in c.config.verifiers


def test_errors_in_the_file_fail_the_composition() -> None:
    with pytest.raises(ConfigError) as e:
        run([], file={**FILE, "server": {"port": "x"}})
    assert e.value.errors[0][0] == "server.port"
    # A file policy naming a verifier only a (refused) resource defines: the file's error.
    file = {"policies": [{"name": "d", "scopes": ["*"], "allOf": ["cos"]}]}
    with pytest.raises(ConfigError) as e:
        run([res(VERIFIER, "cos", {"type": "exec"})], file=file)
    assert e.value.errors == [("policies[0].allOf[0]", "unknown verifier 'cos' (defined: none)")]
    assert run([res(VERIFIER, "cos", {"type": "cosign"})], file=file).config.policies[0].verifiers == ("cos",)


# --- namespaced policies --------------------------------------------------------------------------------


def test_image_policies_go_to_their_namespace() -> None:
    a = res(IMAGE_POLICY, "strict", {"scopes": ["*"], "allOf": ["pin", "sbom"]}, namespace="team-a")
    b = res(IMAGE_POLICY, "strict", {"scopes": ["*"], "anyOf": ["sbom"]}, namespace="team-b")
    c = run([a, b])
    assert set(c.config.namespace_policies) == {"team-a", "team-b"}
    (pa,) = c.config.namespace_policies["team-a"]
    assert (pa.name, pa.scopes, pa.namespaces, pa.mode, pa.verifiers) == (
        "strict",
        ("*",),
        None,
        "allOf",
        ("pin", "sbom"),
    )
    assert c.statuses[b.uid].summary == "any of [sbom]" and c.statuses[b.uid].namespace == "team-b"
    # Cluster policies are untouched.
    assert [p.name for p in c.config.policies] == ["default"]


def test_image_policies_name_existing_verifiers_and_claim_scopes_once_per_namespace() -> None:
    v = res(VERIFIER, "cos", {"type": "cosign"})
    first = res(IMAGE_POLICY, "b", {"scopes": ["reg.io"], "allOf": ["cos"]}, namespace="n")
    second = res(IMAGE_POLICY, "a", {"scopes": ["reg.io/*"], "allOf": ["pin"]}, namespace="n",
                 created="2026-05-01T00:00:00Z")  # fmt: skip
    unknown = res(IMAGE_POLICY, "u", {"scopes": ["other.io"], "allOf": ["nope"]}, namespace="n")
    bad_verifier = res(VERIFIER, "ex", {"type": "exec"})
    uses_bad = res(IMAGE_POLICY, "e", {"scopes": ["x.io"], "allOf": ["ex"]}, namespace="m")
    c = run([v, first, second, unknown, bad_verifier, uses_bad])
    assert c.statuses[first.uid].valid
    assert c.statuses[second.uid].errors == (
        ("spec.scopes[0]", "scope 'reg.io/*' is already claimed by ImagePolicy 'n/b'"),
    )
    assert c.statuses[unknown.uid].errors[0][0] == "spec.allOf[0]"
    assert c.statuses[uses_bad.uid].errors[0] == (
        "spec.allOf[0]",
        "unknown verifier 'ex' (defined: cos, pin, sbom)",
    )
    # `second` conflicts, so it claims nothing; `unknown` and `uses_bad` cannot serve but claim their scopes.
    assert [(p.name, p.unavailable is None) for p in c.config.namespace_policies["n"]] == [
        ("b", True),
        ("u", False),
    ]
    assert [(p.name, p.verifiers) for p in c.config.namespace_policies["m"]] == [("e", ())]
    assert not c.statuses[second.uid].denying and c.statuses[unknown.uid].denying


def test_an_invalid_image_policy_edit_keeps_its_last_good() -> None:
    good = res(IMAGE_POLICY, "p", {"scopes": ["*"], "allOf": ["pin"]}, namespace="n")
    first = run([good])
    edited = res(IMAGE_POLICY, "p", {"scopes": ["*"], "allOf": ["nope"]}, namespace="n", generation=2)
    c = run([edited], first.serving)
    assert c.statuses[edited.uid].serving_generation == 1
    assert [p.verifiers for p in c.config.namespace_policies["n"]] == [("pin",)]


# --- fingerprint ----------------------------------------------------------------------------------------


def test_the_fingerprint_covers_resources_namespace_policies_and_files() -> None:
    v = res(VERIFIER, "cos", {"type": "cosign", "files": {"k": {"secret": {"name": "s"}}}})
    p = res(IMAGE_POLICY, "p", {"scopes": ["*"], "allOf": ["cos"]}, namespace="n")
    base = run([v, p]).config.fingerprint
    assert run([p, v]).config.fingerprint == base  # order of listing does not matter
    assert run([v]).config.fingerprint != base  # namespace policy gone
    p2 = res(IMAGE_POLICY, "p", {"scopes": ["*"], "anyOf": ["cos"]}, namespace="n")
    assert run([v, p2]).config.fingerprint != base
    p3 = res(IMAGE_POLICY, "p", {"scopes": ["*"], "allOf": ["cos"]}, namespace="other")
    assert run([v, p3]).config.fingerprint != base
    moved = run([v, p], files=lambda r: Path("/run/countersign/files/other-digest")).config.fingerprint
    assert moved != base  # the same spec, other file contents (content-addressed directory)
    v2 = res(
        VERIFIER, "cos", {"type": "cosign", "options": {"keys": [{"path": "k"}]}, "files": v.spec["files"]}
    )
    assert run([v2, p]).config.fingerprint != base
    assert run([]).config.fingerprint == run([]).config.fingerprint


# --- attribute: engine build errors ---------------------------------------------------------------------


def test_build_errors_are_attributed_to_their_resources() -> None:
    v = res(
        VERIFIER, "keys.prod", {"type": "cosign", "files": {"k.pub": {"secret": {"name": "s"}}}}, generation=7
    )
    short = res(VERIFIER, "keys", {"type": "cosign"})
    p = res(CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"], "allOf": ["keys.prod"]})
    c = run([v, short, p])
    error = ConfigError.of(
        [
            ("verifiers.keys.prod.options.keys[0].path", "cannot read k.pub"),
            ("verifiers.keys.prod.options.identities", "second problem"),
            ("verifiers.keys.type", "unknown type"),
            ("policies[1].allOf[0]", "policy problem"),
        ]
    )
    assert attribute(error, c) == {
        v.uid: ("spec.options.keys[0].path", "cannot read k.pub"),
        short.uid: ("spec.type", "unknown type"),
        p.uid: ("spec.allOf[0]", "policy problem"),
    }
    with pytest.raises(ConfigError) as e:
        attribute(ConfigError.of([("verifiers.pin.options", "bad"), ("verifiers.keys.type", "x")]), c)
    assert e.value.errors == [("verifiers.pin.options", "bad")]


def test_a_refused_generation_falls_back_to_the_last_good_one() -> None:
    old = res(VERIFIER, "cos", {"type": "cosign", "options": {"keys": [{"path": "a"}]}}, generation=1)
    p = res(CLUSTER_IMAGE_POLICY, "app", {"scopes": ["reg.io/app"], "allOf": ["cos"]})
    first = run([old, p])
    new = res(VERIFIER, "cos", {"type": "cosign", "options": {"keys": [{"path": "b"}]}}, generation=2)
    c = run([new, p], first.serving)
    assert c.serving[new.uid] is new
    refused = c.refusals(attribute(ConfigError("verifiers.cos.options.keys[0].path", "not a key"), c))
    assert refused == {(new.uid, 2): ("spec.options.keys[0].path", "not a key")}
    again = run([new, p], first.serving, refused=refused)
    status = again.statuses[new.uid]
    assert status.errors == (("spec.options.keys[0].path", "not a key"),) and status.serving_generation == 1
    assert dict(again.config.verifiers["cos"].options) == {"keys": [{"path": "a"}]}
    assert again.statuses[p.uid].valid and again.serving[new.uid] is old
    # The last good generation refused as well (its files rotated into garbage): nothing of the verifier
    # serves, and the policy naming it cannot serve (it has no other generation): it still claims its scope.
    refused |= again.refusals({new.uid: ("spec.options.keys[0].path", "not a key either")})
    assert set(refused) == {(new.uid, 2), (new.uid, 1)}
    third = run([new, p], first.serving, refused=refused)
    assert third.statuses[new.uid].errors == (("spec.options.keys[0].path", "not a key"),)
    assert third.statuses[new.uid].serving_generation is None
    assert "cos" not in third.config.verifiers and third.statuses[p.uid].serving_generation is None
    assert third.config.policies[:-1] == run([]).config.policies
    assert third.config.policies[-1].name == "app" and third.config.policies[-1].verifiers == ()
    assert third.statuses[p.uid].denying and "spec.allOf[0]" in str(third.config.policies[-1].unavailable)
