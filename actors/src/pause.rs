//! The kill switch's names and messages (pure): which ConfigMap and which
//! namespace annotation pause new executions, and how status says so.
//! Shared by the views ([`crate::views`]) and the API facade's fallback
//! reads ([`crate::k8s`]).

/// Name of the ConfigMap (operator namespace) whose `data.paused: "true"`
/// pauses every new execution.
pub const CONTROL_CONFIGMAP: &str = "kubernetes-executor-control";
/// Namespace annotation that pauses new executions in that namespace.
pub const PAUSE_ANNOTATION: &str = "kubernetesexecution.kubernaut.io/paused";

/// Pause reason for the cluster-wide switch.
pub fn global_reason(operator_ns: &str) -> String {
    format!(
        "new executions are paused cluster-wide (ConfigMap {operator_ns}/{CONTROL_CONFIGMAP} has paused=\"true\")"
    )
}

/// Pause reason for a paused namespace.
pub fn namespace_reason(ns: &str) -> String {
    format!("new executions in namespace {ns} are paused (annotation {PAUSE_ANNOTATION}=\"true\")")
}
