package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Phase is an execution's lifecycle phase. Completed and Failed are terminal
// and never change; a phase only moves forward.
// +kubebuilder:validation:Enum=Pending;Validating;Preparing;Executing;Verifying;Completed;Failed
type Phase string

const (
	PhasePending    Phase = "Pending"
	PhaseValidating Phase = "Validating"
	PhasePreparing  Phase = "Preparing"
	PhaseExecuting  Phase = "Executing"
	PhaseVerifying  Phase = "Verifying"
	PhaseCompleted  Phase = "Completed"
	PhaseFailed     Phase = "Failed"
)

// IsTerminal reports whether the phase is Completed or Failed.
func (p Phase) IsTerminal() bool { return p == PhaseCompleted || p == PhaseFailed }

// KubernetesExecutionStatus is the observed state of an execution.
type KubernetesExecutionStatus struct {
	// Current lifecycle phase.
	// +optional
	Phase *Phase `json:"phase,omitempty"`
	// Machine-readable reason of the last transition (e.g. PolicyDenied).
	// +optional
	Reason *string `json:"reason,omitempty"`
	// Human-readable message; names the offending value on failure.
	// +optional
	Message *string `json:"message,omitempty"`
	// kind/namespace/name of the resolved target.
	// +optional
	Target *string `json:"target,omitempty"`
	// Canonical catalog name of the action (aliases resolved).
	// +optional
	ResolvedAction *string `json:"resolvedAction,omitempty"`
	// Standard conditions, keyed by type.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Every reason the safety policies gave for denying the action.
	// +optional
	PolicyViolations []string `json:"policyViolations,omitempty"`
	// Policy decision and per-condition results.
	// +optional
	ValidationResults *ValidationResults `json:"validationResults,omitempty"`
	// Identity of the target captured at validation.
	// +optional
	TargetSnapshot *TargetSnapshot `json:"targetSnapshot,omitempty"`
	// Name of the Job running the action (in the operator namespace).
	// +optional
	JobName *string `json:"jobName,omitempty"`
	// Real attempts of the action (1 + retries).
	// +optional
	Attempts *int32 `json:"attempts,omitempty"`
	// On failure, the same value as reason.
	// +optional
	FailureReason *string `json:"failureReason,omitempty"`
	// When validation started.
	// +optional
	ValidationStartTime *metav1.Time `json:"validationStartTime,omitempty"`
	// When validation ended.
	// +optional
	ValidationCompleteTime *metav1.Time `json:"validationCompleteTime,omitempty"`
	// When the action's Job started running.
	// +optional
	ExecutionStartTime *metav1.Time `json:"executionStartTime,omitempty"`
	// When the action's Job ended.
	// +optional
	ExecutionCompleteTime *metav1.Time `json:"executionCompleteTime,omitempty"`
	// When the operator started working on the execution.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// When the execution reached a terminal phase.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// The spec generation this status describes.
	// +optional
	ObservedGeneration *int64 `json:"observedGeneration,omitempty"`
	// Outcome of the action.
	// +optional
	Result *ExecutionResult `json:"result,omitempty"`
	// How to undo what the action did.
	// +optional
	RollbackInfo *RollbackInfo `json:"rollbackInfo,omitempty"`
	// Name of the workflow execution this step belongs to.
	// +optional
	WorkflowExecution *string `json:"workflowExecution,omitempty"`
	// Step number within the workflow.
	// +optional
	StepNumber *int32 `json:"stepNumber,omitempty"`
}

// TargetSnapshot is the target's UID and resourceVersion at validation.
type TargetSnapshot struct {
	// +required
	UID string `json:"uid"`
	// +optional
	ResourceVersion *string `json:"resourceVersion,omitempty"`
}

// ValidationResults holds the policy decision and condition results.
type ValidationResults struct {
	// +optional
	PolicyDecision *PolicyDecision `json:"policyDecision,omitempty"`
	// +optional
	Conditions []ConditionResult `json:"conditions,omitempty"`
}

// PolicyDecision is the outcome of evaluating the safety policies once.
type PolicyDecision struct {
	// True iff the deny set was empty.
	// +required
	Allowed bool `json:"allowed"`
	// sha256 digest of the policy set that decided.
	// +required
	PolicySetDigest string `json:"policySetDigest"`
	// The reasons given by the deny rules.
	// +optional
	Violations []string `json:"violations,omitempty"`
	// +optional
	EvaluatedAt *metav1.Time `json:"evaluatedAt,omitempty"`
}

// ConditionPhase says whether a condition ran before or after the action.
// +kubebuilder:validation:Enum=Pre;Post
type ConditionPhase string

const (
	ConditionPhasePre  ConditionPhase = "Pre"
	ConditionPhasePost ConditionPhase = "Post"
)

// ConditionResult is the result of one pre- or postcondition.
type ConditionResult struct {
	// +required
	Name string `json:"name"`
	// +required
	Phase ConditionPhase `json:"phase"`
	// +required
	Passed bool `json:"passed"`
	// +required
	Required bool `json:"required"`
	// Verified, Failed or Inconclusive.
	// +optional
	Outcome *string `json:"outcome,omitempty"`
	// +optional
	Message *string `json:"message,omitempty"`
	// +optional
	EvaluatedAt *metav1.Time `json:"evaluatedAt,omitempty"`
}

// ExecutionResult is what the action did.
type ExecutionResult struct {
	// +required
	Succeeded bool `json:"succeeded"`
	// Short human-readable output (never secret values).
	// +optional
	Output *string `json:"output,omitempty"`
	// +optional
	Error *string `json:"error,omitempty"`
	// The same as error (the implementation plan's field name).
	// +optional
	ErrorMessage *string `json:"errorMessage,omitempty"`
	// kind/namespace/name of every object the action changed.
	// +optional
	ResourcesAffected []string `json:"resourcesAffected,omitempty"`
}

// RollbackInfo is a typed inverse of what the action did.
type RollbackInfo struct {
	// +required
	Restorable bool `json:"restorable"`
	// +optional
	Reason *string `json:"reason,omitempty"`
	// +optional
	PreviousReplicas *int32 `json:"previousReplicas,omitempty"`
	// +optional
	PreviousImages map[string]string `json:"previousImages,omitempty"`
	// +optional
	PreviousRestartedAt *string `json:"previousRestartedAt,omitempty"`
	// Keys a PatchSecret wrote (names only, never values).
	// +optional
	PatchedKeys []string `json:"patchedKeys,omitempty"`
	// +optional
	PreviousDataDigest *string `json:"previousDataDigest,omitempty"`
	// Previous ConfigMap data (never Secret data).
	// +optional
	PreviousData map[string]string `json:"previousData,omitempty"`
	// +optional
	WasUnschedulable *bool `json:"wasUnschedulable,omitempty"`
	// +optional
	EvictedPods []string `json:"evictedPods,omitempty"`
}
