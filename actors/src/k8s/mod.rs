//! The one module that talks to the Kubernetes API: a typed facade over
//! `kube::Client` used by every actor. Errors are classified once here
//! ([`ApiError::is_transient`]) so callers can retry or give up.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use kubernetes_executor_crds::{FINALIZER, KubernetesExecution, KubernetesExecutionStatus};
use serde_json::json;

mod access;
pub mod leases;
pub mod watch;
pub use access::{AdmissionState, Grant, admission};

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "kubernetes-executor";

/// An API failure, classified.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The object does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// Optimistic concurrency or create race.
    #[error("conflict on {what}: {message}")]
    Conflict {
        /// The object.
        what: String,
        /// Server message.
        message: String,
    },
    /// RBAC refused.
    #[error("forbidden to {what}: {message}")]
    Forbidden {
        /// The operation.
        what: String,
        /// Server message.
        message: String,
    },
    /// The server rejected the request as invalid.
    #[error("invalid request to {what}: {message}")]
    Invalid {
        /// The operation.
        what: String,
        /// Server message.
        message: String,
    },
    /// Anything else (5xx, 429, timeouts, connection errors): worth retrying.
    #[error("{what} failed: {source}")]
    Transient {
        /// The operation.
        what: String,
        /// Underlying error.
        #[source]
        source: kube::Error,
    },
}

impl ApiError {
    fn classify(what: impl Into<String>, e: kube::Error) -> Self {
        let what = what.into();
        match &e {
            kube::Error::Api(s) if s.code == 404 => ApiError::NotFound { what },
            kube::Error::Api(s) if s.code == 409 => ApiError::Conflict {
                what,
                message: s.message.clone(),
            },
            kube::Error::Api(s) if s.code == 403 => ApiError::Forbidden {
                what,
                message: s.message.clone(),
            },
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => ApiError::Invalid {
                what,
                message: s.message.clone(),
            },
            _ => ApiError::Transient { what, source: e },
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Transient { .. } | ApiError::Conflict { .. })
    }

    /// Metric label of the error class.
    pub fn class(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "not_found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::Invalid { .. } => "invalid",
            ApiError::Transient { .. } => "transient",
        }
    }
}

/// Result of a facade call.
pub type ApiResult<T> = Result<T, ApiError>;

/// Identity and labels of a target as read at validation time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetMeta {
    /// UID.
    pub uid: String,
    /// resourceVersion.
    pub resource_version: Option<String>,
    /// Live labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

