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

/// A change of this execution's Job, as the Job watch saw it.
pub(super) async fn job_changed(state: &mut ExecutionState, job: &Job) -> Option<Event> {
    // Once the Job's end was taken (Verifying or an outcome), later
    // updates of it change nothing: no second read of its pod's output.
    let past_job =
        matches!(state.machine.phase, Phase::Verifying) || state.machine.phase.is_terminal();
    if past_job {
        return None;
    }
    job_event(state, job).await
}

/// This execution's Job was deleted (its last state).
pub(super) async fn job_deleted(state: &mut ExecutionState, job: &Job) -> Option<Event> {
    // Finished before it went: its outcome stands. Deleted while running
    // (by someone else: the operator deletes Jobs only when the execution
    // is deleted): the action's outcome is unknown, and the execution
    // fails now, not at its timeout.
    match job_event(state, job).await {
        Some(ev) => Some(ev),
        None if state.machine.phase == Phase::Executing
            && !state.machine.deleting
            && job.name_any() == current_job_name(state) =>
        {
            Some(Event::JobFinished(JobOutcome::Missing))
        }
        None => None,
    }
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
    let finished = crate::decide::job_finished(job)?;
    if let Some(n) = crate::decide::attempts(job) {
        state.status.attempts = Some(n);
    }
    // Observed when the outcome is written (effects.rs), once. This life
    // created the Job: its clock; adopted after a restart: the Job's own
    // timestamps (whole seconds).
    state.job_duration = match state.job_created {
        Some(t) => Some(t.elapsed().as_secs_f64()),
        None => crate::decide::job_run_seconds(job),
    };
    let output = termination_output(state, &job.name_any(), finished.is_ok()).await;
    Some(Event::JobFinished(crate::decide::job_outcome(
        job, finished, output,
    )))
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
    // Seen by the watch of the operator's Job pods: no request (and the
    // view forgets the Job: read once).
    if let Some(m) = state
        .ctx
        .views
        .as_ref()
        .and_then(|v| v.take_termination(job, want))
    {
        return crate::decide::termination_output(&m, succeeded);
    }
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
    crate::decide::termination_output(&message?, succeeded)
}
