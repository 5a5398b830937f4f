//! The one retry policy of API calls: transient errors (429, 5xx,
//! timeouts, connection errors, conflicts — [`ApiError::is_transient`]) are
//! retried with jittered exponential backoff for a time budget; anything
//! else is returned at once. Every attempt is a request, counted in
//! `kubernetes_executor_api_requests_total{verb,resource,outcome}`.

use super::ApiResult;
pub use crate::tunables::PATIENCE;
use crate::tunables::{RETRY_FIRST_BACKOFF, RETRY_MAX_BACKOFF};
use std::time::Duration;

/// Retries `f` on transient errors for up to `budget`, backing off
/// [`RETRY_FIRST_BACKOFF`] → [`RETRY_MAX_BACKOFF`] with jitter. Budgets:
/// unbounded for status writes (an execution is never left without the
/// status its actor computed), [`PATIENCE`] for an execution's reads and
/// writes, [`crate::tunables::SHORT_PATIENCE`] where a caller has a fallback.
pub async fn retry_for<T, F, Fut>(budget: Duration, mut f: F) -> ApiResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ApiResult<T>>,
{
    let start = tokio::time::Instant::now();
    let mut delay = RETRY_FIRST_BACKOFF;
    let mut n = 0u32;
    loop {
        n += 1;
        match f().await {
            Err(e) if e.is_transient() && start.elapsed() + delay < budget => {
                if n.is_multiple_of(5) {
                    tracing::warn!(error = %e, attempt = n, "API server still failing; retrying");
                } else {
                    tracing::debug!(error = %e, attempt = n, "transient API error, retrying");
                }
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(RETRY_MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

/// `d` scaled by a factor in [0.5, 1.5): many actors backing off together
/// must not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let r = (h.finish() % 1000) as f64 / 1000.0;
    d.mul_f64(0.5 + r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::ApiError;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn transient() -> ApiError {
        ApiError::Conflict {
            what: "x".into(),
            message: "busy".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_within_the_budget_others_never() {
        let calls = AtomicU32::new(0);
        let r: ApiResult<u32> = retry_for(Duration::from_secs(60), || async {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            if n < 3 { Err(transient()) } else { Ok(n) }
        })
        .await;
        assert_eq!(r.ok(), Some(3));

        let calls = AtomicU32::new(0);
        let r: ApiResult<()> = retry_for(Duration::from_secs(60), || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::NotFound { what: "x".into() })
        })
        .await;
        assert!(matches!(r, Err(ApiError::NotFound { .. })));
        assert_eq!(calls.load(Ordering::Relaxed), 1, "not found is final");

        let calls = AtomicU32::new(0);
        let r: ApiResult<()> = retry_for(Duration::from_secs(2), || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(transient())
        })
        .await;
        assert!(r.is_err());
        let n = calls.load(Ordering::Relaxed);
        assert!((2..=5).contains(&n), "a 2 s budget allows a few tries: {n}");
    }
}
