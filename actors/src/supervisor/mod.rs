//! SupervisorActor: watches KubernetesExecutions (watcher with backoff) and
//! keeps exactly one linked ExecutionActor per execution that needs one
//! (non-terminal, or being deleted with the operator's finalizer) — new
//! executions beyond `max_live_executions` wait for theirs ([`waiting`]). It
//! re-syncs after a watch restart (actors whose execution vanished are
//! stopped) and restarts failed children with exponential backoff and an
//! intensity limit; a restarted child re-reads the resource and resumes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::core::DynamicObject;
use kube::runtime::watcher;
use kubernetes_executor_crds::{FINALIZER, KubernetesExecution};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::context::Ctx;
use crate::execution::{ExecutionActor, ExecutionArgs, ExecutionMsg, ExecutionRef, FINISHED};
use crate::k8s::watch::{Change, watch};

mod finished;
mod recovery;
mod waiting;
use crate::registry::{Lifecycle, post, post_after};
use crate::tunables::{
    EXECUTION_MAX_RESTARTS as MAX_RESTARTS, EXECUTION_RESTART_BACKOFF,
    EXECUTION_RESTART_WINDOW as RESTART_WINDOW,
};
use finished::Finished;
use recovery::{abandon, decode};
use waiting::{Waiting, may_wait};

/// Messages of the SupervisorActor.
pub enum SupervisorMsg {
    /// A change seen by the execution watch (decoded here, one object at
    /// a time).
    Watch(Box<Change<DynamicObject>>),
    /// Test hook (chaos only): fail now.
    Chaos,
    /// Delete finished executions past their TTL or history limit.
    SweepHistory,
    /// Restart the actor of `ns/name` (after a backoff).
    Respawn {
        /// Namespace.
        ns: String,
        /// Name.
        name: String,
    },
}

/// Shorthand for the actor's reference.
pub type SupervisorRef = ActorRef<SupervisorMsg>;

struct Child {
    actor: ExecutionRef,
    uid: String,
}

#[derive(Default)]
struct RestartRecord {
    count: u32,
    window_start: Option<Instant>,
}

/// State of the SupervisorActor.
pub struct SupervisorState {
    ctx: Ctx,
    children: HashMap<String, Child>,
    /// Key of each spawned actor by id (supervision events name the cell).
    ids: HashMap<ractor::ActorId, String>,
    finished: Finished,
    /// New executions waiting for an actor (`max_live_executions` live).
    waiting: Waiting,
    restarts: HashMap<String, RestartRecord>,
    init_keys: Option<HashSet<String>>,
    /// Finished executions present, for history clean-up.
    history: crate::history::History,
    sweeps: tokio::task::JoinHandle<()>,
    watch: tokio::task::JoinHandle<()>,
    resource: kube::core::ApiResource,
    life: Lifecycle,
}

/// The SupervisorActor.
pub struct SupervisorActor;

/// Whether an execution needs a live actor.
pub fn needs_actor(exec: &KubernetesExecution) -> bool {
    if exec.metadata.deletion_timestamp.is_some() {
        return exec.finalizers().iter().any(|f| f == FINALIZER);
    }
    !exec.phase().is_terminal()
}

