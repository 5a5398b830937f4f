//! The built-in actions, as data: one entry per [`ActionKind`].

use std::time::Duration;

use super::*;

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
        id: ActionKind::ScaleDeployment,
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
        id: ActionKind::RestartDeployment,
        aliases: &[
            "restart_deployment",
            "restart-deployment",
            "rollout_restart",
            "rollout-restart",
        ],
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
        id: ActionKind::DeletePod,
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
        id: ActionKind::PatchConfigMap,
        aliases: &[
            "patch_configmap",
            "patch_config_map",
            "patch-configmap",
            "update_configmap",
            "update-configmap",
        ],
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
        id: ActionKind::PatchSecret,
        aliases: &[
            "patch_secret",
            "patch-secret",
            "update_secret",
            "update-secret",
        ],
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
        id: ActionKind::UpdateImage,
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
        id: ActionKind::CordonNode,
        aliases: &["cordon_node", "cordon-node"],
        description: "Mark a node unschedulable",
        target_kind: "Node",
        scope: Scope::Cluster,
        params: &[],
        default_timeout: Duration::from_secs(30),
        mutating: true,
        rules: &[NODE_PATCH],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
    ActionSpec {
        name: "DrainNode",
        id: ActionKind::DrainNode,
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
        default_timeout: Duration::from_secs(900),
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
        id: ActionKind::UncordonNode,
        aliases: &["uncordon_node", "uncordon-node"],
        description: "Mark a node schedulable",
        target_kind: "Node",
        scope: Scope::Cluster,
        params: &[],
        default_timeout: Duration::from_secs(30),
        mutating: true,
        rules: &[NODE_PATCH],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
    ActionSpec {
        name: "RolloutStatus",
        id: ActionKind::RolloutStatus,
        aliases: &["rollout_status", "rollout-status"],
        description: "Wait until a Deployment's rollout is complete (read-only)",
        target_kind: "Deployment",
        scope: Scope::Namespaced,
        params: &[],
        default_timeout: Duration::from_secs(60),
        mutating: false,
        rules: &[READ_DEPLOYMENT, READ_REPLICASETS],
        source_rules: &[],
        preconditions: &[],
        postconditions: &[],
    },
];
