# Tests of the CountersignVerifiedImages template (gatekeeper-templates/verified-images-template.yaml).
#
# Run by tests/unit/test_rego.py: the template's Rego is extracted into a temporary directory and
# `opa test --capabilities <caps> <extracted> tests/rego` runs these tests against it. The capabilities are
# those of the OPA that Gatekeeper v3.23.1 embeds plus the `external_data` built-in Gatekeeper registers, so
# the template type-checks as in Gatekeeper and `with external_data as stub` can replace the call.
package countersignverifiedimages_test

import data.countersignverifiedimages as template

# --- Fixtures -------------------------------------------------------------------------------------------

digest_a := "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

digest_b := "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

# A verdict of value schema v1 (provider/verdict.py), allowed, with one passing verifier per name.
allowed(reference, digest, passing) := {
	"schemaVersion": 1,
	"allowed": true,
	"reason": "verified",
	"reference": reference,
	"digest": digest,
	"namespace": "prod",
	"policy": "default",
	"verifiers": [{
		"name": name,
		"type": "cosign",
		"passed": true,
		"reason": "cosign_verified",
		"message": "verified",
		"details": {},
	} |
		some name in passing
	],
	"reasons": [],
}

denied(reference, digest, reasons) := {
	"schemaVersion": 1,
	"allowed": false,
	"reason": "policy_not_satisfied",
	"reference": reference,
	"digest": digest,
	"namespace": "prod",
	"policy": "default",
	"verifiers": [{
		"name": "signed",
		"type": "cosign",
		"passed": false,
		"reason": "no_signature_found",
		"message": "no cosign signature",
		"details": {},
	}],
	"reasons": reasons,
}

ok := allowed("docker.io/library/nginx:1.25", digest_a, ["signed"])

# What external_data returns in Rego: Gatekeeper's RegoResponse.
reply(values, errors) := {
	"responses": [[k, v] | some k, v in values],
	"errors": [[k, e] | some k, e in errors],
	"status_code": 200,
	"system_error": "",
}

# The external_data stub: answers data.stub.reply when called with exactly data.stub.request, and anything
# else with a system_error, so a test fails when the template calls with other keys, another provider, or
# in more than one call. (external_data is declared in the capabilities but has no implementation in opa:
# `with` can replace it by a function, not by a value.)
stub(request) := data.stub.reply if request == data.stub.request

stub(request) := {
	"responses": [],
	"errors": [],
	"status_code": 0,
	"system_error": sprintf("stub: unexpected request %v", [request]),
} if {
	request != data.stub.request
}

verify_request(keys) := {"provider": "countersign-verify", "keys": keys}

# The violations for `review` and `parameters` when external_data answers `answer` to `request`.
violations(review, parameters, request, answer) := vs if {
	vs := template.violation with input as {"review": review, "parameters": parameters}
		with external_data as stub
		with data.stub as {"request": request, "reply": answer}
}

messages(vs) := {v.msg | some v in vs}

# Admission reviews (input.review) as Gatekeeper builds them from an AdmissionRequest.
pod_spec(images) := {"containers": [{"name": sprintf("c%d", [i]), "image": image} | some i, image in images]}

pod(namespace, spec) := {
	"kind": {"group": "", "version": "v1", "kind": "Pod"},
	"namespace": namespace,
	"name": "p",
	"operation": "CREATE",
	"object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace}, "spec": spec},
}

workload(group, kind, object_spec) := {
	"kind": {"group": group, "version": "v1", "kind": kind},
	"namespace": "prod",
	"name": "w",
	"operation": "CREATE",
	"object": {
		"apiVersion": sprintf("%s/v1", [group]),
		"kind": kind,
		"metadata": {"name": "w", "namespace": "prod"},
		"spec": object_spec,
	},
}

# A pod spec with one image in each kind of container.
full_spec := {
	"initContainers": [{"name": "setup", "image": "busybox:1.36"}],
	"containers": [{"name": "app", "image": "nginx:1.25"}, {"name": "sidecar", "image": "envoy:1.30"}],
	"ephemeralContainers": [{"name": "debug", "image": "alpine:3.20"}],
}

full_keys := ["[prod]alpine:3.20", "[prod]busybox:1.36", "[prod]envoy:1.30", "[prod]nginx:1.25"]

