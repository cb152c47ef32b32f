#!/usr/bin/env bash
# Rewrite tests/tools/k8s/go.mod for another Kubernetes release and re-tidy it.
#
# Usage: bump.sh VERSION      e.g. bump.sh v1.35.5
#
# The `go` and `godebug` lines are copied from the release's own go.mod so the binaries
# get the same language version and GODEBUG defaults as upstream builds; the replace
# block comes from gen-replaces.sh. Afterwards run tests/tools/build.sh (its cache key
# changes with go.mod/go.sum, so the new binaries land in a new cache directory).
set -euo pipefail

version=${1:?usage: $0 VERSION (e.g. v1.35.5)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gomod=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$version" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
go_line=$(grep -m1 '^go ' "$gomod")
godebug_line=$(grep -m1 '^godebug ' "$gomod" || true)

{
    echo "// Tools module: builds kube-apiserver, kube-controller-manager and kubectl from"
    echo "// k8s.io/kubernetes. Regenerate with ./bump.sh VERSION; see ../README.md."
    echo "module vmi.test/tools/k8s"
    echo
    echo "$go_line"
    if [[ -n $godebug_line ]]; then
        echo
        echo "$godebug_line"
    fi
    echo
    echo "tool ("
    printf '\tk8s.io/kubernetes/cmd/kube-apiserver\n'
    printf '\tk8s.io/kubernetes/cmd/kube-controller-manager\n'
    printf '\tk8s.io/kubernetes/cmd/kubectl\n'
    echo ")"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    "$here/gen-replaces.sh" "$version"
} >"$tmp/go.mod"

cp "$tmp/go.mod" "$here/go.mod"
rm -f "$here/go.sum"
(cd "$here" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod tidy)
echo "bump.sh: $here/go.mod now pins k8s.io/kubernetes $version" >&2
