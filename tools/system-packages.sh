#!/usr/bin/env bash
# Installs the Debian packages that building and running Countersign's image need, and writes the
# container tools' configuration into the project's cache (never /etc), idempotently.
#
#   tools/system-packages.sh    install what is missing (apt-get; a second run only checks, ~0.1 s), write
#                               $CACHE/containers/{containers,storage}.conf and print, on stdout, the
#                               environment that points podman, buildah and skopeo at them:
#                                 CONTAINERS_CONF=...
#                                 CONTAINERS_STORAGE_CONF=...
#                               (`export $(tools/system-packages.sh)`).
#
# CACHE defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/countersign, as in the Makefile.
# Facts of this host the configuration encodes: crun fails on its hybrid cgroup layout, so the runtime is
# runc; podman's default ulimits (a raised nofile) are refused, so default_ulimits is empty and containers
# run with --ulimit host. Images live in the cache's own storage (graphroot), not /var/lib/containers, so
# builds do not touch or depend on what else the machine stores; the storage driver is overlay where the
# kernel allows it here, else vfs.
set -euo pipefail

# buildah: assembles the image; podman + runc: run it; mmdebstrap: its root file system from Debian
# packages; skopeo: copies it (oci layout <-> registries); conmon comes with podman. containerd and the
# standard CNI plugins: the end-to-end test bed's node (tests/support/node.py runs its own containerd, with
# its configuration, root and socket in the test's directories; the package's system service is not used);
# iptables: the node's kube-proxy (iptables mode) writes the Services' rules with it.
PACKAGES="buildah podman runc mmdebstrap skopeo containerd containernetworking-plugins iptables"

log() { printf '[system-packages] %s\n' "$*" >&2; }

missing=()
for pkg in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing Debian packages: ${missing[*]}"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  # runc named with podman: apt then takes it for podman's "crun | runc" dependency, and crun stays out.
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cache=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/countersign}
conf="$cache/containers"
mkdir -p "$conf"

# write FILE: replace FILE with stdin only when it differs (the files' mtimes stay put on a cached run).
write() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

write "$conf/containers.conf" <<CONF
# Written by tools/system-packages.sh; the project's settings for podman and buildah.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF

# The overlay driver where the kernel mounts overlayfs here (root, a file system that can be a lower and
# upper layer), else vfs (a full copy per layer and per container: slower, works everywhere).
driver=vfs
probe=$(mktemp -d "$conf/probe.XXXXXX")
mkdir "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
  "$probe/merged" 2>/dev/null; then
  umount "$probe/merged"
  driver=overlay
fi
rm -rf "$probe"
mkdir -p "$conf/storage-$driver" "$conf/run-$driver"
write "$conf/storage.conf" <<CONF
# Written by tools/system-packages.sh; image storage in the project's cache.
[storage]
driver = "$driver"
graphroot = "$conf/storage-$driver"
runroot = "$conf/run-$driver"
CONF

printf 'CONTAINERS_CONF=%s\nCONTAINERS_STORAGE_CONF=%s\n' "$conf/containers.conf" "$conf/storage.conf"
