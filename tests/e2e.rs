//! The operator as a platform engineer installs it, on a real node: the
//! control plane plus containerd, runc, kubelet and kube-proxy (see
//! tests/harness/src/node.rs), the image `make image` built (imported, no
//! registry), and `kubectl apply -k` of an overlay of deploy/ that only
//! sets the image. No job runner: every Job's pod runs in a container from
//! the operator's image, under the restricted Pod Security Standard of the
//! operator's namespace. Needs root (`make e2e` / `make test`; .ci/run
//! installs containerd, runc and the CNI plugins).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use kubernetes_executor_crds::{KubernetesExecution, Phase};
use kubernetes_executor_testkit::controlplane::{ControlPlane, Options, REAL_NODE};
use kubernetes_executor_testkit::eventually;
use kubernetes_executor_testkit::operator::kubectl_with_input;
use serde_json::{Value, json};

const NS: &str = "kubernetes-executor-system";
const WAIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The archive and name `make image` wrote.
fn image() -> (PathBuf, String) {
    let archive = std::env::var_os("KE_IMAGE_ARCHIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo().join("target"))
                .join("image/kubernetes-executor.oci.tar")
        });
    assert!(
        archive.exists(),
        "{} is missing: run `make image` (make e2e and make test do)",
        archive.display()
    );
    let name = std::env::var("KE_IMAGE")
        .unwrap_or_else(|_| "docker.io/library/kubernetes-executor:dev".into());
    (archive, name)
}

struct Cluster {
    cp: ControlPlane,
    client: Client,
}

impl Cluster {
    /// kubectl as the admin, `input` on stdin; panics with its stderr.
    fn kubectl(&self, args: &[&str], input: Option<&str>) -> String {
        kubectl_with_input(&self.cp, args, input.unwrap_or("")).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// What a failure needs to be understood: the agents' logs, the pods,
    /// the operator's logs read through the kubelet, the leader Lease.
    fn dump(&self) {
        self.cp.print_logs();
        for args in [
            &["get", "pods", "-A", "-o", "wide"][..],
            &[
                "-n",
                NS,
                "logs",
                "-l",
                "app.kubernetes.io/name=kubernetes-executor",
                "--prefix",
                "--tail",
                "40",
            ],
            &[
                "-n",
                NS,
                "get",
                "lease",
                "kubernetes-executor-leader",
                "-o",
                "yaml",
            ],
        ] {
            let out = kubectl_with_input(&self.cp, args, "").unwrap_or_else(|e| format!("{e:#}"));
            eprintln!("----- kubectl {} -----\n{out}", args.join(" "));
        }
    }

    /// Creates an execution with kubectl and waits for its end.
    async fn execute(&self, ns: &str, name: &str, spec: Value) -> KubernetesExecution {
        let doc = json!({
            "apiVersion": "kubernetesexecution.kubernaut.io/v1alpha1",
            "kind": "KubernetesExecution",
            "metadata": { "name": name, "namespace": ns },
            "spec": spec,
        });
        self.kubectl(&["apply", "-f", "-"], Some(&doc.to_string()));
        let api: Api<KubernetesExecution> = Api::namespaced(self.client.clone(), ns);
        let waited = eventually(&format!("{ns}/{name} terminal"), WAIT, || async {
            Ok(api.get(name).await?.phase().is_terminal())
        })
        .await;
        if let Err(e) = waited {
            self.dump();
            panic!("{e}");
        }
        api.get(name).await.expect("get")
    }

    /// The execution's Job pod ran in a container from the operator's
    /// image on the real node, and its termination message (read by the
    /// kubelet from the container's /dev/termination-log) is the result in
    /// the execution's status.
    async fn check_job_pod(&self, exec: &KubernetesExecution, image: &str) {
        let name = exec.metadata.name.as_deref().expect("name");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        let list = pods
            .list(&ListParams::default().labels(&format!("kubernaut.ai/execution={name}")))
            .await
            .expect("pods");
        let pod = list
            .items
            .first()
            .unwrap_or_else(|| panic!("no Job pod for {name}"));
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some(REAL_NODE), "{name}");
        let status = pod.status.as_ref().expect("status");
        let c = &status.container_statuses.as_ref().expect("containers")[0];
        assert_eq!(c.image, image, "{name}: the Job runs the operator's image");
        assert!(
            c.container_id
                .as_deref()
                .unwrap_or("")
                .starts_with("containerd://"),
            "{name}: a real container: {c:?}"
        );
        let ended = c
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .unwrap_or_else(|| panic!("{name}: container not terminated: {c:?}"));
        assert_eq!(ended.exit_code, 0, "{name}: {ended:?}");
        let message: Value =
            serde_json::from_str(ended.message.as_deref().expect("termination message"))
                .expect("the termination message is the action's JSON output");
        let result = exec
            .status
            .as_ref()
            .and_then(|s| s.result.clone())
            .expect("result in status");
        assert_eq!(
            message["result"]["output"].as_str(),
            result.output.as_deref(),
            "{name}: status carries what the container wrote"
        );
    }

