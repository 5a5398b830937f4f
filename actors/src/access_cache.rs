//! A short-lived cache of SubjectAccessReview answers, per requester and
//! access (`execute` on an action in a scope, PatchSecret's `get` on its
//! source). A burst of executions by one workflow engine costs one review
//! per action and scope, not one per execution.
//!
//! Consistency: an answer is reused for at most [`ACCESS_CACHE_TTL`]; a
//! permission revoked within that window can still be used by executions
//! picked up inside it. Admission already checked the same access when each
//! execution was created (the operator's review is a second check), so the
//! window only matters for the time between create and pickup. Denials are
//! cached the same way (a grant added in the window takes effect after it).

use std::time::Instant;

use dashmap::DashMap;
use kubernetes_executor_crds::Requester;

use crate::authz::AccessCheck;
pub use crate::tunables::{ACCESS_CACHE_MAX, ACCESS_CACHE_TTL};

/// Who, and what.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    username: String,
    uid: Option<String>,
    groups: Vec<String>,
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    name: String,
    namespace: Option<String>,
}

fn key(who: &Requester, check: &AccessCheck) -> Key {
    let mut groups = who.groups.clone();
    groups.sort();
    Key {
        username: who.username.clone(),
        uid: who.uid.clone(),
        groups,
        verb: check.verb,
        group: check.group,
        resource: check.resource,
        name: check.name.clone(),
        namespace: check.namespace.clone(),
    }
}

/// The cache (shared by every execution actor).
#[derive(Default)]
pub struct AccessCache {
    answers: DashMap<Key, (Option<String>, Instant)>,
}

impl AccessCache {
    /// The cached answer (`None` inside: allowed; `Some(why)`: denied), if
    /// one younger than the TTL exists at `now`.
    pub fn get(
        &self,
        who: &Requester,
        check: &AccessCheck,
        now: Instant,
    ) -> Option<Option<String>> {
        let k = key(who, check);
        let hit = self.answers.get(&k).and_then(|e| {
            let (answer, at) = e.value();
            (now.saturating_duration_since(*at) < ACCESS_CACHE_TTL).then(|| answer.clone())
        });
        if hit.is_none() {
            self.answers.remove_if(&k, |_, (_, at)| {
                now.saturating_duration_since(*at) >= ACCESS_CACHE_TTL
            });
        }
        hit
    }

    /// Records an answer at `now` (bounded: when full, expired entries go,
    /// and if none had expired, everything does).
    pub fn put(&self, who: &Requester, check: &AccessCheck, answer: Option<String>, now: Instant) {
        if self.answers.len() >= ACCESS_CACHE_MAX {
            self.answers
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < ACCESS_CACHE_TTL);
            if self.answers.len() >= ACCESS_CACHE_MAX {
                self.answers.clear();
            }
        }
        self.answers.insert(key(who, check), (answer, now));
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn who(name: &str, groups: &[&str]) -> Requester {
        Requester {
            username: name.into(),
            uid: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn answers_are_reused_per_requester_and_access_until_they_expire() {
        let c = AccessCache::default();
        let t0 = Instant::now();
        let scale = AccessCheck::execute("ScaleDeployment", Some("shop".into()));
        let alice = who("alice", &["b", "a"]);
        assert_eq!(c.get(&alice, &scale, t0), None);
        c.put(&alice, &scale, None, t0);
        assert_eq!(
            c.get(&alice, &scale, t0 + Duration::from_secs(1)),
            Some(None)
        );
        // Group order does not matter; anything else does.
        assert_eq!(c.get(&who("alice", &["a", "b"]), &scale, t0), Some(None));
        assert_eq!(c.get(&who("alice", &["a"]), &scale, t0), None);
        assert_eq!(c.get(&who("bob", &["a", "b"]), &scale, t0), None);
        let other_ns = AccessCheck::execute("ScaleDeployment", Some("billing".into()));
        assert_eq!(c.get(&alice, &other_ns, t0), None);
        // Denials too, with their reason.
        c.put(&alice, &other_ns, Some("no".into()), t0);
        assert_eq!(c.get(&alice, &other_ns, t0), Some(Some("no".into())));
        // Expired: asked again (and dropped).
        assert_eq!(c.get(&alice, &scale, t0 + ACCESS_CACHE_TTL), None);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = AccessCache::default();
        let t0 = Instant::now();
        for i in 0..ACCESS_CACHE_MAX + 5 {
            let check = AccessCheck::execute("DeletePod", Some(format!("ns-{i}")));
            c.put(&who("u", &[]), &check, None, t0);
        }
        assert!(c.len() <= ACCESS_CACHE_MAX, "{}", c.len());
    }
}
