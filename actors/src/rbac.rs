//! RbacActor: grants an action's Job just what it needs, just in time, and
//! takes it back. The bindings themselves are built by [`crate::grants`]:
//! a RoleBinding in the target namespace (namespaced actions), a
//! ClusterRoleBinding (node actions), and for PatchSecret a RoleBinding to
//! read its source in the execution's namespace — one set per execution,
//! deleted when the execution ends.
//!
//! A janitor (`Sweep`, every [`SWEEP_INTERVAL`] on the leader) deletes any
//! labelled grant whose execution is gone or finished: a crash between the
//! grant and its revocation never leaves a credential behind for long. It
//! skips grants whose execution has a live actor in this process (that
//! actor revokes them as it ends): under a burst it read every grant's
//! execution on each sweep and raced the actors' own revocations.
//!
//! The actor decides what to grant; the API calls run in tasks that answer
//! the caller, so grants for many executions proceed concurrently (done
//! inline, one at a time, they were the bottleneck of real executions under
//! load: every Job waited behind every other execution's RoleBinding write).

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::catalog::ActionSpec;
use crate::grants::{For, Grant, grants_for};
use crate::k8s::{KubeApi, PATIENCE, retry_for};

pub use crate::tunables::{SWEEP_INTERVAL, SWEEP_MIN_AGE};

/// The execution a grant is for (owned, for messages).
#[derive(Clone, Debug)]
pub struct ExecutionId {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl ExecutionId {
    fn as_for(&self) -> For<'_> {
        For {
            namespace: &self.namespace,
            name: &self.name,
            uid: &self.uid,
        }
    }
}

