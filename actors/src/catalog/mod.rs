//! The action catalog as data: every built-in action with its aliases,
//! target kind, parameter schema, default timeout, the RBAC rules its Job
//! needs and its scope — and the pure validation of a spec against it.
//! Used by the ExecutionActor (validation), the Job builder, the RBAC
//! manifest generator and `run-action`.

use std::collections::BTreeMap;
use std::time::Duration;

use kubernetes_executor_crds::{KubernetesExecutionSpec, reasons};

use crate::duration::{parse_duration, parse_seconds_or_duration};

/// Upper bound of `spec.timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Upper bound of `spec.maxRetries`.
pub const MAX_RETRIES: i32 = 5;
/// Patches larger than this are rejected at validation (policies may be stricter).
pub const MAX_PATCH_BYTES: usize = 256 * 1024;

/// Whether an action's target lives in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Namespaced target; the Job's grant is a just-in-time RoleBinding.
    Namespaced,
    /// Cluster-scoped target (nodes); the grant is a ClusterRoleBinding.
    Cluster,
}

/// The type and bounds of one parameter.
#[derive(Clone, Copy, Debug)]
pub enum ParamKind {
    /// An integer within `min..=max`.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// `true` or `false`.
    Bool,
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// A container image reference.
    Image,
    /// A Kubernetes object name (DNS-1123 label).
    Name,
    /// A JSON document (merge/strategic patch object or JSON-patch array).
    Patch,
    /// Seconds (`300`) or a duration (`5m`), at most `max`.
    SecondsOrDuration {
        /// Largest allowed value.
        max: Duration,
    },
}

/// One accepted parameter of an action.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    /// Parameter name as written in `spec.parameters`.
    pub name: &'static str,
    /// Type and bounds.
    pub kind: ParamKind,
    /// Whether it must be given.
    pub required: bool,
    /// Value used when it is not given.
    pub default: Option<&'static str>,
    /// The value is sensitive: never echoed in status, events, logs or Job args.
    pub secret: bool,
    /// What it means.
    pub description: &'static str,
}

/// One RBAC rule of an action's ClusterRole.
#[derive(Clone, Copy, Debug)]
pub struct RbacRule {
    /// API groups (`""` is core).
    pub api_groups: &'static [&'static str],
    /// Resources (with subresources, e.g. `deployments/scale`).
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
}

/// The built-in actions. The catalog entry, run-action's dispatch and the
/// API table of target kinds (`k8s`) are exhaustive matches on it: an
/// action added here does not compile until each of them knows it (and a
/// test checks the catalog has exactly one entry per kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// `ScaleDeployment`.
    ScaleDeployment,
    /// `RestartDeployment`.
    RestartDeployment,
    /// `DeletePod`.
    DeletePod,
    /// `PatchConfigMap`.
    PatchConfigMap,
    /// `PatchSecret`.
    PatchSecret,
    /// `UpdateImage`.
    UpdateImage,
    /// `CordonNode`.
    CordonNode,
    /// `DrainNode`.
    DrainNode,
    /// `UncordonNode`.
    UncordonNode,
    /// `RolloutStatus`.
    RolloutStatus,
}

impl ActionKind {
    /// Every action.
    pub const ALL: [ActionKind; 10] = [
        ActionKind::ScaleDeployment,
        ActionKind::RestartDeployment,
        ActionKind::DeletePod,
        ActionKind::PatchConfigMap,
        ActionKind::PatchSecret,
        ActionKind::UpdateImage,
        ActionKind::CordonNode,
        ActionKind::DrainNode,
        ActionKind::UncordonNode,
        ActionKind::RolloutStatus,
    ];

    /// The canonical name.
    pub const fn name(self) -> &'static str {
        match self {
            ActionKind::ScaleDeployment => "ScaleDeployment",
            ActionKind::RestartDeployment => "RestartDeployment",
            ActionKind::DeletePod => "DeletePod",
            ActionKind::PatchConfigMap => "PatchConfigMap",
            ActionKind::PatchSecret => "PatchSecret",
            ActionKind::UpdateImage => "UpdateImage",
            ActionKind::CordonNode => "CordonNode",
            ActionKind::DrainNode => "DrainNode",
            ActionKind::UncordonNode => "UncordonNode",
            ActionKind::RolloutStatus => "RolloutStatus",
        }
    }

    /// The catalog entry.
    pub fn spec(self) -> &'static ActionSpec {
        CATALOG
            .iter()
            .find(|a| a.id == self)
            .expect("every ActionKind has a catalog entry (tested)")
    }
}

