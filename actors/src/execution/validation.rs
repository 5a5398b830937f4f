//! The validation pipeline of an execution: catalog, requester, target,
//! policies, preconditions (with their waits) — the plan or the refusal.

use super::*;

/// Catalog, target and policy validation. Produces the plan or the refusal.
pub(super) async fn validate_all(state: &mut ExecutionState) -> Result<Plan, Refusal> {
    let ctx = state.ctx.clone();
    let exec_ns = state.exec.namespace().unwrap_or_default();
    let v = validate(&state.exec.spec, &exec_ns).map_err(|rejection| Refusal {
        // The action resolved (an alias, say) even if its parameters did
        // not validate: status names it.
        action: crate::catalog::lookup(&state.exec.spec.action).map(|a| a.name.to_string()),
        ..Refusal::from(rejection)
    })?;
    let action = v.action.name.to_string();
    let target = v.target.display();
    let with = |rejection: Rejection, decision: Option<PolicyDecision>| Refusal {
        rejection,
        decision,
        action: Some(action.clone()),
        target: Some(target.clone()),
    };
    // Who may ask: the requester, in the target's scope, before anything
    // about the target is read, locked, granted or run.
    authorize::authorize(&ctx, &state.exec, &v)
        .await
        .map_err(|r| with(r, None))?;
    authorize::inline_conditions_allowed(&ctx.settings.inline_conditions, &state.exec)
        .map_err(|r| with(r, None))?;
    let (pre, _) = crate::catalog::effective_conditions(v.action, &state.exec.spec);
    // With preconditions on a Deployment, read the whole object once: its
    // metadata for validation and the object itself for the condition state.
    let mut deployment = None;
    let target_read = if !pre.is_empty() && v.target.kind == "Deployment" {
        let ns = v.target.namespace.clone().unwrap_or_default();
        retry_for(PATIENCE, || ctx.api.get_deployment(&ns, &v.target.name))
            .await
            .map(|d| {
                d.map(|d| {
                    let meta = crate::k8s::TargetMeta {
                        uid: d.metadata.uid.clone().unwrap_or_default(),
                        resource_version: d.metadata.resource_version.clone(),
                        labels: d.metadata.labels.clone().unwrap_or_default(),
                    };
                    deployment = Some(d);
                    meta
                })
            })
    } else if v.target.kind == "Secret" {
        // The operator may not read Secrets outside its namespace (not even
        // their metadata): the Job, under its just-in-time grant, checks the
        // target exists. Policies see no labels of Secret targets.
        Ok(Some(crate::k8s::TargetMeta::default()))
    } else {
        retry_for(PATIENCE, || {
            ctx.api
                .get_target_meta(v.action.id, v.target.namespace.as_deref(), &v.target.name)
        })
        .await
    };
    let meta = match target_read {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Err(with(
                Rejection::new(
                    reasons::TARGET_NOT_FOUND,
                    format!("target {target} does not exist"),
                ),
                None,
            ));
        }
        Err(e) => {
            return Err(with(
                Rejection::new(
                    reasons::INTERNAL_ERROR,
                    format!("cannot read target {target}: {e}"),
                ),
                None,
            ));
        }
    };
    let input = policy_input(&state.exec, &v, &meta.labels, ctx.api.namespace());
    let verdict = ctx
        .peers
        .call(
            &ctx.registry,
            crate::peers::Singleton::Policy,
            |reply| PolicyMsg::Evaluate {
                input: Box::new(input.clone()),
                action: action.clone(),
                reply,
            },
            crate::tunables::POLICY_CALL_TIMEOUT,
        )
        .await;
    let verdict = match verdict {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("policy evaluation unavailable ({e}); failing closed");
            return Err(with(Rejection::new(reasons::POLICY_UNAVAILABLE, msg), None));
        }
    };
    let (decision, outcome) = crate::decide::policy(&verdict, now());
    if let Err(rejection) = outcome {
        return Err(with(rejection, Some(decision)));
    }
    if !pre.is_empty() {
        let input = condition_input(&ctx, &state.exec, &v, &meta.labels, deployment.as_ref())
            .await
            .map_err(|e| {
                with(
                    Rejection::new(
                        reasons::PRECONDITION_FAILED,
                        format!("cannot read cluster state for preconditions: {e}"),
                    ),
                    Some(decision.clone()),
                )
            })?;
        let mut results = Vec::new();
        for c in &pre {
            results.push(evaluate_once(&ctx, c, &input, ConditionPhase::Pre).await);
        }
        // A required precondition that does not hold yet is evaluated again
        // (fresh cluster state, backoff) until its own `timeout` — `0s`, the
        // catalog default, means once. Bounded by the execution's timeout.
        let limit = |c: &ActionCondition| {
            c.timeout
                .as_deref()
                .and_then(|t| crate::duration::parse_duration(t).ok())
                .unwrap_or_default()
                .min(v.timeout)
        };
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            let waiting: Vec<usize> = (0..pre.len())
                .filter(|&i| {
                    results[i].required
                        && !results[i].passed
                        && started.elapsed() + delay <= limit(&pre[i])
                })
                .collect();
            if waiting.is_empty() {
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(4));
            let Ok(input) = condition_input(&ctx, &state.exec, &v, &meta.labels, None).await else {
                continue;
            };
            for i in waiting {
                results[i] = evaluate_once(&ctx, &pre[i], &input, ConditionPhase::Pre).await;
            }
        }
        record_conditions(&mut state.status, ConditionPhase::Pre, results.clone());
        if let Err(rejection) = crate::decide::preconditions(&results) {
            return Err(with(rejection, Some(decision)));
        }
    }
    let snapshot = (!meta.uid.is_empty()).then(|| TargetSnapshot {
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
    });
    let dry_run = state.exec.spec.dry_run;
    let output = dry_run.then(|| crate::decide::dry_run_text(&v, &action, &target));
    state.validated = Some(v);
    Ok(Plan {
        dry_run,
        action,
        target,
        snapshot,
        decision: Some(decision),
        output,
    })
}
