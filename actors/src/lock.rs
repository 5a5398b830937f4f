//! Per-target lock: a coordination.k8s.io Lease per target object (kind,
//! namespace, name, UID) in the operator namespace. Two live executions that
//! mutate the same target never run at the same time. The Lease survives an
//! operator restart; it is released on every terminal phase and on deletion,
//! and taken over when it expired or its holder is gone.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

/// Annotation on the Lease naming the holding execution (`ns/name`).
pub const HOLDER_KEY_ANNOTATION: &str = "kubernetesexecution.kubernaut.io/holder";

/// Name of the Lease guarding a target.
pub fn lease_name(kind: &str, ns: Option<&str>, name: &str, uid: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("{kind}/{}/{name}/{uid}", ns.unwrap_or_default()).as_bytes());
    format!("ke-target-{}", &hex::encode(h.finalize())[..20])
}

/// Who holds a Lease and until when.
#[derive(Clone, Debug, PartialEq)]
pub struct Holder {
    /// UID of the holding execution.
    pub uid: String,
    /// `ns/name` of the holding execution.
    pub key: String,
    /// Whether the Lease ran past its duration.
    pub expired: bool,
}

/// Reads the holder of a Lease at time `now` (pure).
pub fn holder(lease: &Lease, now: Timestamp) -> Holder {
    let spec = lease.spec.clone().unwrap_or_default();
    let renewed = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let expired = match renewed {
        Some(t) => now.as_second() > t.as_second() + duration,
        None => true,
    };
    Holder {
        uid: spec.holder_identity.unwrap_or_default(),
        key: lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(HOLDER_KEY_ANNOTATION).cloned())
            .unwrap_or_default(),
        expired,
    }
}

/// A Lease held by `exec_uid` (`exec_key`) for `duration_seconds` from `now`.
pub fn lease(
    name: &str,
    ns: &str,
    target: &str,
    exec_uid: &str,
    exec_key: &str,
    duration_seconds: i32,
    now: Timestamp,
) -> Lease {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": { kubernetes_executor_crds::labels::MANAGED_BY: kubernetes_executor_crds::labels::MANAGER },
            "annotations": {
                HOLDER_KEY_ANNOTATION: exec_key,
                "kubernetesexecution.kubernaut.io/target": target,
            },
        },
        "spec": {
            "holderIdentity": exec_uid,
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": MicroTime(now),
            "renewTime": MicroTime(now),
        },
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_stable_short_and_distinct() {
        let a = lease_name("Deployment", Some("shop"), "web", "u1");
        assert_eq!(a, lease_name("Deployment", Some("shop"), "web", "u1"));
        assert_ne!(
            a,
            lease_name("Deployment", Some("shop"), "web", "u2"),
            "a recreated target is another lock"
        );
        assert_ne!(a, lease_name("Deployment", Some("shop2"), "web", "u1"));
        assert!(a.len() <= 63);
    }

    #[test]
    fn expiry() {
        let t0 = Timestamp::from_second(1_000).expect("ts");
        let l = lease("n", "ns", "Deployment/shop/web", "u", "shop/e", 30, t0);
        let h = holder(&l, Timestamp::from_second(1_020).expect("ts"));
        assert_eq!(
            (h.uid.as_str(), h.key.as_str(), h.expired),
            ("u", "shop/e", false)
        );
        assert!(holder(&l, Timestamp::from_second(1_031).expect("ts")).expired);
    }
}