    /// Host PID of a container (from containerd's task list).
    fn container_pid(&self, container_id: &str) -> u32 {
        let id = container_id.trim_start_matches("containerd://");
        let tasks = self
            .cp
            .with_node(|n| n.ctr(&["tasks", "list"]))
            .expect("real node")
            .expect("ctr tasks list");
        tasks
            .lines()
            .find(|l| l.starts_with(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no task {id} in {tasks}"))
    }
}

fn succeeded(e: &KubernetesExecution) -> bool {
    e.phase() == Phase::Completed
        && e.status
            .as_ref()
            .and_then(|s| s.result.as_ref())
            .is_some_and(|r| r.succeeded)
}

async fn ready_operator_pods(client: &Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.list(&ListParams::default().labels("app.kubernetes.io/name=kubernetes-executor"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

async fn leader(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    leases
        .get_opt("kubernetes-executor-leader")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

#[test]
fn the_operator_runs_from_deploy_on_a_real_node() {
    let (archive, image) = image();
    kubernetes_executor_testkit::block_on_testkit(async move {
        let cp = ControlPlane::start(Options {
            kwok_nodes: 1,
            real_node: Some(vec![archive]),
            ..Options::default()
        })
        .await
        .unwrap_or_else(|e| panic!("control plane with a real node: {e:#}"));
        let client = cp.client().await.expect("client");
        let c = Cluster { cp, client };
        run(&c, &image).await;
    });
}

async fn run(c: &Cluster, image: &str) {
    let client = &c.client;
    // 1. kubectl apply -k: an overlay that only sets the image (kustomize
    //    takes bases by relative path, so it lives in target/).
    let (repo_name, tag) = image.rsplit_once(':').expect("image tag");
    let scratch = repo().join("target");
    std::fs::create_dir_all(&scratch).expect("target/");
    let overlay = tempfile::Builder::new()
        .prefix("e2e-overlay-")
        .tempdir_in(&scratch)
        .expect("overlay");
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../deploy\nimages:\n  - name: kubernetes-executor\n    newName: {repo_name}\n    newTag: {tag}\n"
        ),
    )
    .expect("write overlay");
    c.kubectl(
        &[
            "apply",
            "--server-side",
            "-k",
            &overlay.path().display().to_string(),
        ],
        None,
    );

    // 2. Both replicas Ready through their real probes.
    if let Err(e) = eventually("two operator pods Ready", WAIT, || async {
        Ok(ready_operator_pods(client).await.len() == 2)
    })
    .await
    {
        c.dump();
        panic!("{e}");
    }
    let pods = ready_operator_pods(client).await;
    for p in &pods {
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some(REAL_NODE));
        let st = &p
            .status
            .as_ref()
            .expect("status")
            .container_statuses
            .as_ref()
            .expect("cs")[0];
        assert_eq!(st.image, image);
        // Non-root and a read-only root filesystem, read from the host's
        // view of the container's process (not from the spec).
        let pid = c.container_pid(st.container_id.as_deref().expect("container id"));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let uid = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
        assert_eq!(
            uid.split_whitespace().skip(1).collect::<Vec<_>>(),
            ["65532"; 4],
            "{uid}"
        );
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mounts");
        let root = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/"))
            .expect("root mount");
        let opts = root.split_whitespace().nth(5).expect("mount options");
        assert!(
            opts.split(',').any(|o| o == "ro"),
            "root is read-only: {root}"
        );
    }

    // The Jobs below run under the restricted Pod Security Standard: the
    // namespace enforces it (a privileged pod is refused).
    let privileged = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "privileged-probe", "namespace": NS },
        "spec": { "containers": [{ "name": "c", "image": image,
                                   "securityContext": { "privileged": true } }] },
    });
    let refused = kubectl_with_input(
        &c.cp,
        &["create", "--dry-run=server", "-f", "-"],
        &privileged.to_string(),
    );
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("restricted")),
        "the operator's namespace enforces the restricted standard: {refused:?}"
    );

    // Admission policies take effect a moment after they are created.
    kubernetes_executor_testkit::operator::wait_admission_enforcing(&c.cp)
        .expect("admission policies enforcing");

    // 3. One of them leads.
    let names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    eventually("a leader", WAIT, || async {
        Ok(leader(client).await.is_some_and(|l| names.contains(&l)))
    })
    .await
    .expect("leader");
    let first = leader(client).await.expect("leader");

    // 4. /metrics through the Service (ClusterIP, kube-proxy's rules).
    let svc: Api<Service> = Api::namespaced(client.clone(), NS);
    let ip = svc
        .get("kubernetes-executor-metrics")
        .await
        .expect("service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("cluster IP");
    let addr = format!("{ip}:8080");
    eventually("metrics through the Service", WAIT, || async {
        // From the host, as a scraper on the node would.
        let (code, body) = tokio::time::timeout(
            Duration::from_secs(10),
            kubernetes_executor_testkit::operator::http_get(&addr, "/metrics"),
        )
        .await??;
        Ok(code == 200 && body.contains("kubernetes_executor_build_info"))
    })
    .await
    .expect("metrics");

    // 5. Executions, created with kubectl, run their Jobs in containers.
    let shop = "shop";
    c.kubectl(&["create", "namespace", shop], None);
    // A real workload on the real node (the pause image, imported).
    let web = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": shop },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "nodeSelector": { "kubernetes.io/hostname": REAL_NODE },
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 65535 },
                    "containers": [{ "name": "app", "image": kubernetes_executor_testkit::node::PAUSE_IMAGE,
                                     "imagePullPolicy": "Never" }],
                },
            },
        },
    });
    c.kubectl(&["apply", "-f", "-"], Some(&web.to_string()));
    c.kubectl(
        &[
            "-n",
            shop,
            "create",
            "configmap",
            "settings",
            "--from-literal=mode=slow",
        ],
        None,
    );

    let scale = c
        .execute(
            shop,
            "scale-web",
            json!({ "action": "ScaleDeployment",
                    "targetResource": { "kind": "Deployment", "name": "web", "namespace": shop },
                    "parameters": { "replicas": "2" } }),
        )
        .await;
    assert!(succeeded(&scale), "{:?}", scale.status);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), shop);
    let d = deployments.get("web").await.expect("web");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(
        d.status.and_then(|s| s.ready_replicas),
        Some(2),
        "two real pods ready"
    );
    c.check_job_pod(&scale, image).await;

    let patch = c
        .execute(
            shop,
            "patch-settings",
            json!({ "action": "PatchConfigMap",
                    "targetResource": { "kind": "ConfigMap", "name": "settings", "namespace": shop },
                    "parameters": { "patch": "{\"data\":{\"mode\":\"fast\"}}" } }),
        )
        .await;
    assert!(succeeded(&patch), "{:?}", patch.status);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), shop);
    let cm = cms.get("settings").await.expect("cm");
    assert_eq!(
        cm.data.and_then(|d| d.get("mode").cloned()).as_deref(),
        Some("fast")
    );
    c.check_job_pod(&patch, image).await;

    let nodes: Api<Node> = Api::all(client.clone());
    let kwok = "kwok-node-0";
    let unschedulable = |n: Node| n.spec.and_then(|s| s.unschedulable).unwrap_or(false);
    for (name, action, cordoned) in [
        ("cordon-kwok", "CordonNode", true),
        ("uncordon-kwok", "UncordonNode", false),
    ] {
        let done = c
            .execute(
                shop,
                name,
                json!({ "action": action, "targetResource": { "kind": "Node", "name": kwok } }),
            )
            .await;
        assert!(succeeded(&done), "{name}: {:?}", done.status);
        assert_eq!(
            unschedulable(nodes.get(kwok).await.expect("node")),
            cordoned,
            "{name}"
        );
        c.check_job_pod(&done, image).await;
    }

    // DrainNode of the kwok node: its pods are evicted, by a Job on the
    // real node.
    let fake = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "on-kwok", "namespace": shop },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "on-kwok" } },
            "template": {
                "metadata": { "labels": { "app": "on-kwok" } },
                "spec": {
                    "nodeSelector": { "kubernetes.io/hostname": kwok },
                    "tolerations": [{ "key": kubernetes_executor_testkit::KWOK_TAINT_KEY, "operator": "Exists" }],
                    "containers": [{ "name": "app", "image": "fake" }],
                },
            },
        },
    });
    c.kubectl(&["apply", "-f", "-"], Some(&fake.to_string()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), shop);
    let on_kwok = || async {
        let l = pods
            .list(&ListParams::default().labels("app=on-kwok"))
            .await?;
        anyhow::Ok(
            l.items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count(),
        )
    };
    eventually("pods on the kwok node", WAIT, || async {
        Ok(on_kwok().await? == 2)
    })
    .await
    .expect("kwok pods");
    let drain = c
        .execute(
            shop,
            "drain-kwok",
            json!({ "action": "DrainNode", "targetResource": { "kind": "Node", "name": kwok } }),
        )
        .await;
    assert!(succeeded(&drain), "{:?}", drain.status);
    assert!(unschedulable(nodes.get(kwok).await.expect("node")));
    eventually("no pod left on the drained node", WAIT, || async {
        Ok(on_kwok().await? == 0)
    })
    .await
    .expect("drained");
    c.check_job_pod(&drain, image).await;

    // 6. Deleting the leader pod fails over: another replica (the standby,
    //    or the Deployment's replacement if it wins the race for the
    //    released Lease) leads and then runs executions.
    let pods_ns: Api<Pod> = Api::namespaced(client.clone(), NS);
    let deleted_at = std::time::Instant::now();
    pods_ns
        .delete(&first, &DeleteParams::default())
        .await
        .expect("delete leader");
    if let Err(e) = eventually("another replica leads", WAIT, || async {
        let Some(l) = leader(client).await.filter(|l| *l != first) else {
            return Ok(false);
        };
        Ok(pods_ns.get_opt(&l).await?.is_some())
    })
    .await
    {
        c.dump();
        panic!("{e}");
    }
    eprintln!(
        "e2e: failover to {} {:.1}s after the leader pod's deletion",
        leader(client).await.unwrap_or_default(),
        deleted_at.elapsed().as_secs_f64()
    );
    let back = c
        .execute(
            shop,
            "scale-web-back",
            json!({ "action": "ScaleDeployment",
                    "targetResource": { "kind": "Deployment", "name": "web", "namespace": shop },
                    "parameters": { "replicas": "1" } }),
        )
        .await;
    assert!(succeeded(&back), "{:?}", back.status);
    assert_eq!(
        deployments
            .get("web")
            .await
            .expect("web")
            .spec
            .and_then(|s| s.replicas),
        Some(1)
    );
    c.check_job_pod(&back, image).await;
    eventually("a replacement replica Ready", WAIT, || async {
        let ready = ready_operator_pods(client).await;
        Ok(ready.len() == 2
            && ready
                .iter()
                .all(|p| p.metadata.name.as_deref() != Some(first.as_str())))
    })
    .await
    .expect("replacement");
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let all = jobs.list(&ListParams::default()).await.expect("jobs");
    assert!(
        all.items.len() >= 6,
        "one Job per execution: {}",
        all.items.len()
    );
}

