// Package v1alpha1 is the Go API of kubernetes-executor: the
// KubernetesExecution type (group kubernetesexecution.kubernaut.io, version
// v1alpha1), its DeepCopy methods, the scheme registration and the contract
// strings (reasons, condition types, labels, annotations) clients match on.
//
// A controller-runtime client uses it as a typed client:
//
//	scheme := runtime.NewScheme()
//	_ = v1alpha1.AddToScheme(scheme)
//	c, _ := client.New(cfg, client.Options{Scheme: scheme})
//	exec := &v1alpha1.KubernetesExecution{...}
//	_ = c.Create(ctx, exec)
//
// The Rust types in crds/src are the source of truth; CI generates a CRD
// from these Go types with controller-gen and fails when its schema differs
// from the one the Rust types generate (tests/go_api.rs).
//
// +kubebuilder:object:generate=true
// +kubebuilder:ac:generate=true
// +groupName=kubernetesexecution.kubernaut.io
package v1alpha1
