# Tests of safety.rego; run by `cargo test` (actors/src/policy.rs) with regorus.
package kubernetes_executor.safety_test

import data.kubernetes_executor.safety

base := {
	"action": "ScaleDeployment",
	"parameters": {"replicas": "3"},
	"parameter_sizes": {"replicas": 1},
	"target_resource": {"kind": "Deployment", "name": "web", "namespace": "shop", "labels": {}},
	"dry_run": false,
	"metadata": {"execution_name": "e", "execution_namespace": "shop"},
	"cluster": {"operator_namespace": "kubernetes-executor-system"},
}

node(name, labels, action) := object.union(base, {
	"action": action,
	"parameters": {},
	"target_resource": {"kind": "Node", "name": name, "labels": labels},
})

test_plain_scale_allowed if {
	count(safety.deny) == 0 with input as base
}

test_kube_system_denied if {
	some msg in safety.deny with input as object.union(base, {"target_resource": {"kind": "Deployment", "name": "coredns", "namespace": "kube-system"}})
	contains(msg, "kube-system is protected")
}

test_operator_namespace_denied if {
	count(safety.deny) == 1 with input as object.union(base, {"target_resource": {"kind": "Deployment", "name": "x", "namespace": "kubernetes-executor-system"}})
}

test_unknown_action_denied if {
	some msg in safety.deny with input as object.union(base, {"action": "Reboot"})
	contains(msg, "not in the allowlist")
}

test_control_plane_label_denied if {
	some msg in safety.deny with input as node("node-1", {"node-role.kubernetes.io/control-plane": ""}, "DrainNode")
	contains(msg, "control-plane node")
}

test_control_plane_name_denied if {
	count(safety.deny) > 0 with input as node("k8s-master-0", {}, "CordonNode")
}

test_worker_drain_allowed if {
	count(safety.deny) == 0 with input as node("worker-1", {"node-role.kubernetes.io/worker": ""}, "DrainNode")
}

test_uncordon_control_plane_allowed if {
	count(safety.deny) == 0 with input as node("master-0", {"node-role.kubernetes.io/control-plane": ""}, "UncordonNode")
}

test_critical_scale_to_zero_denied if {
	some msg in safety.deny with input as object.union(base, {
		"parameters": {"replicas": "0"},
		"target_resource": {"kind": "Deployment", "name": "web", "namespace": "shop", "labels": {"critical": "true"}},
	})
	contains(msg, "critical")
}

test_normal_scale_to_zero_allowed if {
	count(safety.deny) == 0 with input as object.union(base, {"parameters": {"replicas": "0"}})
}

test_critical_scale_up_allowed if {
	count(safety.deny) == 0 with input as object.union(base, {
		"target_resource": {"kind": "Deployment", "name": "web", "namespace": "shop", "labels": {"critical": "true"}},
	})
}

test_big_secret_patch_denied if {
	some msg in safety.deny with input as object.union(base, {"action": "PatchSecret", "parameters": {"patch": "<redacted>"}, "parameter_sizes": {"patch": 20000}, "target_resource": {"kind": "Secret", "name": "s", "namespace": "shop"}})
	contains(msg, "20000 bytes")
}

test_small_configmap_patch_allowed if {
	count(safety.deny) == 0 with input as object.union(base, {"action": "PatchConfigMap", "parameters": {"patch": "{}"}, "parameter_sizes": {"patch": 2}, "target_resource": {"kind": "ConfigMap", "name": "c", "namespace": "shop"}})
}

test_force_delete_denied if {
	some msg in safety.deny with input as object.union(base, {
		"action": "DeletePod",
		"parameters": {"gracePeriodSeconds": "0"},
		"target_resource": {"kind": "Pod", "name": "p", "namespace": "shop"},
	})
	contains(msg, "force deletion")
}

test_graceful_delete_allowed if {
	count(safety.deny) == 0 with input as object.union(base, {
		"action": "DeletePod",
		"parameters": {"gracePeriodSeconds": "30"},
		"target_resource": {"kind": "Pod", "name": "p", "namespace": "shop"},
	})
}
