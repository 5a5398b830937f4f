//! kubernetes-executor: the operator binary (`run`), the action runner that
//! its Jobs execute (`run-action`), and manifest generators (`crd`, `rbac`).
// One `unsafe` call in the whole project: `memory::release_free_pages`.
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

/// The allocators under comparison (docs/performance.md, "Memory"): built
/// only with `--features mimalloc` or `--features jemalloc`; the default is
/// the system allocator.
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
