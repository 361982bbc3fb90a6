#!/usr/bin/env bash
# Build the Pulumi engine, its Python language host, provider plugins and the local-cluster
# binaries (kwok, etcd, kube-*) from Go modules, into a cache outside the repository.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: tools/toolchain.sh [--only STEPS] [--print-bin] [--bin-dir] [--list] [--help]

Builds every missing binary of the offline toolchain from Go modules into
  ${MOONTV_TOOLCHAIN_CACHE:-$HOME/.cache/moontv-toolchain}/<key>/bin
where <key> is a short hash of the pinned versions. A second run only checks.

Options:
  --only STEPS   comma-separated subset of steps to build (default: all), e.g. pulumi,kubernetes
  --print-bin    print the bin directory; exit 1 if the core set (pulumi, python,
                 kubernetes) is incomplete. Builds nothing.
  --bin-dir      print the bin directory of the current pins, built or not
  --list         print the steps, their versions and whether they are built, then exit
  -h, --help     show this help

Steps: pulumi python kubernetes random kwok etcd kube docker-build docker
       node coredns kube-router traefik metrics-server
                                          (the real single-node cluster of tools/cluster.sh)
Provider versions follow the Python SDK pins (pulumi-plugin.json in ./venv, else
requirements.txt). Build logs: <cache>/<key>/logs/<step>.log; build times:
<cache>/<key>/build-times.tsv (step, version, wall seconds, finished at, CPU seconds).
Environment: MOONTV_TOOLCHAIN_CACHE (cache root), GOPROXY and the other go settings.
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_ROOT=${MOONTV_TOOLCHAIN_CACHE:-$HOME/.cache/moontv-toolchain}
# Bump when a build recipe below changes in a way that changes the binaries.
RECIPE=1

# Versions of the non-plugin pieces. The Go module proxy does not serve
# github.com/pulumi/pulumi/pkg/v3 at the SDK pin (3.272.0); 3.274.0 is the nearest newer one.
# renovate: datasource=go depName=github.com/pulumi/pulumi/pkg/v3
PULUMI_CLI_VERSION=3.274.0
# renovate: datasource=go depName=sigs.k8s.io/kwok
KWOK_VERSION=0.8.0
# renovate: datasource=go depName=k8s.io/kubernetes
KUBE_VERSION=1.36.1 # kwok 0.8.0's default Kubernetes version
# renovate: datasource=go depName=go.etcd.io/etcd/server/v3
ETCD_VERSION=3.6.16
# renovate: datasource=go depName=github.com/coredns/coredns
COREDNS_VERSION=1.15.0
# The only github.com/cloudnativelabs/kube-router/v2 version the Go module proxy serves.
# renovate: datasource=go depName=github.com/cloudnativelabs/kube-router/v2
KUBE_ROUTER_VERSION=2.1.0
# renovate: datasource=go depName=sigs.k8s.io/metrics-server
METRICS_SERVER_VERSION=0.8.0
# The only github.com/pulumi/pulumi-kubernetes/provider/v4 version the proxy serves; used when
# the pinned version itself is not served.
KUBERNETES_PROVIDER_FALLBACK=v4.0.0-20260115033456-f47bc2d6f199

ALL_STEPS=(pulumi python kubernetes random kwok etcd kube docker-build docker node coredns kube-router traefik
	metrics-server)
# The steps whose versions make up the cache key. Steps added later are versioned by their stamps
# only, so that adding one does not move the cache (and rebuild everything) to a new key.
KEY_STEPS=(pulumi python kubernetes random kwok etcd kube docker-build docker)
CORE_STEPS=(pulumi python kubernetes)

die() {
	echo "toolchain: $*" >&2
	exit 1
}

# unavailable REASON: a step that cannot be built from Go modules here (exit 3: not a failure).
unavailable() {
	echo "$*"
	exit 3
}

declare -A VERSION=()

