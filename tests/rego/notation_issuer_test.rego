# Tests of the sample CountersignNotationIssuer template (gatekeeper-templates/samples/notation-issuer-template.yaml).
# Run by tests/unit/test_rego.py, like verified_images_test.rego.
package countersignnotationissuer_test

import data.countersignnotationissuer as template

shop_root := "CN=Example Shop Root,O=Example Shop,ST=WA,C=US"

other_root := "CN=Someone Else,O=Other"

signature(issuer, passed) := {
	"format": "jws",
	"signature": "sha256:5c3a",
	"passed": passed,
	"reason": "notation_verified",
	"message": "trusted",
	"signer": "CN=release,O=Example Shop,ST=WA,C=US",
	"issuer": issuer,
	"serial": "3f1a9c",
	"signingScheme": "notary.x509",
	"signingTime": "2026-11-20T09:12:44Z",
	"timestamp": null,
	"logged": [],
}

notation_report(name, passed, signatures) := {
	"name": name,
	"type": "notation",
	"passed": passed,
	"reason": "notation_verified",
	"message": "verified",
	"details": {"policy": "shop", "signatures": signatures},
}

verdict(allowed, reports) := {
	"schemaVersion": 1,
	"allowed": allowed,
	"reason": "verified",
	"reference": "shop.example/app:1",
	"digest": "sha256:aaaa",
	"namespace": "prod",
	"policy": "shop",
	"verifiers": reports,
	"reasons": [],
}

signed_by(issuer) := verdict(true, [notation_report("notary", true, [signature(issuer, true)])])

pod(images) := {
	"kind": {"group": "", "version": "v1", "kind": "Pod"},
	"namespace": "prod",
	"operation": "CREATE",
	"object": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": sprintf("c%d", [i]), "image": image} | some i, image in images]}},
}

reply(values) := {"responses": [[k, v] | some k, v in values], "errors": [], "status_code": 200, "system_error": ""}

# external_data is declared (capabilities) but has no implementation in opa, so it can only be replaced by
# a function, not by a value: this one answers data.stub.
stub(_) := data.stub

violations(review, parameters, answer) := vs if {
	vs := template.violation with input as {"review": review, "parameters": parameters}
		with external_data as stub
		with data.stub as answer
}

params := {"issuers": [shop_root]}

test_accepted_issuer_is_allowed if {
	count(violations(pod(["shop.example/app:1"]), params, reply({"[prod]shop.example/app:1": signed_by(shop_root)}))) == 0
}

test_other_issuer_is_denied_and_named if {
	vs := violations(pod(["shop.example/app:1"]), params, reply({"[prod]shop.example/app:1": signed_by(other_root)}))
	{v.msg | some v in vs} == {sprintf(
		"image shop.example/app:1 has no notation signature verified by countersign-verify from an accepted issuer (accepted: %s; verified signatures were issued by: %s)",
		[shop_root, other_root],
	)}
}

test_failed_signature_from_the_issuer_is_not_evidence if {
	value := verdict(true, [notation_report("notary", true, [signature(shop_root, false), signature(other_root, true)])])
	vs := violations(pod(["shop.example/app:1"]), params, reply({"[prod]shop.example/app:1": value}))
	count(vs) == 1
}

test_denied_verdict_is_not_evidence if {
	value := verdict(false, [notation_report("notary", true, [signature(shop_root, true)])])
	count(violations(pod(["shop.example/app:1"]), params, reply({"[prod]shop.example/app:1": value}))) == 1
}

test_unknown_schema_is_not_evidence if {
	value := object.union(signed_by(shop_root), {"schemaVersion": 2})
	count(violations(pod(["shop.example/app:1"]), params, reply({"[prod]shop.example/app:1": value}))) == 1
}

test_a_failed_call_is_not_evidence if {
	answer := {"responses": null, "errors": null, "status_code": 500, "system_error": "failed to send external data request"}
	vs := violations(pod(["shop.example/app:1"]), params, answer)
	some v in vs
	endswith(v.msg, "verified signatures were issued by: none)")
}

