//! Watch-backed view of the kill switch: the control ConfigMap's `paused`
//! key and the namespaces annotated paused. Lets every new execution check
//! the switch without two API reads of its own (the cost that dominated
//! pickup latency under load). Until both watches have listed — or after a
//! watch error, until its next full list — [`KillSwitch::lookup`] answers
//! `None` and the caller reads the API instead, so an unsynced view never
//! lets an execution through. (After a watch error the view is trusted
//! again on the next event: the watch resumes where it stopped.)
//!
//! Consistency: a pause takes effect for executions the operator picks up
//! after the change reached its watch (milliseconds, the same path the
//! execution itself arrives by). An execution already past `Pending` is
//! never stopped by the switch.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use crate::kube_api::{CONTROL_CONFIGMAP, PAUSE_ANNOTATION};

#[derive(Default)]
struct View {
    global: RwLock<bool>,
    global_ready: AtomicBool,
    namespaces: RwLock<HashSet<String>>,
    namespaces_ready: AtomicBool,
}

/// Handle to the view; clones share it. Dropping the last handle does not
/// stop the watches: call [`KillSwitch::stop`].
#[derive(Clone)]
pub struct KillSwitch {
    view: Arc<View>,
    tasks: Arc<Vec<tokio::task::JoinHandle<()>>>,
}

/// Pause reason for the cluster-wide switch.
pub fn global_reason(operator_ns: &str) -> String {
    format!(
        "new executions are paused cluster-wide (ConfigMap {operator_ns}/{CONTROL_CONFIGMAP} has paused=\"true\")"
    )
}

/// Pause reason for a paused namespace.
pub fn namespace_reason(ns: &str) -> String {
    format!("new executions in namespace {ns} are paused (annotation {PAUSE_ANNOTATION}=\"true\")")
}

fn cm_paused(cm: &ConfigMap) -> bool {
    cm.data
        .as_ref()
        .and_then(|d| d.get("paused"))
        .is_some_and(|v| v == "true")
}

fn ns_paused(meta: &kube::core::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(PAUSE_ANNOTATION))
        .is_some_and(|v| v == "true")
}

impl KillSwitch {
    /// Starts the two watches.
    pub fn start(client: Client, operator_ns: &str) -> KillSwitch {
        let view = Arc::new(View::default());
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), operator_ns);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={CONTROL_CONFIGMAP}"));
        let v = view.clone();
        let control = tokio::spawn(async move {
            let mut stream = watcher::watcher(cms, cfg).default_backoff().boxed();
            let mut listing = false;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Init) => listing = false,
                    Ok(Event::InitApply(cm)) => listing |= cm_paused(&cm),
                    Ok(Event::InitDone) => {
                        set(&v.global, listing);
                        v.global_ready.store(true, Ordering::Release);
                    }
                    // An event after an error means the watch resumed where
                    // it stopped (no change missed): the view is current again.
                    Ok(Event::Apply(cm)) => {
                        set(&v.global, cm_paused(&cm));
                        v.global_ready.store(true, Ordering::Release);
                    }
                    Ok(Event::Delete(_)) => {
                        set(&v.global, false);
                        v.global_ready.store(true, Ordering::Release);
                    }
                    Err(e) => {
                        v.global_ready.store(false, Ordering::Release);
                        tracing::warn!(error = %e, "kill switch: control ConfigMap watch failed; reading the API until it re-lists");
                    }
                }
            }
        });
        let nss: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let v = view.clone();
        let namespaces = tokio::spawn(async move {
            let mut stream = watcher::watcher(nss, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut listing: HashSet<String> = HashSet::new();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Init) => listing.clear(),
                    Ok(Event::InitApply(m)) => {
                        if ns_paused(&m.metadata) {
                            listing.insert(m.metadata.name.clone().unwrap_or_default());
                        }
                    }
                    Ok(Event::InitDone) => {
                        if let Ok(mut set) = v.namespaces.write() {
                            *set = std::mem::take(&mut listing);
                        }
                        v.namespaces_ready.store(true, Ordering::Release);
                    }
                    Ok(Event::Apply(m)) => {
                        let name = m.metadata.name.clone().unwrap_or_default();
                        if let Ok(mut set) = v.namespaces.write() {
                            if ns_paused(&m.metadata) {
                                set.insert(name);
                            } else {
                                set.remove(&name);
                            }
                        }
                        v.namespaces_ready.store(true, Ordering::Release);
                    }
                    Ok(Event::Delete(m)) => {
                        if let Ok(mut set) = v.namespaces.write() {
                            set.remove(m.metadata.name.as_deref().unwrap_or_default());
                        }
                        v.namespaces_ready.store(true, Ordering::Release);
                    }
                    Err(e) => {
                        v.namespaces_ready.store(false, Ordering::Release);
                        tracing::warn!(error = %e, "kill switch: namespace watch failed; reading the API until it re-lists");
                    }
                }
            }
        });
        KillSwitch {
            view,
            tasks: Arc::new(vec![control, namespaces]),
        }
    }

    /// Whether new executions in `ns` are paused, from the watches:
    /// `Some(None)` not paused, `Some(Some(reason))` paused, `None` when the
    /// view is not synced (ask the API).
    pub fn lookup(&self, operator_ns: &str, ns: &str) -> Option<Option<String>> {
        let v = &self.view;
        if !v.global_ready.load(Ordering::Acquire) || !v.namespaces_ready.load(Ordering::Acquire) {
            return None;
        }
        if *v.global.read().ok()? {
            return Some(Some(global_reason(operator_ns)));
        }
        if v.namespaces.read().ok()?.contains(ns) {
            return Some(Some(namespace_reason(ns)));
        }
        Some(None)
    }

    /// Stops the watches.
    pub fn stop(&self) {
        for t in self.tasks.iter() {
            t.abort();
        }
    }
}

fn set(flag: &RwLock<bool>, value: bool) {
    if let Ok(mut f) = flag.write() {
        *f = value;
    }
}
