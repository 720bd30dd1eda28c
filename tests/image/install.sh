#!/usr/bin/env bash
# Installs, from Debian, what the container image checks need, when missing: buildah (builds the
# image), skopeo (reads and copies it), umoci (unpacks it), bubblewrap (runs it), shellcheck,
# openssl and ca-certificates (the TLS test and the image's CA bundle), binutils (strip), and
# podman and containerd (to check that `podman load` and kind's `ctr images import` take the
# archive; nothing is ever run in them).
set -euo pipefail
missing=()
for pair in buildah:buildah skopeo:skopeo umoci:umoci bwrap:bubblewrap shellcheck:shellcheck \
  openssl:openssl strip:binutils setpriv:util-linux podman:podman containerd:containerd ctr:containerd; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
