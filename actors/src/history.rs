//! History: which finished executions to delete (pure). A cluster that ran
//! for months must not keep every execution forever, nor may the operator
//! delete one a workflow engine still needs. The rules:
//!
//! - an execution's own `spec.ttlSecondsAfterFinished` deletes it that long
//!   after `status.completionTime`, owned or not;
//! - otherwise, executions **not owned** by another object are kept for the
//!   operator's `--finished-ttl` and, per namespace, at most the
//!   `--finished-history-limit` newest of them;
//! - executions with an ownerReference (a workflow engine's steps) are left
//!   to their owner: deleting the workflow deletes them (garbage collector);
//! - running executions are never touched (only terminal ones with a
//!   completion time are tracked).
//!
//! Memory: one small entry per finished execution present in the cluster,
//! itself bounded by these rules.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kubernetes_executor_crds::KubernetesExecution;

/// The operator's defaults for executions without their own TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// Keep unowned finished executions this long (`None`: forever).
    pub ttl: Option<Duration>,
    /// Keep at most this many unowned finished executions per namespace
    /// (`None`: no limit).
    pub limit: Option<usize>,
}

impl Default for HistoryPolicy {
    /// A week, and 1,000 per namespace.
    fn default() -> Self {
        HistoryPolicy {
            ttl: Some(Duration::from_secs(7 * 24 * 3600)),
            limit: Some(1000),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    uid: String,
    completed: Timestamp,
    ttl: Option<Duration>,
    owned: bool,
}

/// One execution to delete, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (the delete is preconditioned on it).
    pub uid: String,
    /// `ttl` or `limit`.
    pub why: &'static str,
}

/// The finished executions present, by namespace.
#[derive(Default)]
pub struct History {
    entries: HashMap<String, HashMap<String, Entry>>,
}

impl History {
    /// Records (or updates, or forgets) an execution as the watch saw it.
    pub fn observe(&mut self, exec: &KubernetesExecution) {
        let (ns, name) = (exec.namespace().unwrap_or_default(), exec.name_any());
        let completed = exec
            .status
            .as_ref()
            .and_then(|s| s.completion_time.as_ref())
            .map(|t| t.0);
        match completed {
            Some(completed)
                if exec.phase().is_terminal() && exec.metadata.deletion_timestamp.is_none() =>
            {
                let entry = Entry {
                    uid: exec.uid().unwrap_or_default(),
                    completed,
                    ttl: exec
                        .spec
                        .ttl_seconds_after_finished
                        .map(|s| Duration::from_secs(s.max(0) as u64)),
                    owned: !exec.owner_references().is_empty(),
                };
                self.entries.entry(ns).or_default().insert(name, entry);
            }
            _ => self.forget(&ns, &name),
        }
    }

    /// Forgets a deleted execution.
    pub fn forget(&mut self, namespace: &str, name: &str) {
        if let Some(m) = self.entries.get_mut(namespace) {
            m.remove(name);
            if m.is_empty() {
                self.entries.remove(namespace);
            }
        }
    }

