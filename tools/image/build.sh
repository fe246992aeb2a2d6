#!/usr/bin/env bash
# Builds Countersign's OCI image without a Docker daemon and without pulling anything from a container
# registry: a root file system from Debian bookworm packages (mmdebstrap), this checkout's wheel and its
# pinned dependencies in a venv, assembled by buildah. Reproducible: the same checkout gives the same
# manifest digest (tests/integration/test_image.py builds it twice and compares).
#
#   tools/image/build.sh [--out DIR] [--force] [--relock]
#
#   --out DIR   where the image lands (default $CACHE/image): DIR/countersign.oci is an OCI image layout
#               with one reference, the version (`skopeo copy oci:DIR/countersign.oci:0.1.0 docker://...`);
#               DIR/countersign.json says its digest, reference, revision and the packages in it.
#   --force     build even when DIR already holds the image of these exact inputs (the tracked files of
#               this checkout as they are in the work tree, and SOURCE_DATE_EPOCH).
#   --relock    resolve the Debian packages afresh and rewrite tools/image/debian-ARCH.lock (otherwise the
#               versions it names are installed, exactly; a build fails if the mirror no longer has one).
#
# Environment: CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/countersign), PY (a Python 3.11 with pip and
# setuptools >= 70.1; default the project's venv), SOURCE_DATE_EPOCH (default: the last commit's time),
# IMAGE_SOURCE (the org.opencontainers.image.source label; default the `origin` remote's URL, if any).
# Needs root (mmdebstrap --mode=root, chroot). Debian's mirror is the one this machine's apt uses.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/countersign}
out=$cache/image
force=0
relock=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --force) force=1; shift ;;
    --relock) relock=1; force=1; shift ;;
    *) echo "usage: $0 [--out DIR] [--force] [--relock]" >&2; exit 2 ;;
  esac
