#!/usr/bin/env bash
# Third-party manifest checkers, installed once into a cache outside the repository
# (${MOONTV_TOOLS_CACHE:-~/.cache/moontv-tools}) and printed as `name: path`:
#   checkov     requirements-checkov.txt, in its own virtualenv (its pins clash with pulumi's)
#   kube-score  the Go module github.com/zegl/kube-score (no pip, npm or Debian package)
# tests/integration/test_manifest_checkers.py runs both on the rendered staging and prod
# manifests; docs/manifest-checks.md says what they report and why.
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${MOONTV_TOOLS_CACHE:-$HOME/.cache/moontv-tools}"
CHECKOV_VERSION=$(sed -n 's/^checkov==//p' "$root/requirements-checkov.txt")
# renovate: datasource=go depName=github.com/zegl/kube-score
KUBE_SCORE_VERSION=1.20.0

checkov_venv="$cache/checkov-$CHECKOV_VERSION"
if [[ ! -x "$checkov_venv/bin/checkov" ]]; then
  echo "checkers: installing checkov $CHECKOV_VERSION (once) into $checkov_venv" >&2
  rm -rf "$checkov_venv"
  python3 -m venv "$checkov_venv"
  "$checkov_venv/bin/pip" install --quiet --disable-pip-version-check \
    -r "$root/requirements-checkov.txt" >&2
fi

kube_score_dir="$cache/kube-score-$KUBE_SCORE_VERSION"
if [[ ! -x "$kube_score_dir/kube-score" ]]; then
  echo "checkers: building kube-score $KUBE_SCORE_VERSION (once) into $kube_score_dir" >&2
  GOBIN="$kube_score_dir" go install \
    "github.com/zegl/kube-score/cmd/kube-score@v$KUBE_SCORE_VERSION" >&2
fi

echo "checkov: $checkov_venv/bin/checkov"
echo "kube-score: $kube_score_dir/kube-score"