all_allowed(keys) := reply({k: ok | some k in keys}, {})

# --- Allowed --------------------------------------------------------------------------------------------

test_allowed_pod_has_no_violation if {
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), all_allowed(["[prod]nginx:1.25"]))
	count(vs) == 0
}

test_status_code_zero_from_gatekeeper_cache_is_not_a_failure if {
	answer := object.union(all_allowed(["[prod]nginx:1.25"]), {"status_code": 0})
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), answer)
	count(vs) == 0
}

test_all_images_go_in_one_sorted_batch if {
	# The stub answers only this exact request: one call with every image, sorted, deduplicated.
	spec := object.union(full_spec, {"containers": array.concat(full_spec.containers, [{"name": "again", "image": "nginx:1.25"}])})
	vs := violations(pod("prod", spec), {}, verify_request(full_keys), all_allowed(full_keys))
	count(vs) == 0
}

test_a_different_request_fails_closed if {
	# The stub's fallback answer (a system_error) must deny: the stub itself is checked here.
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]other:1"]), all_allowed(["[prod]other:1"]))
	some msg in messages(vs)
	contains(msg, "stub: unexpected request")
}

test_extra_items_for_keys_not_requested_are_ignored if {
	answer := reply({"[prod]nginx:1.25": ok, "[prod]other:1": denied("other", "", ["no"])}, {"[prod]third:1": "bad"})
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), answer)
	count(vs) == 0
}

# --- Denied ---------------------------------------------------------------------------------------------

test_denied_names_image_digest_and_reasons if {
	reasons := [
		"docker.io/library/nginx@sha256:aaaa does not satisfy policy 'default', which requires all of [signed] to pass (0 passed)",
		"signed: no cosign signature [no_signature_found]",
	]
	answer := reply({"[prod]nginx:1.25": denied("docker.io/library/nginx:1.25", digest_a, reasons)}, {})
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), answer)
	count(vs) == 1
	some v in vs
	v.msg == sprintf("image nginx:1.25 (digest %s) in containers[c0] was denied by countersign-verify: %s; %s", [digest_a, reasons[0], reasons[1]])
	v.details == {"image": "nginx:1.25", "key": "[prod]nginx:1.25", "containers": "containers[c0]", "provider": "countersign-verify"}
}

test_denied_without_digest_leaves_it_out if {
	value := object.union(denied("docker.io/library/nginx:9", "", ["manifest 9 not found [manifest_not_found]"]), {"reason": "manifest_not_found"})
	vs := violations(pod("prod", pod_spec(["nginx:9"])), {}, verify_request(["[prod]nginx:9"]), reply({"[prod]nginx:9": value}, {}))
	messages(vs) == {"image nginx:9 in containers[c0] was denied by countersign-verify: manifest 9 not found [manifest_not_found]"}
}

test_denied_without_reasons_gives_the_reason_code if {
	value := object.union(denied("docker.io/library/nginx:1.25", digest_a, []), {"reason": "no_policy"})
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
	messages(vs) == {sprintf("image nginx:1.25 (digest %s) in containers[c0] was denied by countersign-verify: [no_policy]", [digest_a])}
}

test_denied_without_reasons_or_code_says_so if {
	value := object.union(denied("docker.io/library/nginx:1.25", digest_a, [1]), {"reason": ""})
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
	messages(vs) == {sprintf("image nginx:1.25 (digest %s) in containers[c0] was denied by countersign-verify: no reason given", [digest_a])}
}

test_allowed_missing_denies if {
	value := object.remove(ok, ["allowed"])
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
	count(vs) == 1
	some msg in messages(vs)
	startswith(msg, "image nginx:1.25 (digest sha256:aaaa")
	contains(msg, "was denied by countersign-verify")
}

test_allowed_not_a_boolean_denies if {
	every allowed_value in ["true", 1, null, {}, []] {
		value := object.union(ok, {"allowed": allowed_value})
		vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
		count(vs) == 1
		some msg in messages(vs)
		contains(msg, "was denied by countersign-verify")
	}
}

