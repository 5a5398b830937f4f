//! PolicyActor: owns the loaded [`PolicySet`]. Loads the safety policy set
//! from `--policy-dir` (fail closed: no set, no action), evaluates
//! decisions with a per-evaluation time limit, and hot-reloads the
//! directory — a broken new set is rejected and the last good one stays
//! (and is reported as a Warning Event on the policies ConfigMap).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{
    ConditionOutcome, FAIL_CLOSED, PolicyError, PolicyInput, PolicySet, Verdict, digest, read_dir,
};
use crate::health::Health;
use crate::metrics::Metrics;

/// Messages of the PolicyActor.
pub enum PolicyMsg {
    /// Evaluate the safety policies for `input` (the documented input schema).
    Evaluate {
        /// Policy input.
        input: Box<PolicyInput>,
        /// Canonical action name (metric label).
        action: String,
        /// Where the verdict goes.
        reply: RpcReplyPort<Verdict>,
    },
    /// Evaluate one pre/postcondition (named module or inline Rego).
    Condition {
        /// Module name or inline Rego.
        policy: String,
        /// Policy input with live cluster state.
        input: Box<PolicyInput>,
        /// Where the outcome goes (an error is a message).
        reply: RpcReplyPort<Result<ConditionOutcome, String>>,
    },
    /// Re-read the policy directory and swap in a changed, valid set.
    Reload,
    /// Test hook (chaos only): fail now.
    Chaos,
}

/// Shorthand for the actor's reference.
pub type PolicyRef = ActorRef<PolicyMsg>;

/// Arguments of the PolicyActor.
pub struct PolicyArgs {
    /// Directory of `.rego` files.
    pub dir: PathBuf,
    /// How often to look for changes.
    pub reload_interval: Duration,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness flags.
    pub health: Arc<Health>,
    /// Where to report rejected policy sets as Events (regarding the
    /// policies ConfigMap), when running against a cluster.
    pub events: Option<crate::k8s::KubeApi>,
    /// The live-actor registry.
    pub registry: Arc<crate::registry::ActorRegistry>,
    /// Parent (for `/actors`).
    pub parent: String,
}

/// Name of the ConfigMap the policies are mounted from (Events refer to it).
pub const POLICY_CONFIGMAP: &str = "kubernetes-executor-policies";

/// State of the PolicyActor.
pub struct PolicyState {
    dir: PathBuf,
    set: Option<PolicySet>,
    source_digest: Option<String>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    events: Option<crate::k8s::KubeApi>,
    pending_event: Option<String>,
    reloads: tokio::task::JoinHandle<()>,
    life: crate::registry::Lifecycle,
}

/// The PolicyActor.
pub struct PolicyActor;

impl PolicyState {
    fn reload(&mut self) {
        let sources = match read_dir(&self.dir, false) {
            Ok(s) => s,
            Err(e) => {
                self.reject(&e);
                return;
            }
        };
        let d = digest(&sources);
        if self.source_digest.as_deref() == Some(d.as_str()) {
            return;
        }
        self.source_digest = Some(d);
        match PolicySet::compile(&sources) {
            Ok(set) => {
                tracing::info!(digest = %set.digest, files = ?set.files, "policy set loaded");
                self.metrics
                    .policy_set_loaded
                    .set(i64::from(!set.is_empty()));
                self.metrics.policy_reload_failing.set(0);
                self.health.set_policy(!set.is_empty(), None);
                self.set = Some(set);
            }
            Err(e) => self.reject(&e),
        }
    }

    fn reject(&mut self, e: &PolicyError) {
        self.metrics.policy_reload_errors.inc();
        self.metrics.policy_reload_failing.set(1);
        self.pending_event = Some(e.to_string());
        tracing::error!(error = %e, kept = ?self.set.as_ref().map(|s| &s.digest), "policy set rejected; keeping the last good set");
        let loaded = self.set.as_ref().is_some_and(|s| !s.is_empty());
        self.health.set_policy(loaded, Some(e.to_string()));
    }
}

