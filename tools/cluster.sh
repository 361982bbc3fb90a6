#!/usr/bin/env bash
# Start and stop the local test clusters: a kwok Kubernetes cluster, a real single-node Kubernetes
# cluster (tools/node.sh) and a single-node Docker Swarm.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: tools/cluster.sh COMMAND

Commands:
  kwok-up      create the kwok cluster (binary runtime, 127.0.0.1 only) from the binaries that
               tools/toolchain.sh built, add one fake node, install the Gateway API (standard)
               and Prometheus Operator CRDs; prints the kubeconfig path and context name
  kwok-down    delete the kwok cluster and stop its processes
  node-up      start a real single-node Kubernetes cluster (pods run, Services route, DNS,
               NetworkPolicies, a Traefik Gateway on 127.0.0.1, kubectl top); installs the host
               packages it needs; prints kubeconfig, context, gateway URL, Gateway, containerd
               socket and metrics APIService
               (see tools/node.sh --help)
  node-down    stop it and remove every process, mount, bridge, chain and directory it made
  node-clean   remove what an earlier node left when its processes went without node-down
               (node-up does this first; a running node is left alone)
  node-import FILE…  import docker-archive image tarballs into the node's containerd
  node-default-storage on|off  make the node's StorageClass the default one, or not
  swarm-up     install Debian's docker.io if dockerd is missing, start dockerd if no daemon
               answers on the default socket, and initialise a single-node swarm
               (advertised on 127.0.0.1) if the daemon is not in swarm mode
  swarm-down   leave the swarm and stop dockerd, if swarm-up initialised / started them
  status       show what is running
  -h, --help   show this help

Environment:
  MOONTV_CLUSTER_DIR   state directory (default: $HOME/.cache/moontv-cluster); the kubeconfig is
                       $MOONTV_CLUSTER_DIR/kwok/kubeconfig, the context kwok-moontv
  MOONTV_CLUSTER_TIMEOUT  seconds to wait for a cluster or daemon to become ready (default 180)
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${MOONTV_CLUSTER_DIR:-$HOME/.cache/moontv-cluster}
TIMEOUT=${MOONTV_CLUSTER_TIMEOUT:-180}
CLUSTER=moontv
CONTEXT=kwok-$CLUSTER
KWOK_DIR=$STATE/kwok
KUBECONFIG_PATH=$KWOK_DIR/kubeconfig
DOCKER_DIR=$STATE/docker
# renovate: datasource=go depName=sigs.k8s.io/gateway-api
GATEWAY_API_MODULE=sigs.k8s.io/gateway-api@v1.6.3
# The newest prometheus-operator module version the Go module proxy serves.
# renovate: datasource=go depName=github.com/prometheus-operator/prometheus-operator
PROMETHEUS_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator@v0.85.0

die() {
	echo "cluster: $*" >&2
	exit 1
}

[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "MOONTV_CLUSTER_TIMEOUT must be a whole number of seconds, got '$TIMEOUT'"

# wait_for SECONDS WHAT COMMAND...: retry COMMAND every half second until it succeeds.
wait_for() {
	local secs=$1 what=$2 deadline=$((SECONDS + $1))
	shift 2
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
		sleep 0.5
	done
}

toolchain_bin() {
	local bin b
	bin=$(bash "$ROOT/tools/toolchain.sh" --bin-dir)
	for b in kwok kwokctl etcd kube-apiserver kube-controller-manager kube-scheduler; do
		[[ -x $bin/$b ]] || die "$b is missing from $bin; run: bash tools/toolchain.sh --only kwok,etcd,kube"
	done
	echo "$bin"
}

kctl() {
	kubectl --kubeconfig "$KUBECONFIG_PATH" --context "$CONTEXT" "$@"
}

# module_dir MODULE@VERSION: download a Go module (cached) and print its directory.
module_dir() {
	go mod download -json "$1" | python3 -c 'import json,sys
d = json.load(sys.stdin)
if "Error" in d: sys.exit("cluster: " + d["Error"])
print(d["Dir"])'
}

kwok_env() {
	export KWOK_WORKDIR=$KWOK_DIR/work
}

kwok_up() {
	local bin gw po
	command -v kubectl >/dev/null || die "kubectl is not on PATH"
	bin=$(toolchain_bin)
	kwok_env
	mkdir -p "$KWOK_DIR"
	if "$bin/kwokctl" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
		echo "kwok cluster '$CLUSTER' exists; starting it (no-op if running)"
		"$bin/kwokctl" start cluster --name "$CLUSTER" >/dev/null
	else
		cat >"$KWOK_DIR/kwokctl.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeVersion: v$("$bin/kube-apiserver" --version | sed 's/.* v//')
EOF
		echo "creating kwok cluster '$CLUSTER' (binary runtime, 127.0.0.1)…"
		"$bin/kwokctl" --config "$KWOK_DIR/kwokctl.yaml" create cluster --name "$CLUSTER" \
			--runtime binary \
			--kubeconfig "$KUBECONFIG_PATH" \
			--kube-apiserver-binary "$bin/kube-apiserver" \
			--kube-controller-manager-binary "$bin/kube-controller-manager" \
			--kube-scheduler-binary "$bin/kube-scheduler" \
			--kwok-controller-binary "$bin/kwok" \
			--etcd-binary "$bin/etcd" \
			--timeout "${TIMEOUT}s" --wait "${TIMEOUT}s"
	fi
	wait_for "$TIMEOUT" "the kwok API server" kctl get --raw /readyz
	kctl apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/role: agent
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, ephemeral-storage: 100Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, ephemeral-storage: 100Gi, pods: "110"}
EOF
	wait_for "$TIMEOUT" "node kwok-node-0 to be Ready" \
		kctl wait --for=condition=Ready node/kwok-node-0 --timeout=5s
	gw=$(module_dir "$GATEWAY_API_MODULE")
	po=$(module_dir "$PROMETHEUS_OPERATOR_MODULE")
	echo "installing Gateway API CRDs ($GATEWAY_API_MODULE) and Prometheus Operator CRDs ($PROMETHEUS_OPERATOR_MODULE)…"
	kctl apply --server-side --force-conflicts -f "$gw/config/crd/standard/" >/dev/null
	kctl apply --server-side --force-conflicts -f "$po/example/prometheus-operator-crd/" >/dev/null
	kctl wait --for=condition=Established crd --all --timeout="${TIMEOUT}s" >/dev/null
	echo "kwok cluster ready"
	echo "kubeconfig: $KUBECONFIG_PATH"
	echo "context: $CONTEXT"
}

