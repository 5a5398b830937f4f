//! `ke-loadtest`: see the crate docs and docs/performance.md.
//!
//! Without `--kubeconfig` it starts the local control plane (etcd,
//! kube-apiserver, controllers, the job runner), installs deploy/, and runs
//! the operator binary as its own ServiceAccount; with `--kubeconfig` it
//! loads an existing cluster whose operator is already running.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use kubernetes_executor_loadtest::{Config, Mix, OperatorControl, run};
use kubernetes_executor_testkit::operator::{OPERATOR_NS, OperatorOptions, OperatorProc};
use kubernetes_executor_testkit::{Env, Options, start_env};

/// Load test of kubernetes-executor.
#[derive(Parser, Debug)]
#[command(name = "ke-loadtest")]
struct Args {
    /// Number of executions.
    #[arg(short = 'n', long, default_value_t = 1000)]
    executions: usize,
    /// Executions created per second (0: as fast as the creators go).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Concurrent creators (and API-floor clients).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Shares of the workload kinds.
    #[arg(long, default_value = "dry=60,deny=20,real=20")]
    mix: Mix,
    /// Deployments the dry runs spread over.
    #[arg(long, default_value_t = 20)]
    deployments: usize,
    /// Create every execution before the operator starts, so all are in
    /// flight at once (local operator only).
    #[arg(long)]
    backlog: bool,
    /// Measure the API floor (default: on with the local control plane; on an
    /// external cluster only with this flag, and the operator must be stopped
    /// or it works on the floor's objects too).
    #[arg(long)]
    floor: bool,
    /// Skip the API floor.
    #[arg(long, conflicts_with = "floor")]
    no_floor: bool,
    /// Load an existing cluster (its operator already running) instead of
    /// the local control plane.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// `host:port` of the external operator's /metrics (for API requests,
    /// memory, CPU and live actors).
    #[arg(long)]
    operator_metrics: Option<String>,
    /// Namespace the operator runs its Jobs in.
    #[arg(long, default_value = OPERATOR_NS)]
    operator_namespace: String,
    /// The operator binary for the local control plane (default: next to this binary).
    #[arg(long)]
    operator_binary: Option<PathBuf>,
    /// Repository root (deploy/ and policies/).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))]
    repo: PathBuf,
    /// Where report.json, report.txt and latency.svg go.
    #[arg(long, default_value = "target/loadtest")]
    out: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Seconds to keep watching the operator after the last execution.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Leave the run's namespace behind.
    #[arg(long)]
    keep: bool,
    /// After the run, stop the operator and start a fresh one over the
    /// run's finished executions (kept, with the history limit off):
    /// time to ready and footprint of a cluster with history (local only).
    #[arg(long)]
    restart: bool,
    /// Seconds to sample the restarted operator after it is ready.
    #[arg(long, default_value_t = 10)]
    restart_window: u64,
    /// `RUST_LOG` of the local operator.
    #[arg(long, default_value = "info")]
    operator_log: String,
    /// One more argument for the local operator (repeatable; e.g.
    /// `--operator-arg=--max-concurrent-requests=128` to try a tunable).
    #[arg(long, allow_hyphen_values = true)]
    operator_arg: Vec<String>,
    /// Pin the local operator to the last CPU and the control plane (and
    /// this harness, and the Jobs the job runner starts) to the others, so
    /// operator CPU and server CPU do not compete (needs 2+ CPUs; the
    /// report says what was done).
    #[arg(long)]
    pin: bool,
}

/// CPU sets for `--pin`: (control plane and harness, operator), as
/// `taskset` lists; `None` with fewer than 2 CPUs.
fn pin_sets() -> Option<(String, String)> {
    let cpus = kubernetes_executor_loadtest::report::Machine::detect().cores;
    (cpus >= 2).then(|| {
        let last = cpus - 1;
        let rest = if last == 1 {
            "0".to_string()
        } else {
            format!("0-{}", last - 1)
        };
        (rest, last.to_string())
    })
}

/// Pins every thread of process `pid` to `cpus` (`taskset -a -p -c`).
fn pin(pid: u32, cpus: &str) -> Result<()> {
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .context("taskset (util-linux)")?;
    anyhow::ensure!(
        out.status.success(),
        "taskset -a -p -c {cpus} {pid}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

struct Local<'a> {
    env: &'a Env,
    opts: OperatorOptions,
    proc: Option<OperatorProc>,
    restart_window: Duration,
    /// `--pin`: the operator's CPUs, and what the report says about it.
    pin: Option<String>,
    pinning: String,
}

impl Local<'_> {
    /// Pins a freshly started operator (its threads) when asked.
    fn pin_operator(&mut self) {
        let (Some(cpus), Some(pid)) = (
            self.pin.clone(),
            self.proc.as_ref().and_then(|p| p.proc.pid()),
        ) else {
            return;
        };
        if let Err(e) = pin(pid, &cpus) {
            self.pinning = format!("not pinned: {e}");
            self.pin = None;
        }
    }
}

