//! What an execution's Job came to: finding an existing Job (adoption),
//! interpreting its conditions and its pod's termination message.

use super::*;

/// This execution's Job, if one exists (deterministic name, matching UID label).
pub(super) async fn existing_job(state: &ExecutionState) -> Option<Job> {
    let (name, exec_uid) = (job_name(&uid(state), 1), uid(state));
    retry_for(PATIENCE, || state.ctx.api.get_job_of(&name, &exec_uid))
        .await
        .ok()
        .flatten()
}

/// Interprets a Job's status; `Some` when it finished.
pub(super) async fn job_event(state: &mut ExecutionState, job: &Job) -> Option<Event> {
    if job
        .labels()
        .get(kubernetes_executor_crds::labels::EXECUTION_UID)
        != Some(&uid(state))
    {
        return None;
    }
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let is = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    let complete = is("Complete").is_some();
    let failed = is("Failed");
    if !complete && failed.is_none() {
        return None;
    }
    // Real attempts: every pod that ran to an end (retries included).
    if let Some(st) = job.status.as_ref() {
        let n = st.failed.unwrap_or(0) + st.succeeded.unwrap_or(0);
        if n > 0 {
            state.status.attempts = Some(n);
        }
    }
    if let Some(t) = state.job_created {
        state
            .ctx
            .metrics
            .job_completion_duration
            .observe(t.elapsed().as_secs_f64());
    }
    let output = termination_output(state, &job.name_any(), complete).await;
    if complete {
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
        return Some(Event::JobFinished(JobOutcome::Succeeded {
            result,
            rollback,
        }));
    }
    let failed = failed?;
    if failed.reason.as_deref() == Some("DeadlineExceeded") {
        let message = format!(
            "the action's Job {} ran past its deadline ({}s): {}",
            job.name_any(),
            job.spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
                .unwrap_or_default(),
            failed.message.clone().unwrap_or_default()
        );
        return Some(Event::JobFinished(JobOutcome::DeadlineExceeded { message }));
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
                    "Job {} failed ({}): {}",
                    job.name_any(),
                    failed.reason.clone().unwrap_or_default(),
                    failed.message.clone().unwrap_or_default()
                )),
                ..Default::default()
            },
            None,
        ),
    };
    Some(Event::JobFinished(JobOutcome::Failed {
        result,
        rollback,
        target_changed,
    }))
}

/// Reads the newest pod's termination message (`run-action`'s JSON output).
pub(super) async fn termination_output(
    state: &ExecutionState,
    job: &str,
    succeeded: bool,
) -> Option<ActionOutput> {
    // The Job controller marked the Job finished after its informer saw the
    // pod terminate, so the API server's watch cache normally has the pod
    // already; read from it, and from etcd only if the pod looks unfinished.
    let want = if succeeded { "Succeeded" } else { "Failed" };
    let mut message = None;
    for cached in [true, false] {
        let pods = retry_for(PATIENCE, || state.ctx.api.job_pods(job, cached))
            .await
            .ok()?;
        let pod = pods
            .iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(want))
            .or_else(|| pods.first());
        message = pod
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.message.clone().unwrap_or_default());
        if message.is_some() {
            break;
        }
    }
    let message = message?;
    match serde_json::from_str::<ActionOutput>(&message) {
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
