//! Leader election's notion of expiry (pure). A standby never compares the
//! leader's `renewTime` with its own wall clock (clocks of two machines can
//! differ by more than a lease); like client-go, it remembers *when it
//! observed* the Lease's holder and renew time last change, on its own
//! monotonic clock, and considers the lease expired only when nothing
//! changed for a whole lease duration.

use std::time::{Duration, Instant};

/// What a standby last saw of a Lease, and when (its own clock).
#[derive(Clone, Debug, Default)]
pub struct LeaseObserver {
    seen: Option<Seen>,
}

#[derive(Clone, Debug, PartialEq)]
struct Seen {
    holder: String,
    renew: Option<String>,
    at: Instant,
}

impl LeaseObserver {
    /// Records the Lease as read at `now` (holder and renew time as the
    /// server has them) and answers whether its holder's term ran out: the
    /// same holder and renew time unchanged for longer than `duration` by
    /// this process's monotonic clock. A change, or a first observation,
    /// starts the count again.
    pub fn expired(
        &mut self,
        holder: &str,
        renew: Option<&str>,
        duration: Duration,
        now: Instant,
    ) -> bool {
        let unchanged = self
            .seen
            .as_ref()
            .is_some_and(|s| s.holder == holder && s.renew.as_deref() == renew);
        if !unchanged {
            self.seen = Some(Seen {
                holder: holder.to_string(),
                renew: renew.map(String::from),
                at: now,
            });
            return false;
        }
        self.seen
            .as_ref()
            .is_some_and(|s| now.saturating_duration_since(s.at) > duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    #[test]
    fn a_standby_with_a_clock_20s_ahead_does_not_take_over_a_healthy_leader() {
        // The leader renews every 5 s; its renewTime (its wall clock) is 20 s
        // behind the standby's wall clock. The wall clock is never consulted:
        // every renewal is a change the standby observes.
        let t0 = Instant::now();
        let mut o = LeaseObserver::default();
        for i in 0..20u64 {
            let renew = format!("2026-11-30T17:00:{:02}Z", (i * 5) % 60);
            let now = t0 + Duration::from_secs(i * 5);
            assert!(
                !o.expired("leader", Some(&renew), LEASE, now),
                "healthy leader at {i}"
            );
        }
    }

    #[test]
    fn a_lease_nobody_renews_expires_after_a_full_duration_of_observation() {
        let t0 = Instant::now();
        let mut o = LeaseObserver::default();
        let renew = Some("2026-11-30T16:00:00Z");
        // A renewTime an hour old by any wall clock: still not expired at
        // first sight (the standby may have just started).
        assert!(!o.expired("leader", renew, LEASE, t0));
        assert!(!o.expired("leader", renew, LEASE, t0 + Duration::from_secs(10)));
        assert!(o.expired("leader", renew, LEASE, t0 + Duration::from_secs(16)));
        // A new holder starts the count again.
        assert!(!o.expired("other", renew, LEASE, t0 + Duration::from_secs(17)));
    }
}
