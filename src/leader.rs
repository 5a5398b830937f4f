//! Leader election on the Lease `kubernetes-executor-leader`: a standby
//! waits (serving probes), the leader renews, and the leader gives the
//! Lease up on a clean shutdown so a standby takes over at once. Requests
//! go through the one Lease protocol (`KubeApi::claim_lease`); the rule
//! for taking over is here: the holder's term ran out by *our observed
//! time* (`actors::leader::LeaseObserver`), never by comparing its
//! `renewTime` with our wall clock.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kubernetes_executor_actors::k8s::leases::{Claim, Probe, Release};
use kubernetes_executor_actors::k8s::{ApiResult, KubeApi};
use kubernetes_executor_actors::leader::LeaseObserver;
use kubernetes_executor_actors::tunables::{LEASE_SECONDS, RENEW_PERIOD, RETRY_PERIOD};
use tokio::sync::watch;

/// Name of the leader Lease in the operator namespace.
pub const LEADER_LEASE: &str = "kubernetes-executor-leader";

/// Takes or renews the leader Lease for `identity`; true when it leads.
async fn try_lead(api: &KubeApi, identity: &str, observer: &mut LeaseObserver) -> ApiResult<bool> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let desired: Lease = serde_json::from_value(serde_json::json!({
        "metadata": { "name": LEADER_LEASE, "namespace": api.namespace() },
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": LEASE_SECONDS,
            "acquireTime": MicroTime(now),
            "renewTime": MicroTime(now),
            "leaseTransitions": 0,
        },
    }))
    .unwrap_or_default();
    let expired = async |l: &Lease| {
        let spec = l.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        if holder.is_empty() {
            return Ok(true); // vacated by a leader that stopped cleanly
        }
        let renew = spec.renew_time.map(|t| t.0.to_string());
        let term = spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS).max(1) as u64;
        Ok(observer.expired(
            &holder,
            renew.as_deref(),
            std::time::Duration::from_secs(term),
            std::time::Instant::now(),
        ))
    };
    Ok(
        match api.claim_lease(&desired, Probe::ReadFirst, expired).await? {
            Claim::Renewed(_) | Claim::Taken(_) => true,
            Claim::Busy(_) => false,
        },
    )
}

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
        match try_lead(api, identity, &mut observer).await {
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
            match try_lead(&api, &identity, &mut observer).await {
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
    if let Err(e) = api
        .release_lease(LEADER_LEASE, identity, Release::Vacate, None)
        .await
    {
        tracing::warn!(error = %e, "failed to release the leader lease");
    }
}
