//! New executions waiting for an actor: when `max_live_executions` actors
//! are alive, a further *new* execution (still `Pending`, not being
//! deleted, not restarting) waits here as data — its object without
//! `managedFields`, a few hundred bytes, instead of an actor's task,
//! channels and state (~20 KB, docs/performance.md) — and gets its actor,
//! first come first served, when a live one stops. Nothing is written for
//! a waiting execution (it is `Pending`, as before the operator saw it).

use std::collections::{HashMap, HashSet, VecDeque};

use kubernetes_executor_crds::{KubernetesExecution, Phase};

use super::SupervisorRef;

/// One waiting execution: its latest version, and whether it was first
/// seen in a full list (an earlier operator process may have worked on it).
pub(super) struct Waiter {
    /// Boxed: the map's spare capacity after a backlog drains costs a
    /// pointer per slot, not an execution object.
    pub(super) exec: Box<KubernetesExecution>,
    pub(super) listed: bool,
}

/// The waiting executions, by key (`namespace/name`), in arrival order.
#[derive(Default)]
pub(super) struct Waiting {
    entries: HashMap<String, Waiter>,
    /// Arrival order; may hold keys no longer waiting (skipped when popped,
    /// compacted when they outnumber the waiting ones).
    order: VecDeque<String>,
}

/// Whether `exec` may wait for an actor: new work only. An execution past
/// `Pending` (it may hold a Job, a lock, grants, a running timeout) or being
/// deleted (its finalizer must run) gets its actor at once.
pub(super) fn may_wait(exec: &KubernetesExecution, restarts: u32) -> bool {
    restarts == 0 && exec.metadata.deletion_timestamp.is_none() && exec.phase() == Phase::Pending
}

impl Waiting {
    /// Records (or updates) a waiting execution; it keeps its place.
    pub(super) fn put(&mut self, key: String, exec: KubernetesExecution, listed: bool) {
        match self.entries.get_mut(&key) {
            Some(w) => {
                w.listed |= listed;
                *w.exec = exec;
            }
            None => {
                self.order.push_back(key.clone());
                self.entries.insert(
                    key,
                    Waiter {
                        exec: Box::new(exec),
                        listed,
                    },
                );
            }
        }
    }

    /// Stops waiting for `key` (deleted, or it needs its actor now).
    pub(super) fn remove(&mut self, key: &str) -> Option<Waiter> {
        let w = self.entries.remove(key);
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            let mut seen = HashSet::new();
            self.order
                .retain(|k| entries.contains_key(k) && seen.insert(k.clone()));
        }
        self.shrink();
        w
    }

    /// Gives back what a drained backlog left: the map and the queue
    /// keep their largest capacity otherwise (a 5,000 backlog's ~0.5 MB
    /// of slots, held for the life of the process).
    fn shrink(&mut self) {
        let len = self.entries.len();
        if self.entries.capacity() > 64 && len * 4 < self.entries.capacity() {
            self.entries.shrink_to(len * 2);
        }
        if self.order.capacity() > 64 && self.order.len() * 4 < self.order.capacity() {
            self.order.shrink_to(self.order.len() * 2);
        }
    }

    /// Slots held by the map (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// The longest-waiting execution.
    pub(super) fn pop(&mut self) -> Option<(String, Waiter)> {
        while let Some(key) = self.order.pop_front() {
            if let Some(w) = self.entries.remove(&key) {
                self.shrink();
                return Some((key, w));
            }
        }
        self.shrink();
        None
    }

    /// Keeps only the executions whose keys are in `keys` (after a re-list).
    pub(super) fn retain(&mut self, keys: &HashSet<String>) {
        self.entries.retain(|k, _| keys.contains(k));
    }

    /// How many wait.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none waits.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl super::SupervisorState {
    pub(super) fn max_live(&self) -> usize {
        self.ctx.settings.max_live_executions.max(1)
    }

    /// Stops waiting for `key` (it no longer needs an actor, or is gone).
    pub(super) fn unwait(&mut self, key: &str) {
        if self.waiting.remove(key).is_some() {
            self.count_waiting();
        }
    }

    pub(super) fn count_waiting(&self) {
        self.ctx
            .metrics
            .waiting_executions
            .set(i64::try_from(self.waiting.len()).unwrap_or(i64::MAX));
    }

    /// Gives waiting executions their actors while fewer than the limit live.
    pub(super) async fn admit(&mut self, myself: &SupervisorRef) {
        while self.children.len() < self.max_live() {
            let Some((key, w)) = self.waiting.pop() else {
                break;
            };
            self.spawn(myself, key, *w.exec, w.listed, 0).await;
        }
        self.count_waiting();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(name: &str) -> KubernetesExecution {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubernetesexecution.kubernaut.io/v1alpha1",
            "kind": "KubernetesExecution",
            "metadata": { "name": name, "namespace": "ns", "uid": format!("uid-{name}") },
            "spec": { "action": "ScaleDeployment", "targetResource": { "kind": "Deployment", "name": "web" } },
        }))
        .expect("execution")
    }

    #[test]
    fn a_drained_backlog_gives_its_slots_back() {
        let mut w = Waiting::default();
        for i in 0..5000 {
            w.put(format!("ns/e{i}"), exec(&format!("e{i}")), false);
        }
        assert!(w.capacity() >= 5000);
        for _ in 0..4990 {
            assert!(w.pop().is_some());
        }
        assert_eq!(w.len(), 10);
        assert!(
            w.capacity() <= 128,
            "capacity {} for 10 waiting",
            w.capacity()
        );
        // The rest still come out in order.
        assert_eq!(w.pop().map(|(k, _)| k).as_deref(), Some("ns/e4990"));
    }

    #[test]
    fn first_come_first_served_and_an_update_keeps_its_place() {
        let mut w = Waiting::default();
        w.put("ns/a".into(), exec("a"), false);
        w.put("ns/b".into(), exec("b"), true);
        w.put("ns/a".into(), exec("a"), true);
        assert_eq!(w.len(), 2);
        let (k, a) = w.pop().expect("a");
        assert_eq!(k, "ns/a");
        assert!(a.listed, "an update that was listed keeps `listed`");
        assert_eq!(w.pop().map(|(k, _)| k).as_deref(), Some("ns/b"));
        assert!(w.pop().is_none() && w.is_empty());
    }

    #[test]
    fn removed_executions_are_skipped_and_the_order_stays_bounded() {
        let mut w = Waiting::default();
        for i in 0..500 {
            let k = format!("ns/e{i}");
            w.put(k.clone(), exec(&format!("e{i}")), false);
            if i % 2 == 0 {
                assert!(w.remove(&k).is_some());
            }
        }
        assert_eq!(w.len(), 250);
        assert!(w.order.len() <= 2 * 250 + 64, "order compacted");
        assert_eq!(w.pop().map(|(k, _)| k).as_deref(), Some("ns/e1"));
        let mut keep = HashSet::new();
        keep.insert("ns/e5".to_string());
        w.retain(&keep);
        assert_eq!(w.pop().map(|(k, _)| k).as_deref(), Some("ns/e5"));
        assert!(w.pop().is_none());
    }

    #[test]
    fn only_new_work_waits() {
        let new = exec("a");
        assert!(may_wait(&new, 0));
        assert!(!may_wait(&new, 1), "a restarting actor comes back at once");
        let mut started = exec("b");
        started.status = Some(kubernetes_executor_crds::KubernetesExecutionStatus {
            phase: Some(Phase::Validating),
            ..Default::default()
        });
        assert!(!may_wait(&started, 0));
        let mut deleting = exec("c");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(!may_wait(&deleting, 0));
    }
}
