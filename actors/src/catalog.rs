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

/// A catalog entry.
#[derive(Debug)]
pub struct ActionSpec {
    /// Canonical name, e.g. `ScaleDeployment`.
    pub name: &'static str,
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
        merge(action.preconditions, &spec.preconditions),
        merge(action.postconditions, &spec.postconditions),
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

const PATCH_TYPES: &[&str] = &["merge", "json", "strategic"];
const GRACE: ParamKind = ParamKind::Int { min: 0, max: 3600 };
const READ_DEPLOYMENT: RbacRule = RbacRule {
    api_groups: &["apps"],
    resources: &["deployments"],
    verbs: &["get", "list", "watch"],
};
const READ_REPLICASETS: RbacRule = RbacRule {
    api_groups: &["apps"],
    resources: &["replicasets"],
    verbs: &["get", "list"],
};
const NODE_PATCH: RbacRule = RbacRule {
    api_groups: &[""],
    resources: &["nodes"],
    verbs: &["get", "patch"],
};

/// The built-in actions.
pub static CATALOG: &[ActionSpec] = &[
    ActionSpec {
        name: "ScaleDeployment",
        aliases: &["scale_deployment", "scale-deployment"],
        description: "Set a Deployment's replica count and wait for the rollout",
        target_kind: "Deployment",
        scope: Scope::Namespaced,
        params: &[p(
            "replicas",
            ParamKind::Int { min: 0, max: 1000 },
            true,
            "Desired replica count",
        )],
        default_timeout: Duration::from_secs(300),
        mutating: true,
        rules: &[
            RbacRule {
                api_groups: &["apps"],
                resources: &["deployments/scale"],
                verbs: &["get", "update", "patch"],
            },
            READ_DEPLOYMENT,
            READ_REPLICASETS,
        ],
        source_rules: &[],
        preconditions: &[
            // Optional: the operator may not read Secrets, so it can only
            // report pull secrets as unverified (Inconclusive), a warning.
            // Preconditions are evaluated once by default (`0s`); a spec may
            // give one a timeout to wait for it to hold.
            DefaultCondition {
                name: "image_pull_secrets_valid",
                required: false,
                timeout: "0s",
            },
            DefaultCondition {
                name: "node_selector_matches",
                required: true,
                timeout: "0s",
            },
        ],
        postconditions: &[
            DefaultCondition {
                name: "no_crashloop_pods",
                required: true,
                timeout: "60s",
            },
            DefaultCondition {
                name: "resource_usage_acceptable",
                required: false,
                timeout: "30s",
            },
        ],
    },
    ActionSpec {
        name: "RestartDeployment",
        aliases: &["restart_deployment", "restart-deployment"],
        description: "Restart a Deployment's pods (rollout restart) and wait for the rollout",
        target_kind: "Deployment",
        scope: Scope::Namespaced,
        params: &[],
        default_timeout: Duration::from_secs(600),
        mutating: true,
        rules: &[
            RbacRule {
                api_groups: &["apps"],
                resources: &["deployments"],
                verbs: &["get", "list", "watch", "patch"],
            },
            READ_REPLICASETS,
        ],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
    ActionSpec {
        name: "DeletePod",
        aliases: &["delete_pod", "delete-pod"],
        description: "Delete one pod (its controller replaces it)",
        target_kind: "Pod",
        scope: Scope::Namespaced,
        params: &[d(
            "gracePeriodSeconds",
            GRACE,
            "30",
            "Termination grace period",
        )],
        default_timeout: Duration::from_secs(120),
        mutating: true,
        rules: &[RbacRule {
            api_groups: &[""],
            resources: &["pods"],
            verbs: &["get", "delete"],
        }],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
    ActionSpec {
        name: "PatchConfigMap",
        aliases: &["patch_configmap", "patch_config_map", "patch-configmap"],
        description: "Patch a ConfigMap",
        target_kind: "ConfigMap",
        scope: Scope::Namespaced,
        params: &[
            p("patch", ParamKind::Patch, true, "The patch document"),
            d(
                "patchType",
                ParamKind::Enum(PATCH_TYPES),
                "merge",
                "merge, json or strategic",
            ),
        ],
        default_timeout: Duration::from_secs(60),
        mutating: true,
        rules: &[RbacRule {
            api_groups: &[""],
            resources: &["configmaps"],
            verbs: &["get", "patch"],
        }],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
    ActionSpec {
        name: "PatchSecret",
        aliases: &["patch_secret", "patch-secret"],
        description: "Set keys of a Secret from another Secret (values travel by reference, never in the spec)",
        target_kind: "Secret",
        scope: Scope::Namespaced,
        params: &[p(
            FROM_SECRET,
            ParamKind::Name,
            true,
            "Name of a Secret in the execution's namespace whose keys are written into the target",
        )],
        default_timeout: Duration::from_secs(60),
        mutating: true,
        rules: &[RbacRule {
            api_groups: &[""],
            resources: &["secrets"],
            verbs: &["get", "patch"],
        }],
        source_rules: &[RbacRule {
            api_groups: &[""],
            resources: &["secrets"],
            verbs: &["get"],
        }],
        preconditions: &[],
        postconditions: &[],
    },
    ActionSpec {
        name: "UpdateImage",
        aliases: &["update_image", "update-image"],
        description: "Set a container's image in a Deployment and wait for the rollout",
        target_kind: "Deployment",
        scope: Scope::Namespaced,
        params: &[
            p("image", ParamKind::Image, true, "New image reference"),
            p(
                "container",
                ParamKind::Name,
                false,
                "Container name (required when the pod has more than one)",
            ),
        ],
        default_timeout: Duration::from_secs(600),
        mutating: true,
        rules: &[
            RbacRule {
                api_groups: &["apps"],
                resources: &["deployments"],
                verbs: &["get", "list", "watch", "patch"],
            },
            READ_REPLICASETS,
        ],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
    ActionSpec {
        name: "CordonNode",
        aliases: &["cordon_node", "cordon-node"],
        description: "Mark a node unschedulable",
        target_kind: "Node",
        scope: Scope::Cluster,
        params: &[],
        default_timeout: Duration::from_secs(60),
        mutating: true,
        rules: &[NODE_PATCH],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
    ActionSpec {
        name: "DrainNode",
        aliases: &["drain_node", "drain-node"],
        description: "Cordon a node and evict its pods through the Eviction API",
        target_kind: "Node",
        scope: Scope::Cluster,
        params: &[
            d(
                "timeout",
                ParamKind::SecondsOrDuration {
                    max: Duration::from_secs(900),
                },
                "300",
                "How long to keep evicting",
            ),
            p(
                "gracePeriodSeconds",
                GRACE,
                false,
                "Grace period for evicted pods (pod's own when unset)",
            ),
            d(
                "ignoreDaemonSets",
                ParamKind::Bool,
                "true",
                "Skip DaemonSet-managed pods",
            ),
            d(
                "deleteEmptyDirData",
                ParamKind::Bool,
                "false",
                "Evict pods using emptyDir volumes",
            ),
            d(
                "force",
                ParamKind::Bool,
                "false",
                "Evict pods without a controller",
            ),
        ],
        default_timeout: Duration::from_secs(600),
        mutating: true,
        rules: &[
            NODE_PATCH,
            RbacRule {
                api_groups: &[""],
                resources: &["pods"],
                verbs: &["get", "list"],
            },
            RbacRule {
                api_groups: &[""],
                resources: &["pods/eviction"],
                verbs: &["create"],
            },
            RbacRule {
                api_groups: &["policy"],
                resources: &["poddisruptionbudgets"],
                verbs: &["get", "list"],
            },
        ],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
    ActionSpec {
        name: "UncordonNode",
        aliases: &["uncordon_node", "uncordon-node"],
        description: "Mark a node schedulable",
        target_kind: "Node",
        scope: Scope::Cluster,
        params: &[],
        default_timeout: Duration::from_secs(60),
        mutating: true,
        rules: &[NODE_PATCH],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
    ActionSpec {
        name: "RolloutStatus",
        aliases: &["rollout_status", "rollout-status"],
        description: "Wait until a Deployment's rollout is complete (read-only)",
        target_kind: "Deployment",
        scope: Scope::Namespaced,
        params: &[],
        default_timeout: Duration::from_secs(300),
        mutating: false,
        rules: &[READ_DEPLOYMENT, READ_REPLICASETS],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
];

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

/// Why a spec was rejected: a status reason and a message naming the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// One of [`kubernetes_executor_crds::reasons`].
    pub reason: &'static str,
    /// Human-readable, names the offending value.
    pub message: String,
}

impl Rejection {
    /// A rejection with `reason` and `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// The target, with the namespace resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResolvedTarget {
    /// Kind (as the catalog names it).
    pub kind: String,
    /// Namespace (None for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ResolvedTarget {
    /// `Kind/namespace/name` or `Kind/name`.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.kind, ns, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// A spec that passed catalog validation.
#[derive(Clone, Debug)]
pub struct ValidatedAction {
    /// The catalog entry.
    pub action: &'static ActionSpec,
    /// Parameters with defaults filled in.
    pub params: BTreeMap<String, String>,
    /// The target.
    pub target: ResolvedTarget,
    /// Effective timeout.
    pub timeout: Duration,
    /// Effective Job-level retries.
    pub max_retries: i32,
}

/// Validates `spec` (of an execution in `exec_namespace`) against the catalog.
pub fn validate(
    spec: &KubernetesExecutionSpec,
    exec_namespace: &str,
) -> Result<ValidatedAction, Rejection> {
    let action = lookup(&spec.action).ok_or_else(|| {
        Rejection::new(
            reasons::UNKNOWN_ACTION,
            format!(
                "unknown action {:?}; valid actions: {}",
                spec.action,
                action_names()
            ),
        )
    })?;

    let t = &spec.target_resource;
    if t.kind != action.target_kind {
        return Err(Rejection::new(
            reasons::INVALID_TARGET,
            format!(
                "action {} acts on a {}, but targetResource.kind is {:?}",
                action.name, action.target_kind, t.kind
            ),
        ));
    }
    if !is_dns_subdomain(&t.name) {
        return Err(Rejection::new(
            reasons::INVALID_TARGET,
            format!(
                "targetResource.name {:?} is not a valid object name",
                t.name
            ),
        ));
    }
    let namespace = match action.scope {
        Scope::Cluster => {
            if let Some(ns) = t.namespace.as_deref().filter(|ns| !ns.is_empty()) {
                return Err(Rejection::new(
                    reasons::INVALID_TARGET,
                    format!(
                        "{} is cluster-scoped; targetResource.namespace must be empty, got {ns:?}",
                        t.kind
                    ),
                ));
            }
            None
        }
        Scope::Namespaced => {
            let ns = t
                .namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| exec_namespace.to_string());
            if !is_dns_label(&ns) {
                return Err(Rejection::new(
                    reasons::INVALID_TARGET,
                    format!("targetResource.namespace {ns:?} is not a valid namespace name"),
                ));
            }
            Some(ns)
        }
    };

    let params = validate_params(action, &spec.parameters)?;

    let timeout = match &spec.timeout {
        None => action.default_timeout,
        Some(s) => {
            let d = parse_duration(s).map_err(|e| {
                Rejection::new(reasons::INVALID_TIMEOUT, format!("spec.timeout: {e}"))
            })?;
            // A Job's deadline is whole seconds: under 1s it would round to
            // zero and the Job could never run.
            if d < Duration::from_secs(1) || d > MAX_TIMEOUT {
                return Err(Rejection::new(
                    reasons::INVALID_TIMEOUT,
                    format!(
                        "spec.timeout {:?} must be at least 1s and at most 15m",
                        bounded_value(s)
                    ),
                ));
            }
            d
        }
    };
    for c in spec.preconditions.iter().chain(&spec.postconditions) {
        if let Some(s) = &c.timeout {
            parse_duration(s).map_err(|e| {
                Rejection::new(
                    reasons::INVALID_TIMEOUT,
                    format!("timeout of condition {:?}: {e}", c.name),
                )
            })?;
        }
    }
    // A spec condition may share a catalog default's name only to tighten it
    // (same module; required stays required): never to replace or weaken it.
    for (given, defaults) in [
        (&spec.preconditions, action.preconditions),
        (&spec.postconditions, action.postconditions),
    ] {
        for c in given {
            if let Some(d) = defaults.iter().find(|d| d.name == c.name)
                && (c.policy != d.name || (d.required && !c.required))
            {
                return Err(Rejection::new(
                    reasons::INVALID_PARAMETERS,
                    format!(
                        "condition {:?} would replace or weaken the catalog default of the same name \
                         for {} (it must use policy {:?}{}); give it another name",
                        c.name,
                        action.name,
                        d.name,
                        if d.required { " and stay required" } else { "" }
                    ),
                ));
            }
        }
    }
    if let Some(w) = spec
        .workflow_execution_ref
        .as_ref()
        .and_then(|r| r.name.as_deref())
        && !is_dns_subdomain(w)
    {
        return Err(Rejection::new(
            reasons::INVALID_PARAMETERS,
            format!(
                "workflowExecutionRef.name {:?} is not a valid object name",
                bounded_value(w)
            ),
        ));
    }
    let max_retries = spec.max_retries.unwrap_or(0);
    if !(0..=MAX_RETRIES).contains(&max_retries) {
        return Err(Rejection::new(
            reasons::INVALID_PARAMETERS,
            format!("spec.maxRetries {max_retries} is out of range 0..{MAX_RETRIES}"),
        ));
    }

    Ok(ValidatedAction {
        action,
        params,
        target: ResolvedTarget {
            kind: t.kind.clone(),
            namespace,
            name: t.name.clone(),
        },
        timeout,
        max_retries,
    })
}

/// The first path of a ConfigMap patch outside the keys of `data` and
/// `binaryData`, if any.
fn forbidden_patch_path(kind: &str, doc: &serde_json::Value) -> Option<String> {
    if kind == "json" {
        for op in doc.as_array().into_iter().flatten() {
            for field in ["path", "from"] {
                let Some(p) = op.get(field) else { continue };
                let p = p.as_str().unwrap_or_default();
                let key = p
                    .strip_prefix("/data/")
                    .or_else(|| p.strip_prefix("/binaryData/"));
                if key.is_none_or(|k| k.is_empty() || k.contains('/')) {
                    return Some(p.to_string());
                }
            }
        }
        return None;
    }
    for (k, v) in doc.as_object().into_iter().flatten() {
        match k.as_str() {
            "data" | "binaryData" if v.is_object() => {}
            "data" | "binaryData" => return Some(format!("/{k}")),
            other => return Some(format!("/{other}")),
        }
    }
    None
}

/// A value as shown in a message: at most 64 characters of it.
fn bounded_value(v: &str) -> String {
    if v.chars().count() <= 64 {
        v.to_string()
    } else {
        format!("{}…", v.chars().take(64).collect::<String>())
    }
}

/// Checks every parameter against the action's schema and fills defaults.
pub fn validate_params(
    action: &ActionSpec,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Rejection> {
    let invalid = |m: String| Rejection::new(reasons::INVALID_PARAMETERS, m);
    for name in given.keys() {
        if action.param(FROM_SECRET).is_some() && (name == "patch" || name == "patchType") {
            // Never accept secret values inline: they would stay in the
            // (immutable) spec, etcd, audit logs and last-applied annotations.
            return Err(invalid(format!(
                "parameter {name:?} is refused for action {}: secret values never travel in the spec; \
                 put the new keys in a Secret in the execution's namespace and name it with parameter {FROM_SECRET:?}",
                action.name
            )));
        }
        if action.param(name).is_none() {
            let accepted = if action.params.is_empty() {
                "it takes no parameters".to_string()
            } else {
                format!(
                    "accepted: {}",
                    action
                        .params
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(invalid(format!(
                "unknown parameter {name:?} for action {} ({accepted})",
                action.name
            )));
        }
    }
    let mut out = BTreeMap::new();
    for spec in action.params {
        let value = match (given.get(spec.name), spec.default) {
            (Some(v), _) => v.clone(),
            (None, Some(default)) => default.to_string(),
            (None, None) if spec.required => {
                return Err(invalid(format!(
                    "missing required parameter {:?} for action {}",
                    spec.name, action.name
                )));
            }
            (None, None) => continue,
        };
        check_value(spec, &value).map_err(|problem| {
            let shown = if spec.secret {
                "<redacted>".to_string()
            } else {
                format!("{value:?}")
            };
            invalid(format!("parameter {:?} = {shown}: {problem}", spec.name))
        })?;
        out.insert(spec.name.to_string(), value);
    }
    if let (Some(kind), Some(patch)) = (out.get("patchType"), out.get("patch")) {
        let doc: serde_json::Value = serde_json::from_str(patch)
            .map_err(|_| invalid("parameter \"patch\" is not valid JSON".into()))?;
        let ok = if kind == "json" {
            doc.is_array()
        } else {
            doc.is_object()
        };
        if !ok {
            return Err(invalid(format!(
                "parameter \"patch\" must be a JSON {} for patchType {kind:?}",
                if kind == "json" { "array" } else { "object" }
            )));
        }
        if let Some(path) = forbidden_patch_path(kind, &doc) {
            return Err(invalid(format!(
                "parameter \"patch\" touches {:?}: a patch may change only keys under \
                 /data and /binaryData (never metadata such as ownerReferences, finalizers or \
                 labels, never `immutable`, never all of data at once)",
                bounded_value(&path)
            )));
        }
    }
    Ok(out)
}

fn check_value(spec: &ParamSpec, v: &str) -> Result<(), String> {
    match spec.kind {
        ParamKind::Int { min, max } => {
            // One spelling per number: no sign, spaces, leading zeros or
            // exponents, so validation and the Job can never read the same
            // string differently.
            let digits = v.strip_prefix('-').unwrap_or(v);
            let canonical = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'))
                && v != "-0";
            if !canonical {
                return Err("must be an integer written plainly (digits only: no sign, spaces or leading zeros)".into());
            }
            let n: i64 = v.parse().map_err(|_| "must be an integer".to_string())?;
            if n < min || n > max {
                return Err(format!("must be between {min} and {max}"));
            }
        }
        ParamKind::Bool => {
            if v != "true" && v != "false" {
                return Err("must be \"true\" or \"false\"".into());
            }
        }
        ParamKind::Enum(values) => {
            if !values.contains(&v) {
                return Err(format!("must be one of {}", values.join(", ")));
            }
        }
        ParamKind::Image => {
            if v.is_empty()
                || v.len() > 512
                || v.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err("must be a non-empty image reference without whitespace".into());
            }
        }
        ParamKind::Name => {
            if !is_dns_label(v) {
                return Err("must be a valid container name (DNS-1123 label)".into());
            }
        }
        ParamKind::Patch => {
            if v.len() > MAX_PATCH_BYTES {
                return Err(format!(
                    "is {} bytes, more than the {MAX_PATCH_BYTES}-byte limit",
                    v.len()
                ));
            }
            serde_json::from_str::<serde_json::Value>(v)
                .map_err(|_| "must be valid JSON".to_string())?;
        }
        ParamKind::SecondsOrDuration { max } => {
            let d = parse_seconds_or_duration(v)?;
            if d > max {
                return Err(format!("must be at most {}s", max.as_secs()));
            }
        }
    }
    Ok(())
}

/// RFC 1123 label: lowercase alphanumerics and `-`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubernetes_executor_crds::TargetResource;

    fn spec(action: &str, kind: &str, params: &[(&str, &str)]) -> KubernetesExecutionSpec {
        let mut s = KubernetesExecutionSpec::new(action, TargetResource::new(kind, "web", None));
        s.parameters = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    #[test]
    fn every_action_has_a_unique_name_alias_and_rules() {
        let mut seen = std::collections::HashSet::new();
        assert_eq!(CATALOG.len(), 10);
        for a in CATALOG {
            assert!(seen.insert(a.name), "duplicate {}", a.name);
            for alias in a.aliases {
                assert!(seen.insert(alias), "duplicate alias {alias}");
            }
            assert!(!a.rules.is_empty(), "{} has no RBAC rules", a.name);
            assert!(a.default_timeout <= MAX_TIMEOUT);
        }
        assert_eq!(
            lookup("scale_deployment").map(|a| a.name),
            Some("ScaleDeployment")
        );
        assert_eq!(
            lookup("ScaleDeployment")
                .map(|a| a.service_account())
                .as_deref(),
            Some("kubernetes-executor-scale-deployment")
        );
    }

    #[test]
    fn unknown_action_names_it_and_lists_valid_ones() {
        let err = validate(&spec("Reboot", "Node", &[]), "ns").expect_err("unknown");
        assert_eq!(err.reason, reasons::UNKNOWN_ACTION);
        assert!(err.message.contains("\"Reboot\""), "{}", err.message);
        assert!(
            err.message.contains("ScaleDeployment") && err.message.contains("RolloutStatus"),
            "{}",
            err.message
        );
    }

    #[test]
    fn parameters_are_checked_by_name_type_and_bounds() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "missing required parameter \"replicas\""),
            (
                &[("replicas", "three")],
                "\"replicas\" = \"three\": must be an integer",
            ),
            (&[("replicas", "1001")], "must be between 0 and 1000"),
            (&[("replicas", "-1")], "must be between 0 and 1000"),
            (
                &[("replicas", "3"), ("replica", "3")],
                "unknown parameter \"replica\"",
            ),
        ];
        for (params, needle) in cases {
            let err =
                validate(&spec("ScaleDeployment", "Deployment", params), "ns").expect_err(needle);
            assert_eq!(err.reason, reasons::INVALID_PARAMETERS);
            assert!(
                err.message.contains(needle),
                "{} does not contain {needle}",
                err.message
            );
        }
        let ok = validate(
            &spec("ScaleDeployment", "Deployment", &[("replicas", "0")]),
            "shop",
        )
        .expect("valid");
        assert_eq!(ok.target.namespace.as_deref(), Some("shop"));
        assert_eq!(ok.timeout, Duration::from_secs(300));
    }

    #[test]
    fn patches_touch_only_data_keys() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "json",
                r#"[{"op":"add","path":"/metadata/ownerReferences","value":[]}]"#,
                "/metadata/ownerReferences",
            ),
            (
                "json",
                r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#,
                "/metadata/finalizers/0",
            ),
            (
                "json",
                r#"[{"op":"replace","path":"/data","value":{}}]"#,
                "/data",
            ),
            (
                "json",
                r#"[{"op":"add","path":"/immutable","value":true}]"#,
                "/immutable",
            ),
            (
                "json",
                r#"[{"op":"copy","from":"/metadata/name","path":"/data/x"}]"#,
                "/metadata/name",
            ),
            ("merge", r#"{"immutable":true}"#, "/immutable"),
            ("merge", r#"{"data":null}"#, "/data"),
            (
                "strategic",
                r#"{"metadata":{"labels":{"a":"b"}}}"#,
                "/metadata",
            ),
        ];
        for (kind, patch, path) in cases {
            let err = validate(
                &spec(
                    "PatchConfigMap",
                    "ConfigMap",
                    &[("patch", patch), ("patchType", kind)],
                ),
                "ns",
            )
            .expect_err(patch);
            assert_eq!(err.reason, reasons::INVALID_PARAMETERS);
            assert!(
                err.message.contains(&format!("{path:?}")),
                "{patch}: {}",
                err.message
            );
        }
        for (kind, patch) in [
            (
                "json",
                r#"[{"op":"replace","path":"/data/mode","value":"fast"}]"#,
            ),
            ("merge", r#"{"data":{"mode":"fast","old":null}}"#),
            ("strategic", r#"{"binaryData":{"b":"AA=="}}"#),
        ] {
            validate(
                &spec(
                    "PatchConfigMap",
                    "ConfigMap",
                    &[("patch", patch), ("patchType", kind)],
                ),
                "ns",
            )
            .expect(patch);
        }
    }

    #[test]
    fn integers_have_one_spelling() {
        for bad in [
            " 3", "3\n", "+3", "007", "1e3", "3.0", "", "-0", "0x10", "٣",
        ] {
            let err = validate(
                &spec("ScaleDeployment", "Deployment", &[("replicas", bad)]),
                "ns",
            )
            .expect_err(bad);
            assert_eq!(err.reason, reasons::INVALID_PARAMETERS, "{bad:?}");
            assert!(err.message.contains(&format!("{bad:?}")), "{}", err.message);
        }
        for good in ["0", "3", "1000"] {
            validate(
                &spec("ScaleDeployment", "Deployment", &[("replicas", good)]),
                "ns",
            )
            .expect(good);
        }
    }

    #[test]
    fn defaults_are_filled_and_enums_checked() {
        let ok = validate(&spec("DeletePod", "Pod", &[]), "ns").expect("valid");
        assert_eq!(
            ok.params.get("gracePeriodSeconds").map(String::as_str),
            Some("30")
        );
        let ok = validate(&spec("DrainNode", "Node", &[("timeout", "2m")]), "ns").expect("valid");
        assert_eq!(
            ok.params.get("ignoreDaemonSets").map(String::as_str),
            Some("true")
        );
        assert_eq!(ok.target.namespace, None);
        let err = validate(
            &spec(
                "PatchConfigMap",
                "ConfigMap",
                &[("patch", "{}"), ("patchType", "yaml")],
            ),
            "ns",
        )
        .expect_err("bad enum");
        assert!(
            err.message
                .contains("must be one of merge, json, strategic"),
            "{}",
            err.message
        );
        let err = validate(
            &spec(
                "PatchConfigMap",
                "ConfigMap",
                &[("patch", "{}"), ("patchType", "json")],
            ),
            "ns",
        )
        .expect_err("json patch must be an array");
        assert!(err.message.contains("JSON array"), "{}", err.message);
    }

    #[test]
    fn secret_values_are_refused_inline_and_never_echoed() {
        for (name, value) in [
            ("patch", r#"{"stringData":{"password":"hunter2"}}"#),
            ("patchType", "hunter2"),
        ] {
            let err = validate(
                &spec(
                    "PatchSecret",
                    "Secret",
                    &[(name, value), (FROM_SECRET, "new-creds")],
                ),
                "ns",
            )
            .expect_err("inline secret values are refused");
            assert_eq!(err.reason, reasons::INVALID_PARAMETERS);
            assert!(!err.message.contains("hunter2"), "{}", err.message);
            assert!(err.message.contains("fromSecret"), "{}", err.message);
            assert!(
                err.message.contains(&format!("{name:?}")),
                "{}",
                err.message
            );
        }
        let err = validate(&spec("PatchSecret", "Secret", &[]), "ns").expect_err("required");
        assert!(err.message.contains("fromSecret"), "{}", err.message);
        let err = validate(
            &spec("PatchSecret", "Secret", &[(FROM_SECRET, "Not_A_Name")]),
            "ns",
        )
        .expect_err("a Secret name");
        assert!(err.message.contains("Not_A_Name"), "{}", err.message);
        let ok = validate(
            &spec("PatchSecret", "Secret", &[(FROM_SECRET, "new-creds")]),
            "ns",
        )
        .expect("by reference");
        assert_eq!(
            ok.params.get(FROM_SECRET).map(String::as_str),
            Some("new-creds")
        );
        assert!(
            CATALOG.iter().all(|a| a.params.iter().all(|p| !p.secret)),
            "no action takes a secret value as a parameter"
        );
    }

    #[test]
    fn target_kind_and_scope_are_checked() {
        let err = validate(
            &spec("ScaleDeployment", "StatefulSet", &[("replicas", "1")]),
            "ns",
        )
        .expect_err("kind");
        assert_eq!(err.reason, reasons::INVALID_TARGET);
        assert!(err.message.contains("\"StatefulSet\""));
        let mut s = spec("CordonNode", "Node", &[]);
        s.target_resource.namespace = Some("default".into());
        let err = validate(&s, "ns").expect_err("cluster-scoped with namespace");
        assert!(err.message.contains("cluster-scoped"), "{}", err.message);
    }

    #[test]
    fn timeout_and_retries_are_bounded() {
        let mut s = spec("RolloutStatus", "Deployment", &[]);
        s.timeout = Some("16m".into());
        assert_eq!(
            validate(&s, "ns").expect_err("too long").reason,
            reasons::INVALID_TIMEOUT
        );
        for bad in [
            "500ms",
            "0s",
            "18446744073709551615s",
            "99999999999999999999999s",
        ] {
            s.timeout = Some(bad.into());
            assert_eq!(
                validate(&s, "ns").expect_err(bad).reason,
                reasons::INVALID_TIMEOUT,
                "{bad}"
            );
        }
        s.timeout = Some("soon".into());
        let err = validate(&s, "ns").expect_err("bad");
        assert!(err.message.contains("\"soon\""), "{}", err.message);
        s.timeout = Some("90s".into());
        s.max_retries = Some(6);
        assert_eq!(
            validate(&s, "ns").expect_err("retries").reason,
            reasons::INVALID_PARAMETERS
        );
    }

    #[test]
    fn a_spec_condition_cannot_weaken_a_default() {
        let weaken = |policy: &str, required: bool| {
            let mut s = spec("ScaleDeployment", "Deployment", &[("replicas", "1")]);
            s.postconditions = vec![kubernetes_executor_crds::ActionCondition {
                name: "no_crashloop_pods".into(),
                policy: policy.into(),
                required,
                timeout: Some("5s".into()),
            }];
            validate(&s, "ns")
        };
        let err = weaken("no_crashloop_pods", false).expect_err("optional");
        assert_eq!(err.reason, reasons::INVALID_PARAMETERS);
        assert!(
            err.message.contains("\"no_crashloop_pods\""),
            "{}",
            err.message
        );
        let err = weaken("package x\ndeny contains 1 if false", true).expect_err("replaced");
        assert!(err.message.contains("weaken"), "{}", err.message);
        weaken("no_crashloop_pods", true).expect("a shorter timeout tightens it");
        let mut s = spec("ScaleDeployment", "Deployment", &[("replicas", "1")]);
        s.workflow_execution_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
            name: Some("Bad Name/..".into()),
            ..Default::default()
        });
        let err = validate(&s, "ns").expect_err("bad workflow name");
        assert_eq!(err.reason, reasons::INVALID_PARAMETERS);
        assert!(
            err.message.contains("workflowExecutionRef.name"),
            "{}",
            err.message
        );
    }

    #[test]
    fn scale_has_default_conditions_and_spec_overrides_them() {
        let a = lookup("ScaleDeployment").expect("scale");
        let mut s = spec("ScaleDeployment", "Deployment", &[("replicas", "1")]);
        s.postconditions = vec![kubernetes_executor_crds::ActionCondition {
            name: "no_crashloop_pods".into(),
            policy: "no_crashloop_pods".into(),
            required: true,
            timeout: Some("5s".into()),
        }];
        let (pre, post) = effective_conditions(a, &s);
        assert_eq!(
            pre.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["image_pull_secrets_valid", "node_selector_matches"]
        );
        assert_eq!(post.len(), 2);
        let crash = post
            .iter()
            .find(|c| c.name == "no_crashloop_pods")
            .expect("override");
        assert_eq!(
            crash.timeout.as_deref(),
            Some("5s"),
            "the spec's (tighter) version is used"
        );
    }

    #[test]
    fn kebab_case() {
        assert_eq!(kebab("ScaleDeployment"), "scale-deployment");
        assert_eq!(kebab("DrainNode"), "drain-node");
    }
}
