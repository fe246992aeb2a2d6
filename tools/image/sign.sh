#!/usr/bin/env bash
# Pushes Countersign's image (tools/image/build.sh) to a registry, describes it and signs it, by digest:
#
#   1. skopeo copy of the OCI layout to REPOSITORY:TAG (the manifest is kept: the registry's digest is the
#      build's, checked);
#   2. an SPDX 2.3 SBOM (tools/image/sbom.sh, syft) attached as an OCI referrer (oras attach, artifact type
#      application/spdx+json);
#   3. the same SBOM as a cosign attestation (cosign attest --type spdxjson), signed with the cosign key;
#   4. a cosign signature (cosign sign) with that key;
#   5. a notation signature (notation sign) with the notation key.
#
# examples/self-policy.yaml is a Countersign policy that requires all of it (docs/operators.md, "Signing
# the image").
#
#   tools/image/sign.sh --repository REGISTRY/REPOSITORY --cosign-key KEY --notation-key NAME [options]
#
#   --repository R      where to push, e.g. registry.example.com/platform/countersign
#   --cosign-key KEY    a cosign private key (cosign generate-key-pair; its password in COSIGN_PASSWORD) or a
#                       KMS URI cosign understands (awskms://..., hashivault://...)
#   --notation-key N    the name of a key in notation's signing keys (notation key ls)
#   --image DIR         the build's output directory (default $CACHE/image)
#   --tag TAG           the tag to push (default the image's version)
#   --sbom FILE         attach this SPDX JSON document instead of generating one (it must name the image's
#                       digest, as sbom.sh's documents do)
#   --no-tlog           cosign signs without a transparency log (no Rekor, no Fulcio, no TSA: key only;
#                       the verifier then needs transparencyLog: skip). Default: cosign's own defaults.
#   --plain-http        the registry speaks plain HTTP (a local registry on loopback; never across a network)
#
# Registry credentials are the tools' usual ones (docker config / containers auth.json). The tools are the
# pinned ones of the tools cache ($COUNTERSIGN_TOOLS/bin: tools/install.sh skopeo oras cosign notation
# syft), else those on PATH. Prints the signed reference, REPOSITORY@DIGEST, on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/countersign}
image_dir=$cache/image
repository="" cosign_key="" notation_key="" tag="" sbom="" no_tlog=0 plain_http=0
usage() {
  echo "usage: $0 --repository REGISTRY/REPOSITORY --cosign-key KEY --notation-key NAME" \
    "[--image DIR] [--tag TAG] [--sbom FILE] [--no-tlog] [--plain-http]" >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case $1 in
    --repository) repository=${2:-}; shift 2 ;;
    --cosign-key) cosign_key=${2:-}; shift 2 ;;
    --notation-key) notation_key=${2:-}; shift 2 ;;
    --image) image_dir=${2:-}; shift 2 ;;
    --tag) tag=${2:-}; shift 2 ;;
    --sbom) sbom=${2:-}; shift 2 ;;
    --no-tlog) no_tlog=1; shift ;;
    --plain-http) plain_http=1; shift ;;
    *) usage ;;
  esac
done
[[ -n $repository && -n $cosign_key && -n $notation_key ]] || usage
log() { printf '[sign] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# A repository, not a reference: no tag, no digest, and a registry host in front.
[[ $repository =~ ^[A-Za-z0-9.-]+(:[0-9]+)?/[a-z0-9]+([._/-][a-z0-9]+)*$ ]] ||
  die "--repository must be REGISTRY/REPOSITORY without a tag or digest, not '$repository'"

tools=${COUNTERSIGN_TOOLS:-$cache/tools}
tool() {
  if [[ -x $tools/bin/$1 ]]; then
    echo "$tools/bin/$1"
  else
    command -v "$1" || die "$1 is not installed: run 'tools/install.sh $1'"
  fi
}
skopeo=$(tool skopeo) oras=$(tool oras) cosign=$(tool cosign) notation=$(tool notation)

meta=$image_dir/countersign.json
[[ -f $meta ]] || die "no image in $image_dir (no countersign.json): build it first (make image)"
read -r layout ref digest < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(m["layout"], m["ref"], m["digest"])' "$meta")
tag=${tag:-$ref}
pinned=$repository@$digest

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
step() { log "$1 ($(( $(date +%s) - start ))s)"; }

skopeo_flags=() oras_flags=() cosign_flags=() notation_flags=()
if [[ $plain_http = 1 ]]; then
  skopeo_flags=(--dest-tls-verify=false)
  oras_flags=(--plain-http)
  cosign_flags=(--allow-insecure-registry --allow-http-registry)
  notation_flags=(--insecure-registry)
fi
if [[ $no_tlog = 1 ]]; then
  # cosign v3 signs through a signing configuration (which services to use) and checks what it made
  # against a trusted root: both empty here, so nothing is uploaded and nothing is fetched.
  "$cosign" signing-config create --out "$work/signing-config.json" >/dev/null
  "$cosign" trusted-root create --out "$work/trusted-root.json" >/dev/null
  cosign_flags+=(--signing-config "$work/signing-config.json" --trusted-root "$work/trusted-root.json")
fi

# 1. Push. skopeo keeps the layout's manifest as it is, so the registry's digest is the build's.
step "pushing $layout:$ref to $repository:$tag"
"$skopeo" copy --quiet --preserve-digests --digestfile "$work/digest" "${skopeo_flags[@]}" \
  "oci:$layout:$ref" "docker://$repository:$tag"
[[ $(cat "$work/digest") = "$digest" ]] ||
  die "the registry stored $(cat "$work/digest"), not the build's $digest"

# 2. The SBOM, attached as a referrer.
if [[ -z $sbom ]]; then
  step "generating the SBOM"
  sbom=$("$here/sbom.sh" --image "$image_dir" --out "$work/countersign.spdx.json")
fi
python3 - "$sbom" "$digest" <<'EOF' || die "$sbom does not describe $digest"
import json, sys
doc = json.load(open(sys.argv[1]))
sums = {c["checksumValue"] for p in doc.get("packages", []) if p.get("primaryPackagePurpose") == "CONTAINER"
        for c in p.get("checksums", []) if c.get("algorithm") == "SHA256"}
sys.exit(0 if sums == {sys.argv[2].removeprefix("sha256:")} else 1)
EOF
step "attaching the SBOM (oras attach, application/spdx+json)"
mkdir "$work/attach"
cp "$sbom" "$work/attach/countersign.spdx.json"
(cd "$work/attach" && "$oras" attach --no-tty "${oras_flags[@]}" --artifact-type application/spdx+json \
  "$pinned" "countersign.spdx.json:application/spdx+json" >/dev/null)

# 3-4. cosign: the SBOM as an attestation, and the signature.
step "cosign attest --type spdxjson"
"$cosign" attest --yes --key "$cosign_key" --type spdxjson --predicate "$sbom" "${cosign_flags[@]}" \
  "$pinned" >/dev/null
step "cosign sign"
"$cosign" sign --yes --key "$cosign_key" "${cosign_flags[@]}" "$pinned" >/dev/null

# 5. notation, to the referrers API where the registry has it (else the sha256-<hex> tag).
step "notation sign"
"$notation" sign --key "$notation_key" --force-referrers-tag=false "${notation_flags[@]}" "$pinned" >/dev/null

step "signed $pinned"
echo "$pinned"
