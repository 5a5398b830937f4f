//! RbacActor: grants an action's Job just what it needs, just in time, and
//! takes it back. The bindings themselves are built by [`crate::grants`]:
//! a RoleBinding in the target namespace (namespaced actions), a
//! ClusterRoleBinding (node actions), and for PatchSecret a RoleBinding to
//! read its source in the execution's namespace — one set per execution,
//! deleted when the execution ends.
//!
//! A janitor (`Sweep`, every [`SWEEP_INTERVAL`] on the leader) deletes any
//! labelled grant whose execution is gone or finished: a crash between the
//! grant and its revocation never leaves a credential behind for long.
//!
//! The actor decides what to grant; the API calls run in tasks that answer
//! the caller, so grants for many executions proceed concurrently (done
//! inline, one at a time, they were the bottleneck of real executions under
//! load: every Job waited behind every other execution's RoleBinding write).

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::catalog::ActionSpec;
use crate::grants::{For, Grant, grants_for};
use crate::kube_api::{KubeApi, PATIENCE, retry_for};

/// How often the janitor looks for grants whose execution is gone.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Grants younger than this are never swept (their execution may not be
/// visible to a read yet).
const SWEEP_MIN_AGE: Duration = Duration::from_secs(30);

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
}

/// Shorthand for the actor's reference.
pub type RbacRef = ActorRef<RbacMsg>;

/// The RbacActor.
pub struct RbacActor;

/// State: the API facade, and whether a sweep is running.
pub struct RbacState {
    api: KubeApi,
    janitor: bool,
}

impl Actor for RbacActor {
    type Msg = RbacMsg;
    type State = RbacState;
    type Arguments = KubeApi;

    async fn pre_start(
        &self,
        _myself: RbacRef,
        api: KubeApi,
    ) -> Result<RbacState, ActorProcessingErr> {
        Ok(RbacState {
            api,
            janitor: false,
        })
    }

    async fn handle(
        &self,
        myself: RbacRef,
        msg: RbacMsg,
        state: &mut RbacState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
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
                if !state.janitor {
                    state.janitor = true;
                    myself.send_interval(SWEEP_INTERVAL, || RbacMsg::Sweep);
                    let _ = myself.cast(RbacMsg::Sweep);
                }
            }
            RbacMsg::Sweep => {
                let api = state.api.clone();
                tokio::spawn(async move { sweep(&api).await });
            }
        }
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
async fn sweep(api: &KubeApi) {
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
        if young {
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
