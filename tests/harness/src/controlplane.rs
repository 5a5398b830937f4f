//! A private Kubernetes control plane on loopback: etcd, kube-apiserver
//! (RBAC on, TLS, service-account issuer), kube-controller-manager (job,
//! garbage collector, TTL, namespace, service account, deployment, replica
//! set, disruption controllers), kube-scheduler and kwok with fake nodes.
//! Everything runs in a temp dir on free ports and stops on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use crate::certs::Pki;
use crate::node::{NodeConfig, RealNode};
use crate::proc::Proc;

/// Taint carried by every kwok node; test workloads meant for kwok tolerate it.
pub const KWOK_TAINT_KEY: &str = "kwok.x-k8s.io/node";
/// Annotation that makes kwok manage a node.
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// What to start besides etcd and the API server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Start kube-controller-manager.
    pub controller_manager: bool,
    /// Start kube-scheduler.
    pub scheduler: bool,
    /// Number of kwok fake nodes (0: kwok is not started).
    pub kwok_nodes: usize,
    /// Keep the state directory at this path instead of a temp dir.
    pub state_dir: Option<PathBuf>,
    /// Start a real node (containerd, runc, kubelet, kube-proxy; needs root)
    /// with these image archives imported (see [`crate::node`]).
    pub real_node: Option<Vec<PathBuf>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            controller_manager: true,
            scheduler: true,
            kwok_nodes: 1,
            state_dir: None,
            real_node: None,
        }
    }
}

/// A running control plane. Dropping it stops every process.
pub struct ControlPlane {
    _tmp: Option<tempfile::TempDir>,
    temp_state: bool,
    dir: PathBuf,
    bin_dir: PathBuf,
    server: String,
    kubeconfig: PathBuf,
    pki: Pki,
    procs: Mutex<Vec<Proc>>,
    node: Mutex<Option<RealNode>>,
}

/// Name of the real node, when one is started.
pub const REAL_NODE: &str = "ke-node";

/// Finds (building if needed) the control-plane binaries: `$KE_CONTROLPLANE_BIN`
/// or the output of `tests/controlplane/build.sh`.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KE_CONTROLPLANE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../controlplane/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text.lines().last().unwrap_or_default().trim().to_string();
    Ok(PathBuf::from(dir))
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn s(v: impl Into<String>) -> String {
    v.into()
}

