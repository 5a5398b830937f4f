//! The whole actor tree, in one place.
//!
//! ```text
//! root (RootActor)                     restarts each singleton with backoff;
//! │                                    too many failures → tree failed
//! ├── policy        PolicyActor        regorus engine, policy reloads
//! │   (a standby replica runs only this; the rest starts when it leads)
//! ├── rbac          RbacActor          just-in-time grants, janitor
//! ├── job-watcher   JobWatcherActor    Job watch → the owning execution
//! ├── kill-switch   KillSwitchActor    pause + target-lock views (watches)
//! └── supervisor    SupervisorActor    execution watch; one child each:
//!     └── exec/<uid>    ExecutionActor     phase machine of one execution
//!         └── verify/<uid>  VerifierActor      postcondition polling
//! ```
//!
//! Every actor registers through [`crate::registry::Lifecycle`] (so
//! `/actors` shows this tree with parents, children, restarts, last errors
//! and mailbox depths), and every parent restarts its children: the root
//! its singletons (here), the supervisor its executions
//! ([`crate::supervisor`]), an execution its verifier
//! ([`crate::execution`]). Nobody holds a singleton's `ActorRef`: callers
//! resolve it by name through [`Peers`], so a restart is invisible to them
//! beyond a short wait.
//!
//! A singleton that fails more than [`SINGLETON_MAX_RESTARTS`] times within
//! [`SINGLETON_RESTART_WINDOW`] is not restarted again: the health flags
//! say the tree failed, `/readyz` and `/healthz` answer 503, and the
//! kubelet replaces the pod.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::context::{Context, Settings};
use crate::health::Health;
use crate::job_watcher::{JobWatcherActor, JobWatcherArgs, JobWatcherMsg};
use crate::k8s::KubeApi;
use crate::kill_switch::{KillSwitchActor, KillSwitchArgs, KillSwitchMsg};
use crate::metrics::Metrics;
use crate::peers::{Peers, Singleton};
use crate::policy::{PolicyActor, PolicyArgs, PolicyMsg};
use crate::rbac::{RbacActor, RbacArgs, RbacMsg};
use crate::registry::{ActorRegistry, Lifecycle, post, post_after};
use crate::supervisor::{SupervisorActor, SupervisorMsg};
use crate::tunables::{
    SINGLETON_MAX_RESTARTS, SINGLETON_RESTART_BACKOFF, SINGLETON_RESTART_BACKOFF_MAX,
    SINGLETON_RESTART_WINDOW,
};
use crate::views::Views;

/// What the tree is built from.
pub struct TreeArgs {
    /// The API facade (operator client).
    pub api: KubeApi,
    /// Settings of the execution actors.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Health flags.
    pub health: Arc<Health>,
    /// The live-actor registry.
    pub registry: Arc<ActorRegistry>,
    /// Names of the singletons.
    pub peers: Peers,
    /// Directory of the `.rego` files.
    pub policy_dir: PathBuf,
    /// How often the PolicyActor looks for changed policies.
    pub policy_reload: Duration,
    /// At most this many executions validate at once.
    pub max_validating: usize,
}

/// Messages of the root.
pub enum TreeMsg {
    /// This replica leads: start the rest of the tree.
    Lead,
    /// Restart a singleton (after its backoff).
    Restart(Singleton),
    /// Test hook (only with `--chaos`): make a singleton panic now and on
    /// its next `times - 1` starts.
    Chaos {
        /// Which one.
        which: Singleton,
        /// How many lives to fail.
        times: u32,
    },
}

/// Shorthand for the root's reference.
pub type TreeRef = ActorRef<TreeMsg>;

/// State of the root.
pub struct TreeState {
    args: TreeArgs,
    views: Views,
    ctx: Option<Arc<Context>>,
    children: HashMap<ractor::ActorId, Singleton>,
    current: HashMap<Singleton, ActorCell>,
    failures: HashMap<Singleton, VecDeque<Instant>>,
    chaos: HashMap<Singleton, u32>,
    leading: bool,
    failed: bool,
    life: Lifecycle,
}

/// The root actor.
pub struct RootActor;

/// Starts the tree (the PolicyActor only, until [`TreeMsg::Lead`]).
pub async fn start(args: TreeArgs) -> Result<(TreeRef, tokio::task::JoinHandle<()>), String> {
    let name = args.peers.root();
    Actor::spawn(Some(name), RootActor, args)
        .await
        .map_err(|e| format!("cannot start the actor tree: {e}"))
}

