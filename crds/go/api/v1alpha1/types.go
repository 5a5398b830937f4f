package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KubernetesExecution is a request to run one remediation action against one
// Kubernetes object, and its outcome.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kexec;ke,categories=kubernaut
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=".status.phase",description="Current phase"
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=".spec.action",description="Catalog action"
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=".status.target",description="kind/namespace/name of the target"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=".status.reason",description="Machine-readable reason of the last transition"
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=".status.message",description="Human-readable message",priority=1
// +kubebuilder:printcolumn:name="Requester",type=string,JSONPath=".spec.requester.username",description="Who asked (recorded by the API server)",priority=1
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || self.spec == oldSelf.spec",message="spec is immutable once the execution has left the Pending phase"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.phase) || !(oldSelf.status.phase in ['Completed', 'Failed']) || (has(self.status) && has(self.status.phase) && self.status.phase == oldSelf.status.phase)",message="a terminal phase (Completed, Failed) never changes"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.phase) || (has(self.status) && has(self.status.phase) && {'Pending': 0, 'Validating': 1, 'Preparing': 2, 'Executing': 3, 'Verifying': 4, 'Completed': 5, 'Failed': 5}[self.status.phase] >= {'Pending': 0, 'Validating': 1, 'Preparing': 2, 'Executing': 3, 'Verifying': 4, 'Completed': 5, 'Failed': 5}[oldSelf.status.phase])",message="status.phase only moves forward (Pending, Validating, Preparing, Executing, Verifying, Completed|Failed): a stale writer cannot move an execution back"
// +kubebuilder:validation:XValidation:rule="has(self.spec.requester) == has(oldSelf.spec.requester) && (!has(self.spec.requester) || self.spec.requester == oldSelf.spec.requester)",message="spec.requester is recorded by the API server on create and cannot be changed"
type KubernetesExecution struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   KubernetesExecutionSpec    `json:"spec"`
	Status *KubernetesExecutionStatus `json:"status,omitempty"`
}

// KubernetesExecutionList is a list of executions.
//
// +kubebuilder:object:root=true
type KubernetesExecutionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KubernetesExecution `json:"items"`
}

// KubernetesExecutionSpec says which action to run on which object. It
// cannot change once the execution has left Pending.
type KubernetesExecutionSpec struct {
	// Name (or alias) of the action in the catalog, e.g. ScaleDeployment.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Action string `json:"action"`

	// Action-specific parameters as strings, e.g. replicas: "3". Unknown
	// parameter names are rejected. At most 16 parameters of at most 256 KiB
	// each.
	// +kubebuilder:validation:MaxProperties=16
	// +optional
	Parameters map[string]ParameterValue `json:"parameters,omitempty"`

	// The object the action acts on.
	// +required
	TargetResource TargetResource `json:"targetResource"`

	// Validate, evaluate policies and preconditions and run the action's
	// server-side dry run, but never mutate anything.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

	// Overall time limit (what metav1.Duration renders: 90s, 1.5m, 1h0m0s);
	// 0s or absent: the action's catalog default. At least 1s, at most 15m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Job-level retries of transient failures (0..5, default 0).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=5
	// +optional
	MaxRetries *int32 `json:"maxRetries,omitempty"`

	// Conditions that must hold before the action runs.
	// +optional
	Preconditions []ActionCondition `json:"preconditions,omitempty"`

	// Conditions verified after the action ran.
	// +optional
	Postconditions []ActionCondition `json:"postconditions,omitempty"`

	// The implementation plan's spelling of preconditions (an execution that
	// uses both spellings is refused).
	// +optional
	PreConditions []ActionCondition `json:"preConditions,omitempty"`

	// The implementation plan's spelling of postconditions (an execution
	// that uses both spellings is refused).
	// +optional
	PostConditions []ActionCondition `json:"postConditions,omitempty"`

	// The workflow execution this step belongs to (set by a workflow
	// engine); copied into labels and status for correlation.
	// +optional
	WorkflowExecutionRef *corev1.ObjectReference `json:"workflowExecutionRef,omitempty"`

	// What to do when another live execution is mutating the same target:
	// Wait (the default; bounded by timeout) or Fail at once (TargetBusy).
	// +optional
	OnTargetBusy *TargetBusyPolicy `json:"onTargetBusy,omitempty"`

	// Position of this execution within its workflow.
	// +kubebuilder:validation:Minimum=0
	// +optional
	StepNumber *int32 `json:"stepNumber,omitempty"`

	// Seconds to keep this execution once it finished; then the operator
	// deletes it. Absent: the operator's --finished-ttl and
	// --finished-history-limit, which spare executions owned by another
	// object (a workflow's steps go when their workflow goes).
	// +kubebuilder:validation:Minimum=0
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`

	// Who asked. Written by the API server on create from the authenticated
	// user of the request; whatever a client sends is overwritten.
	// +optional
	Requester *Requester `json:"requester,omitempty"`
}

// ParameterValue is one action parameter: a string of at most 256 KiB
// (untyped string constants convert implicitly: {"replicas": "3"}).
// +kubebuilder:validation:MaxLength=262144
type ParameterValue string

// Requester is the authenticated identity that created an execution.
type Requester struct {
	// User name, e.g. system:serviceaccount:tenant-a:bot.
	// +required
	Username string `json:"username"`
	// UID of the user, when the authenticator provides one.
	// +optional
	UID *string `json:"uid,omitempty"`
	// Groups of the user.
	// +optional
	Groups []string `json:"groups,omitempty"`
}

// TargetBusyPolicy is the behaviour when the target is locked by another execution.
// +kubebuilder:validation:Enum=Wait;Fail
type TargetBusyPolicy string

const (
	// TargetBusyWait waits for the lock, at most until the execution's timeout.
	TargetBusyWait TargetBusyPolicy = "Wait"
	// TargetBusyFail fails at once with reason TargetBusy.
	TargetBusyFail TargetBusyPolicy = "Fail"
)

// TargetResource is the object an action acts on.
type TargetResource struct {
	// Kind of the target, e.g. Deployment, Pod, Node.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Kind string `json:"kind"`
	// Name of the target object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
	// Namespace of the target; defaults to the execution's namespace for
	// namespaced kinds, must be empty for cluster-scoped kinds.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace *string `json:"namespace,omitempty"`
	// Labels the client expects on the target (informational).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// ActionCondition is a named check evaluated before or after the action.
type ActionCondition struct {
	// Name of the condition, reported in status.validationResults.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// A Rego module name from the policy directory, or inline Rego.
	// +required
	Policy string `json:"policy"`
	// When true (the default) a failed condition fails the execution.
	// +kubebuilder:default=true
	// +optional
	Required *bool `json:"required,omitempty"`
	// How long the condition may take to hold.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}
