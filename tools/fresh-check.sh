#!/usr/bin/env bash
# Rehearse a new machine: the README's two commands (make up, make test) in a fresh clone with a
# fresh HOME and fresh caches, after removing what earlier runs left (node, kwok, Swarm, the
# suite's images and build cache in dockerd). Prints the wall time of each phase and the result.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: tools/fresh-check.sh [--dir DIR] [--ref REF] [--dry-run] [--force] [--remove]

Runs, as a brand-new machine of the project's kind would:
  1. leftovers    stop and remove what earlier runs left, with the project's own commands:
                  tools/cluster.sh node-down, kwok-down, swarm-down; leaves a Swarm still
                  active; removes the suite's test images (label moontv.test.input-key) and
                  dockerd's build cache. Installed Debian packages stay.
  2. clone        git clone of this repository at REF (default HEAD) into DIR/src
  3. make up      in DIR/src, with a fresh HOME (DIR/home) and fresh caches: XDG_CACHE_HOME,
                  MOONTV_TOOLCHAIN_CACHE (the cold toolchain build: about 40 min of both
                  cores), MOONTV_IMAGES_CACHE, MOONTV_CLUSTER_DIR, MOONTV_CI_DIR, Go's module
                  and build caches, pip's cache; PATH holds only the system directories, Go
                  and Python 3.11. Kept from the machine, as a new one has them: its
                  certificate, proxy, pip and npm variables and its ~/.npmrc, ~/.gitconfig
                  and Go env file (how it trusts and reaches the registries)
  4. make test    the same environment, with MOONTV_REQUIRE_ENGINE=1 (a skip fails, as in CI)
Then prints the wall time of each phase, make test's time per group and its closing line, and
PASSED or FAILED; exit status 0 only when both commands passed. Everything is logged to
DIR/fresh-check.log.

Options:
  --dir DIR   where the clone and the fresh HOME go (default /tmp/moontv-fresh-<time>;
              must not exist yet, or be empty)
  --ref REF   the commit to check (default HEAD of this checkout)
  --dry-run   print what would run, change nothing
  --force     clean up even while other test sessions hold the shared node (it stops their
              node: only when you know they are finished)
  --remove    delete DIR at the end (the fresh toolchain cache in it takes a few GB)
  -h, --help  show this help
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir="/tmp/moontv-fresh-$(date +%Y%m%d-%H%M%S)"
ref=HEAD
dry=0
force=0
remove=0
while (($#)); do
	case $1 in
	--dir) [[ $# -ge 2 ]] || { echo "fresh-check: --dir needs a directory" >&2 && exit 2; }
		dir=$2 && shift ;;
	--ref) [[ $# -ge 2 ]] || { echo "fresh-check: --ref needs a commit" >&2 && exit 2; }
		ref=$2 && shift ;;
	--dry-run) dry=1 ;;
	--force) force=1 ;;
	--remove) remove=1 ;;
	-h | --help) usage && exit 0 ;;
	*) echo "fresh-check: unknown option '$1' (see --help)" >&2 && exit 2 ;;
	esac
	shift
done
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac
commit=$(git -C "$ROOT" rev-parse --verify "$ref^{commit}") ||
	{ echo "fresh-check: --ref '$ref' is not a commit of $ROOT" >&2 && exit 2; }
if [[ -e $dir && -n $(ls -A "$dir" 2>/dev/null) ]]; then
	echo "fresh-check: $dir exists and is not empty; give a new --dir" >&2
	exit 2
fi

# run COMMAND...: print it, and run it unless --dry-run.
run() {
	printf '+ %s\n' "$*"
	((dry)) || "$@"
}

# The fresh machine's environment: no cache of an earlier run and nothing this HOME gained since
# the machine started, but the machine's own settings, which a new machine has too: how it
# trusts and reaches the registries (certificate bundles, proxies, pip's and npm's settings:
# MACHINE_VARIABLES) and the user configuration it comes with (MACHINE_FILES: npm's and Go's
# settings, git's identity).
home=$dir/home
python_dir=$(dirname "$(python3 -c 'import sys; print(sys.executable)')")
go_dir=$(dirname "$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)")
MACHINE_VARIABLES='^([A-Z_]*CA_(BUNDLE|CERTS?|CERTS_FILE|CERTS_FILE_PATH|ROOTS_FILE_PATH|CAINFO)|SSL_CERT_(FILE|DIR)|NODE_EXTRA_CA_CERTS|PIP_(CERT|INDEX_URL|EXTRA_INDEX_URL|FIND_LINKS|DEFAULT_TIMEOUT|DISABLE_PIP_VERSION_CHECK|TRUSTED_HOST)|npm_config_[a-z_]+|(HTTP|HTTPS|NO|ALL)_PROXY|(http|https|no|all)_proxy)='
MACHINE_FILES=(.npmrc .gitconfig .config/go/env .config/pip/pip.conf .pip/pip.conf)
mapfile -t machine_variables < <(env | grep -E "$MACHINE_VARIABLES" | grep -v '^npm_config_cache=' || true)
fresh_env=(
	env -i "HOME=$home" "USER=${USER:-root}" "LANG=${LANG:-C.UTF-8}" "TERM=${TERM:-dumb}"
	"${machine_variables[@]}"
	"PATH=$python_dir:$go_dir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	"XDG_CACHE_HOME=$home/.cache"
	"MOONTV_TOOLCHAIN_CACHE=$home/.cache/moontv-toolchain"
	"MOONTV_IMAGES_CACHE=$home/.cache/moontv-images"
	"MOONTV_CLUSTER_DIR=$home/.cache/moontv-cluster"
	"MOONTV_CI_DIR=$home/.cache/moontv-ci"
	"MOONTV_TOOLS_CACHE=$home/.cache/moontv-tools"
	"GOPATH=$home/go" "GOMODCACHE=$home/go/pkg/mod" "GOCACHE=$home/.cache/go-build"
	"GOPROXY=$(go env GOPROXY 2>/dev/null || echo https://proxy.golang.org,direct)"
	"PIP_CACHE_DIR=$home/.cache/pip" "CI=true"
)

