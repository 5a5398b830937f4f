//! The actor tree of kubernetes-executor and the pure logic it runs.
//!
//! Pure, synchronous parts (no I/O): [`catalog`] (actions and validation),
//! [`machine`] (the phase machine), [`status`] (conditions), [`job`] (Job
//! construction), [`duration`]. The actors wrap them: [`supervisor`],
//! [`execution`], [`policy`], [`rbac`], [`job_watcher`]. Only [`kube_api`]
//! talks to the Kubernetes API; only the PolicyActor touches regorus.
#![forbid(unsafe_code)]

pub mod authz;
pub mod catalog;
pub mod context;
pub mod duration;
pub mod execution;
pub mod grants;
pub mod health;
pub mod job;
pub mod job_watcher;
pub mod kill_switch;
pub mod kube_api;
pub mod leader;
pub mod lock;
pub mod lock_watch;
pub mod machine;
pub mod metrics;
pub mod policy;
pub mod rbac;
pub mod request_context;
pub mod status;
pub mod supervisor;
