#!/usr/bin/env bash
# Blue-green release of one version: deploy it to the inactive colour (reachable through the
# preview Service), then switch traffic to it - checked by Prometheus when --prometheus is given.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/blue-green-deploy.sh --stack STACK --version VERSION [--prometheus URL] [OPTIONS]

Deploys VERSION to the inactive colour (moontv:release.blueGreen.<colour>) with `pulumi up`;
it serves the preview Service `moontv-preview` only. Then:
  --prometheus URL  `python -m rollout auto`: check the preview colour, switch, wait
                    --interval, check again and switch back if it turned unhealthy
  --switch          switch without health checks (`python -m rollout switch`)
  (neither)         stop after the preview deployment and print the next command

Options:
  --stack STACK       stack to release to (dev, staging, prod)
  --version VERSION   image tag or tag@sha256:<digest> (prod requires a digest)
  --site-url URL      public base URL for `rollout check post` (default https://<traffic.host>)
  --skip-gates        do not run `rollout check pre` / `check post` (emergencies only)
  -h, --help          show this help
Any other option goes to `rollout auto` (--interval, --smoke-url, --min-success, --max-p99-ms,
--success-query, --latency-query); see `python -m rollout auto --help`.

Runs `rollout check pre` before deploying and `rollout check post` at the end (a failed
gate exits 1: `python -m rollout rollback --candidate VERSION --stack STACK` switches back
only if VERSION is the active colour).

Exit status: 0 switched (or deployed to preview), 1 failed, switched back or a gate failed,
2 bad input.
USAGE
}

# shellcheck source=scripts/lib/rollout.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/rollout.sh"

stack="" version="" prometheus="" switch=false
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
    --switch) switch=true; shift ;;
    *) extra+=("$1"); shift ;;
  esac
done
if [[ -z "$stack" || -z "$version" ]]; then
  echo "blue-green-deploy.sh: error: --stack and --version are required (see --help)" >&2
  exit 2
fi
if [[ -n "$prometheus" && "$switch" == true ]]; then
  echo "blue-green-deploy.sh: error: --switch and --prometheus exclude each other" >&2
  exit 2
fi

gate pre
rollout stage "$version" --stack "$stack"
if [[ -n "$prometheus" ]]; then
  rollout auto --stack "$stack" --prometheus "$prometheus" "${extra[@]}"
elif [[ "$switch" == true ]]; then
  rollout switch --stack "$stack"
else
  echo "$version deployed to the preview colour. Check it through moontv-preview, then:"
  echo "  python -m rollout switch --stack $stack"
fi
gate post
