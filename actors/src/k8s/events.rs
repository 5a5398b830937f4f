//! Kubernetes Events (best effort).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kubernetes_executor_crds::KubernetesExecution;

use super::*;

impl KubeApi {
    /// Publishes a Kubernetes Event about any object (best effort); `action`
    /// is what the operator was doing (e.g. `Reconcile`, `LoadPolicies`).
    pub async fn event_about(
        &self,
        reference: &ObjectReference,
        warning: bool,
        action: &str,
        reason: &str,
        note: String,
    ) {
        let ev = KubeEvent {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.chars().take(128).collect(),
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::debug!(error = %e, "failed to publish event");
        }
    }

    /// Publishes a Kubernetes Event about an execution (best effort).
    pub async fn event(
        &self,
        exec: &KubernetesExecution,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        self.event_about(&exec.object_ref(&()), warning, "Reconcile", reason, note)
            .await;
    }
}