impl OperatorControl for Local<'_> {
    async fn start(&mut self) -> Result<()> {
        if self.proc.is_none() {
            let op = kubernetes_executor_testkit::operator::spawn_operator(
                self.env,
                &self.opts,
                Duration::from_secs(120),
            )
            .await?;
            self.proc = Some(op);
            self.pin_operator();
        }
        Ok(())
    }
    fn metrics(&self) -> Option<String> {
        self.proc.as_ref().map(|p| p.metrics.clone())
    }
    fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(|p| p.proc.pid())
    }
    fn describe(&self) -> String {
        format!("local {}; {}", self.opts.binary.display(), self.pinning)
    }
    async fn restart(
        &mut self,
        finished: usize,
    ) -> Result<Option<kubernetes_executor_loadtest::report::Restart>> {
        if let Some(mut old) = self.proc.take() {
            old.proc.stop();
        }
        let started = std::time::Instant::now();
        let op = kubernetes_executor_testkit::operator::spawn_operator(
            self.env,
            &self.opts,
            Duration::from_secs(120),
        )
        .await?;
        self.proc = Some(op);
        self.pin_operator();
        let Some(op) = self.proc.as_ref() else {
            return Ok(None);
        };
        let r = kubernetes_executor_loadtest::run::restarted(
            finished,
            started,
            op.metrics.clone(),
            op.proc.pid(),
            self.restart_window,
        )
        .await;
        Ok(Some(r))
    }
}

struct External {
    metrics: Option<String>,
}

impl OperatorControl for External {
    async fn start(&mut self) -> Result<()> {
        Ok(())
    }
    fn metrics(&self) -> Option<String> {
        self.metrics.clone()
    }
    fn describe(&self) -> String {
        format!(
            "external (metrics {})",
            self.metrics.as_deref().unwrap_or("not given")
        )
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let run_id = kubernetes_executor_testkit::unique_name("lt")
        .trim_start_matches("lt-")
        .to_string();
    let mut cfg = Config {
        executions: args.executions,
        rate: args.rate,
        concurrency: args.concurrency,
        mix: args.mix,
        deployments: args.deployments,
        operator_namespace: args.operator_namespace.clone(),
        timeout: Duration::from_secs(args.timeout),
        floor: args.floor,
        backlog: args.backlog,
        settle: Duration::from_secs(args.settle),
        cleanup: !args.keep,
        run_id,
        restart: args.restart,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = match &args.kubeconfig {
        Some(kc) => {
            anyhow::ensure!(
                !args.backlog,
                "--backlog needs the local operator (it starts the operator after creating the executions)"
            );
            let mut op = External {
                metrics: args.operator_metrics.clone(),
            };
            rt.block_on(async {
                let client = kubernetes_executor_testkit::client_from_kubeconfig(kc).await?;
                run(&client, &cfg, &mut op).await
            })?
        }
        None => {
            cfg.floor = !args.no_floor;
            let binary = match &args.operator_binary {
                Some(b) => b.clone(),
                None => std::env::current_exe()?.with_file_name("kubernetes-executor"),
            };
            anyhow::ensure!(
                binary.exists(),
                "operator binary {} not found (build it, or pass --operator-binary)",
                binary.display()
            );
            let repo = args
                .repo
                .canonicalize()
                .with_context(|| format!("repo {}", args.repo.display()))?;
            // Children inherit affinity: pinning this process first puts
            // the control plane (and the job runner's Jobs) on its CPUs.
            let (pin_op, pinning) = match (args.pin, pin_sets()) {
                (false, _) => (None, "not pinned (--pin not given)".to_string()),
                (true, None) => (None, "not pinned: fewer than 2 CPUs".to_string()),
                (true, Some((rest, op))) => match pin(std::process::id(), &rest) {
                    Ok(()) => (
                        Some(op.clone()),
                        format!(
                            "pinned: operator on CPU {op}, control plane + harness + Jobs on CPU {rest}"
                        ),
                    ),
                    Err(e) => (None, format!("not pinned: {e}")),
                },
            };
            eprintln!("loadtest: starting the local control plane");
            let env = start_env(
                Options {
                    kwok_nodes: 0,
                    ..Options::default()
                },
                Some(binary.clone()),
            )?;
            kubernetes_executor_testkit::operator::install(&env, &repo)?;
            let mut op = Local {
                env: &env,
                opts: OperatorOptions {
                    env: Vec::new(),
                    binary,
                    repo,
                    name: "operator".into(),
                    // History clean-up off: a run's executions stay for the
                    // harness to count, and its deletes do not skew the
                    // request counts.
                    extra: ["--finished-history-limit".to_string(), "0".into()]
                        .into_iter()
                        .chain(args.operator_arg.iter().cloned())
                        .collect(),
                    log_filter: args.operator_log.clone(),
                },
                proc: None,
                restart_window: Duration::from_secs(args.restart_window),
                pin: pin_op,
                pinning,
            };
            let report = rt.block_on(async {
                let client = env.client().await?;
                run(&client, &cfg, &mut op).await
            });
            drop(op);
            rt.shutdown_timeout(Duration::from_secs(1));
            drop(env);
            report?
        }
    };
    std::fs::create_dir_all(&args.out)?;
    let table = report.table();
    std::fs::write(args.out.join("report.txt"), &table)?;
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(args.out.join("latency.svg"), report.svg())?;
    println!("{table}");
    println!(
        "wrote {}/report.json, report.txt, latency.svg",
        args.out.display()
    );
    if !report.failures.is_empty() {
        anyhow::bail!("unexpected outcomes: {:?}", report.failures);
    }
    Ok(())
}
