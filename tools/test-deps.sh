#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real (idempotent; quiet when present),
# and the real node's host packages (tools/node.sh deps), so that the machine the tests compare
# against (e.g. the node teardown's "as before node-up") already has them.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  echo "Usage: tools/test-deps.sh   (installs redis-server, prometheus, blackbox exporter, redis exporter, alertmanager, docker.io, busybox, nodejs, npm, debootstrap, apache2-utils (ab), chromium (the browser tests drive it with Playwright, which make setup installs from requirements-dev.txt) when missing, then the real node's host packages: tools/node.sh deps, then Renovate from the npm registry: tools/renovate.sh --install)"
  exit 0
fi
bash "$(dirname "${BASH_SOURCE[0]}")/node.sh" deps
declare -A wanted=(
  [redis-server]=redis-server
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-blackbox-exporter]=prometheus-blackbox-exporter
  [prometheus-redis-exporter]=prometheus-redis-exporter
  [amtool]=prometheus-alertmanager
  [dockerd]=docker.io
  [busybox]=busybox-static
  [ab]=apache2-utils
  [node]=nodejs
  [npm]=npm
  [debootstrap]=debootstrap
  [chromium]=chromium
)
missing=()
for binary in "${!wanted[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing+=("${wanted[$binary]}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "test packages present"
  bash "$(dirname "${BASH_SOURCE[0]}")/renovate.sh" --install
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts packaged daemons on install; tests run their own on 127.0.0.1.
for service in redis-server prometheus prometheus-blackbox-exporter prometheus-redis-exporter prometheus-alertmanager prometheus-node-exporter; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$service" >/dev/null 2>&1 || true; fi
  pkill -x "${service}" >/dev/null 2>&1 || true
done
echo "installed: ${missing[*]}"
bash "$(dirname "${BASH_SOURCE[0]}")/renovate.sh" --install