/// Messages of the RbacActor.
pub enum RbacMsg {
    /// Ensure every grant of one execution exists.
    Grant {
        /// The action.
        action: &'static ActionSpec,
        /// Target namespace (None for cluster-scoped actions).
        target_ns: Option<String>,
        /// The execution.
        exec: ExecutionId,
        /// Result.
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Remove every grant of one execution (idempotent).
    Revoke {
        /// The action, when known (unknown: the janitor sweeps later).
        action: Option<&'static ActionSpec>,
        /// Target namespace (None for cluster-scoped actions).
        target_ns: Option<String>,
        /// The execution.
        exec: ExecutionId,
        /// Result.
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Start the janitor (sent once this replica leads).
    StartJanitor,
    /// Janitor tick: delete grants whose execution is gone or finished.
    Sweep,
    /// Test hook (chaos only): fail now.
    Chaos,
}

/// Shorthand for the actor's reference.
pub type RbacRef = ActorRef<RbacMsg>;

/// The RbacActor.
pub struct RbacActor;

/// Arguments of the RbacActor.
pub struct RbacArgs {
    /// The API facade.
    pub api: KubeApi,
    /// The live-actor registry.
    pub registry: std::sync::Arc<crate::registry::ActorRegistry>,
    /// Metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Parent (for `/actors`).
    pub parent: String,
    /// Names of the execution actors (the janitor leaves a live one's
    /// grants to it).
    pub peers: crate::peers::Peers,
}

/// State: the API facade, and the janitor's timer once started.
pub struct RbacState {
    api: KubeApi,
    janitor: Option<tokio::task::JoinHandle<()>>,
    registry: std::sync::Arc<crate::registry::ActorRegistry>,
    peers: crate::peers::Peers,
    life: crate::registry::Lifecycle,
}

impl Actor for RbacActor {
    type Msg = RbacMsg;
    type State = RbacState;
    type Arguments = RbacArgs;

    async fn pre_start(
        &self,
        myself: RbacRef,
        args: RbacArgs,
    ) -> Result<RbacState, ActorProcessingErr> {
        let life = crate::registry::Lifecycle::enter(
            &args.registry,
            &args.metrics,
            "rbac",
            &myself.get_name().unwrap_or_default(),
            Some(&args.parent),
            None,
        );
        Ok(RbacState {
            api: args.api,
            janitor: None,
            registry: args.registry,
            peers: args.peers,
            life,
        })
    }

    async fn post_stop(
        &self,
        _myself: RbacRef,
        state: &mut RbacState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(j) = state.janitor.take() {
            j.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: RbacRef,
        msg: RbacMsg,
        state: &mut RbacState,
    ) -> Result<(), ActorProcessingErr> {
        let started = std::time::Instant::now();
        match msg {
            RbacMsg::Chaos => panic!("chaos: injected panic in the RBAC actor"),
            RbacMsg::Grant {
                action,
                target_ns,
                exec,
                reply,
            } => {
                let grants = grants_for(
                    action,
                    target_ns.as_deref(),
                    exec.as_for(),
                    state.api.namespace(),
                );
                let api = state.api.clone();
                tokio::spawn(async move {
                    let mut result = Ok(());
                    for g in &grants {
                        if let Err(e) = retry_for(PATIENCE, || api.ensure_grant(g)).await {
                            result = Err(e.to_string());
                            break;
                        }
                    }
                    let _ = reply.send(result);
                });
            }
            RbacMsg::Revoke {
                action,
                target_ns,
                exec,
                reply,
            } => {
                let grants = action
                    .map(|a| {
                        grants_for(
                            a,
                            target_ns.as_deref(),
                            exec.as_for(),
                            state.api.namespace(),
                        )
                    })
                    .unwrap_or_default();
                let api = state.api.clone();
                tokio::spawn(async move {
                    let _ = reply.send(revoke(&api, &grants).await);
                });
            }
            RbacMsg::StartJanitor => {
                if state.janitor.is_none() {
                    let r = &state.registry;
                    state.janitor = Some(crate::registry::post_every(
                        r,
                        &myself,
                        SWEEP_INTERVAL,
                        || RbacMsg::Sweep,
                    ));
                    crate::registry::post(r, &myself, RbacMsg::Sweep);
                }
            }
            RbacMsg::Sweep => {
                let api = state.api.clone();
                let (registry, peers) = (state.registry.clone(), state.peers.clone());
                // A grant whose execution has a live actor is that actor's
                // to revoke (it does, as it ends): no read, no racing delete.
                let live = move |uid: &str| registry.contains(&peers.execution(uid));
                tokio::spawn(async move { sweep(&api, live).await });
            }
        }
        state.life.handled(started, None);
        Ok(())
    }
}

async fn revoke(api: &KubeApi, grants: &[Grant]) -> Result<(), String> {
    let mut result = Ok(());
    for g in grants {
        if let Err(e) = retry_for(PATIENCE, || api.delete_grant(g)).await {
            result = Err(e.to_string());
        }
    }
    result
}

/// Whether a grant's execution is gone, replaced (another UID) or finished.
fn orphaned(grant: &Grant, live: Option<&kubernetes_executor_crds::KubernetesExecution>) -> bool {
    match live {
        None => true,
        Some(e) => e.metadata.uid.as_deref() != grant.execution_uid() || e.phase().is_terminal(),
    }
}

/// One janitor pass.
async fn sweep(api: &KubeApi, live_actor: impl Fn(&str) -> bool) {
    let grants = match api.list_grants().await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "janitor: cannot list grants");
            return;
        }
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    for g in grants {
        let young = g
            .created()
            .is_some_and(|t| now.duration_since(t.0).unsigned_abs() < SWEEP_MIN_AGE);
        if young || g.execution_uid().is_some_and(&live_actor) {
            continue;
        }
        let live = match g.execution() {
            Some((ns, name)) => match api.get_execution(&ns, &name).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, grant = %g.display(), "janitor: cannot read its execution");
                    continue;
                }
            },
            None => None,
        };
        if orphaned(&g, live.as_ref()) {
            match api.delete_grant(&g).await {
                Ok(()) => {
                    tracing::info!(grant = %g.display(), "janitor: removed a grant whose execution is gone or finished")
                }
                Err(e) => {
                    tracing::warn!(error = %e, grant = %g.display(), "janitor: cannot remove grant")
                }
            }
        }
    }
}
