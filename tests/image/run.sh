#!/usr/bin/env bash
# The container image checks (test_image.py): builds the image twice with
# scripts/build-image.sh from the release binary, inspects, unpacks and runs it. Needs root and
# the tools of install.sh. PXBACKUP_SIDECAR_BIN: the release binary (default
# target/release/pxbackup-sidecar). Arguments: the tests to run (default test_image; e.g. test_image.TestTls).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export PXBACKUP_SIDECAR_BIN="${PXBACKUP_SIDECAR_BIN:-$root/target/release/pxbackup-sidecar}"
case "$PXBACKUP_SIDECAR_BIN" in /*) ;; *) PXBACKUP_SIDECAR_BIN="$PWD/$PXBACKUP_SIDECAR_BIN" ;; esac
if [ ! -f "$PXBACKUP_SIDECAR_BIN" ]; then
  echo "tests/image: no release binary at $PXBACKUP_SIDECAR_BIN; run: cargo build --release --locked --bin pxbackup-sidecar" >&2
  exit 1
fi
cd "$here"
exec python3 -m unittest -v "${@:-test_image}"
