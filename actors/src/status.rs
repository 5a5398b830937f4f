//! Pure status bookkeeping: applies a [`StatusChange`] from the phase
//! machine to a `KubernetesExecutionStatus`, maintaining the standard
//! conditions (`Validated`, `PolicyAllowed`, `Executed`, `Verified`,
//! `Succeeded`) with Kubernetes semantics (lastTransitionTime moves only when
//! the status of a condition changes).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kubernetes_executor_crds::reasons::{self, conditions as ct};
use kubernetes_executor_crds::{KubernetesExecutionStatus, Phase, ValidationResults};

use crate::machine::StatusChange;

/// Sets (or adds) condition `type_`.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: &Time,
    generation: Option<i64>,
) {
    let status = if ok { "True" } else { "False" }.to_string();
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = now.clone();
        }
        c.status = status;
        c.reason = reason.to_string();
        c.message = message.to_string();
        c.observed_generation = generation;
    } else {
        conds.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: now.clone(),
            observed_generation: generation,
        });
    }
}

fn is_validation_reason(reason: &str) -> bool {
    [
        reasons::UNKNOWN_ACTION,
        reasons::INVALID_PARAMETERS,
        reasons::INVALID_TARGET,
        reasons::INVALID_TIMEOUT,
        reasons::TARGET_NOT_FOUND,
        reasons::TARGET_CHANGED,
    ]
    .contains(&reason)
}

/// Longest `status.message` (and condition message) written; longer ones are
/// cut with a marker. Status must stay small: it is read by every watcher,
/// and nothing a requester controls (inline conditions, server messages)
/// may use it to copy large amounts of the cluster's data.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `msg`, cut to at most `max` bytes on a character boundary.
pub fn bounded(msg: &str, max: usize) -> String {
    if msg.len() <= max {
        return msg.to_string();
    }
    const MARK: &str = "… (truncated)";
    let mut end = max.saturating_sub(MARK.len());
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &msg[..end])
}

/// Applies `change` to `status` at time `now` for spec generation `generation`.
pub fn apply(
    status: &mut KubernetesExecutionStatus,
    change: &StatusChange,
    now: Time,
    generation: Option<i64>,
) {
    let previous = status.phase.unwrap_or_default();
    status.phase = Some(change.phase);
    status.reason = Some(change.reason.to_string());
    let msg = bounded(&change.message, MAX_MESSAGE_BYTES);
    status.message = Some(msg.clone());
    status.observed_generation = generation;
    if status.start_time.is_none() {
        status.start_time = Some(now.clone());
    }
    let conds = &mut status.conditions;
    let msg = msg.as_str();

    if let Some(plan) = &change.plan {
        status.resolved_action = Some(plan.action.clone());
        status.target = Some(plan.target.clone());
        if plan.snapshot.is_some() {
            status.target_snapshot = plan.snapshot.clone();
        }
        set_condition(
            conds,
            ct::VALIDATED,
            true,
            "Valid",
            "the action, parameters and target are valid",
            &now,
            generation,
        );
        if let Some(decision) = &plan.decision {
            set_condition(
                conds,
                ct::POLICY_ALLOWED,
                true,
                "Allowed",
                "the safety policies allow the action",
                &now,
                generation,
            );
            status.policy_violations.clear();
            status
                .validation_results
                .get_or_insert_with(ValidationResults::default)
                .policy_decision = Some(decision.clone());
        }
    }
    if let Some(refusal) = &change.refusal {
        if let Some(a) = &refusal.action {
            status.resolved_action = Some(a.clone());
        }
        if let Some(t) = &refusal.target {
            status.target = Some(t.clone());
        }
        let reason = refusal.rejection.reason;
        if is_validation_reason(reason) {
            set_condition(conds, ct::VALIDATED, false, reason, msg, &now, generation);
        } else {
            set_condition(
                conds,
                ct::VALIDATED,
                true,
                "Valid",
                "the action, parameters and target are valid",
                &now,
                generation,
            );
        }
        if let Some(decision) = &refusal.decision {
            status.policy_violations = decision.violations.clone();
            status
                .validation_results
                .get_or_insert_with(ValidationResults::default)
                .policy_decision = Some(decision.clone());
            set_condition(
                conds,
                ct::POLICY_ALLOWED,
                decision.allowed,
                reason,
                msg,
                &now,
                generation,
            );
        } else if reason == reasons::POLICY_DENIED || reason == reasons::POLICY_UNAVAILABLE {
            set_condition(
                conds,
                ct::POLICY_ALLOWED,
                false,
                reason,
                msg,
                &now,
                generation,
            );
        }
    }
    if let Some(job) = &change.job_name {
        status.job_name = Some(job.clone());
        status.attempts = Some(status.attempts.unwrap_or(0).max(1));
    }
    if let Some(result) = &change.result {
        let mut result = result.clone();
        // The plan's field name for the same text.
        if result.error_message.is_none() {
            result.error_message = result.error.clone();
        }
        status.result = Some(result);
    }
    if let Some(rollback) = &change.rollback {
        status.rollback_info = Some(rollback.clone());
    }

    match (change.phase, change.reason) {
        (Phase::Verifying, _) => {
            set_condition(
                conds,
                ct::EXECUTED,
                true,
                "JobSucceeded",
                "the action's Job succeeded",
                &now,
                generation,
            );
        }
        (Phase::Completed, r) if r == reasons::DRY_RUN_SUCCEEDED => {
            set_condition(conds, ct::SUCCEEDED, true, r, msg, &now, generation);
        }
        (Phase::Completed, r) => {
            set_condition(
                conds,
                ct::VERIFIED,
                true,
                "PostconditionsPassed",
                "postconditions verified",
                &now,
                generation,
            );
            set_condition(conds, ct::SUCCEEDED, true, r, msg, &now, generation);
        }
        (Phase::Failed, r) => {
            if r == reasons::JOB_FAILED || (r == reasons::TIMEOUT && previous == Phase::Executing) {
                set_condition(conds, ct::EXECUTED, false, r, msg, &now, generation);
            }
            if r == reasons::POSTCONDITION_FAILED {
                set_condition(conds, ct::VERIFIED, false, r, msg, &now, generation);
            }
            set_condition(conds, ct::SUCCEEDED, false, r, msg, &now, generation);
        }
        _ => {}
    }
    let message = msg.to_string();
    plan_conditions(status, change, &message, &now, generation);
    stage_times(status, previous, change, &now);
    if change.phase == Phase::Failed {
        status.failure_reason = Some(change.reason.to_string());
    }
    if change.phase.is_terminal() {
        status.completion_time = Some(now);
    }
}

