//! Watch-backed view of the target locks (Leases in the operator's
//! namespace, labelled as the operator's). Executions waiting for a busy
//! target look here instead of asking the API server every half second:
//! while the lock's holder is a live execution of this operator, a waiter
//! makes no request at all; when the holder releases (deletes) the Lease,
//! the watch shows it and the next attempt goes to the API. Until the watch
//! has listed, [`LockWatch::holder`] answers `None` and callers use the API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kubernetes_executor_crds::labels;

/// Handle to the view; clones share it.
#[derive(Clone)]
pub struct LockWatch {
    store: Store<Lease>,
    ready: Arc<AtomicBool>,
    namespace: String,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl LockWatch {
    /// Starts the watch of lock Leases in `namespace`.
    pub fn start(client: Client, namespace: &str) -> LockWatch {
        let api: Api<Lease> = Api::namespaced(client, namespace);
        let cfg = watcher::Config::default().labels(&format!(
            "{}={}",
            labels::MANAGED_BY,
            labels::MANAGER
        ));
        let (store, writer) = reflector::store();
        let ready = Arc::new(AtomicBool::new(false));
        let r = ready.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(api, cfg)
                .default_backoff()
                .reflect(writer)
                .boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::InitDone) => r.store(true, Ordering::Relaxed),
                    Ok(_) => {}
                    Err(e) => {
                        // Until the next full list the view may be stale.
                        r.store(false, Ordering::Relaxed);
                        tracing::warn!(error = %e, "lock watch error (backing off)");
                    }
                }
            }
        });
        LockWatch {
            store,
            ready,
            namespace: namespace.to_string(),
            task: Arc::new(task),
        }
    }

    /// Who holds lock `name` now, from the watch: `None` when the lock is
    /// free, or when the view is not synced (ask the API then).
    pub fn holder(
        &self,
        name: &str,
        now: k8s_openapi::jiff::Timestamp,
    ) -> Option<crate::lock::Holder> {
        if !self.ready.load(Ordering::Relaxed) {
            return None;
        }
        let lease = self
            .store
            .get(&ObjectRef::new(name).within(&self.namespace))?;
        Some(crate::lock::holder(&lease, now))
    }

    /// Stops the watch.
    pub fn stop(&self) {
        self.task.abort();
    }
}
