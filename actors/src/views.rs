//! Watch-backed views the executions read instead of asking the API
//! server: the kill switch (the control ConfigMap's `paused` key and the
//! namespaces annotated paused), the target locks (the operator's
//! Leases), the termination messages of its Jobs' finished pods (the
//! action's output), and the nodes as conditions see them. The KillSwitchActor ([`crate::kill_switch`]) owns the watches
//! and writes here; executions only read. A view that is not synced —
//! before its first full list, after a watch error until the watch resumes,
//! and while the KillSwitchActor restarts — answers `None`, and the caller
//! asks the API instead: an unsynced view never lets an execution through.
//!
//! Consistency: a pause takes effect for executions picked up after the
//! change reached the watch (milliseconds, the same path the execution
//! itself arrives by). An execution already past `Pending` is never stopped
//! by the switch.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;

pub use crate::pause::{CONTROL_CONFIGMAP, PAUSE_ANNOTATION, global_reason, namespace_reason};

/// A value and whether it is current.
#[derive(Default)]
struct Synced<T> {
    value: RwLock<T>,
    ready: AtomicBool,
}

impl<T> Synced<T> {
    fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        self.value.read().ok().map(|v| f(&v))
    }

    fn write(&self, f: impl FnOnce(&mut T)) {
        if let Ok(mut v) = self.value.write() {
            f(&mut v);
        }
    }

    /// Like [`Self::read`], with the value to change (`None`: not ready).
    fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        self.value.write().ok().map(|mut v| f(&mut v))
    }
}

#[derive(Default)]
struct Inner {
    global: Synced<bool>,
    namespaces: Synced<HashSet<String>>,
    locks: Synced<HashMap<String, Lease>>,
    outputs: Synced<HashMap<String, Vec<PodOutput>>>,
    nodes: Synced<std::collections::BTreeMap<String, crate::policy::input::NodeInput>>,
}

/// A finished pod of one of the operator's Jobs, as the view keeps it:
/// only what the outcome needs (a few hundred bytes, not the pod).
#[derive(Clone, Debug, PartialEq)]
pub struct PodOutput {
    /// Pod name.
    pub pod: String,
    /// Pod phase (`Succeeded`, `Failed`, ...).
    pub phase: String,
    /// Its container's termination message (`run-action`'s JSON).
    pub message: String,
}

/// The Job and output of a pod whose container terminated (else `None`).
pub fn pod_output(p: &Pod) -> Option<(String, PodOutput)> {
    let job = p.metadata.labels.as_ref()?.get("job-name")?.clone();
    let st = p.status.as_ref()?;
    let terminated = st
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    Some((
        job,
        PodOutput {
            pod: p.metadata.name.clone().unwrap_or_default(),
            phase: st.phase.clone().unwrap_or_default(),
            message: terminated.message.clone().unwrap_or_default(),
        },
    ))
}

/// The views; clones share them.
#[derive(Clone, Default)]
pub struct Views {
    inner: Arc<Inner>,
}

impl Views {
    /// Whether new executions in `ns` are paused: `Some(None)` not paused,
    /// `Some(Some(reason))` paused, `None` when not synced (ask the API).
    pub fn paused(&self, operator_ns: &str, ns: &str) -> Option<Option<String>> {
        let global = self.inner.global.read(|g| *g)?;
        let listed = self.inner.namespaces.read(|s| s.contains(ns))?;
        Some(if global {
            Some(global_reason(operator_ns))
        } else if listed {
            Some(namespace_reason(ns))
        } else {
            None
        })
    }

    /// Who holds lock `name` now: `None` when the lock is free, or when the
    /// view is not synced (ask the API then).
    pub fn lock_holder(
        &self,
        name: &str,
        now: k8s_openapi::jiff::Timestamp,
    ) -> Option<crate::lock::Holder> {
        self.inner
            .locks
            .read(|m| m.get(name).map(|l| crate::lock::holder(l, now)))?
    }

    /// Marks every view unsynced (its owner restarts and re-lists).
    pub fn invalidate(&self) {
        self.inner.global.set_ready(false);
        self.inner.namespaces.set_ready(false);
        self.inner.locks.set_ready(false);
        self.inner.outputs.set_ready(false);
        self.inner.nodes.set_ready(false);
    }

