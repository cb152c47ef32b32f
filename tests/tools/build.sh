#!/usr/bin/env bash
# Build the simulated-cluster tools (kube-apiserver, kube-controller-manager, kubectl, etcd,
# vcsim, govc, kustomize) and unpack the pinned openshift/api CRD manifests into a cache directory
# outside the repository:
#
#   ${VMI_TOOLS_CACHE:-$HOME/.cache/vmi-tools}/<key>/
#       bin/{kube-apiserver,kube-controller-manager,kubectl,etcd,vcsim,govc,kustomize}
#       openshift-api/<commit12>/...   (+ symlink <pin name> -> <commit12>)
#       versions.env                  (shell-sourceable versions and paths)
#       .complete                     (written last; its presence means "fully built")
#
# <key> changes whenever a pinned version, a go.sum, a project-owned main package, this
# script, the Go version or the target platform changes, so a bump never reuses old binaries.
# A warm cache makes this a no-op. The last line on stdout is the cache directory:
#
#   dir=$(tests/tools/build.sh | tail -1)
#
# Progress goes to stderr. Needs Go (>= the highest `go` line of the tools modules) and the
# Go module proxy; module and build caches stay at Go's defaults.
set -euo pipefail

tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${VMI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmi-tools}

log() { printf 'tools/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null || die "go is not installed"
export GOTOOLCHAIN=local           # never download another toolchain
export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"   # go.mod/go.sum must already be tidy
export GOWORK=off

# ---------------------------------------------------------------------------------------
# Cache key
# ---------------------------------------------------------------------------------------
module_version() { # module-dir module-path
    (cd "$tools/$1" && go list -m -f '{{.Version}}' "$2")
}
k8s_version=$(module_version k8s k8s.io/kubernetes)
etcd_version=$(module_version etcd go.etcd.io/etcd/server/v3)
govmomi_version=$(module_version govmomi github.com/vmware/govmomi)
kustomize_version=$(module_version kustomize sigs.k8s.io/kustomize/kustomize/v5)
go_version=$(go env GOVERSION)
platform="$(go env GOOS)-$(go env GOARCH)"

key_inputs=(
    build.sh
    k8s/go.mod k8s/go.sum
    etcd/go.mod etcd/go.sum
    govmomi/go.mod govmomi/go.sum govmomi/cmd/vcsim/main.go govmomi/cmd/govc/main.go
    kustomize/go.mod kustomize/go.sum
    openshift-api/pins.txt
)
hash=$(
    cd "$tools"
    {
        printf '%s\n' "$go_version" "$platform"
        for f in "${key_inputs[@]}"; do
            printf '== %s\n' "$f"
            cat "$f"
        done
    } | sha256sum | cut -c1-12
)
key="k8s-$k8s_version-etcd-$etcd_version-govmomi-$govmomi_version-kustomize-$kustomize_version-$hash"
dest="$cache_root/$key"

if [[ -f $dest/.complete ]]; then
    log "up to date: $dest"
    echo "$dest"
    exit 0
fi

mkdir -p "$cache_root"
# One builder per cache root at a time; a second caller waits and then finds the result.
if command -v flock >/dev/null; then
    exec 9>"$cache_root/.lock"
    flock 9
    if [[ -f $dest/.complete ]]; then
        log "up to date (built concurrently): $dest"
        echo "$dest"
        exit 0
    fi
    # Holding the lock, any staging directory left over is from a build that was killed.
    for stale in "$cache_root"/.build-*; do
        [[ -d $stale ]] || continue
        log "removing leftover $stale"
        chmod -R u+w "$stale" 2>/dev/null || true
        rm -rf "$stale"
    done
fi

log "building $key (go $go_version, $platform) into $dest"
stage="$cache_root/.build-$key-$$"
rm -rf "$stage"
mkdir -p "$stage/bin"
scratch=$(mktemp -d) # working directory for `go mod download` of single modules
cleanup() {
    rm -rf "$scratch"
    if [[ -n ${stage:-} && -d $stage ]]; then
        chmod -R u+w "$stage" 2>/dev/null || true
        rm -rf "$stage"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
step() { log "[$((SECONDS - start))s] $*"; }

# JSON field helpers for `go mod download -json` output and .info files (no jq needed).
json_str() { # field file-or-stdin
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" "${2:--}" | head -1
}
download_json() { # module@version  (runs outside any module)
    (cd "$scratch" && GOFLAGS=-mod=mod go mod download -json "$1")
}
# The proxy's .info file may carry Origin.Hash (the upstream commit); use it when present.
origin_commit() { # module@version
    local info
    info=$(download_json "$1" | json_str Info)
    [[ -n $info && -f $info ]] || return 0
    tr -d '\n' <"$info" | grep -o '"Hash"[[:space:]]*:[[:space:]]*"[0-9a-f]\{40\}"' |
        grep -o '[0-9a-f]\{40\}' | head -1 || true
}
release_time() { # module@version -> RFC 3339 commit time of the release
    local info
    info=$(download_json "$1" | json_str Info)
    if [[ -n $info && -f $info ]]; then json_str Time "$info"; fi
}

# ---------------------------------------------------------------------------------------
# Kubernetes: kube-apiserver, kube-controller-manager, kubectl
# ---------------------------------------------------------------------------------------
step "kubernetes $k8s_version: downloading modules"
(cd "$tools/k8s" && go mod download) >&2
[[ $k8s_version =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "unexpected Kubernetes version $k8s_version"
k8s_major=${BASH_REMATCH[1]}
k8s_minor=${BASH_REMATCH[2]}
k8s_commit=$(origin_commit "k8s.io/kubernetes@$k8s_version")
k8s_date=$(release_time "k8s.io/kubernetes@$k8s_version")
k8s_vars=(gitVersion="$k8s_version" gitMajor="$k8s_major" gitMinor="$k8s_minor")
[[ -n $k8s_date ]] && k8s_vars+=(buildDate="$k8s_date")
[[ -n $k8s_commit ]] && k8s_vars+=(gitCommit="$k8s_commit" gitTreeState=clean)
k8s_ldflags="-s -w"
for kv in "${k8s_vars[@]}"; do
    # Same variables as upstream hack/lib/version.sh: kubectl's client version comes from
    # client-go, the servers' from component-base.
    k8s_ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
step "kubernetes $k8s_version: compiling (commit ${k8s_commit:-unknown})"
(cd "$tools/k8s" && go build -trimpath -ldflags "$k8s_ldflags" -o "$stage/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl) >&2

# ---------------------------------------------------------------------------------------
# etcd
# ---------------------------------------------------------------------------------------
step "etcd $etcd_version: compiling"
(cd "$tools/etcd" && go mod download) >&2
etcd_ldflags="-s -w"
etcd_commit=$(origin_commit "go.etcd.io/etcd/server/v3@$etcd_version")
[[ -n $etcd_commit ]] && etcd_ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=${etcd_commit:0:9}"
(cd "$tools/etcd" && go build -trimpath -ldflags "$etcd_ldflags" -o "$stage/bin/etcd" \
    go.etcd.io/etcd/server/v3) >&2

# ---------------------------------------------------------------------------------------
# govmomi: vcsim, govc
# ---------------------------------------------------------------------------------------
step "govmomi $govmomi_version: compiling vcsim and govc"
(cd "$tools/govmomi" && go mod download) >&2
govc_ldflags="-s -w -X github.com/vmware/govmomi/cli/flags.BuildVersion=$govmomi_version"
govmomi_date=$(release_time "github.com/vmware/govmomi@$govmomi_version")
govmomi_commit=$(origin_commit "github.com/vmware/govmomi@$govmomi_version")
[[ -n $govmomi_date ]] && govc_ldflags+=" -X github.com/vmware/govmomi/cli/flags.BuildDate=$govmomi_date"
[[ -n $govmomi_commit ]] && govc_ldflags+=" -X github.com/vmware/govmomi/cli/flags.BuildCommit=$govmomi_commit"
(cd "$tools/govmomi" && go build -trimpath -ldflags "$govc_ldflags" -o "$stage/bin/" \
    ./cmd/vcsim ./cmd/govc) >&2

# ---------------------------------------------------------------------------------------
# kustomize (renders deploy/overlays/* in tests/sim/tests/deploy_manifests.rs)
# ---------------------------------------------------------------------------------------
step "kustomize $kustomize_version: compiling"
(cd "$tools/kustomize" && go mod download) >&2
# `kustomize version` reads its version from the binary's module build info.
(cd "$tools/kustomize" && go build -trimpath -ldflags "-s -w" -o "$stage/bin/kustomize" \
    sigs.k8s.io/kustomize/kustomize/v5) >&2

# ---------------------------------------------------------------------------------------
# openshift/api CRD manifests
# ---------------------------------------------------------------------------------------
osapi_env=()
while read -r name version sum _; do
    [[ -z $name || $name == \#* ]] && continue
    commit=${version##*-}
    step "openshift/api $name ($version)"
    json=$(download_json "github.com/openshift/api@$version") || true
    got_sum=$(json_str Sum <<<"$json")
    dir=$(json_str Dir <<<"$json")
    [[ -n $dir && -d $dir ]] || die "openshift/api@$version: download failed: $(json_str Error <<<"$json")"
    [[ $got_sum == "$sum" ]] || die "openshift/api@$version: sum $got_sum, pins.txt expects $sum"
    out="$stage/openshift-api/$commit"
    mkdir -p "$out"
    # Rendered CRDs (one file per feature set) and the payload copies; paths are kept
    # relative to the module root, e.g. config/v1/zz_generated.crd-manifests/...
    (cd "$dir" && find . -type d \( -name zz_generated.crd-manifests -o -path ./payload-manifests \) -prune -print |
        sed 's|^\./||' | sort) >"$out/.dirs"
    while read -r d; do
        mkdir -p "$out/$(dirname "$d")"
        cp -R "$dir/$d" "$out/$d"
    done <"$out/.dirs"
    rm "$out/.dirs"
    chmod -R u+w,a+rX "$out"
    printf '%s\n' "$version" >"$out/VERSION"
    ln -sfn "$commit" "$stage/openshift-api/$name"
    var=$(tr 'a-z.-' 'A-Z__' <<<"$name")
    osapi_env+=("OPENSHIFT_API_${var}_VERSION=$version" "OPENSHIFT_API_${var}_DIR=$dest/openshift-api/$commit")
done <"$tools/openshift-api/pins.txt"

# ---------------------------------------------------------------------------------------
# Record versions, check the binaries start, publish atomically
# ---------------------------------------------------------------------------------------
step "checking binaries"
for b in kube-apiserver kube-controller-manager kubectl etcd vcsim govc kustomize; do
    [[ -x $stage/bin/$b ]] || die "missing binary $b"
done
got=$("$stage/bin/kube-apiserver" --version) || die "kube-apiserver --version failed"
[[ $got == "Kubernetes $k8s_version" ]] || die "kube-apiserver --version printed '$got'"
"$stage/bin/etcd" --version >/dev/null || die "etcd --version failed"
got=$("$stage/bin/kustomize" version) || die "kustomize version failed"
[[ $got == "$kustomize_version" ]] || die "kustomize version printed '$got'"

{
    echo "# Written by tests/tools/build.sh; KEY=value lines, no quoting, absolute paths."
    echo "VMI_TOOLS_DIR=$dest"
    echo "VMI_TOOLS_BIN=$dest/bin"
    echo "KUBERNETES_VERSION=$k8s_version"
    echo "KUBERNETES_GIT_COMMIT=${k8s_commit:-}"
    echo "ETCD_VERSION=$etcd_version"
    echo "GOVMOMI_VERSION=$govmomi_version"
    echo "KUSTOMIZE_VERSION=$kustomize_version"
    echo "GO_VERSION=$go_version"
    printf '%s\n' "${osapi_env[@]}"
} >"$stage/versions.env"
date -u +%Y-%m-%dT%H:%M:%SZ >"$stage/.complete"

if ! mv -T "$stage" "$dest" 2>/dev/null; then
    # Only possible if another builder published the same key first (no flock available)
    # or a leftover incomplete directory is in the way.
    if [[ -f $dest/.complete ]]; then
        log "already published by another build"
    else
        log "replacing incomplete $dest"
        chmod -R u+w "$dest" 2>/dev/null || true
        rm -rf "$dest"
        mv -T "$stage" "$dest"
    fi
fi
stage=
step "done: $dest"
echo "$dest"