test_one_bad_among_several_names_only_the_bad_image if {
	answer := reply(
		{
			"[prod]alpine:3.20": ok,
			"[prod]busybox:1.36": ok,
			"[prod]envoy:1.30": denied("docker.io/library/envoy:1.30", digest_b, ["envoy is not signed [no_signature_found]"]),
			"[prod]nginx:1.25": ok,
		},
		{},
	)
	vs := violations(pod("prod", full_spec), {}, verify_request(full_keys), answer)
	messages(vs) == {sprintf("image envoy:1.30 (digest %s) in containers[sidecar] was denied by countersign-verify: envoy is not signed [no_signature_found]", [digest_b])}
}

test_an_image_used_twice_is_one_violation_naming_both_containers if {
	spec := {
		"initContainers": [{"name": "warm", "image": "nginx:1.25"}],
		"containers": [{"name": "app", "image": "nginx:1.25"}],
	}
	answer := reply({"[prod]nginx:1.25": denied("docker.io/library/nginx:1.25", digest_a, ["unsigned [no_signature_found]"])}, {})
	vs := violations(pod("prod", spec), {}, verify_request(["[prod]nginx:1.25"]), answer)
	count(vs) == 1
	some msg in messages(vs)
	contains(msg, "in containers[app], initContainers[warm] was denied")
}

test_duplicate_items_any_denial_denies if {
	# Gatekeeper can return a key twice (cache plus provider); the template must not fail on it.
	answer := {
		"responses": [
			["[prod]nginx:1.25", ok],
			["[prod]nginx:1.25", denied("docker.io/library/nginx:1.25", digest_a, ["revoked [certificate_revoked]"])],
		],
		"errors": [],
		"status_code": 200,
		"system_error": "",
	}
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), answer)
	count(vs) == 1
	some msg in messages(vs)
	contains(msg, "revoked [certificate_revoked]")
}

# --- Failure shapes -------------------------------------------------------------------------------------

test_invalid_key_error_item_denies if {
	answer := reply({}, {"[prod]Bad!": "invalid image reference 'Bad!': repository name must be lowercase"})
	vs := violations(pod("prod", pod_spec(["Bad!"])), {}, verify_request(["[prod]Bad!"]), answer)
	messages(vs) == {"image Bad! in containers[c0] was rejected by countersign-verify: invalid image reference 'Bad!': repository name must be lowercase"}
}

test_error_item_wins_over_an_allowed_value if {
	answer := reply({"[prod]nginx:1.25": ok}, {"[prod]nginx:1.25": "invalid"})
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), answer)
	messages(vs) == {"image nginx:1.25 in containers[c0] was rejected by countersign-verify: invalid"}
}

test_system_error_denies_even_when_every_key_is_allowed if {
	answer := object.union(all_allowed(["[prod]nginx:1.25"]), {"system_error": "countersign: something went wrong"})
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), answer)
	messages(vs) == {"image verification through the countersign-verify provider failed, so the request is denied: countersign: something went wrong"}
}

test_undecided_key_names_only_that_image if {
	# Countersign leaves an undecided key out of items and names it in systemError.
	system_error := "countersign: 1 key(s) undecided, admission must fail closed: [prod]envoy:1.30: registry.example: request timed out [registry_timeout]"
	answer := object.union(
		reply({k: ok | some k in full_keys; k != "[prod]envoy:1.30"}, {}),
		{"system_error": system_error},
	)
	vs := violations(pod("prod", full_spec), {}, verify_request(full_keys), answer)
	messages(vs) == {
		sprintf("image verification through the countersign-verify provider failed, so the request is denied: %s", [system_error]),
		"image envoy:1.30 in containers[sidecar] has no verdict from countersign-verify (key [prod]envoy:1.30 was not decided), so it is denied",
	}
}

test_gatekeeper_failure_with_null_lists_denies_every_image if {
	# What Gatekeeper returns when it cannot call the provider (HandleError): null lists, only system_error.
	answer := {
		"responses": null,
		"errors": null,
		"status_code": 500,
		"system_error": "failed to send external data request: context deadline exceeded",
	}
	vs := violations(pod("prod", pod_spec(["nginx:1.25", "envoy:1.30"])), {}, verify_request(["[prod]envoy:1.30", "[prod]nginx:1.25"]), answer)
	messages(vs) == {
		"image verification through the countersign-verify provider failed, so the request is denied: failed to send external data request: context deadline exceeded",
		"image envoy:1.30 in containers[c1] has no verdict from countersign-verify (key [prod]envoy:1.30 was not decided), so it is denied",
		"image nginx:1.25 in containers[c0] has no verdict from countersign-verify (key [prod]nginx:1.25 was not decided), so it is denied",
	}
}

