//! The effect interpreter: what each [`Effect`] of the phase machine does
//! (I/O through the facade and the shared actors), and the status write
//! every transition makes.

use super::*;

/// Executes one effect; may produce the next machine event. Each effect
/// that awaits runs boxed on its own: an actor waiting in one (for a
/// request permit, a grant, the API server) holds that effect's state
/// only, not the largest of them all (thousands wait at once under a
/// burst).
pub(super) async fn execute(
    myself: &ExecutionRef,
    state: &mut ExecutionState,
    fx: Effect,
) -> Option<Event> {
    let ctx = state.ctx.clone();
    match fx {
        Effect::Transition(change) => {
            Box::pin(write_transition(myself, state, &change)).await;
            None
        }
        Effect::Validate => Box::pin(validate_effect(myself, state)).await,
        Effect::CreateJob => Box::pin(create_job_effect(myself, state)).await,
        Effect::ObserveJob => Box::pin(observe_job_effect(state)).await,
        Effect::ArmTimeout => {
            if !state.timeout_armed {
                state.timeout_armed = true;
                let (timeout, elapsed) = timeout_and_elapsed(state);
                let remaining = (timeout + ctx.settings.timeout_grace).saturating_sub(elapsed);
                state.timeout_timer = Some(post_after(&ctx.registry, myself, remaining, || {
                    ExecutionMsg::Machine(Box::new(Event::TimedOut))
                }));
            }
            None
        }
        Effect::Verify => {
            let v = validated(state)?;
            let (_, post) = crate::catalog::effective_conditions(v.action, &state.exec.spec);
            if post.is_empty() {
                // Nothing declared: the Job's success is the verification.
                return Some(Event::Verified(Ok(())));
            }
            if state.verifier.is_none() {
                // Polling can take minutes: a supervised child does it.
                let args = VerifierArgs {
                    ctx: state.ctx.clone(),
                    exec: state.exec.clone(),
                    validated: v,
                    post,
                    parent: myself.clone(),
                    restarts: 0,
                };
                state.verifier = Some(args.clone());
                if let Err(e) = spawn_verifier(args).await {
                    tracing::warn!(error = %e, "cannot start the verifier; retrying");
                    post_after(&ctx.registry, myself, Duration::from_millis(200), || {
                        ExecutionMsg::RespawnVerifier
                    });
                }
            }
            None
        }
        Effect::DeleteJob => Box::pin(delete_job_effect(state)).await,
        Effect::ReleaseGrants => Box::pin(release_effect(state)).await,
        Effect::RemoveFinalizer => Box::pin(remove_finalizer_effect(state)).await,
        Effect::Stop => {
            myself.stop(Some(FINISHED.into()));
            None
        }
    }
}

/// [`Effect::Validate`] (boxed by [`execute`]).
async fn validate_effect(myself: &ExecutionRef, state: &mut ExecutionState) -> Option<Event> {
    let ctx = state.ctx.clone();
    if std::mem::take(&mut state.resumed_in_validating)
        && let Some(job) = existing_job(state).await
    {
        // A previous life created the Job and crashed before
        // recording Executing: adopt it and record its real
        // outcome, whatever validation would say now (the Job may
        // have deleted the target already).
        state.validated = validated(state);
        let name = job.name_any();
        tracing::info!(job = %name, "adopting the Job of a previous life");
        post(
            &ctx.registry,
            myself,
            ExecutionMsg::JobChanged(Box::new(job)),
        );
        return Some(Event::JobCreated { job_name: name });
    }
    // Validating is recorded only when validation takes long.
    let (validated, written) = flush_if_slow(pending_write(state), validate_all(state)).await;
    if let Some(written) = written {
        // Its resourceVersion lets the finalizer patch go next
        // without a conflict.
        state.exec = written;
        passing_written(state);
    }
    Some(Event::Validated(validated))
}

