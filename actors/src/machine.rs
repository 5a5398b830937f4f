//! The ExecutionActor's phase machine as a pure function:
//! `transition(state, event) -> (state, effects)`. No I/O, no clocks: the
//! actor feeds it events (its own start, results of the effects it ran,
//! Job changes, timers, deletion) and executes the effects it returns.
//!
//! ```text
//! Pending → Validating → Preparing → Executing → Verifying → Completed
//!               │            │ (lock, grants,      └─(dry run)→ Completed
//!               │            │  Job; waits for a busy target)
//!               └────────────┴───────────┴───────────┴───────→ Failed
//! ```
//! `Completed` and `Failed` are terminal: nothing but deletion moves them.

use kubernetes_executor_crds::{
    ExecutionResult, Phase, PolicyDecision, RollbackInfo, TargetSnapshot, reasons,
};

use crate::catalog::Rejection;

/// What the machine knows; the actor keeps it next to the resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MachineState {
    /// Current phase (as last written to status).
    pub phase: Phase,
    /// The execution is being deleted.
    pub deleting: bool,
    /// The execution is a dry run (its Job runs the action with
    /// `dryRun=All`; success ends the execution without verification).
    pub dry_run: bool,
}

/// Everything validation learned, carried into status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The execution is a dry run.
    pub dry_run: bool,
    /// Canonical action name.
    pub action: String,
    /// `Kind/ns/name` of the target.
    pub target: String,
    /// Identity of the target at validation.
    pub snapshot: Option<TargetSnapshot>,
    /// The allowing policy decision.
    pub decision: Option<PolicyDecision>,
    /// What the dry run would do (dry runs only).
    pub output: Option<String>,
}

/// A validation failure with what was learned before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// Reason and message.
    pub rejection: Rejection,
    /// The denying decision, when policy refused.
    pub decision: Option<PolicyDecision>,
    /// Canonical action name and target, when known.
    pub action: Option<String>,
    /// `Kind/ns/name` of the target, when known.
    pub target: Option<String>,
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Refusal {
            rejection,
            decision: None,
            action: None,
            target: None,
        }
    }
}

/// How the Job ended, as read from its conditions and pod termination message.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    /// The Job completed; the action's result and rollback information.
    Succeeded {
        /// Result reported by `run-action`.
        result: ExecutionResult,
        /// Rollback information reported by `run-action`.
        rollback: Option<RollbackInfo>,
    },
    /// The Job failed (backoff limit reached, or the action reported failure).
    Failed {
        /// Result reported by `run-action`, or built from the Job status.
        result: ExecutionResult,
        /// Rollback information, when the action got far enough to record it.
        rollback: Option<RollbackInfo>,
        /// The action refused because the target changed since validation
        /// (recreated, or modified: its resourceVersion moved).
        target_changed: bool,
    },
    /// The Job ran past `activeDeadlineSeconds`.
    DeadlineExceeded {
        /// Human-readable detail.
        message: String,
    },
    /// The Job vanished before finishing (deleted by someone else).
    Missing,
}

/// Inputs of the machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The actor started (first time or after a restart) on the current status.
    Resume,
    /// The validation pipeline (catalog, target, policy, preconditions) ended.
    Validated(Result<Plan, Refusal>),
    /// The Job exists (created now, or found from before a restart).
    JobCreated {
        /// Its name.
        job_name: String,
    },
    /// The target lock was busy and the wait continues: try creating the Job again.
    RetryCreateJob,
    /// The kill switch holds a Pending execution (why); it looks again later.
    Paused(String),
    /// Another execution holds the target and this one waits (what for).
    TargetBusy(String),
    /// The Job finished.
    JobFinished(JobOutcome),
    /// Postcondition verification ended.
    Verified(Result<(), Rejection>),
    /// The execution's own timeout fired.
    TimedOut,
    /// The execution is being deleted.
    Deleted,
    /// The supervisor gave up on the execution's actor (it kept failing):
    /// the execution fails `InternalError` with this message.
    Abandoned(String),
}

/// What should go into status with a phase change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusChange {
    /// The new phase.
    pub phase: Phase,
    /// Machine-readable reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Validation outcome to record, if any.
    pub plan: Option<Plan>,
    /// Refusal details to record, if any.
    pub refusal: Option<Refusal>,
    /// Job name to record.
    pub job_name: Option<String>,
    /// Result to record.
    pub result: Option<ExecutionResult>,
    /// Rollback information to record.
    pub rollback: Option<RollbackInfo>,
}

