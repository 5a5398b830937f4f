//! Leader election on a coordination.k8s.io Lease: a standby waits (serving
//! probes), the leader renews, and the leader gives the Lease up on a clean
//! shutdown so a standby takes over at once. The Lease protocol itself
//! (compare-and-swap, expiry by observed time) is
//! `KubeApi::try_lead`/`release_lead` and `actors::leader::LeaseObserver`.

use kubernetes_executor_actors::k8s::KubeApi;
use kubernetes_executor_actors::leader::LeaseObserver;
use kubernetes_executor_actors::tunables::{LEASE_SECONDS, RENEW_PERIOD, RETRY_PERIOD};
use tokio::sync::watch;

/// Name of the leader Lease in the operator namespace.
pub const LEADER_LEASE: &str = "kubernetes-executor-leader";

/// Waits until `identity` leads; `false` when `stop` fired first.
pub async fn wait_to_lead(
    api: &KubeApi,
    identity: &str,
    stop: impl std::future::Future<Output = ()>,
) -> bool {
    tracing::info!(identity = %identity, lease = LEADER_LEASE, "waiting to lead");
    tokio::pin!(stop);
    let mut observer = LeaseObserver::default();
    loop {
        match api
            .try_lead(LEADER_LEASE, identity, LEASE_SECONDS, &mut observer)
            .await
        {
            Ok(true) => {
                tracing::info!(identity = %identity, "became the leader");
                return true;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election: cannot read the lease"),
        }
        tokio::select! {
            _ = &mut stop => return false,
            _ = tokio::time::sleep(RETRY_PERIOD) => {}
        }
    }
}

/// Renews the lease until it is lost (taken by another replica, or not
/// renewed for longer than its duration); then sets `lost`.
pub fn keep_leading(
    api: KubeApi,
    identity: String,
    lost: watch::Sender<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_ok = tokio::time::Instant::now();
        let mut observer = LeaseObserver::default();
        loop {
            tokio::time::sleep(RENEW_PERIOD).await;
            match api
                .try_lead(LEADER_LEASE, &identity, LEASE_SECONDS, &mut observer)
                .await
            {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    let _ = lost.send(true);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the leader lease");
                    let budget = std::time::Duration::from_secs(LEASE_SECONDS as u64);
                    if last_ok.elapsed() >= budget - RENEW_PERIOD {
                        let _ = lost.send(true);
                        return;
                    }
                }
            }
        }
    })
}

/// Gives the lease up (a clean shutdown of the leader).
pub async fn release(api: &KubeApi, identity: &str) {
    if let Err(e) = api.release_lead(LEADER_LEASE, identity).await {
        tracing::warn!(error = %e, "failed to release the leader lease");
    }
}