kwok_down() {
	local bin
	kwok_env
	bin=$(bash "$ROOT/tools/toolchain.sh" --bin-dir 2>/dev/null || true)
	if [[ -x $bin/kwokctl ]] && "$bin/kwokctl" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
		"$bin/kwokctl" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_PATH"
	else
		echo "no kwok cluster '$CLUSTER'"
	fi
	rm -rf "$KWOK_DIR"
}

swarm_up() {
	if ! command -v dockerd >/dev/null; then
		echo "dockerd is missing; installing Debian's docker.io…"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
	fi
	command -v docker >/dev/null || die "the docker client is not on PATH"
	mkdir -p "$DOCKER_DIR"
	if docker info >/dev/null 2>&1; then
		echo "dockerd is already running; using it"
	else
		echo "starting dockerd (log: $DOCKER_DIR/dockerd.log)…"
		setsid dockerd --pidfile "$DOCKER_DIR/dockerd.pid" >"$DOCKER_DIR/dockerd.log" 2>&1 </dev/null &
		wait_for "$TIMEOUT" "dockerd (see $DOCKER_DIR/dockerd.log)" docker info
	fi
	if [[ $(docker info --format '{{.Swarm.LocalNodeState}}') != active ]]; then
		docker swarm init --advertise-addr 127.0.0.1 >/dev/null
		touch "$DOCKER_DIR/swarm-initialised"
	fi
	echo "swarm ready (node $(docker info --format '{{.Swarm.NodeID}}'))"
}

swarm_down() {
	local pid
	if [[ -f $DOCKER_DIR/swarm-initialised ]]; then
		docker swarm leave --force >/dev/null 2>&1 || true
		rm -f "$DOCKER_DIR/swarm-initialised"
		echo "left the swarm"
	fi
	if [[ -f $DOCKER_DIR/dockerd.pid ]] && pid=$(cat "$DOCKER_DIR/dockerd.pid") && kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		wait_for "$TIMEOUT" "dockerd (pid $pid) to stop" bash -c "! kill -0 $pid"
		echo "dockerd stopped"
	else
		echo "no dockerd started by tools/cluster.sh is running"
	fi
	rm -f "$DOCKER_DIR/dockerd.pid"
}

status() {
	local bin
	kwok_env
	bin=$(bash "$ROOT/tools/toolchain.sh" --bin-dir 2>/dev/null || true)
	if [[ -x $bin/kwokctl ]] && "$bin/kwokctl" get clusters 2>/dev/null | grep -qx "$CLUSTER" &&
		kctl get --raw /readyz >/dev/null 2>&1; then
		echo "kwok: running (kubeconfig $KUBECONFIG_PATH, context $CONTEXT)"
	else
		echo "kwok: not running"
	fi
	bash "$ROOT/tools/node.sh" status | tail -n 1
	if docker info >/dev/null 2>&1; then
		echo "swarm: dockerd running, swarm $(docker info --format '{{.Swarm.LocalNodeState}}')"
	else
		echo "swarm: not running"
	fi
}

case ${1:-} in
kwok-up) kwok_up ;;
kwok-down) kwok_down ;;
swarm-up) swarm_up ;;
swarm-down) swarm_down ;;
status) status ;;
-h | --help) usage ;;
"") usage >&2 && exit 2 ;;
node-up | node-down | node-clean | node-status | node-import | node-default-storage | node-deps)
	command=${1#node-}
	shift
	exec bash "$ROOT/tools/node.sh" "$command" "$@"
	;;
*) die "unknown command '$1' (accepted: kwok-up, kwok-down, node-up, node-down, node-clean, node-import, node-default-storage, swarm-up, swarm-down, status, --help)" ;;
esac