test_null_lists_without_system_error_deny if {
	answer := {"responses": null, "errors": null, "status_code": 0, "system_error": ""}
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), answer)
	messages(vs) == {
		"image verification through the countersign-verify provider failed, so the request is denied: the response has no result lists (responses: null, errors: null)",
		"image nginx:1.25 in containers[c0] has no verdict from countersign-verify (key [prod]nginx:1.25 was not decided), so it is denied",
	}
}

test_null_errors_list_alone_denies if {
	answer := object.union(all_allowed(["[prod]nginx:1.25"]), {"errors": null})
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), answer)
	count(vs) == 1
	some msg in messages(vs)
	contains(msg, "the response has no result lists")
}

test_missing_system_error_field_denies if {
	answer := object.remove(all_allowed(["[prod]nginx:1.25"]), ["system_error"])
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), answer)
	messages(vs) == {"image verification through the countersign-verify provider failed, so the request is denied: no system_error field in the external_data response"}
}

test_requested_key_without_any_item_denies if {
	answer := reply({"[prod]nginx:1.25": ok}, {})
	vs := violations(pod("prod", pod_spec(["nginx:1.25", "envoy:1.30"])), {}, verify_request(["[prod]envoy:1.30", "[prod]nginx:1.25"]), answer)
	messages(vs) == {"image envoy:1.30 in containers[c1] has no verdict from countersign-verify (key [prod]envoy:1.30 was not decided), so it is denied"}
}

test_malformed_items_count_as_no_verdict if {
	answer := {"responses": ["[prod]nginx:1.25", [ok], {"[prod]nginx:1.25": ok}], "errors": [], "status_code": 200, "system_error": ""}
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), answer)
	count(vs) == 1
	some msg in messages(vs)
	contains(msg, "has no verdict")
}

test_every_unknown_schema_version_denies if {
	every version in [2, "1", 0, null] {
		value := object.union(ok, {"schemaVersion": version})
		vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
		messages(vs) == {sprintf("image nginx:1.25 in containers[c0]: countersign-verify returned a verdict with schemaVersion %v, but this template only understands schemaVersion 1, so it is denied", [version])}
	}
}

test_missing_schema_version_denies if {
	value := object.remove(ok, ["schemaVersion"])
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
	messages(vs) == {"image nginx:1.25 in containers[c0]: countersign-verify returned a verdict with schemaVersion (none), but this template only understands schemaVersion 1, so it is denied"}
}

test_value_that_is_not_an_object_denies if {
	every value in [true, "allowed", null, [ok], 1] {
		vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
		count(vs) == 1
		some msg in messages(vs)
		contains(msg, "instead of a verdict object, so it is denied")
	}
}

# --- Parameters -----------------------------------------------------------------------------------------

test_namespaced_keys_by_default if {
	template.keys == ["[prod]nginx:1.25"] with input as {"review": pod("prod", pod_spec(["nginx:1.25"]))}
}

test_namespaced_keys_off_sends_bare_images if {
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {"namespacedKeys": false}, verify_request(["nginx:1.25"]), all_allowed(["nginx:1.25"]))
	count(vs) == 0
}

test_no_namespace_sends_bare_images if {
	review := object.union(pod("", pod_spec(["nginx:1.25"])), {"namespace": ""})
	vs := violations(review, {"namespacedKeys": true}, verify_request(["nginx:1.25"]), all_allowed(["nginx:1.25"]))
	count(vs) == 0
}

test_absent_namespace_sends_bare_images if {
	review := object.remove(pod("", pod_spec(["nginx:1.25"])), ["namespace"])
	template.keys == ["nginx:1.25"] with input as {"review": review}
}

# --- workloadCredentials: versioned keys (v1) with the service account and image pull secrets ----------

v1_key(image, sa, secrets) := sprintf(
	`{"image":"%s","imagePullSecrets":[%s],"namespace":"prod","serviceAccount":"%s","v":1}`,
	[image, concat(",", [sprintf(`"%s"`, [s]) | some s in secrets]), sa],
)

