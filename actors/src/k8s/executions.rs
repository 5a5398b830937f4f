//! Executions and their targets: status (server-side apply), the
//! finalizer, target metadata, the Deployment, and the reads conditions
//! and the kill switch need.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kubernetes_executor_crds::{FINALIZER, KubernetesExecution, KubernetesExecutionStatus};
use serde_json::json;

use super::*;

/// An execution as the operator keeps it: without `managedFields` (the
/// server's field ownership records, nested JSON as large as the rest of
/// the object, never read here). Thousands of live actors each hold one.
pub fn held(mut exec: KubernetesExecution) -> KubernetesExecution {
    exec.metadata.managed_fields = None;
    exec
}

impl KubeApi {
    fn executions(&self, ns: &str) -> Api<KubernetesExecution> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Reads an execution (None when gone), as held (see [`held`]).
    pub async fn get_execution(
        &self,
        ns: &str,
        name: &str,
    ) -> ApiResult<Option<KubernetesExecution>> {
        self.executions(ns)
            .get_opt(name)
            .await
            .map(|e| e.map(held))
            .map_err(|e| ApiError::classify(format!("get execution {ns}/{name}"), e))
    }

    /// Replaces the status of an execution (merge patch of the whole status).
    pub async fn write_status(
        &self,
        ns: &str,
        name: &str,
        status: &KubernetesExecutionStatus,
    ) -> ApiResult<KubernetesExecution> {
        // Server-side apply as the operator's field manager, owning only the
        // operator's own condition types: conditions other controllers add
        // survive. The CRD's forward-only rule refuses a stale writer (say,
        // a deposed leader) that would move the phase back.
        let mut status = status.clone();
        status.conditions.retain(|c| {
            kubernetes_executor_crds::reasons::conditions::ALL.contains(&c.type_.as_str())
        });
        let body = json!({
            "apiVersion": format!("{}/{}", kubernetes_executor_crds::GROUP, kubernetes_executor_crds::VERSION),
            "kind": "KubernetesExecution",
            "metadata": { "name": name, "namespace": ns },
            "status": status,
        });
        self.executions(ns)
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map(held)
            .map_err(|e| ApiError::classify(format!("apply status of execution {ns}/{name}"), e))
    }

    /// Adds the operator's finalizer (idempotent).
    pub async fn add_finalizer(&self, exec: &KubernetesExecution) -> ApiResult<()> {
        if exec.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        let ns = exec.namespace().unwrap_or_default();
        let name = exec.name_any();
        let mut finalizers = exec.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        // resourceVersion makes this a compare-and-swap of the list.
        let patch = json!({ "metadata": { "finalizers": finalizers, "resourceVersion": exec.resource_version() } });
        self.executions(&ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(|e| ApiError::classify(format!("add finalizer to {ns}/{name}"), e))
    }

    /// Removes the operator's finalizer from an execution this version
    /// cannot decode (untyped; a compare-and-swap on the version seen —
    /// on a conflict the watch's next event brings the newer one).
    pub async fn remove_finalizer_untyped(&self, o: &kube::core::DynamicObject) -> ApiResult<()> {
        let ar = kube::core::ApiResource::erase::<KubernetesExecution>(&());
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        let name = o.metadata.name.clone().unwrap_or_default();
        let rest: Vec<&String> = o
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != FINALIZER)
            .collect();
        let patch = json!({ "metadata": { "finalizers": rest, "resourceVersion": o.metadata.resource_version } });
        Api::<kube::core::DynamicObject>::namespaced_with(self.client.clone(), &ns, &ar)
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(|e| ApiError::classify(format!("remove finalizer from {ns}/{name}"), e))
    }

