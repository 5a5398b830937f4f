//! The live-actor registry `/actors` reads, and the one lifecycle guard
//! every actor of the tree holds.
//!
//! Every actor — the root, the shared singletons, the supervisor, each
//! execution and each postcondition verifier — has the same shape here:
//! [`Lifecycle::enter`] when it starts (a registry entry with its parent,
//! `kubernetes_executor_live_actors{kind}` up by one), [`Lifecycle::handled`]
//! per message (count, `kubernetes_executor_message_handling_seconds{actor}`,
//! mailbox depth down by one), and the entry and the gauge go when the guard
//! is dropped with the actor's state — after a clean stop and after a panic
//! alike. Restarts and the last error are recorded by the parent that
//! restarts the actor ([`ActorRegistry::record_failure`]).
//!
//! Mailbox depth counts messages sent with [`post`], [`post_after`] and
//! [`post_every`] (every send in the tree goes through them) and not yet
//! handled. Readers (`/actors`) take a snapshot; writers lock one shard of
//! a `DashMap` for a moment.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use ractor::{ActorRef, Message};

use crate::metrics::Metrics;

/// One live actor as `/actors` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ActorInfo {
    /// `root`, `policy`, `rbac`, `job-watcher`, `kill-switch`,
    /// `supervisor`, `execution`, `postconditions`.
    pub kind: &'static str,
    /// Registered actor name.
    pub name: String,
    /// Name of the parent that restarts it (none for the root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Names of its live children (executions are listed under the
    /// supervisor only as a count, see `child_count`).
    pub children: Vec<String>,
    /// Number of live children.
    pub child_count: usize,
    /// `namespace/name` of the execution, for execution actors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// Current phase, for execution actors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When the actor (this life) started.
    pub started_at: String,
    /// Seconds since start.
    pub age_seconds: f64,
    /// Restarts of this actor (by name), counted by its parent.
    pub restarts: u32,
    /// The error of its last failure, if it ever failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Messages handled in this life.
    pub messages: u64,
    /// Messages sent to it and not yet handled.
    pub mailbox_depth: u64,
    /// Seconds since the last message was handled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message_seconds_ago: Option<f64>,
    /// Recent phase transitions (`from→to reason`), newest last.
    pub transitions: Vec<String>,
}

struct Entry {
    life: u64,
    kind: &'static str,
    parent: Option<String>,
    execution: Option<String>,
    phase: Option<String>,
    started_at: SystemTime,
    started: Instant,
    messages: u64,
    last_message: Option<Instant>,
    transitions: Vec<String>,
    depth: Arc<AtomicI64>,
}

#[derive(Clone, Default)]
struct Failures {
    restarts: u32,
    last_error: Option<String>,
}

/// The registry: live entries by actor name, and failure records by name
/// (kept across lives; an execution's are forgotten when it finishes).
#[derive(Default)]
pub struct ActorRegistry {
    actors: DashMap<String, Entry>,
    failures: DashMap<String, Failures>,
    /// Mailbox counters by name, shared with the senders.
    depths: DashMap<String, Arc<AtomicI64>>,
    lives: AtomicU64,
}

/// The guard an actor keeps in its state: registered while it lives.
pub struct Lifecycle {
    registry: Arc<ActorRegistry>,
    metrics: Arc<Metrics>,
    kind: &'static str,
    name: String,
    life: u64,
    depth: Arc<AtomicI64>,
}

impl Lifecycle {
    /// Registers a starting actor.
    pub fn enter(
        registry: &Arc<ActorRegistry>,
        metrics: &Arc<Metrics>,
        kind: &'static str,
        name: &str,
        parent: Option<&str>,
        execution: Option<String>,
    ) -> Lifecycle {
        Lifecycle::enter_in_phase(registry, metrics, kind, name, parent, execution, None)
    }