    /// Writer side, for the KillSwitchActor.
    pub(crate) fn global(&self, paused: Option<bool>) {
        match paused {
            Some(p) => {
                self.inner.global.write(|g| *g = p);
                self.inner.global.set_ready(true);
            }
            None => self.inner.global.set_ready(false),
        }
    }

    /// Replaces the set of paused namespaces (a full list).
    pub(crate) fn namespaces_listed(&self, set: HashSet<String>) {
        self.inner.namespaces.write(|s| *s = set);
        self.inner.namespaces.set_ready(true);
    }

    /// One namespace changed.
    pub(crate) fn namespace(&self, name: &str, paused: bool) {
        self.inner.namespaces.write(|s| {
            if paused {
                s.insert(name.to_string());
            } else {
                s.remove(name);
            }
        });
        self.inner.namespaces.set_ready(true);
    }

    /// The namespace view may be stale.
    pub(crate) fn namespaces_stale(&self) {
        self.inner.namespaces.set_ready(false);
    }

    /// Replaces the locks (a full list).
    pub(crate) fn locks_listed(&self, mut locks: HashMap<String, Lease>) {
        for l in locks.values_mut() {
            l.metadata.managed_fields = None;
        }
        self.inner.locks.write(|m| *m = locks);
        self.inner.locks.set_ready(true);
    }

    /// One lock changed (`None`: deleted).
    pub(crate) fn lock(&self, name: &str, lease: Option<Lease>) {
        self.inner.locks.write(|m| match lease {
            Some(mut l) => {
                // Kept for the holder and expiry, never the field owners.
                l.metadata.managed_fields = None;
                m.insert(name.to_string(), l);
            }
            None => {
                m.remove(name);
            }
        });
        self.inner.locks.set_ready(true);
    }

    /// Replaces the finished Job pods (a full list).
    pub(crate) fn outputs_listed(&self, outputs: HashMap<String, Vec<PodOutput>>) {
        self.inner.outputs.write(|m| *m = outputs);
        self.inner.outputs.set_ready(true);
    }