# load_versions: the plugin version each Python SDK package pulumi-NAME asks the engine for, from
# its pulumi-plugin.json in ./venv, else from the requirements.txt pin; plus the fixed versions.
load_versions() {
	local name v json
	for name in kubernetes random docker-build docker; do
		v=""
		for json in "$ROOT"/venv/lib/python3*/site-packages/"pulumi_${name//-/_}"/pulumi-plugin.json; do
			[[ -f $json ]] && v=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$json" | head -n1)
		done
		if [[ -z $v ]]; then
			v=$(grep -iE "^pulumi-${name}==" "$ROOT/requirements.txt" | head -n1 | cut -d= -f3 | tr -d '[:space:]' || true)
		fi
		[[ -n $v ]] || die "no version for pulumi-$name: not in ./venv nor pinned in requirements.txt"
		VERSION[$name]=$v
	done
	VERSION[pulumi]=$PULUMI_CLI_VERSION
	VERSION[python]=$PULUMI_CLI_VERSION
	VERSION[kwok]=$KWOK_VERSION
	VERSION[etcd]=$ETCD_VERSION
	VERSION[kube]=$KUBE_VERSION
	VERSION[node]=$KUBE_VERSION
	VERSION[coredns]=$COREDNS_VERSION
	VERSION[kube-router]=$KUBE_ROUTER_VERSION
	VERSION[metrics-server]=$METRICS_SERVER_VERSION
	VERSION[traefik]=$(sed -n 's/^VERSION="${TRAEFIK_VERSION:-v\([^}]*\)}"$/\1/p' "$ROOT/tools/traefik.sh")
	[[ -n ${VERSION[traefik]} ]] || die "cannot read the pinned Traefik version from tools/traefik.sh"
}

step_version() {
	echo "${VERSION[$1]}"
}

step_bins() {
	case $1 in
	pulumi) echo pulumi ;;
	python) echo pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python ;;
	docker-build) echo pulumi-resource-docker-build docker-buildx ;;
	kubernetes | random | docker) echo "pulumi-resource-$1" ;;
	kwok) echo kwok kwokctl ;;
	etcd) echo etcd ;;
	kube) echo kube-apiserver kube-controller-manager kube-scheduler ;;
	node) echo kubelet kube-proxy ;;
	coredns | kube-router | traefik | metrics-server) echo "$1" ;;
	esac
}

# The cache key: a short hash of every pinned version and the recipe revision.
compute_key() {
	local s line=""
	for s in "${KEY_STEPS[@]}"; do
		line+="$s=$(step_version "$s") "
	done
	line+="recipe=$RECIPE"
	printf '%s' "$line" | sha256sum | cut -c1-12
}

# ---------------------------------------------------------------------------------------------
# Go module helpers