impl ControlPlane {
    /// Starts a control plane and waits until it serves and its nodes are Ready.
    pub async fn start(opts: Options) -> Result<ControlPlane> {
        let bin_dir = bin_dir()?;
        let (tmp, dir) = match &opts.state_dir {
            Some(d) => {
                let _ = std::fs::remove_dir_all(d);
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("ke-controlplane-")
                    .tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let mut last_err = None;
        // A port picked as free can be taken before the process binds it
        // (and kwok 0.7 sometimes dies of a concurrent map write at start);
        // try a few times with fresh ports. A failed attempt's etcd watchdog
        // removes a temporary state dir: each attempt recreates it.
        for _ in 0..3 {
            std::fs::create_dir_all(&dir)?;
            let pki = Pki::write(&dir.join("pki"))?;
            let mut cp = ControlPlane {
                _tmp: None,
                temp_state: tmp.is_some(),
                dir: dir.clone(),
                bin_dir: bin_dir.clone(),
                server: String::new(),
                kubeconfig: dir.join("admin.kubeconfig"),
                pki,
                procs: Mutex::new(Vec::new()),
                node: Mutex::new(None),
            };
            match cp.boot(&opts).await {
                Ok(()) => {
                    cp._tmp = tmp;
                    return Ok(cp);
                }
                Err(e) => {
                    eprintln!("control plane start failed, retrying: {e:#}");
                    cp.print_logs();
                    cp.stop();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("control plane did not start")))
    }

    async fn boot(&mut self, opts: &Options) -> Result<()> {
        let logs = self.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let etcd_dir = self.dir.join("etcd");
        let _ = std::fs::remove_dir_all(&etcd_dir);
        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        self.server = format!("https://127.0.0.1:{api_port}");
        write_kubeconfig(
            &self.kubeconfig,
            &self.server,
            &self.pki.ca_cert,
            Credentials::Cert(&self.pki.admin_cert, &self.pki.admin_key),
        )?;

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        self.spawn(
            "etcd",
            vec![
                s("--name=default"),
                format!("--data-dir={}", etcd_dir.display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                s("--unsafe-no-fsync=true"),
                s("--quota-backend-bytes=4294967296"),
                s("--log-level=warn"),
            ],
        )?;
        let pki = &self.pki;
        // With a real node, pods reach the API server through the
        // `kubernetes` Service: it listens on the host's address too and
        // keeps that Service's endpoints; it calls the kubelet for logs.
        let host_ip = match opts.real_node {
            Some(_) => Some(crate::node::host_ip()?),
            None => None,
        };
        let network: Vec<String> = match &host_ip {
            Some(ip) => vec![
                s("--bind-address=0.0.0.0"),
                format!("--advertise-address={ip}"),
                s("--endpoint-reconciler-type=lease"),
                format!("--kubelet-client-certificate={}", pki.admin_cert.display()),
                format!("--kubelet-client-key={}", pki.admin_key.display()),
                format!("--kubelet-certificate-authority={}", pki.ca_cert.display()),
                s("--kubelet-preferred-address-types=InternalIP"),
            ],
            None => vec![
                s("--bind-address=127.0.0.1"),
                s("--advertise-address=127.0.0.1"),
                s("--endpoint-reconciler-type=none"),
            ],
        };
        // Audit of Jobs and executions with request bodies: tests read who
        // did what, and that no secret value ever travels in a request.
        let audit_policy = self.dir.join("audit-policy.yaml");
        std::fs::write(
            &audit_policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Request\n  resources:\n  - group: batch\n    resources: [jobs]\n  - group: kubernetesexecution.kubernaut.io\n- level: None\n",
        )?;
        let mut apiserver_args = network;
        apiserver_args.extend(vec![
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", self.audit_log().display()),
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", self.dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", pki.server_cert.display()),
            format!("--tls-private-key-file={}", pki.server_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            s("--authorization-mode=Node,RBAC"),
            s("--service-account-issuer=https://kubernetes.default.svc.cluster.local"),
            format!("--service-account-key-file={}", pki.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ),
            s("--service-cluster-ip-range=10.0.0.0/24"),
            s("--allow-privileged=true"),
            s("--profiling=false"),
            s("--max-requests-inflight=2000"),
            s("--max-mutating-requests-inflight=1000"),
            s("--v=0"),
        ]);
        self.spawn("kube-apiserver", apiserver_args)?;
        let client = self.wait_ready(Duration::from_secs(120)).await?;

        let kc = self.kubeconfig.display().to_string();
        if opts.controller_manager {
            let port = free_port()?;
            // A real node also needs Services' endpoints (kube-proxy), the
            // kube-root-ca.crt ConfigMap (projected token volumes) and the
            // node lifecycle controller (it lifts the not-ready taint).
            let mut controllers = s(
                "job,garbagecollector,ttl-after-finished,namespace,serviceaccount,deployment,replicaset,disruption,daemonset",
            );
            if opts.real_node.is_some() {
                controllers.push_str(",endpointslice-controller,root-ca-certificate-publisher-controller,node-lifecycle-controller");
            }
            self.spawn(
                "kube-controller-manager",
                vec![
                    format!("--kubeconfig={kc}"),
                    format!("--authentication-kubeconfig={kc}"),
                    format!("--authorization-kubeconfig={kc}"),
                    format!("--controllers={controllers}"),
                    s("--leader-elect=false"),
                    format!("--secure-port={port}"),
                    s("--bind-address=127.0.0.1"),
                    format!("--root-ca-file={}", pki.ca_cert.display()),
                    s("--kube-api-qps=500"),
                    s("--kube-api-burst=1000"),
                    s("--concurrent-job-syncs=20"),
                    s("--concurrent-gc-syncs=20"),
                ],
            )?;
        }
        if opts.scheduler {
            let port = free_port()?;
            self.spawn(
                "kube-scheduler",
                vec![
                    format!("--kubeconfig={kc}"),
                    format!("--authentication-kubeconfig={kc}"),
                    format!("--authorization-kubeconfig={kc}"),
                    s("--leader-elect=false"),
                    format!("--secure-port={port}"),
                    s("--bind-address=127.0.0.1"),
                ],
            )?;
        }
        if opts.kwok_nodes > 0 {
            let stages =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../controlplane/kwok-stages.yaml");
            let port = free_port()?;
            self.spawn(
                "kwok",
                vec![
                    format!("--kubeconfig={kc}"),
                    format!("--config={}", stages.display()),
                    s("--manage-all-nodes=false"),
                    format!("--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake"),
                    s("--cidr=10.244.0.1/16"),
                    s("--node-ip=10.240.0.1"),
                    format!("--server-address=127.0.0.1:{port}"),
                ],
            )?;
            for i in 0..opts.kwok_nodes {
                create_ready_node(&client, &format!("kwok-node-{i}"), true).await?;
            }
            self.wait_nodes_ready(&client, opts.kwok_nodes, Duration::from_secs(60))
                .await?;
        }
        if let (Some(images), Some(ip)) = (&opts.real_node, host_ip) {
            let node = RealNode::start(NodeConfig {
                name: REAL_NODE.into(),
                dir: &self.dir,
                bin_dir: &self.bin_dir,
                pki: &self.pki,
                server: &self.server,
                host_ip: ip,
                images: images.clone(),
            })?;
            *self.node.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(node);
            let nodes: Api<Node> = Api::all(client.clone());
            self.poll("the real node Ready", Duration::from_secs(120), || async {
                Ok(nodes
                    .get_opt(REAL_NODE)
                    .await?
                    .as_ref()
                    .is_some_and(node_ready))
            })
            .await?;
        }
        if opts.controller_manager {
            // The serviceaccount controller creates `default` in every namespace;
            // wait for it so pods can be admitted.
            let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
            self.poll(
                "default ServiceAccount",
                Duration::from_secs(60),
                || async { Ok(sas.get_opt("default").await?.is_some()) },
            )
            .await?;
        }
        Ok(())
    }

    fn spawn(&self, name: &str, args: Vec<String>) -> Result<()> {
        let program = self.bin_dir.join(name);
        // etcd stops last; when it is gone its watchdog removes a temp state
        // dir, so even a control plane that is never dropped (a static shared
        // by a test binary) leaves nothing behind.
        let env = match (name, &self.temp_state) {
            ("etcd", true) => vec![("KE_CLEANUP_DIR".to_string(), self.dir.display().to_string())],
            _ => vec![],
        };
        let p = Proc::spawn(name, &program, &args, &env, &self.dir.join("logs"))?;
        self.procs
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(p);
        Ok(())
    }

    /// Fails if a control-plane process has exited.
    pub fn check_alive(&self) -> Result<()> {
        let mut procs = self.procs.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        for p in procs.iter_mut() {
            if let Some(code) = p.exited() {
                bail!("{} exited with {code}:\n{}", p.name(), p.log_tail(4000));
            }
        }
        Ok(())
    }

    async fn poll<F, Fut>(&self, what: &str, timeout: Duration, mut f: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            self.check_alive()?;
            match f().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() > deadline {
                bail!("timed out after {timeout:?} waiting for {what} (last error: {last})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<Client> {
        let client = self.client().await?;
        self.poll("kube-apiserver /readyz", timeout, || {
            let client = client.clone();
            async move {
                let req = http::Request::get("/readyz").body(Vec::new())?;
                Ok(client.request_text(req).await?.trim() == "ok")
            }
        })
        .await?;
        Ok(client)
    }

    async fn wait_nodes_ready(&self, client: &Client, n: usize, timeout: Duration) -> Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        self.poll("kwok nodes Ready", timeout, || async {
            let list = nodes.list(&Default::default()).await?;
            let ready = list.items.iter().filter(|n| node_ready(n)).count();
            Ok(ready >= n)
        })
        .await
    }

    /// A new admin client (cluster-admin via `system:masters`). Make one per
    /// tokio runtime: a client's connections live on the runtime that made it.
    pub async fn client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// The API server URL (`https://127.0.0.1:<port>`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA certificate that signed the API server's serving cert.
    pub fn ca_cert(&self) -> &Path {
        &self.pki.ca_cert
    }

    /// The directory holding the binaries (kubectl among them).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The API server's audit log (JSON lines; Jobs and executions, metadata level).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("logs").join("audit.log")
    }

    /// The state directory (logs under `logs/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a kubeconfig that authenticates with `token` (e.g. a
    /// TokenRequest token of a ServiceAccount).
    pub fn write_token_kubeconfig(&self, path: &Path, token: &str) -> Result<()> {
        write_token_kubeconfig(path, &self.server, &self.pki.ca_cert, token)
    }

    /// Prints the tail of every process log to stderr.
    pub fn print_logs(&self) {
        self.with_node(|n| n.print_logs());
        if let Ok(procs) = self.procs.lock() {
            for p in procs.iter() {
                eprintln!(
                    "----- {} ({}) -----\n{}",
                    p.name(),
                    p.log_path().display(),
                    p.log_tail(6000)
                );
            }
        }
    }

    /// Runs `f` with the real node, if one was started.
    pub fn with_node<T>(&self, f: impl FnOnce(&RealNode) -> T) -> Option<T> {
        self.node.lock().ok()?.as_ref().map(f)
    }

    /// Stops every process (also done on drop).
    pub fn stop(&self) {
        // The node before the API server it reports to.
        if let Ok(mut node) = self.node.lock()
            && let Some(mut n) = node.take()
        {
            n.stop();
        }
        if let Ok(mut procs) = self.procs.lock() {
            // Reverse start order: kwok and controllers before the API server,
            // the API server before etcd.
            while let Some(mut p) = procs.pop() {
                p.stop();
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        self.stop();
    }
}

/// Whether a node reports Ready=True.
pub fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Registers a node. A kwok node carries the kwok annotation and taint (kwok
/// makes it Ready); otherwise the caller plays its kubelet. The not-ready
/// taint that admission adds on create is removed, as the node lifecycle
/// controller (not run here) would.
pub async fn create_ready_node(client: &Client, name: &str, kwok: bool) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": if kwok { "kwok" } else { "job-runner" },
            },
        },
    });
    let taints = if kwok {
        node["metadata"]["annotations"] = json!({ KWOK_NODE_ANNOTATION: "fake" });
        json!([{ "key": KWOK_TAINT_KEY, "value": "fake", "effect": "NoSchedule" }])
    } else {
        json!([])
    };
    let node: Node = serde_json::from_value(node)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "taints": taints } })),
        )
        .await?;
    Ok(())
}

