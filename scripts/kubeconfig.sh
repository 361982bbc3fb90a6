#!/usr/bin/env bash
# Write a cluster credential from a secret to ~/.kube/config, the kubeconfig that `pulumi`, the
# Kubernetes provider, `kubectl` and `python -m rollout` read when the stack names no file.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: KUBECONFIG_DATA=<kubeconfig> scripts/kubeconfig.sh SECRET [CONTEXT...]

Writes $KUBECONFIG_DATA (the content of the secret named SECRET: the environment's deployer
kubeconfig) to ~/.kube/config, readable by the owner only, and checks that it holds every
CONTEXT given (the kubernetes.context of the stacks the job deploys). SECRET only names the
secret in messages.

Exit status: 0 written, 1 the secret is empty or lacks a context, 2 bad input.
USAGE
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
secret=$1
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python=python3
[[ -x $root/venv/bin/python ]] && python=$root/venv/bin/python # PyYAML (`make setup`)
if [[ -z ${KUBECONFIG_DATA:-} ]]; then
  echo "::error::the secret $secret is empty or not set for this environment: add the environment's deployer kubeconfig as $secret (docs/pipeline.md)" >&2
  exit 1
fi
umask 077
mkdir -p "$HOME/.kube"
printf '%s\n' "$KUBECONFIG_DATA" >"$HOME/.kube/config"
if [[ $# -gt 0 ]]; then
  have=$(KUBECONFIG_FILE="$HOME/.kube/config" "$python" - <<'PY'
import os

import yaml

with open(os.environ["KUBECONFIG_FILE"], encoding="utf-8") as handle:
    config = yaml.safe_load(handle) or {}
print(" ".join(str(c.get("name")) for c in config.get("contexts") or []))
PY
  ) || { echo "::error::the secret $secret is not a kubeconfig (YAML with contexts)" >&2; exit 1; }
  for context in "$@"; do
    if [[ " $have " != *" $context "* ]]; then
      echo "::error::the kubeconfig in $secret has no context '$context' (it has: ${have:-none})" >&2
      exit 1
    fi
  done
fi
echo "kubeconfig from $secret written to ~/.kube/config (contexts: ${have:-not checked})"