/// [`Effect::CreateJob`] (boxed by [`execute`]).
async fn create_job_effect(myself: &ExecutionRef, state: &mut ExecutionState) -> Option<Event> {
    // The finalizer first (a compare-and-swap on the version this
    // actor holds: no status write may land meanwhile), then the
    // lock, grants and Job — Preparing is recorded if they take long.
    // A dry run holds no finalizer (it changes nothing: its deletion need
    // not wait; the supervisor tells its actor to clean up).
    let finalized = if state.exec.spec.dry_run {
        Ok(())
    } else {
        ensure_finalizer(state).await
    };
    let created = match finalized {
        Err(e) => Err(Rejection::new(
            reasons::INTERNAL_ERROR,
            format!("cannot add finalizer: {e}"),
        )
        .into()),
        Ok(()) => {
            let (created, written) = flush_if_slow(pending_write(state), create_job(state)).await;
            if written.is_some() {
                passing_written(state);
            }
            created
        }
    };
    created_job(myself, state, created)
}

/// [`Effect::ObserveJob`] (boxed by [`execute`]).
async fn observe_job_effect(state: &mut ExecutionState) -> Option<Event> {
    let ctx = state.ctx.clone();
    let name = current_job_name(state);
    match retry_for(PATIENCE, || ctx.api.get_job(&name)).await {
        Ok(Some(job)) => Box::pin(job_event(state, &job)).await,
        Ok(None) => Some(Event::JobFinished(JobOutcome::Missing)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read job; waiting for the job watch");
            None
        }
    }
}

/// [`Effect::DeleteJob`] (boxed by [`execute`]).
async fn delete_job_effect(state: &mut ExecutionState) -> Option<Event> {
    let ctx = state.ctx.clone();
    let name = current_job_name(state);
    if let Err(e) = retry_for(PATIENCE, || ctx.api.delete_job(&name)).await {
        tracing::warn!(error = %e, job = %name, "failed to delete job");
    }
    None
}

/// [`Effect::ReleaseGrants`] (boxed by [`execute`]).
async fn release_effect(state: &mut ExecutionState) -> Option<Event> {
    let ctx = state.ctx.clone();
    if state.released || !state.may_hold {
        // Released already in this actor's life, or none taken: no
        // life of this execution got to the lock or the grants (a
        // denial, a rejection). (A dry run takes no lock, but its
        // Job holds grants.)
        return None;
    }
    state.released = true;
    // Re-derived from the spec after a restart: once, not per grant.
    let v = validated(state);
    if let Some(name) = v.as_ref().and_then(|v| lock_name(state, v)) {
        let exec_uid = uid(state);
        let how = crate::k8s::leases::Release::Delete;
        let known = state.lock_version.as_deref();
        if let Err(e) = retry_for(PATIENCE, || {
            ctx.api.release_lease(&name, &exec_uid, how, known)
        })
        .await
        {
            tracing::warn!(error = %e, "failed to release the target lock (it expires)");
        }
    }
    let (action, target_ns) = match v {
        Some(v) => (Some(v.action), v.target.namespace),
        None => (None, None),
    };
    let exec = execution_id(state);
    let revoked = ask_rbac(&ctx, |reply| RbacMsg::Revoke {
        action,
        target_ns: target_ns.clone(),
        exec: exec.clone(),
        reply,
    })
    .await;
    if let Err(e) = revoked {
        tracing::warn!(error = %e, "failed to revoke the just-in-time grants (the janitor sweeps them)");
    }
    None
}

/// [`Effect::RemoveFinalizer`] (boxed by [`execute`]).
async fn remove_finalizer_effect(state: &mut ExecutionState) -> Option<Event> {
    let ctx = state.ctx.clone();
    // Finished executions hold no finalizer (a namespace holding
    // them deletes promptly even with the operator down). It came
    // with the object (the admission policy adds it on create, or an
    // earlier life did) or ensure_finalizer added it in this life: if
    // neither, there is nothing to remove and no request to make.
    if !state.finalizer_added
        && !state
            .exec
            .finalizers()
            .iter()
            .any(|f| f == kubernetes_executor_crds::FINALIZER)
    {
        return None;
    }
    let (ns, name) = (
        state.exec.namespace().unwrap_or_default(),
        state.exec.name_any(),
    );
    let known = state.exec.clone();
    if let Err(e) = retry_for(PATIENCE, || {
        ctx.api.remove_finalizer(&ns, &name, Some(&known))
    })
    .await
    {
        tracing::warn!(error = %e, "failed to remove finalizer");
    }
    None
}

