//! A real node for the test control plane: containerd and runc (Debian's
//! packages), the CNI bridge, host-local and portmap plugins (Debian's
//! `containernetworking-plugins`), and kubelet and kube-proxy built from the
//! same Kubernetes modules as the API server. Pods get their own network
//! (bridge `ke-cni0`, 10.89.0.0/16) and reach Services, the API server's
//! among them, through kube-proxy's iptables rules — what a kind node has,
//! without Docker. Images come from OCI archives imported into containerd
//! (no registry is reachable); the pause image is built from `pause.c`.
//!
//! Needs root. Two facts of these machines shape the configuration:
//! a negative `oom_score_adj` is not permitted (containerd's
//! `restrict_oom_score_adj`), and the cgroup hierarchy is v1 (kubelet's
//! `failCgroupV1: false`, cgroupfs driver: containerd 1.6 does not report
//! one, kubelet 1.36 falls back to its own setting).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::certs::{Pki, Usage};
use crate::controlplane::write_cert_kubeconfig;
use crate::proc::Proc;

/// Bridge the node's pods are attached to.
pub const BRIDGE: &str = "ke-cni0";
/// The pods' network.
pub const POD_CIDR: &str = "10.89.0.0/16";
/// Name of the pause image inside the node.
pub const PAUSE_IMAGE: &str = "docker.io/library/ke-pause:1";

const CNI_BIN: &str = "/usr/lib/cni";
const PACKAGES: &str = "containerd runc containernetworking-plugins iptables gcc";

/// What is needed on the host, or why it cannot run here.
pub fn check_host() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        bail!(
            "the real node needs root (containerd, runc, network namespaces); running as uid {euid}"
        );
    }
    let mut missing = Vec::new();
    for tool in [
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "runc",
        "iptables",
        "gcc",
    ] {
        if which(tool).is_none() {
            missing.push(tool.to_string());
        }
    }
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        if !Path::new(CNI_BIN).join(plugin).exists() {
            missing.push(format!("{CNI_BIN}/{plugin}"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "the real node needs {} (apt-get install {PACKAGES})",
            missing.join(", ")
        );
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// The host's address on its default route: the node's InternalIP, where
/// the API server is advertised to pods (through the `kubernetes` Service).
pub fn host_ip() -> Result<String> {
    let out = Command::new("ip")
        .args(["-4", "route", "get", "1.1.1.1"])
        .output()
        .context("ip route get")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src" {
            return words
                .next()
                .map(str::to_string)
                .context("no address after src");
        }
    }
    bail!("no source address for the default route ({text:?}): the real node needs one")
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Removes an iptables chain and every rule that jumps to it.
fn remove_chain(table: &str, chain: &str) {
    let Ok(rules) = run("iptables", &["-t", table, "-S"]) else {
        return;
    };
    let jump = format!("-j {chain}");
    for rule in rules
        .lines()
        .filter(|r| r.starts_with("-A ") && r.ends_with(&jump))
    {
        let words = shell_words(rule.trim_start_matches("-A "));
        let mut args = vec!["-t", table, "-D"];
        args.extend(words.iter().map(String::as_str));
        let _ = run("iptables", &args);
    }
    let _ = run("iptables", &["-t", table, "-F", chain]);
    let _ = run("iptables", &["-t", table, "-X", chain]);
}

/// Splits an `iptables -S` rule into words (double quotes group).
fn shell_words(rule: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = rule.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' if quoted => cur.extend(chars.next()),
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(ch),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Builds (once, cached) the static pause binary and its image archive.
pub fn pause_archive() -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../controlplane/node");
    let cache = crate::cache_dir().join("node");
    std::fs::create_dir_all(&cache)?;
    let source = std::fs::read(src.join("pause.c"))?;
    let stamp = {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(&source)[..8])
    };
    let dir = cache.join(format!("pause-{stamp}"));
    let archive = dir.join("pause.oci.tar");
    if archive.exists() {
        return Ok(archive);
    }
    // Built in a private dir, then renamed into place: concurrent callers
    // each build, the first rename wins, the others use its result.
    let work = tempfile::Builder::new()
        .prefix(".pause-")
        .tempdir_in(&cache)?;
    run(
        "gcc",
        &[
            "-static",
            "-Os",
            "-s",
            "-o",
            &work.path().join("pause").display().to_string(),
            &src.join("pause.c").display().to_string(),
        ],
    )?;
    let stage =
        crate::image::parse_dockerfile(&std::fs::read_to_string(src.join("Dockerfile.pause"))?)?;
    let sources = crate::image::Sources {
        context: work.path().to_path_buf(),
        maps: vec![],
    };
    crate::image::write_archive(
        &stage,
        &sources,
        PAUSE_IMAGE,
        &work.path().join("pause.oci.tar"),
    )?;
    let built = work.keep();
    if std::fs::rename(&built, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&built);
    }
    anyhow::ensure!(archive.exists(), "{} was not built", archive.display());
    Ok(archive)
}