/// A catalog entry.
#[derive(Debug)]
pub struct ActionSpec {
    /// Canonical name, e.g. `ScaleDeployment` (always `id.name()`).
    pub name: &'static str,
    /// Which action.
    pub id: ActionKind,
    /// Other accepted names, e.g. `scale_deployment`.
    pub aliases: &'static [&'static str],
    /// What the action does.
    pub description: &'static str,
    /// Kind of the target object.
    pub target_kind: &'static str,
    /// Namespaced or cluster-scoped target.
    pub scope: Scope,
    /// Accepted parameters.
    pub params: &'static [ParamSpec],
    /// Timeout when `spec.timeout` is not set.
    pub default_timeout: Duration,
    /// Whether the action changes the cluster (RolloutStatus only reads).
    pub mutating: bool,
    /// Everything the action's Job may do in the target's scope, and nothing more.
    pub rules: &'static [RbacRule],
    /// What the Job may read in the *execution's* namespace (PatchSecret's
    /// source Secret). Non-empty: a second ClusterRole `<service account>-source`
    /// exists and is bound just in time there, for one execution.
    pub source_rules: &'static [RbacRule],
    /// Conditions checked before every execution of this action.
    pub preconditions: &'static [DefaultCondition],
    /// Conditions verified after every execution of this action.
    pub postconditions: &'static [DefaultCondition],
}

/// A catalog-default pre/postcondition (a named module in the policy set).
#[derive(Clone, Copy, Debug)]
pub struct DefaultCondition {
    /// Condition module name (package `kubernetes_executor.conditions.<name>`).
    pub name: &'static str,
    /// Whether failing it fails the execution.
    pub required: bool,
    /// How long a postcondition may take to hold.
    pub timeout: &'static str,
}

/// The conditions of an execution: the catalog defaults of its action, then
/// the spec's (a spec condition replaces a default of the same name).
pub fn effective_conditions(
    action: &ActionSpec,
    spec: &KubernetesExecutionSpec,
) -> (
    Vec<kubernetes_executor_crds::ActionCondition>,
    Vec<kubernetes_executor_crds::ActionCondition>,
) {
    let merge = |defaults: &[DefaultCondition],
                 given: &[kubernetes_executor_crds::ActionCondition]| {
        let mut out: Vec<kubernetes_executor_crds::ActionCondition> = defaults
            .iter()
            .filter(|d| !given.iter().any(|g| g.name == d.name))
            .map(|d| kubernetes_executor_crds::ActionCondition {
                name: d.name.into(),
                policy: d.name.into(),
                required: d.required,
                timeout: Some(d.timeout.into()),
            })
            .collect();
        out.extend(given.iter().cloned());
        out
    };
    (
        merge(action.preconditions, spec.pre()),
        merge(action.postconditions, spec.post()),
    )
}

impl ActionSpec {
    /// Name of the ClusterRole bound in the execution's namespace for
    /// [`ActionSpec::source_rules`], when the action has any.
    pub fn source_role(&self) -> Option<String> {
        (!self.source_rules.is_empty()).then(|| format!("{}-source", self.service_account()))
    }

    /// Name of the ClusterRole that lets a requester ask for this action
    /// (verb `execute` on `actions/<name>`).
    pub fn execute_role(&self) -> String {
        format!("kubernetes-executor-execute-{}", self.kebab())
    }

    /// `ScaleDeployment` → `scale-deployment`.
    pub fn kebab(&self) -> String {
        kebab(self.name)
    }

    /// Name of the per-action ServiceAccount and ClusterRole.
    pub fn service_account(&self) -> String {
        format!("kubernetes-executor-{}", self.kebab())
    }

    /// The parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// `ScaleDeployment` → `scale-deployment`.
pub fn kebab(name: &str) -> String {
    // `ConfigMap` is one word in resource names (`configmaps`), and in the
    // implementation plan's ServiceAccount `kubernetes-executor-patch-configmap`.
    let name = name.replace("ConfigMap", "Configmap");
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

const fn p(
    name: &'static str,
    kind: ParamKind,
    required: bool,
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required,
        default: None,
        secret: false,
        description,
    }
}

const fn d(
    name: &'static str,
    kind: ParamKind,
    default: &'static str,
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: false,
        default: Some(default),
        secret: false,
        description,
    }
}

/// PatchSecret's parameter naming the Secret (in the execution's namespace)
/// that holds the new data.
pub const FROM_SECRET: &str = "fromSecret";

/// Looks an action up by canonical name or alias.
pub fn lookup(name: &str) -> Option<&'static ActionSpec> {
    CATALOG
        .iter()
        .find(|a| a.name == name || a.aliases.contains(&name))
}

/// Canonical names of every action, comma-separated.
pub fn action_names() -> String {
    CATALOG
        .iter()
        .map(|a| a.name)
        .collect::<Vec<_>>()
        .join(", ")
}

mod table;
mod validate;
pub use table::CATALOG;
pub use validate::*;

#[cfg(test)]
mod tests;
