package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const (
	// Group of every kubernetes-executor resource.
	Group = "kubernetesexecution.kubernaut.io"
	// Version is the served and stored version.
	Version = "v1alpha1"
	// Kind of an execution.
	Kind = "KubernetesExecution"
	// Resource is the plural resource name.
	Resource = "kubernetesexecutions"
)

var (
	// GroupVersion of this package's types.
	GroupVersion = schema.GroupVersion{Group: Group, Version: Version}
	// SchemeGroupVersion is GroupVersion under the name generated clients use.
	SchemeGroupVersion = GroupVersion
	// GroupVersionResource of KubernetesExecution, for dynamic clients.
	GroupVersionResource = GroupVersion.WithResource(Resource)

	// SchemeBuilder registers this package's types.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds KubernetesExecution and KubernetesExecutionList to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion, &KubernetesExecution{}, &KubernetesExecutionList{})
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
