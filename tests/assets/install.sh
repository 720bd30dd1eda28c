#!/usr/bin/env bash
# Installs what tests/assets/run.sh needs. Idempotent: re-running only checks.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

need_apt=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v chromium >/dev/null || need_apt+=(chromium)
fc-list 2>/dev/null | grep -qi dejavu || need_apt+=(fonts-dejavu-core)
if ((${#need_apt[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}"
fi

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r "$here/requirements.txt"

if [ ! -d "$here/grafana/node_modules/@grafana/schema" ] || [ ! -d "$here/grafana/node_modules/typescript" ]; then
  (cd "$here/grafana" && npm ci --no-audit --no-fund --loglevel=error)
fi
