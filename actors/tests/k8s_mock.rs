//! The I/O module against a mock API server (a tower service keeping
//! Leases in memory with resourceVersions): the one Lease protocol's
//! claim/renew/take-over/release, and how errors are classified.

mod mock_api;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::coordination::v1::Lease;
use kubernetes_executor_actors::k8s::leases::{Claim, Probe, Release};
use kubernetes_executor_actors::k8s::{ApiError, KubeApi};
use mock_api::Req;
use serde_json::{Value, json};

const NS: &str = "ops";

#[derive(Default)]
struct Store {
    leases: BTreeMap<String, Value>,
    version: u64,
    requests: Vec<String>,
    /// Answer every request with this status instead (error classes).
    fail_with: Option<u16>,
}

fn mock(store: Arc<Mutex<Store>>) -> KubeApi {
    let client = mock_api::client(move |r: Req| {
        let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
        s.requests.push(format!("{} {}", r.method, r.path));
        if let Some(code) = s.fail_with {
            return mock_api::failure(code, "Mocked");
        }
        let prefix = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
        let name = r
            .path
            .strip_prefix(&format!("{prefix}/"))
            .unwrap_or_default()
            .to_string();
        let mut body = r.body;
        match r.method.as_str() {
            "POST" => {
                let n = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if s.leases.contains_key(&n) {
                    return mock_api::failure(409, "AlreadyExists");
                }
                s.version += 1;
                body["metadata"]["resourceVersion"] = json!(s.version.to_string());
                s.leases.insert(n, body.clone());
                (201, body)
            }
            "GET" => match s.leases.get(&name) {
                Some(l) => (200, l.clone()),
                None => mock_api::failure(404, "NotFound"),
            },
            "PUT" => match s.leases.get(&name) {
                Some(l)
                    if l["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"] =>
                {
                    s.version += 1;
                    body["metadata"]["resourceVersion"] = json!(s.version.to_string());
                    s.leases.insert(name, body.clone());
                    (200, body)
                }
                Some(_) => mock_api::failure(409, "Conflict"),
                None => mock_api::failure(404, "NotFound"),
            },
            "DELETE" => {
                let want = body["preconditions"]["resourceVersion"].clone();
                match s.leases.get(&name) {
                    Some(l) if want.is_null() || l["metadata"]["resourceVersion"] == want => {
                        (200, s.leases.remove(&name).unwrap_or_default())
                    }
                    Some(_) => mock_api::failure(409, "Conflict"),
                    None => mock_api::failure(404, "NotFound"),
                }
            }
            _ => mock_api::failure(405, "MethodNotAllowed"),
        }
    });
    KubeApi::new(client, NS, None)
}

fn lease(holder: &str) -> Lease {
    serde_json::from_value(json!({
        "metadata": {"name": "lock", "namespace": NS},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 30},
    }))
    .expect("lease")
}

fn holder(store: &Arc<Mutex<Store>>) -> Option<Value> {
    let s = store.lock().unwrap_or_else(|e| e.into_inner());
    s.leases.get("lock").map(|l| l["spec"].clone())
}

#[tokio::test]
async fn claim_renew_take_over_and_release() {
    let store = Arc::new(Mutex::new(Store::default()));
    let api = mock(store.clone());
    let never = async |_: &Lease| Ok(false);
    let always = async |_: &Lease| Ok(true);

    // Absent: created (one request with CreateFirst).
    let c = api
        .claim_lease(&lease("a"), Probe::CreateFirst, never)
        .await;
    assert_eq!(c.expect("claim"), Claim::Taken(Some("1".into())));
    assert_eq!(store.lock().map(|s| s.requests.len()).unwrap_or(0), 1);
    // Someone else's, and the rule says no: busy, nothing written.
    let c = api
        .claim_lease(&lease("b"), Probe::CreateFirst, never)
        .await;
    assert!(
        matches!(c, Ok(Claim::Busy(l)) if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some("a"))
    );
    assert_eq!(holder(&store).expect("lease")["holderIdentity"], "a");
    // Ours: renewed.
    let c = api.claim_lease(&lease("a"), Probe::ReadFirst, never).await;
    assert_eq!(c.expect("renew"), Claim::Renewed(Some("2".into())));
    // The rule frees it: taken over, with one more transition.
    let c = api.claim_lease(&lease("b"), Probe::ReadFirst, always).await;
    assert_eq!(c.expect("take over"), Claim::Taken(Some("3".into())));
    let spec = holder(&store).expect("lease");
    assert_eq!(spec["holderIdentity"], "b");
    assert_eq!(spec["leaseTransitions"], 1);

    // Only the holder releases.
    api.release_lease("lock", "a", Release::Delete, None)
        .await
        .expect("not ours: nothing to do");
    assert!(holder(&store).is_some());
    // A's version from before the take-over: the conditional delete fails,
    // the read shows it is not A's, and it stays.
    api.release_lease("lock", "a", Release::Delete, Some("1"))
        .await
        .expect("not ours any more: nothing to do");
    assert_eq!(holder(&store).expect("kept")["holderIdentity"], "b");
    api.release_lease("lock", "b", Release::Vacate, None)
        .await
        .expect("vacate");
    let spec = holder(&store).expect("kept");
    assert!(spec["holderIdentity"].is_null(), "{spec}");
    assert_eq!(spec["leaseDurationSeconds"], 1);
    let c = api.claim_lease(&lease("c"), Probe::ReadFirst, always).await;
    let Ok(Claim::Taken(Some(version))) = c else {
        panic!("claim vacated: {c:?}");
    };
    // With the version the claim returned: one conditional DELETE, no read.
    let before = store.lock().map(|s| s.requests.len()).unwrap_or(0);
    api.release_lease("lock", "c", Release::Delete, Some(&version))
        .await
        .expect("delete");
    assert!(holder(&store).is_none());
    let requests = store.lock().map(|s| s.requests.clone()).unwrap_or_default();
    assert_eq!(requests.len(), before + 1, "{requests:?}");
    assert!(requests[before].starts_with("DELETE"), "{requests:?}");
}

#[tokio::test]
async fn errors_are_classified_once() {
    let store = Arc::new(Mutex::new(Store::default()));
    let api = mock(store.clone());
    type Is = fn(&ApiError) -> bool;
    let cases: [(u16, Is); 4] = [
        (403, |e| matches!(e, ApiError::Forbidden { .. })),
        (422, |e| matches!(e, ApiError::Invalid { .. })),
        (429, |e| {
            matches!(e, ApiError::Transient { .. }) && e.is_transient()
        }),
        (500, |e| {
            matches!(e, ApiError::Transient { .. }) && e.is_transient()
        }),
    ];
    for (code, is) in cases {
        if let Ok(mut s) = store.lock() {
            s.fail_with = Some(code);
        }
        let e = api
            .claim_lease(&lease("a"), Probe::CreateFirst, async |_: &Lease| Ok(false))
            .await
            .expect_err("fails");
        assert!(is(&e), "{code}: {e:?}");
        assert!(!matches!(e, ApiError::Forbidden { .. }) || !e.is_transient());
    }
}
