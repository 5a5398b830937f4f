//! Table tests of the pure decisions.

use super::*;
use k8s_openapi::api::batch::v1::{JobSpec, JobStatus};
use kubernetes_executor_crds::{
    ConditionPhase, KubernetesExecutionSpec, TargetBusyPolicy, TargetResource,
};

fn result(name: &str, required: bool, passed: bool, outcome: ConditionVerdict) -> ConditionResult {
    ConditionResult {
        name: name.into(),
        phase: ConditionPhase::Post,
        passed,
        required,
        outcome: Some(outcome.to_string()),
        message: Some(format!("{name} says {outcome}")),
        evaluated_at: None,
    }
}

#[test]
fn condition_answers_map_to_contract_outcomes() {
    use ConditionVerdict::*;
    type Answer = Result<Result<ConditionOutcome, String>, String>;
    let cases: Vec<(Answer, ConditionVerdict, &str)> = vec![
        (
            Ok(Ok(ConditionOutcome::Holds)),
            Verified,
            "the condition holds",
        ),
        (
            Ok(Ok(ConditionOutcome::Fails(vec!["a".into(), "b".into()]))),
            Failed,
            "a; b",
        ),
        (
            Ok(Ok(ConditionOutcome::Inconclusive(vec!["no pods".into()]))),
            Inconclusive,
            "no pods",
        ),
        (
            Ok(Err("undefined rule".into())),
            Inconclusive,
            "evaluation failed: undefined rule",
        ),
        (
            Err("policy is not running".into()),
            Inconclusive,
            "the policy engine did not answer: policy is not running",
        ),
    ];
    for (answer, verdict, message) in cases {
        assert_eq!(condition(answer), (verdict, message.to_string()));
    }
    assert_eq!(Verified.as_str(), "Verified");
    assert_eq!(Failed.to_string(), "Failed");
    assert_eq!(Inconclusive.to_string(), "Inconclusive");
}

#[test]
fn only_required_conditions_that_did_not_hold_fail_an_execution() {
    use ConditionVerdict::*;
    let cases = vec![
        (vec![], None),
        (vec![result("a", true, true, Verified)], None),
        (vec![result("a", false, false, Failed)], None),
        (
            vec![
                result("a", true, true, Verified),
                result("b", true, false, Inconclusive),
            ],
            Some("required postconditions did not hold: b (Inconclusive): b says Inconclusive"),
        ),
        (
            vec![
                result("a", true, false, Failed),
                result("b", true, false, Failed),
            ],
            Some(
                "required postconditions did not hold: a (Failed): a says Failed; b (Failed): b says Failed",
            ),
        ),
    ];
    for (results, want) in cases {
        match (postconditions(&results), want) {
            (Ok(()), None) => {}
            (Err(r), Some(msg)) => {
                assert_eq!(r.reason, reasons::POSTCONDITION_FAILED);
                assert_eq!(r.message, msg);
            }
            (got, want) => panic!("{results:?}: got {got:?}, want {want:?}"),
        }
        let pre = preconditions(&results);
        assert_eq!(pre.is_ok(), want.is_none(), "{results:?}");
        if let Err(r) = pre {
            assert_eq!(r.reason, reasons::PRECONDITION_FAILED);
            assert!(
                r.message.starts_with("required precondition "),
                "{}",
                r.message
            );
        }
    }
}

