package v1alpha1

// Contract strings clients match on. tests/go_api.rs fails when one of these
// differs from the Rust crate (crds/src/reasons.rs, crds/src/lib.rs).

// Finalizer the operator puts on an execution while it has work to clean up
// (removed when the execution finishes).
const Finalizer = "kubernetesexecution.kubernaut.io/cleanup"

// Reasons written to status.reason (and status.failureReason on failure).
const (
	ReasonUnknownAction         = "UnknownAction"
	ReasonInvalidParameters     = "InvalidParameters"
	ReasonInvalidTarget         = "InvalidTarget"
	ReasonInvalidTimeout        = "InvalidTimeout"
	ReasonTargetNotFound        = "TargetNotFound"
	ReasonTargetChanged         = "TargetChanged"
	ReasonWaitingForTarget      = "WaitingForTarget"
	ReasonTargetBusy            = "TargetBusy"
	ReasonRequesterUnauthorized = "RequesterUnauthorized"
	ReasonPolicyDenied          = "PolicyDenied"
	ReasonPolicyUnavailable     = "PolicyUnavailable"
	ReasonPreconditionFailed    = "PreconditionFailed"
	ReasonJobFailed             = "JobFailed"
	ReasonTimeout               = "Timeout"
	ReasonPostconditionFailed   = "PostconditionFailed"
	ReasonDryRunSucceeded       = "DryRunSucceeded"
	ReasonDryRunRejected        = "DryRunRejected"
	ReasonSucceeded             = "Succeeded"
	ReasonPaused                = "Paused"
	ReasonValidating            = "Validating"
	ReasonPreparing             = "Preparing"
	ReasonJobRunning            = "JobRunning"
	ReasonVerifying             = "Verifying"
	ReasonInternalError         = "InternalError"
)

// Condition types in status.conditions.
const (
	// ConditionValidated: the spec validated against the catalog.
	ConditionValidated = "Validated"
	// ConditionPolicyAllowed: the safety policies allowed the action.
	ConditionPolicyAllowed = "PolicyAllowed"
	// ConditionExecuted: the action's Job finished successfully.
	ConditionExecuted = "Executed"
	// ConditionVerified: the postconditions were verified.
	ConditionVerified = "Verified"
	// ConditionSucceeded: the execution as a whole succeeded. A workflow
	// engine waits for a terminal phase and reads this condition.
	ConditionSucceeded = "Succeeded"
	// The implementation plan's condition types.
	ConditionActionValidated           = "ActionValidated"
	ConditionActionValidationFailed    = "ActionValidationFailed"
	ConditionParameterValidationFailed = "ParameterValidationFailed"
	ConditionPolicyViolation           = "PolicyViolation"
	ConditionDryRunCompleted           = "DryRunCompleted"
)

// Labels the operator sets on executions (workflow correlation) and on the
// Jobs it creates.
const (
	LabelManagedBy          = "app.kubernetes.io/managed-by"
	LabelManagedByValue     = "kubernetes-executor"
	LabelExecutionNamespace = "kubernetesexecution.kubernaut.io/execution-namespace"
	LabelExecutionName      = "kubernetesexecution.kubernaut.io/execution-name"
	LabelExecutionUID       = "kubernetesexecution.kubernaut.io/execution-uid"
	LabelAction             = "kubernetesexecution.kubernaut.io/action"
	// LabelWorkflowExecution is set on the execution (at admission) and its
	// Job from spec.workflowExecutionRef.name: list a workflow's steps with
	// client.MatchingLabels{LabelWorkflowExecution: name}.
	LabelWorkflowExecution = "kubernetesexecution.kubernaut.io/workflow-execution"
	// LabelStepNumber is set on the execution and its Job from spec.stepNumber.
	LabelStepNumber = "kubernetesexecution.kubernaut.io/step-number"
	// The implementation plan's spellings, also set on Jobs.
	LabelPlanExecution = "kubernaut.ai/execution"
	LabelPlanAction    = "kubernaut.ai/action"
)

// Annotations the operator reads.
const (
	// AnnotationPaused set to "true" on a namespace pauses new executions in it.
	AnnotationPaused = "kubernetesexecution.kubernaut.io/paused"
)