test_verifier_parameter_restricts_the_report if {
	value := verdict(true, [notation_report("notary", true, [signature(shop_root, true)])])
	answer := reply({"[prod]shop.example/app:1": value})
	count(violations(pod(["shop.example/app:1"]), object.union(params, {"verifier": "notary"}), answer)) == 0
	count(violations(pod(["shop.example/app:1"]), object.union(params, {"verifier": "release-notary"}), answer)) == 1
}

test_only_the_image_without_evidence_is_named if {
	answer := reply({"[prod]shop.example/app:1": signed_by(shop_root), "[prod]nginx:1.25": signed_by(other_root)})
	vs := violations(pod(["shop.example/app:1", "nginx:1.25"]), params, answer)
	count(vs) == 1
	some v in vs
	v.details.image == "nginx:1.25"
	not contains(v.msg, "shop.example/app")
}

test_no_issuers_accepts_nothing if {
	count(violations(pod(["shop.example/app:1"]), {}, reply({"[prod]shop.example/app:1": signed_by(shop_root)}))) == 1
}

test_keys_match_the_verified_images_template if {
	review := pod(["shop.example/app:1", "nginx:1.25"])
	template.keys == data.countersignverifiedimages.keys with input as {"review": review, "parameters": params}
	template.keys == ["[prod]nginx:1.25", "[prod]shop.example/app:1"] with input as {"review": review, "parameters": params}
}

test_exempt_images_are_not_checked if {
	parameters := object.union(params, {"exemptImages": ["registry.k8s.io/*"]})
	answer := reply({"[prod]shop.example/app:1": signed_by(shop_root)})
	count(violations(pod(["shop.example/app:1", "registry.k8s.io/pause:3.9"]), parameters, answer)) == 0
}

test_cronjob_init_containers_are_checked if {
	review := {
		"kind": {"group": "batch", "version": "v1", "kind": "CronJob"},
		"namespace": "prod",
		"operation": "CREATE",
		"object": {"spec": {"jobTemplate": {"spec": {"template": {"spec": {
			"initContainers": [{"name": "setup", "image": "busybox:1.36"}],
			"containers": [{"name": "app", "image": "shop.example/app:1"}],
		}}}}}},
	}
	answer := reply({"[prod]shop.example/app:1": signed_by(shop_root), "[prod]busybox:1.36": signed_by(other_root)})
	{v.details.image | some v in violations(review, params, answer)} == {"busybox:1.36"}
}

test_without_namespace_and_with_another_provider if {
	review := object.union(pod(["shop.example/app:1"]), {"namespace": ""})
	parameters := object.union(params, {"provider": "other-verify", "namespacedKeys": true})
	vs := violations(review, parameters, reply({"shop.example/app:1": signed_by(shop_root)}))
	count(vs) == 0
	template.keys == ["shop.example/app:1"] with input as {"review": review, "parameters": parameters}
	template.provider == "other-verify" with input as {"review": review, "parameters": parameters}
}

test_namespaced_keys_off if {
	parameters := object.union(params, {"namespacedKeys": false})
	count(violations(pod(["shop.example/app:1"]), parameters, reply({"shop.example/app:1": signed_by(shop_root)}))) == 0
}

test_update_of_an_object_being_deleted_is_not_checked if {
	review := object.union(pod(["shop.example/app:1"]), {"operation": "UPDATE", "object": {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}})
	count(violations(review, params, reply({}))) == 0
}

test_null_parameters_accept_nothing if {
	count(violations(pod(["shop.example/app:1"]), null, reply({"[prod]shop.example/app:1": signed_by(shop_root)}))) == 1
}

test_deployment_pod_template_is_checked if {
	review := {
		"kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
		"namespace": "prod",
		"operation": "CREATE",
		"object": {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}}},
	}
	vs := violations(review, params, reply({"[prod]nginx:1.25": signed_by(other_root)}))
	{v.details.image | some v in vs} == {"nginx:1.25"}
}
