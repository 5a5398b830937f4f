//! PatchSecret. The patch arrives through the environment (a per-execution
//! Secret mounted with secretKeyRef), never through arguments; no value of the
//! Secret — old or new — is written anywhere: the rollback information holds
//! only a digest of the previous data.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use kubernetes_executor_actors::catalog::ValidatedAction;
use kubernetes_executor_crds::RollbackInfo;
use serde_json::json;

use super::{ActionError, Outcome, check_uid, data_digest, done};
use crate::config::RunActionArgs;

pub(super) async fn patch_secret(
    client: Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
) -> Outcome {
    let ns = v.target.namespace.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client, &ns);
    let key = format!("Secret/{ns}/{}", v.target.name);
    let secret = api
        .get(&v.target.name)
        .await
        .map_err(|e| (e.into(), None))?;
    check_uid(secret.uid(), args, &key).map_err(|e| (e, None))?;
    let previous: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, b)| (k.clone(), String::from_utf8_lossy(&b.0).to_string()))
        .collect();
    let rollback = RollbackInfo {
        restorable: false,
        reason: Some("previous Secret values are never recorded; only their digest".into()),
        previous_data_digest: Some(data_digest(&previous)),
        ..Default::default()
    };
    let Some(raw) = v.params.get("patch") else {
        return Err((
            ActionError::Permanent("the patch for PatchSecret was not delivered to the Job".into()),
            None,
        ));
    };
    let mut doc: serde_json::Value = serde_json::from_str(raw).map_err(|_| {
        (
            ActionError::Permanent("the patch is not valid JSON".into()),
            None,
        )
    })?;
    let kind = v
        .params
        .get("patchType")
        .map(String::as_str)
        .unwrap_or("merge");
    let pp = PatchParams {
        dry_run: args.dry_run,
        ..Default::default()
    };
    let result = if kind == "json" {
        let p = serde_json::from_value(doc)
            .map_err(|_| (ActionError::Permanent("invalid JSON patch".into()), None))?;
        api.patch(&v.target.name, &pp, &Patch::<()>::Json(p)).await
    } else {
        if let Some(o) = doc.as_object_mut() {
            o.insert(
                "metadata".into(),
                json!({ "resourceVersion": secret.resource_version(), "uid": secret.uid() }),
            );
        }
        let p = if kind == "strategic" {
            Patch::Strategic(doc)
        } else {
            Patch::Merge(doc)
        };
        api.patch(&v.target.name, &pp, &p).await
    };
    // Never echo the server's message verbatim: it could quote the patch.
    result.map_err(|e| {
        let err = match &e {
            kube::Error::Api(s) if [400, 403, 404, 409, 422].contains(&s.code) => {
                ActionError::Permanent(format!(
                    "patching {key} was rejected ({} {})",
                    s.code, s.reason
                ))
            }
            _ => ActionError::Transient(format!("patching {key} failed (transient)")),
        };
        (err, Some(rollback.clone()))
    })?;
    done(format!("patched {key} (values not shown)"), key, rollback)
}
