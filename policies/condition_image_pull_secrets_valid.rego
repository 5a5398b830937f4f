# Precondition: every imagePullSecret the target's pods reference exists.
package kubernetes_executor.conditions.image_pull_secrets_valid

deny contains msg if {
	some name, exists in input.cluster.image_pull_secrets
	not exists
	msg := sprintf("imagePullSecret %s does not exist in namespace %s", [name, input.target_resource.namespace])
}
