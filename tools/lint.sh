#!/usr/bin/env bash
# Static checks of the whole repository; exits non-zero on the first failing tool.
#   tools/lint.sh           ruff, mypy (components/ rollout/), hadolint, actionlint,
#                           zizmor (offline), shellcheck (warnings and errors) on every *.sh
# Tools come from the virtualenv (requirements-dev.txt); actionlint has no binary wheel, so
# it is built once from its Go module into a cache outside the repository
# (${MOONTV_TOOLS_CACHE:-~/.cache/moontv-tools}).
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv_bin="$root/venv/bin"
if [[ ! -x "$venv_bin/ruff" ]]; then
  echo "lint: $venv_bin/ruff is missing; run: make setup" >&2
  exit 2
fi
export PATH="$venv_bin:$PATH"

# renovate: datasource=go depName=github.com/rhysd/actionlint
ACTIONLINT_VERSION=1.7.12
cache="${MOONTV_TOOLS_CACHE:-$HOME/.cache/moontv-tools}/actionlint-$ACTIONLINT_VERSION"
actionlint="$cache/actionlint"
if [[ ! -x "$actionlint" ]]; then
  echo "lint: building actionlint $ACTIONLINT_VERSION (once) into $cache"
  GOBIN="$cache" go install \
    "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
fi

step() { printf '==> %s\n' "$*"; }

step "ruff"
ruff check .

step "mypy components rollout"
mypy components rollout

step "hadolint docker/Dockerfile"
hadolint docker/Dockerfile

step "actionlint"
"$actionlint" -shellcheck "$venv_bin/shellcheck"

step "zizmor --offline"
zizmor --offline --no-progress .github/workflows

step "shellcheck"
mapfile -t scripts < <(git ls-files -co --exclude-standard -- '*.sh')
if [[ ${#scripts[@]} -gt 0 ]]; then
  shellcheck --severity=warning "${scripts[@]}"
fi

echo "lint: all checks passed"
