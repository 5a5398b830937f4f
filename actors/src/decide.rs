//! The execution actor's decisions, pure and table-tested: what a policy
//! verdict, a finished Job, a busy target, a condition's answer and a set
//! of postcondition results come to, and the text of a dry run. No I/O, no
//! clocks (times come in as arguments): the actor gathers the inputs
//! ([`crate::execution`]), calls these, and feeds the result to the phase
//! machine ([`crate::machine`]), which authors every status change.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubernetes_executor_crds::{ConditionResult, ExecutionResult, PolicyDecision, reasons};

use crate::catalog::{Rejection, ValidatedAction};
use crate::job::ActionOutput;
use crate::machine::JobOutcome;
use crate::policy::{ConditionOutcome, Verdict};

/// What a pre/postcondition came to, as recorded in
/// `status.validationResults.conditions[].outcome` (these strings are the
/// API contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionVerdict {
    /// The condition holds.
    Verified,
    /// The condition does not hold.
    Failed,
    /// It could not be decided (no data, evaluation error, no answer).
    Inconclusive,
}

impl ConditionVerdict {
    /// The contract string.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionVerdict::Verified => "Verified",
            ConditionVerdict::Failed => "Failed",
            ConditionVerdict::Inconclusive => "Inconclusive",
        }
    }
}

impl std::fmt::Display for ConditionVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition's verdict and message from the PolicyActor's answer (or why
/// there was none).
pub fn condition(
    answer: Result<Result<ConditionOutcome, String>, String>,
) -> (ConditionVerdict, String) {
    match answer {
        Ok(Ok(ConditionOutcome::Holds)) => {
            (ConditionVerdict::Verified, "the condition holds".into())
        }
        Ok(Ok(ConditionOutcome::Fails(r))) => (ConditionVerdict::Failed, r.join("; ")),
        Ok(Ok(ConditionOutcome::Inconclusive(r))) => (ConditionVerdict::Inconclusive, r.join("; ")),
        Ok(Err(e)) => (
            ConditionVerdict::Inconclusive,
            format!("evaluation failed: {e}"),
        ),
        Err(e) => (
            ConditionVerdict::Inconclusive,
            format!("the policy engine did not answer: {e}"),
        ),
    }
}

/// The execution's verdict on its postconditions: every required one held,
/// or a `PostconditionFailed` naming each that did not.
pub fn postconditions(results: &[ConditionResult]) -> Result<(), Rejection> {
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.required && !r.passed)
        .map(|r| {
            format!(
                "{} ({}): {}",
                r.name,
                r.outcome.clone().unwrap_or_default(),
                r.message.clone().unwrap_or_default()
            )
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Rejection::new(
            reasons::POSTCONDITION_FAILED,
            format!(
                "required postconditions did not hold: {}",
                failed.join("; ")
            ),
        ))
    }
}

/// The first required precondition that did not hold, as a refusal.
pub fn preconditions(results: &[ConditionResult]) -> Result<(), Rejection> {
    match results.iter().find(|r| r.required && !r.passed) {
        None => Ok(()),
        Some(failed) => Err(Rejection::new(
            reasons::PRECONDITION_FAILED,
            format!(
                "required precondition {} did not hold: {}",
                failed.name,
                failed.message.clone().unwrap_or_default()
            ),
        )),
    }
}

/// The safety policies' verdict: the decision to record, and the refusal
/// when it is not an allow (an evaluation error fails closed).
pub fn policy(verdict: &Verdict, evaluated_at: Time) -> (PolicyDecision, Result<(), Rejection>) {
    let decision = PolicyDecision {
        allowed: verdict.allowed(),
        policy_set_digest: verdict.digest.clone(),
        violations: verdict.violations.clone(),
        evaluated_at: Some(evaluated_at),
    };
    let outcome = if let Some(err) = &verdict.error {
        Err(Rejection::new(
            reasons::POLICY_UNAVAILABLE,
            format!("policy evaluation failed: {err}"),
        ))
    } else if !decision.allowed {
        Err(Rejection::new(
            reasons::POLICY_DENIED,
            format!("denied by policy: {}", decision.violations.join("; ")),
        ))
    } else {
        Ok(())
    };
    (decision, outcome)
}

