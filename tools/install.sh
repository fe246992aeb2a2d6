#!/usr/bin/env bash
# Installs the pinned reference tools that the tests and the demo use, idempotently, into a cache
# outside the repository: ${COUNTERSIGN_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/countersign/tools}.
#
#   tools/install.sh            install everything that is missing (a cached run takes about a second)
#   tools/install.sh NAME...    only these (olareg cosign cosign2 notation oras tsa opa helm skopeo
#                               syft gatekeeper kube node debian; and ratify, which only an explicit
#                               request builds: `make bench-peers` compares Countersign with it)
#
# Every version is pinned in tools/versions.env. A tool is rebuilt only when its pinned version changes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
# The timestamp authority serves Prometheus metrics on ":2112", every interface, with no flag to change it:
# tests must listen on loopback only, and parallel runs would collide on the fixed port. Its build binds
# that listener to a free loopback port instead. (Here, not in versions.env: that file's hash is the kube
# tools' stamp.)
TSA_PATCH='pkg/server/prometheus.go|s/Addr: *":2112"/Addr: "127.0.0.1:0"/'
# syft, the SBOM generator tools/image/sbom.sh runs on the image (Go module, built like the others; pinned
# here rather than in versions.env for the same reason).
SYFT_MODULE=github.com/anchore/syft
SYFT_PKG=./cmd/syft
SYFT_VERSION=v1.57.2
SYFT_LDFLAGS="-X main.version=${SYFT_VERSION#v}"   # as its release builds say it (SPDX creator: syft-1.57.2)
# Ratify, the peer external-data provider `make bench-peers` measures Countersign against (bench/peers.py).
# Not part of the default set below (nor of `make test`): only `tools/install.sh ratify` builds it (~5 minutes).
RATIFY_MODULE=github.com/ratify-project/ratify
RATIFY_PKG=./cmd/ratify
RATIFY_VERSION=v1.4.6

cache=${COUNTERSIGN_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/countersign/tools}
bin="$cache/bin"
stamps="$cache/stamps"
mkdir -p "$bin" "$stamps"

log() { printf '[tools] %s\n' "$*" >&2; }

