//! The one module that talks to the Kubernetes API: a typed facade over
//! `kube::Client` used by every actor. Errors are classified once here
//! ([`ApiError::is_transient`]) so callers can retry or give up.

#![allow(clippy::disallowed_types)] // the one home of API I/O (actors/clippy.toml)

use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::api::Api;
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
use kube::runtime::events::{Recorder, Reporter};
use kubernetes_executor_crds::KubernetesExecution;

use crate::catalog::ActionKind;

mod access;
pub mod clients;
mod events;
mod executions;
pub use executions::held;
mod jobs;
pub mod leases;
mod retry;
pub mod watch;
pub use crate::pause::{CONTROL_CONFIGMAP, PAUSE_ANNOTATION};
pub use access::{AdmissionState, Grant, admission};
pub use retry::{PATIENCE, retry_for};

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "kubernetes-executor";

/// An API failure, classified.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The object does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// Optimistic concurrency or create race.
    #[error("conflict on {what}: {message}")]
    Conflict {
        /// The object.
        what: String,
        /// Server message.
        message: String,
    },
    /// RBAC refused.
    #[error("forbidden to {what}: {message}")]
    Forbidden {
        /// The operation.
        what: String,
        /// Server message.
        message: String,
    },
    /// The server rejected the request as invalid.
    #[error("invalid request to {what}: {message}")]
    Invalid {
        /// The operation.
        what: String,
        /// Server message.
        message: String,
    },
    /// Anything else (5xx, 429, timeouts, connection errors): worth retrying.
    #[error("{what} failed: {source}")]
    Transient {
        /// The operation.
        what: String,
        /// Underlying error.
        #[source]
        source: kube::Error,
    },
}

impl ApiError {
    pub(crate) fn classify(what: impl Into<String>, e: kube::Error) -> Self {
        let what = what.into();
        match &e {
            kube::Error::Api(s) if s.code == 404 => ApiError::NotFound { what },
            kube::Error::Api(s) if s.code == 409 => ApiError::Conflict {
                what,
                message: s.message.clone(),
            },
            kube::Error::Api(s) if s.code == 403 => ApiError::Forbidden {
                what,
                message: s.message.clone(),
            },
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => ApiError::Invalid {
                what,
                message: s.message.clone(),
            },
            _ => ApiError::Transient { what, source: e },
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Transient { .. } | ApiError::Conflict { .. })
    }
}

/// Result of a facade call.
pub type ApiResult<T> = Result<T, ApiError>;

/// Identity and labels of a target as read at validation time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetMeta {
    /// UID.
    pub uid: String,
    /// resourceVersion.
    pub resource_version: Option<String>,
    /// Live labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The API resource of an action's target (exhaustive: a new action does
/// not compile until its target kind is here).
fn api_resource(action: ActionKind) -> ApiResource {
    use ActionKind as A;
    let (group, version, kind, plural) = match action {
        A::ScaleDeployment | A::RestartDeployment | A::UpdateImage | A::RolloutStatus => {
            ("apps", "v1", "Deployment", "deployments")
        }
        A::DeletePod => ("", "v1", "Pod", "pods"),
        A::PatchConfigMap => ("", "v1", "ConfigMap", "configmaps"),
        A::PatchSecret => ("", "v1", "Secret", "secrets"),
        A::CordonNode | A::DrainNode | A::UncordonNode => ("", "v1", "Node", "nodes"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The facade. Cheap to clone.
#[derive(Clone)]
pub struct KubeApi {
    client: Client,
    recorder: Recorder,
    namespace: String,
    instance: Option<String>,
    clients: Option<clients::Clients>,
}

impl KubeApi {
    /// A facade for an operator running in `namespace`, reporting events as `instance`.
    pub fn new(client: Client, namespace: &str, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "kubernetes-executor".into(),
            instance: instance.clone(),
        };
        KubeApi {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespace: namespace.to_string(),
            instance,
            clients: None,
        }
    }

    /// A facade whose clients come from `clients` (sharing one connection
    /// pool), so that [`KubeApi::for_execution`] can stamp User-Agents.
    pub fn with_clients(
        clients: clients::Clients,
        namespace: &str,
        instance: Option<String>,
    ) -> Self {
        let mut api = KubeApi::new(clients.operator(), namespace, instance);
        api.clients = Some(clients);
        api
    }

    /// The facade for requests made for executions: one shared client whose
    /// requests carry the User-Agent of the execution whose span they are
    /// made in ([`clients::tag_span`]); an execution's own Event recorder.
    /// Without shared clients, self.
    pub fn for_execution(&self) -> KubeApi {
        match &self.clients {
            Some(c) => {
                let mut api = KubeApi::new(c.executions(), &self.namespace, self.instance.clone());
                api.clients = self.clients.clone();
                api
            }
            None => self.clone(),
        }
    }

    /// The operator's Jobs (for the Job watch).
    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The Leases of the operator namespace (for the lock watch).
    pub fn leases(&self) -> Api<k8s_openapi::api::coordination::v1::Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Nodes (for the watch behind conditions' node view).
    pub fn nodes(&self) -> Api<k8s_openapi::api::core::v1::Node> {
        Api::all(self.client.clone())
    }

    /// Pods of the operator's namespace (for the watch of its Jobs' pods).
    pub fn operator_pods(&self) -> Api<k8s_openapi::api::core::v1::Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// ConfigMaps of `ns` (for the kill switch watch).
    pub fn configmaps(&self, ns: &str) -> Api<k8s_openapi::api::core::v1::ConfigMap> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Namespaces, metadata only (for the kill switch watch).
    pub fn namespace_metadata(
        &self,
    ) -> Api<PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>> {
        Api::all(self.client.clone())
    }

    /// Every execution, untyped (for the supervisor's watch, which decodes
    /// one object at a time).
    pub fn executions_untyped(&self) -> (Api<kube::core::DynamicObject>, ApiResource) {
        let ar = ApiResource::erase::<KubernetesExecution>(&());
        (Api::all_with(self.client.clone(), &ar), ar)
    }

    /// The operator's namespace (where Jobs run).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}
