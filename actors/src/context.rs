//! What every actor of the tree shares: the API facade, the shared actors'
//! refs, configuration, metrics, health and the live-actor registry that
//! `/actors` reads.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use crate::health::Health;
use crate::job::JobConfig;
use crate::kube_api::KubeApi;
use crate::metrics::Metrics;
use crate::policy::PolicyRef;
use crate::rbac::RbacRef;

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
}

/// Shared context of the actor tree.
#[derive(Clone)]
pub struct Context {
    /// The only way to the Kubernetes API.
    pub api: KubeApi,
    /// The PolicyActor.
    pub policy: PolicyRef,
    /// The RbacActor.
    pub rbac: RbacRef,
    /// Settings.
    pub settings: Settings,
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
    /// Watched target locks (None: always ask the API).
    pub locks: Option<crate::lock_watch::LockWatch>,
}

/// One live actor as `/actors` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ActorInfo {
    /// `execution`, `supervisor`, `policy`, `rbac`, `job-watcher`.
    pub kind: &'static str,
    /// Registered actor name.
    pub name: String,
    /// `namespace/name` of the execution, for execution actors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// Current phase, for execution actors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When the actor started.
    pub started_at: String,
    /// Seconds since start.
    pub age_seconds: f64,
    /// Restarts of this actor (by key).
    pub restarts: u32,
    /// Messages handled.
    pub messages: u64,
    /// Seconds since the last message was handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message_seconds_ago: Option<f64>,
    /// Recent phase transitions (`from→to reason`), newest last.
    pub transitions: Vec<String>,
    #[serde(skip)]
    started: Option<Instant>,
    #[serde(skip)]
    last_message: Option<Instant>,
}

impl ActorInfo {
    /// A fresh entry.
    pub fn new(kind: &'static str, name: String, execution: Option<String>, restarts: u32) -> Self {
        ActorInfo {
            kind,
            name,
            execution,
            phase: None,
            started_at: k8s_openapi::jiff::Timestamp::try_from(SystemTime::now())
                .map(|t| t.to_string())
                .unwrap_or_default(),
            age_seconds: 0.0,
            restarts,
            messages: 0,
            last_message_seconds_ago: None,
            transitions: Vec::new(),
            started: Some(Instant::now()),
            last_message: None,
        }
    }
}

/// The live-actor registry: writers are the actors themselves (one short
/// lock per message), readers are `/actors` requests (a snapshot copy).
#[derive(Default)]
pub struct ActorRegistry {
    actors: RwLock<BTreeMap<String, ActorInfo>>,
}

impl ActorRegistry {
    /// Adds or replaces an entry.
    pub fn insert(&self, info: ActorInfo) {
        if let Ok(mut m) = self.actors.write() {
            m.insert(info.name.clone(), info);
        }
    }

    /// Whether an actor of this name is live.
    pub fn contains(&self, name: &str) -> bool {
        self.actors.read().is_ok_and(|m| m.contains_key(name))
    }

    /// Removes an entry.
    pub fn remove(&self, name: &str) {
        if let Ok(mut m) = self.actors.write() {
            m.remove(name);
        }
    }

    /// Records a handled message (and the phase, when known).
    pub fn touch(&self, name: &str, phase: Option<&str>) {
        if let Ok(mut m) = self.actors.write()
            && let Some(i) = m.get_mut(name)
        {
            i.messages += 1;
            i.last_message = Some(Instant::now());
            if let Some(p) = phase {
                i.phase = Some(p.to_string());
            }
        }
    }

    /// Records a phase transition (keeps the last 16).
    pub fn transition(&self, name: &str, entry: String) {
        if let Ok(mut m) = self.actors.write()
            && let Some(i) = m.get_mut(name)
        {
            i.transitions.push(entry);
            if i.transitions.len() > 16 {
                i.transitions.remove(0);
            }
        }
    }

    /// A snapshot of every entry with ages filled in.
    pub fn snapshot(&self) -> Vec<ActorInfo> {
        let now = Instant::now();
        self.actors
            .read()
            .map(|m| {
                m.values()
                    .map(|i| {
                        let mut i = i.clone();
                        i.age_seconds = i
                            .started
                            .map(|s| (now - s).as_secs_f64())
                            .unwrap_or_default();
                        i.last_message_seconds_ago =
                            i.last_message.map(|l| (now - l).as_secs_f64());
                        i
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of live execution actors.
    pub fn executions(&self) -> usize {
        self.actors
            .read()
            .map(|m| m.values().filter(|i| i.kind == "execution").count())
            .unwrap_or_default()
    }
}

/// Shared context handle.
pub type Ctx = Arc<Context>;
