#!/usr/bin/env bash
# Run a Pulumi command on one stack of this project with the project's own set-up.
set -euo pipefail

usage() {
  cat <<'TXT'
Usage: tools/stack.sh COMMAND STACK [pulumi args...]

COMMAND  preview | up | destroy | refresh | outputs
STACK    dev | staging | prod | swarm (a Pulumi.<STACK>.yaml beside Pulumi.yaml)

Uses `pulumi` from PATH, else the offline toolchain (`make toolchain`; it is built when
missing). State goes to PULUMI_BACKEND_URL (unset: a local file backend in .pulumi-state/; set
but empty is refused: an unset CI variable must not mean a fresh, empty backend).
The passphrase comes from PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE); when
neither is set the dev stack uses an empty passphrase, other stacks stop and ask for one.
TXT
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -ge 2 ]] || { usage >&2; exit 2; }
command=$1 stack=$2
shift 2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

case $command in
  preview|up|destroy|refresh|outputs) ;;
  *) echo "error: unknown command '$command' (accepted: preview, up, destroy, refresh, outputs)" >&2; exit 2 ;;
esac
if [[ ! -f Pulumi.$stack.yaml ]]; then
  echo "error: no stack file Pulumi.$stack.yaml (accepted: $(ls Pulumi.*.yaml | sed 's/Pulumi\.\(.*\)\.yaml/\1/' | tr '\n' ' '))" >&2
  exit 2
fi

# An empty value is a mistake (an unset repository variable), not a request for the default.
if [[ -n ${PULUMI_BACKEND_URL+x} && -z $PULUMI_BACKEND_URL ]]; then
  echo "error: PULUMI_BACKEND_URL is set but empty (an unset repository variable?): set it to the backend that holds the state of '$stack' (https://api.pulumi.com, s3://…, file://…), or unset it for the local .pulumi-state/ backend" >&2
  exit 2
fi

# The program's virtualenv (Pulumi.yaml: virtualenv: venv).
[[ -x venv/bin/python ]] || make --no-print-directory setup

# shellcheck source=/dev/null
source tools/env.sh 2>/dev/null || true # returns 1 while the core toolchain is incomplete
if ! command -v pulumi >/dev/null 2>&1; then
  echo "pulumi CLI not found on PATH: building the offline toolchain (tools/toolchain.sh)…" >&2
  bash tools/toolchain.sh --only pulumi,python,kubernetes
  # shellcheck source=/dev/null
  source tools/env.sh
fi
command -v pulumi >/dev/null 2>&1 || {
  echo "error: pulumi CLI still not found. Install it, or run 'make toolchain' and read docs/toolchain.md." >&2
  exit 1
}

export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL-file://$root/.pulumi-state}
if [[ $PULUMI_BACKEND_URL == file://* ]]; then
  mkdir -p "${PULUMI_BACKEND_URL#file://}"
fi
if [[ -z ${PULUMI_CONFIG_PASSPHRASE+x} && -z ${PULUMI_CONFIG_PASSPHRASE_FILE:-} ]]; then
  if [[ $stack == dev ]]; then
    export PULUMI_CONFIG_PASSPHRASE=""
  else
    echo "error: set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) for stack '$stack'" >&2
    exit 2
  fi
fi

pulumi stack select --create "$stack" --non-interactive >/dev/null
case $command in
  preview) exec pulumi preview --stack "$stack" --diff "$@" ;;
  up) exec pulumi up --stack "$stack" --yes --skip-preview "$@" ;;
  destroy) exec pulumi destroy --stack "$stack" --yes "$@" ;;
  refresh) exec pulumi refresh --stack "$stack" --yes "$@" ;;
  outputs) exec pulumi stack output --stack "$stack" --json "$@" ;;
esac
