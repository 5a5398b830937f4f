//! How actors address the shared singletons of the tree. A singleton can
//! be restarted by the root at any time, so nobody keeps its `ActorRef`:
//! [`Peers::call`] resolves the registered name on every call, waits (a
//! bounded time) for a restarting singleton to come back, and asks again
//! once if the singleton died while handling the question.

use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

use crate::registry::ActorRegistry;
use crate::tunables::{PEER_RESOLVE_POLL, PEER_RESOLVE_WAIT};

/// The singletons the root keeps alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Singleton {
    /// The PolicyActor (regorus).
    Policy,
    /// The RbacActor (grants and their janitor).
    Rbac,
    /// The JobWatcherActor.
    JobWatcher,
    /// The KillSwitchActor (kill switch and lock views).
    KillSwitch,
    /// The SupervisorActor (the execution watch and one actor per execution).
    Supervisor,
}

impl Singleton {
    /// Every singleton, in start order.
    pub const ALL: [Singleton; 5] = [
        Singleton::Policy,
        Singleton::Rbac,
        Singleton::JobWatcher,
        Singleton::KillSwitch,
        Singleton::Supervisor,
    ];

    /// Kind label (`live_actors{kind}`, `/actors`) and base name.
    pub fn kind(self) -> &'static str {
        match self {
            Singleton::Policy => "policy",
            Singleton::Rbac => "rbac",
            Singleton::JobWatcher => "job-watcher",
            Singleton::KillSwitch => "kill-switch",
            Singleton::Supervisor => "supervisor",
        }
    }

    /// The singleton a kind names.
    pub fn from_kind(kind: &str) -> Option<Singleton> {
        Singleton::ALL.into_iter().find(|s| s.kind() == kind)
    }
}

/// Names of one tree's singletons (a prefix keeps two trees in one test
/// process apart; empty in the operator).
#[derive(Clone, Debug, Default)]
pub struct Peers {
    prefix: String,
}

impl Peers {
    /// Peers whose names start with `prefix`.
    pub fn with_prefix(prefix: &str) -> Peers {
        Peers {
            prefix: prefix.to_string(),
        }
    }

    /// Registered name of a singleton.
    pub fn name(&self, which: Singleton) -> String {
        format!("{}{}", self.prefix, which.kind())
    }

    /// Registered name of the root.
    pub fn root(&self) -> String {
        format!("{}root", self.prefix)
    }

    /// Registered name of an execution's actor (by UID: a name can be 253
    /// characters, longer than a label value, and the Job watcher routes by
    /// the Job's UID label).
    pub fn execution(&self, uid: &str) -> String {
        format!("{}exec/{uid}", self.prefix)
    }

    /// Registered name of an execution's postcondition verifier.
    pub fn verifier(&self, uid: &str) -> String {
        format!("{}verify/{uid}", self.prefix)
    }

    /// The singleton's current reference, waiting up to
    /// [`PEER_RESOLVE_WAIT`] for it while it restarts.
    pub async fn resolve<M: Message>(&self, which: Singleton) -> Option<ActorRef<M>> {
        let name = self.name(which);
        let deadline = Instant::now() + PEER_RESOLVE_WAIT;
        loop {
            if let Some(a) = ActorRef::<M>::where_is(name.clone()) {
                return Some(a);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(PEER_RESOLVE_POLL).await;
        }
    }

    /// Asks a singleton and waits (up to `timeout`) for its answer.
    pub async fn call<M: Message, R: Send + 'static>(
        &self,
        registry: &ActorRegistry,
        which: Singleton,
        ask: impl Fn(RpcReplyPort<R>) -> M,
        timeout: Duration,
    ) -> Result<R, String> {
        let name = self.name(which);
        for attempt in 0..2 {
            let Some(actor) = self.resolve::<M>(which).await else {
                return Err(format!(
                    "{name} is not running (waited {}s for a restart)",
                    PEER_RESOLVE_WAIT.as_secs()
                ));
            };
            registry.sent(&name);
            match actor.call(&ask, Some(timeout)).await {
                Ok(CallResult::Success(r)) => return Ok(r),
                Ok(CallResult::Timeout) => {
                    return Err(format!("{name} did not answer within {timeout:?}"));
                }
                // Died with the question (or before it arrived): once more,
                // to its successor.
                Ok(CallResult::SenderError) | Err(_) if attempt == 0 => {
                    tokio::time::sleep(PEER_RESOLVE_POLL).await;
                }
                Ok(CallResult::SenderError) | Err(_) => {
                    return Err(format!("{name} failed while answering"));
                }
            }
        }
        Err(format!("{name} failed while answering"))
    }

    /// Sends a singleton a message (no answer); false when it is not running.
    pub async fn tell<M: Message>(
        &self,
        registry: &ActorRegistry,
        which: Singleton,
        msg: M,
    ) -> bool {
        match self.resolve::<M>(which).await {
            Some(a) => crate::registry::post(registry, &a, msg),
            None => false,
        }
    }
}
