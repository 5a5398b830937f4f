# Default safety policies of kubernetes-executor.
# The action is allowed iff `deny` is empty. Input: see docs/policies.md.
package kubernetes_executor.safety

protected_namespaces := {"kube-system", "kube-public", "kube-node-lease"}

allowed_actions := {
	"ScaleDeployment", "RestartDeployment", "DeletePod", "PatchConfigMap", "PatchSecret",
	"UpdateImage", "CordonNode", "DrainNode", "UncordonNode", "RolloutStatus",
}

control_plane_labels := ["node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"]

control_plane_name_parts := ["master", "control-plane"]

disruptive_node_actions := {"CordonNode", "DrainNode"}

max_patch_bytes := {"PatchConfigMap": 65536, "PatchSecret": 16384}

deny contains msg if {
	not input.action in allowed_actions
	msg := sprintf("action %s is not in the allowlist", [input.action])
}

deny contains msg if {
	ns := input.target_resource.namespace
	ns in protected_namespaces
	msg := sprintf("namespace %s is protected: no actions may target it", [ns])
}

deny contains msg if {
	ns := input.target_resource.namespace
	ns == input.cluster.operator_namespace
	msg := sprintf("namespace %s is the operator's own namespace and is protected", [ns])
}

deny contains msg if {
	input.target_resource.kind == "Node"
	input.action in disruptive_node_actions
	some label in control_plane_labels
	label in object.keys(object.get(input.target_resource, "labels", {}))
	msg := sprintf("node %s is a control-plane node (label %s): %s is not allowed", [input.target_resource.name, label, input.action])
}

deny contains msg if {
	input.target_resource.kind == "Node"
	input.action in disruptive_node_actions
	some part in control_plane_name_parts
	contains(input.target_resource.name, part)
	msg := sprintf("node %s looks like a control-plane node (name contains %q): %s is not allowed", [input.target_resource.name, part, input.action])
}

deny contains msg if {
	input.action == "ScaleDeployment"
	to_number(input.parameters.replicas) == 0
	object.get(object.get(input.target_resource, "labels", {}), "critical", "") == "true"
	msg := sprintf("deployment %s/%s is labelled critical=\"true\" and must not be scaled to zero", [input.target_resource.namespace, input.target_resource.name])
}

deny contains msg if {
	limit := max_patch_bytes[input.action]
	size := input.parameter_sizes.patch
	size > limit
	msg := sprintf("%s patch is %d bytes, more than the %d-byte limit", [input.action, size, limit])
}

# Force deletion (grace period 0) skips a pod's shutdown and can run two
# copies of a pod at once: refused unless an administrator removes this rule.
force_delete_actions := {"DeletePod", "DrainNode"}

deny contains msg if {
	input.action in force_delete_actions
	input.parameters.gracePeriodSeconds == "0"
	msg := sprintf("%s with gracePeriodSeconds \"0\" (force deletion) is not allowed by the default policy", [input.action])
}
