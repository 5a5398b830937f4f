# Precondition: every imagePullSecret the target's pods reference exists.
# `input.cluster.image_pull_secrets` maps each name to true/false when
# known, or null when it could not be checked (the operator does not read
# Secrets): then the condition is inconclusive, never silently passed.
package kubernetes_executor.conditions.image_pull_secrets_valid

deny contains msg if {
	some name, exists in input.cluster.image_pull_secrets
	exists == false
	msg := sprintf("imagePullSecret %s does not exist in namespace %s", [name, input.target_resource.namespace])
}

inconclusive contains msg if {
	some name, exists in input.cluster.image_pull_secrets
	exists == null
	msg := sprintf("imagePullSecret %s in namespace %s cannot be verified: the operator does not read Secrets", [name, input.target_resource.namespace])
}