fn api_resource(kind: &str) -> Option<ApiResource> {
    let (group, version, plural) = match kind {
        "Deployment" => ("apps", "v1", "deployments"),
        "Pod" => ("", "v1", "pods"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Secret" => ("", "v1", "secrets"),
        "Node" => ("", "v1", "nodes"),
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

/// The facade. Cheap to clone.
#[derive(Clone)]
pub struct KubeApi {
    client: Client,
    recorder: Recorder,
    namespace: String,
    instance: Option<String>,
    clients: Option<crate::request_context::Clients>,
}

impl KubeApi {
    /// A facade for an operator running in `namespace`, reporting events as `instance`.
    pub fn new(client: Client, namespace: &str, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "kubernetes-executor".into(),
            instance: instance.clone(),
        };
        KubeApi {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespace: namespace.to_string(),
            instance,
            clients: None,
        }
    }

    /// A facade whose clients come from `clients` (sharing one connection
    /// pool), so that [`KubeApi::for_execution`] can stamp User-Agents.
    pub fn with_clients(
        clients: crate::request_context::Clients,
        namespace: &str,
        instance: Option<String>,
    ) -> Self {
        let mut api = KubeApi::new(clients.operator(), namespace, instance);
        api.clients = Some(clients);
        api
    }

    /// The facade for requests made for execution `uid`: its User-Agent
    /// carries the UID (same connection pool). Without shared clients, self.
    pub fn for_execution(&self, uid: &str) -> KubeApi {
        match &self.clients {
            Some(c) => {
                let mut api =
                    KubeApi::new(c.for_execution(uid), &self.namespace, self.instance.clone());
                api.clients = self.clients.clone();
                api
            }
            None => self.clone(),
        }
    }

    /// The operator's Jobs (for the Job watch).
    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The Leases of the operator namespace (for the lock watch).
    pub fn leases(&self) -> Api<k8s_openapi::api::coordination::v1::Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// ConfigMaps of `ns` (for the kill switch watch).
    pub fn configmaps(&self, ns: &str) -> Api<k8s_openapi::api::core::v1::ConfigMap> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Namespaces, metadata only (for the kill switch watch).
    pub fn namespace_metadata(
        &self,
    ) -> Api<PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>> {
        Api::all(self.client.clone())
    }

    /// Every execution, untyped (for the supervisor's watch, which decodes
    /// one object at a time).
    pub fn executions_untyped(&self) -> (Api<kube::core::DynamicObject>, ApiResource) {
        let ar = ApiResource::erase::<KubernetesExecution>(&());
        (Api::all_with(self.client.clone(), &ar), ar)
    }

    /// The operator's namespace (where Jobs run).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn executions(&self, ns: &str) -> Api<KubernetesExecution> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Reads an execution (None when gone).
    pub async fn get_execution(
        &self,
        ns: &str,
        name: &str,
    ) -> ApiResult<Option<KubernetesExecution>> {
        self.executions(ns)
            .get_opt(name)
            .await
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

    /// Removes the operator's finalizer (idempotent; re-reads on conflict).
    pub async fn remove_finalizer(&self, ns: &str, name: &str) -> ApiResult<()> {
        for _ in 0..5 {
            let Some(exec) = self.get_execution(ns, name).await? else {
                return Ok(());
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
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<Option<TargetMeta>> {
        let ar = api_resource(kind).ok_or_else(|| ApiError::Invalid {
            what: format!("get {kind}"),
            message: format!("unsupported kind {kind}"),
        })?;
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

    /// Creates the Job, or returns the existing one of the same name when it
    /// belongs to the same execution (a restart after a create).
    pub async fn create_job(&self, job: &Job) -> ApiResult<Job> {
        let name = job.name_any();
        match self
            .jobs()
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                job,
            )
            .await
        {
            Ok(j) => Ok(j),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let uid = job
                    .labels()
                    .get(kubernetes_executor_crds::labels::EXECUTION_UID)
                    .cloned()
                    .unwrap_or_default();
                self.get_job_of(&name, &uid)
                    .await?
                    .ok_or_else(|| ApiError::Conflict {
                        what: format!("job {name}"),
                        message: "exists, but vanished or is owned by another execution".into(),
                    })
            }
            Err(e) => Err(ApiError::classify(format!("create job {name}"), e)),
        }
    }

    /// The Job `name` if it belongs to the execution with `exec_uid` (its
    /// execution-UID label); `None` if absent or someone else's.
    pub async fn get_job_of(&self, name: &str, exec_uid: &str) -> ApiResult<Option<Job>> {
        Ok(self.get_job(name).await?.filter(|j| {
            j.labels()
                .get(kubernetes_executor_crds::labels::EXECUTION_UID)
                .map(String::as_str)
                == Some(exec_uid)
        }))
    }

    /// Reads a Job of the operator's namespace.
    pub async fn get_job(&self, name: &str) -> ApiResult<Option<Job>> {
        self.jobs()
            .get_opt(name)
            .await
            .map_err(|e| ApiError::classify(format!("get job {name}"), e))
    }

    /// Deletes a Job and (in the background) its pods; absent is fine.
    pub async fn delete_job(&self, name: &str) -> ApiResult<()> {
        match self.jobs().delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(ApiError::classify(format!("delete job {name}"), e)),
        }
    }

    /// The pods of a Job, newest first; `cached` reads the API server's
    /// watch cache (resourceVersion=0) instead of etcd.
    pub async fn job_pods(&self, job: &str, cached: bool) -> ApiResult<Vec<Pod>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("job-name={job}"));
        let params = if cached { params.match_any() } else { params };
        let mut list = pods
            .list(&params)
            .await
            .map_err(|e| ApiError::classify(format!("list pods of job {job}"), e))?
            .items;
        list.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
        Ok(list)
    }

    /// Publishes a Kubernetes Event about any object (best effort); `action`
    /// is what the operator was doing (e.g. `Reconcile`, `LoadPolicies`).
    pub async fn event_about(
        &self,
        reference: &ObjectReference,
        warning: bool,
        action: &str,
        reason: &str,
        note: String,
    ) {
        let ev = KubeEvent {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.chars().take(128).collect(),
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::debug!(error = %e, "failed to publish event");
        }
    }

    /// Publishes a Kubernetes Event about an execution (best effort).
    pub async fn event(
        &self,
        exec: &KubernetesExecution,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        self.event_about(&exec.object_ref(&()), warning, "Reconcile", reason, note)
            .await;
    }
}

/// Retries `f` on transient errors with exponential backoff (100 ms → 5 s),
/// at most `attempts` times.
pub async fn retry<T, F, Fut>(attempts: u32, mut f: F) -> ApiResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ApiResult<T>>,
{
    let mut delay = Duration::from_millis(100);
    let mut n = 0;
    loop {
        n += 1;
        match f().await {
            Err(e) if e.is_transient() && n < attempts => {
                tracing::debug!(error = %e, attempt = n, "transient API error, retrying");
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// How long an execution keeps retrying an API call through overload (429,
/// 5xx, timeouts) before it gives up with a clear error.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Retries `f` on transient errors (overload: 429, 5xx, timeouts) for up to
/// `budget`, backing off 200 ms → 30 s with jitter. For work that must not
/// be given up because the API server is busy: status writes (unbounded
/// budget) and validation reads (a few minutes, then a clear failure).
pub async fn retry_for<T, F, Fut>(budget: Duration, mut f: F) -> ApiResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ApiResult<T>>,
{
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut n = 0u32;
    loop {
        n += 1;
        match f().await {
            Err(e) if e.is_transient() && start.elapsed() + delay < budget => {
                if n.is_multiple_of(5) {
                    tracing::warn!(error = %e, attempt = n, "API server still failing; retrying");
                }
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

/// `d` scaled by a factor in [0.5, 1.5): many actors backing off together
/// must not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let r = (h.finish() % 1000) as f64 / 1000.0;
    d.mul_f64(0.5 + r)
}

pub use crate::views::{CONTROL_CONFIGMAP, PAUSE_ANNOTATION};

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
            return Ok(Some(crate::views::global_reason(&self.namespace)));
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
            return Ok(Some(crate::views::namespace_reason(ns)));
        }
        Ok(None)
    }
}

/// Millicores of a CPU quantity (`2`, `500m`, `1.5`); 0 when unparsable.
pub fn cpu_millis(q: &str) -> i64 {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().unwrap_or(0);
    }
    q.parse::<f64>()
        .map(|c| (c * 1000.0).round() as i64)
        .unwrap_or(0)
}

impl KubeApi {
    /// Live cluster state for pre/postconditions (`input.cluster`): the target
    /// object, its pods (Deployments), the nodes, and which imagePullSecrets
    /// exist. Secret targets contribute metadata only.
    pub async fn cluster_state(
        &self,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        target: Option<&k8s_openapi::api::apps::v1::Deployment>,
    ) -> ApiResult<serde_json::Value> {
        use k8s_openapi::api::core::v1::Node;
        let mut state = serde_json::Map::new();
        state.insert("operator_namespace".into(), json!(self.namespace));
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node_list = nodes
            // Condition state tolerates the API server's watch-cache view
            // (milliseconds behind): served from memory, no etcd read.
            .list(&ListParams::default().match_any())
            .await
            .map_err(|e| ApiError::classify("list nodes", e))?;
        let nodes_json: Vec<_> = node_list
            .items
            .iter()
            .map(|n| {
                let st = n.status.clone().unwrap_or_default();
                json!({
                    "name": n.name_any(),
                    "labels": n.labels(),
                    "unschedulable": n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
                    "ready": st.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True"),
                    "allocatable_cpu_millis": st.allocatable.as_ref().and_then(|a| a.get("cpu")).map(|q| cpu_millis(&q.0)).unwrap_or(0),
                })
            })
            .collect();
        state.insert("nodes".into(), json!(nodes_json));
        if kind == "Deployment" {
            let ns = ns.unwrap_or_default();
            let fetched;
            let d = match target {
                Some(d) => d,
                None => match self.get_deployment(ns, name).await? {
                    Some(d) => {
                        fetched = d;
                        &fetched
                    }
                    None => return Ok(serde_json::Value::Object(state)),
                },
            };
            let spec = d.spec.clone().unwrap_or_default();
            let selector: Vec<String> = spec
                .selector
                .match_labels
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let pod_list = if selector.is_empty() {
                vec![]
            } else {
                pods.list(
                    &ListParams::default()
                        .labels(&selector.join(","))
                        .match_any(),
                )
                .await
                .map_err(|e| ApiError::classify(format!("list pods of {ns}/{name}"), e))?
                .items
            };
            let pods_json: Vec<_> = pod_list
                .iter()
                .map(|p| {
                    let st = p.status.clone().unwrap_or_default();
                    let statuses = st.container_statuses.clone().unwrap_or_default();
                    let cpu: i64 = p
                        .spec
                        .iter()
                        .flat_map(|s| s.containers.iter())
                        .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get("cpu").map(|q| cpu_millis(&q.0)))
                        .sum();
                    json!({
                        "name": p.name_any(),
                        "phase": st.phase,
                        "node": p.spec.as_ref().and_then(|s| s.node_name.clone()),
                        "ready": st.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True"),
                        "restarts": statuses.iter().map(|c| c.restart_count).sum::<i32>(),
                        "waiting_reasons": statuses.iter().filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()).collect::<Vec<_>>(),
                        "cpu_request_millis": cpu,
                    })
                })
                .collect();
            state.insert("pods".into(), json!(pods_json));
            // The operator may not read Secrets (not even their metadata):
            // each referenced pull secret is reported unverified (null), and
            // the condition says so instead of passing silently.
            let mut secrets_exist = serde_json::Map::new();
            for r in spec
                .template
                .spec
                .iter()
                .flat_map(|s| s.image_pull_secrets.iter().flatten())
            {
                secrets_exist.insert(r.name.clone(), serde_json::Value::Null);
            }
            state.insert(
                "image_pull_secrets".into(),
                serde_json::Value::Object(secrets_exist),
            );
            state.insert("target".into(), serde_json::to_value(d).unwrap_or_default());
        }
        Ok(serde_json::Value::Object(state))
    }
}
