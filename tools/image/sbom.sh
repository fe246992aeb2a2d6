#!/usr/bin/env bash
# Writes an SPDX 2.3 JSON SBOM of Countersign's image (tools/image/build.sh) with syft: the Debian packages
# (/var/lib/dpkg/status, which the build prunes to exactly the packages left) and the Python distributions
# of the venv (their *.dist-info), read from the OCI layout itself, not from the build's notes.
#
#   tools/image/sbom.sh [--image DIR] [--out FILE]
#
#   --image DIR   the build's output directory (default $CACHE/image): DIR/countersign.json names the
#                 layout, its reference and digest
#   --out FILE    where the SBOM goes (default DIR/countersign.spdx.json); the path is printed on stdout
#
# The document's root package is the image (name countersign, its version, the manifest digest as its
# SHA256 checksum); the script checks that, and that every Debian and Python package the build recorded in
# countersign.json is in the document at its version. syft is the pinned one of the tools cache
# (tools/install.sh syft), else the one on PATH. It runs offline (its update check is off).
set -euo pipefail

cache=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/countersign}
image_dir=$cache/image
out=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --image) image_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--image DIR] [--out FILE]" >&2; exit 2 ;;
  esac
done
log() { printf '[sbom] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

meta=$image_dir/countersign.json
[[ -f $meta ]] || die "no image in $image_dir (no countersign.json): build it first (make image)"
out=${out:-$image_dir/countersign.spdx.json}
tools=${COUNTERSIGN_TOOLS:-$cache/tools}
syft=$tools/bin/syft
[[ -x $syft ]] || syft=$(command -v syft) ||
  die "syft is not installed: run 'tools/install.sh syft' (it builds the pinned version into $tools/bin)"

read -r layout ref digest version < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(m["layout"], m["ref"], m["digest"], m["version"])' "$meta")
[[ -d $layout ]] || die "$meta names $layout, which does not exist"

start=$(date +%s)
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# The OCI layout holds exactly one image, the one countersign.json describes (checked below by digest).
SYFT_CHECK_FOR_APP_UPDATE=false "$syft" scan "oci-dir:$layout" --quiet \
  --source-name countersign --source-version "$version" --output "spdx-json=$tmp"

python3 - "$tmp" "$meta" "$digest" <<'EOF' || die "the SBOM does not describe the image (see above)"
import json, re, sys
doc = json.load(open(sys.argv[1]))
meta = json.load(open(sys.argv[2]))
digest = sys.argv[3]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
problems = []
if doc.get("spdxVersion") != "SPDX-2.3":
    problems.append(f"spdxVersion is {doc.get('spdxVersion')!r}")
roots = [p for p in doc["packages"] if p.get("primaryPackagePurpose") == "CONTAINER"]
sums = [c["checksumValue"] for p in roots for c in p.get("checksums", []) if c["algorithm"] == "SHA256"]
if sums != [digest.removeprefix("sha256:")]:
    problems.append(f"the document's image is {sums}, not {digest}")
found = {}
for p in doc["packages"]:
    for ref in p.get("externalRefs", []):
        if ref.get("referenceType") == "purl":
            kind = ref["referenceLocator"].split("/")[0]
            name = norm(p["name"]) if kind == "pkg:pypi" else p["name"]
            found.setdefault(kind, set()).add((name, p.get("versionInfo")))
for kind, entries, key in (("pkg:deb", meta["debian"], str), ("pkg:pypi", meta["python"], norm)):
    wanted = {(key(line.split()[0]), line.split()[1]) for line in entries}
    missing = wanted - found.get(kind, set())
    if missing:
        problems.append(f"{kind} packages missing: {sorted(missing)}")
for problem in problems:
    print(f"[sbom] {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
log "SPDX 2.3 SBOM of countersign $version ($digest): $out, in $(( $(date +%s) - start ))s"
echo "$out"