test_workload_credentials_off_by_default if {
	template.keys == ["[prod]nginx:1.25"] with input as {"review": pod("prod", object.union(pod_spec(["nginx:1.25"]), {"imagePullSecrets": [{"name": "regcred"}]}))}
}

test_workload_credentials_send_v1_keys_with_the_pods_secrets if {
	spec := object.union(pod_spec(["nginx:1.25"]), {"serviceAccountName": "builder", "imagePullSecrets": [{"name": "regcred"}, {"name": "other"}]})
	k := v1_key("nginx:1.25", "builder", ["regcred", "other"])
	template.keys == [k] with input as {"review": pod("prod", spec), "parameters": {"workloadCredentials": true}}
	vs := violations(pod("prod", spec), {"workloadCredentials": true}, verify_request([k]), all_allowed([k]))
	count(vs) == 0
}

test_workload_credentials_default_service_account_and_no_secrets if {
	k := v1_key("nginx:1.25", "default", [])
	template.keys == [k] with input as {"review": pod("prod", pod_spec(["nginx:1.25"])), "parameters": {"workloadCredentials": true}}
}

test_workload_credentials_skip_secrets_without_a_name if {
	spec := object.union(pod_spec(["nginx:1.25"]), {"serviceAccountName": "", "imagePullSecrets": [{"name": ""}, {}, "x", {"name": 3}, {"name": "ok"}]})
	template.keys == [v1_key("nginx:1.25", "default", ["ok"])] with input as {"review": pod("prod", spec), "parameters": {"workloadCredentials": true}}
}

test_workload_credentials_read_the_pod_template_of_a_workload if {
	spec := {"template": {"spec": object.union(full_spec, {"serviceAccountName": "deployer", "imagePullSecrets": [{"name": "regcred"}]})}}
	keys := [v1_key(i, "deployer", ["regcred"]) | some i in ["alpine:3.20", "busybox:1.36", "envoy:1.30", "nginx:1.25"]]
	template.keys == keys with input as {"review": workload("apps", "Deployment", spec), "parameters": {"workloadCredentials": true}}
}

test_workload_credentials_denied_v1_key_names_the_image if {
	k := v1_key("nginx:1.25", "default", [])
	value := denied("docker.io/library/nginx:1.25", digest_a, ["unsigned [no_signature_found]"])
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {"workloadCredentials": true}, verify_request([k]), reply({k: value}, {}))
	messages(vs) == {sprintf("image nginx:1.25 (digest %s) in containers[c0] was denied by countersign-verify: unsigned [no_signature_found]", [digest_a])}
}

test_workload_credentials_error_item_for_a_v1_key_denies if {
	k := v1_key("nginx:1.25", "default", [])
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {"workloadCredentials": true}, verify_request([k]), reply({}, {k: "invalid key"}))
	count(vs) == 1
}

test_workload_credentials_without_a_namespace_send_bare_images if {
	review := object.remove(pod("", pod_spec(["nginx:1.25"])), ["namespace"])
	template.keys == ["nginx:1.25"] with input as {"review": review, "parameters": {"workloadCredentials": true}}
}

test_workload_credentials_not_a_boolean_is_off if {
	template.keys == ["[prod]nginx:1.25"] with input as {"review": pod("prod", pod_spec(["nginx:1.25"])), "parameters": {"workloadCredentials": "yes"}}
}

test_null_parameters_use_defaults if {
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), null, verify_request(["[prod]nginx:1.25"]), all_allowed(["[prod]nginx:1.25"]))
	count(vs) == 0
}

test_provider_parameter_names_the_provider if {
	request := {"provider": "other-verify", "keys": ["[prod]nginx:1.25"]}
	value := denied("docker.io/library/nginx:1.25", digest_a, ["unsigned [no_signature_found]"])
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {"provider": "other-verify"}, request, reply({"[prod]nginx:1.25": value}, {}))
	messages(vs) == {sprintf("image nginx:1.25 (digest %s) in containers[c0] was denied by other-verify: unsigned [no_signature_found]", [digest_a])}
}

test_exempt_image_is_not_sent if {
	params := {"exemptImages": ["registry.k8s.io/pause:*", "ghcr.io/org/tools/**"]}
	images := ["registry.k8s.io/pause:3.9", "ghcr.io/org/tools/a/b:1", "nginx:1.25"]
	vs := violations(pod("prod", pod_spec(images)), params, verify_request(["[prod]nginx:1.25"]), all_allowed(["[prod]nginx:1.25"]))
	count(vs) == 0
}