# module_dir MODULE@VERSION: download a module and print its directory; fail if not served.
module_dir() {
	local out
	if ! out=$(go mod download -json "$1" 2>&1); then
		local err
		err=$(printf '%s' "$out" | python3 -c 'import json,sys
try: print(json.load(sys.stdin).get("Error",""))
except Exception: print("")' 2>/dev/null || true)
		echo "module $1 is not available from the Go module proxy ($(go env GOPROXY)): ${err:-$out}" >&2
		return 1
	fi
	printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

# module_served MODULE@VERSION: true if the proxy serves it.
module_served() {
	go mod download -json "$1" >/dev/null 2>&1
}

# remote_replaces GOMOD [SKIP_PATH...]: print "old=new@version" for every replace directive of
# GOMOD that points at another module version (local directory replaces are dropped).
remote_replaces() {
	local gomod=$1
	shift
	go mod edit -json "$gomod" | python3 -c '
import json, sys
skip = set(sys.argv[1:])
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    if not new.get("Version") or old["Path"] in skip:
        continue
    o = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    print(o + "=" + new["Path"] + "@" + new["Version"])
' "$@"
}

# wrapper_module DIR MODULE@VERSION...: a module that requires the given modules and copies
# their non-local replace directives, so their commands build with `go build`.
wrapper_module() {
	local dir=$1 mv dir_mod r
	shift
	rm -rf "$dir"
	mkdir -p "$dir"
	(
		cd "$dir"
		go mod init moontv.local/toolchain/wrapper >/dev/null 2>&1
		go mod edit -go=1.26
		local paths=()
		for mv in "$@"; do paths+=("${mv%@*}"); done
		for mv in "$@"; do
			go mod edit -require="$mv"
			dir_mod=$(module_dir "$mv") || exit 1
			while IFS= read -r r; do
				[[ -n $r ]] && go mod edit -replace="$r"
			done < <(remote_replaces "$dir_mod/go.mod" "${paths[@]}")
		done
	)
}

# writable_copy SRC DST: copy a (read-only) module directory for in-place generation.
writable_copy() {
	rm -rf "$2"
	mkdir -p "$(dirname "$2")"
	cp -r "$1" "$2"
	chmod -R u+w "$2"
}

gobuild() {
	CGO_ENABLED=0 go build -trimpath "$@"
}

# ---------------------------------------------------------------------------------------------
# Build recipes. Each runs with its log as stdout/stderr, in a subshell, and writes into $BIN.

build_pulumi() {
	local v=$1 w="$SRC/pulumi"
	wrapper_module "$w" "github.com/pulumi/pulumi/pkg/v3@v$v" "github.com/pulumi/pulumi/sdk/v3@v$v"
	cd "$w"
	printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"\n' >tools.go
	GOFLAGS=-mod=mod go mod tidy
	GOFLAGS=-mod=mod gobuild -tags osusergo,grpcnotrace \
		-ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$v" \
		-o "$BIN/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
	mv "$BIN/pulumi.tmp" "$BIN/pulumi"
}

build_python() {
	local v=$1 sdk
	sdk=$(module_dir "github.com/pulumi/pulumi/sdk/v3@v$v")
	grep -q "github.com/pulumi/pulumi/sdk/v3 v$v\$" "$ROOT/tools/langhost/go.mod" ||
		die "tools/langhost/go.mod does not require github.com/pulumi/pulumi/sdk/v3 v$v"
	cd "$ROOT/tools/langhost"
	GOFLAGS=-mod=readonly gobuild \
		-ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$v" \
		-o "$BIN/pulumi-language-python.tmp" .
	install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
	# The provider plugin that runs Python dynamic providers (pulumi.dynamic).
	install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$BIN/pulumi-resource-pulumi-python"
	mv "$BIN/pulumi-language-python.tmp" "$BIN/pulumi-language-python"
}

build_kubernetes() {
	local v=$1 mv="github.com/pulumi/pulumi-kubernetes/provider/v4@v$1" src dir="$SRC/kubernetes"
	if ! module_served "$mv"; then
		echo "$mv is not served; building the served $KUBERNETES_PROVIDER_FALLBACK instead"
		mv="github.com/pulumi/pulumi-kubernetes/provider/v4@$KUBERNETES_PROVIDER_FALLBACK"
		v=${KUBERNETES_PROVIDER_FALLBACK#v}
	fi
	src=$(module_dir "$mv")
	writable_copy "$src" "$dir/provider"
	cd "$dir/provider"
	# The module's go.mod points the sdk at its ../sdk sibling; use the published sdk instead.
	go mod edit -dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4
	# The module's own generate step writes schema-embed.json (gitignored, so not in the zip).
	(cd cmd/pulumi-resource-kubernetes && VERSION=$v GOFLAGS=-mod=mod go generate .)
	GOFLAGS=-mod=mod gobuild \
		-ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$v" \
		-o "$BIN/pulumi-resource-kubernetes.tmp" ./cmd/pulumi-resource-kubernetes
	mv "$BIN/pulumi-resource-kubernetes.tmp" "$BIN/pulumi-resource-kubernetes"
}

build_random() {
	local mv="github.com/pulumi/pulumi-random/provider/v4@v$1"
	module_served "$mv" || unavailable "$mv is not published on the Go module proxy"
	die "no build recipe for $mv yet (it was not served when this script was written)"
}

build_docker_build() {
	local v=$1 w="$SRC/docker-build" mv="github.com/pulumi/pulumi-docker-build@v$1"
	# The command lives in the repository's root module; `go install …@v` fails because the
	# proxy refuses the module's version list (needed for its deprecation check), so build it
	# through a wrapper module.
	module_served "$mv" || unavailable "$mv is not published on the Go module proxy"
	wrapper_module "$w" "$mv"
	cd "$w"
	printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "github.com/docker/buildx/cmd/buildx"\n\t_ "github.com/pulumi/pulumi-docker-build/provider/cmd/pulumi-resource-docker-build"\n)\n' >tools.go
	# The provider imports the Java and .NET SDK generators only for two option structs in its
	# schema's language section (used when generating those SDKs, never when building images).
	# The proxy does not serve those modules, so local modules stand in, declaring those structs
	# with the fields the provider sets.
	# shellcheck disable=SC2016 # Go source with backquoted struct tags, not shell
	stub_codegen_module "$w/stubs/java" github.com/pulumi/pulumi-java pkg/codegen/java java \
		'type PackageInfo struct {
	BuildFiles                      string            `json:"buildFiles,omitempty"`
	GradleNexusPublishPluginVersion string            `json:"gradleNexusPublishPluginVersion,omitempty"`
	Dependencies                    map[string]string `json:"dependencies,omitempty"`
}'
	# shellcheck disable=SC2016 # Go source with backquoted struct tags, not shell
	stub_codegen_module "$w/stubs/dotnet" github.com/pulumi/pulumi-dotnet/pulumi-language-dotnet/v3 codegen codegen \
		'type CSharpPackageInfo struct {
	RespectSchemaVersion bool              `json:"respectSchemaVersion,omitempty"`
	PackageReferences    map[string]string `json:"packageReferences,omitempty"`
}'
	go mod edit -replace=github.com/pulumi/pulumi-java="$w/stubs/java" \
		-replace=github.com/pulumi/pulumi-dotnet/pulumi-language-dotnet/v3="$w/stubs/dotnet"
	local out missing
	if ! out=$(GOFLAGS=-mod=mod go mod tidy 2>&1); then
		echo "$out"
		missing=$(sed -n 's/.*: \([^ :]*@v[^ :]*\): reading http.*403 Forbidden.*/\1/p' <<<"$out" | sort -u | paste -sd' ')
		[[ -z $missing ]] || unavailable "$mv needs modules the Go module proxy does not publish: $missing"
		return 1
	fi
	GOFLAGS=-mod=mod gobuild -ldflags "-s -w -X github.com/pulumi/pulumi-docker-build/provider.Version=$v" \
		-o "$BIN/pulumi-resource-docker-build.tmp" github.com/pulumi/pulumi-docker-build/provider/cmd/pulumi-resource-docker-build
	# The buildx CLI plugin at the version the provider embeds: the provider execs it (`exec: true`)
	# to build on the Docker engine's own BuildKit, which its embedded client cannot drive.
	local buildx
	buildx=$(go list -m -f '{{.Version}}' github.com/docker/buildx)
	GOFLAGS=-mod=mod gobuild -ldflags "-s -w -X github.com/docker/buildx/version.Version=$buildx" \
		-o "$BIN/docker-buildx.tmp" github.com/docker/buildx/cmd/buildx
	mv "$BIN/pulumi-resource-docker-build.tmp" "$BIN/pulumi-resource-docker-build"
	mv "$BIN/docker-buildx.tmp" "$BIN/docker-buildx"
}

