//! KillSwitchActor: owns the watches behind [`crate::views`] — the control
//! ConfigMap, the namespaces (metadata only), the target-lock Leases, the
//! pods of the operator's Jobs (kept: their termination messages) and the
//! nodes (kept: what conditions read of them) —
//! and writes every change into the views. A child of the root: when it
//! fails, the views go unsynced (executions ask the API) until its
//! successor has listed again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kubernetes_executor_crds::labels;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::k8s::KubeApi;
use crate::k8s::watch::{Change, watch};
use crate::metrics::Metrics;
use crate::registry::{ActorRegistry, Lifecycle};
use crate::views::{CONTROL_CONFIGMAP, PAUSE_ANNOTATION, Views};

/// Messages of the KillSwitchActor.
pub enum KillSwitchMsg {
    /// The control ConfigMap changed.
    Control(Change<ConfigMap>),
    /// A namespace changed.
    Namespace(Change<PartialObjectMeta<Namespace>>),
    /// A target lock changed.
    Lock(Change<Lease>),
    /// A pod of one of the operator's Jobs changed.
    JobPod(Box<Change<Pod>>),
    /// A node changed.
    Node(Box<Change<Node>>),
    /// Test hook (chaos only): fail now.
    Chaos,
}

/// Arguments of the KillSwitchActor.
pub struct KillSwitchArgs {
    /// Where the watches come from.
    pub api: KubeApi,
    /// The views it writes.
    pub views: Views,
    /// Registry.
    pub registry: Arc<ActorRegistry>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Parent (for `/actors`).
    pub parent: String,
}

/// State of the KillSwitchActor.
pub struct KillSwitchState {
    views: Views,
    control_listing: bool,
    namespaces_listing: HashSet<String>,
    locks_listing: HashMap<String, Lease>,
    outputs_listing: HashMap<String, Vec<crate::views::PodOutput>>,
    nodes_listing: std::collections::BTreeMap<String, crate::policy::input::NodeInput>,
    watches: Vec<tokio::task::JoinHandle<()>>,
    life: Lifecycle,
}

/// The KillSwitchActor.
pub struct KillSwitchActor;

fn cm_paused(cm: &ConfigMap) -> bool {
    cm.data
        .as_ref()
        .and_then(|d| d.get("paused"))
        .is_some_and(|v| v == "true")
}

fn ns_paused(m: &PartialObjectMeta<Namespace>) -> bool {
    m.annotations()
        .get(PAUSE_ANNOTATION)
        .is_some_and(|v| v == "true")
}

