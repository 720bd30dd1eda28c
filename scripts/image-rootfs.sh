#!/usr/bin/env bash
# Assembles the root filesystem of the container image from a release binary. Both image builds
# use it: the Containerfile's build stage (with a registry) and scripts/build-image.sh (offline),
# so both images hold the same files:
#
#   /usr/local/bin/pxbackup-sidecar      the binary, stripped
#   <each shared library it links>       found with readelf (NEEDED, interpreter) and ldd, at the
#                                        path ldd resolves, nothing else
#   /etc/ssl/certs/ca-certificates.crt   the CA bundle rustls reads (Debian's ca-certificates)
#   /etc/passwd, /etc/group              nonroot, uid/gid 65532
#   /tmp (1777), /proc, /dev             empty mount points (the root filesystem is read-only)
#
# Every entry is owned by 0:0, has a fixed mode, and SOURCE_DATE_EPOCH as its mtime.
#
# Usage: scripts/image-rootfs.sh BINARY OUTDIR
#   SOURCE_DATE_EPOCH  mtime of every entry (default 0)
#   CA_BUNDLE          CA bundle to copy (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

die() {
  printf 'image-rootfs: %s\n' "$*" >&2
  exit 1
}

[ $# -eq 2 ] || die "usage: $0 BINARY OUTDIR"
bin="$1"
out="$2"
sde="${SOURCE_DATE_EPOCH:-0}"
ca="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

for tool in readelf ldd strip touch; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install binutils libc-bin coreutils)"
done
[[ "$sde" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH=$sde is not a number of seconds"
[ -f "$bin" ] || die "$bin: no such file"
readelf -h "$bin" >/dev/null 2>&1 || die "$bin is not an ELF binary"
[ -s "$ca" ] || die "$ca: no CA bundle (Debian: apt-get install ca-certificates)"
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
  die "$out exists and is not empty"
fi

umask 022
mkdir -p "$out"/usr/local/bin "$out"/etc/ssl/certs "$out"/tmp "$out"/proc "$out"/dev

strip --strip-all -o "$out/usr/local/bin/pxbackup-sidecar" "$bin"
chmod 0755 "$out/usr/local/bin/pxbackup-sidecar"

# The shared libraries: what the dynamic section asks for (NEEDED) and the interpreter, each
# resolved by ldd (which also lists what those libraries need in turn).
mapfile -t needed < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
interp="$(readelf -l "$bin" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]$/\1/p')"
libs=()
if [ -n "$interp" ]; then
  ldd_out="$(ldd "$bin")" || die "ldd $bin failed: $ldd_out"
  if grep -q 'not found' <<<"$ldd_out"; then
    die "$bin needs libraries this machine lacks: $(grep 'not found' <<<"$ldd_out" | tr -s ' \t' ' ')"
  fi
  # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)";
  # the vDSO (linux-vdso.so.1) is the kernel's, not a file.
  mapfile -t libs < <(sed -n -e 's/^[[:space:]]*[^[:space:]]* => \(\/[^[:space:]]*\) (0x[0-9a-f]*)$/\1/p' \
    -e 's/^[[:space:]]*\(\/[^[:space:]]*\) (0x[0-9a-f]*)$/\1/p' <<<"$ldd_out" | sort -u)
  for n in "${needed[@]}"; do
    printf '%s\n' "${libs[@]}" | grep -q "/$n\$" || die "ldd does not resolve $n, which $bin needs"
  done
  printf '%s\n' "${libs[@]}" | grep -qxF "$interp" || die "ldd does not list the interpreter $interp"
elif [ ${#needed[@]} -gt 0 ]; then
  die "$bin needs shared libraries (${needed[*]}) but has no interpreter"
fi
for lib in "${libs[@]}"; do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
  chmod 0755 "$out$lib"
done

cp -L "$ca" "$out/etc/ssl/certs/ca-certificates.crt"
printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$out/etc/passwd"
printf 'nonroot:x:65532:\n' >"$out/etc/group"
chmod 0644 "$out/etc/ssl/certs/ca-certificates.crt" "$out/etc/passwd" "$out/etc/group"
find "$out" -type d -exec chmod 0755 {} +
chmod 1777 "$out/tmp"

if [ "$(id -u)" = 0 ]; then
  chown -R 0:0 "$out"
fi
find "$out" -exec touch -h -d "@$sde" {} +

(cd "$out" && find . -mindepth 1 | LC_ALL=C sort | sed 's/^\.//')
