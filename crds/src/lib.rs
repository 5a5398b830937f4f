//! The `KubernetesExecution` API (group `kubernetesexecution.kubernaut.io`,
//! version `v1alpha1`): spec, status and the constants clients match on.
//!
//! This crate holds types only: no runtime, no I/O. The operator, the job
//! runner and the CRD generator (`crdgen`) all share these definitions.
#![forbid(unsafe_code)]

pub mod reasons;
mod status;

pub use status::*;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::core::CustomResourceExt;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every kubernetes-executor resource.
pub const GROUP: &str = "kubernetesexecution.kubernaut.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// Finalizer the operator puts on every execution it has started work for.
pub const FINALIZER: &str = "kubernetesexecution.kubernaut.io/cleanup";

/// Labels the operator puts on the Jobs (and RoleBindings) it creates, linking
/// them back to the execution.
pub mod labels {
    /// Always `kubernetes-executor`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The value of [`MANAGED_BY`].
    pub const MANAGER: &str = "kubernetes-executor";
    /// Namespace of the owning execution.
    pub const EXECUTION_NAMESPACE: &str = "kubernetesexecution.kubernaut.io/execution-namespace";
    /// Name of the owning execution.
    pub const EXECUTION_NAME: &str = "kubernetesexecution.kubernaut.io/execution-name";
    /// UID of the owning execution.
    pub const EXECUTION_UID: &str = "kubernetesexecution.kubernaut.io/execution-uid";
    /// Canonical catalog name of the action.
    pub const ACTION: &str = "kubernetesexecution.kubernaut.io/action";
    /// Name of the workflow execution, when `workflowExecutionRef` is set.
    pub const WORKFLOW: &str = "kubernetesexecution.kubernaut.io/workflow-execution";
    /// Step number within the workflow, when `stepNumber` is set.
    pub const STEP: &str = "kubernetesexecution.kubernaut.io/step-number";
    /// The implementation plan's spelling of [`EXECUTION_NAME`] (also set).
    pub const PLAN_EXECUTION: &str = "kubernaut.ai/execution";
    /// The implementation plan's spelling of [`ACTION`] (also set).
    pub const PLAN_ACTION: &str = "kubernaut.ai/action";
}

/// A request to run one remediation action against one Kubernetes object.
///
/// The operator validates it against the action catalog and the safety
/// policies, runs it as a Job under a least-privilege ServiceAccount, verifies
/// the outcome and records decision, result and rollback information in
/// status. The spec cannot change once the execution has left `Pending`.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubernetesexecution.kubernaut.io",
    version = "v1alpha1",
    kind = "KubernetesExecution",
    doc = "A request to run one remediation action against one Kubernetes object, and its outcome.",
    plural = "kubernetesexecutions",
    namespaced,
    status = "KubernetesExecutionStatus",
    shortname = "kexec",
    shortname = "ke",
    category = "kubernaut",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Current phase"),
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action", description = "Catalog action"),
    printcolumn(name = "Target", type_ = "string", json_path = ".status.target", description = "kind/namespace/name of the target"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason", description = "Machine-readable reason of the last transition"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", description = "Human-readable message", priority = 1),
    printcolumn(name = "Requester", type_ = "string", json_path = ".spec.requester.username", description = "Who asked (recorded by the API server)", priority = 1),
    validation = kube::core::Rule::new(
        "!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || self.spec == oldSelf.spec"
    ).message("spec is immutable once the execution has left the Pending phase"),
    validation = kube::core::Rule::new(
        "!has(oldSelf.status) || !has(oldSelf.status.phase) || !(oldSelf.status.phase in ['Completed', 'Failed']) || (has(self.status) && has(self.status.phase) && self.status.phase == oldSelf.status.phase)"
    ).message("a terminal phase (Completed, Failed) never changes"),
    validation = kube::core::Rule::new(
        "!has(oldSelf.status) || !has(oldSelf.status.phase) || (has(self.status) && has(self.status.phase) && {'Pending': 0, 'Validating': 1, 'Preparing': 2, 'Executing': 3, 'Verifying': 4, 'Completed': 5, 'Failed': 5}[self.status.phase] >= {'Pending': 0, 'Validating': 1, 'Preparing': 2, 'Executing': 3, 'Verifying': 4, 'Completed': 5, 'Failed': 5}[oldSelf.status.phase])"
    ).message("status.phase only moves forward (Pending, Validating, Preparing, Executing, Verifying, Completed|Failed): a stale writer cannot move an execution back"),
    validation = kube::core::Rule::new(
        "has(self.spec.requester) == has(oldSelf.spec.requester) && (!has(self.spec.requester) || self.spec.requester == oldSelf.spec.requester)"
    ).message("spec.requester is recorded by the API server on create and cannot be changed")
)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesExecutionSpec {
    /// Name (or alias) of the action in the catalog, e.g. `ScaleDeployment`.
    #[schemars(length(min = 1, max = 63))]
    pub action: String,

    /// Action-specific parameters as strings, e.g. `replicas: "3"`. Unknown
    /// parameter names are rejected. At most 16 parameters of at most 256 KiB
    /// each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16, "additionalProperties" = {"type": "string", "maxLength": 262144}))]
    pub parameters: BTreeMap<String, String>,

    /// The object the action acts on.
    pub target_resource: TargetResource,

    /// Validate and evaluate policies and preconditions, run the server-side
    /// dry run where the API supports it, but never mutate anything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,

    /// Overall time limit as a Go duration (`90s`, `5m`, `1m30s`, `1.5m`,
    /// `1h0m0s` — what `metav1.Duration` renders); `0s` or absent: the
    /// action's catalog default. At least `1s`, at most `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$"),
        length(max = 32)
    )]
    pub timeout: Option<String>,

    /// Job-level retries of transient failures (0..5, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 5))]
    pub max_retries: Option<i32>,

    /// Conditions that must hold before the action runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preconditions: Vec<ActionCondition>,

    /// Conditions verified after the action ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postconditions: Vec<ActionCondition>,

    /// The implementation plan's spelling of `preconditions`, accepted as
    /// the same field (an execution that uses both spellings is refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_conditions: Vec<ActionCondition>,

    /// The implementation plan's spelling of `postconditions`, accepted as
    /// the same field (an execution that uses both spellings is refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_conditions: Vec<ActionCondition>,

    /// The workflow execution this step belongs to (set by a workflow engine);
    /// copied into labels and status for correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_execution_ref: Option<ObjectReference>,

    /// What to do when another live execution is mutating the same target:
    /// `Wait` (the default; bounded by `timeout`) or `Fail` at once with
    /// reason `TargetBusy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_target_busy: Option<TargetBusyPolicy>,

    /// Position of this execution within its workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub step_number: Option<i32>,

    /// Seconds to keep this execution once it finished; then the operator
    /// deletes it (like a Job's `ttlSecondsAfterFinished`). Absent: the
    /// operator's `--finished-ttl` and `--finished-history-limit`, which do
    /// not apply to executions owned by another object (a workflow's steps
    /// go when their workflow goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,

    /// Who asked for this execution. Written by the API server on create
    /// (the `kubernetes-executor-requester` MutatingAdmissionPolicy) from the
    /// authenticated user of the request: whatever a client sends here is
    /// overwritten, and it cannot be changed afterwards. The operator
    /// authorizes the action as this identity, in the target's scope, and
    /// refuses an execution without it (`RequesterUnauthorized`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Requester>,
}

