#!/usr/bin/env bash
# The whole test suite: set-up (toolchain, Debian test packages, the Docker engine), then lint and
# the test groups at the same time (tools/ci_groups.py; the grouping rule is in tests/README.md).
#   tools/test.sh              everything
#   tools/test.sh integration  integration tests only (no lint)
# Integration tests start and stop the local clusters they need themselves. At the end: the time
# per group and one closing line "N passed, N failed, N skipped"; `make bench-ci` prints the
# last run's breakdown again.
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scope=${1:-all}
[[ $scope == all || $scope == integration ]] ||
  { echo "tools/test.sh: unknown scope '$scope' (accepted: all, integration)" >&2 && exit 2; }

step() { printf '\n==> %s\n' "$*"; }
phases=()
# timed NAME COMMAND...: run COMMAND and note its wall time for the breakdown.
timed() {
  local name=$1 start=$EPOCHREALTIME
  shift
  "$@"
  phases+=(--phase "$name=$(python3 -c "print(round($EPOCHREALTIME - $start, 1))")")
}

step "toolchain: the pieces the tests run (cached after the first build; make toolchain builds all)"
timed toolchain bash tools/toolchain.sh --only pulumi,python,kubernetes,kwok,etcd,kube,docker-build,docker,node,coredns,kube-router,traefik,metrics-server
# shellcheck source=/dev/null
source tools/env.sh || true # returns 1 while the core toolchain is incomplete

step "Debian packages the tests use"
timed packages bash tools/test-deps.sh

# The groups share one Docker engine (Swarm tests, image builds, the app twin): start it here so
# that no group stops it under another; stopped at the end if this run started it.
step "Docker engine and Swarm for the groups"
engine_started=0
if ! docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null | grep -qx active; then
  if timed engine bash tools/cluster.sh swarm-up; then
    engine_started=1
  else
    echo "swarm-up failed: the tests that need the engine say why"
  fi
fi
stop_engine() { ((engine_started)) && bash tools/cluster.sh swarm-down >/dev/null 2>&1 || true; }
trap stop_engine EXIT

step "lint and the test groups at the same time"
venv/bin/python tools/ci_groups.py run --scope "$scope" "${phases[@]}"
