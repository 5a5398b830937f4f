//! The one watch loop of the operator. Every watch (executions, Jobs, the
//! kill switch's ConfigMap and namespaces, target-lock Leases) runs
//! kube-runtime's `watcher` with its default backoff through [`watch`], and
//! every consumer is an actor: each change becomes one message in the
//! consumer's mailbox, so the state built from a watch is owned by one
//! actor and rebuilt when that actor restarts.

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use ractor::{ActorRef, Message};
use serde::de::DeserializeOwned;

use crate::registry::{ActorRegistry, post};

/// A change seen by a watch, in the order the watch reports them.
#[derive(Debug)]
pub enum Change<K> {
    /// A full list begins (after start or after the watch lost its place):
    /// until [`Change::Synced`], the consumer's view is incomplete.
    Relisting,
    /// An object of the list.
    Listed(K),
    /// The list is complete: the view is current.
    Synced,
    /// An object was created or changed.
    Applied(K),
    /// An object was deleted (its last state).
    Deleted(K),
    /// The watch failed and backs off; the view may be stale until the
    /// next change (the watch resumes where it stopped) or list.
    Failed(String),
}

impl<K> From<Result<Event<K>, watcher::Error>> for Change<K> {
    fn from(ev: Result<Event<K>, watcher::Error>) -> Self {
        match ev {
            Ok(Event::Init) => Change::Relisting,
            Ok(Event::InitApply(o)) => Change::Listed(o),
            Ok(Event::InitDone) => Change::Synced,
            Ok(Event::Apply(o)) => Change::Applied(o),
            Ok(Event::Delete(o)) => Change::Deleted(o),
            Err(e) => Change::Failed(e.to_string()),
        }
    }
}

/// Watches `api` (filtered by `config`) and posts `to_msg(change)` to
/// `consumer` for every change, until the consumer is gone. A `None` from
/// `to_msg` drops the change. Errors are logged here (naming `what`) and
/// passed on; the watcher backs off and resumes by itself.
pub fn watch<K, M>(
    what: &'static str,
    api: Api<K>,
    config: watcher::Config,
    registry: std::sync::Arc<ActorRegistry>,
    consumer: ActorRef<M>,
    to_msg: impl Fn(Change<K>) -> Option<M> + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    M: Message,
{
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        while let Some(ev) = stream.next().await {
            let change = Change::from(ev);
            if let Change::Failed(e) = &change {
                tracing::warn!(watch = what, error = %e, "watch error (backing off)");
            }
            if let Some(msg) = to_msg(change)
                && !post(&registry, &consumer, msg)
            {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watcher_events_map_one_to_one() {
        let c: Change<u8> = Ok(Event::Init).into();
        assert!(matches!(c, Change::Relisting));
        let c: Change<u8> = Ok(Event::InitApply(1)).into();
        assert!(matches!(c, Change::Listed(1)));
        let c: Change<u8> = Ok(Event::InitDone).into();
        assert!(matches!(c, Change::Synced));
        let c: Change<u8> = Ok(Event::Apply(2)).into();
        assert!(matches!(c, Change::Applied(2)));
        let c: Change<u8> = Ok(Event::Delete(3)).into();
        assert!(matches!(c, Change::Deleted(3)));
    }
}
