#!/usr/bin/env bash
# The whole test suite: set-up (toolchain, Debian test daemons), lint, then pytest.
#   tools/test.sh              everything
#   tools/test.sh integration  integration tests only
# Integration tests start and stop the local clusters they need themselves.
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scope=${1:-all}

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: the pieces the tests run (cached after the first build; make toolchain builds all)"
bash tools/toolchain.sh --only pulumi,python,kubernetes,kwok,etcd,kube,docker-build,docker,node,coredns,kube-router,traefik
# shellcheck source=/dev/null
source tools/env.sh || true # returns 1 while the core toolchain is incomplete

step "Debian packages the tests use"
bash tools/test-deps.sh

if [[ $scope == all ]]; then
  if [[ -f tools/lint.sh ]]; then
    step "lint"
    bash tools/lint.sh
  fi
  paths=(tests)
else
  paths=(tests/integration)
fi

step "pytest ${paths[*]}"
set +e
venv/bin/python -m pytest -ra "${paths[@]}"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "error: pytest collected no tests" >&2
fi
exit "$status"
