//! What every actor of the tree shares: the API facade, the names of the
//! shared actors, configuration, metrics, health, the live-actor registry
//! that `/actors` reads and the watch-backed views.

use std::sync::Arc;

use crate::health::Health;
use crate::job::JobConfig;
use crate::k8s::KubeApi;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::registry::ActorRegistry;
use crate::views::Views;

/// Operator-wide settings the actors need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How Jobs are built.
    pub job: JobConfig,
    /// Extra time past the Job deadline before the execution's own timer fails it.
    pub timeout_grace: std::time::Duration,
    /// Testing knob: panic once in an ExecutionActor whose execution carries
    /// the annotation `kubernetesexecution.kubernaut.io/chaos-panic` (off in production).
    pub chaos: bool,
    /// Namespaces (names, or prefixes ending in `*`) whose executions may
    /// carry inline Rego conditions; empty (the default): none may.
    pub inline_conditions: Vec<String>,
    /// How long finished executions are kept (history clean-up).
    pub history: crate::history::HistoryPolicy,
    /// Most execution actors alive at once; further new executions wait,
    /// as data in the supervisor, until one finishes.
    pub max_live_executions: usize,
}

/// Shared context of the actor tree.
#[derive(Clone)]
pub struct Context {
    /// The only way to the Kubernetes API.
    pub api: KubeApi,
    /// Names of the shared singletons (resolved per call: they restart).
    pub peers: Peers,
    /// Settings (shared: every execution actor holds a context).
    pub settings: Arc<Settings>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness.
    pub health: Arc<Health>,
    /// Live actors, for `/actors`.
    pub registry: Arc<ActorRegistry>,
    /// Permits to validate: at most this many executions run their
    /// validation at once; the others wait before their (large) handler
    /// starts, so a burst of thousands costs little memory while it waits.
    pub admission: Arc<tokio::sync::Semaphore>,
    /// Watched kill switch and target locks (None: always ask the API).
    pub views: Option<Views>,
    /// Recent SubjectAccessReview answers.
    pub access: Arc<crate::access_cache::AccessCache>,
}

/// Shared context handle.
pub type Ctx = Arc<Context>;
