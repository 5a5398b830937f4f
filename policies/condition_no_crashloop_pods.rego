# Postcondition: none of the target's pods is crash-looping or unable to start.
package kubernetes_executor.conditions.no_crashloop_pods

bad_reasons := {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "RunContainerError"}

deny contains msg if {
	some pod in input.cluster.pods
	some reason in pod.waiting_reasons
	reason in bad_reasons
	msg := sprintf("pod %s is in %s", [pod.name, reason])
}