#[test]
fn policy_verdicts_fail_closed() {
    let at = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let v = |violations: &[&str], error: Option<&str>| Verdict {
        violations: violations.iter().map(|s| s.to_string()).collect(),
        digest: "d".into(),
        error: error.map(str::to_string),
    };
    let cases = vec![
        (v(&[], None), true, None),
        (
            v(&["scale to zero"], None),
            false,
            Some((reasons::POLICY_DENIED, "denied by policy: scale to zero")),
        ),
        (
            v(&["a", "b"], None),
            false,
            Some((reasons::POLICY_DENIED, "denied by policy: a; b")),
        ),
        (
            v(&[], Some("timeout")),
            false,
            Some((
                reasons::POLICY_UNAVAILABLE,
                "policy evaluation failed: timeout",
            )),
        ),
    ];
    for (verdict, allowed, refusal) in cases {
        let (decision, outcome) = policy(&verdict, at.clone());
        assert_eq!(decision.allowed, allowed);
        assert_eq!(decision.policy_set_digest, "d");
        assert_eq!(decision.evaluated_at, Some(at.clone()));
        match (outcome, refusal) {
            (Ok(()), None) => {}
            (Err(r), Some((reason, msg))) => {
                assert_eq!((r.reason, r.message.as_str()), (reason, msg))
            }
            (got, want) => panic!("{verdict:?}: {got:?} vs {want:?}"),
        }
    }
}

#[test]
fn the_busy_target_rule() {
    let s = Duration::from_secs;
    let cases = vec![
        (
            TargetBusyPolicy::Fail,
            s(0),
            s(60),
            Busy::Fail(Rejection::new(
                reasons::TARGET_BUSY,
                "target Deployment shop/web is being changed by execution shop/other",
            )),
        ),
        (
            TargetBusyPolicy::Wait,
            s(10),
            s(60),
            Busy::Wait(
                "waiting for execution shop/other to release target Deployment shop/web".into(),
            ),
        ),
        (
            TargetBusyPolicy::Wait,
            s(60),
            s(60),
            Busy::Fail(Rejection::new(
                reasons::TARGET_BUSY,
                "target Deployment shop/web stayed locked by execution shop/other for 60s (the timeout)",
            )),
        ),
        (
            TargetBusyPolicy::Wait,
            s(61),
            s(60),
            Busy::Fail(Rejection::new(
                reasons::TARGET_BUSY,
                "target Deployment shop/web stayed locked by execution shop/other for 61s (the timeout)",
            )),
        ),
    ];
    for (policy, waited, timeout, want) in cases {
        assert_eq!(
            busy(policy, "Deployment shop/web", "shop/other", waited, timeout),
            want
        );
    }
}

