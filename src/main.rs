//! kubernetes-executor: the operator binary (`run`), the action runner that
//! its Jobs execute (`run-action`), and manifest generators (`crd`, `rbac`).
// `unsafe` only in src/memory.rs: jemalloc's exported options (default build)
// or glibc's `malloc_trim` (system-allocator build) — one item each.
#![deny(unsafe_code)]

mod config;
mod http;
mod leader;
mod manifests;
mod memory;
mod operator;
mod run_action;
mod telemetry;

use clap::Parser;

/// The allocator (docs/performance.md, "Issue 18"): jemalloc by default
/// (configured in `memory.rs`); `--no-default-features` builds the system
/// allocator, `--no-default-features --features mimalloc` mimalloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!("features `mimalloc` and `jemalloc` are alternatives: pick one");

use crate::config::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", kubernetes_executor_crds::crd_yaml());
            Ok(())
        }
        Command::Rbac { namespace } => {
            print!("{}", manifests::rbac_yaml(&namespace)?);
            Ok(())
        }
        Command::Admission { namespace } => {
            print!("{}", manifests::admission_yaml(&namespace)?);
            Ok(())
        }
        Command::PoliciesConfigmap { dir, namespace } => {
            print!("{}", manifests::policies_configmap_yaml(&dir, &namespace)?);
            Ok(())
        }
        Command::Run(args) => runtime()?.block_on(operator::run(args)),
        Command::RunAction(args) => {
            let code = runtime()?.block_on(run_action::traced_main(args));
            std::process::exit(code);
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
