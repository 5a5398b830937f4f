//! Test kit of kubernetes-executor: a real, private Kubernetes control plane
//! built from Go modules (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kwok) plus a job runner that plays the kubelet for the
//! operator's Job pods. See `tests/controlplane/` for how the binaries are
//! built and `docs/testing.md` for how tests use this crate.
#![forbid(unsafe_code)]

pub mod certs;
pub mod controlplane;
pub mod image;
pub mod node;
pub mod operator;
pub mod proc;
pub mod runner;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use controlplane::{ControlPlane, KWOK_TAINT_KEY, Options, client_from_kubeconfig};
pub use proc::Proc;
pub use runner::{JobRunner, RunnerConfig, eventually};

/// A multi-threaded runtime that lives as long as the test binary; the shared
/// control plane's background tasks (the job runner) run on it.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ke-testkit")
            .enable_all()
            .build()
            .expect("build testkit runtime")
    })
}

/// Runs `fut` to completion on [`runtime()`] from any context (including
/// inside another runtime), on a helper thread.
pub fn block_on_testkit<F, T>(fut: F) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || runtime().block_on(fut))
        .join()
        .expect("testkit thread panicked")
}

/// The control plane shared by every test of this test binary, started on
/// first use with kwok nodes and a job runner for `binary` (the
/// `kubernetes-executor` executable, when the tests run the operator).
pub struct Env {
    /// The control plane.
    pub cp: ControlPlane,
    _runner: Option<JobRunner>,
}

impl std::ops::Deref for Env {
    type Target = ControlPlane;
    fn deref(&self) -> &ControlPlane {
        &self.cp
    }
}

/// Name of the node the job runner serves.
pub const RUNNER_NODE: &str = "ke-job-runner";

/// Starts a control plane and, when `binary` is given, a job runner executing
/// that binary for `run-action` pods, on the testkit runtime.
pub fn start_env(opts: Options, binary: Option<PathBuf>) -> anyhow::Result<Env> {
    block_on_testkit(async move {
        let cp = ControlPlane::start(opts).await?;
        let runner = match binary {
            Some(binary) => Some(
                JobRunner::start(
                    cp.client().await?,
                    RunnerConfig {
                        node: RUNNER_NODE.to_string(),
                        binary,
                        server: cp.server().to_string(),
                        ca_cert: cp.ca_cert().to_path_buf(),
                        work_dir: cp.dir().join("runner"),
                    },
                )
                .await?,
            ),
            None => None,
        };
        Ok(Env {
            cp,
            _runner: runner,
        })
    })
}

/// The per-test-binary shared environment (see [`start_env`]); panics with
/// the control plane's logs when it cannot start.
pub fn shared(binary: Option<&Path>) -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let opts = Options {
            kwok_nodes: 2,
            ..Options::default()
        };
        match start_env(opts, binary.map(Path::to_path_buf)) {
            Ok(env) => env,
            Err(e) => panic!("test control plane failed to start: {e:#}"),
        }
    })
}

/// The build cache outside the clone (`$KE_CACHE_DIR`, else
/// `~/.cache/kubernetes-executor`), as tests/controlplane/build.sh uses it.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("KE_CACHE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
            .join(".cache/kubernetes-executor"),
    }
}

/// A unique, DNS-safe name with the given prefix (for per-test namespaces).
pub fn unique_name(prefix: &str) -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random();
    format!("{prefix}-{n:08x}")
}
