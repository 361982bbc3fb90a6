# shellcheck shell=bash disable=SC2154
# Sourced by the deploy scripts: the Python that runs `python -m rollout`, and the deploy gates.
# The caller sets $stack, $gates (true/false), $site_url and $prometheus before calling gate.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/venv/bin/python" ]]; then python="$root/venv/bin/python"; else python=python3; fi
fi

rollout() { (cd "$root" && "$python" -m rollout "$@"); }
# Deploy gates (docs/runbooks/daily-operations.md): pre before any change, post after it.
gate() {
  [[ "$gates" == true ]] || return 0
  local args=(check "$1" --stack "$stack")
  if [[ "$1" == post && -n "$site_url" ]]; then args+=(--url "$site_url"); fi
  if [[ "$1" == post && -n "$prometheus" ]]; then args+=(--prometheus "$prometheus"); fi
  rollout "${args[@]}"
}