# go_tool NAME PREFIX: build package ${PREFIX}_PKG of ${PREFIX}_MODULE@${PREFIX}_VERSION as $bin/NAME.
# Optional: ${PREFIX}_TAGS (build tags), ${PREFIX}_LDFLAGS (added to -s -w) and ${PREFIX}_SUM (the module's pinned h1: hash, for a module the
# checksum database does not know: the download is then checked against this pin instead).
# `go install MODULE/PKG@VERSION` would also fetch the module's version list (for deprecation notices),
# which this environment's module proxy may refuse; downloading the pinned version and building it in
# its own module directory needs only that version, and honours the release's go.mod exactly.
go_tool() {
  local name=$1 prefix=$2
  local module_var="${prefix}_MODULE" pkg_var="${prefix}_PKG" version_var="${prefix}_VERSION"
  local tags_var="${prefix}_TAGS" sum_var="${prefix}_SUM" patch_var="${prefix}_PATCH" ldflags_var="${prefix}_LDFLAGS"
  local module=${!module_var} pkg=${!pkg_var} version=${!version_var}
  local tags=${!tags_var:-} sum=${!sum_var:-} patch=${!patch_var:-} ldflags=${!ldflags_var:-}
  local stamp="$stamps/$name@$version"
  # A patch ("FILE|SED-EXPRESSION") or extra linker flags change the build, so they are part of the stamp.
  [[ -n $patch ]] && stamp="$stamp+$(printf '%s' "$patch" | sha256sum | cut -c1-12)"
  [[ -n $ldflags ]] && stamp="$stamp+ld$(printf '%s' "$ldflags" | sha256sum | cut -c1-12)"
  if [[ -f $stamp && -x $bin/$name ]]; then
    return 0
  fi
  command -v go >/dev/null || { log "go is required to build $name ($module@$version)"; return 1; }
  log "building $name from $module@$version ($pkg)"
  local start dir json
  start=$(date +%s)
  # GOTOOLCHAIN=local: never download a toolchain; GOFLAGS cleared so a user's setting does not interfere.
  export GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
  local nosumdb=${GONOSUMDB:-}
  [[ -n $sum ]] && nosumdb=$module
  if ! json=$(GONOSUMDB=$nosumdb go mod download -json "$module@$version"); then
    log "FAILED to download $module@$version"
    return 1
  fi
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
  [[ -n $dir ]] || { log "FAILED to download $module@$version: $json"; return 1; }
  local build_dir=$dir tmp=""
  if [[ -n $sum || -n $patch ]]; then
    local got
    got=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' <<<"$json")
    if [[ -n $sum && $got != "$sum" ]]; then
      log "FAILED: $module@$version hashes to $got, pinned $sum"
      return 1
    fi
    # Its dependencies are resolved from its go.mod/go.sum in a writable copy (-mod=mod).
    tmp=$(mktemp -d)
    cp -r "$dir/." "$tmp/"
    chmod -R u+w "$tmp"
    build_dir=$tmp
  fi
  if [[ -n $patch ]]; then
    local file=${patch%%|*} expr=${patch#*|}
    cp "$build_dir/$file" "$build_dir/$file.orig"
    sed -i "$expr" "$build_dir/$file"
    if cmp -s "$build_dir/$file" "$build_dir/$file.orig"; then
      rm -rf "$tmp"
      log "FAILED: the patch for $name changes nothing in $file"
      return 1
    fi
  fi
  local flags=(-trimpath "-ldflags=-s -w${ldflags:+ $ldflags}")
  [[ -n $tags ]] && flags+=(-tags "$tags")
  [[ -n $sum ]] && flags+=(-mod=mod)
  if ! (cd "$build_dir" && GONOSUMDB=$nosumdb go build "${flags[@]}" -o "$bin/.$name.new" "$pkg"); then
    [[ -n $tmp ]] && rm -rf "$tmp"
    log "FAILED to build $name from $module@$version"
    return 1
  fi
  [[ -n $tmp ]] && rm -rf "$tmp"
  mv -f "$bin/.$name.new" "$bin/$name"
  rm -f "$stamps/$name@"*
  touch "$stamp"
  log "built $name in $(( $(date +%s) - start ))s"
}

# gatekeeper: the manager binary, and the release's CRDs next to it.
gatekeeper() {
  go_tool gatekeeper-manager GATEKEEPER || return 1
  local crds="$cache/gatekeeper-crds" stamp="$stamps/gatekeeper-crds@$GATEKEEPER_VERSION"
  [[ -f $stamp && -d $crds ]] && return 0
  local dir
  dir=$(GOFLAGS= go mod download -json "$GATEKEEPER_MODULE@$GATEKEEPER_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d $dir/manifest_staging/charts/gatekeeper/crds ]] || { log "FAILED: no CRDs in $dir"; return 1; }
  rm -rf "$crds" && mkdir -p "$crds"
  cp "$dir"/manifest_staging/charts/gatekeeper/crds/*.yaml "$crds/"
  chmod -R u+w "$crds"
  rm -f "$stamps/gatekeeper-crds@"*
  touch "$stamp"
}

# kube: etcd, kube-apiserver and kubectl from the wrapper module in tools/kube (see versions.env). The
# stamp covers the module's go.mod and go.sum, so a change of pins rebuilds them.
kube() {
  local module="$here/kube" sum
  sum=$(cat "$module/go.mod" "$module/go.sum" "$here/versions.env" | sha256sum | cut -c1-16)
  local stamp="$stamps/kube@$KUBERNETES_VERSION-$sum"
  if [[ -f $stamp && -x $bin/etcd && -x $bin/kube-apiserver && -x $bin/kubectl ]]; then
    return 0
  fi
  command -v go >/dev/null || { log "go is required to build etcd, kube-apiserver and kubectl"; return 1; }
  log "building etcd, kube-apiserver and kubectl ($KUBERNETES_VERSION) from tools/kube"
  local start version_pkg=k8s.io/component-base/version minor
  start=$(date +%s)
  minor=${KUBERNETES_VERSION#v1.}
  minor=${minor%%.*}
  local ldflags="-s -w -X $version_pkg.gitVersion=$KUBERNETES_VERSION -X $version_pkg.gitMajor=1"
  ldflags+=" -X $version_pkg.gitMinor=$minor -X $version_pkg.gitTreeState=clean"
  export GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
  local target
  for target in etcd:./cmd/etcd kube-apiserver:k8s.io/kubernetes/cmd/kube-apiserver \
    kubectl:k8s.io/kubernetes/cmd/kubectl; do
    local name=${target%%:*} pkg=${target#*:}
    if ! (cd "$module" && go build -mod=readonly -buildvcs=false -trimpath -ldflags="$ldflags" \
      -o "$bin/.$name.new" "$pkg"); then
      log "FAILED to build $name from tools/kube"
      return 1
    fi
    mv -f "$bin/.$name.new" "$bin/$name"
  done
  rm -f "$stamps/kube@"*
  touch "$stamp"
  log "built etcd, kube-apiserver and kubectl in $(( $(date +%s) - start ))s"
}

# node: kubelet, kube-controller-manager, kube-scheduler and kube-proxy from the same module and pins as
# kube, plus the test bed's pause program (./cmd/pause), for the single-node cluster of
# tests/support/node.py. Their further checksums are in tools/kube/node.sum (see tools/kube/tools.go): they
# are built against go.mod with go.sum and node.sum together (-modfile), so the kube stamp, and the binaries
# it covers, are not affected. Their own stamp covers go.mod, go.sum, node.sum, the pause source and versions.env.
node() {
  local module="$here/kube" sum
  sum=$(cat "$module/go.mod" "$module/go.sum" "$module/node.sum" "$module/cmd/pause/main.go" \
    "$here/versions.env" | sha256sum | cut -c1-16)
  local stamp="$stamps/node@$KUBERNETES_VERSION-$sum"
  local names=(kubelet kube-controller-manager kube-scheduler kube-proxy pause)
  local name missing=0
  for name in "${names[@]}"; do [[ -x $bin/$name ]] || missing=1; done
  if [[ -f $stamp && $missing -eq 0 ]]; then
    return 0
  fi
  command -v go >/dev/null || { log "go is required to build the node's binaries"; return 1; }
  log "building kubelet, kube-controller-manager, kube-scheduler, kube-proxy ($KUBERNETES_VERSION) and pause from tools/kube"
  local start version_pkg=k8s.io/component-base/version minor tmp
  start=$(date +%s)
  minor=${KUBERNETES_VERSION#v1.}
  minor=${minor%%.*}
  local ldflags="-s -w -X $version_pkg.gitVersion=$KUBERNETES_VERSION -X $version_pkg.gitMajor=1"
  ldflags+=" -X $version_pkg.gitMinor=$minor -X $version_pkg.gitTreeState=clean"
  export GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
  tmp=$(mktemp -d)
  cp "$module/go.mod" "$tmp/node.mod"
  sort -u "$module/go.sum" "$module/node.sum" >"$tmp/node.sum"
  local target
  for target in kubelet:k8s.io/kubernetes/cmd/kubelet \
    kube-controller-manager:k8s.io/kubernetes/cmd/kube-controller-manager \
    kube-scheduler:k8s.io/kubernetes/cmd/kube-scheduler kube-proxy:k8s.io/kubernetes/cmd/kube-proxy \
    pause:./cmd/pause; do
    local name=${target%%:*} pkg=${target#*:}
    if ! (cd "$module" && go build -modfile="$tmp/node.mod" -mod=readonly -buildvcs=false -trimpath \
      -ldflags="$ldflags" -o "$bin/.$name.new" "$pkg"); then
      rm -rf "$tmp"
      log "FAILED to build $name from tools/kube"
      return 1
    fi
    mv -f "$bin/.$name.new" "$bin/$name"
  done
  rm -rf "$tmp"
  rm -f "$stamps/node@"*
  touch "$stamp"
  log "built kubelet, kube-controller-manager, kube-scheduler, kube-proxy and pause in $(( $(date +%s) - start ))s"
}

debian() {
  local missing=()
  local pkg
  for pkg in $DEBIAN_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages start system services; the tests run their own instances on random ports.
  for svc in docker-registry redis-server; do
    if command -v systemctl >/dev/null 2>&1; then "${sudo[@]}" systemctl stop "$svc" >/dev/null 2>&1 || true; fi
    if command -v service >/dev/null 2>&1; then "${sudo[@]}" service "$svc" stop >/dev/null 2>&1 || true; fi
  done
}

install_one() {
  case $1 in
    olareg)   go_tool olareg OLAREG ;;
    cosign)   go_tool cosign COSIGN ;;
    cosign2)  go_tool cosign2 COSIGN2 ;;
    notation) go_tool notation NOTATION ;;
    oras)     go_tool oras ORAS ;;
    tsa)      go_tool timestamp-server TSA ;;
    opa)      go_tool opa OPA ;;
    helm)     go_tool helm HELM ;;
    syft)     go_tool syft SYFT ;;
    ratify)   go_tool ratify RATIFY ;;
    skopeo)   go_tool skopeo SKOPEO ;;
    gatekeeper) gatekeeper ;;
    kube)     kube ;;
    node)     node ;;
    debian)   debian ;;
    *) log "unknown tool: $1"; return 2 ;;
  esac
}

all=(debian olareg oras opa cosign cosign2 notation tsa helm skopeo syft gatekeeper kube node)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")

start=$(date +%s)
failed=()
for t in "${targets[@]}"; do
  install_one "$t" || failed+=("$t")
done
if [[ ${#failed[@]} -gt 0 ]]; then
  log "failed: ${failed[*]}"
  exit 1
fi
log "tools ready in $bin ($(( $(date +%s) - start ))s)"
echo "$bin"
