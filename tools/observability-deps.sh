#!/usr/bin/env bash
# Install the Debian monitoring tools the observability tests run for real:
#   prometheus (prometheus, promtool), prometheus-alertmanager (alertmanager, amtool),
#   prometheus-blackbox-exporter.
# Idempotent: does nothing when every tool is already on PATH. Needs root (or sudo) for apt-get.
# The packages' own services are not started (policy-rc.d denies them); tests start their own
# processes on 127.0.0.1.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: tools/observability-deps.sh [--check]

Installs prometheus, prometheus-alertmanager and prometheus-blackbox-exporter from Debian
when prometheus, promtool, prometheus-alertmanager, amtool or prometheus-blackbox-exporter
is missing (Debian names the Alertmanager binary prometheus-alertmanager).

  --check   only report which tools are missing; exit 1 if any is.
  --help    show this help.
USAGE
}

check_only=0
case "${1:-}" in
  "") ;;
  --check) check_only=1 ;;
  -h|--help) usage; exit 0 ;;
  *) echo "observability-deps: unknown argument '$1' (accepted: --check, --help)" >&2; exit 2 ;;
esac

# tool -> Debian package providing it
declare -A PACKAGE_OF=(
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [amtool]=prometheus-alertmanager
  [prometheus-blackbox-exporter]=prometheus-blackbox-exporter
)

missing_packages=()
for tool in "${!PACKAGE_OF[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    pkg="${PACKAGE_OF[$tool]}"
    [[ " ${missing_packages[*]} " == *" $pkg "* ]] || missing_packages+=("$pkg")
  fi
done

if [[ ${#missing_packages[@]} -eq 0 ]]; then
  echo "observability-deps: all monitoring tools present"
  exit 0
fi

if [[ $check_only -eq 1 ]]; then
  echo "observability-deps: missing packages: ${missing_packages[*]}" >&2
  exit 1
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "observability-deps: need root (or sudo) to install: ${missing_packages[*]}" >&2
    exit 1
  fi
fi

# Keep the packages' init scripts from starting system daemons during installation.
policy_rc=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy_rc ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy_rc" >/dev/null
  $SUDO chmod +x "$policy_rc"
  created_policy=1
fi
cleanup() { if [[ $created_policy -eq 1 ]]; then $SUDO rm -f "$policy_rc"; fi; }
trap cleanup EXIT

echo "observability-deps: apt-get update"
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
echo "observability-deps: installing ${missing_packages[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends \
  "${missing_packages[@]}"
echo "observability-deps: installed ${missing_packages[*]}"