/// What a Job creation attempt leads to.
fn created_job(
    myself: &ExecutionRef,
    state: &mut ExecutionState,
    created: Result<Created, Refusal>,
) -> Option<Event> {
    let ctx = state.ctx.clone();
    match created {
        Ok(Created::Job(job)) => {
            // The Job may be one created before a restart, and may even be
            // finished already (its watch event went to no actor): look at it.
            let name = job.name_any();
            post(&ctx.registry, myself, ExecutionMsg::JobChanged(job));
            Some(Event::JobCreated { job_name: name })
        }
        Ok(Created::Busy(holder)) => busy(myself, state, holder),
        // Could not create the Job for a permanent reason: fail as validation does.
        Err(refusal) => Some(Event::Validated(Err(refusal))),
    }
}

pub(super) async fn write_transition(
    myself: &ExecutionRef,
    state: &mut ExecutionState,
    change: &StatusChange,
) {
    let from = state.status.phase.unwrap_or_default();
    let span =
        tracing::info_span!("transition", from = %from, to = %change.phase, reason = change.reason);
    write_transition_in_span(myself, state, change, from)
        .instrument(span)
        .await
}

/// A phase that usually lasts milliseconds and leads straight on: entering
/// it is written only if the execution is still in it after
/// [`crate::tunables::PASSING_PHASE_WINDOW`] (see docs/performance.md).
/// `Validating` reads the target and asks the policies (a denial's first
/// and only write is its outcome); `Preparing` takes the lock, the grants
/// and the Job (the decision is written with `Executing`); `Verifying`
/// checks postconditions (the result and rollback information are written
/// with the outcome). At most one passing phase is written between two
/// lasting ones: when `Validating` lasted and was written, a `Preparing`
/// that follows goes with `Executing` (under load both last, and each
/// status write of an execution costs the API server ~7 ms of CPU here —
/// docs/performance.md). A crash before the next write loses nothing: a
/// restarted actor resumes from the phase before, looks for the
/// deterministically named Job (an earlier life's: a restarted actor, or
/// an execution first seen in a full list), adopts it and reads its
/// outcome again.
fn passing(change: &StatusChange) -> bool {
    matches!(
        (change.phase, change.reason),
        (Phase::Validating, reasons::VALIDATING)
            | (Phase::Preparing, reasons::PREPARING)
            | (Phase::Verifying, reasons::VERIFYING)
    )
}

/// Whether a transition gets a Kubernetes Event: outcomes (terminal
/// phases) and the states a person must be told about because the
/// execution waits in them (paused, target busy). Milestones in between are
/// in status and in the trace — an Event each would cost a request each.
fn announced(change: &StatusChange) -> bool {
    change.phase.is_terminal()
        || matches!(change.reason, reasons::PAUSED | reasons::WAITING_FOR_TARGET)
}

async fn write_transition_in_span(
    myself: &ExecutionRef,
    state: &mut ExecutionState,
    change: &StatusChange,
    from: Phase,
) {
    let ctx = state.ctx.clone();
    let generation = state.exec.metadata.generation;
    crate::status::apply(&mut state.status, change, now(), generation);
    // The workflow correlation, in status too (not only on the Job).
    let spec = &state.exec.spec;
    state.status.workflow_execution = spec
        .workflow_execution_ref
        .as_ref()
        .and_then(|r| r.name.clone());
    state.status.step_number = spec.step_number;
    if passing(change) {
        count(state, change, from);
        if state.passing_shown {
            // A passing phase before this one is what status shows: this
            // one goes with the next lasting write.
            return;
        }
        state.unwritten = true;
        let window = crate::tunables::PASSING_PHASE_WINDOW;
        post_after(&ctx.registry, myself, window, || ExecutionMsg::FlushStatus);
        return;
    }
    if !persist(state).await {
        return;
    }
    state.passing_shown = false;
    count(state, change, from);
    if from == change.phase || !announced(change) {
        return;
    }
    let warning = change.phase == Phase::Failed;
    ctx.api
        .event(
            &state.exec,
            warning,
            change.reason,
            format!(
                "{from} → {}: {} (requested by {})",
                change.phase,
                change.message,
                state
                    .exec
                    .spec
                    .requester
                    .as_ref()
                    .map(|r| r.username.as_str())
                    .unwrap_or("nobody recorded")
            ),
        )
        .await;
}

