//! The supervisor's edge cases: a watched object this version cannot
//! decode (reported on itself, skipped), and an execution whose actor kept
//! failing (marked `Failed/InternalError`, never left without a status).

use kube::Resource;
use kubernetes_executor_crds::KubernetesExecution;

use crate::context::Ctx;

/// The typed execution of a watched object. Every watch event passes here:
/// spec and status are decoded from the object's own JSON (no round trip of
/// the whole object through a serializer); metadata is already typed.
pub(super) fn typed(
    o: &kube::core::DynamicObject,
) -> Result<KubernetesExecution, serde_json::Error> {
    let field = |k: &str| o.data.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let spec = serde_json::from_value(field("spec"))?;
    let status = serde_json::from_value(field("status"))?;
    Ok(crate::k8s::held(KubernetesExecution {
        metadata: o.metadata.clone(),
        spec,
        status,
    }))
}

/// Decodes a watched object; one that does not decode gets a warning Event
/// (naming the problem, bounded) and is skipped.
pub(super) async fn decode(
    api: &crate::k8s::KubeApi,
    ar: &kube::core::ApiResource,
    o: kube::core::DynamicObject,
) -> Option<KubernetesExecution> {
    match typed(&o) {
        Ok(e) => Some(e),
        Err(err) => {
            // Being deleted with the finalizer every new execution gets:
            // nothing of it ran, let it go.
            let ours = o
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == kubernetes_executor_crds::FINALIZER);
            if o.metadata.deletion_timestamp.is_some() && ours {
                if let Err(e) = api.remove_finalizer_untyped(&o).await {
                    tracing::warn!(error = %e, "cannot remove the finalizer of an undecodable execution");
                }
                return None;
            }
            let key = format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap_or_default(),
                o.metadata.name.as_deref().unwrap_or_default()
            );
            tracing::warn!(execution = %key, error = %err, "cannot decode execution; skipped");
            api.event_about(
                &o.object_ref(ar),
                true,
                "Decode",
                kubernetes_executor_crds::reasons::INVALID_PARAMETERS,
                crate::status::bounded(
                    &format!("the operator cannot read this execution ({err}); it is ignored"),
                    512,
                ),
            )
            .await;
            None
        }
    }
}

/// Marks an execution the supervisor gave up on `Failed/InternalError`
/// (unless it already ended), with an Event.
pub(super) async fn abandon(ctx: Ctx, key: String, message: String) {
    let (ns, name) = key.split_once('/').unwrap_or_default();
    let exec = match crate::k8s::retry_for(crate::tunables::SHORT_PATIENCE, || {
        ctx.api.get_execution(ns, name)
    })
    .await
    {
        Ok(Some(e)) => e,
        _ => return,
    };
    let mut status = exec.status.clone().unwrap_or_default();
    // The machine authors the change (and refuses to touch an ended one).
    let now = crate::machine::MachineState {
        phase: status.phase.unwrap_or_default(),
        ..Default::default()
    };
    let (_, effects) =
        crate::machine::transition(&now, crate::machine::Event::Abandoned(message.clone()));
    let Some(crate::machine::Effect::Transition(change)) = effects.into_iter().next() else {
        return;
    };
    crate::status::apply(
        &mut status,
        &change,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
        exec.metadata.generation,
    );
    if let Err(e) = crate::k8s::retry_for(crate::tunables::SHORT_PATIENCE, || {
        ctx.api.write_status(ns, name, &status)
    })
    .await
    {
        tracing::error!(execution = %key, error = %e, "cannot record that the execution was abandoned");
        return;
    }
    ctx.api
        .event(
            &exec,
            true,
            kubernetes_executor_crds::reasons::INTERNAL_ERROR,
            message,
        )
        .await;
}