/// Where the node runs and what it talks to.
pub struct NodeConfig<'a> {
    pub name: String,
    /// The control plane's state dir; the node lives in `<dir>/node`.
    pub dir: &'a Path,
    pub bin_dir: &'a Path,
    pub pki: &'a Pki,
    /// The API server as the node's agents reach it (loopback).
    pub server: &'a str,
    pub host_ip: String,
    /// Image archives to import besides the pause image.
    pub images: Vec<PathBuf>,
}

/// A running real node. [`RealNode::stop`] (also on drop) removes every
/// container, mount, network namespace, bridge and iptables rule it made.
pub struct RealNode {
    name: String,
    dir: PathBuf,
    socket: PathBuf,
    kube_proxy: PathBuf,
    procs: Vec<Proc>,
}

impl RealNode {
    /// Starts containerd, imports the images, starts kubelet and
    /// kube-proxy. The caller waits for the Node to become Ready.
    pub fn start(cfg: NodeConfig<'_>) -> Result<RealNode> {
        check_host()?;
        let dir = cfg.dir.join("node");
        let logs = cfg.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        for d in ["containerd", "cni/net.d", "cni/ipam", "kubelet"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let kube_proxy = cfg.bin_dir.join("kube-proxy");
        let proxy_config = dir.join("kube-proxy.yaml");
        let mut node = RealNode {
            name: cfg.name.clone(),
            socket: dir.join("containerd.sock"),
            dir: dir.clone(),
            kube_proxy: kube_proxy.clone(),
            procs: Vec::new(),
        };
        // What a crashed earlier run may have left: its rules and bridge.
        node.clean_network();

        std::fs::write(
            dir.join("cni/net.d/10-ke-pods.conflist"),
            serde_json::to_string_pretty(&serde_json::json!({
                "cniVersion": "1.0.0",
                "name": "ke-pods",
                "plugins": [
                    { "type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": true,
                      "hairpinMode": true,
                      "ipam": { "type": "host-local", "dataDir": dir.join("cni/ipam"),
                                "ranges": [[{ "subnet": POD_CIDR }]],
                                "routes": [{ "dst": "0.0.0.0/0" }] } },
                    { "type": "portmap", "capabilities": { "portMappings": true } },
                ],
            }))?,
        )?;
        let ctd = dir.join("containerd");
        std::fs::write(
            dir.join("containerd.toml"),
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # A negative oom_score_adj is not permitted on these machines.
  restrict_oom_score_adj = true
  # Pods' network namespaces under the state dir, so stopping removes them.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni}"
"#,
                root = ctd.join("root").display(),
                state = ctd.join("state").display(),
                socket = node.socket.display(),
                cni = dir.join("cni/net.d").display(),
            ),
        )?;
        let containerd = which("containerd").context("containerd")?;
        node.procs.push(Proc::spawn(
            "containerd",
            &containerd,
            &[format!(
                "--config={}",
                dir.join("containerd.toml").display()
            )],
            &[],
            &logs,
        )?);
        node.wait("containerd's socket", Duration::from_secs(30), |n| {
            n.ctr(&["version"]).is_ok()
        })?;
        let mut images = vec![pause_archive()?];
        images.extend(cfg.images.iter().cloned());
        for archive in &images {
            node.ctr(&["images", "import", &archive.display().to_string()])
                .with_context(|| format!("importing {}", archive.display()))?;
        }

        // Credentials: the kubelet as system:node:<name> (Node authorizer),
        // its serving cert for the API server's log/exec calls, kube-proxy
        // as system:kube-proxy (bound to system:node-proxier by default).
        let (node_crt, node_key) = cfg.pki.issue(
            "node-client",
            Usage::Client {
                cn: format!("system:node:{}", cfg.name),
                groups: vec!["system:nodes".into()],
            },
        )?;
        let (serving_crt, serving_key) = cfg.pki.issue(
            "kubelet-serving",
            Usage::Server {
                cn: cfg.name.clone(),
                sans: vec![cfg.name.clone(), cfg.host_ip.clone(), "127.0.0.1".into()],
            },
        )?;
        let (proxy_crt, proxy_key) = cfg.pki.issue(
            "kube-proxy",
            Usage::Client {
                cn: "system:kube-proxy".into(),
                groups: vec![],
            },
        )?;
        write_cert_kubeconfig(
            &dir.join("kubelet.kubeconfig"),
            cfg.server,
            &cfg.pki.ca_cert,
            &node_crt,
            &node_key,
        )?;
        write_cert_kubeconfig(
            &dir.join("kube-proxy.kubeconfig"),
            cfg.server,
            &cfg.pki.ca_cert,
            &proxy_crt,
            &proxy_key,
        )?;
        let (port, healthz) = (
            crate::controlplane::free_port()?,
            crate::controlplane::free_port()?,
        );
        std::fs::write(
            dir.join("kubelet.yaml"),
            format!(
                r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{socket}
address: {ip}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization:
  mode: Webhook
tlsCertFile: {serving_crt}
tlsPrivateKeyFile: {serving_key}
failSwapOn: false
resolvConf: /etc/resolv.conf
podLogsDir: {logs}
serializeImagePulls: false
# The images are imported, never pulled: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"}}
"#,
                socket = node.socket.display(),
                logs = dir.join("pod-logs").display(),
                ip = cfg.host_ip,
                ca = cfg.pki.ca_cert.display(),
                serving_crt = serving_crt.display(),
                serving_key = serving_key.display(),
            ),
        )?;
        node.procs.push(Proc::spawn(
            "kubelet",
            &cfg.bin_dir.join("kubelet"),
            &[
                format!("--config={}", dir.join("kubelet.yaml").display()),
                format!("--kubeconfig={}", dir.join("kubelet.kubeconfig").display()),
                format!("--root-dir={}", dir.join("kubelet").display()),
                format!("--hostname-override={}", cfg.name),
                format!("--node-ip={}", cfg.host_ip),
                "--v=1".into(),
            ],
            &[],
            &logs,
        )?);
        std::fs::write(
            &proxy_config,
            format!(
                r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kc}}}
mode: iptables
clusterCIDR: {POD_CIDR}
hostnameOverride: {name}
nodePortAddresses: [primary]
metricsBindAddress: 127.0.0.1:{metrics}
healthzBindAddress: 127.0.0.1:{health}
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"#,
                kc = dir.join("kube-proxy.kubeconfig").display(),
                name = cfg.name,
                metrics = crate::controlplane::free_port()?,
                health = crate::controlplane::free_port()?,
            ),
        )?;
        node.procs.push(Proc::spawn(
            "kube-proxy",
            &kube_proxy,
            &[format!("--config={}", proxy_config.display())],
            &[],
            &logs,
        )?);
        Ok(node)
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The containerd socket (for `ctr -a`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs `ctr` against the node's containerd in the kubelet's namespace.
    pub fn ctr(&self, args: &[&str]) -> Result<String> {
        let socket = self.socket.display().to_string();
        let mut all = vec!["-a", &socket, "-n", "k8s.io"];
        all.extend_from_slice(args);
        run("ctr", &all)
    }

    fn wait(&self, what: &str, timeout: Duration, ok: impl Fn(&Self) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ok(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("{what} not ready after {timeout:?}")
    }

    /// The agents' logs (kubelet, containerd, kube-proxy), last bytes each.
    pub fn print_logs(&self) {
        for p in &self.procs {
            eprintln!(
                "----- {} ({}) -----\n{}",
                p.name(),
                p.log_path().display(),
                p.log_tail(6000)
            );
        }
    }

    fn clean_network(&self) {
        if self.kube_proxy.exists() {
            let _ = Command::new(&self.kube_proxy).arg("--cleanup").output();
        }
        let _ = Command::new("ip").args(["link", "delete", BRIDGE]).output();
        // The kubelet's own chains (it recreates them when it starts).
        for table in ["nat", "filter", "mangle"] {
            remove_chain(table, "KUBE-KUBELET-CANARY");
        }
        remove_chain("filter", "KUBE-FIREWALL");
        // The bridge plugin's masquerade rules of pods that were never torn
        // down by CNI DEL (their chains are named in a comment with the
        // network's name).
        if let Ok(rules) = run("iptables", &["-t", "nat", "-S", "POSTROUTING"]) {
            for rule in rules.lines().filter(|r| r.contains("ke-pods")) {
                let words = shell_words(rule.trim_start_matches("-A "));
                let mut args = vec!["-t", "nat", "-D"];
                args.extend(words.iter().map(String::as_str));
                let _ = run("iptables", &args);
                if let Some(chain) = words.iter().skip_while(|w| *w != "-j").nth(1)
                    && chain.starts_with("CNI-")
                {
                    let _ = run("iptables", &["-t", "nat", "-F", chain]);
                    let _ = run("iptables", &["-t", "nat", "-X", chain]);
                }
            }
        }
    }

    /// Stops the kubelet, then every container it started, then containerd
    /// and kube-proxy, and removes what they left on the host.
    pub fn stop(&mut self) {
        // kubelet first, so it does not restart what is removed below.
        if let Some(i) = self.procs.iter().position(|p| p.name() == "kubelet") {
            self.procs[i].stop();
        }
        if let Ok(tasks) = self.ctr(&["tasks", "list", "-q"]) {
            for id in tasks.lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            }
            std::thread::sleep(Duration::from_millis(500));
            for id in tasks.lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["tasks", "delete", "-f", id]);
            }
        }
        if let Ok(containers) = self.ctr(&["containers", "list", "-q"]) {
            for id in containers.lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["containers", "delete", id]);
            }
        }
        while let Some(mut p) = self.procs.pop() {
            p.stop();
        }
        // Shims outlive containerd by design; ours are the ones given our
        // socket.
        let socket = self.socket.display().to_string();
        if let Ok(out) = run("pgrep", &["-f", &format!("containerd-shim.*{socket}")]) {
            for pid in out.split_whitespace() {
                let _ = run("kill", &["-KILL", pid]);
            }
        }
        // Mounts below the node dir (rootfs overlays, volumes, network
        // namespaces), deepest first.
        let dir = self.dir.display().to_string();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(4))
                .filter(|p| p.starts_with(&dir))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").args(["-l", p]).output();
            }
        }
        // The kubelet's links to container logs (a fixed host directory)
        // that point into the node dir.
        if let Ok(links) = std::fs::read_dir("/var/log/containers") {
            for link in links.flatten() {
                if std::fs::read_link(link.path()).is_ok_and(|t| t.starts_with(&self.dir)) {
                    let _ = std::fs::remove_file(link.path());
                }
            }
        }
        self.clean_network();
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_rules_split_like_a_shell() {
        assert_eq!(
            shell_words(
                r#"POSTROUTING -s 10.89.0.5/32 -m comment --comment "name: \"ke-pods\" id: \"ab\"" -j CNI-1f"#
            ),
            [
                "POSTROUTING",
                "-s",
                "10.89.0.5/32",
                "-m",
                "comment",
                "--comment",
                r#"name: "ke-pods" id: "ab""#,
                "-j",
                "CNI-1f"
            ]
        );
    }
}