/// Writes `state.status`; false when it could not be written (the
/// execution is gone, or a permanent error).
pub(super) async fn persist(state: &mut ExecutionState) -> bool {
    match status_write(state, Duration::MAX).await {
        // The freshest version of the object (its resourceVersion lets the
        // finalizer patch go without a read first).
        Ok(written) => {
            state.exec = written;
            if state.unwritten {
                passing_written(state);
            }
            true
        }
        Err(ApiError::NotFound { .. }) => false,
        Err(e) => {
            tracing::error!(error = %e, "failed to write status");
            false
        }
    }
}

/// The passing phase held back was written: status shows it (and a
/// further passing phase before the next lasting one is not written).
fn passing_written(state: &mut ExecutionState) {
    state.unwritten = false;
    state.passing_shown = true;
}

/// Metrics, the lifecycle record and the log line of a transition.
fn count(state: &mut ExecutionState, change: &StatusChange, from: Phase) {
    if from == change.phase {
        return;
    }
    let ctx = &state.ctx;
    ctx.metrics
        .phase_transitions
        .with_label_values(&[from.as_str(), change.phase.as_str()])
        .inc();
    ctx.metrics
        .phase_duration
        .with_label_values(&[from.as_str()])
        .observe(state.phase_since.elapsed().as_secs_f64());
    state.phase_since = Instant::now();
    // Once per Job: only the transition that moves the execution out of
    // Executing with the Job's outcome observes its duration (a resumed
    // actor past Executing never sees the outcome again).
    if from == Phase::Executing
        && let Some(seconds) = state.job_duration.take()
    {
        ctx.metrics.job_completion_duration.observe(seconds);
    }
    state
        .life
        .transition(format!("{from}→{} {}", change.phase, change.reason));
    if change.phase.is_terminal() {
        ctx.metrics
            .executions_finished
            .with_label_values(&[change.phase.as_str(), change.reason])
            .inc();
    }
    tracing::info!(from = %from, to = %change.phase, reason = change.reason, message = %change.message, "phase transition");
}

/// The write of `state.status` as it is now, retried for `patience`
/// (owned: it can run while `state` is borrowed by other work).
fn status_write(
    state: &ExecutionState,
    patience: Duration,
) -> impl std::future::Future<Output = Result<KubernetesExecution, ApiError>> + use<> {
    let api = state.ctx.api.clone();
    let (ns, name) = (
        state.exec.namespace().unwrap_or_default(),
        state.exec.name_any(),
    );
    let status = state.status.clone();
    async move { retry_for(patience, || api.write_status(&ns, &name, &status)).await }
}

/// The write of a passing phase still unrecorded, ready to run later.
fn pending_write(
    state: &ExecutionState,
) -> Option<impl std::future::Future<Output = Option<KubernetesExecution>> + use<>> {
    state.unwritten.then(|| {
        let write = status_write(state, PATIENCE);
        async move { write.await.ok() }
    })
}

/// Runs `work`; if it takes longer than the passing-phase window, runs
/// `write` (the unrecorded passing phase) meanwhile. The write starts only
/// after the window and is always awaited to its end, so it can never
/// land after a later write. What was written, when the write was made.
async fn flush_if_slow<T, W>(
    write: Option<impl std::future::Future<Output = Option<W>>>,
    work: impl std::future::Future<Output = T>,
) -> (T, Option<W>) {
    let mut work = std::pin::pin!(work);
    let Some(write) = write else {
        return (work.await, None);
    };
    tokio::select! {
        t = &mut work => return (t, None),
        () = tokio::time::sleep(crate::tunables::PASSING_PHASE_WINDOW) => {}
    }
    tokio::join!(work, write)
}
