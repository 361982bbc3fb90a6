#!/usr/bin/env bash
# Release decisions round-trip through git: a pipeline run starts from the stack file the last
# run left (sync) and commits the decision it made back (record), so the next run cannot revert
# a promotion by deploying an older copy of Pulumi.<stack>.yaml.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/release-state.sh sync STACK [--remote NAME] [--branch BRANCH]
       scripts/release-state.sh record STACK [--remote NAME] [--branch BRANCH] [--pr]

sync    Make Pulumi.STACK.yaml in the checkout what the last release decision left: the file
        on REMOTE/BRANCH, merged with REMOTE/release/STACK while that branch holds a decision
        not yet merged (a prod pull request under review). Run it before `pulumi up`.
record  If Pulumi.STACK.yaml changed since sync (stage, promote, rollback, abort, switch),
        commit it as the release bot with a message naming the decision and its reason (from
        moontv:release.lastDecision), merged three-way onto the newest REMOTE/BRANCH, and push.
        Retries when the branch moved. With --pr, push to release/STACK instead and open (or
        update) a pull request to BRANCH: for branches where reviews are required.

Options:
  --remote NAME    git remote (default: origin)
  --branch BRANCH  the branch the stack files live on (default: main)
  --pr             record: a pull request instead of a commit on BRANCH
  -h, --help       show this help

Environment: GH_TOKEN (a token allowed to push; also used by `gh pr create`), RELEASE_BOT_NAME,
RELEASE_BOT_EMAIL (the commit identity; default github-actions[bot]), GITHUB_SERVER_URL,
GITHUB_REPOSITORY, GITHUB_RUN_ID (the run linked from the commit message).
Exit status: 0 done (or nothing to record), 1 git or push failed, 2 bad input.
USAGE
}

die() { echo "release-state.sh: error: $*" >&2; exit "${2:-1}"; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/venv/bin/python" ]]; then python="$root/venv/bin/python"; else python=python3; fi
fi

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ $# -ge 2 ]] || { usage >&2; exit 2; }
command=$1 stack=$2
shift 2
remote=origin branch=main pr=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --remote) remote="${2:?--remote needs a value}"; shift 2 ;;
    --branch) branch="${2:?--branch needs a value}"; shift 2 ;;
    --pr) pr=true; shift ;;
    *) die "unknown option '$1' (see --help)" 2 ;;
  esac
done
case $command in
  sync|record) ;;
  *) die "unknown command '$command' (accepted: sync, record)" 2 ;;
esac
[[ $stack =~ ^[a-z0-9][a-z0-9.-]*$ ]] || die "STACK must be a stack name such as staging, got '$stack'" 2
file="Pulumi.$stack.yaml"
cd "$root"
[[ -f $file ]] || die "no stack file $file in $root" 2
release_branch="release/$stack"
state_dir="$(git rev-parse --absolute-git-dir)/moontv-release"
base_file="$state_dir/$stack.base"

# git with the push token as an HTTP header (never written to .git/config or the remote URL).
g() {
  if [[ -n ${GH_TOKEN:-} ]]; then
    local auth
    auth=$(printf 'x-access-token:%s' "$GH_TOKEN" | base64 | tr -d '\n')
    git -c "http.extraheader=AUTHORIZATION: basic $auth" "$@"
  else
    git "$@"
  fi
}

has_remote_branch() { git rev-parse --verify --quiet "refs/remotes/$remote/$1" >/dev/null; }

fetch() {
  g fetch --quiet --no-tags "$remote" "+refs/heads/$branch:refs/remotes/$remote/$branch"
  # The release branch may not exist: that is the normal case.
  g fetch --quiet --no-tags "$remote" \
    "+refs/heads/$release_branch:refs/remotes/$remote/$release_branch" 2>/dev/null || true
}

# The stack file as the last decision left it, on stdout: BRANCH's copy, merged three-way with
# the release branch's copy while that branch has commits BRANCH lacks.
released_file() {
  local main_ref="$remote/$branch" tmp status=0
  if has_remote_branch "$release_branch" \
    && ! git merge-base --is-ancestor "$remote/$release_branch" "$main_ref"; then
    tmp=$(mktemp -d)
    git show "$main_ref:$file" >"$tmp/ours"
    git show "$remote/$release_branch:$file" >"$tmp/theirs"
    git show "$(git merge-base "$main_ref" "$remote/$release_branch"):$file" >"$tmp/base" \
      2>/dev/null || : >"$tmp/base"
    git merge-file -q "$tmp/ours" "$tmp/base" "$tmp/theirs" || status=$?
    if [[ $status -ne 0 ]]; then
      rm -rf "$tmp"
      die "$file differs on $branch and $release_branch in the same lines: merge or close the pending release pull request first"
    fi
    cat "$tmp/ours"
    rm -rf "$tmp"
  else
    git show "$main_ref:$file"
  fi
}

sync() {
  fetch
  mkdir -p "$state_dir"
  released_file >"$state_dir/$stack.synced"
  if cmp -s "$state_dir/$stack.synced" "$file"; then
    echo "release-state: $file is already what $remote/$branch holds"
  else
    cp "$state_dir/$stack.synced" "$file"
    echo "release-state: $file taken from $remote/$branch (and a pending $release_branch, if any): the last recorded release decision"
  fi
  mv "$state_dir/$stack.synced" "$base_file"
}

