#!/usr/bin/env bash
# Builds the container image offline from the release binary and writes it as an OCI archive
# (default target/pxbackup-sidecar-image.tar) that `skopeo copy oci-archive:...`, `podman load`
# and `kind load image-archive` accept. No registry, no base image, no Docker engine: buildah
# (chroot isolation, vfs storage in a folder under target/) builds the final stage of the
# Containerfile FROM scratch with the root filesystem of scripts/image-rootfs.sh.
#
# The same commit gives a byte-identical archive: every timestamp is SOURCE_DATE_EPOCH (default:
# the commit's time), files have fixed owners, modes and order, and the archive is written by
# GNU tar with the same settings.
#
#   cargo build --release --locked --bin pxbackup-sidecar
#   scripts/build-image.sh [--binary PATH] [--output PATH] [--image NAME:TAG]
#
#   SOURCE_DATE_EPOCH        every timestamp (default: the commit's time)
#   PXBACKUP_IMAGE_SOURCE    label org.opencontainers.image.source
#                            (default https://github.com/portworx/pxbackup-sidecar)
#   PXBACKUP_IMAGE_REVISION  label ...revision outside a git checkout (inside: HEAD, -dirty if changed)
#
# Runs as root (rootless buildah is not tried), with Debian's buildah, binutils and tar.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/target/release/pxbackup-sidecar"
output="$root/target/pxbackup-sidecar-image.tar"
image=""
source_url="${PXBACKUP_IMAGE_SOURCE:-https://github.com/portworx/pxbackup-sidecar}"

die() {
  printf 'build-image: %s\n' "$*" >&2
  exit 1
}
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; bin="$2"; shift 2 ;;
    --output) [ $# -ge 2 ] || die "--output needs a path"; output="$2"; shift 2 ;;
    --image) [ $# -ge 2 ] || die "--image needs a name"; image="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done

for tool in buildah tar sha256sum; do
  command -v "$tool" >/dev/null ||
    die "$tool not found; on Debian: apt-get install --no-install-recommends buildah tar coreutils"
done

case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
case "$output" in /*) ;; *) output="$PWD/$output" ;; esac
if [ ! -f "$bin" ]; then
  die "no release binary at $bin; build it first: cargo build --release --locked --bin pxbackup-sidecar"
fi
[ -x "$bin" ] || die "$bin is not executable"

version="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n1)"
[ -n "$version" ] || die "no package version in $root/Cargo.toml"
bin_version="$("$bin" --version 2>/dev/null || true)"
[ "$bin_version" = "pxbackup-sidecar $version" ] ||
  die "$bin says '${bin_version:-nothing}' to --version, Cargo.toml says $version: rebuild it with cargo build --release --locked --bin pxbackup-sidecar"
if newer="$(find "$root/src" "$root/Cargo.toml" "$root/Cargo.lock" -newer "$bin" -print -quit 2>/dev/null)" && [ -n "$newer" ]; then
  printf 'build-image: warning: %s is newer than %s; cargo build --release --locked --bin pxbackup-sidecar\n' "$newer" "$bin" >&2
fi

image="${image:-docker.io/portworx/pxbackup-sidecar:$version}"
# A fully qualified name with a tag (it goes into the archive's index.json as is).
[[ "$image" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] ||
  die "--image '$image' is not REGISTRY/REPOSITORY:TAG (for example docker.io/portworx/pxbackup-sidecar:$version)"

if git -C "$root" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  revision="$(git -C "$root" rev-parse HEAD)"
  git -C "$root" diff --quiet HEAD -- 2>/dev/null || revision="$revision-dirty"
  sde="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct)}"
else
  revision="${PXBACKUP_IMAGE_REVISION:-unknown}"
  sde="${SOURCE_DATE_EPOCH:-0}"
fi
[[ "$sde" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH=$sde is not a number of seconds"

machine="$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')"
case "$machine" in
  *X86-64*) arch=amd64 ;;
  AArch64) arch=arm64 ;;
  *) die "$bin is for '$machine'; only x86-64 and AArch64 binaries are packaged" ;;
esac

work="$root/target/image"
storage="$work/storage"
b() { buildah --root "$storage" --runroot "$work/run" --storage-driver vfs "$@"; }
cleanup() {
  if [ -d "$storage" ]; then
    b rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$storage" "$work/run"
  fi
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work/context"

echo "== root filesystem ($bin, stripped)"
SOURCE_DATE_EPOCH="$sde" bash "$root/scripts/image-rootfs.sh" "$bin" "$work/context/rootfs" | sed 's/^/   /'

# The Containerfile's final stage, fed from the local root filesystem.
awk '/^FROM scratch/ { keep = 1 } keep' "$root/Containerfile" |
  sed 's|^COPY --from=build /rootfs /$|COPY rootfs/ /|' >"$work/context/Containerfile"
grep -qx 'COPY rootfs/ /' "$work/context/Containerfile" ||
  die "the Containerfile's last stage must be 'FROM scratch' with 'COPY --from=build /rootfs /'"

echo "== buildah build $image (scratch, chroot isolation, vfs storage, timestamp $sde)"
b build --quiet --isolation chroot --layers=false --pull=false --timestamp "$sde" \
  --os linux --arch "$arch" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url" \
  -f "$work/context/Containerfile" -t "$image" "$work/context" >/dev/null
b push --quiet --digestfile "$work/manifest-digest" "$image" "oci:$work/layout:$image"

# index.json names the image for every loader: podman reads org.opencontainers.image.ref.name,
# containerd (kind load, ctr import) io.containerd.image.name.
digest="$(cat "$work/manifest-digest")"
manifest="$work/layout/blobs/sha256/${digest#sha256:}"
[ -f "$manifest" ] || die "buildah wrote no manifest $manifest"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}\n' \
  "$digest" "$(stat -c %s "$manifest")" "$image" "$image" >"$work/layout/index.json"

mkdir -p "$(dirname "$output")"
tar --create --file "$output.tmp" --directory "$work/layout" --format=ustar \
  --sort=name --mtime="@$sde" --owner=0 --group=0 --numeric-owner --mode='a+rX,u+w,go-w' \
  oci-layout index.json blobs
mv "$output.tmp" "$output"
cp "$work/manifest-digest" "$output.digest"

echo "== $output"
printf '   image     %s\n   digest    %s\n   sha256    %s\n   size      %s bytes\n' \
  "$image" "$digest" "$(sha256sum "$output" | cut -d' ' -f1)" "$(stat -c %s "$output")"
printf '   load it   kind load image-archive %s  (or: podman load -i %s)\n' "$output" "$output"
printf '   push it   skopeo copy oci-archive:%s docker://%s\n' "$output" "$image"