done
PY=${PY:-$cache/venv-3.11/bin/python}
log() { printf '[image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (mmdebstrap --mode=root and chroot)"
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null ||
  die "PY=$PY is not Python 3.11 (the image's interpreter is Debian bookworm's python3.11)"

# podman/buildah/skopeo/mmdebstrap, and the containers configuration in the cache.
while IFS= read -r line; do export "${line?}"; done < <("$repo/tools/system-packages.sh")

cd "$repo"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
revision=$(git rev-parse HEAD)
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
  revision="$revision-dirty"
  log "the work tree has uncommitted changes: they are built in, and the revision label says -dirty"
fi
source_url=${IMAGE_SOURCE-$(git config --get remote.origin.url || true)}
version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(dpkg --print-architecture)
lock=$repo/tools/image/debian-$arch.lock
[[ -f $lock ]] || relock=1

# The inputs: every tracked file as it is in the work tree, and the timestamp.
inputs=$( {
  echo "$SOURCE_DATE_EPOCH $source_url"
  git ls-files -z | xargs -0 sha256sum
} | sha256sum | cut -c1-64)

mkdir -p "$out" "$cache/image/debs" "$cache/image/wheelhouse"
exec 9>"$out/.lock"
flock 9
meta=$out/countersign.json
if [[ $force = 0 && -f $meta && -d $out/countersign.oci ]] &&
  [[ $("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["inputs"])' "$meta") = "$inputs" ]]; then
  log "up to date: $out/countersign.oci ($("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["digest"])' "$meta"))"
  exit 0
fi

start=$(date +%s)
work=$(mktemp -d "$out/work.XXXXXX")
ctr=""
cleanup() {
  [[ -z $ctr ]] || buildah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. Python: this checkout's wheel (built offline from the tracked files) and its dependencies at the
#    versions constraints.txt pins, from the cache's wheelhouse (filled from the package index once).
log "wheel of $(git describe --always --dirty) and its pinned dependencies"
mkdir -p "$work/src" "$work/wheels"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work/src"
(cd "$work/src" && "$PY" -m pip wheel -q --no-deps --no-build-isolation --no-cache-dir --disable-pip-version-check \
  -w "$work/wheels" . >/dev/null)
wheel=$(ls "$work/wheels"/countersign-*.whl)
pip_version=$("$PY" -m pip --version | cut -d' ' -f2)
download() {
  "$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: -c constraints.txt "$@" "$wheel"
}
# The wheelhouse holds dependencies only: pip would take a countersign-0.1.0 wheel it finds there (same file
# name) for this checkout's, with that wheel's dependencies.
rm -f "$cache/image/wheelhouse"/countersign-*.whl
if ! download --no-index --find-links "$cache/image/wheelhouse" -d "$work/wheels" 2>/dev/null; then
  download -d "$cache/image/wheelhouse"
  rm -f "$cache/image/wheelhouse"/countersign-*.whl
  download --no-index --find-links "$cache/image/wheelhouse" -d "$work/wheels"
fi
ls "$cache/image/wheelhouse"/pip-"$pip_version"-*.whl >/dev/null 2>&1 ||
  "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$cache/image/wheelhouse" "pip==$pip_version"
cp "$cache/image/wheelhouse"/pip-"$pip_version"-*.whl "$work/"
# Every dependency must be one constraints.txt pins, at that version.
"$PY" - "$work/wheels" constraints.txt <<'EOF'
import pathlib, re, sys
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
pins = {}
for line in pathlib.Path(sys.argv[2]).read_text().splitlines():
    name, sep, ver = line.split("#")[0].strip().partition("==")
    if sep:
        pins[norm(name)] = ver.strip()
bad = []
for whl in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name, ver = whl.name.split("-")[:2]
    if norm(name) != "countersign" and pins.get(norm(name)) != ver:
        bad.append(f"{name} {ver} (constraints.txt: {pins.get(norm(name), 'not pinned')})")
if bad:
    sys.exit("dependencies not pinned by constraints.txt: " + ", ".join(bad))
EOF

# 2. Debian: the root file system, from the exact package versions of the lock file.
rootfs=$work/rootfs
debs=$cache/image/debs
hooks=(
  --skip=download/empty --skip=essential/unlink
  --setup-hook="mkdir -p \"\$1\"/var/cache/apt/archives"
  --setup-hook="sync-in $debs /var/cache/apt/archives/"
  --customize-hook="sync-out /var/cache/apt/archives $debs"
)
if [[ $relock = 1 ]]; then
  log "Debian bookworm: resolving python3.11, ca-certificates, netbase and the essential set afresh"
  packages=(--variant=essential --include=python3.11,ca-certificates,netbase)
else
  packages=(--variant=custom "--include=$(grep -v '^#' "$lock" | paste -sd, -)")
  log "Debian bookworm: $(grep -vc '^#' "$lock") packages at the versions of ${lock#"$repo"/}"
fi
if ! mmdebstrap --quiet --mode=root --format=directory "${packages[@]}" "${hooks[@]}" \
  bookworm "$rootfs" /etc/apt/sources.list.d/debian.sources; then
  die "mmdebstrap failed. If the mirror no longer carries a version the lock names (a point release or a \
security update replaced it), re-resolve with 'make image-lock' and commit ${lock#"$repo"/}."
fi
if [[ $relock = 1 ]]; then
  {
    echo "# Debian bookworm packages of Countersign's image before pruning ($arch), installed at exactly"
    echo "# these versions by tools/image/build.sh. Regenerate: make image-lock (tools/image/build.sh --relock)."
    chroot "$rootfs" dpkg-query -W -f='${Package}=${Version}\n' | LC_ALL=C sort
  } >"$lock"
  log "wrote ${lock#"$repo"/}"
fi

# 3. The venv: this checkout's wheel and its dependencies, installed by the image's own interpreter.
log "venv /opt/countersign"
mkdir "$rootfs/tmp/wheels"
cp "$work/wheels"/*.whl "$rootfs/tmp/wheels/"
cp "$work"/pip-*.whl "$rootfs/tmp/"
in_root() {
  # PYTHONHASHSEED=0: set and frozenset constants are marshalled in hash order, which must not vary.
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 PYTHONHASHSEED=0 \
    SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" chroot "$rootfs" "$@"
}
in_root /usr/bin/python3.11 -m venv --without-pip /opt/countersign
wheels=()
for whl in "$rootfs"/tmp/wheels/*.whl; do wheels+=("/tmp/wheels/${whl##*/}"); done
in_root /opt/countersign/bin/python "/tmp/$(basename "$work"/pip-*.whl)/pip" install -q --no-index --no-deps \
  --no-compile --no-cache-dir --disable-pip-version-check --no-warn-script-location "${wheels[@]}"
rm -rf "$rootfs/tmp/wheels" "$rootfs"/tmp/pip-*.whl "$rootfs"/opt/countersign/bin/[Aa]ctivate*
# kubernetes.aio, the asynchronous twin of kubernetes.client that the wheel carries too (about 68 MB of
# source, as much again compiled), is never imported: Countersign uses kubernetes.client and .config only
# (provider/kube/api.py), and `import kubernetes` does not load it.
rm -rf "$rootfs"/opt/countersign/lib/python3.11/site-packages/kubernetes/aio

# 4. Prune to what runs Python: no shell, no dpkg/apt, no perl (tools/image/prune.py says what stays).
log "pruning"
"$PY" "$repo/tools/image/prune.py" "$rootfs" >"$work/debian-packages.txt"
# Files that would differ between hosts or builds.
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/machine-id"
chmod 0644 "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf" "$rootfs/etc/machine-id"
find "$rootfs" -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
# Byte code: compiled once here, validated by hash and never against source timestamps (the root file
# system is read-only at run time anyway); a test tree of the standard library is left out.
log "compiling byte code"
for dir in /usr/lib/python3.11 /opt/countersign/lib/python3.11/site-packages; do
  in_root /opt/countersign/bin/python -m compileall -q -q --invalidation-mode unchecked-hash \
    -x '/(lib2to3/tests|test)/' "$dir" || die "compileall failed in $dir"
done
rm -rf "${rootfs:?}"/dev/* "${rootfs:?}"/proc/* "${rootfs:?}"/sys/* "${rootfs:?}"/run/* "${rootfs:?}"/tmp/*
chmod 1777 "$rootfs/tmp"

# 5. One layer: the root file system as a reproducible tar (sorted, owners numeric, times clamped).
log "layer"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --numeric-owner --format=pax \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$rootfs" -cf "$work/rootfs.tar" .
rm -rf "$rootfs"

# 6. The image.
log "buildah commit"
ctr=$(buildah from --quiet --name "countersign-build-$$" scratch)
buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
rm -f "$work/rootfs.tar"
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
labels=(
  --label "org.opencontainers.image.title=countersign"
  --label "org.opencontainers.image.description=Image-verification external-data provider for OPA Gatekeeper"
  --label "org.opencontainers.image.licenses=Apache-2.0"
  --label "org.opencontainers.image.version=$version"
  --label "org.opencontainers.image.revision=$revision"
  --label "org.opencontainers.image.created=$created"
)
[[ -z $source_url ]] || labels+=(--label "org.opencontainers.image.source=$source_url")
buildah config \
  --os linux --arch "$arch" \
  --entrypoint '["/opt/countersign/bin/countersign"]' --cmd '["--help"]' \
  --user 65532:65532 --workingdir /home/nonroot \
  --env PATH=/opt/countersign/bin:/usr/bin \
  --env PYTHONDONTWRITEBYTECODE=1 --env PYTHONUNBUFFERED=1 \
  --port 8443/tcp --port 8080/tcp \
  --created-by "tools/image/build.sh" \
  "${labels[@]}" "$ctr"
buildah commit --quiet --timestamp "$SOURCE_DATE_EPOCH" --format oci --disable-compression=false --identity-label=false --rm \
  "$ctr" "oci:$work/countersign.oci:$version" >/dev/null
ctr=""

digest=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
  "$work/countersign.oci/index.json")
"$PY" - "$work" "$meta.new" <<EOF
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
wheels = sorted(p.name.split("-")[0] + " " + p.name.split("-")[1] for p in (work / "wheels").glob("*.whl"))
debian = (work / "debian-packages.txt").read_text().split("\n")
json.dump({
    "layout": "$out/countersign.oci", "ref": "$version", "digest": "$digest", "version": "$version",
    "revision": "$revision", "created": "$created", "source_date_epoch": $SOURCE_DATE_EPOCH,
    "inputs": "$inputs", "python": wheels, "debian": [line for line in debian if line],
}, open(sys.argv[2], "w"), indent=1)
EOF
rm -rf "$out/countersign.oci"
mv "$work/countersign.oci" "$out/countersign.oci"
mv "$meta.new" "$meta"
log "built $out/countersign.oci:$version $digest in $(( $(date +%s) - start ))s"
echo "$digest"
