//! Watch-backed views the executions read instead of asking the API
//! server: the kill switch (the control ConfigMap's `paused` key and the
//! namespaces annotated paused) and the target locks (the operator's
//! Leases). The KillSwitchActor ([`crate::kill_switch`]) owns the watches
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

/// Name of the ConfigMap (operator namespace) whose `data.paused: "true"`
/// pauses every new execution.
pub const CONTROL_CONFIGMAP: &str = "kubernetes-executor-control";
/// Namespace annotation that pauses new executions in that namespace.
pub const PAUSE_ANNOTATION: &str = "kubernetesexecution.kubernaut.io/paused";

/// Pause reason for the cluster-wide switch.
pub fn global_reason(operator_ns: &str) -> String {
    format!(
        "new executions are paused cluster-wide (ConfigMap {operator_ns}/{CONTROL_CONFIGMAP} has paused=\"true\")"
    )
}

/// Pause reason for a paused namespace.
pub fn namespace_reason(ns: &str) -> String {
    format!("new executions in namespace {ns} are paused (annotation {PAUSE_ANNOTATION}=\"true\")")
}

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
}

#[derive(Default)]
struct Inner {
    global: Synced<bool>,
    namespaces: Synced<HashSet<String>>,
    locks: Synced<HashMap<String, Lease>>,
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
    pub(crate) fn locks_listed(&self, locks: HashMap<String, Lease>) {
        self.inner.locks.write(|m| *m = locks);
        self.inner.locks.set_ready(true);
    }

    /// One lock changed (`None`: deleted).
    pub(crate) fn lock(&self, name: &str, lease: Option<Lease>) {
        self.inner.locks.write(|m| match lease {
            Some(l) => {
                m.insert(name.to_string(), l);
            }
            None => {
                m.remove(name);
            }
        });
        self.inner.locks.set_ready(true);
    }

    /// The lock view may be stale.
    pub(crate) fn locks_stale(&self) {
        self.inner.locks.set_ready(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
