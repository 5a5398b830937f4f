#!/usr/bin/env bash
# `make demo`: brings up the local control plane (kwok nodes + job runner),
# installs the CRD, RBAC, admission policies and policies from deploy/ and
# policies/, runs the operator as its own ServiceAccount, creates a demo
# Deployment and a few executions as a requester that holds just the
# needed `execute` grants (and shows one cross-namespace refusal), prints
# their final status, then tears everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug"
KUBECTL="$(bash tests/controlplane/build.sh)/kubectl"
KC="$PWD/target/cluster/kubeconfig"
k() { "$KUBECTL" --kubeconfig "$KC" "$@"; }
OP_PID=""
cleanup() {
  [ -n "$OP_PID" ] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null || true
  make -s cluster-down >/dev/null || true
}
trap cleanup EXIT

make -s cluster-up >/dev/null
echo "== control plane up; nodes:"
k get nodes
k apply --server-side -f deploy/namespace.yaml -f deploy/crds/kubernetesexecutions.yaml -f deploy/rbac/actions.yaml -f deploy/rbac/operator.yaml -f deploy/admission/policies.yaml >/dev/null
k wait --for=condition=Established crd/kubernetesexecutions.kubernetesexecution.kubernaut.io --timeout=60s >/dev/null
# Admission policies take effect a moment after they are created.
for _ in $(seq 1 120); do
  u=$(k create --dry-run=server -o jsonpath='{.spec.requester.username}' -f - 2>/dev/null <<'YAML' || true
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: probe, namespace: default}
spec: {action: RolloutStatus, targetResource: {kind: Deployment, name: x}}
YAML
)
  [ -n "$u" ] && break
  sleep 0.5
done

# The operator runs with its own ServiceAccount's token (least privilege).
TOKEN="$(k -n kubernetes-executor-system create token kubernetes-executor --duration=2h)"
OPKC="$PWD/target/cluster/operator.kubeconfig"
k config view --raw --minify -o json | python3 -c '
import json, sys
c = json.load(sys.stdin); token = sys.argv[1]
c["users"] = [{"name": "operator", "user": {"token": token}}]
c["contexts"][0]["context"]["user"] = "operator"
print(json.dumps(c))' "$TOKEN" > "$OPKC"
KUBECONFIG="$OPKC" "$BIN/kubernetes-executor" run --namespace kubernetes-executor-system \
  --policy-dir policies --metrics-bind-address 127.0.0.1:18080 --health-probe-bind-address 127.0.0.1:18081 \
  --image kubernetes-executor:dev --log-format text > target/cluster/operator.log 2>&1 &
OP_PID=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18081/readyz >/dev/null && break; sleep 0.2; done
echo "== operator ready (logs: target/cluster/operator.log)"

k create namespace shop >/dev/null
k create namespace billing >/dev/null
# The requester: a ServiceAccount that may create executions in shop and
# execute exactly three actions there — nothing in billing, no node actions.
k -n shop create serviceaccount remediator >/dev/null
k -n shop create rolebinding remediator-executions --clusterrole=kubernetes-executor-edit --serviceaccount=shop:remediator >/dev/null
for a in scale-deployment update-image rollout-status; do
  k -n shop create rolebinding "remediator-$a" --clusterrole="kubernetes-executor-execute-$a" --serviceaccount=shop:remediator >/dev/null
done
AS=(--as=system:serviceaccount:shop:remediator)
sleep 1
k apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {type: kwok}
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
      containers: [{name: web, image: nginx:1.27}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: payments, namespace: shop, labels: {app: payments, critical: "true"}}
spec:
  replicas: 2
  selector: {matchLabels: {app: payments}}
  template:
    metadata: {labels: {app: payments}}
    spec:
      nodeSelector: {type: kwok}
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
      containers: [{name: payments, image: payments:1.0}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ledger, namespace: billing, labels: {app: ledger}}
spec:
  replicas: 1
  selector: {matchLabels: {app: ledger}}
  template:
    metadata: {labels: {app: ledger}}
    spec:
      nodeSelector: {type: kwok}
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
      containers: [{name: ledger, image: ledger:1.0}]
YAML
k "${AS[@]}" create -f - >/dev/null <<'YAML'
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: scale-web, namespace: shop}
spec:
  action: ScaleDeployment
  parameters: {replicas: "3"}
  targetResource: {kind: Deployment, name: web}
---
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: image-web, namespace: shop}
spec:
  action: UpdateImage
  parameters: {image: "nginx:1.28"}
  targetResource: {kind: Deployment, name: web}
---
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: rollout-web, namespace: shop}
spec:
  action: rollout_status
  targetResource: {kind: Deployment, name: web}
---
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: dry-run-scale, namespace: shop}
spec:
  action: ScaleDeployment
  dryRun: true
  parameters: {replicas: "10"}
  targetResource: {kind: Deployment, name: web}
---
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: zero-payments, namespace: shop}
spec:
  action: ScaleDeployment
  parameters: {replicas: "0"}
  targetResource: {kind: Deployment, name: payments}
---
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: typo, namespace: shop}
spec:
  action: ScaleDeployment
  parameters: {replica: "3"}
  targetResource: {kind: Deployment, name: web}
YAML
echo "== 6 executions created by system:serviceaccount:shop:remediator; waiting for them to finish"
echo "== the same requester asking for a change in namespace billing:"
k "${AS[@]}" create -f - 2>&1 <<'YAML' | sed 's/^/   /' || true
apiVersion: kubernetesexecution.kubernaut.io/v1alpha1
kind: KubernetesExecution
metadata: {name: scale-ledger, namespace: shop}
spec:
  action: ScaleDeployment
  parameters: {replicas: "0"}
  targetResource: {kind: Deployment, name: ledger, namespace: billing}
YAML
for _ in $(seq 1 150); do
  pending=$(k -n shop get kexec -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -cvE '^(Completed|Failed)$' || true)
  [ "$pending" = 0 ] && break
  sleep 0.4
done
echo
k -n shop get kexec -o custom-columns='NAME:.metadata.name,REQUESTER:.spec.requester.username,ACTION:.spec.action,DRYRUN:.spec.dryRun,PHASE:.status.phase,REASON:.status.reason,JOB:.status.jobName,PREV_REPLICAS:.status.rollbackInfo.previousReplicas,PREV_IMAGES:.status.rollbackInfo.previousImages,MESSAGE:.status.message'
echo
echo "deployment shop/web now has $(k -n shop get deploy web -o jsonpath='{.spec.replicas}') replicas of $(k -n shop get deploy web -o jsonpath='{.spec.template.spec.containers[0].image}')"
echo "deployment billing/ledger still has $(k -n billing get deploy ledger -o jsonpath='{.spec.replicas}') replica"
echo "policy violations of zero-payments: $(k -n shop get kexec zero-payments -o jsonpath='{.status.policyViolations}')"