# stub_codegen_module DIR MODULE PKGDIR PKGNAME DECLS: a local module holding only DECLS.
stub_codegen_module() {
	local dir=$1 module=$2 pkgdir=$3 pkg=$4 decls=$5
	mkdir -p "$dir/$pkgdir"
	printf 'module %s\n\ngo 1.21\n' "$module" >"$dir/go.mod"
	printf '// Package %s stands in for the code generator of %s: only the option struct the\n// docker-build provider names in its schema.\npackage %s\n\n%s\n' \
		"$pkg" "$module" "$pkg" "$decls" >"$dir/$pkgdir/stub.go"
}

build_docker() {
	local mv="github.com/pulumi/pulumi-docker/provider/v5@v$1"
	module_served "$mv" || unavailable "$mv is not published on the Go module proxy"
	die "no build recipe for $mv yet (it was not served when this script was written)"
}

build_kwok() {
	local v=$1 w="$SRC/kwok" c
	wrapper_module "$w" "sigs.k8s.io/kwok@v$v"
	cd "$w"
	printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "sigs.k8s.io/kwok/cmd/kwok"\n\t_ "sigs.k8s.io/kwok/cmd/kwokctl"\n)\n' >tools.go
	GOFLAGS=-mod=mod go mod tidy
	for c in kwok kwokctl; do
		GOFLAGS=-mod=mod gobuild -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$v" \
			-o "$BIN/$c.tmp" "sigs.k8s.io/kwok/cmd/$c"
		mv "$BIN/$c.tmp" "$BIN/$c"
	done
}