test_exempt_star_does_not_cross_a_slash if {
	params := {"exemptImages": ["registry.k8s.io/*"]}
	template.keys == ["[prod]registry.k8s.io/sub/pause:3.9"] with input as {"review": pod("prod", pod_spec(["registry.k8s.io/pause:3.9", "registry.k8s.io/sub/pause:3.9"])), "parameters": params}
}

test_exempt_pattern_matches_the_image_as_written if {
	# No normalization: "nginx" is not "docker.io/library/nginx".
	params := {"exemptImages": ["docker.io/library/nginx:*"]}
	template.keys == ["[prod]nginx:1.25"] with input as {"review": pod("prod", pod_spec(["nginx:1.25"])), "parameters": params}
}

test_invalid_exempt_pattern_exempts_nothing if {
	params := {"exemptImages": ["[", 7]}
	template.keys == ["[prod]nginx:1.25"] with input as {"review": pod("prod", pod_spec(["nginx:1.25"])), "parameters": params}
}

test_only_exempt_images_makes_no_call if {
	# Were external_data called, the stub would answer with a system_error (no request is expected).
	vs := violations(pod("prod", pod_spec(["registry.k8s.io/pause:3.9"])), {"exemptImages": ["registry.k8s.io/*"]}, null, reply({}, {}))
	count(vs) == 0
}

test_required_verifier_passed if {
	value := allowed("docker.io/library/nginx:1.25", digest_a, ["signed", "sbom"])
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {"requiredVerifiers": ["sbom", "signed"]}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
	count(vs) == 0
}

test_required_verifier_absent_denies if {
	value := allowed("docker.io/library/nginx:1.25", digest_a, ["signed"])
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {"requiredVerifiers": ["sbom", "signed"]}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
	messages(vs) == {sprintf("image nginx:1.25 (digest %s) in containers[c0] was allowed by countersign-verify, but required verifier sbom did not run", [digest_a])}
}

test_required_verifier_failed_denies if {
	# An anyOf policy can allow while a verifier failed; requiredVerifiers makes that verifier mandatory.
	failing := {"name": "sbom", "type": "sbom", "passed": false, "reason": "sbom_not_found", "message": "no SBOM is attached", "details": {}}
	base := allowed("docker.io/library/nginx:1.25", digest_a, ["signed"])
	value := object.union(base, {"verifiers": array.concat(base.verifiers, [failing])})
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {"requiredVerifiers": ["sbom"]}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
	messages(vs) == {sprintf("image nginx:1.25 (digest %s) in containers[c0] was allowed by countersign-verify, but required verifier sbom did not pass: no SBOM is attached [sbom_not_found]", [digest_a])}
}

test_required_verifier_with_passed_not_true_denies if {
	odd := {"name": "sbom", "type": "sbom", "passed": "true", "reason": "sbom_verified", "message": "ok", "details": {}}
	base := allowed("docker.io/library/nginx:1.25", digest_a, ["signed"])
	value := object.union(base, {"verifiers": [odd]})
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {"requiredVerifiers": ["sbom"]}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
	count(vs) == 1
}

test_required_verifier_on_a_denied_image_gives_one_violation if {
	value := denied("docker.io/library/nginx:1.25", digest_a, ["unsigned [no_signature_found]"])
	vs := violations(pod("prod", pod_spec(["nginx:1.25"])), {"requiredVerifiers": ["sbom"]}, verify_request(["[prod]nginx:1.25"]), reply({"[prod]nginx:1.25": value}, {}))
	messages(vs) == {sprintf("image nginx:1.25 (digest %s) in containers[c0] was denied by countersign-verify: unsigned [no_signature_found]", [digest_a])}
}

# --- Kinds ----------------------------------------------------------------------------------------------

template_spec := {"template": {"metadata": {}, "spec": full_spec}}

kind_reviews := {
	"Pod": pod("prod", full_spec),
	"Deployment": workload("apps", "Deployment", template_spec),
	"StatefulSet": workload("apps", "StatefulSet", template_spec),
	"DaemonSet": workload("apps", "DaemonSet", template_spec),
	"ReplicaSet": workload("apps", "ReplicaSet", template_spec),
	"Job": workload("batch", "Job", template_spec),
	"CronJob": workload("batch", "CronJob", {"schedule": "* * * * *", "jobTemplate": {"spec": template_spec}}),
}

