# Precondition: the pod template's nodeSelector matches at least one node.
package kubernetes_executor.conditions.node_selector_matches

selector := object.get(input.cluster.target, ["spec", "template", "spec", "nodeSelector"], {})

matches(node) if {
	every key, value in selector {
		node.labels[key] == value
	}
}

deny contains msg if {
	count(selector) > 0
	count([n | some n in input.cluster.nodes; matches(n)]) == 0
	msg := sprintf("no node matches nodeSelector %v", [selector])
}
