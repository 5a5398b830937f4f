//! Readiness flags shared by the actors and `/readyz`: set by their owners,
//! read without blocking anyone.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness of the operator's parts.
#[derive(Default)]
pub struct Health {
    policy_loaded: AtomicBool,
    policy_error: Mutex<Option<String>>,
    watch_synced: AtomicBool,
    actors_up: AtomicBool,
    leader: AtomicBool,
    admission: Mutex<Vec<String>>,
    tree_failed: Mutex<Option<String>>,
}

impl Health {
    /// Records whether a non-empty policy set is active, and the last load error.
    pub fn set_policy(&self, loaded: bool, error: Option<String>) {
        self.policy_loaded.store(loaded, Ordering::Relaxed);
        if let Ok(mut e) = self.policy_error.lock() {
            *e = error;
        }
    }

    /// Records that the execution watch has listed everything once.
    pub fn set_watch_synced(&self, synced: bool) {
        self.watch_synced.store(synced, Ordering::Relaxed);
    }

    /// Records that the actor tree is up.
    pub fn set_actors_up(&self, up: bool) {
        self.actors_up.store(up, Ordering::Relaxed);
    }

    /// Records what is wrong with the admission policies (empty: all enforcing).
    pub fn set_admission_problems(&self, problems: Vec<String>) {
        if let Ok(mut a) = self.admission.lock() {
            *a = problems;
        }
    }

    /// What is wrong with the admission policies (empty: all enforcing).
    pub fn admission_problems(&self) -> Vec<String> {
        self.admission.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Records that the actor tree cannot recover (a singleton kept
    /// failing): the replica is neither ready nor live any more.
    pub fn set_tree_failed(&self, why: String) {
        if let Ok(mut t) = self.tree_failed.lock() {
            *t = Some(why);
        }
    }

    /// `Ok` while the process can still work; otherwise why not (`/healthz`
    /// fails, and the kubelet restarts the pod).
    pub fn liveness(&self) -> Result<(), String> {
        match self.tree_failed.lock().ok().and_then(|t| t.clone()) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// `Ok` when ready; otherwise what is missing. A standby replica is ready
    /// once its policies load (it holds no actors until it leads).
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut missing = Vec::new();
        if let Err(why) = self.liveness() {
            missing.push(format!("actor tree failed: {why}"));
        }
        if !self.policy_loaded.load(Ordering::Relaxed) {
            let err = self.policy_error.lock().ok().and_then(|e| e.clone());
            missing.push(match err {
                Some(e) => format!("policies not loaded: {e}"),
                None => "policies not loaded".to_string(),
            });
        }
        if self.is_leader() {
            if !self.actors_up.load(Ordering::Relaxed) {
                missing.push("actor tree not started".into());
            }
            if !self.watch_synced.load(Ordering::Relaxed) {
                missing.push("execution watch not synced".into());
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing)
        }
    }
}