    /// Removes the operator's finalizer (idempotent; re-reads on conflict).
    /// `known` is the version last written or seen: tried first, without a
    /// read (a conflict means it is stale, and the next try reads).
    pub async fn remove_finalizer(
        &self,
        ns: &str,
        name: &str,
        known: Option<&KubernetesExecution>,
    ) -> ApiResult<()> {
        let mut known = known.filter(|e| e.resource_version().is_some()).cloned();
        for _ in 0..5 {
            let exec = match known.take() {
                Some(e) => e,
                None => match self.get_execution(ns, name).await? {
                    Some(e) => e,
                    None => return Ok(()),
                },
            };
            if !exec.finalizers().iter().any(|f| f == FINALIZER) {
                return Ok(());
            }
            let finalizers: Vec<_> = exec
                .finalizers()
                .iter()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect();
            let patch = json!({ "metadata": { "finalizers": finalizers, "resourceVersion": exec.resource_version() } });
            match self
                .executions(ns)
                .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(e) => {
                    return Err(ApiError::classify(
                        format!("remove finalizer from {ns}/{name}"),
                        e,
                    ));
                }
            }
        }
        Err(ApiError::Conflict {
            what: format!("finalizer of {ns}/{name}"),
            message: "kept conflicting".into(),
        })
    }

    /// Reads a target's identity and labels (metadata only: never Secret data).
    pub async fn get_target_meta(
        &self,
        action: ActionKind,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<Option<TargetMeta>> {
        let ar = api_resource(action);
        let kind = &ar.kind;
        let api: Api<kube::api::DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let meta: Option<PartialObjectMeta<kube::api::DynamicObject>> =
            api.get_metadata_opt(name).await.map_err(|e| {
                ApiError::classify(
                    format!(
                        "get {kind} {}{name}",
                        ns.map(|n| format!("{n}/")).unwrap_or_default()
                    ),
                    e,
                )
            })?;
        Ok(meta.map(|m| TargetMeta {
            uid: m.metadata.uid.clone().unwrap_or_default(),
            resource_version: m.metadata.resource_version.clone(),
            labels: m.metadata.labels.clone().unwrap_or_default(),
        }))
    }

    /// The whole Deployment `ns/name` (validation reads it once and reuses it
    /// for the precondition state).
    pub async fn get_deployment(
        &self,
        ns: &str,
        name: &str,
    ) -> ApiResult<Option<k8s_openapi::api::apps::v1::Deployment>> {
        Api::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| ApiError::classify(format!("get deployment {ns}/{name}"), e))
    }
}

impl KubeApi {
    /// Why new executions in `ns` are paused, if they are (kill switch),
    /// read from the API (callers look at [`crate::views`] first).
    pub async fn paused(&self, ns: &str) -> ApiResult<Option<String>> {
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let cm = cms
            .get_opt(CONTROL_CONFIGMAP)
            .await
            .map_err(|e| ApiError::classify(format!("get configmap {CONTROL_CONFIGMAP}"), e))?;
        if cm
            .and_then(|c| c.data)
            .and_then(|d| d.get("paused").cloned())
            .as_deref()
            == Some("true")
        {
            return Ok(Some(crate::pause::global_reason(&self.namespace)));
        }
        let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let meta = nss
            .get_metadata_opt(ns)
            .await
            .map_err(|e| ApiError::classify(format!("get namespace {ns}"), e))?;
        if meta
            .and_then(|m| m.metadata.annotations)
            .and_then(|a| a.get(PAUSE_ANNOTATION).cloned())
            .as_deref()
            == Some("true")
        {
            return Ok(Some(crate::pause::namespace_reason(ns)));
        }
        Ok(None)
    }
}

impl KubeApi {
    /// Every node (from the API server's watch cache: condition state
    /// tolerates a view milliseconds behind, and it costs no etcd read).
    pub async fn list_nodes(&self) -> ApiResult<Vec<k8s_openapi::api::core::v1::Node>> {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        Ok(nodes
            .list(&ListParams::default().match_any())
            .await
            .map_err(|e| ApiError::classify("list nodes", e))?
            .items)
    }

    /// The pods of `ns` matching `selector` (watch cache); none for an
    /// empty selector.
    pub async fn list_pods(&self, ns: &str, selector: &str) -> ApiResult<Vec<Pod>> {
        if selector.is_empty() {
            return Ok(Vec::new());
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        Ok(pods
            .list(&ListParams::default().labels(selector).match_any())
            .await
            .map_err(|e| ApiError::classify(format!("list pods {ns}/{selector}"), e))?
            .items)
    }

    /// Deletes a finished execution (history clean-up), only if it is still
    /// the object `uid` names (a re-created one of the same name is not
    /// touched); absent is fine.
    pub async fn delete_finished_execution(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
    ) -> ApiResult<()> {
        let api = self.executions(ns);
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(ApiError::classify(
                format!("delete execution {ns}/{name}"),
                e,
            )),
        }
    }
}