/// The authenticated identity that created an execution.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    /// User name, e.g. `system:serviceaccount:tenant-a:bot` or `alice`.
    pub username: String,
    /// UID of the user, when the authenticator provides one (ServiceAccount
    /// tokens do; impersonation does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Groups of the user, e.g. `system:serviceaccounts:tenant-a`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// Behaviour when the target is locked by another execution.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TargetBusyPolicy {
    /// Wait for the lock, at most until the execution's timeout.
    #[default]
    Wait,
    /// Fail at once with reason `TargetBusy`.
    Fail,
}

impl KubernetesExecutionSpec {
    /// The preconditions, in whichever spelling the client used
    /// (`preconditions`, or the plan's `preConditions`).
    pub fn pre(&self) -> &[ActionCondition] {
        if self.preconditions.is_empty() {
            &self.pre_conditions
        } else {
            &self.preconditions
        }
    }

    /// The postconditions, in whichever spelling the client used.
    pub fn post(&self) -> &[ActionCondition] {
        if self.postconditions.is_empty() {
            &self.post_conditions
        } else {
            &self.postconditions
        }
    }

    /// A spec for `action` on `target` with everything else defaulted.
    pub fn new(action: impl Into<String>, target: TargetResource) -> Self {
        KubernetesExecutionSpec {
            action: action.into(),
            parameters: BTreeMap::new(),
            target_resource: target,
            dry_run: false,
            timeout: None,
            max_retries: None,
            preconditions: Vec::new(),
            postconditions: Vec::new(),
            pre_conditions: Vec::new(),
            post_conditions: Vec::new(),
            workflow_execution_ref: None,
            on_target_busy: None,
            step_number: None,
            ttl_seconds_after_finished: None,
            requester: None,
        }
    }
}

impl TargetResource {
    /// A target of `kind` named `name`, in `namespace` when given.
    pub fn new(kind: impl Into<String>, name: impl Into<String>, namespace: Option<&str>) -> Self {
        TargetResource {
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.map(String::from),
            labels: None,
        }
    }
}

/// The object an action acts on.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetResource {
    /// Kind of the target, e.g. `Deployment`, `Pod`, `Node`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// Name of the target object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the target; defaults to the execution's namespace for
    /// namespaced kinds, must be empty for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// Labels the client expects on the target (informational; policies see
    /// the live labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A named check evaluated before or after the action.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionCondition {
    /// Name of the condition, reported in `status.validationResults`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// A Rego module name from the policy directory, or inline Rego.
    pub policy: String,
    /// When true (the default) a failed condition fails the execution; when
    /// false it only records a warning.
    #[serde(default = "default_true")]
    pub required: bool,
    /// How long the condition may take to hold (duration, e.g. `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$"))]
    pub timeout: Option<String>,
}

fn default_true() -> bool {
    true
}

impl KubernetesExecution {
    /// `namespace/name` of this execution.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// The current phase (`Pending` when status is not set yet).
    pub fn phase(&self) -> Phase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }
}

/// The CRD as YAML, exactly as committed under `deploy/crds/`.
pub fn crd_yaml() -> String {
    let crd = KubernetesExecution::crd();
    let mut out = String::from(
        "# Generated by `cargo run -p kubernetes-executor-crds --bin crdgen`; do not edit.\n",
    );
    out.push_str(&serde_yaml::to_string(&crd).unwrap_or_else(|e| format!("# error: {e}\n")));
    out
}