/// `make image` wrote what deploy/Dockerfile describes (the same files,
/// user and entrypoint `docker build` would give), with a static binary
/// (nothing to load from a base image) and the non-root user defined.
#[test]
fn the_image_is_the_dockerfiles_final_stage() {
    use kubernetes_executor_testkit::image::{inspect_archive, parse_dockerfile, read_file};
    let (archive, _) = image();
    let stage = parse_dockerfile(
        &std::fs::read_to_string(repo().join("deploy/Dockerfile")).expect("Dockerfile"),
    )
    .expect("parse");
    let (files, config) = inspect_archive(&archive).expect("inspect");
    let wanted: Vec<String> = stage.copies.iter().map(|(_, _, dst)| dst.clone()).collect();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), {
        let mut w = wanted.clone();
        w.sort();
        w
    });
    assert_eq!(files["/kubernetes-executor"], 0o755);
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        json!(["/kubernetes-executor"])
    );
    assert_eq!(stage.user.as_deref(), Some("65532:65532"));
    // The binary in the archive is static: no ELF interpreter to find.
    let bin = read_file(&archive, "/kubernetes-executor").expect("the binary");
    assert!(
        !has_interpreter(&bin),
        "the operator binary must be static (it runs FROM scratch)"
    );
}

/// Whether an ELF64 file names a program interpreter (PT_INTERP): a
/// dynamically linked binary, which a `FROM scratch` image cannot run.
fn has_interpreter(elf: &[u8]) -> bool {
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "a 64-bit little-endian ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes")) == 3
    })
}

#[test]
fn the_interpreter_check_tells_static_from_dynamic() {
    // This test binary itself is dynamically linked (the gnu target's default).
    let me = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
    assert!(has_interpreter(&me));
    let pause = std::fs::read(
        kubernetes_executor_testkit::node::pause_archive()
            .expect("pause image")
            .with_file_name("pause"),
    )
    .expect("pause binary");
    assert!(!has_interpreter(&pause), "gcc -static gives no interpreter");
}
