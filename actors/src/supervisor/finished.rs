//! Finished executions: the UIDs whose actor finished (so a stale watch
//! event does not start another), and the history clean-up sweep (which
//! finished executions to delete: `crate::history`).

use std::collections::HashSet;
use std::time::Instant;

use super::SupervisorState;
use crate::tunables::FINISHED_MEMORY;

/// UIDs of executions whose actor finished, remembered for
/// [`FINISHED_MEMORY`] (bounded by the rate executions finish at).
#[derive(Default)]
pub(super) struct Finished {
    uids: HashSet<String>,
    pub(super) order: std::collections::VecDeque<(Instant, String)>,
}

impl Finished {
    pub(super) fn insert(&mut self, uid: String) {
        let now = Instant::now();
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < FINISHED_MEMORY {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.uids.remove(&old);
            }
        }
        if self.uids.insert(uid.clone()) {
            self.order.push_back((now, uid));
        }
    }

    pub(super) fn contains(&self, uid: &str) -> bool {
        self.uids.contains(uid)
    }
}

/// Deletes finished executions past their TTL or the history limit.
pub(super) async fn sweep_history(state: &mut SupervisorState) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let expired = state.history.expired(now, state.ctx.settings.history);
    // Bounded per sweep: a first start over months of history
    // deletes at a steady pace, not in one burst.
    for e in expired.into_iter().take(crate::tunables::HISTORY_BATCH) {
        // Forgotten now; the watch's Deleted event confirms.
        state.history.forget(&e.namespace, &e.name);
        match state
            .ctx
            .api
            .delete_finished_execution(&e.namespace, &e.name, &e.uid)
            .await
        {
            Ok(()) => {
                tracing::info!(execution = %format!("{}/{}", e.namespace, e.name), why = e.why, "deleted a finished execution (history clean-up)");
                state
                    .ctx
                    .metrics
                    .executions_collected
                    .with_label_values(&[e.why])
                    .inc();
            }
            Err(err) => {
                tracing::warn!(execution = %format!("{}/{}", e.namespace, e.name), error = %err, "cannot delete a finished execution; next sweep retries");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_executions_are_remembered_once() {
        let mut f = Finished::default();
        assert!(!f.contains("a"));
        f.insert("a".into());
        f.insert("a".into());
        f.insert("b".into());
        assert!(f.contains("a") && f.contains("b") && !f.contains("c"));
        assert_eq!(f.order.len(), 2, "a uid is queued for expiry once");
    }
}