fn job(conditions: &[(&str, &str, Option<&str>)], failed: i32, succeeded: i32) -> Job {
    Job {
        metadata: kube::core::ObjectMeta {
            name: Some("ke-abc-1".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            active_deadline_seconds: Some(30),
            ..Default::default()
        }),
        status: Some(JobStatus {
            failed: Some(failed),
            succeeded: Some(succeeded),
            conditions: Some(
                conditions
                    .iter()
                    .map(|(t, s, r)| JobCondition {
                        type_: t.to_string(),
                        status: s.to_string(),
                        reason: r.map(str::to_string),
                        message: Some("msg".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

#[test]
fn job_conditions_and_attempts() {
    assert_eq!(job_finished(&job(&[], 0, 0)), None);
    assert_eq!(
        job_finished(&job(&[("Complete", "False", None)], 0, 0)),
        None
    );
    assert_eq!(
        job_finished(&job(&[("Complete", "True", None)], 0, 1)),
        Some(Ok(()))
    );
    let failed = job_finished(&job(
        &[("Failed", "True", Some("BackoffLimitExceeded"))],
        2,
        0,
    ));
    assert!(matches!(failed, Some(Err(c)) if c.reason.as_deref() == Some("BackoffLimitExceeded")));
    assert_eq!(attempts(&job(&[], 0, 0)), None);
    assert_eq!(attempts(&job(&[], 2, 1)), Some(3));
}

#[test]
fn job_outcomes() {
    let ok = job(&[("Complete", "True", None)], 0, 1);
    let out = ActionOutput {
        result: ExecutionResult {
            succeeded: true,
            output: Some("scaled".into()),
            ..Default::default()
        },
        rollback: None,
        reason: None,
    };
    assert!(matches!(
        job_outcome(&ok, Ok(()), Some(out.clone())),
        JobOutcome::Succeeded { result, .. } if result.output.as_deref() == Some("scaled")
    ));
    assert!(matches!(
        job_outcome(&ok, Ok(()), None),
        JobOutcome::Succeeded { result, .. } if result.succeeded
    ));
    let cond = |reason: &str| {
        Box::new(JobCondition {
            type_: "Failed".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some("msg".into()),
            ..Default::default()
        })
    };
    assert_eq!(
        job_outcome(&ok, Err(cond("DeadlineExceeded")), None),
        JobOutcome::DeadlineExceeded {
            message: "the action's Job ke-abc-1 ran past its deadline (30s): msg".into()
        }
    );
    assert!(matches!(
        job_outcome(&ok, Err(cond("BackoffLimitExceeded")), None),
        JobOutcome::Failed { result, target_changed: false, .. }
            if result.error.as_deref() == Some("Job ke-abc-1 failed (BackoffLimitExceeded): msg")
    ));
    // The action's own output wins, marked failed even if it said otherwise.
    let changed = ActionOutput {
        reason: Some(reasons::TARGET_CHANGED.into()),
        ..out
    };
    assert!(matches!(
        job_outcome(&ok, Err(cond("BackoffLimitExceeded")), Some(changed)),
        JobOutcome::Failed { result, target_changed: true, .. } if !result.succeeded
    ));
}

#[test]
fn termination_messages() {
    assert_eq!(termination_output("  ", true), None);
    let text = termination_output("panic: boom", false).expect("text");
    assert_eq!(text.result.error.as_deref(), Some("panic: boom"));
    assert!(!text.result.succeeded);
    let long = "x".repeat(5000);
    let o = termination_output(&long, true).expect("text");
    assert_eq!(o.result.output.map(|s| s.len()), Some(1024));
    let json = r#"{"result":{"succeeded":true,"output":"ok"}}"#;
    assert_eq!(
        termination_output(json, true).and_then(|o| o.result.output),
        Some("ok".into())
    );
}

#[test]
fn dry_run_text_redacts_secrets() {
    let spec = KubernetesExecutionSpec {
        parameters: [("replicas".to_string(), "3".to_string())].into(),
        ..KubernetesExecutionSpec::new(
            "ScaleDeployment",
            TargetResource::new("Deployment", "web", Some("shop")),
        )
    };
    let v = crate::catalog::validate(&spec, "shop").expect("valid");
    assert_eq!(
        dry_run_text(&v, "ScaleDeployment", "Deployment shop/web"),
        "would run ScaleDeployment on Deployment shop/web with replicas=3"
    );
}

#[test]
fn a_start_time_in_the_future_counts_as_no_time_elapsed() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let now = Timestamp::now();
    let ahead = now
        .checked_add(SignedDuration::from_secs(20))
        .expect("time");
    assert_eq!(elapsed_since(ahead, now), Duration::ZERO);
    let before = now.checked_sub(SignedDuration::from_secs(5)).expect("time");
    assert_eq!(elapsed_since(before, now), Duration::from_secs(5));
}

#[test]
fn a_jobs_run_time_comes_from_its_own_timestamps() {
    let job = |status: serde_json::Value| -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "j", "creationTimestamp": "2026-11-30T10:00:00Z" },
            "status": status,
        }))
        .expect("job")
    };
    let done = job(serde_json::json!({ "completionTime": "2026-11-30T10:01:30Z" }));
    assert_eq!(job_run_seconds(&done), Some(90.0));
    let failed = job(serde_json::json!({ "conditions": [
        { "type": "Failed", "status": "True", "lastTransitionTime": "2026-11-30T10:00:07Z" }
    ] }));
    assert_eq!(job_run_seconds(&failed), Some(7.0));
    let running = job(serde_json::json!({ "active": 1 }));
    assert_eq!(job_run_seconds(&running), None);
}
