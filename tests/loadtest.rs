//! The load harness against the local control plane: a small mixed run
//! with the API floor, checked for what the report must contain — every
//! execution accounted for with its expected outcome, each phase timed,
//! the floor's request count exact, the operator's footprint sampled, no
//! actor left behind, and the run's namespaces deleted afterwards.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kubernetes_executor_loadtest::{Config, Kind, Mix, OperatorControl, run};

struct TestOperator {
    op: Option<common::Operator>,
}

impl OperatorControl for TestOperator {
    async fn start(&mut self) -> anyhow::Result<()> {
        if self.op.is_none() {
            self.op = Some(common::start_operator(common::env(), "loadtest-operator", &[]).await);
        }
        Ok(())
    }
    fn metrics(&self) -> Option<String> {
        self.op.as_ref().map(|o| o.metrics.clone())
    }
    fn pid(&self) -> Option<u32> {
        self.op.as_ref().and_then(|o| o.proc.pid())
    }
    fn describe(&self) -> String {
        "test operator".into()
    }
    async fn restart(
        &mut self,
        finished: usize,
    ) -> anyhow::Result<Option<kubernetes_executor_loadtest::report::Restart>> {
        if let Some(mut old) = self.op.take() {
            old.proc.stop();
        }
        let started = std::time::Instant::now();
        let op = common::start_operator(common::env(), "loadtest-operator-again", &[]).await;
        let r = kubernetes_executor_loadtest::run::restarted(
            finished,
            started,
            op.metrics.clone(),
            op.proc.pid(),
            Duration::from_secs(2),
        )
        .await;
        self.op = Some(op);
        Ok(Some(r))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_load_is_fully_accounted_for_and_cleaned_up() {
    let env = common::env();
    let client = env.client().await.expect("client");
    let cfg = Config {
        executions: 15,
        rate: 20.0,
        concurrency: 4,
        mix: Mix::default(),
        deployments: 3,
        operator_namespace: common::OPERATOR_NS.into(),
        timeout: Duration::from_secs(180),
        // The operator starts after the floor, as with ke-loadtest's local mode.
        floor: true,
        backlog: false,
        settle: Duration::from_secs(2),
        cleanup: true,
        run_id: kubernetes_executor_testkit::unique_name("t"),
        restart: true,
    };
    let mut op = TestOperator { op: None };
    let report = run(&client, &cfg, &mut op).await.expect("load run");
    let table = report.table();
    println!("{table}");

    // Every execution ended the way its kind should (9 dry, 3 deny, 3 real).
    assert!(report.failures.is_empty(), "{table}");
    let count = |k: Kind| -> usize {
        report
            .outcomes
            .iter()
            .filter(|o| o.kind == k && o.expected)
            .map(|o| o.count)
            .sum()
    };
    assert_eq!(
        (count(Kind::Dry), count(Kind::Deny), count(Kind::Real)),
        (9, 3, 3),
        "{table}"
    );

    // Each execution timed from its own watch events.
    let l = &report.latency_ms;
    assert_eq!(l.pickup.count, 15, "{table}");
    assert_eq!(l.end_to_end["all"].count, 15);
    assert_eq!(l.phases["Pending"].count, 15);
    // Validating is written only when it lasts (docs/api.md): under this
    // light load, validation is quick and most executions are first seen
    // in their next phase; the operator's metric counts all 15 (below).
    assert!(
        l.phases.get("Validating").is_none_or(|p| p.count <= 15),
        "{table}"
    );
    assert_eq!(report.watch_relists, 0);
    assert_eq!(
        l.phases["Executing"].count, 12,
        "dry runs (server-side) and real executions run Jobs"
    );
    assert_eq!(l.completion_detection.count, 12, "each Job seen finishing");
    assert!(
        l.end_to_end["real"].p50 >= l.end_to_end["deny"].p50,
        "{table}"
    );

    // The floor: create + status write each, plus one Job per dry run and
    // real execution.
    let floor = report.floor.as_ref().expect("floor ran");
    assert_eq!(
        (floor.executions, floor.requests, floor.errors),
        (15, 15 * 2 + 12, 0)
    );
    assert!(report.floor_ratio.is_some_and(|r| r > 0.0));
    // The Job floor: the same requests of its own, and the operator's Jobs
    // for real — each ran `run-action` on the job runner to success (the
    // Job controller's Complete condition, seen by the floor's watch)
    // before its outcome was written; then they are gone.
    let jf = report.job_floor.as_ref().expect("job floor ran");
    assert_eq!(
        (jf.executions, jf.requests, jf.errors),
        (15, 15 * 2 + 12, 0)
    );
    assert_eq!((jf.jobs_succeeded, jf.jobs_failed), (12, 0), "{table}");
    assert!(report.job_floor_ratio.is_some_and(|r| r > 0.0));
    let floor_jobs: Api<k8s_openapi::api::batch::v1::Job> =
        Api::namespaced(client.clone(), common::OPERATOR_NS);
    let sel = kube::api::ListParams::default().labels(&format!(
        "{}={}",
        kubernetes_executor_loadtest::floor::FLOOR_LABEL,
        cfg.run_id
    ));
    assert!(
        floor_jobs
            .list_metadata(&sel)
            .await
            .expect("list Jobs")
            .items
            .is_empty(),
        "the Job floor's Jobs are deleted"
    );

    // The operator's requests, footprint and actors came from its metrics and /proc.
    let api = report.api.as_ref().expect("api use");
    assert!(
        api.by_request
            .iter()
            .any(|r| r.request == "patch kubernetesexecutions/status (2xx)" && r.count >= 27.0),
        "at least one status write per denial (its outcome) and two per execution that runs a Job (Executing, its outcome): {table}"
    );
    // The kill switch is answered from watches: no namespace reads, and the
    // only ConfigMap reads are the 3 PatchConfigMap targets (no 404s of the
    // absent control ConfigMap).
    let requests = |prefix: &str| -> f64 {
        api.by_request
            .iter()
            .filter(|r| r.request.starts_with(prefix))
            .map(|r| r.count)
            .sum()
    };
    assert_eq!(requests("get namespaces"), 0.0, "{table}");
    assert_eq!(requests("get configmaps"), 3.0, "{table}");
    // The request budget by verb (docs/performance.md, "Requests"), beyond
    // the status writes (which depend on how long phases last): per real
    // execution a Job, a grant made and revoked, a Lease taken and
    // released, its target read, an Event and the finalizer's removal (the
    // admission policy added it); per dry run a Job, a grant made and
    // revoked, its target read and an Event, no finalizer; per denial its
    // target read, an Event and the finalizer's removal.
    let exact = |r: &str| requests(&format!("{r} (2xx)"));
    assert_eq!(
        (
            exact("create jobs"),
            exact("create rolebindings"),
            exact("delete rolebindings"),
            exact("create leases"),
            exact("delete leases"),
        ),
        (12.0, 12.0, 12.0, 3.0, 3.0),
        "{table}"
    );
    assert_eq!(
        (
            exact("get deployments"),
            exact("create events"),
            exact("patch kubernetesexecutions"),
        ),
        (12.0, 15.0, 6.0),
        "one target read and one Event each; the finalizer removed from the 3 real executions and the 3 denials only: {table}"
    );
    // What the operator wrote agrees with what the harness watched.
    assert_eq!(
        report.transitions.get("Pending→Validating"),
        Some(&15.0),
        "{table}"
    );
    assert_eq!(
        report.transitions.get("Validating→Preparing"),
        Some(&12.0),
        "{table}"
    );
    assert_eq!(
        report.transitions.get("Executing→Completed"),
        Some(&9.0),
        "dry runs end when their Job does: {table}"
    );
    assert_eq!(
        report.transitions.get("Validating→Failed"),
        Some(&3.0),
        "{table}"
    );
    // The API server's own latency, next to the operator's numbers.
    let server = report.api_server.as_ref().expect("API server latency");
    assert!(server.requests > 0.0, "{table}");
    assert!(server.p99_ms.is_some_and(|p| p > 0.0), "{table}");
    assert!(table.contains("API server (its /metrics"), "{table}");
    let during = report.operator.as_ref().expect("footprint while running");
    assert!(
        during.rss_peak_mib > 1.0 && during.live_actors_peak >= 1.0,
        "{table}"
    );
    let after = report.operator_after.as_ref().expect("footprint after");
    assert_eq!(
        after.live_actors_end, 0.0,
        "no execution actor outlives its execution"
    );

    // A fresh operator over the 15 finished executions: ready, and no
    // execution actor for any of them.
    let restart = report.restart.as_ref().expect("restart measured");
    assert_eq!(restart.finished_present, 15);
    assert!(restart.ready_seconds > 0.0, "{table}");
    assert!(restart.after_ready.rss_peak_mib > 1.0, "{table}");
    assert_eq!(
        restart.after_ready.live_actors_peak, 0.0,
        "finished executions cost no actor: {table}"
    );
    assert!(
        table.contains("restart over 15 finished executions"),
        "{table}"
    );

    // Outputs render; the run's namespaces are gone.
    assert!(report.svg().starts_with("<svg") && report.svg().matches("<circle").count() >= 15);
    assert!(table.contains("targets") && table.contains("pickup"));
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in [
        format!("ke-load-{}", cfg.run_id),
        format!("ke-floor-api-{}", cfg.run_id),
        format!("ke-floor-jobs-{}", cfg.run_id),
    ] {
        assert!(
            nss.get_opt(&ns).await.expect("get ns").is_none(),
            "{ns} deleted"
        );
    }
}
