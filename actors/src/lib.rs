//! The actor tree of kubernetes-executor and the pure logic it runs.
//!
//! Layers, from the bottom (a module only uses modules above it in this
//! list or in its own layer; docs/architecture.md draws it):
//! - pure, no I/O: [`catalog`] (actions and validation), [`machine`] (the
//!   phase machine), [`decide`] (the execution's decisions), [`status`]
//!   (conditions), [`job`] (Job construction), [`lock`], [`leader`],
//!   [`grants`], [`authz`], [`duration`], [`tunables`];
//! - I/O: [`k8s`] — the only module that talks to the Kubernetes API (with
//!   [`k8s::clients`], its HTTP stack), and the one watch loop;
//! - shared state: [`registry`], [`views`], [`access_cache`], [`health`], [`metrics`],
//!   [`peers`], [`context`];
//! - actors: [`policy`] (the only user of regorus), [`rbac`],
//!   [`job_watcher`], [`kill_switch`], [`execution`], [`supervisor`];
//! - the tree: [`tree`] (the root; starts and restarts the singletons).
#![forbid(unsafe_code)]

pub mod access_cache;
pub mod authz;
pub mod catalog;
pub mod context;
pub mod decide;
pub mod duration;
pub mod execution;
pub mod grants;
pub mod health;
pub mod history;
pub mod job;
pub mod job_watcher;
pub mod k8s;
pub mod kill_switch;
pub mod leader;
pub mod lock;
pub mod machine;
pub mod metrics;
pub mod pause;
pub mod peers;
pub mod policy;
pub mod rbac;
pub mod registry;
pub mod status;
pub mod supervisor;
pub mod trace;
pub mod tree;
pub mod tunables;
pub mod views;