enum Credentials<'a> {
    Cert(&'a Path, &'a Path),
    Token(&'a str),
}

fn write_kubeconfig(path: &Path, server: &str, ca: &Path, creds: Credentials<'_>) -> Result<()> {
    let user = match creds {
        Credentials::Cert(cert, key) => json!({
            "client-certificate": cert.display().to_string(),
            "client-key": key.display().to_string(),
        }),
        Credentials::Token(t) => json!({ "token": t }),
    };
    let kc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "ke-test", "cluster": {
            "server": server,
            "certificate-authority": ca.display().to_string(),
        }}],
        "users": [{ "name": "ke-test-user", "user": user }],
        "contexts": [{ "name": "ke-test", "context": { "cluster": "ke-test", "user": "ke-test-user" } }],
        "current-context": "ke-test",
    });
    std::fs::write(path, serde_yaml::to_string(&kc)?)
        .with_context(|| format!("write {}", path.display()))
}

/// Writes a kubeconfig for `server` that authenticates with a bearer token.
pub fn write_token_kubeconfig(path: &Path, server: &str, ca: &Path, token: &str) -> Result<()> {
    write_kubeconfig(path, server, ca, Credentials::Token(token))
}

/// Writes a kubeconfig authenticating with a client certificate.
pub fn write_cert_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<()> {
    write_kubeconfig(path, server, ca, Credentials::Cert(cert, key))
}

/// Builds a client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path)?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    config.read_timeout = Some(Duration::from_secs(300));
    Ok(Client::try_from(config)?)
}
