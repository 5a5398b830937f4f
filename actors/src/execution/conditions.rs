//! Pre- and postconditions: their input (policy input plus live cluster
//! state), one evaluation on the PolicyActor, postcondition polling, and
//! recording results in status.

use super::*;

/// Policy input with live cluster state, for pre/postconditions: the
/// nodes, and for a Deployment (`target`, when validation read it already)
/// the Deployment and its pods.
pub(super) async fn condition_input(
    ctx: &Ctx,
    exec: &KubernetesExecution,
    v: &ValidatedAction,
    labels: &std::collections::BTreeMap<String, String>,
    target: Option<&k8s_openapi::api::apps::v1::Deployment>,
) -> Result<PolicyInput, ApiError> {
    let operator_ns = ctx.api.namespace();
    let mut input = policy_input(exec, v, labels, operator_ns);
    // From the watched view; listed only while it is not synced.
    let nodes = match ctx.views.as_ref().and_then(|v| v.nodes()) {
        Some(nodes) => nodes,
        None => retry_for(PATIENCE, || ctx.api.list_nodes())
            .await?
            .iter()
            .map(crate::policy::input::node_input)
            .collect(),
    };
    let deployment = match (v.target.kind.as_str(), target) {
        ("Deployment", Some(d)) => Some(d.clone()),
        ("Deployment", None) => {
            let ns = v.target.namespace.clone().unwrap_or_default();
            retry_for(PATIENCE, || ctx.api.get_deployment(&ns, &v.target.name)).await?
        }
        _ => None,
    };
    let pods = match &deployment {
        Some(d) => {
            let ns = v.target.namespace.clone().unwrap_or_default();
            let selector = crate::policy::input::pod_selector(d);
            retry_for(PATIENCE, || ctx.api.list_pods(&ns, &selector)).await?
        }
        None => Vec::new(),
    };
    input.cluster = crate::policy::input::cluster_input(
        operator_ns,
        nodes,
        deployment.as_ref().map(|d| (d, pods.as_slice())),
    );
    Ok(input)
}

/// Evaluates one condition once.
pub(super) async fn evaluate_once(
    ctx: &Ctx,
    c: &ActionCondition,
    input: &PolicyInput,
    phase: ConditionPhase,
) -> ConditionResult {
    let reply = ctx
        .peers
        .call(
            &ctx.registry,
            crate::peers::Singleton::Policy,
            |reply| PolicyMsg::Condition {
                policy: c.policy.clone(),
                input: Box::new(input.clone()),
                reply,
            },
            crate::tunables::POLICY_CALL_TIMEOUT,
        )
        .await;
    let (outcome, message) = crate::decide::condition(reply);
    let passed = outcome == crate::decide::ConditionVerdict::Verified;
    ConditionResult {
        name: c.name.clone(),
        phase,
        passed,
        required: c.required,
        outcome: Some(outcome.to_string()),
        message: Some(crate::status::bounded(
            &message,
            crate::status::MAX_MESSAGE_BYTES,
        )),
        evaluated_at: Some(now()),
    }
}

/// Replaces the results of one phase in status.
pub(super) fn record_conditions(
    status: &mut KubernetesExecutionStatus,
    phase: ConditionPhase,
    results: Vec<ConditionResult>,
) {
    let vr = status
        .validation_results
        .get_or_insert_with(Default::default);
    vr.conditions.retain(|c| c.phase != phase);
    vr.conditions.extend(results);
}
