#!/usr/bin/env bash
# Installs the pinned reference tools that the tests and the demo use, idempotently, into a cache
# outside the repository: ${COUNTERSIGN_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/countersign/tools}.
#
#   tools/install.sh            install everything that is missing (a cached run takes about a second)
#   tools/install.sh NAME...    only these (olareg cosign cosign2 notation oras tsa opa helm debian)
#
# Every version is pinned in tools/versions.env. A tool is rebuilt only when its pinned version changes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${COUNTERSIGN_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/countersign/tools}
bin="$cache/bin"
stamps="$cache/stamps"
mkdir -p "$bin" "$stamps"

log() { printf '[tools] %s\n' "$*" >&2; }

# go_tool NAME MODULE PKG VERSION: build package PKG of MODULE@VERSION and install it as $bin/NAME.
# `go install MODULE/PKG@VERSION` would also fetch the module's version list (for deprecation notices),
# which this environment's module proxy may refuse; downloading the pinned version and building it in
# its own module directory needs only that version, and honours the release's go.mod exactly.
go_tool() {
  local name=$1 module=$2 pkg=$3 version=$4
  local stamp="$stamps/$name@$version"
  if [[ -f $stamp && -x $bin/$name ]]; then
    return 0
  fi
  command -v go >/dev/null || { log "go is required to build $name ($module@$version)"; return 1; }
  log "building $name from $module@$version ($pkg)"
  local start dir
  start=$(date +%s)
  # GOTOOLCHAIN=local: never download a toolchain; GOFLAGS cleared so a user's setting does not interfere.
  export GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
  if ! dir=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') \
      || [[ -z $dir ]]; then
    log "FAILED to download $module@$version"
    return 1
  fi
  if ! (cd "$dir" && go build -trimpath -ldflags='-s -w' -o "$bin/.$name.new" "$pkg"); then
    log "FAILED to build $name from $module@$version"
    return 1
  fi
  mv -f "$bin/.$name.new" "$bin/$name"
  rm -f "$stamps/$name@"*
  touch "$stamp"
  log "built $name in $(( $(date +%s) - start ))s"
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
    olareg)   go_tool olareg "$OLAREG_MODULE" "$OLAREG_PKG" "$OLAREG_VERSION" ;;
    cosign)   go_tool cosign "$COSIGN_MODULE" "$COSIGN_PKG" "$COSIGN_VERSION" ;;
    cosign2)  go_tool cosign2 "$COSIGN2_MODULE" "$COSIGN2_PKG" "$COSIGN2_VERSION" ;;
    notation) go_tool notation "$NOTATION_MODULE" "$NOTATION_PKG" "$NOTATION_VERSION" ;;
    oras)     go_tool oras "$ORAS_MODULE" "$ORAS_PKG" "$ORAS_VERSION" ;;
    tsa)      go_tool timestamp-server "$TSA_MODULE" "$TSA_PKG" "$TSA_VERSION" ;;
    opa)      go_tool opa "$OPA_MODULE" "$OPA_PKG" "$OPA_VERSION" ;;
    helm)     go_tool helm "$HELM_MODULE" "$HELM_PKG" "$HELM_VERSION" ;;
    debian)   debian ;;
    *) log "unknown tool: $1"; return 2 ;;
  esac
}

all=(debian olareg oras opa cosign cosign2 notation tsa helm)
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