build_etcd() {
	local v=$1 w="$SRC/etcd"
	wrapper_module "$w" "go.etcd.io/etcd/server/v3@v$v"
	cd "$w"
	printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
	GOFLAGS=-mod=mod go mod tidy
	GOFLAGS=-mod=mod gobuild -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
	mv "$BIN/etcd.tmp" "$BIN/etcd"
}

# kube_wrapper VERSION: the wrapper module of k8s.io/kubernetes@vVERSION in $SRC/kube (its staging
# modules at their published versions), shared by the control plane and the node binaries.
# Prints the -ldflags that stamp the version into the binaries.
kube_wrapper() {
	local v=$1 w="$SRC/kube" kdir staging c minor ldflags vpkg
	if [[ ! -f $w/go.sum ]]; then
		wrapper_module "$w" "k8s.io/kubernetes@v$v" >&2
		kdir=$(module_dir "k8s.io/kubernetes@v$v")
		# k8s.io/kubernetes points its staging modules at ./staging; use their published versions.
		staging=$(go mod edit -json "$kdir/go.mod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        print(r["Old"]["Path"])')
		for c in $staging; do
			(cd "$w" && go mod edit -replace="$c=$c@v0.${v#1.}")
		done
		printf '//go:build tools\n\npackage tools\n\nimport (\n' >"$w/tools.go"
		for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
			printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c" >>"$w/tools.go"
		done
		printf ')\n' >>"$w/tools.go"
		(cd "$w" && GOFLAGS=-mod=mod go mod tidy >&2)
	fi
	minor=$(cut -d. -f2 <<<"$v")
	ldflags="-s -w"
	for vpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $vpkg.gitVersion=v$v -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
		ldflags+=" -X $vpkg.gitTreeState=clean"
	done
	echo "$ldflags"
}

# kube_commands VERSION CMD...: build k8s.io/kubernetes/cmd/CMD for each CMD into $BIN.
kube_commands() {
	local v=$1 ldflags c
	shift
	ldflags=$(kube_wrapper "$v")
	cd "$SRC/kube"
	for c in "$@"; do
		echo "building $c"
		GOFLAGS=-mod=mod gobuild -pgo=off -ldflags "$ldflags" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
		mv "$BIN/$c.tmp" "$BIN/$c"
	done
}

build_kube() {
	kube_commands "$1" kube-apiserver kube-controller-manager kube-scheduler
}

# The node agent and the Service proxy of the real single-node cluster (same version and module).
build_node() {
	kube_commands "$1" kubelet kube-proxy
}

# go_command NAME MODULE@VERSION PACKAGE [LDFLAGS]: build PACKAGE (a main package of MODULE)
# through a wrapper module into $BIN/NAME.
go_command() {
	local name=$1 mv=$2 pkg=$3 ldflags=${4:-} w="$SRC/$1"
	wrapper_module "$w" "$mv"
	cd "$w"
	printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go
	GOFLAGS=-mod=mod go mod tidy
	GOFLAGS=-mod=mod gobuild -ldflags "-s -w $ldflags" -o "$BIN/$name.tmp" "$pkg"
	mv "$BIN/$name.tmp" "$BIN/$name"
}

# CoreDNS with its default plugin set; the node runs it as a host process (kubernetes plugin).
build_coredns() {
	go_command coredns "github.com/coredns/coredns@v$1" github.com/coredns/coredns \
		"-X github.com/coredns/coredns/coremain.GitCommit=v$1"
}

# kube-router, used only as the NetworkPolicy controller of the real node.
build_kube_router() {
	go_command kube-router "github.com/cloudnativelabs/kube-router/v2@v$1" \
		github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
		"-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v$1"
}

# metrics-server (the resource metrics API behind `kubectl top`), run by the node as a host process.
build_metrics_server() {
	go_command metrics-server "sigs.k8s.io/metrics-server@v$1" sigs.k8s.io/metrics-server/cmd/metrics-server \
		"-X k8s.io/client-go/pkg/version.gitVersion=v$1"
}

# Traefik (the Gateway API implementation of the real node and the Swarm edge): tools/traefik.sh
# builds and caches it; the toolchain links it.
build_traefik() {
	local out
	out=$(TRAEFIK_VERSION="v$1" bash "$ROOT/tools/traefik.sh" | tail -n 1)
	[[ -x $out ]] || die "tools/traefik.sh did not print a binary path (got '$out')"
	ln -sf "$out" "$BIN/traefik"
}

# ---------------------------------------------------------------------------------------------

# step_stamp STEP VERSION: what the binaries of a step were built from; a change rebuilds them.
step_stamp() {
	local extra=""
	if [[ $1 == python ]]; then
		extra=$(cat "$ROOT"/tools/langhost/*.go "$ROOT"/tools/langhost/go.mod "$ROOT"/tools/langhost/go.sum |
			sha256sum | cut -c1-16)
	fi
	echo "$1 $2 recipe=$RECIPE $extra"
}

step_built() {
	local s=$1 b
	for b in $(step_bins "$s"); do
		[[ -x $BIN/$b ]] || return 1
	done
	[[ -f $KEYDIR/stamps/$s ]] && [[ $(cat "$KEYDIR/stamps/$s") == "$(step_stamp "$s" "$(step_version "$s")")" ]]
}

# use_ambient_pulumi VERSION: link a pulumi CLI already on PATH (not ours) if it is at least VERSION.
use_ambient_pulumi() {
	local want=$1 found have
	found=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$BIN" | paste -sd:) command -v pulumi || true)
	[[ -n $found ]] || return 1
	have=$("$found" version 2>/dev/null | sed 's/^v//') || return 1
	python3 -c 'import sys
a, b = ([int(x) for x in v.split("-")[0].split(".")[:3]] for v in sys.argv[1:])
sys.exit(0 if a >= b else 1)' "$have" "$want" 2>/dev/null || return 1
	ln -sf "$found" "$BIN/pulumi"
	echo "using the pulumi CLI already on PATH: $found (v$have, SDK pin needs >= v$want)"
}

run_step() {
	local s=$1 n=$2 total=$3 v label log start secs
	v=$(step_version "$s")
	label="$(step_bins "$s" | cut -d' ' -f1) $v"
	log="$KEYDIR/logs/$s.log"
	if step_built "$s"; then
		echo "[$n/$total] $label: up to date"
		return 0
	fi
	if [[ $s == pulumi ]] && use_ambient_pulumi "$(plugin_version_sdk)"; then
		step_stamp "$s" "$v" >"$KEYDIR/stamps/$s"
		echo "[$n/$total] $label: using the CLI on PATH"
		return 0
	fi
	printf '[%s/%s] %s: building… ' "$n" "$total" "$label"
	start=$(date +%s)
	local status=0 cpu TIMEFORMAT='%U %S'
	# `time` reports the CPU seconds (user, system) of the step and every process it waited for.
	{ time {
		(
			set -euo pipefail
			"build_${s//-/_}" "$v"
		) >"$log" 2>&1
	}; } 2>"$KEYDIR/logs/$s.cpu" || status=$?
	cpu=$(awk 'NF == 2 { printf "%.0f", $1 + $2 }' "$KEYDIR/logs/$s.cpu" 2>/dev/null || true)
	if ((status == 3)); then
		echo "not buildable offline: $(tail -n 1 "$log")"
		tail -n 1 "$log" >"$KEYDIR/stamps/$s.unavailable"
		return 0
	fi
	if ((status == 0)); then
		secs=$(($(date +%s) - start))
		rm -f "$KEYDIR/stamps/$s.unavailable"
		step_stamp "$s" "$v" >"$KEYDIR/stamps/$s"
		printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$v" "$secs" "$(date -u +%FT%TZ)" "${cpu:-}" >>"$KEYDIR/build-times.tsv"
		echo "done in ${secs}s (${cpu:-?} CPU-s)"
		return 0
	fi
	secs=$(($(date +%s) - start))
	printf '%s\t%s\tFAILED after %s\t%s\t%s\n' "$s" "$v" "$secs" "$(date -u +%FT%TZ)" "${cpu:-}" >>"$KEYDIR/build-times.tsv"
	echo "FAILED after ${secs}s"
	echo "  step '$s' failed; last lines of $log:" >&2
	tail -n 5 "$log" | sed 's/^/    /' >&2
	return 1
}

# The pulumi Python SDK version (the CLI must be at least this new).
plugin_version_sdk() {
	local meta
	for meta in "$ROOT"/venv/lib/python3*/site-packages/pulumi-*.dist-info/METADATA; do
		if [[ -f $meta && $meta == */pulumi-[0-9]* ]]; then
			sed -n 's/^Version: //p' "$meta"
			return
		fi
	done
	grep -E '^pulumi==' "$ROOT/requirements.txt" | cut -d= -f3 | tr -d '[:space:]'
}

main() {
	local only="" print_bin=0 list=0 bin_dir=0
	while (($#)); do
		case $1 in
		--only)
			[[ $# -ge 2 ]] || die "--only needs a comma-separated list of steps: ${ALL_STEPS[*]}"
			only=$2
			shift 2
			;;
		--only=*)
			only=${1#--only=}
			shift
			;;
		--print-bin) print_bin=1 && shift ;;
		--list) list=1 && shift ;;
		--bin-dir) bin_dir=1 && shift ;;
		-h | --help) usage && exit 0 ;;
		*) die "unknown option '$1' (accepted: --only STEPS, --print-bin, --bin-dir, --list, --help)" ;;
		esac
	done
	command -v go >/dev/null || die "go is not on PATH (Go 1.26 is required)"
	command -v python3 >/dev/null || die "python3 is not on PATH"

	load_versions
	KEY=$(compute_key)
	KEYDIR="$CACHE_ROOT/$KEY"
	BIN="$KEYDIR/bin"
	SRC="$KEYDIR/src"

	local steps=("${ALL_STEPS[@]}") s
	if [[ -n $only ]]; then
		IFS=, read -r -a steps <<<"$only"
		for s in "${steps[@]}"; do
			[[ " ${ALL_STEPS[*]} " == *" $s "* ]] || die "unknown step '$s' in --only (accepted: ${ALL_STEPS[*]})"
		done
	fi

	if ((bin_dir)); then
		echo "$BIN"
		exit 0
	fi
	if ((print_bin)); then
		for s in "${CORE_STEPS[@]}"; do
			if ! step_built "$s" 2>/dev/null; then
				echo "toolchain: core step '$s' is not built in $BIN; run tools/toolchain.sh" >&2
				exit 1
			fi
		done
		echo "$BIN"
		exit 0
	fi
	if ((list)); then
		mkdir -p "$BIN" "$KEYDIR/stamps"
		for s in "${ALL_STEPS[@]}"; do
			if step_built "$s"; then state=built; else state=missing; fi
			printf '%-15s %-12s %-8s %s\n' "$s" "$(step_version "$s")" "$state" "$(step_bins "$s")"
		done
		exit 0
	fi

	mkdir -p "$BIN" "$SRC" "$KEYDIR/logs" "$KEYDIR/stamps"
	exec 9>"$KEYDIR/.lock"
	flock -n 9 || { echo "toolchain: waiting for another build in $KEYDIR…" && flock 9; }
	echo "toolchain: cache $KEYDIR"
	local n=0 failed=()
	for s in "${steps[@]}"; do
		n=$((n + 1))
		run_step "$s" "$n" "${#steps[@]}" || failed+=("$s")
	done
	if ((${#failed[@]})); then
		echo "toolchain: failed steps: ${failed[*]} (logs in $KEYDIR/logs/)" >&2
		exit 1
	fi
	echo "toolchain: all requested binaries are in $BIN"
}

main "$@"