/// The implementation plan's condition types, next to ours: `ActionValidated`
/// mirrors `Validated`; the others are set `True` when they apply.
fn plan_conditions(
    status: &mut KubernetesExecutionStatus,
    change: &StatusChange,
    msg: &str,
    now: &Time,
    generation: Option<i64>,
) {
    let conds = &mut status.conditions;
    if let Some(v) = conds.iter().find(|c| c.type_ == ct::VALIDATED).cloned() {
        let ok = v.status == "True";
        set_condition(
            conds,
            ct::ACTION_VALIDATED,
            ok,
            &v.reason,
            &v.message,
            now,
            generation,
        );
    }
    let reason = change.reason;
    if let Some(refusal) = &change.refusal {
        let r = refusal.rejection.reason;
        if is_validation_reason(r) {
            set_condition(
                conds,
                ct::ACTION_VALIDATION_FAILED,
                true,
                r,
                msg,
                now,
                generation,
            );
        }
        if r == reasons::INVALID_PARAMETERS || r == reasons::INVALID_TIMEOUT {
            set_condition(
                conds,
                ct::PARAMETER_VALIDATION_FAILED,
                true,
                r,
                msg,
                now,
                generation,
            );
        }
        if r == reasons::POLICY_DENIED {
            set_condition(conds, ct::POLICY_VIOLATION, true, r, msg, now, generation);
        }
    }
    if change.phase == Phase::Completed && reason == reasons::DRY_RUN_SUCCEEDED {
        set_condition(
            conds,
            ct::DRY_RUN_COMPLETED,
            true,
            reason,
            msg,
            now,
            generation,
        );
    }
}

