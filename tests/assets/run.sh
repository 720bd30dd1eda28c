#!/usr/bin/env bash
# Runs every check of the chart, dashboards and alerts (see README in this folder's tests).
# PXBACKUP_SIDECAR_BIN: the built binary (default target/release/pxbackup-sidecar). The catalog
# and end-to-end tests fail, not skip, when it is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export PXBACKUP_SIDECAR_BIN="${PXBACKUP_SIDECAR_BIN:-$root/target/release/pxbackup-sidecar}"
case "$PXBACKUP_SIDECAR_BIN" in /*) ;; *) PXBACKUP_SIDECAR_BIN="$root/$PXBACKUP_SIDECAR_BIN" ;; esac
cd "$here"
exec python3 -m pytest -q "$@"
