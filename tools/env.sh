# shellcheck shell=bash
# Source this file to use the offline Pulumi toolchain built by tools/toolchain.sh:
#   source tools/env.sh            # or: source tools/env.sh --help
# It puts the toolchain's bin directory first on PATH (the pulumi CLI, the Python language host
# and the provider plugins, which the CLI finds there as ambient plugins) and turns off the CLI's
# network lookups. Returns 1, changing nothing, when the core toolchain is not built.

_moontv_env_usage() {
	cat <<'EOF'
Usage: source tools/env.sh [--help]

Puts the offline Pulumi toolchain (tools/toolchain.sh) first on PATH and exports:
  MOONTV_TOOLCHAIN_BIN                          the toolchain bin directory
  PULUMI_SKIP_UPDATE_CHECK=true                 no update check
  PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true  fail fast instead of downloading plugins
  MOONTV_KUBECONFIG, MOONTV_KUBE_CONTEXT        the kwok cluster of tools/cluster.sh kwok-up
Functions:
  moontv_local_backend DIR   use a local file state backend in DIR (exports PULUMI_BACKEND_URL)
Returns 1 without changing anything if the core toolchain (pulumi, the Python language host,
the kubernetes provider) is not built; run: bash tools/toolchain.sh
EOF
}

_moontv_env_main() {
	local root bin state
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	if [[ ${1:-} == -h || ${1:-} == --help ]]; then
		_moontv_env_usage
		return 0
	fi
	if [[ $# -gt 0 ]]; then
		echo "env.sh: unknown argument '$1' (accepted: --help)" >&2
		return 2
	fi
	bin=$(bash "$root/tools/toolchain.sh" --print-bin) || return 1
	case ":$PATH:" in
	*":$bin:"*) ;;
	*) export PATH="$bin:$PATH" ;;
	esac
	state=${MOONTV_CLUSTER_DIR:-$HOME/.cache/moontv-cluster}
	export MOONTV_TOOLCHAIN_BIN=$bin
	export PULUMI_SKIP_UPDATE_CHECK=true
	export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
	export MOONTV_KUBECONFIG=$state/kwok/kubeconfig
	export MOONTV_KUBE_CONTEXT=kwok-moontv
}

# moontv_local_backend DIR: keep Pulumi state in DIR (created if missing) instead of a service.
moontv_local_backend() {
	if [[ $# -ne 1 || -z $1 ]]; then
		echo "moontv_local_backend: expected one argument, the state directory" >&2
		return 2
	fi
	mkdir -p "$1" || return 1
	PULUMI_BACKEND_URL="file://$(cd "$1" && pwd)"
	export PULUMI_BACKEND_URL
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	echo "env.sh must be sourced: source tools/env.sh" >&2
	_moontv_env_usage >&2
	exit 2
fi
_moontv_env_main "$@"