impl SupervisorState {
    /// `listed`: seen in a full list (at start or a re-list), so an earlier
    /// operator process may have worked on it.
    async fn ensure(&mut self, myself: &SupervisorRef, exec: KubernetesExecution, listed: bool) {
        let key = exec.key();
        let uid = exec.uid().unwrap_or_default();
        if let Some(child) = self.children.get(&key) {
            if child.uid == uid {
                post(
                    &self.ctx.registry,
                    &child.actor,
                    ExecutionMsg::Observed(Box::new(exec)),
                );
                return;
            }
            // Same name, new object: the old actor's execution is gone.
            child.actor.stop(Some("execution replaced".into()));
            self.children.remove(&key);
        }
        if !needs_actor(&exec) {
            self.unwait(&key);
            return;
        }
        // Under load the watch can deliver an older version (say, still
        // Validating) after the actor wrote the terminal status and stopped;
        // a new actor would redo the work. A finished execution only needs
        // an actor again to run its finalizer on deletion.
        let deleting = exec.metadata.deletion_timestamp.is_some();
        if self.finished.contains(&uid) && !deleting {
            tracing::debug!(execution = %key, "ignoring a stale event of a finished execution");
            self.unwait(&key);
            return;
        }
        if self.restarts.get(&key).is_some_and(|r| {
            r.count > MAX_RESTARTS
                && r.window_start
                    .is_some_and(|s| s.elapsed() <= RESTART_WINDOW)
        }) {
            return;
        }
        let restarts = self.restarts.get(&key).map(|r| r.count).unwrap_or(0);
        // New work queues behind earlier new work, and waits while the live
        // actors are at the limit (an update keeps its place in the queue).
        if may_wait(&exec, restarts)
            && (!self.waiting.is_empty() || self.children.len() >= self.max_live())
        {
            self.waiting.put(key, exec, listed);
            self.admit(myself).await;
            return;
        }
        let listed = listed || self.waiting.remove(&key).is_some_and(|w| w.listed);
        self.spawn(myself, key, exec, listed, restarts).await;
        self.count_waiting();
    }

    /// Spawns the actor of `exec` (or, if its name is still taken by a
    /// stopping actor, retries shortly from a fresh read).
    async fn spawn(
        &mut self,
        myself: &SupervisorRef,
        key: String,
        exec: KubernetesExecution,
        listed: bool,
        restarts: u32,
    ) {
        let uid = exec.uid().unwrap_or_default();
        let name = self.ctx.peers.execution(&uid);
        let args = ExecutionArgs {
            exec,
            ctx: self.ctx.clone(),
            restarts,
            listed,
        };
        match Actor::spawn_linked(Some(name.clone()), ExecutionActor, args, myself.get_cell()).await
        {
            Ok((actor, _)) => {
                self.ids.insert(actor.get_id(), key.clone());
                self.children.insert(key, Child { actor, uid });
            }
            Err(e) => {
                // The name is still registered by a stopping actor: retry shortly.
                tracing::debug!(error = %e, actor = %name, "spawn failed; retrying");
                let (ns, n) = key
                    .split_once('/')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .unwrap_or_default();
                post_after(
                    &self.ctx.registry,
                    myself,
                    Duration::from_millis(200),
                    move || SupervisorMsg::Respawn { ns, name: n },
                );
            }
        }
    }

    fn stop_child(&mut self, key: &str, why: &str) {
        if let Some(child) = self.children.remove(key) {
            child.actor.stop(Some(why.to_string()));
        }
    }

    /// Forgets a stopped or failed actor; the key it served, if that key's
    /// current child is this actor (not a successor already spawned).
    fn forget(&mut self, cell: &ActorCell) -> Option<(String, String)> {
        let key = self.ids.remove(&cell.get_id())?;
        let current = self
            .children
            .get(&key)
            .is_some_and(|c| c.actor.get_id() == cell.get_id());
        if !current {
            return None;
        }
        let child = self.children.remove(&key)?;
        Some((key, child.uid))
    }
}

