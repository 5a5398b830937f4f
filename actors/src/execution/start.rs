//! Starting the action: the finalizer (added first, by the effect), the target lock (waiting without
//! requests while a live execution holds it), the just-in-time grants, and
//! the Job (deterministic name; adopted when it already exists).

use super::*;

#[allow(clippy::result_large_err)]
/// What creating the Job came to.
pub(super) enum Created {
    /// The Job exists (created now, or found from before a restart).
    Job(Box<Job>),
    /// Another execution holds the target lock.
    Busy(crate::lock::Holder),
}

/// Name of this execution's target lock, for mutating non-dry-run actions.
pub(super) fn lock_name(state: &ExecutionState, v: &ValidatedAction) -> Option<String> {
    if !v.action.mutating || state.exec.spec.dry_run {
        return None;
    }
    let target_uid = state
        .status
        .target_snapshot
        .as_ref()
        .map(|s| s.uid.clone())
        .unwrap_or_default();
    Some(crate::lock::lease_name(
        &v.target.kind,
        v.target.namespace.as_deref(),
        &v.target.name,
        &target_uid,
    ))
}

/// Takes the target lock (`Ok(version)`: its resourceVersion), or names
/// its live holder (`Err`). A Lease held by someone else is taken over when
/// it expired, or when its holder execution is gone (another UID under
/// that name) or finished.
async fn take_lock(
    ctx: &Ctx,
    lease: &k8s_openapi::api::coordination::v1::Lease,
) -> Result<Result<Option<String>, crate::lock::Holder>, ApiError> {
    use crate::k8s::leases::{Claim, Probe};
    let gone = async |existing: &k8s_openapi::api::coordination::v1::Lease| {
        let h = crate::lock::holder(existing, Timestamp::now());
        if h.expired {
            return Ok(true);
        }
        let (ns, n) = h.key.split_once('/').unwrap_or_default();
        Ok(match ctx.api.get_execution(ns, n).await? {
            None => true,
            Some(e) => e.metadata.uid.as_deref() != Some(h.uid.as_str()) || e.phase().is_terminal(),
        })
    };
    Ok(
        match ctx.api.claim_lease(lease, Probe::CreateFirst, gone).await? {
            Claim::Renewed(version) | Claim::Taken(version) => Ok(version),
            Claim::Busy(l) => Err(crate::lock::holder(&l, Timestamp::now())),
        },
    )
}