# "action<TAB>reason<TAB>at" of moontv:release.lastDecision in the given stack file.
decision() {
  "$python" - "$1" <<'PY'
import sys

import yaml

config = (yaml.safe_load(open(sys.argv[1], encoding="utf-8")) or {}).get("config") or {}
last = (config.get("moontv:release") or {}).get("lastDecision") or {}
print("\t".join(str(last.get(k) or "") for k in ("action", "reason", "at")))
PY
}

message() {
  local action reason at run=""
  IFS=$'\t' read -r action reason at < <(decision "$file")
  action=${action:-edit}
  if [[ -n ${GITHUB_RUN_ID:-} && -n ${GITHUB_REPOSITORY:-} ]]; then
    run="${GITHUB_SERVER_URL:-https://github.com}/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID"
  fi
  printf 'release(%s): %s\n\nDecision: %s\nReason: %s\nAt: %s\n' \
    "$stack" "${reason:-$action}" "$action" "${reason:-not given}" "${at:-unknown}"
  [[ -z $run ]] || printf 'Run: %s\n' "$run"
}

# Commit the decision onto TARGET_REF (a remote-tracking ref) in a scratch worktree and push it
# to refs/heads/DEST. Returns 3 when the push was refused (the branch moved).
commit_onto() {
  local target=$1 dest=$2 msg=$3 work status=0
  work=$(mktemp -d)
  git worktree add --quiet --detach "$work/tree" "$target" || die "cannot check out $target"
  if [[ $pr == true ]] && ! git -C "$work/tree" merge-base --is-ancestor "$remote/$branch" HEAD; then
    git -C "$work/tree" -c user.name="$bot_name" -c user.email="$bot_email" \
      merge --quiet --no-edit "$remote/$branch" \
      || { git worktree remove --force "$work/tree"; rm -rf "$work"; die "cannot bring $release_branch up to date with $branch: resolve it by hand"; }
  fi
  git merge-file -q "$work/tree/$file" "$base_file" "$root/$file" || status=$?
  if [[ $status -ne 0 ]]; then
    git worktree remove --force "$work/tree"; rm -rf "$work"
    die "$file changed on $target in the same lines as this release decision: nothing pushed; merge by hand"
  fi
  git -C "$work/tree" add "$file" || die "cannot stage $file"
  if git -C "$work/tree" diff --cached --quiet; then
    echo "release-state: $target already holds this decision"
  else
    git -C "$work/tree" -c user.name="$bot_name" -c user.email="$bot_email" \
      commit --quiet --file=- <<<"$msg" || die "cannot commit the release decision"
    if ! g -C "$work/tree" push --quiet "$remote" "HEAD:refs/heads/$dest"; then
      status=3
    else
      echo "release-state: pushed $(git -C "$work/tree" rev-parse --short HEAD) to $remote $dest"
    fi
  fi
  git worktree remove --force "$work/tree"
  rm -rf "$work"
  return "$status"
}

open_pull_request() {
  local title=$1 body=$2
  if ! command -v gh >/dev/null 2>&1 || [[ -z ${GH_TOKEN:-} ]]; then
    echo "release-state: gh or GH_TOKEN missing: open a pull request from $release_branch to $branch by hand"
    return 0
  fi
  if [[ -n $(gh pr list --head "$release_branch" --base "$branch" --state open --json number --jq '.[].number') ]]; then
    echo "release-state: the open pull request from $release_branch now holds this decision"
  else
    gh pr create --head "$release_branch" --base "$branch" --title "$title" --body "$body"
  fi
}

record() {
  [[ -f $base_file ]] || die "run \`scripts/release-state.sh sync $stack\` before the release (nothing to compare with)" 2
  if cmp -s "$base_file" "$file"; then
    echo "release-state: $file unchanged: no release decision to record"
    return 0
  fi
  bot_name=${RELEASE_BOT_NAME:-github-actions[bot]}
  bot_email=${RELEASE_BOT_EMAIL:-41898282+github-actions[bot]@users.noreply.github.com}
  local msg attempt status target dest
  msg=$(message)
  for attempt in 1 2 3 4 5; do
    fetch
    if [[ $pr == true ]]; then
      dest=$release_branch
      if has_remote_branch "$release_branch"; then target="$remote/$release_branch"; else target="$remote/$branch"; fi
    else
      dest=$branch target="$remote/$branch"
    fi
    status=0
    commit_onto "$target" "$dest" "$msg" || status=$?
    if [[ $status -eq 0 ]]; then
      [[ $pr == true ]] && open_pull_request "$(head -n1 <<<"$msg")" "$msg"
      return 0
    fi
    [[ $status -eq 3 ]] || return "$status"
    echo "release-state: $dest moved while pushing (attempt $attempt); retrying" >&2
    sleep "$attempt"
  done
  die "could not push the release decision to $remote $dest after 5 attempts"
}

"$command"
