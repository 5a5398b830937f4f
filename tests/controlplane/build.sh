#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, and kubelet + kube-proxy for the real node) from Go modules into a cache directory outside
# the clone. Idempotent: a binary that already exists is not rebuilt.
#
# Usage: tests/controlplane/build.sh        prints the bin directory on stdout
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION="$(sed -n 's#^\tk8s.io/kubernetes \(v[0-9.]*\).*#\1#p' "$here/kube/go.mod" | head -n1)"
ETCD_VERSION="$(sed -n 's#^\tgo.etcd.io/etcd/server/v3 \(v[0-9.]*\).*#\1#p' "$here/etcd/go.mod" | head -n1)"
KWOK_VERSION="$(sed -n 's#^\tsigs.k8s.io/kwok \(v[0-9.]*\).*#\1#p' "$here/kwok/go.mod" | head -n1)"
cache="${KE_CACHE_DIR:-$HOME/.cache/kubernetes-executor}"
bin="$cache/controlplane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"
mkdir -p "$bin"

export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
export CGO_ENABLED=0

# Concurrent callers (tests asking for the binaries) wait for one build.
exec 9>"$bin/.lock"
flock 9

build() { # build <module dir> <binary name> <package> [ldflags]
  local dir="$1" name="$2" pkg="$3" ldflags="${4:-}"
  if [ -x "$bin/$name" ]; then return 0; fi
  echo "building $name ($pkg)" >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "built $name in $((SECONDS - start))s" >&2
}

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
kver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
kwokver="-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"

build etcd etcd go.etcd.io/etcd/server/v3
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kver"
build kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kver"
build kube kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$kver"
build kube kubectl k8s.io/kubernetes/cmd/kubectl "$kver"
# The real node's agents (tests/harness/src/node.rs).
build kube kubelet k8s.io/kubernetes/cmd/kubelet "$kver"
build kube kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$kver"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "$kwokver"

echo "$bin"