impl Actor for SupervisorActor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Ctx;

    async fn pre_start(
        &self,
        myself: SupervisorRef,
        ctx: Ctx,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        // Watched untyped and decoded one object at a time: an object this
        // version cannot decode is reported on itself and skipped, instead
        // of failing the whole watch (and stalling every other execution).
        let (api, resource) = ctx.api.executions_untyped();
        let watch = watch(
            "executions",
            api,
            watcher::Config::default(),
            ctx.registry.clone(),
            myself.clone(),
            |c| Some(SupervisorMsg::Watch(Box::new(c))),
        );
        let sweeps = crate::registry::post_every(
            &ctx.registry,
            &myself,
            crate::tunables::HISTORY_SWEEP,
            || SupervisorMsg::SweepHistory,
        );
        let name = myself.get_name().unwrap_or_default();
        let parent = ctx.peers.root();
        let life = Lifecycle::enter(
            &ctx.registry,
            &ctx.metrics,
            "supervisor",
            &name,
            Some(&parent),
            None,
        );
        Ok(SupervisorState {
            ctx,
            children: HashMap::new(),
            ids: HashMap::new(),
            finished: Finished::default(),
            waiting: Waiting::default(),
            restarts: HashMap::new(),
            init_keys: None,
            history: crate::history::History::default(),
            sweeps,
            watch,
            resource,
            life,
        })
    }

    async fn post_stop(
        &self,
        _myself: SupervisorRef,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        state.watch.abort();
        state.sweeps.abort();
        state.ctx.health.set_watch_synced(false);
        // A clean stop: each execution actor finishes the message it is
        // handling (a status write, a grant revocation) and ends its span
        // before the operator flushes its traces and exits. (ractor would
        // otherwise kill the children after this returns, without waiting.)
        let stops = state.children.values().map(|c| {
            c.actor
                .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
        });
        futures::future::join_all(stops).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: SupervisorRef,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        match msg {
            SupervisorMsg::Chaos => panic!("chaos: injected panic in the supervisor"),
            SupervisorMsg::Watch(change) => match *change {
                Change::Relisting => state.init_keys = Some(HashSet::new()),
                Change::Listed(o) => {
                    // Listed, even if undecodable: its actor (if any) stays.
                    if let Some(keys) = state.init_keys.as_mut() {
                        keys.insert(format!(
                            "{}/{}",
                            o.metadata.namespace.as_deref().unwrap_or_default(),
                            o.metadata.name.as_deref().unwrap_or_default()
                        ));
                    }
                    if let Some(exec) = decode(&state.ctx.api, &state.resource, o).await {
                        state.history.observe(&exec);
                        state.ensure(&myself, exec, true).await;
                    }
                }
                Change::Synced => {
                    // Re-sync: stop actors of executions the fresh list no longer has.
                    if let Some(keys) = state.init_keys.take() {
                        let stale: Vec<String> = state
                            .children
                            .keys()
                            .filter(|k| !keys.contains(*k))
                            .cloned()
                            .collect();
                        for k in stale {
                            state.stop_child(&k, "execution no longer exists");
                        }
                        state.waiting.retain(&keys);
                        state.admit(&myself).await;
                    }
                    state.ctx.health.set_watch_synced(true);
                }
                Change::Applied(o) => {
                    if let Some(exec) = decode(&state.ctx.api, &state.resource, o).await {
                        state.history.observe(&exec);
                        state.ensure(&myself, exec, false).await;
                    }
                }
                Change::Deleted(o) => {
                    let key = format!(
                        "{}/{}",
                        o.metadata.namespace.as_deref().unwrap_or_default(),
                        o.metadata.name.as_deref().unwrap_or_default()
                    );
                    // A live actor cleans up what it made (its Job, its
                    // grants) and stops: an execution deleted while it
                    // ran held no finalizer (a dry run) or someone
                    // removed it.
                    let had_actor = match state.children.remove(&key) {
                        Some(child) => {
                            post(&state.ctx.registry, &child.actor, ExecutionMsg::Gone);
                            true
                        }
                        None => false,
                    };
                    state.unwait(&key);
                    state.admit(&myself).await;
                    state.restarts.remove(&key);
                    state.history.forget(
                        o.metadata.namespace.as_deref().unwrap_or_default(),
                        o.metadata.name.as_deref().unwrap_or_default(),
                    );
                    let had_job = o
                        .data
                        .get("status")
                        .and_then(|st| st.get("jobName"))
                        .is_some();
                    if let Some(uid) = o.metadata.uid.clone() {
                        state
                            .ctx
                            .registry
                            .forget_failures(&state.ctx.peers.execution(&uid));
                        // A finished execution holds no finalizer: its Job
                        // (kept for its TTL) goes with it, best effort; if
                        // the operator is down, the Job's TTL removes it.
                        // None to delete when it never had one, nor when a
                        // live actor deletes it (Gone).
                        if had_job && !had_actor {
                            let api = state.ctx.api.clone();
                            tokio::spawn(async move {
                                let job = crate::job::job_name(&uid, 1);
                                let deleted =
                                    crate::k8s::retry_for(crate::tunables::SHORT_PATIENCE, || {
                                        api.delete_job(&job)
                                    })
                                    .await;
                                if let Err(e) = deleted {
                                    tracing::warn!(job = %job, error = %e, "cannot delete the Job of a deleted execution (its TTL will)");
                                }
                            });
                        }
                    }
                }
                Change::Failed(_) => {}
            },
            SupervisorMsg::SweepHistory => finished::sweep_history(state).await,
            SupervisorMsg::Respawn { ns, name } => {
                match crate::k8s::retry_for(crate::tunables::SHORT_PATIENCE, || {
                    state.ctx.api.get_execution(&ns, &name)
                })
                .await
                {
                    Ok(Some(exec)) => state.ensure(&myself, exec, true).await,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot re-read execution for restart; retrying");
                        post_after(
                            &state.ctx.registry,
                            &myself,
                            Duration::from_secs(2),
                            move || SupervisorMsg::Respawn { ns, name },
                        );
                    }
                }
            }
        }
        state.life.handled(started, None);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: SupervisorRef,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorTerminated(cell, last_state, reason) => {
                // Its state (with its lifecycle guard: the live-actor gauge)
                // goes before a waiting execution takes its place.
                drop(last_state);
                if let Some((key, uid)) = state.forget(&cell) {
                    tracing::debug!(execution = %key, ?reason, "execution actor stopped");
                    if reason.as_deref() == Some(FINISHED) {
                        state
                            .ctx
                            .registry
                            .forget_failures(&state.ctx.peers.execution(&uid));
                        state.finished.insert(uid);
                    }
                    state.admit(&myself).await;
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some((key, uid)) = state.forget(&cell) else {
                    return Ok(());
                };
                // Its slot goes to a waiting execution meanwhile; the
                // restart (below) comes back regardless of the limit.
                state.admit(&myself).await;
                state
                    .ctx
                    .registry
                    .record_failure(&state.ctx.peers.execution(&uid), &err.to_string());
                state
                    .ctx
                    .metrics
                    .actor_restarts
                    .with_label_values(&["execution"])
                    .inc();
                let rec = state.restarts.entry(key.clone()).or_default();
                let now = Instant::now();
                if rec
                    .window_start
                    .is_none_or(|s| now.duration_since(s) > RESTART_WINDOW)
                {
                    *rec = RestartRecord {
                        count: 0,
                        window_start: Some(now),
                    };
                }
                rec.count += 1;
                if rec.count > MAX_RESTARTS {
                    tracing::error!(execution = %key, error = %err, "execution actor keeps failing; giving up");
                    // Never leave an abandoned execution without a status
                    // that says so.
                    let message = format!(
                        "the operator gave up on this execution: its actor failed {} times within {} minutes (last error: {}); \
                         a Job it started may still run",
                        rec.count,
                        RESTART_WINDOW.as_secs() / 60,
                        crate::status::bounded(&err.to_string(), 256)
                    );
                    tokio::spawn(abandon(state.ctx.clone(), key, message));
                    return Ok(());
                }
                let backoff = EXECUTION_RESTART_BACKOFF * 2u32.pow(rec.count.min(8) - 1);
                tracing::warn!(execution = %key, error = %err, restart = rec.count, ?backoff, "execution actor failed; restarting");
                let (ns, name) = key
                    .split_once('/')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .unwrap_or_default();
                post_after(&state.ctx.registry, &myself, backoff, move || {
                    SupervisorMsg::Respawn { ns, name }
                });
            }
            _ => {}
        }
        Ok(())
    }
}