impl Actor for KillSwitchActor {
    type Msg = KillSwitchMsg;
    type State = KillSwitchState;
    type Arguments = KillSwitchArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<KillSwitchMsg>,
        args: KillSwitchArgs,
    ) -> Result<KillSwitchState, ActorProcessingErr> {
        // A predecessor's view may be stale: unsynced until listed again.
        args.views.invalidate();
        let ns = args.api.namespace().to_string();
        let life = Lifecycle::enter(
            &args.registry,
            &args.metrics,
            "kill-switch",
            &myself.get_name().unwrap_or_default(),
            Some(&args.parent),
            None,
        );
        let r = &args.registry;
        // The operator's own objects (lock Leases, Job pods).
        let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGER);
        let ours = || watcher::Config::default().labels(&managed);
        let watches = vec![
            watch(
                "control configmap",
                args.api.configmaps(&ns),
                watcher::Config::default().fields(&format!("metadata.name={CONTROL_CONFIGMAP}")),
                r.clone(),
                myself.clone(),
                |c| Some(KillSwitchMsg::Control(c)),
            ),
            watch(
                "namespaces",
                args.api.namespace_metadata(),
                watcher::Config::default(),
                r.clone(),
                myself.clone(),
                |c| Some(KillSwitchMsg::Namespace(c)),
            ),
            watch(
                "target locks",
                args.api.leases(),
                ours(),
                r.clone(),
                myself.clone(),
                |c| Some(KillSwitchMsg::Lock(c)),
            ),
            // The action's output is its pod's termination message: kept
            // from this watch, an execution reads no pods when its Job ends.
            watch(
                "job pods",
                args.api.operator_pods(),
                ours(),
                r.clone(),
                myself.clone(),
                |c| Some(KillSwitchMsg::JobPod(Box::new(c))),
            ),
            // Conditions see every node: kept (a few hundred bytes each)
            // from this watch instead of a list per evaluation.
            watch(
                "nodes",
                args.api.nodes(),
                watcher::Config::default(),
                r.clone(),
                myself.clone(),
                |c| Some(KillSwitchMsg::Node(Box::new(c))),
            ),
        ];
        Ok(KillSwitchState {
            views: args.views,
            control_listing: false,
            namespaces_listing: HashSet::new(),
            locks_listing: HashMap::new(),
            outputs_listing: HashMap::new(),
            nodes_listing: Default::default(),
            watches,
            life,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<KillSwitchMsg>,
        state: &mut KillSwitchState,
    ) -> Result<(), ActorProcessingErr> {
        state.views.invalidate();
        for w in &state.watches {
            w.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<KillSwitchMsg>,
        msg: KillSwitchMsg,
        state: &mut KillSwitchState,
    ) -> Result<(), ActorProcessingErr> {
        let started = std::time::Instant::now();
        let v = &state.views;
        match msg {
            KillSwitchMsg::Chaos => panic!("chaos: injected panic in the kill switch"),
            KillSwitchMsg::Control(c) => match c {
                Change::Relisting => state.control_listing = false,
                Change::Listed(cm) => state.control_listing |= cm_paused(&cm),
                Change::Synced => v.global(Some(state.control_listing)),
                // A change after an error means the watch resumed where it
                // stopped (no change missed): the view is current again.
                Change::Applied(cm) => v.global(Some(cm_paused(&cm))),
                Change::Deleted(_) => v.global(Some(false)),
                Change::Failed(_) => v.global(None),
            },
            KillSwitchMsg::Namespace(c) => match c {
                Change::Relisting => state.namespaces_listing.clear(),
                Change::Listed(m) => {
                    if ns_paused(&m) {
                        state.namespaces_listing.insert(m.name_any());
                    }
                }
                Change::Synced => {
                    v.namespaces_listed(std::mem::take(&mut state.namespaces_listing))
                }
                Change::Applied(m) => v.namespace(&m.name_any(), ns_paused(&m)),
                Change::Deleted(m) => v.namespace(&m.name_any(), false),
                Change::Failed(_) => v.namespaces_stale(),
            },
            KillSwitchMsg::Lock(c) => match c {
                Change::Relisting => state.locks_listing.clear(),
                Change::Listed(l) => {
                    state.locks_listing.insert(l.name_any(), l);
                }
                Change::Synced => v.locks_listed(std::mem::take(&mut state.locks_listing)),
                Change::Applied(l) => v.lock(&l.name_any(), Some(l)),
                Change::Deleted(l) => v.lock(&l.name_any(), None),
                Change::Failed(_) => v.locks_stale(),
            },
            KillSwitchMsg::JobPod(c) => match *c {
                Change::Relisting => state.outputs_listing.clear(),
                Change::Listed(p) => {
                    if let Some((job, o)) = crate::views::pod_output(&p) {
                        state.outputs_listing.entry(job).or_default().push(o);
                    }
                }
                Change::Synced => v.outputs_listed(std::mem::take(&mut state.outputs_listing)),
                Change::Applied(p) => v.job_pod(&p, false),
                Change::Deleted(p) => v.job_pod(&p, true),
                Change::Failed(_) => v.outputs_stale(),
            },
            KillSwitchMsg::Node(c) => {
                use crate::policy::input::node_input;
                match *c {
                    Change::Relisting => state.nodes_listing.clear(),
                    Change::Listed(n) => {
                        state.nodes_listing.insert(n.name_any(), node_input(&n));
                    }
                    Change::Synced => v.nodes_listed(std::mem::take(&mut state.nodes_listing)),
                    Change::Applied(n) => v.node(&n.name_any(), Some(node_input(&n))),
                    Change::Deleted(n) => v.node(&n.name_any(), None),
                    Change::Failed(_) => v.nodes_stale(),
                }
            }
        }
        state.life.handled(started, None);
        Ok(())
    }
}
