//! The API floor: a plain client doing the minimum API work an execution
//! needs — create the resource, write its status once, and for a real
//! execution create one (suspended) Job — at the same concurrency as the
//! load. The operator's throughput is reported as a share of this.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Result;
use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubernetes_executor_crds::KubernetesExecution;
use serde::Serialize;
use serde_json::json;

use crate::stats::Summary;
use crate::workload::{Kind, Workload};

/// What the floor run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Floor {
    /// Executions attempted.
    pub executions: usize,
    /// API requests made.
    pub requests: usize,
    /// Failed requests.
    pub errors: usize,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Executions per second.
    pub throughput: f64,
    /// Per-execution time for its requests, ms.
    pub latency_ms: Summary,
}

fn suspended_job(name: &str, run_id: &str) -> Result<Job> {
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { crate::workload::RUN_LABEL: run_id } },
        "spec": {
            "suspend": true,
            "backoffLimit": 0,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "action", "image": "kubernetes-executor:floor" }],
            }},
        },
    }))?)
}

/// Runs the floor for `w`'s plan in `w.namespace` (which must exist and
/// must not be watched by an operator) with `concurrency` clients.
pub async fn run(client: &Client, w: &Workload, concurrency: usize) -> Floor {
    let execs: Api<KubernetesExecution> = Api::namespaced(client.clone(), &w.namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &w.namespace);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers = (0..concurrency.max(1)).map(|_| {
        let (execs, jobs, next, w) = (execs.clone(), jobs.clone(), next.clone(), w.clone());
        async move {
            let (mut requests, mut errors, mut lat) = (0usize, 0usize, Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= w.plan.len() {
                    return (requests, errors, lat);
                }
                let t0 = Instant::now();
                let name = w.name(i);
                requests += 1;
                if execs
                    .create(&PostParams::default(), &w.execution(i))
                    .await
                    .is_err()
                {
                    errors += 1;
                    continue;
                }
                let (phase, reason) = w.plan[i].expected();
                let status = json!({ "status": {
                    "phase": phase.as_str(), "reason": reason, "message": "API floor",
                }});
                requests += 1;
                if execs
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .is_err()
                {
                    errors += 1;
                }
                // Dry runs run their Job too (a server-side dry run).
                if matches!(w.plan[i], Kind::Real | Kind::Dry) {
                    requests += 1;
                    let ok = match suspended_job(&format!("floor-{name}"), &w.run_id) {
                        Ok(job) => jobs.create(&PostParams::default(), &job).await.is_ok(),
                        Err(_) => false,
                    };
                    if !ok {
                        errors += 1;
                    }
                }
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
    });
    let results = futures::future::join_all(workers).await;
    let wall_s = start.elapsed().as_secs_f64();
    let (mut requests, mut errors, mut lat) = (0, 0, Vec::new());
    for (r, e, l) in results {
        requests += r;
        errors += e;
        lat.extend(l);
    }
    Floor {
        executions: w.plan.len(),
        requests,
        errors,
        wall_s,
        throughput: if wall_s > 0.0 {
            w.plan.len() as f64 / wall_s
        } else {
            0.0
        },
        latency_ms: Summary::of(lat),
    }
}
