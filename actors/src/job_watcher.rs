//! JobWatcherActor: one watch on the operator's Jobs; routes each change to
//! the owning ExecutionActor (found by name `exec/<ns>/<name>` from the Job's
//! labels). A Job whose actor is not running is ignored: an actor that starts
//! later reads its Job itself.

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use kubernetes_executor_crds::labels;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::execution::{ExecutionMsg, actor_name};

/// Messages of the JobWatcherActor.
pub enum JobWatcherMsg {
    /// A Job of the operator changed.
    Changed(Box<Job>),
}

/// Shorthand for the actor's reference.
pub type JobWatcherRef = ActorRef<JobWatcherMsg>;

/// Arguments: client and the operator namespace.
pub struct JobWatcherArgs {
    /// Client for the watch.
    pub client: Client,
    /// Namespace of the Jobs.
    pub namespace: String,
}

/// State: the watch task.
pub struct JobWatcherState {
    task: tokio::task::JoinHandle<()>,
}

/// The JobWatcherActor.
pub struct JobWatcherActor;

impl Actor for JobWatcherActor {
    type Msg = JobWatcherMsg;
    type State = JobWatcherState;
    type Arguments = JobWatcherArgs;

    async fn pre_start(
        &self,
        myself: JobWatcherRef,
        args: JobWatcherArgs,
    ) -> Result<JobWatcherState, ActorProcessingErr> {
        let api: Api<Job> = Api::namespaced(args.client, &args.namespace);
        let cfg = watcher::Config::default().labels(&format!(
            "{}={}",
            labels::MANAGED_BY,
            labels::MANAGER
        ));
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(api, cfg)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(item) = stream.next().await {
                match item {
                    Ok(job) => {
                        if myself.cast(JobWatcherMsg::Changed(Box::new(job))).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "job watch error (backing off)"),
                }
            }
        });
        Ok(JobWatcherState { task })
    }

    async fn post_stop(
        &self,
        _myself: JobWatcherRef,
        state: &mut JobWatcherState,
    ) -> Result<(), ActorProcessingErr> {
        state.task.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: JobWatcherRef,
        msg: JobWatcherMsg,
        _state: &mut JobWatcherState,
    ) -> Result<(), ActorProcessingErr> {
        let JobWatcherMsg::Changed(job) = msg;
        let l = job.labels();
        if let (Some(ns), Some(name)) = (
            l.get(labels::EXECUTION_NAMESPACE),
            l.get(labels::EXECUTION_NAME),
        ) {
            let name = actor_name(ns, name);
            if let Some(actor) = ActorRef::<ExecutionMsg>::where_is(name) {
                let _ = actor.cast(ExecutionMsg::JobChanged(job));
            }
        }
        Ok(())
    }
}