/// Adds the finalizer (compare-and-swap on resourceVersion; re-reads on conflict).
pub(super) async fn ensure_finalizer(state: &mut ExecutionState) -> Result<(), ApiError> {
    let ctx = state.ctx.clone();
    let (ns, name) = (
        state.exec.namespace().unwrap_or_default(),
        state.exec.name_any(),
    );
    let mut last = None;
    for attempt in 0..5 {
        // First try the version this actor last wrote or saw; read only on conflict.
        if attempt > 0
            && let Some(fresh) = retry_for(PATIENCE, || ctx.api.get_execution(&ns, &name)).await?
        {
            state.exec = fresh;
        }
        // A conflict means a newer version exists: read it (above) rather
        // than retrying the same stale one; other transient errors back off.
        let exec = state.exec.clone();
        let added = retry_for(PATIENCE, || async {
            match ctx.api.add_finalizer(&exec).await {
                Err(ApiError::Conflict { what, message }) => {
                    Ok(Err(ApiError::Conflict { what, message }))
                }
                other => other.map(Ok),
            }
        })
        .await?;
        match added {
            Ok(()) => {
                state.finalizer_added = true;
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(ApiError::Conflict {
        what: format!("finalizer of {ns}/{name}"),
        message: "kept conflicting".into(),
    }))
}

#[allow(clippy::result_large_err)]
pub(super) async fn create_job(state: &mut ExecutionState) -> Result<Created, Refusal> {
    let ctx = state.ctx.clone();
    let started = Instant::now();
    // Validated in this life, or (resumed in Preparing) re-derived from
    // the immutable spec: the decision is already in status.
    let Some(v) = validated(state) else {
        return Err(Rejection::new(reasons::INTERNAL_ERROR, "no validated action to run").into());
    };
    state.validated = Some(v.clone());
    let fail = |m: String| -> Refusal { Rejection::new(reasons::INTERNAL_ERROR, m).into() };
    // The finalizer is in place already (effects.rs, CreateJob).
    if let Some(name) = lock_name(state, &v) {
        let duration = i32::try_from((v.timeout + ctx.settings.timeout_grace).as_secs() + 60)
            .unwrap_or(i32::MAX);
        let lease = crate::lock::lease(
            &name,
            ctx.api.namespace(),
            &v.target.display(),
            &uid(state),
            &state.exec.key(),
            duration,
            Timestamp::now(),
        );
        let exec_uid = uid(state);
        // Waiting costs no request while a live execution of this operator
        // holds the lock (watched Leases, the live-actor registry); the API
        // is asked when the lock looks free, expired, or held by someone
        // this operator does not run (a vanished holder is taken over there).
        if let Some(h) = ctx
            .views
            .as_ref()
            .and_then(|l| l.lock_holder(&name, Timestamp::now()))
            && h.uid != exec_uid
            && !h.expired
            && ctx.registry.contains(&ctx.peers.execution(&h.uid))
        {
            return Ok(Created::Busy(h));
        }
        state.may_hold = true;
        match retry_for(PATIENCE, || take_lock(&ctx, &lease)).await {
            Ok(Ok(version)) => state.lock_version = version,
            Ok(Err(h)) => return Ok(Created::Busy(h)),
            Err(e) => return Err(fail(format!("cannot take the target lock: {e}"))),
        }
    }
    let exec = execution_id(state);
    let target_ns = v.target.namespace.clone();
    let action = v.action;
    state.may_hold = true;
    ask_rbac(&ctx, |reply| RbacMsg::Grant {
        action,
        target_ns: target_ns.clone(),
        exec: exec.clone(),
        reply,
    })
    .await
    .map_err(|e| fail(format!("cannot grant the action's ServiceAccount: {e}")))?;
    let expected = state.status.target_snapshot.clone();
    // The Job's deadline is what remains of the timeout (time spent waiting
    // for the target lock is already gone), in whole seconds.
    let (timeout, elapsed) = timeout_and_elapsed(state);
    let remaining = Duration::from_secs(timeout.saturating_sub(elapsed).as_secs());
    if remaining.is_zero() {
        return Err(Rejection::new(
            reasons::TIMEOUT,
            format!(
                "the timeout ({}s) passed before the Job could start",
                timeout.as_secs()
            ),
        )
        .into());
    }
    let v = ValidatedAction {
        timeout: remaining,
        ..v
    };
    let mut job = build_job(&state.exec, &v, expected.as_ref(), &ctx.settings.job);
    // run-action continues this execution's trace.
    if let Some(tp) = crate::trace::traceparent_of(&state.span)
        && let Some(c) = job
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .and_then(|s| s.containers.first_mut())
    {
        c.env
            .get_or_insert_with(Vec::new)
            .push(k8s_openapi::api::core::v1::EnvVar {
                name: crate::trace::TRACEPARENT_ENV.into(),
                value: Some(tp),
                ..Default::default()
            });
    }
    let mut outcome = retry_for(PATIENCE, || ctx.api.create_job(&job)).await;
    if ctx.settings.chaos
        && state.restarts == 0
        && state
            .exec
            .annotations()
            .contains_key(CHAOS_CREATE_LOST_ANNOTATION)
        && outcome.is_ok()
    {
        // Chaos: the server created the Job but its answer was lost.
        outcome = Err(ApiError::Invalid {
            what: "create job".into(),
            message: "chaos: the answer to the create was lost".into(),
        });
    }
    let created = match outcome {
        Ok(j) => j,
        // "Failed" after retries may still have been created by the server.
        Err(e) => match existing_job(state).await {
            Some(j) => j,
            None => return Err(fail(format!("cannot create Job: {e}"))),
        },
    };
    if ctx.settings.chaos
        && state.restarts == 0
        && state
            .exec
            .annotations()
            .contains_key(CHAOS_CRASH_AFTER_JOB_ANNOTATION)
    {
        panic!("chaos: crash after creating Job {}", created.name_any());
    }
    ctx.metrics
        .job_creation_duration
        .observe(started.elapsed().as_secs_f64());
    state.job_created = Some(Instant::now());
    Ok(Created::Job(Box::new(created)))
}

/// Asks the RbacActor for a grant or revocation; its answer, or why there
/// was none.
pub(super) async fn ask_rbac(
    ctx: &Ctx,
    msg: impl Fn(ractor::RpcReplyPort<Result<(), String>>) -> RbacMsg,
) -> Result<(), String> {
    ctx.peers
        .call(
            &ctx.registry,
            crate::peers::Singleton::Rbac,
            msg,
            crate::tunables::RBAC_CALL_TIMEOUT,
        )
        .await
        .map_err(|e| format!("RBAC actor unavailable: {e}"))?
}