declare -A took=()
order=()
# phase NAME COMMAND...: run COMMAND, note its wall time; returns its status.
phase() {
	local name=$1 start=$SECONDS status=0
	shift
	printf '\n==> %s\n' "$name"
	"$@" || status=$?
	took[$name]=$((SECONDS - start))
	order+=("$name")
	return "$status"
}

leftovers() {
	local leases=${MOONTV_CLUSTER_DIR:-$HOME/.cache/moontv-cluster}/node-sessions lease live=()
	for lease in "$leases"/*; do
		[[ -e $lease ]] && kill -0 "${lease##*/}" 2>/dev/null && live+=("${lease##*/}")
	done
	if ((${#live[@]})) && ! ((force)); then
		echo "fresh-check: test sessions (PIDs ${live[*]}) use the node; not stopping it (--force when they are done)" >&2
		return 1
	fi
	# The suite's images and build cache first: swarm-down stops a dockerd that swarm-up started,
	# and a stopped engine keeps its images for the next run (which would then reuse them).
	if ! docker info >/dev/null 2>&1 && command -v dockerd >/dev/null; then
		run bash "$ROOT/tools/cluster.sh" swarm-up # starts dockerd; swarm-down below stops it
	fi
	if docker info >/dev/null 2>&1; then
		local images
		images=$(docker images --quiet --filter label=moontv.test.input-key | sort -u | tr '\n' ' ')
		if [[ -n ${images// /} ]]; then
			# shellcheck disable=SC2086 # one image ID per word
			run docker rmi --force $images
		fi
		run docker builder prune --all --force
	fi
	run bash "$ROOT/tools/cluster.sh" node-down
	run bash "$ROOT/tools/cluster.sh" kwok-down
	run bash "$ROOT/tools/cluster.sh" swarm-down
	if docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null | grep -qx active; then
		run docker swarm leave --force
	fi
}

clone() {
	run mkdir -p "$home"
	local file
	for file in "${MACHINE_FILES[@]}"; do
		if [[ -f $HOME/$file ]]; then
			run mkdir -p "$(dirname "$home/$file")"
			run cp "$HOME/$file" "$home/$file"
		fi
	done
	run git clone --quiet --no-hardlinks "$ROOT" "$dir/src"
	run git -C "$dir/src" checkout --quiet --detach "$commit"
}

# in_clone COMMAND...: run COMMAND in the clone with the fresh environment.
in_clone() {
	(
		((dry)) || cd "$dir/src"
		printf '+ (in %s) %s\n' "$dir/src" "$*"
		((dry)) || "${fresh_env[@]}" "$@"
	)
}

main() {
	echo "fresh-check: commit $commit, directory $dir"
	echo "fresh environment: ${fresh_env[*]:2}"
	echo "machine settings kept: ${#machine_variables[@]} variables (${MACHINE_VARIABLES:0:60}…), files: ${MACHINE_FILES[*]}"
	local result=PASSED status=0
	((dry)) && result="DRY RUN (nothing ran)"
	phase leftovers leftovers || { echo "fresh-check: could not clean up" >&2 && return 1; }
	phase clone clone || return 1
	phase "make up" in_clone make up || { result=FAILED && status=1; }
	phase "make test" in_clone env MOONTV_REQUIRE_ENGINE=1 make test || { result=FAILED && status=1; }
	printf '\n==> fresh-check: wall time per phase\n'
	local name total=0
	for name in "${order[@]}"; do
		printf '  %-10s %5dm %02ds\n' "$name" $((took[$name] / 60)) $((took[$name] % 60))
		total=$((total + took[$name]))
	done
	printf '  %-10s %5dm %02ds\n' total $((total / 60)) $((total % 60))
	if ! ((dry)); then
		printf '\n==> make test, time per group\n'
		in_clone venv/bin/python tools/ci_groups.py report || true
	fi
	echo "fresh-check: $result (commit ${commit:0:12})"
	if ((remove)); then
		run rm -rf "$dir"
	fi
	return "$status"
}

if ((dry)); then
	echo "fresh-check: dry run, nothing is changed"
	main
else
	mkdir -p "$dir"
	main 2>&1 | tee "$dir/fresh-check.log.partial"
	status=${PIPESTATUS[0]}
	if [[ -d $dir ]]; then mv "$dir/fresh-check.log.partial" "$dir/fresh-check.log"; fi
	exit "$status"
fi
