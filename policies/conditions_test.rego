# Tests of the condition policies; run by `cargo test` with regorus.
package kubernetes_executor.conditions_test

import data.kubernetes_executor.conditions.image_pull_secrets_valid
import data.kubernetes_executor.conditions.no_crashloop_pods
import data.kubernetes_executor.conditions.node_selector_matches
import data.kubernetes_executor.conditions.resource_usage_acceptable

deployment(selector) := {"spec": {"template": {"spec": {"nodeSelector": selector}}}}

node(name, labels) := {"name": name, "labels": labels, "unschedulable": false, "allocatable_cpu_millis": 4000}

state(cluster) := {"target_resource": {"namespace": "shop"}, "cluster": cluster}

test_pull_secrets_present if {
	count(image_pull_secrets_valid.deny) == 0 with input as state({"image_pull_secrets": {"regcred": true}})
}

test_pull_secret_missing if {
	some msg in image_pull_secrets_valid.deny with input as state({"image_pull_secrets": {"regcred": false}})
	contains(msg, "regcred")
}

test_pull_secret_unverified_is_inconclusive if {
	count(image_pull_secrets_valid.deny) == 0 with input as state({"image_pull_secrets": {"regcred": null}})
	some msg in image_pull_secrets_valid.inconclusive with input as state({"image_pull_secrets": {"regcred": null}})
	contains(msg, "cannot be verified")
}

test_selector_matches_a_node if {
	count(node_selector_matches.deny) == 0 with input as state({
		"target": deployment({"disk": "ssd"}),
		"nodes": [node("a", {"disk": "hdd"}), node("b", {"disk": "ssd", "zone": "z1"})],
	})
}

test_selector_matches_no_node if {
	count(node_selector_matches.deny) == 1 with input as state({
		"target": deployment({"disk": "nvme"}),
		"nodes": [node("a", {"disk": "hdd"})],
	})
}

test_no_selector_always_matches if {
	count(node_selector_matches.deny) == 0 with input as state({"target": {}, "nodes": []})
}

test_crashloop_detected if {
	some msg in no_crashloop_pods.deny with input as state({"pods": [{"name": "web-1", "waiting_reasons": ["CrashLoopBackOff"]}]})
	contains(msg, "web-1")
}

test_healthy_pods_pass if {
	count(no_crashloop_pods.deny) == 0 with input as state({"pods": [{"name": "web-1", "waiting_reasons": []}]})
}

test_usage_within_capacity if {
	count(resource_usage_acceptable.deny) == 0 with input as state({
		"pods": [{"cpu_request_millis": 500}],
		"nodes": [node("a", {})],
	})
}

test_usage_over_capacity if {
	count(resource_usage_acceptable.deny) == 1 with input as state({
		"pods": [{"cpu_request_millis": 3500}],
		"nodes": [node("a", {})],
	})
}

test_usage_without_nodes_is_inconclusive if {
	count(resource_usage_acceptable.inconclusive) == 1 with input as state({"pods": [], "nodes": []})
}