impl PolicyState {
    /// Publishes the last rejection as a Warning Event (once).
    async fn publish(&mut self) {
        let (Some(api), Some(error)) = (&self.events, self.pending_event.take()) else {
            return;
        };
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            name: Some(POLICY_CONFIGMAP.into()),
            namespace: Some(api.namespace().to_string()),
            ..Default::default()
        };
        let kept = match &self.set {
            Some(s) if !s.is_empty() => format!("; keeping policy set {}", s.digest),
            _ => "; no policy set is active: every action is denied".into(),
        };
        api.event_about(
            &reference,
            true,
            "LoadPolicies",
            "PolicyRejected",
            format!("{error}{kept}"),
        )
        .await;
    }
}

impl Actor for PolicyActor {
    type Msg = PolicyMsg;
    type State = PolicyState;
    type Arguments = PolicyArgs;

    async fn pre_start(
        &self,
        myself: PolicyRef,
        args: PolicyArgs,
    ) -> Result<PolicyState, ActorProcessingErr> {
        let life = crate::registry::Lifecycle::enter(
            &args.registry,
            &args.metrics,
            "policy",
            &myself.get_name().unwrap_or_default(),
            Some(&args.parent),
            None,
        );
        let reloads =
            crate::registry::post_every(&args.registry, &myself, args.reload_interval, || {
                PolicyMsg::Reload
            });
        let mut state = PolicyState {
            dir: args.dir,
            set: None,
            source_digest: None,
            metrics: args.metrics,
            health: args.health,
            events: args.events,
            pending_event: None,
            reloads,
            life,
        };
        state.reload();
        state.publish().await;
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: PolicyRef,
        state: &mut PolicyState,
    ) -> Result<(), ActorProcessingErr> {
        state.reloads.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: PolicyRef,
        msg: PolicyMsg,
        state: &mut PolicyState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        match msg {
            PolicyMsg::Chaos => panic!("chaos: injected panic in the policy actor"),
            PolicyMsg::Reload => {
                state.reload();
                state.publish().await;
            }
            PolicyMsg::Condition {
                policy,
                input,
                reply,
            } => {
                let start = Instant::now();
                let label = super::condition_label(&policy);
                let out = match &mut state.set {
                    None => Err(FAIL_CLOSED.to_string()),
                    Some(set) => set.evaluate_condition(&policy, &*input).map_err(|e| {
                        state
                            .metrics
                            .policy_evaluation_errors
                            .with_label_values(&[&label])
                            .inc();
                        e.to_string()
                    }),
                };
                state
                    .metrics
                    .policy_evaluation_duration
                    .with_label_values(&[&label])
                    .observe(start.elapsed().as_secs_f64());
                let _ = reply.send(out);
            }
            PolicyMsg::Evaluate {
                input,
                action,
                reply,
            } => {
                let start = Instant::now();
                let verdict = match &mut state.set {
                    None => Verdict {
                        violations: vec![FAIL_CLOSED.to_string()],
                        digest: String::new(),
                        error: None,
                    },
                    Some(set) => match set.evaluate(&*input) {
                        Ok(violations) => Verdict {
                            violations,
                            digest: set.digest.clone(),
                            error: None,
                        },
                        Err(e) => Verdict {
                            violations: vec![],
                            digest: set.digest.clone(),
                            error: Some(e.to_string()),
                        },
                    },
                };
                state
                    .metrics
                    .policy_evaluation_duration
                    .with_label_values(&[super::SAFETY_PACKAGE])
                    .observe(start.elapsed().as_secs_f64());
                if verdict.error.is_some() {
                    state
                        .metrics
                        .policy_evaluation_errors
                        .with_label_values(&[super::SAFETY_PACKAGE])
                        .inc();
                } else if !verdict.allowed() {
                    state
                        .metrics
                        .policy_denials
                        .with_label_values(&[super::deciding_rule(&verdict.violations), &action])
                        .inc();
                }
                let _ = reply.send(verdict);
            }
        }
        state.life.handled(started, None);
        Ok(())
    }
}
