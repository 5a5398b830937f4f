//! `status` of a KubernetesExecution: phase, conditions, decision, result and
//! rollback information.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Lifecycle phase. `Completed` and `Failed` are terminal and never change.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
pub enum Phase {
    /// Accepted, not yet looked at.
    #[default]
    Pending,
    /// Catalog, parameter, policy and precondition checks.
    Validating,
    /// Validated; taking the target lock, granting the action's
    /// ServiceAccount and creating the Job (waits here for a busy target).
    Preparing,
    /// The Job runs the action.
    Executing,
    /// Postconditions are being verified.
    Verifying,
    /// Finished successfully (terminal).
    Completed,
    /// Finished unsuccessfully (terminal).
    Failed,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Validating,
        Phase::Preparing,
        Phase::Executing,
        Phase::Verifying,
        Phase::Completed,
        Phase::Failed,
    ];

    /// `Completed` or `Failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::Failed)
    }

    /// The phase name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Validating => "Validating",
            Phase::Preparing => "Preparing",
            Phase::Executing => "Executing",
            Phase::Verifying => "Verifying",
            Phase::Completed => "Completed",
            Phase::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a KubernetesExecution.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesExecutionStatus {
    /// Current lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Machine-readable reason of the last transition (e.g. `PolicyDenied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable message; names the offending value on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `kind/namespace/name` of the resolved target (printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Canonical catalog name of the action (aliases resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_action: Option<String>,
    /// Standard conditions: Validated, PolicyAllowed, Executed, Verified,
    /// Succeeded. A map keyed by `type`: other controllers may add their own
    /// conditions (server-side apply keeps each writer's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Every reason the safety policies gave for denying the action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_violations: Vec<String>,
    /// Policy decision and per-condition results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_results: Option<ValidationResults>,
    /// Identity of the target captured at validation; the action refuses to
    /// touch an object whose UID differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_snapshot: Option<TargetSnapshot>,
    /// Name of the Job running the action (in the operator namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Real attempts of the action: Job pods that ran to an end (1 +
    /// retries), 1 while the first runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// On failure, the same value as `reason` (the implementation plan's
    /// field); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When validation started (entering `Validating`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_start_time: Option<Time>,
    /// When validation ended (leaving `Validating`, either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_complete_time: Option<Time>,
    /// When the action's Job started running (entering `Executing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_start_time: Option<Time>,
    /// When the action's Job ended (leaving `Executing`, either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_complete_time: Option<Time>,
    /// When the operator started working on the execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the execution reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Outcome of the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExecutionResult>,
    /// How to undo what the action did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_info: Option<RollbackInfo>,
    /// Name of the workflow execution this step belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_execution: Option<String>,
    /// Step number within the workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_number: Option<i32>,
}

/// UID and resourceVersion of the target when it was validated.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSnapshot {
    /// UID of the target object.
    pub uid: String,
    /// resourceVersion of the target object at validation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// Policy decision and condition results.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationResults {
    /// The safety-policy decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_decision: Option<PolicyDecision>,
    /// Results of pre- and postconditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionResult>,
}

/// The outcome of evaluating the safety policies once.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDecision {
    /// True iff the `deny` set was empty.
    pub allowed: bool,
    /// sha256 digest of the policy set that decided.
    pub policy_set_digest: String,
    /// The reasons given by the `deny` rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<String>,
    /// When the decision was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<Time>,
}

/// Whether a condition ran before or after the action.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionPhase {
    /// A precondition.
    Pre,
    /// A postcondition.
    Post,
}

/// Result of one pre- or postcondition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionResult {
    /// Name of the condition.
    pub name: String,
    /// Pre or Post.
    pub phase: ConditionPhase,
    /// Whether it held.
    pub passed: bool,
    /// Whether failing it fails the execution.
    pub required: bool,
    /// `Verified`, `Failed` or `Inconclusive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Why it passed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<Time>,
}

/// What the action did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionResult {
    /// Whether the action succeeded.
    pub succeeded: bool,
    /// Short human-readable output (never secret values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The error, when the action failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The same as `error` (the implementation plan's field name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// `kind/namespace/name` of every object the action changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources_affected: Vec<String>,
}

/// A typed inverse of what the action did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackInfo {
    /// Whether applying this information restores the previous state.
    pub restorable: bool,
    /// Why the action cannot be undone, when `restorable` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Replica count before a scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_replicas: Option<i32>,
    /// Image of each container (by name) before an image update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_images: Option<BTreeMap<String, String>>,
    /// The previous `kubectl.kubernetes.io/restartedAt` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_restarted_at: Option<String>,
    /// Keys a PatchSecret wrote (names only, never values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patched_keys: Vec<String>,
    /// Digest of the data before a patch (never the data): `sha256:<hex>` of
    /// the ConfigMap keys the patch touched; for Secrets a salted
    /// `sha256-salted:<salt>:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_data_digest: Option<String>,
    /// Previous ConfigMap data (ConfigMaps only; never Secret data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_data: Option<BTreeMap<String, String>>,
    /// `spec.unschedulable` of the node before a cordon/uncordon/drain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was_unschedulable: Option<bool>,
    /// `namespace/name` of pods evicted or deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evicted_pods: Vec<String>,
}
