//! `ke-cluster`: runs the test control plane in the foreground for
//! `make cluster-up` (kwok nodes, and the job runner when `--runner-binary`
//! is given) until SIGTERM or SIGINT. `--real-node` adds a real node
//! (containerd, runc, kubelet, kube-proxy; needs root) with the images of
//! every `--image-archive` imported (see `testkit::node`). Writes the admin kubeconfig to
//! `<dir>/kubeconfig` and creates `<dir>/ready` once everything is up.

use std::path::PathBuf;

use anyhow::Result;
use kubernetes_executor_testkit::{Options, start_env};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(arg(&args, "--dir").unwrap_or_else(|| "target/cluster".into()));
    let nodes: usize = arg(&args, "--nodes")
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(2);
    let runner = arg(&args, "--runner-binary").map(PathBuf::from);
    let real_node = args.iter().any(|a| a == "--real-node").then(|| {
        args.windows(2)
            .filter(|w| w[0] == "--image-archive")
            .map(|w| PathBuf::from(&w[1]))
            .collect::<Vec<_>>()
    });
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let _ = std::fs::remove_file(dir.join("ready"));
    let env = start_env(
        Options {
            kwok_nodes: nodes,
            state_dir: Some(dir.join("state")),
            real_node,
            ..Options::default()
        },
        runner,
    )?;
    std::fs::copy(env.kubeconfig(), dir.join("kubeconfig"))?;
    std::fs::write(dir.join("ready"), env.server())?;
    eprintln!(
        "control plane up at {} (kubeconfig {})",
        env.server(),
        dir.join("kubeconfig").display()
    );
    kubernetes_executor_testkit::block_on_testkit(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    eprintln!("stopping control plane");
    let _ = std::fs::remove_file(dir.join("ready"));
    drop(env);
    Ok(())
}