    /// Finished executions tracked.
    pub fn len(&self) -> usize {
        self.entries.values().map(HashMap::len).sum()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The executions to delete at `now` (oldest first per namespace).
    pub fn expired(&self, now: Timestamp, policy: HistoryPolicy) -> Vec<Expired> {
        let mut out = Vec::new();
        for (ns, names) in &self.entries {
            let mut chosen = BTreeSet::new();
            let past = |completed: Timestamp, ttl: Duration| {
                now.duration_since(completed).as_secs_f64() >= ttl.as_secs_f64()
            };
            for (name, e) in names {
                let ttl = e.ttl.or(if e.owned { None } else { policy.ttl });
                if ttl.is_some_and(|ttl| past(e.completed, ttl)) {
                    chosen.insert((e.completed, name.clone(), "ttl"));
                }
            }
            if let Some(limit) = policy.limit {
                let mut unowned: Vec<(&Timestamp, &String)> = names
                    .iter()
                    .filter(|(_, e)| !e.owned && e.ttl.is_none())
                    .map(|(n, e)| (&e.completed, n))
                    .collect();
                unowned.sort();
                let excess = unowned.len().saturating_sub(limit);
                for (completed, name) in unowned.into_iter().take(excess) {
                    if !chosen.iter().any(|(_, n, _)| n == name) {
                        chosen.insert((*completed, name.clone(), "limit"));
                    }
                }
            }
            for (_, name, why) in chosen {
                out.push(Expired {
                    namespace: ns.clone(),
                    uid: names[&name].uid.clone(),
                    name,
                    why,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exec(
        name: &str,
        phase: &str,
        completed: Option<&str>,
        ttl: Option<i32>,
        owned: bool,
    ) -> KubernetesExecution {
        let mut v = json!({
            "apiVersion": "kubernetesexecution.kubernaut.io/v1alpha1",
            "kind": "KubernetesExecution",
            "metadata": { "name": name, "namespace": "ns", "uid": format!("uid-{name}") },
            "spec": { "action": "ScaleDeployment", "targetResource": { "kind": "Deployment", "name": "web" } },
            "status": { "phase": phase },
        });
        if let Some(c) = completed {
            v["status"]["completionTime"] = c.into();
        }
        if let Some(t) = ttl {
            v["spec"]["ttlSecondsAfterFinished"] = t.into();
        }
        if owned {
            v["metadata"]["ownerReferences"] =
                json!([{ "apiVersion": "v1", "kind": "ConfigMap", "name": "wf", "uid": "o" }]);
        }
        serde_json::from_value(v).expect("execution")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn names(e: &[Expired]) -> Vec<(&str, &str)> {
        e.iter().map(|x| (x.name.as_str(), x.why)).collect()
    }

    #[test]
    fn ttl_limit_ownership_and_running_executions() {
        let mut h = History::default();
        h.observe(&exec("running", "Executing", None, Some(0), false));
        h.observe(&exec(
            "old",
            "Completed",
            Some("2026-11-01T00:00:00Z"),
            None,
            false,
        ));
        h.observe(&exec(
            "recent",
            "Failed",
            Some("2026-11-30T11:00:00Z"),
            None,
            false,
        ));
        h.observe(&exec(
            "owned-old",
            "Completed",
            Some("2026-10-01T00:00:00Z"),
            None,
            true,
        ));
        h.observe(&exec(
            "owned-short",
            "Completed",
            Some("2026-11-30T11:59:00Z"),
            Some(30),
            true,
        ));
        h.observe(&exec(
            "own-ttl",
            "Completed",
            Some("2026-11-30T11:59:50Z"),
            Some(3600),
            false,
        ));
        assert_eq!(h.len(), 5, "a running execution is not tracked");
        let policy = HistoryPolicy {
            ttl: Some(Duration::from_secs(7 * 86400)),
            limit: None,
        };
        let now = at("2026-11-30T12:00:00Z");
        assert_eq!(
            names(&h.expired(now, policy)),
            vec![("old", "ttl"), ("owned-short", "ttl")],
            "the operator TTL spares owned executions; an own TTL applies to all"
        );
        // Count: at most 1 unowned (without an own TTL) per namespace, oldest go first.
        let policy = HistoryPolicy {
            ttl: None,
            limit: Some(1),
        };
        assert_eq!(
            names(&h.expired(now, policy)),
            vec![("old", "limit"), ("owned-short", "ttl")]
        );
        // Nothing by default policy for recent, unowned executions within the limit.
        let mut fresh = History::default();
        fresh.observe(&exec(
            "a",
            "Completed",
            Some("2026-11-30T11:00:00Z"),
            None,
            false,
        ));
        assert!(fresh.expired(now, HistoryPolicy::default()).is_empty());
    }

    #[test]
    fn deletion_and_updates_are_followed() {
        let mut h = History::default();
        h.observe(&exec(
            "a",
            "Completed",
            Some("2026-11-01T00:00:00Z"),
            None,
            false,
        ));
        assert_eq!(h.len(), 1);
        h.forget("ns", "a");
        assert!(h.is_empty());
        h.observe(&exec(
            "b",
            "Completed",
            Some("2026-11-01T00:00:00Z"),
            None,
            false,
        ));
        // Re-created under the same name, running again: no longer finished.
        h.observe(&exec("b", "Validating", None, None, false));
        assert!(h.is_empty());
    }
}
