//! Load harness of kubernetes-executor (`ke-loadtest`): creates thousands of
//! synthetic KubernetesExecutions — dry runs, policy denials and real
//! executions of a cheap action — against a cluster with the operator
//! running, times every phase from a watch, measures the API floor at the
//! same concurrency, samples the operator's memory, CPU and live actors, and
//! reports a table, JSON and an SVG chart. See docs/performance.md.
#![forbid(unsafe_code)]

pub mod floor;
pub mod promtext;
pub mod report;
pub mod run;
pub mod sampler;
pub mod stats;
pub mod workload;

pub use report::Report;
pub use run::{Config, OperatorControl, run};
pub use workload::{Kind, Mix};