    /// Registers a starting actor already in `phase` (execution actors:
    /// `/actors` never shows one without its phase).
    pub fn enter_in_phase(
        registry: &Arc<ActorRegistry>,
        metrics: &Arc<Metrics>,
        kind: &'static str,
        name: &str,
        parent: Option<&str>,
        execution: Option<String>,
        phase: Option<&str>,
    ) -> Lifecycle {
        let life = registry.lives.fetch_add(1, Ordering::Relaxed);
        let depth = registry
            .depths
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(AtomicI64::new(0)))
            .clone();
        registry.actors.insert(
            name.to_string(),
            Entry {
                life,
                kind,
                parent: parent.map(str::to_string),
                execution,
                phase: phase.map(str::to_string),
                started_at: SystemTime::now(),
                started: Instant::now(),
                messages: 0,
                last_message: None,
                transitions: Vec::new(),
                depth: depth.clone(),
            },
        );
        metrics.live_actors.with_label_values(&[kind]).inc();
        Lifecycle {
            registry: registry.clone(),
            metrics: metrics.clone(),
            kind,
            name: name.to_string(),
            life,
            depth,
        }
    }

    /// The actor's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records one handled message: its handling time, the phase (for
    /// executions), one message fewer waiting.
    pub fn handled(&self, started: Instant, phase: Option<&str>) {
        let _ = self
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some((d - 1).max(0))
            });
        self.metrics
            .message_handling
            .with_label_values(&[self.kind])
            .observe(started.elapsed().as_secs_f64());
        if let Some(mut e) = self.registry.actors.get_mut(&self.name)
            && e.life == self.life
        {
            e.messages += 1;
            e.last_message = Some(Instant::now());
            if let Some(p) = phase
                && e.phase.as_deref() != Some(p)
            {
                e.phase = Some(p.to_string());
            }
        }
    }

    /// Records a phase transition (keeps the last 16).
    pub fn transition(&self, entry: String) {
        if let Some(mut e) = self.registry.actors.get_mut(&self.name)
            && e.life == self.life
        {
            e.transitions.push(entry);
            if e.transitions.len() > 16 {
                e.transitions.remove(0);
            }
        }
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        // Only this life's entry: a successor may have registered already.
        let removed = self
            .registry
            .actors
            .remove_if(&self.name, |_, e| e.life == self.life)
            .is_some();
        if removed {
            self.registry
                .depths
                .remove_if(&self.name, |_, d| Arc::ptr_eq(d, &self.depth));
        }
        self.metrics
            .live_actors
            .with_label_values(&[self.kind])
            .dec();
    }
}

impl ActorRegistry {
    /// Whether an actor of this name is live.
    pub fn contains(&self, name: &str) -> bool {
        self.actors.contains_key(name)
    }

    /// Records a failure of the actor `name` that its parent restarts (or
    /// gives up on); returns the restarts counted so far.
    pub fn record_failure(&self, name: &str, error: &str) -> u32 {
        let mut f = self.failures.entry(name.to_string()).or_default();
        f.restarts += 1;
        f.last_error = Some(crate::status::bounded(error, 512));
        f.restarts
    }

    /// Forgets the failure record of `name` (its execution finished).
    pub fn forget_failures(&self, name: &str) {
        self.failures.remove(name);
    }

    /// Restarts counted for `name`.
    pub fn restarts(&self, name: &str) -> u32 {
        self.failures.get(name).map(|f| f.restarts).unwrap_or(0)
    }