/// What a dry run would do (secret parameter values redacted).
pub fn dry_run_text(v: &ValidatedAction, action: &str, target: &str) -> String {
    let params = if v.params.is_empty() {
        "no parameters".to_string()
    } else {
        v.params
            .iter()
            .map(|(k, val)| {
                if v.action.param(k).is_some_and(|p| p.secret) {
                    format!("{k}=<redacted>")
                } else {
                    format!("{k}={val}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("would run {action} on {target} with {params}")
}

/// What to do while another execution holds the target lock.
#[derive(Clone, Debug, PartialEq)]
pub enum Busy {
    /// Fail now with this refusal (`onTargetBusy: Fail`, or waited the
    /// whole timeout).
    Fail(Rejection),
    /// Keep waiting; record this message (once) while waiting.
    Wait(String),
}

/// The busy-target rule.
pub fn busy(
    policy: kubernetes_executor_crds::TargetBusyPolicy,
    target: &str,
    holder: &str,
    waited: Duration,
    timeout: Duration,
) -> Busy {
    use kubernetes_executor_crds::TargetBusyPolicy;
    if policy == TargetBusyPolicy::Fail {
        return Busy::Fail(Rejection::new(
            reasons::TARGET_BUSY,
            format!("target {target} is being changed by execution {holder}"),
        ));
    }
    if waited >= timeout {
        return Busy::Fail(Rejection::new(
            reasons::TARGET_BUSY,
            format!(
                "target {target} stayed locked by execution {holder} for {}s (the timeout)",
                waited.as_secs()
            ),
        ));
    }
    Busy::Wait(format!(
        "waiting for execution {holder} to release target {target}"
    ))
}

/// How a Job ended, from its conditions (`None`: still running).
pub fn job_finished(job: &Job) -> Option<Result<(), Box<JobCondition>>> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if is("Complete").is_some() {
        return Some(Ok(()));
    }
    is("Failed").map(|c| Err(Box::new(c.clone())))
}

/// How long a finished Job ran, from its own timestamps: creation to
/// `completionTime`, or to its `Failed` condition's transition.
pub fn job_run_seconds(job: &Job) -> Option<f64> {
    let created = job.metadata.creation_timestamp.as_ref()?.0;
    let st = job.status.as_ref()?;
    let ended = st.completion_time.as_ref().map(|t| t.0).or_else(|| {
        st.conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Failed" && c.status == "True")?
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
    })?;
    let seconds = ended.duration_since(created).as_secs_f64();
    (seconds >= 0.0).then_some(seconds)
}

/// Real attempts of a finished Job: every pod that ran to an end.
pub fn attempts(job: &Job) -> Option<i32> {
    let st = job.status.as_ref()?;
    let n = st.failed.unwrap_or(0) + st.succeeded.unwrap_or(0);
    (n > 0).then_some(n)
}

/// The action's output from its pod's termination message (`run-action`
/// writes JSON there; anything else is kept as text, bounded).
pub fn termination_output(message: &str, succeeded: bool) -> Option<ActionOutput> {
    match serde_json::from_str::<ActionOutput>(message) {
        Ok(o) => Some(o),
        Err(_) if message.trim().is_empty() => None,
        Err(_) => Some(ActionOutput {
            result: ExecutionResult {
                succeeded,
                error: (!succeeded).then(|| message.chars().take(1024).collect()),
                output: succeeded.then(|| message.chars().take(1024).collect()),
                ..Default::default()
            },
            rollback: None,
            reason: None,
        }),
    }
}

/// What a finished Job came to, given how it ended and its output.
pub fn job_outcome(
    job: &Job,
    finished: Result<(), Box<JobCondition>>,
    output: Option<ActionOutput>,
) -> JobOutcome {
    let name = job.metadata.name.clone().unwrap_or_default();
    let failed = match finished {
        Ok(()) => {
            let (result, rollback) = match output {
                Some(o) => (o.result, o.rollback),
                None => (
                    ExecutionResult {
                        succeeded: true,
                        ..Default::default()
                    },
                    None,
                ),
            };
            return JobOutcome::Succeeded { result, rollback };
        }
        Err(c) => c,
    };
    if failed.reason.as_deref() == Some("DeadlineExceeded") {
        let message = format!(
            "the action's Job {name} ran past its deadline ({}s): {}",
            job.spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
                .unwrap_or_default(),
            failed.message.clone().unwrap_or_default()
        );
        return JobOutcome::DeadlineExceeded { message };
    }
    let target_changed = output
        .as_ref()
        .is_some_and(|o| o.reason.as_deref() == Some(reasons::TARGET_CHANGED));
    let (result, rollback) = match output {
        Some(mut o) => {
            o.result.succeeded = false;
            (o.result, o.rollback)
        }
        None => (
            ExecutionResult {
                succeeded: false,
                error: Some(format!(
                    "Job {name} failed ({}): {}",
                    failed.reason.clone().unwrap_or_default(),
                    failed.message.clone().unwrap_or_default()
                )),
                ..Default::default()
            },
            None,
        ),
    };
    JobOutcome::Failed {
        result,
        rollback,
        target_changed,
    }
}

/// Time from `started` to `now`; zero when `started` lies in the future (a
/// clock ahead on the replica that wrote it must not time an execution out).
pub fn elapsed_since(
    started: k8s_openapi::jiff::Timestamp,
    now: k8s_openapi::jiff::Timestamp,
) -> Duration {
    let d = now.duration_since(started);
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
