//! RbacActor: grants an action's Job just what it needs, just in time. For
//! namespaced actions it creates a RoleBinding in the target namespace that
//! binds the action's ClusterRole to the action's ServiceAccount, for one
//! execution, and deletes it when the execution ends. Node actions are
//! granted by a static ClusterRoleBinding (deploy/).
//!
//! The actor decides what to grant; the API calls run in tasks that answer
//! the caller, so grants for many executions proceed concurrently (done
//! inline, one at a time, they were the bottleneck of real executions under
//! load: every Job waited behind every other execution's RoleBinding write).

use k8s_openapi::api::rbac::v1::RoleBinding;
use kubernetes_executor_crds::labels;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::json;

use crate::catalog::{ActionSpec, Scope};
use crate::kube_api::{ApiError, KubeApi, PATIENCE, retry_for};

/// Name of the just-in-time RoleBinding of an execution.
pub fn binding_name(exec_uid: &str) -> String {
    format!("kubernetes-executor-{exec_uid}")
}

/// Builds the just-in-time RoleBinding (pure).
pub fn role_binding(
    action: &ActionSpec,
    target_ns: &str,
    exec_uid: &str,
    operator_ns: &str,
) -> RoleBinding {
    let sa = action.service_account();
    serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": binding_name(exec_uid),
            "namespace": target_ns,
            "labels": {
                labels::MANAGED_BY: labels::MANAGER,
                labels::EXECUTION_UID: exec_uid,
                labels::ACTION: action.name,
            },
        },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": sa },
        "subjects": [{ "kind": "ServiceAccount", "name": sa, "namespace": operator_ns }],
    }))
    .unwrap_or_default()
}

/// Messages of the RbacActor.
pub enum RbacMsg {
    /// Ensure the grant for one execution exists.
    Grant {
        /// The action.
        action: &'static ActionSpec,
        /// Target namespace (None for cluster-scoped actions).
        target_ns: Option<String>,
        /// Execution UID.
        exec_uid: String,
        /// Result.
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Remove the grant of one execution (idempotent).
    Revoke {
        /// Target namespace (None: nothing to remove).
        target_ns: Option<String>,
        /// Execution UID.
        exec_uid: String,
        /// Result.
        reply: RpcReplyPort<Result<(), String>>,
    },
}

/// Shorthand for the actor's reference.
pub type RbacRef = ActorRef<RbacMsg>;

/// The RbacActor.
pub struct RbacActor;

/// State: the API facade.
pub struct RbacState {
    api: KubeApi,
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
        Ok(RbacState { api })
    }

    async fn handle(
        &self,
        _myself: RbacRef,
        msg: RbacMsg,
        state: &mut RbacState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RbacMsg::Grant {
                action,
                target_ns,
                exec_uid,
                reply,
            } => match (action.scope, target_ns) {
                (Scope::Namespaced, Some(ns)) => {
                    let rb = role_binding(action, &ns, &exec_uid, state.api.namespace());
                    let api = state.api.clone();
                    tokio::spawn(async move {
                        let result = retry_for(PATIENCE, || api.ensure_role_binding(&rb))
                            .await
                            .map_err(|e: ApiError| e.to_string());
                        let _ = reply.send(result);
                    });
                }
                _ => {
                    let _ = reply.send(Ok(()));
                }
            },
            RbacMsg::Revoke {
                target_ns,
                exec_uid,
                reply,
            } => match target_ns {
                Some(ns) => {
                    let name = binding_name(&exec_uid);
                    let api = state.api.clone();
                    tokio::spawn(async move {
                        let result = retry_for(PATIENCE, || api.delete_role_binding(&ns, &name))
                            .await
                            .map_err(|e| e.to_string());
                        let _ = reply.send(result);
                    });
                }
                None => {
                    let _ = reply.send(Ok(()));
                }
            },
        }
        Ok(())
    }
}