/// The plan's per-stage timestamps: each set once, when the stage starts
/// or ends.
fn stage_times(
    status: &mut KubernetesExecutionStatus,
    previous: Phase,
    change: &StatusChange,
    now: &Time,
) {
    let (from, to) = (previous, change.phase);
    if to == Phase::Validating && status.validation_start_time.is_none() {
        status.validation_start_time = Some(now.clone());
    }
    if from == Phase::Validating && to != Phase::Validating {
        status
            .validation_complete_time
            .get_or_insert_with(|| now.clone());
    }
    if to == Phase::Executing && status.execution_start_time.is_none() {
        status.execution_start_time = Some(now.clone());
    }
    if from == Phase::Executing && to != Phase::Executing {
        status
            .execution_complete_time
            .get_or_insert_with(|| now.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Rejection;
    use crate::machine::{Plan, Refusal};
    use kubernetes_executor_crds::PolicyDecision;

    fn now(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("ts"))
    }

    fn cond<'a>(s: &'a KubernetesExecutionStatus, t: &str) -> Option<&'a Condition> {
        s.conditions.iter().find(|c| c.type_ == t)
    }

    #[test]
    fn policy_denial_records_violations_digest_and_conditions() {
        let mut s = KubernetesExecutionStatus::default();
        let decision = PolicyDecision {
            allowed: false,
            policy_set_digest: "sha256:abc".into(),
            violations: vec!["namespace kube-system is protected".into()],
            evaluated_at: None,
        };
        let change = StatusChange {
            phase: Phase::Failed,
            reason: reasons::POLICY_DENIED,
            message: "denied".into(),
            refusal: Some(Refusal {
                rejection: Rejection::new(reasons::POLICY_DENIED, "denied"),
                decision: Some(decision),
                action: Some("ScaleDeployment".into()),
                target: Some("Deployment/kube-system/coredns".into()),
            }),
            ..Default::default()
        };
        apply(&mut s, &change, now(10), Some(1));
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(
            s.policy_violations,
            vec!["namespace kube-system is protected".to_string()]
        );
        assert_eq!(
            s.validation_results
                .as_ref()
                .and_then(|v| v.policy_decision.as_ref())
                .map(|d| d.policy_set_digest.as_str()),
            Some("sha256:abc")
        );
        assert_eq!(
            cond(&s, ct::VALIDATED).map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(
            cond(&s, ct::POLICY_ALLOWED).map(|c| c.status.as_str()),
            Some("False")
        );
        assert_eq!(
            cond(&s, ct::SUCCEEDED).map(|c| c.status.as_str()),
            Some("False")
        );
        assert!(s.completion_time.is_some());
    }

    #[test]
    fn invalid_input_sets_validated_false() {
        let mut s = KubernetesExecutionStatus::default();
        let change = StatusChange {
            phase: Phase::Failed,
            reason: reasons::INVALID_PARAMETERS,
            message: "missing replicas".into(),
            refusal: Some(Rejection::new(reasons::INVALID_PARAMETERS, "missing replicas").into()),
            ..Default::default()
        };
        apply(&mut s, &change, now(1), Some(1));
        let v = cond(&s, ct::VALIDATED).expect("validated");
        assert_eq!(
            (v.status.as_str(), v.reason.as_str()),
            ("False", reasons::INVALID_PARAMETERS)
        );
        assert_eq!(v.message, "missing replicas");
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut s = KubernetesExecutionStatus::default();
        let plan = Plan {
            action: "A".into(),
            target: "T".into(),
            ..Default::default()
        };
        let v = StatusChange {
            phase: Phase::Validating,
            reason: reasons::VALIDATING,
            plan: Some(plan),
            ..Default::default()
        };
        apply(&mut s, &v, now(1), Some(1));
        apply(&mut s, &v, now(5), Some(1));
        assert_eq!(
            cond(&s, ct::VALIDATED).map(|c| c.last_transition_time.clone()),
            Some(now(1))
        );
        assert_eq!(s.start_time, Some(now(1)));
    }

    #[test]
    fn full_success_sets_every_condition() {
        let mut s = KubernetesExecutionStatus::default();
        let plan = Plan {
            action: "A".into(),
            target: "T".into(),
            decision: Some(PolicyDecision {
                allowed: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        for change in [
            StatusChange {
                phase: Phase::Validating,
                reason: reasons::VALIDATING,
                plan: Some(plan),
                ..Default::default()
            },
            StatusChange {
                phase: Phase::Executing,
                reason: reasons::JOB_RUNNING,
                job_name: Some("ke-x-1".into()),
                ..Default::default()
            },
            StatusChange {
                phase: Phase::Verifying,
                reason: reasons::VERIFYING,
                ..Default::default()
            },
            StatusChange {
                phase: Phase::Completed,
                reason: reasons::SUCCEEDED,
                ..Default::default()
            },
        ] {
            apply(&mut s, &change, now(2), Some(3));
        }
        for t in [
            ct::VALIDATED,
            ct::POLICY_ALLOWED,
            ct::EXECUTED,
            ct::VERIFIED,
            ct::SUCCEEDED,
        ] {
            assert_eq!(cond(&s, t).map(|c| c.status.as_str()), Some("True"), "{t}");
            assert_eq!(cond(&s, t).and_then(|c| c.observed_generation), Some(3));
        }
        assert_eq!(s.job_name.as_deref(), Some("ke-x-1"));
        assert_eq!(s.attempts, Some(1));
    }

    #[test]
    fn messages_are_bounded() {
        let long = "é".repeat(5000);
        let b = super::bounded(&long, super::MAX_MESSAGE_BYTES);
        assert!(b.len() <= super::MAX_MESSAGE_BYTES, "{}", b.len());
        assert!(b.ends_with("(truncated)"));
        assert_eq!(super::bounded("short", 10), "short");
    }
}
