//! Every tunable of the actor tree in one place: retry budgets, poll
//! intervals, restart limits, timeouts. Operator flags (`src/config.rs`)
//! cover what an operator is expected to change; these are the rest.

use std::time::Duration;

// --- Supervision -----------------------------------------------------------

/// Restarts of one execution's actor allowed within [`EXECUTION_RESTART_WINDOW`]
/// before the supervisor gives up (the execution fails `InternalError`).
pub const EXECUTION_MAX_RESTARTS: u32 = 5;
/// Window of the execution restart limit.
pub const EXECUTION_RESTART_WINDOW: Duration = Duration::from_secs(600);
/// First backoff before an execution actor is restarted (doubles per
/// restart, capped at 256 times this).
pub const EXECUTION_RESTART_BACKOFF: Duration = Duration::from_millis(100);
/// Failures of one singleton (Policy, Rbac, JobWatcher, KillSwitch,
/// Supervisor) within [`SINGLETON_RESTART_WINDOW`] the root tolerates;
/// one more and the tree is marked failed (`/readyz` and `/healthz` fail,
/// so the kubelet restarts the pod).
pub const SINGLETON_MAX_RESTARTS: usize = 5;
/// Window of the singleton restart limit.
pub const SINGLETON_RESTART_WINDOW: Duration = Duration::from_secs(60);
/// First backoff before a singleton is restarted (doubles, capped at
/// [`SINGLETON_RESTART_BACKOFF_MAX`]).
pub const SINGLETON_RESTART_BACKOFF: Duration = Duration::from_millis(200);
/// Longest backoff before a singleton restart.
pub const SINGLETON_RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Restarts of one postcondition verifier its execution actor tolerates
/// before the postconditions count as inconclusive.
pub const VERIFIER_MAX_RESTARTS: u32 = 3;
/// How long the supervisor remembers that an execution's actor finished,
/// to ignore watch events that lag behind the actor's own final write.
pub const FINISHED_MEMORY: Duration = Duration::from_secs(600);
/// How often finished executions past their TTL or history limit are
/// deleted (a TTL is honoured within this much).
pub const HISTORY_SWEEP: Duration = Duration::from_secs(5);
/// At most this many finished executions are deleted per sweep (20/s).
pub const HISTORY_BATCH: usize = 100;
/// How long a caller waits for a restarting singleton to come back.
pub const PEER_RESOLVE_WAIT: Duration = Duration::from_secs(10);
/// How often it looks.
pub const PEER_RESOLVE_POLL: Duration = Duration::from_millis(50);

// --- API retries -----------------------------------------------------------

/// How long an execution keeps retrying an API call through overload (429,
/// 5xx, timeouts) before it gives up with a clear error.
pub const PATIENCE: Duration = Duration::from_secs(120);
/// Retry budget where the caller has a fallback or a retry of its own
/// (re-reading an execution to restart its actor, the kill switch read).
pub const SHORT_PATIENCE: Duration = Duration::from_secs(10);
/// First backoff of a retried API call (doubles with jitter).
pub const RETRY_FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest backoff of a retried API call.
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(30);

// --- Executions --------------------------------------------------------------

/// Extra time past the Job deadline before the execution's own timer fails it.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(30);
/// How often a paused Pending execution looks at the kill switch again.
pub const PAUSE_POLL: Duration = Duration::from_secs(2);
/// How often an execution waiting for a busy target tries again (served
/// from the lock view: no request while the holder is live).
pub const BUSY_POLL: Duration = Duration::from_millis(500);
/// How long a passing phase (`Preparing`, `Verifying`) may go unrecorded in
/// status: entering it is written only if the execution is still in it
/// after this long; otherwise the next write (usually within milliseconds)
/// records it together with the phase that follows (one request less each).
pub const PASSING_PHASE_WINDOW: Duration = Duration::from_millis(500);
/// How long an execution waits for the PolicyActor's answer.
pub const POLICY_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an execution waits for the RbacActor's answer.
pub const RBAC_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a SubjectAccessReview answer is reused (per requester and
/// access): see [`crate::access_cache`].
pub const ACCESS_CACHE_TTL: Duration = Duration::from_secs(10);
/// Most answers kept.
pub const ACCESS_CACHE_MAX: usize = 10_000;

// --- Shared actors -------------------------------------------------------------

/// How often the RbacActor's janitor looks for grants whose execution is gone.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Grants younger than this are never swept (their execution may not be
/// visible to a read yet).
pub const SWEEP_MIN_AGE: Duration = Duration::from_secs(30);
/// How often the admission policies are checked (`/readyz` warnings).
pub const ADMISSION_CHECK_INTERVAL: Duration = Duration::from_secs(60);

// --- Leader election -------------------------------------------------------------

/// Leader lease duration: a standby takes over at most this long after the
/// leader died without releasing.
pub const LEASE_SECONDS: i32 = 15;
/// How often the leader renews.
pub const RENEW_PERIOD: Duration = Duration::from_secs(5);
/// How often a standby tries to take the lease.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
