//! JobWatcherActor: one watch on the operator's Jobs; routes each change to
//! the owning ExecutionActor (found by name `exec/<uid>` from the Job's
//! execution-UID label; names can be longer than a label value). A Job whose actor is not running is ignored: an actor that starts
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
    /// A Job of the operator was deleted (its last state).
    Deleted(Box<Job>),
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
            // Deletions too: a Job deleted by someone else must fail its
            // execution at once, not at its timeout.
            let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
            while let Some(item) = stream.next().await {
                let msg = match item {
                    Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => {
                        JobWatcherMsg::Changed(Box::new(job))
                    }
                    Ok(watcher::Event::Delete(job)) => JobWatcherMsg::Deleted(Box::new(job)),
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "job watch error (backing off)");
                        continue;
                    }
                };
                if myself.cast(msg).is_err() {
                    return;
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
        let (job, deleted) = match msg {
            JobWatcherMsg::Changed(job) => (job, false),
            JobWatcherMsg::Deleted(job) => (job, true),
        };
        // By UID: the name label is truncated for names over 63 characters.
        let actor = job
            .labels()
            .get(labels::EXECUTION_UID)
            .and_then(|uid| ActorRef::<ExecutionMsg>::where_is(actor_name(uid)));
        if let Some(actor) = actor {
            let _ = actor.cast(if deleted {
                ExecutionMsg::JobDeleted(job)
            } else {
                ExecutionMsg::JobChanged(job)
            });
        }
        Ok(())
    }
}
