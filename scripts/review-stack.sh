#!/usr/bin/env bash
# Review stacks on a self-managed backend: one stack `pr-<n>` per pull request, copied from the
# `pr` template (Pulumi.pr.yaml), with its own state, namespace and host.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/review-stack.sh up PR [--render-dir DIR]
       scripts/review-stack.sh url PR
       scripts/review-stack.sh destroy PR
       scripts/review-stack.sh configure STACK

up         Create stack pr-PR from Pulumi.pr.yaml when it does not exist (else reuse it), give it
           namespace moontv-pr-PR and host pr-PR.<the template's traffic.host>, and `pulumi up`.
           Safe to repeat: every push of the pull request runs it. Prints the URL last (and,
           under GitHub Actions, writes url= and created=true|false to $GITHUB_OUTPUT).
url        Print the URL of pr-PR (its `url` output).
destroy    `pulumi destroy` pr-PR, remove the stack (with its state backups) and its file.
           Nothing to do is not an error.
configure  Set the namespace and host of an existing stack whose name ends in -PR (a Pulumi
           Deployments review stack, e.g. pr-acme-moontv-42): the pre-run command of
           deploy/pr.deployment-settings.json.

Options:
  --render-dir DIR  render the manifests to DIR/pr-PR instead of the template's cluster
                    (kubernetes.context is dropped): for local runs and tests
  -h, --help        show this help

State goes to PULUMI_BACKEND_URL (unset: a local file backend in .pulumi-state/; set but empty
is refused); the passphrase comes from PULUMI_CONFIG_PASSPHRASE (or
PULUMI_CONFIG_PASSPHRASE_FILE). On a GitHub-hosted runner (RUNNER_ENVIRONMENT=github-hosted) a
file:// backend is refused: it is deleted with the runner, so every push would create the stack
anew and `destroy` would find nothing. Use a backend that keeps state (s3://, gs://, azblob://
with its credentials in the environment, or Pulumi Cloud).
Exit status: 0 done, 1 pulumi failed, 2 bad input.
USAGE
}

die() { echo "review-stack.sh: error: $*" >&2; exit "${2:-1}"; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
template="Pulumi.pr.yaml"

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -ge 2 ]] || { usage >&2; exit 2; }
command=$1 target=$2
shift 2
render_dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --render-dir) render_dir="${2:?--render-dir needs a value}"; shift 2 ;;
    *) die "unknown option '$1' (see --help)" 2 ;;
  esac
done
case $command in
  up|url|destroy)
    [[ $target =~ ^[1-9][0-9]{0,8}$ ]] || die "PR must be a pull request number such as 42, got '$target'" 2
    pr=$target stack="pr-$target" ;;
  configure)
    [[ $target =~ -([1-9][0-9]{0,8})$ ]] || die "STACK must end in -<pull request number>, got '$target'" 2
    pr=${BASH_REMATCH[1]} stack=$target ;;
  *) die "unknown command '$command' (accepted: up, url, destroy, configure)" 2 ;;
esac
[[ -z $render_dir || $command == up ]] || die "--render-dir goes with up only" 2
cd "$root"
[[ -f $template ]] || die "no review-stack template $template in $root" 2

# A backend that keeps the review stacks' state from one run to the next.
if [[ -n ${PULUMI_BACKEND_URL+x} && -z $PULUMI_BACKEND_URL ]]; then
  die "PULUMI_BACKEND_URL is set but empty (an unset repository variable?): set it to a backend that keeps state (s3://…, gs://…, azblob://…, https://api.pulumi.com)" 2
fi
backend=${PULUMI_BACKEND_URL-file://$root/.pulumi-state}
if [[ $backend == file://* && ${RUNNER_ENVIRONMENT:-} == github-hosted ]]; then
  die "PULUMI_BACKEND_URL is $backend on a GitHub-hosted runner: that directory is deleted with the runner, so the next push would create pr-$pr anew and its destroy would find nothing (the namespace would leak); use s3://, gs://, azblob:// (credentials in the environment) or Pulumi Cloud" 2
fi

# The engine set-up of tools/stack.sh (which runs up, destroy and outputs).
if ! command -v pulumi >/dev/null 2>&1; then
  # shellcheck source=/dev/null
  source tools/env.sh >/dev/null 2>&1 || true
fi
command -v pulumi >/dev/null 2>&1 || die "pulumi CLI not found: install it, or run 'make toolchain' (then source tools/env.sh)"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_BACKEND_URL=$backend
if [[ $PULUMI_BACKEND_URL == file://* ]]; then
  mkdir -p "${PULUMI_BACKEND_URL#file://}"
fi
if [[ $command != configure && -z ${PULUMI_CONFIG_PASSPHRASE+x} \
  && -z ${PULUMI_CONFIG_PASSPHRASE_FILE:-} ]]; then
  die "set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) for review stacks" 2
fi

# Reads this stack alone: `pulumi stack ls` reads every stack's state, and on a shared backend
# another pull request's `up` writing its state at that moment makes it fail ("error: EOF").
exists() { pulumi stack --show-name --stack "$stack" >/dev/null 2>&1; }
cfg() { pulumi config --stack "$stack" "$@"; }

# Namespace moontv-pr-N and host pr-N.<preview domain>, from what the stack was copied from.
configure() {
  local namespace host
  namespace=$(cfg get moontv:namespace)
  host=$(cfg get --path moontv:traffic.host)
  [[ $namespace == *-"$pr" ]] || namespace="$namespace-$pr"
  [[ $host == "pr-$pr."* ]] || host="pr-$pr.$host"
  cfg set moontv:namespace "$namespace"
  cfg set --path moontv:traffic.host "$host"
  echo "review-stack: $stack: namespace $namespace, host $host"
}

up() {
  local created=false
  if exists; then
    echo "review-stack: $stack exists: updating it"
  else
    echo "review-stack: creating $stack from $template"
    created=true
  fi
  # The config always comes from the template (as the pull request has it); the state and the
  # stack's secrets salt stay in the backend.
  cp "$template" "Pulumi.$stack.yaml"
  exists || pulumi stack init "$stack" --non-interactive >/dev/null
  configure
  if [[ -n $render_dir ]]; then
    mkdir -p "$render_dir"
    cfg rm --path moontv:kubernetes.context
    cfg set --path moontv:kubernetes.renderDir "$(cd "$render_dir" && pwd)/$stack"
  fi
  bash tools/stack.sh up "$stack" >&2
  local address
  address=$(url)
  if [[ -n ${GITHUB_OUTPUT:-} ]]; then
    printf 'url=%s\ncreated=%s\n' "$address" "$created" >>"$GITHUB_OUTPUT"
  fi
  echo "$address"
}

url() {
  exists || die "no review stack $stack (run: scripts/review-stack.sh up $pr)"
  pulumi stack output url --stack "$stack"
}

destroy() {
  if ! exists; then
    echo "review-stack: no stack $stack: nothing to destroy"
    rm -f "Pulumi.$stack.yaml"
    return 0
  fi
  [[ -f Pulumi.$stack.yaml ]] || cp "$template" "Pulumi.$stack.yaml"
  bash tools/stack.sh destroy "$stack" >&2
  pulumi stack rm "$stack" --yes --remove-backups --non-interactive
  rm -f "Pulumi.$stack.yaml"
  echo "review-stack: $stack destroyed and removed"
}

"$command"