impl TreeState {
    fn ctx(&mut self) -> Arc<Context> {
        let a = &self.args;
        self.ctx
            .get_or_insert_with(|| {
                Arc::new(Context {
                    api: a.api.clone(),
                    peers: a.peers.clone(),
                    settings: Arc::new(a.settings.clone()),
                    metrics: a.metrics.clone(),
                    health: a.health.clone(),
                    registry: a.registry.clone(),
                    admission: Arc::new(tokio::sync::Semaphore::new(a.max_validating.max(1))),
                    views: Some(self.views.clone()),
                    access: Default::default(),
                })
            })
            .clone()
    }

    async fn spawn(&mut self, myself: &TreeRef, which: Singleton) -> Result<(), String> {
        let name = self.args.peers.name(which);
        let parent = self.args.peers.root();
        let cell = myself.get_cell();
        let a = &self.args;
        let spawned: Result<ActorCell, ractor::SpawnErr> = match which {
            Singleton::Policy => {
                let args = PolicyArgs {
                    dir: a.policy_dir.clone(),
                    reload_interval: a.policy_reload,
                    metrics: a.metrics.clone(),
                    health: a.health.clone(),
                    events: Some(a.api.clone()),
                    registry: a.registry.clone(),
                    parent,
                };
                Actor::spawn_linked(Some(name.clone()), PolicyActor, args, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
            Singleton::Rbac => {
                let args = RbacArgs {
                    api: a.api.clone(),
                    registry: a.registry.clone(),
                    metrics: a.metrics.clone(),
                    parent,
                    peers: a.peers.clone(),
                };
                Actor::spawn_linked(Some(name.clone()), RbacActor, args, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
            Singleton::JobWatcher => {
                let args = JobWatcherArgs {
                    api: a.api.clone(),
                    registry: a.registry.clone(),
                    metrics: a.metrics.clone(),
                    peers: a.peers.clone(),
                    parent,
                };
                Actor::spawn_linked(Some(name.clone()), JobWatcherActor, args, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
            Singleton::KillSwitch => {
                let args = KillSwitchArgs {
                    api: a.api.clone(),
                    views: self.views.clone(),
                    registry: a.registry.clone(),
                    metrics: a.metrics.clone(),
                    parent,
                };
                Actor::spawn_linked(Some(name.clone()), KillSwitchActor, args, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
            Singleton::Supervisor => {
                let ctx = self.ctx();
                Actor::spawn_linked(Some(name.clone()), SupervisorActor, ctx, cell)
                    .await
                    .map(|(r, _)| r.get_cell())
            }
        };
        let cell = spawned.map_err(|e| format!("cannot start {name}: {e}"))?;
        self.children.insert(cell.get_id(), which);
        self.current.insert(which, cell.clone());
        if which == Singleton::Rbac {
            // Only the leader runs the janitor (and only the leader has an
            // RbacActor at all).
            post(
                &self.args.registry,
                &cell.clone().into(),
                RbacMsg::StartJanitor,
            );
        }
        if let Some(left) = self.chaos.get_mut(&which)
            && *left > 0
        {
            *left -= 1;
            self.inject(which);
        }
        Ok(())
    }

    /// Sends a singleton the message that makes it panic.
    fn inject(&self, which: Singleton) {
        let Some(cell) = self.current.get(&which) else {
            return;
        };
        let r = &self.args.registry;
        let cell = cell.clone();
        let _ = match which {
            Singleton::Policy => post(r, &cell.into(), PolicyMsg::Chaos),
            Singleton::Rbac => post(r, &cell.into(), RbacMsg::Chaos),
            Singleton::JobWatcher => post(r, &cell.into(), JobWatcherMsg::Chaos),
            Singleton::KillSwitch => post(r, &cell.into(), KillSwitchMsg::Chaos),
            Singleton::Supervisor => post(r, &cell.into(), SupervisorMsg::Chaos),
        };
    }

    /// The singleton a child cell is, forgotten (it stopped or failed).
    fn forget(&mut self, cell: &ActorCell) -> Option<Singleton> {
        let which = self.children.remove(&cell.get_id())?;
        if self
            .current
            .get(&which)
            .is_some_and(|c| c.get_id() == cell.get_id())
        {
            self.current.remove(&which);
        }
        Some(which)
    }

    /// A singleton died (`error`): restart it after a backoff, or give up.
    fn failed(&mut self, myself: &TreeRef, which: Singleton, error: String) {
        let name = self.args.peers.name(which);
        self.args.registry.record_failure(&name, &error);
        self.args
            .metrics
            .actor_restarts
            .with_label_values(&[which.kind()])
            .inc();
        let now = Instant::now();
        let recent = self.failures.entry(which).or_default();
        recent.push_back(now);
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > SINGLETON_RESTART_WINDOW)
        {
            recent.pop_front();
        }
        let n = recent.len();
        if n > SINGLETON_MAX_RESTARTS {
            let why = format!(
                "{name} failed {n} times within {}s (last error: {})",
                SINGLETON_RESTART_WINDOW.as_secs(),
                crate::status::bounded(&error, 256)
            );
            tracing::error!(actor = %name, error = %error, "{why}; not restarting it: the pod must be replaced");
            self.failed = true;
            self.args.health.set_tree_failed(why);
            return;
        }
        let backoff = SINGLETON_RESTART_BACKOFF
            .saturating_mul(1 << (n.saturating_sub(1)).min(8))
            .min(SINGLETON_RESTART_BACKOFF_MAX);
        tracing::warn!(actor = %name, error = %error, restart = n, ?backoff, "shared actor failed; restarting");
        post_after(&self.args.registry, myself, backoff, move || {
            TreeMsg::Restart(which)
        });
    }
}

impl Actor for RootActor {
    type Msg = TreeMsg;
    type State = TreeState;
    type Arguments = TreeArgs;

    async fn pre_start(
        &self,
        myself: TreeRef,
        args: TreeArgs,
    ) -> Result<TreeState, ActorProcessingErr> {
        let life = Lifecycle::enter(
            &args.registry,
            &args.metrics,
            "root",
            &args.peers.root(),
            None,
            None,
        );
        let mut state = TreeState {
            args,
            views: Views::default(),
            ctx: None,
            children: HashMap::new(),
            current: HashMap::new(),
            failures: HashMap::new(),
            chaos: HashMap::new(),
            leading: false,
            failed: false,
            life,
        };
        // A standby serves probes: it needs its policies (ready once loaded).
        state.spawn(&myself, Singleton::Policy).await?;
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: TreeRef,
        state: &mut TreeState,
    ) -> Result<(), ActorProcessingErr> {
        // Executions first (they may still write status), then the rest.
        state.args.health.set_actors_up(false);
        if let Some(sup) = state.current.get(&Singleton::Supervisor) {
            let _ = sup
                .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10)))
                .await;
        }
        for which in Singleton::ALL.into_iter().rev() {
            if let Some(c) = state.current.remove(&which) {
                c.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: TreeRef,
        msg: TreeMsg,
        state: &mut TreeState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        match msg {
            TreeMsg::Lead if !state.leading => {
                state.leading = true;
                for which in [
                    Singleton::Rbac,
                    Singleton::JobWatcher,
                    Singleton::KillSwitch,
                    Singleton::Supervisor,
                ] {
                    state.spawn(&myself, which).await?;
                }
                state.args.health.set_actors_up(true);
            }
            TreeMsg::Lead => {}
            TreeMsg::Restart(which) => {
                if !state.failed
                    && !state.current.contains_key(&which)
                    && let Err(e) = state.spawn(&myself, which).await
                {
                    // Counts as one more failure (bounded by the limit).
                    tracing::warn!(error = %e, "restart failed");
                    state.failed(&myself, which, e);
                }
            }
            TreeMsg::Chaos { which, times } => {
                if state.args.settings.chaos {
                    state.chaos.insert(which, times.saturating_sub(1));
                    state.inject(which);
                } else {
                    tracing::warn!("chaos request ignored: the operator runs without --chaos");
                }
            }
        }
        state.life.handled(started, None);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: TreeRef,
        evt: SupervisionEvent,
        state: &mut TreeState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(which) = state.forget(&cell) {
                    state.failed(&myself, which, err.to_string());
                }
            }
            // A singleton stops only with the root; any other stop is a
            // failure too (it must come back).
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(which) = state.forget(&cell) {
                    let why = format!("stopped unexpectedly ({})", reason.unwrap_or_default());
                    state.failed(&myself, which, why);
                }
            }
            _ => {}
        }
        Ok(())
    }
}
