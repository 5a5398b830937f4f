//! JobWatcherActor: one watch on the operator's Jobs; routes each change to
//! the owning ExecutionActor (found by name `exec/<uid>` from the Job's
//! execution-UID label; names can be longer than a label value). A Job
//! whose actor is not running is ignored: an actor that starts later reads
//! its Job itself. Deletions too: a Job deleted by someone else fails its
//! execution at once, not at its timeout. After a restart the watch lists
//! every Job again, so a change missed while it was down still arrives.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::runtime::watcher;
use kubernetes_executor_crds::labels;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::execution::ExecutionMsg;
use crate::k8s::KubeApi;
use crate::k8s::watch::{Change, watch};
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::registry::{ActorRegistry, Lifecycle, post};

/// Messages of the JobWatcherActor.
pub enum JobWatcherMsg {
    /// A Job of the operator changed.
    Changed(Box<Job>),
    /// A Job of the operator was deleted (its last state).
    Deleted(Box<Job>),
    /// Test hook (chaos only): fail now.
    Chaos,
}

/// Shorthand for the actor's reference.
pub type JobWatcherRef = ActorRef<JobWatcherMsg>;

/// Arguments of the JobWatcherActor.
pub struct JobWatcherArgs {
    /// Where the watch comes from.
    pub api: KubeApi,
    /// The live-actor registry.
    pub registry: Arc<ActorRegistry>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Names of the execution actors.
    pub peers: Peers,
    /// Parent (for `/actors`).
    pub parent: String,
}

/// State: the watch task.
pub struct JobWatcherState {
    task: tokio::task::JoinHandle<()>,
    registry: Arc<ActorRegistry>,
    peers: Peers,
    life: Lifecycle,
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
        let life = Lifecycle::enter(
            &args.registry,
            &args.metrics,
            "job-watcher",
            &myself.get_name().unwrap_or_default(),
            Some(&args.parent),
            None,
        );
        let cfg = watcher::Config::default().labels(&format!(
            "{}={}",
            labels::MANAGED_BY,
            labels::MANAGER
        ));
        let task = watch(
            "jobs",
            args.api.jobs(),
            cfg,
            args.registry.clone(),
            myself,
            |c| match c {
                Change::Listed(j) | Change::Applied(j) => Some(JobWatcherMsg::Changed(Box::new(j))),
                Change::Deleted(j) => Some(JobWatcherMsg::Deleted(Box::new(j))),
                Change::Relisting | Change::Synced | Change::Failed(_) => None,
            },
        );
        Ok(JobWatcherState {
            task,
            registry: args.registry,
            peers: args.peers,
            life,
        })
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
        state: &mut JobWatcherState,
    ) -> Result<(), ActorProcessingErr> {
        let started = std::time::Instant::now();
        let (job, deleted) = match msg {
            JobWatcherMsg::Chaos => panic!("chaos: injected panic in the job watcher"),
            JobWatcherMsg::Changed(job) => (job, false),
            JobWatcherMsg::Deleted(job) => (job, true),
        };
        // By UID: the name label is truncated for names over 63 characters.
        let actor = job
            .labels()
            .get(labels::EXECUTION_UID)
            .and_then(|uid| ActorRef::<ExecutionMsg>::where_is(state.peers.execution(uid)));
        if let Some(actor) = actor {
            post(
                &state.registry,
                &actor,
                if deleted {
                    ExecutionMsg::JobDeleted(job)
                } else {
                    ExecutionMsg::JobChanged(job)
                },
            );
        }
        state.life.handled(started, None);
        Ok(())
    }
}
