#!/usr/bin/env bash
# Builds a Go tool the tests use into a cache directory outside the clone,
# once per version, and prints its path. Each tool has its own module under
# tests/gotools/<tool>/ (go.mod pins the version; separate modules keep the
# tools' dependencies from constraining each other).
#
# Usage: tests/gotools/build.sh controller-gen|promtool
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name="${1:?usage: build.sh <tool>}"
case "$name" in
  controller-gen) module=sigs.k8s.io/controller-tools; pkg=sigs.k8s.io/controller-tools/cmd/controller-gen ;;
  promtool) module=github.com/prometheus/prometheus; pkg=github.com/prometheus/prometheus/cmd/promtool ;;
  *) echo "unknown tool $name" >&2; exit 2 ;;
esac
dir="$here/$name"
version="$(sed -n "s#^\(require\)\{0,1\}[[:space:]]*$module \(v[^ ]*\).*#\2#p" "$dir/go.mod" | head -n1)"
[ -n "$version" ] || { echo "$module is not in $dir/go.mod" >&2; exit 1; }
cache="${KE_CACHE_DIR:-$HOME/.cache/kubernetes-executor}"
out="$cache/gotools/$name-$version"
mkdir -p "$cache/gotools"
# Tests ask for a tool concurrently: one builds, the others wait for it.
exec 9>"$out.lock"
flock 9
if [ ! -x "$out" ]; then
  echo "building $name $version" >&2
  start=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" go build -trimpath -ldflags "-s -w" -o "$out.tmp.$$" "$pkg")
  mv "$out.tmp.$$" "$out"
  echo "built $name in $((SECONDS - start))s" >&2
fi
echo "$out"