    /// Counts one message sent to `name`.
    pub(crate) fn sent(&self, name: &str) {
        if let Some(d) = self.depths.get(name) {
            d.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A snapshot of every entry with ages, children and failures filled in.
    pub fn snapshot(&self) -> Vec<ActorInfo> {
        let now = Instant::now();
        let mut out: Vec<ActorInfo> = self
            .actors
            .iter()
            .map(|e| {
                let failures = self.failures.get(e.key()).map(|f| f.clone());
                ActorInfo {
                    kind: e.kind,
                    name: e.key().clone(),
                    parent: e.parent.clone(),
                    children: Vec::new(),
                    child_count: 0,
                    execution: e.execution.clone(),
                    phase: e.phase.clone(),
                    started_at: k8s_openapi::jiff::Timestamp::try_from(e.started_at)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    age_seconds: (now - e.started).as_secs_f64(),
                    restarts: failures.as_ref().map(|f| f.restarts).unwrap_or(0),
                    last_error: failures.and_then(|f| f.last_error),
                    messages: e.messages,
                    mailbox_depth: e.depth.load(Ordering::Relaxed).max(0) as u64,
                    last_message_seconds_ago: e.last_message.map(|l| (now - l).as_secs_f64()),
                    transitions: e.transitions.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        let mut children: std::collections::HashMap<String, Vec<String>> = Default::default();
        for a in &out {
            if let Some(p) = &a.parent {
                children.entry(p.clone()).or_default().push(a.name.clone());
            }
        }
        for a in &mut out {
            if let Some(c) = children.remove(&a.name) {
                a.child_count = c.len();
                // Thousands of executions: the supervisor lists a count.
                if a.kind != "supervisor" {
                    a.children = c;
                }
            }
        }
        out
    }

    /// Number of live execution actors.
    pub fn executions(&self) -> usize {
        self.actors.iter().filter(|e| e.kind == "execution").count()
    }
}

/// Sends `msg` to `to`, counted in its mailbox depth. `false` when the
/// actor is gone.
pub fn post<M: Message>(registry: &ActorRegistry, to: &ActorRef<M>, msg: M) -> bool {
    let name = to.get_name();
    if let Some(n) = &name {
        registry.sent(n);
    }
    if to.cast(msg).is_ok() {
        return true;
    }
    if let Some(n) = &name
        && let Some(d) = registry.depths.get(n)
    {
        let _ = d.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
            Some((d - 1).max(0))
        });
    }
    false
}

/// Sends `msg()` to `to` after `delay` (a timer task). The task holds a
/// reference to the actor — its cell and mailboxes stay allocated until
/// the timer fires, also after the actor stopped — so a long timer should
/// be kept and aborted when the actor stops (the execution's timeout is).
pub fn post_after<M: Message>(
    registry: &Arc<ActorRegistry>,
    to: &ActorRef<M>,
    delay: Duration,
    msg: impl FnOnce() -> M + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let (registry, to) = (registry.clone(), to.clone());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        post(&registry, &to, msg());
    })
}

/// Sends `msg()` to `to` every `period` until the actor is gone; abort the
/// returned task to stop earlier.
pub fn post_every<M: Message>(
    registry: &Arc<ActorRegistry>,
    to: &ActorRef<M>,
    period: Duration,
    msg: impl Fn() -> M + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let (registry, to) = (registry.clone(), to.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if !post(&registry, &to, msg()) {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new().expect("metrics"))
    }

    #[test]
    fn a_life_registers_and_unregisters_itself_and_only_itself() {
        let (r, m) = (Arc::new(ActorRegistry::default()), metrics());
        let old = Lifecycle::enter(&r, &m, "policy", "policy", Some("root"), None);
        let new = Lifecycle::enter(&r, &m, "policy", "policy", Some("root"), None);
        assert_eq!(m.live_actors.with_label_values(&["policy"]).get(), 2);
        drop(old);
        assert!(r.contains("policy"), "the successor's entry stays");
        assert_eq!(m.live_actors.with_label_values(&["policy"]).get(), 1);
        drop(new);
        assert!(!r.contains("policy"));
        assert_eq!(m.live_actors.with_label_values(&["policy"]).get(), 0);
    }

    #[test]
    fn the_snapshot_shows_the_tree_failures_and_messages() {
        let (r, m) = (Arc::new(ActorRegistry::default()), metrics());
        let _root = Lifecycle::enter(&r, &m, "root", "root", None, None);
        let p = Lifecycle::enter(&r, &m, "policy", "policy", Some("root"), None);
        let _s = Lifecycle::enter(&r, &m, "supervisor", "supervisor", Some("root"), None);
        let _e = Lifecycle::enter(
            &r,
            &m,
            "execution",
            "exec/1",
            Some("supervisor"),
            Some("ns/a".into()),
        );
        assert_eq!(r.record_failure("policy", "boom"), 1);
        assert_eq!(r.record_failure("policy", "boom again"), 2);
        r.sent("policy");
        r.sent("policy");
        p.handled(Instant::now(), None);
        let snap = r.snapshot();
        let get = |n: &str| snap.iter().find(|a| a.name == n).expect(n).clone();
        let root = get("root");
        assert_eq!(root.children, vec!["policy", "supervisor"]);
        let policy = get("policy");
        assert_eq!(
            (policy.restarts, policy.last_error.as_deref()),
            (2, Some("boom again"))
        );
        assert_eq!((policy.messages, policy.mailbox_depth), (1, 1));
        let sup = get("supervisor");
        assert_eq!((sup.child_count, sup.children.len()), (1, 0));
        assert_eq!(r.executions(), 1);
    }
}
