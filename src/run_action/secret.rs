//! PatchSecret by reference. The new data lives in a Secret in the
//! execution's namespace (parameter `fromSecret`), which this Job reads
//! through its just-in-time grant; no value ever travels in the spec, the
//! Job's arguments or environment, status, logs or Events. The rollback
//! information names the keys written and holds a salted digest of their
//! previous values (never the values, never a plain hash that could be
//! compared against guesses across executions).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use kubernetes_executor_actors::catalog::{FROM_SECRET, ValidatedAction};
use kubernetes_executor_crds::RollbackInfo;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ActionError, Outcome, check_uid, done};
use crate::config::RunActionArgs;

/// `sha256-salted:<salt>:<digest>` over the given keys' values.
fn salted_digest(data: &BTreeMap<String, ByteString>) -> String {
    let mut salt = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut salt);
    }
    let mut h = Sha256::new();
    h.update(salt);
    for (k, v) in data {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(&v.0);
        h.update([0]);
    }
    format!(
        "sha256-salted:{}:{}",
        hex::encode(salt),
        hex::encode(h.finalize())
    )
}

/// Never echo the server's message verbatim: it could quote data.
fn redacted(e: kube::Error, what: &str) -> ActionError {
    match &e {
        kube::Error::Api(s) if [400, 403, 404, 409, 422].contains(&s.code) => {
            ActionError::Permanent(format!("{what} was refused ({} {})", s.code, s.reason))
        }
        _ => ActionError::Transient(format!("{what} failed (transient)")),
    }
}

pub(super) async fn patch_secret(
    client: Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
) -> Outcome {
    let ns = v.target.namespace.clone().unwrap_or_default();
    let key = format!("Secret/{ns}/{}", v.target.name);
    let (Some(source_ns), Some(source_name)) = (&args.source_namespace, v.params.get(FROM_SECRET))
    else {
        return Err((
            ActionError::Permanent(
                "PatchSecret needs --source-namespace and the fromSecret parameter".into(),
            ),
            None,
        ));
    };
    let source_key = format!("Secret/{source_ns}/{source_name}");
    let source = Api::<Secret>::namespaced(client.clone(), source_ns)
        .get(source_name)
        .await
        .map_err(|e| {
            (
                redacted(e, &format!("reading the source {source_key}")),
                None,
            )
        })?;
    let new_data = source.data.clone().unwrap_or_default();
    if new_data.is_empty() {
        return Err((
            ActionError::Permanent(format!("the source {source_key} has no data")),
            None,
        ));
    }
    let api: Api<Secret> = Api::namespaced(client, &ns);
    let secret = api
        .get(&v.target.name)
        .await
        .map_err(|e| (redacted(e, &format!("reading {key}")), None))?;
    check_uid(secret.uid(), args, &key).map_err(|e| (e, None))?;
    let previous: BTreeMap<String, ByteString> = secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| new_data.contains_key(k))
        .collect();
    let keys: Vec<String> = new_data.keys().cloned().collect();
    let rollback = RollbackInfo {
        restorable: false,
        reason: Some(
            "previous Secret values are never recorded; only the keys written and a salted digest"
                .into(),
        ),
        previous_data_digest: Some(salted_digest(&previous)),
        patched_keys: keys.clone(),
        ..Default::default()
    };
    let patch = json!({
        "metadata": { "resourceVersion": secret.resource_version(), "uid": secret.uid() },
        "data": new_data,
    });
    let pp = PatchParams {
        dry_run: args.dry_run,
        ..Default::default()
    };
    api.patch(&v.target.name, &pp, &Patch::Merge(patch))
        .await
        .map_err(|e| {
            (
                redacted(e, &format!("patching {key}")),
                Some(rollback.clone()),
            )
        })?;
    done(
        format!(
            "set keys {} of {key} from {source_key} (values not shown)",
            keys.join(", ")
        ),
        key,
        rollback,
    )
}
