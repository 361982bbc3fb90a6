#!/usr/bin/env bash
# Canary release of one version: stage it at weight 0, then let `rollout auto` raise the
# weight while Prometheus says the canary is healthy, and promote it (or roll back).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/canary-deploy.sh --stack STACK --version VERSION [--prometheus URL] [AUTO OPTIONS]

Stages VERSION as the canary (moontv:release.canary.version, weight 0) with `pulumi up`.
With --prometheus, then runs `python -m rollout auto`: health check, next weight, up, wait,
... promote. Without it, stops after staging and prints the next commands.

Options:
  --stack STACK       stack to release to (dev, staging, prod)
  --version VERSION   image tag or tag@sha256:<digest> of the canary
  --prometheus URL    Prometheus base URL; enables the automatic progression
  --dry-run           preview the staging with `pulumi preview` and change nothing
  --site-url URL      public base URL for `rollout check post` (default https://<traffic.host>)
  --skip-gates        do not run `rollout check pre` / `check post` (emergencies only)
  -h, --help          show this help
Any other option goes to `rollout auto` (--steps, --interval, --smoke-url, --min-success,
--max-p99-ms, --success-query, --latency-query); see `python -m rollout auto --help`.

Runs `rollout check pre` before staging and `rollout check post` at the end (a failed
gate exits 1: `python -m rollout rollback --candidate VERSION --stack STACK` takes the
traffic off VERSION if it has any).

Exit status: 0 promoted (or staged), 1 rolled back, failed or a gate failed, 2 bad input.
USAGE
}

# shellcheck source=scripts/lib/rollout.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/rollout.sh"

stack="" version="" prometheus="" dry_run=()
site_url="" gates=true
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --stack) stack="${2:?--stack needs a value}"; shift 2 ;;
    --version) version="${2:?--version needs a value}"; shift 2 ;;
    --prometheus) prometheus="${2:?--prometheus needs a value}"; shift 2 ;;
    --site-url) site_url="${2:?--site-url needs a value}"; shift 2 ;;
    --skip-gates) gates=false; shift ;;
    --dry-run) dry_run=(--dry-run); shift ;;
    *) extra+=("$1"); shift ;;
  esac
done
if [[ -z "$stack" || -z "$version" ]]; then
  echo "canary-deploy.sh: error: --stack and --version are required (see --help)" >&2
  exit 2
fi

gate pre
rollout stage "$version" --stack "$stack" "${dry_run[@]}"
if [[ -z "$prometheus" ]]; then
  if [[ ${#dry_run[@]} -eq 0 ]]; then gate post; fi
  echo "canary $version staged at weight 0. Next:"
  echo "  python -m rollout set-weight 10 --stack $stack   # or: auto --prometheus URL"
  echo "  python -m rollout promote --stack $stack"
  exit 0
fi
if [[ ${#dry_run[@]} -gt 0 ]]; then
  echo "dry run: the canary was previewed, not staged; skipping auto"
  exit 0
fi
rollout auto --stack "$stack" --prometheus "$prometheus" "${extra[@]}"
gate post