    /// A Job pod changed or was deleted (`gone`).
    pub(crate) fn job_pod(&self, p: &Pod, gone: bool) {
        let name = p.metadata.name.clone().unwrap_or_default();
        let job = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("job-name"))
            .cloned();
        let output = if gone { None } else { pod_output(p) };
        self.inner.outputs.write(|m| {
            if let Some(job) = &job
                && let Some(list) = m.get_mut(job)
            {
                list.retain(|o| o.pod != name);
                if list.is_empty() {
                    m.remove(job);
                }
            }
            if let Some((job, o)) = output {
                m.entry(job).or_default().push(o);
            }
        });
        self.inner.outputs.set_ready(true);
    }

    /// The Job pod view may be stale.
    pub(crate) fn outputs_stale(&self) {
        self.inner.outputs.set_ready(false);
    }

    /// Takes the termination message of Job `job`'s pod that ended in
    /// `phase` out of the view: the execution reads it once, when its Job
    /// ended, and the view forgets the Job then (its pods may live on for
    /// the Job's TTL; a later read — a restarted actor — lists them).
    /// `None`: not in the view (not synced, or that pod's end not seen
    /// yet) — read the API.
    pub fn take_termination(&self, job: &str, phase: &str) -> Option<String> {
        self.inner
            .outputs
            .update(|m| {
                let i = m.get(job)?.iter().position(|o| o.phase == phase)?;
                m.remove(job).map(|mut list| list.swap_remove(i).message)
            })
            .flatten()
    }

    /// How many finished Job pods the view holds (for tests and metrics).
    pub fn outputs_held(&self) -> usize {
        self.inner
            .outputs
            .read(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Replaces the nodes (a full list).
    pub(crate) fn nodes_listed(
        &self,
        nodes: std::collections::BTreeMap<String, crate::policy::input::NodeInput>,
    ) {
        self.inner.nodes.write(|m| *m = nodes);
        self.inner.nodes.set_ready(true);
    }

    /// A node changed (`None`: deleted).
    pub(crate) fn node(&self, name: &str, node: Option<crate::policy::input::NodeInput>) {
        self.inner.nodes.write(|m| match node {
            Some(n) => {
                m.insert(name.to_string(), n);
            }
            None => {
                m.remove(name);
            }
        });
        self.inner.nodes.set_ready(true);
    }

    /// The node view may be stale.
    pub(crate) fn nodes_stale(&self) {
        self.inner.nodes.set_ready(false);
    }

    /// The nodes as conditions see them, by name (`None`: not synced — list
    /// them from the API).
    pub fn nodes(&self) -> Option<Vec<crate::policy::input::NodeInput>> {
        self.inner.nodes.read(|m| m.values().cloned().collect())
    }

    /// The lock view may be stale.
    pub(crate) fn locks_stale(&self) {
        self.inner.locks.set_ready(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_pod(name: &str, phase: &str, message: Option<&str>) -> Pod {
        let mut status = serde_json::json!({ "phase": phase });
        if let Some(m) = message {
            status["containerStatuses"] = serde_json::json!([{
                "name": "action", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": { "terminated": { "exitCode": 0, "message": m } }
            }]);
        }
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "job-name": "ke-1" } },
            "status": status,
        }))
        .expect("pod")
    }

    #[test]
    fn the_node_view_follows_the_watch() {
        let n = |name: &str, ready: bool| crate::policy::input::NodeInput {
            name: name.into(),
            labels: Default::default(),
            unschedulable: false,
            ready,
            allocatable_cpu_millis: 1000,
        };
        let v = Views::default();
        assert_eq!(v.nodes(), None, "not listed: list from the API");
        v.nodes_listed(
            [
                ("b".to_string(), n("b", true)),
                ("a".to_string(), n("a", true)),
            ]
            .into(),
        );
        assert_eq!(v.nodes(), Some(vec![n("a", true), n("b", true)]), "by name");
        v.node("b", Some(n("b", false)));
        v.node("a", None);
        assert_eq!(v.nodes(), Some(vec![n("b", false)]));
        v.nodes_stale();
        assert_eq!(v.nodes(), None);
    }

    #[test]
    fn job_pod_outputs_follow_the_watch() {
        let v = Views::default();
        assert_eq!(v.take_termination("ke-1", "Succeeded"), None, "not synced");
        v.outputs_listed(HashMap::new());
        // Running: nothing to keep yet.
        v.job_pod(&job_pod("ke-1-a", "Running", None), false);
        assert_eq!(v.outputs_held(), 0);
        assert_eq!(v.take_termination("ke-1", "Succeeded"), None);
        // A first pod failed, a second succeeded: each found by its phase.
        v.job_pod(&job_pod("ke-1-a", "Failed", Some("{\"e\":1}")), false);
        v.job_pod(&job_pod("ke-1-b", "Succeeded", Some("{\"ok\":1}")), false);
        assert_eq!(v.outputs_held(), 2);
        // An update replaces.
        v.job_pod(&job_pod("ke-1-b", "Succeeded", Some("{\"ok\":2}")), false);
        assert_eq!(v.outputs_held(), 2);
        // A deletion forgets (memory follows the pods).
        v.job_pod(&job_pod("ke-1-a", "Failed", None), true);
        assert_eq!(v.outputs_held(), 1);
        assert_eq!(v.take_termination("ke-1", "Failed"), None, "deleted");
        // Read once: the Job is forgotten (its pods may stay for the TTL).
        assert_eq!(
            v.take_termination("ke-1", "Succeeded").as_deref(),
            Some("{\"ok\":2}")
        );
        assert_eq!(v.outputs_held(), 0);
        assert_eq!(v.take_termination("ke-1", "Succeeded"), None, "taken");
        // Stale after a watch error: the API is asked instead.
        v.job_pod(&job_pod("ke-1-b", "Succeeded", Some("x")), false);
        v.outputs_stale();
        assert_eq!(v.take_termination("ke-1", "Succeeded"), None);
    }

    #[test]
    fn an_unsynced_view_answers_nothing() {
        let v = Views::default();
        assert_eq!(v.paused("op", "a"), None);
        v.global(Some(false));
        assert_eq!(v.paused("op", "a"), None, "namespaces not listed yet");
        v.namespaces_listed(HashSet::from(["a".to_string()]));
        assert_eq!(v.paused("op", "b"), Some(None));
        assert_eq!(v.paused("op", "a"), Some(Some(namespace_reason("a"))));
        v.global(Some(true));
        assert_eq!(v.paused("op", "b"), Some(Some(global_reason("op"))));
        v.invalidate();
        assert_eq!(v.paused("op", "b"), None);
        assert_eq!(
            v.lock_holder("x", k8s_openapi::jiff::Timestamp::now()),
            None
        );
    }
}