/// Outputs of the machine, executed in order by the actor.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Write the phase change to status, emit an Event, count the transition.
    Transition(Box<StatusChange>),
    /// Run the validation pipeline; it answers with [`Event::Validated`].
    Validate,
    /// Ensure RBAC and the (deterministically named) Job; answers with [`Event::JobCreated`].
    CreateJob,
    /// Look at the existing Job (after a restart); answers with Job events.
    ObserveJob,
    /// Arm the execution's timeout timer.
    ArmTimeout,
    /// Verify postconditions; answers with [`Event::Verified`].
    Verify,
    /// Delete the Job (and its pods).
    DeleteJob,
    /// Release per-execution grants (the just-in-time RoleBinding).
    ReleaseGrants,
    /// Remove the operator's finalizer.
    RemoveFinalizer,
    /// Stop the actor.
    Stop,
}

fn to(phase: Phase, reason: &'static str, message: impl Into<String>) -> StatusChange {
    StatusChange {
        phase,
        reason,
        message: message.into(),
        ..Default::default()
    }
}

fn tr(change: StatusChange) -> Effect {
    Effect::Transition(Box::new(change))
}

/// The phase machine.
pub fn transition(state: &MachineState, event: Event) -> (MachineState, Vec<Effect>) {
    use Effect::*;
    use Phase::*;
    let mut next = state.clone();

    if matches!(event, Event::Deleted) {
        next.deleting = true;
        let mut fx = Vec::new();
        if state.phase != Pending {
            // From Validating on a Job may exist (even one created just before
            // a crash); a finished Job lingers until its TTL. Take it along.
            fx.push(DeleteJob);
        }
        fx.extend([ReleaseGrants, RemoveFinalizer, Stop]);
        return (next, fx);
    }
    if state.phase.is_terminal() || state.deleting {
        // Terminal phases never change; a deleting execution only cleans up.
        return (next, vec![Stop]);
    }

    if let Event::Abandoned(message) = event {
        next.phase = Failed;
        return (next, vec![tr(to(Failed, reasons::INTERNAL_ERROR, message))]);
    }

    let fx = match (state.phase, event) {
        (Pending, Event::Resume) => {
            next.phase = Validating;
            vec![
                tr(to(
                    Validating,
                    reasons::VALIDATING,
                    "validating the action, target and policies",
                )),
                Validate,
            ]
        }
        (Validating, Event::Resume) => vec![Validate],
        (Pending, Event::Paused(why)) => vec![tr(to(Pending, reasons::PAUSED, why))],
        (Preparing, Event::TargetBusy(what)) => {
            vec![tr(to(Preparing, reasons::WAITING_FOR_TARGET, what))]
        }
        (Validating | Preparing, Event::Validated(Err(refusal))) => {
            next.phase = Failed;
            let mut change = to(
                Failed,
                refusal.rejection.reason,
                refusal.rejection.message.clone(),
            );
            change.refusal = Some(refusal);
            vec![tr(change), ReleaseGrants, RemoveFinalizer, Stop]
        }
        (Validating, Event::Validated(Ok(plan))) => {
            // Record the decision; the lock, grants and Job come next (a
            // dry run's Job runs the action as a server-side dry run).
            next.phase = Preparing;
            let what = if plan.dry_run {
                "validated; granting the action's ServiceAccount and creating the Job of the server-side dry run"
            } else {
                "validated; taking the target lock, granting the action's ServiceAccount and creating the Job"
            };
            let mut change = to(Preparing, reasons::PREPARING, what);
            change.plan = Some(plan);
            vec![tr(change), CreateJob]
        }
        // Resumed after a crash: the Job may exist (creation adopts it) and
        // the lock and grants are idempotent.
        (Preparing, Event::Resume) | (Preparing, Event::RetryCreateJob) => vec![CreateJob],
        (Validating | Preparing, Event::JobCreated { job_name })
        | (Executing, Event::JobCreated { job_name }) => {
            let was = state.phase;
            next.phase = Executing;
            let mut fx = Vec::new();
            if was != Executing {
                let mut change = to(
                    Executing,
                    reasons::JOB_RUNNING,
                    format!("Job {job_name} is running the action"),
                );
                change.job_name = Some(job_name);
                fx.push(tr(change));
            }
            fx.push(ArmTimeout);
            fx
        }
        (Executing, Event::Resume) => vec![ArmTimeout, ObserveJob],
        (Executing, Event::JobFinished(JobOutcome::Succeeded { result, .. })) if state.dry_run => {
            // Nothing changed: nothing to verify, nothing to roll back.
            next.phase = Completed;
            let mut change = to(
                Completed,
                reasons::DRY_RUN_SUCCEEDED,
                "dry run: validation, policies and preconditions passed, and the API server accepted the action's requests as a server-side dry run (dryRun=All) under its ServiceAccount; nothing was changed",
            );
            change.result = Some(result);
            vec![tr(change), ReleaseGrants, RemoveFinalizer, Stop]
        }
        (Executing, Event::JobFinished(JobOutcome::Failed { result, .. })) if state.dry_run => {
            next.phase = Failed;
            let detail = result
                .error
                .clone()
                .unwrap_or_else(|| "the dry run's Job failed".into());
            let mut change = to(
                Failed,
                reasons::DRY_RUN_REJECTED,
                format!("the server-side dry run of the action failed: {detail}"),
            );
            change.result = Some(result);
            vec![tr(change), ReleaseGrants, RemoveFinalizer, Stop]
        }
        (Executing, Event::JobFinished(outcome)) => match outcome {
            JobOutcome::Succeeded { result, rollback } => {
                next.phase = Verifying;
                let mut change = to(
                    Verifying,
                    reasons::VERIFYING,
                    "the action succeeded; verifying postconditions",
                );
                change.result = Some(result);
                change.rollback = rollback;
                vec![tr(change), Verify]
            }
            JobOutcome::Failed {
                result,
                rollback,
                target_changed,
            } => {
                next.phase = Failed;
                let message = result
                    .error
                    .clone()
                    .unwrap_or_else(|| "the action's Job failed".into());
                let reason = if target_changed {
                    reasons::TARGET_CHANGED
                } else {
                    reasons::JOB_FAILED
                };
                let mut change = to(Failed, reason, message);
                change.result = Some(result);
                change.rollback = rollback;
                vec![tr(change), ReleaseGrants, RemoveFinalizer, Stop]
            }
            JobOutcome::DeadlineExceeded { message } => {
                next.phase = Failed;
                let mut change = to(Failed, reasons::TIMEOUT, message.clone());
                change.result = Some(ExecutionResult {
                    succeeded: false,
                    error: Some(message),
                    ..Default::default()
                });
                vec![tr(change), ReleaseGrants, RemoveFinalizer, Stop]
            }
            JobOutcome::Missing => {
                next.phase = Failed;
                let message =
                    "the action's Job was deleted before it finished; what it did is unknown"
                        .to_string();
                let mut change = to(Failed, reasons::JOB_FAILED, message.clone());
                change.result = Some(ExecutionResult {
                    succeeded: false,
                    error: Some(message),
                    ..Default::default()
                });
                vec![tr(change), ReleaseGrants, RemoveFinalizer, Stop]
            }
        },
        (Validating | Preparing | Executing | Verifying, Event::TimedOut) => {
            next.phase = Failed;
            let message = "the execution ran past its timeout".to_string();
            let mut change = to(Failed, reasons::TIMEOUT, message.clone());
            change.result = Some(ExecutionResult {
                succeeded: false,
                error: Some(message),
                ..Default::default()
            });
            let mut fx = vec![tr(change)];
            if state.phase == Executing {
                fx.push(DeleteJob);
            }
            fx.extend([ReleaseGrants, RemoveFinalizer, Stop]);
            fx
        }
        // After a restart the execution's own timer exists again, as it did
        // before (armed in Executing).
        (Verifying, Event::Resume) => vec![ArmTimeout, Verify],
        (Verifying, Event::Verified(Ok(()))) => {
            next.phase = Completed;
            vec![
                tr(to(
                    Completed,
                    reasons::SUCCEEDED,
                    "the action succeeded and was verified",
                )),
                ReleaseGrants,
                RemoveFinalizer,
                Stop,
            ]
        }
        (Verifying, Event::Verified(Err(rejection))) => {
            next.phase = Failed;
            vec![
                tr(to(Failed, rejection.reason, rejection.message)),
                ReleaseGrants,
                RemoveFinalizer,
                Stop,
            ]
        }
        // Anything else is stale or out of order (e.g. a Job event while
        // validating): ignore it.
        _ => vec![],
    };
    (next, fx)
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
