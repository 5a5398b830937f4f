#!/usr/bin/env bash
# Builds a Go tool the tests use (pinned in tests/gotools/go.mod) into a cache
# directory outside the clone, once per version, and prints its path.
#
# Usage: tests/gotools/build.sh controller-gen
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name="${1:?usage: build.sh <tool>}"
case "$name" in
  controller-gen) module=sigs.k8s.io/controller-tools; pkg=sigs.k8s.io/controller-tools/cmd/controller-gen ;;
  *) echo "unknown tool $name" >&2; exit 2 ;;
esac
version="$(sed -n "s#^\(require\)\{0,1\}[[:space:]]*$module \(v[^ ]*\).*#\2#p" "$here/go.mod" | head -n1)"
[ -n "$version" ] || { echo "$module is not in tests/gotools/go.mod" >&2; exit 1; }
cache="${KE_CACHE_DIR:-$HOME/.cache/kubernetes-executor}"
out="$cache/gotools/$name-$version"
if [ ! -x "$out" ]; then
  mkdir -p "$cache/gotools"
  echo "building $name $version" >&2
  start=$SECONDS
  (cd "$here" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" go build -trimpath -ldflags "-s -w" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "built $name in $((SECONDS - start))s" >&2
fi
echo "$out"
