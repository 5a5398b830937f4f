#!/usr/bin/env python3
"""What one API request of each kind an execution makes costs the API server.

Runs against the local control plane (`make cluster-up`), nothing else
running on it: installs the CRD and admission policies from deploy/, then
makes N requests of each kind one after another and reads the
kube-apiserver process's CPU time from /proc before and after. Prints API
server CPU milliseconds per request (docs/performance.md, "What a request
costs the API server"). The status written is a real dry run's final
status (dry-run-status.json, captured from the operator).

    make cluster-up && python3 tests/loadtest/costs/request_costs.py [N]
"""
import copy
import http.client
import json
import os
import ssl
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CLUSTER = os.path.join(REPO, "target", "cluster")
KUBECONFIG = os.path.join(CLUSTER, "kubeconfig")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
GROUP = "kubernetesexecution.kubernaut.io/v1alpha1"
HZ = os.sysconf("SC_CLK_TCK")


def kubectl(*args, stdin=None):
    bin_dir = subprocess.check_output(["bash", os.path.join(REPO, "tests/controlplane/build.sh")], text=True).strip()
    return subprocess.run([os.path.join(bin_dir, "kubectl"), "--kubeconfig", KUBECONFIG, *args],
                          input=stdin, text=True, capture_output=True)


def connect():
    server = open(KUBECONFIG).read().split("server: https://")[1].split("\n")[0]
    host, port = server.split(":")
    ctx = ssl.create_default_context(cafile=os.path.join(CLUSTER, "state/pki/ca.crt"))
    ctx.load_cert_chain(os.path.join(CLUSTER, "state/pki/admin.crt"), os.path.join(CLUSTER, "state/pki/admin.key"))
    return http.client.HTTPSConnection(host, int(port), context=ctx)


def main():
    for f in ["deploy/namespace.yaml", "deploy/crds/kubernetesexecutions.yaml", "deploy/rbac/actions.yaml",
              "deploy/rbac/operator.yaml", "deploy/admission/policies.yaml"]:
        r = kubectl("apply", "--server-side", "--force-conflicts", "-f", os.path.join(REPO, f))
        if r.returncode != 0:
            sys.exit(f"kubectl apply {f}: {r.stderr}")
    kubectl("wait", "--for=condition=Established", "crd/kubernetesexecutions.kubernetesexecution.kubernaut.io")
    kubectl("create", "namespace", "costs")
    kubectl("-n", "costs", "create", "deployment", "web", "--image=nginx:1.27", "--replicas=0")
    time.sleep(3)  # admission policies take effect a moment after creation
    pid = subprocess.check_output(["pgrep", "-x", "kube-apiserver"], text=True).split()[0]
    conn = connect()
    status = json.load(open(os.path.join(os.path.dirname(__file__), "dry-run-status.json")))
    base = f"/apis/{GROUP}/namespaces/costs/kubernetesexecutions"
    tag = str(int(time.time()))

    def cpu():
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / HZ

    def req(method, path, body=None, ctype="application/json"):
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": ctype, "Accept": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status >= 300:
            sys.exit(f"{method} {path}: {r.status} {data[:300]!r}")

    def measure(label, fn):
        c0, t0 = cpu(), time.time()
        for i in range(N):
            fn(i)
        print(f"{label:48s} {1000 * (cpu() - c0) / N:6.2f} ms API server CPU   {1000 * (time.time() - t0) / N:6.2f} ms wall")

    def name(i):
        return f"c{tag}-{i}"

    def st(i, phase):
        s = copy.deepcopy(status)
        s["phase"] = phase
        s["startTime"] = f"2026-12-07T10:{(i // 60) % 60:02d}:{i % 60:02d}Z"
        return s

    def apply(i, phase):
        body = {"apiVersion": GROUP, "kind": "KubernetesExecution",
                "metadata": {"name": name(i), "namespace": "costs"}, "status": st(i, phase)}
        req("PATCH", f"{base}/{name(i)}/status?fieldManager=kubernetes-executor&force=true", body,
            "application/apply-patch+yaml")

    spec = {"action": "ScaleDeployment", "dryRun": True, "parameters": {"replicas": "2"},
            "targetResource": {"kind": "Deployment", "name": "web", "namespace": "costs"}}
    print(f"{N} requests each, one after another (kube-apiserver pid {pid})")
    measure("create an execution (admission policies)", lambda i: req(
        "POST", base, {"apiVersion": GROUP, "kind": "KubernetesExecution",
                       "metadata": {"name": name(i), "namespace": "costs"}, "spec": spec}))
    measure("status: server-side apply, first", lambda i: apply(i, "Executing"))
    measure("status: server-side apply, next", lambda i: apply(i, "Completed"))
    measure("status: merge patch, whole status", lambda i: req(
        "PATCH", f"{base}/{name(i)}/status", {"status": st(i + 1, "Completed")}, "application/merge-patch+json"))
    measure("status: merge patch, one field", lambda i: req(
        "PATCH", f"{base}/{name(i)}/status", {"status": {"startTime": "2026-12-07T11:00:00Z"}},
        "application/merge-patch+json"))
    measure("finalizer removal (merge patch of metadata)", lambda i: req(
        "PATCH", f"{base}/{name(i)}", {"metadata": {"finalizers": None}}, "application/merge-patch+json"))
    measure("GET an execution", lambda i: req("GET", f"{base}/{name(i)}"))
    measure("POST an Event", lambda i: req("POST", "/api/v1/namespaces/costs/events", {
        "metadata": {"generateName": "c-"}, "reason": "DryRunSucceeded", "message": "x" * 200, "type": "Normal",
        "involvedObject": {"kind": "KubernetesExecution", "namespace": "costs", "name": name(i)}}))
    measure("RoleBinding create", lambda i: req("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/costs/rolebindings", {
        "metadata": {"name": name(i)}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                 "name": "kubernetes-executor-scale-deployment"},
        "subjects": [{"kind": "ServiceAccount", "name": "kubernetes-executor-scale-deployment",
                      "namespace": "kubernetes-executor-system"}]}))
    measure("RoleBinding delete", lambda i: req("DELETE", f"/apis/rbac.authorization.k8s.io/v1/namespaces/costs/rolebindings/{name(i)}"))
    measure("GET a Deployment", lambda i: req("GET", "/apis/apps/v1/namespaces/costs/deployments/web"))
    measure("LIST pods by label (watch cache)", lambda i: req(
        "GET", "/api/v1/namespaces/costs/pods?labelSelector=app%3Dweb&resourceVersion=0"))
    kubectl("delete", "namespace", "costs", "--wait=false")


if __name__ == "__main__":
    main()
