//! PatchConfigMap: merge, strategic or JSON patch of one ConfigMap, guarded
//! by the resourceVersion read first. Its rollback information holds the
//! previous values of the keys the patch touches, and nothing else.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use kubernetes_executor_actors::catalog::ValidatedAction;
use kubernetes_executor_crds::RollbackInfo;
use serde_json::json;

use super::{ActionError, Outcome, check_uid, data_digest, done};
use crate::config::RunActionArgs;

/// Which `data` keys a patch can change.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Touched {
    /// The patch replaces or removes `data` as a whole.
    All,
    /// Only these keys.
    Keys(BTreeSet<String>),
}

/// The `data` keys that `doc` (of `patch_type`) touches.
pub(crate) fn touched_keys(patch_type: &str, doc: &serde_json::Value) -> Touched {
    let mut keys = BTreeSet::new();
    if patch_type == "json" {
        for op in doc.as_array().into_iter().flatten() {
            for field in ["path", "from"] {
                let Some(path) = op.get(field).and_then(|p| p.as_str()) else {
                    continue;
                };
                if path == "/data" || path.is_empty() {
                    return Touched::All;
                }
                if let Some(key) = path.strip_prefix("/data/") {
                    // JSON pointer unescaping (~1 is '/', ~0 is '~').
                    let key = key.split('/').next().unwrap_or_default();
                    keys.insert(key.replace("~1", "/").replace("~0", "~"));
                }
            }
        }
        return Touched::Keys(keys);
    }
    match doc.get("data") {
        Some(serde_json::Value::Object(m)) => Touched::Keys(m.keys().cloned().collect()),
        Some(_) => Touched::All,
        None => Touched::Keys(keys),
    }
}

/// A JSON patch that applies only to `resource_version` (a leading `test`).
fn guard_json_patch(doc: serde_json::Value, resource_version: Option<String>) -> serde_json::Value {
    match (doc, resource_version) {
        (serde_json::Value::Array(ops), Some(rv)) => {
            let mut guarded =
                vec![json!({ "op": "test", "path": "/metadata/resourceVersion", "value": rv })];
            guarded.extend(ops);
            serde_json::Value::Array(guarded)
        }
        (doc, _) => doc,
    }
}

/// The target changed between the read and the patch (the resourceVersion
/// guard failed): `TargetChanged`; anything else as usual.
fn changed_or(e: kube::Error, key: &str) -> ActionError {
    match &e {
        kube::Error::Api(s)
            if s.code == 409 || (s.code == 422 && s.message.contains("test operation")) =>
        {
            ActionError::TargetChanged(format!(
                "{key} changed while it was being patched; nothing was applied"
            ))
        }
        _ => e.into(),
    }
}

pub(super) async fn patch_config_map(
    client: Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
) -> Outcome {
    let ns = v.target.namespace.clone().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let key = format!("ConfigMap/{ns}/{}", v.target.name);
    let cm = api
        .get(&v.target.name)
        .await
        .map_err(|e| (e.into(), None))?;
    check_uid(cm.uid(), args, &key).map_err(|e| (e, None))?;
    // The patch was validated against the version validation saw.
    if let Some(expected) = &args.expected_resource_version
        && cm.resource_version().as_deref() != Some(expected.as_str())
    {
        return Err((
            ActionError::TargetChanged(format!(
                "{key} changed since validation (resourceVersion {} ≠ {expected}); refusing to patch it",
                cm.resource_version().unwrap_or_default()
            )),
            None,
        ));
    }
    let doc: serde_json::Value = serde_json::from_str(
        v.params.get("patch").map(String::as_str).unwrap_or("{}"),
    )
    .map_err(|e| {
        (
            ActionError::Permanent(format!("patch is not JSON: {e}")),
            None,
        )
    })?;
    let patch_type = v
        .params
        .get("patchType")
        .map(String::as_str)
        .unwrap_or("merge");
    // Only what the patch touches is recorded: a rollbackInfo must not
    // copy a whole ConfigMap (perhaps another tenant's) into status.
    let data = cm.data.clone().unwrap_or_default();
    let previous: BTreeMap<String, String> = match touched_keys(patch_type, &doc) {
        Touched::All => data,
        Touched::Keys(keys) => data.into_iter().filter(|(k, _)| keys.contains(k)).collect(),
    };
    let rollback = RollbackInfo {
        restorable: true,
        previous_data_digest: Some(data_digest(&previous)),
        previous_data: Some(previous),
        ..Default::default()
    };
    let patch = match patch_type {
        "json" => Patch::Json::<serde_json::Value>(
            serde_json::from_value(guard_json_patch(doc, cm.resource_version())).map_err(|e| {
                (
                    ActionError::Permanent(format!("invalid JSON patch: {e}")),
                    None,
                )
            })?,
        ),
        "strategic" => Patch::Strategic(doc),
        _ => Patch::Merge(doc),
    };
    // The resourceVersion read above makes the patch fail if the ConfigMap
    // changed in between.
    let guarded = PatchParams {
        dry_run: args.dry_run,
        ..Default::default()
    };
    if let Patch::Merge(doc) | Patch::Strategic(doc) = &patch {
        let mut doc = doc.clone();
        if let Some(o) = doc.as_object_mut() {
            o.insert(
                "metadata".into(),
                json!({ "resourceVersion": cm.resource_version(), "uid": cm.uid() }),
            );
        }
        let p = if matches!(patch, Patch::Merge(_)) {
            Patch::Merge(doc)
        } else {
            Patch::Strategic(doc)
        };
        api.patch(&v.target.name, &guarded, &p)
            .await
            .map_err(|e| (changed_or(e, &key), Some(rollback.clone())))?;
    } else {
        api.patch(&v.target.name, &guarded, &patch)
            .await
            .map_err(|e| (changed_or(e, &key), Some(rollback.clone())))?;
    }
    done(format!("patched {key}"), key, rollback)
}

#[cfg(test)]
mod tests {
    use super::{Touched, touched_keys};
    use serde_json::json;

    fn keys(k: &[&str]) -> Touched {
        Touched::Keys(k.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn merge_patches_touch_their_data_keys() {
        assert_eq!(
            touched_keys("merge", &json!({"data": {"a": "1", "b": null}})),
            keys(&["a", "b"])
        );
        assert_eq!(
            touched_keys("strategic", &json!({"metadata": {"labels": {"x": "y"}}})),
            keys(&[])
        );
        assert_eq!(
            touched_keys("merge", &json!({})),
            keys(&[]),
            "{{}} copies nothing"
        );
        assert_eq!(touched_keys("merge", &json!({"data": null})), Touched::All);
    }

    #[test]
    fn json_patches_touch_their_paths() {
        let doc = json!([
            {"op": "replace", "path": "/data/mode", "value": "fast"},
            {"op": "remove", "path": "/data/a~1b"},
            {"op": "add", "path": "/metadata/labels/x", "value": "y"},
        ]);
        assert_eq!(touched_keys("json", &doc), keys(&["a/b", "mode"]));
        let doc =
            json!([{"op": "copy", "from": "/data/secret", "path": "/metadata/annotations/x"}]);
        assert_eq!(touched_keys("json", &doc), keys(&["secret"]));
        assert_eq!(
            touched_keys(
                "json",
                &json!([{"op": "replace", "path": "/data", "value": {}}])
            ),
            Touched::All
        );
    }
}