test_every_kind_sends_containers_init_and_ephemeral_containers if {
	count(kind_reviews) == 7
	every _, review in kind_reviews {
		template.keys == full_keys with input as {"review": review}
	}
}

test_every_kind_is_allowed_when_every_image_is if {
	every _, review in kind_reviews {
		count(violations(review, {}, verify_request(full_keys), all_allowed(full_keys))) == 0
	}
}

test_every_kind_denies_an_unsigned_init_container if {
	answer := reply(
		object.union({k: ok | some k in full_keys}, {"[prod]busybox:1.36": denied("docker.io/library/busybox:1.36", digest_b, ["unsigned [no_signature_found]"])}),
		{},
	)
	every _, review in kind_reviews {
		messages(violations(review, {}, verify_request(full_keys), answer)) == {sprintf("image busybox:1.36 (digest %s) in initContainers[setup] was denied by countersign-verify: unsigned [no_signature_found]", [digest_b])}
	}
}

test_every_kind_denies_an_unsigned_ephemeral_container if {
	answer := reply(
		object.union({k: ok | some k in full_keys}, {"[prod]alpine:3.20": denied("docker.io/library/alpine:3.20", digest_b, ["unsigned [no_signature_found]"])}),
		{},
	)
	every _, review in kind_reviews {
		messages(violations(review, {}, verify_request(full_keys), answer)) == {sprintf("image alpine:3.20 (digest %s) in ephemeralContainers[debug] was denied by countersign-verify: unsigned [no_signature_found]", [digest_b])}
	}
}

test_a_kind_in_another_group_is_not_read if {
	review := workload("example.com", "Deployment", template_spec)
	count(template.keys) == 0 with input as {"review": review}
}

test_a_kind_without_pod_spec_is_not_read if {
	review := workload("", "ConfigMap", {"data": {"image": "nginx:1.25"}})
	count(template.keys) == 0 with input as {"review": review}
}

test_a_workload_container_without_image_is_skipped if {
	spec := {"template": {"spec": {"containers": [{"name": "filled-in-later"}, {"name": "app", "image": "nginx:1.25"}]}}}
	template.keys == ["[prod]nginx:1.25"] with input as {"review": workload("apps", "Deployment", spec)}
}

test_an_image_that_is_not_a_string_denies if {
	spec := {"containers": [{"name": "app", "image": 42}]}
	vs := violations(pod("prod", spec), {}, verify_request([]), reply({}, {}))
	messages(vs) == {"containers[app] has an image that is not a string (42), so it cannot be verified"}
}

test_a_container_without_name_is_named_by_index if {
	spec := {"containers": [{"name": "app", "image": "envoy:1.30"}, {"image": "nginx:1.25"}]}
	answer := reply({"[prod]envoy:1.30": ok, "[prod]nginx:1.25": denied("docker.io/library/nginx:1.25", "", ["unsigned [x]"])}, {})
	vs := violations(pod("prod", spec), {}, verify_request(["[prod]envoy:1.30", "[prod]nginx:1.25"]), answer)
	messages(vs) == {"image nginx:1.25 in containers[#1] was denied by countersign-verify: unsigned [x]"}
}

# --- Operations -----------------------------------------------------------------------------------------

deleting(review) := object.union(review, {"operation": "UPDATE", "object": {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}})

test_update_of_an_object_being_deleted_is_not_checked if {
	review := deleting(kind_reviews.Deployment)
	count(template.keys) == 0 with input as {"review": review}
}

test_deletion_timestamp_on_create_is_still_checked if {
	review := object.union(deleting(kind_reviews.Deployment), {"operation": "CREATE"})
	template.keys == full_keys with input as {"review": review}
}

test_update_is_checked if {
	review := object.union(kind_reviews.Deployment, {"operation": "UPDATE", "oldObject": kind_reviews.Deployment.object})
	template.keys == full_keys with input as {"review": review}
}

test_audit_review_without_operation_is_checked if {
	# Audit builds input.review from the object alone: kind, name, namespace, object.
	review := object.remove(kind_reviews.StatefulSet, ["operation"])
	template.keys == full_keys with input as {"review": review}
}
