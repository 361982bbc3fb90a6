#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, from the toolchain's binaries and
# Debian packages: pods run, Services route, DNS resolves, a Gateway routes, NetworkPolicies
# are enforced. Called through tools/cluster.sh node-up | node-down | node-clean | node-status | node-import.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: tools/node.sh COMMAND   (or tools/cluster.sh node-COMMAND)

Commands:
  up           install the host packages the node needs when missing, then start etcd,
               kube-apiserver, kube-controller-manager, kube-scheduler, containerd (its own
               root, state and socket; a running dockerd is not touched), kubelet, kube-proxy
               (iptables), CoreDNS (host process, cluster names only), kube-router (NetworkPolicy
               only), Traefik (Gateway API, plus its own CRDs for what the Gateway provider
               lacks, e.g. a mirroring TraefikService; one Gateway, listener on 127.0.0.1:PORT)
               and metrics-server (host process on the node's address, behind the APIService
               v1beta1.metrics.k8s.io: `kubectl top` works once it has scraped the kubelet twice,
               within 2 x 10 s);
               install the Gateway API, Traefik and Prometheus Operator CRDs and a StorageClass
               with local volumes. On a running node started by an older `up` whose Traefik
               lacks the CRD provider: installs what it needs and restarts Traefik alone, when
               MOONTV_NODE_SOLE_USER=1 (no one else uses the node), else says so and leaves it. Waits until the node is Ready and the metrics API
               Available (bounded); on failure names the component,
               prints the tail of its log and tears down what it started. Prints
               "kubeconfig: …", "context: …", "gateway: http://127.0.0.1:PORT",
               "gateway-ref: NAMESPACE/NAME", "containerd: SOCKET", "metrics-api: APISERVICE"
               (not for a node an older node-up started without metrics-server: that one is
               left as it is; it gets metrics-server when it is next started).
               Auditing: the API server records who changed what (Metadata level, writes
               outside the system namespaces) in $MOONTV_CLUSTER_DIR/node/logs/audit.log; up
               prints "audit-log: FILE" (not for a node an older node-up started without it).
  down         stop everything and remove every process, mount, network namespace, bridge,
               iptables chain and rule, ipset, cgroup, sysctl change and state directory that
               `up` made
  clean        remove what an earlier node left when its processes went without `down`
               (its state, the kernel settings it changed, its network); `up` does this first.
               A running node is left alone
  status       say whether the node is running
  import FILE… import docker-archive tarballs into the node's containerd (namespace k8s.io)
  default-storage on|off
               make the StorageClass the cluster default, or not
  deps         install the host packages only
  -h, --help   show this help

Environment:
  MOONTV_CLUSTER_DIR            state root (default $HOME/.cache/moontv-cluster); the node's
                                state is in $MOONTV_CLUSTER_DIR/node and removed by `down`
  MOONTV_CLUSTER_TIMEOUT        seconds for the whole start (default 180)
  MOONTV_NODE_GATEWAY_PORT      the Gateway's listener on 127.0.0.1 (default 18088)
  MOONTV_NODE_GATEWAY           NAMESPACE/NAME of the Gateway (default gateway-system/moontv-node)
  MOONTV_NODE_DEFAULT_STORAGE   1 (default): the StorageClass moontv-node-local is the default
                                one; 0: it exists but PVCs without a class stay Pending
  MOONTV_NODE_SOLE_USER         1: the caller is the node's only user (a running node's Traefik
                                may be restarted to update it); default 0
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The node needs root (bridge, iptables, mounts, cgroups): re-run through passwordless sudo,
# keeping the caller's home (state and Go module cache), PATH and settings.
if ((EUID != 0)) && [[ ${BASH_SOURCE[0]} == "$0" && ${1:-} != -h && ${1:-} != --help ]]; then
	command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
		{ echo "node: needs root, or passwordless sudo" >&2 && exit 1; }
	exec sudo -n env "PATH=$PATH" "HOME=$HOME" "GOPATH=$(go env GOPATH 2>/dev/null || true)" \
		"GOMODCACHE=$(go env GOMODCACHE 2>/dev/null || true)" "GOPROXY=$(go env GOPROXY 2>/dev/null || true)" \
		"MOONTV_CLUSTER_DIR=${MOONTV_CLUSTER_DIR:-$HOME/.cache/moontv-cluster}" \
		"MOONTV_TOOLCHAIN_CACHE=${MOONTV_TOOLCHAIN_CACHE:-$HOME/.cache/moontv-toolchain}" \
		"MOONTV_CLUSTER_TIMEOUT=${MOONTV_CLUSTER_TIMEOUT:-180}" \
		"MOONTV_NODE_GATEWAY_PORT=${MOONTV_NODE_GATEWAY_PORT:-18088}" \
		"MOONTV_NODE_GATEWAY=${MOONTV_NODE_GATEWAY:-gateway-system/moontv-node}" \
		"MOONTV_NODE_DEFAULT_STORAGE=${MOONTV_NODE_DEFAULT_STORAGE:-1}" \
		"MOONTV_NODE_SOLE_USER=${MOONTV_NODE_SOLE_USER:-0}" \
		"SUDO_OWNER=$(id -u):$(id -g)" bash "$0" "$@"
fi
STATE=${MOONTV_CLUSTER_DIR:-$HOME/.cache/moontv-cluster}
TIMEOUT=${MOONTV_CLUSTER_TIMEOUT:-180}
NODE_DIR=$STATE/node
NODE_NAME=moontv-node
CONTEXT=moontv-node
KUBECONFIG_PATH=$NODE_DIR/kubeconfig
BRIDGE=moontv0
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
ETCD_PORT=12379
APISERVER_PORT=16443
GATEWAY_PORT=${MOONTV_NODE_GATEWAY_PORT:-18088}
GATEWAY_REF=${MOONTV_NODE_GATEWAY:-gateway-system/moontv-node}
DEFAULT_STORAGE=${MOONTV_NODE_DEFAULT_STORAGE:-1}
SOLE_USER=${MOONTV_NODE_SOLE_USER:-0}
STORAGE_CLASS=moontv-node-local
VOLUMES=16
PAUSE_IMAGE=moontv.local/pause:1
SOCK=$NODE_DIR/containerd/containerd.sock
PIDS=$NODE_DIR/pids
LOGS=$NODE_DIR/logs
# The API server's audit log (JSON lines; audit_policy says what it records); removed by `down`.
AUDIT_LOG=$LOGS/audit.log
HOST=$NODE_DIR/host
GUARD_CHAIN=MOONTV-NODE-GUARD
FORWARD_CHAIN=MOONTV-NODE-FORWARD
# Health endpoints, all on 127.0.0.1.
CM_PORT=20257
SCHEDULER_PORT=20259
KUBELET_HEALTHZ_PORT=20248
PROXY_HEALTHZ_PORT=20256
PROXY_METRICS_PORT=20249
COREDNS_READY_PORT=20181
ROUTER_HEALTH_PORT=20244
TRAEFIK_PING_PORT=20280
# metrics-server serves on the node's address (the API server reaches it through the
# EndpointSlice of its Service): https://NODE_IP:METRICS_SERVER_PORT.
METRICS_SERVER_PORT=20443
METRICS_API=v1beta1.metrics.k8s.io
# How often metrics-server scrapes the kubelet (10 s is its minimum); `kubectl top` needs two.
METRICS_RESOLUTION=10s
# renovate: datasource=go depName=sigs.k8s.io/gateway-api
GATEWAY_API_MODULE=sigs.k8s.io/gateway-api@v1.6.3
# The newest prometheus-operator module version the Go module proxy serves.
# renovate: datasource=go depName=github.com/prometheus-operator/prometheus-operator
PROMETHEUS_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator@v0.85.0
# Kernel settings that the node (or the kubelet, kube-proxy) change; saved and restored.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
	vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
	kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet)
# Host directories the node's components create outside NODE_DIR (removed if `up` created them).
HOST_DIRS=(/var/log/containers /var/log/pods /var/lib/cni /run/netns /run/containerd /var/lib/kubelet
	/etc/cni /opt/cni /usr/libexec/kubernetes /etc/kubernetes)
# Process start order; stopped in reverse.
COMPONENTS=(etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
	coredns kube-router traefik metrics-server)

die() {
	echo "node: $*" >&2
	exit 1
}

[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "MOONTV_CLUSTER_TIMEOUT must be a whole number of seconds, got '$TIMEOUT'"
[[ $GATEWAY_PORT =~ ^[0-9]+$ ]] && ((GATEWAY_PORT > 0 && GATEWAY_PORT < 65536)) ||
	die "MOONTV_NODE_GATEWAY_PORT must be a port number (1-65535), got '$GATEWAY_PORT'"
[[ $GATEWAY_REF =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] ||
	die "MOONTV_NODE_GATEWAY must be NAMESPACE/NAME (lower-case DNS labels), got '$GATEWAY_REF'"
[[ $DEFAULT_STORAGE == 0 || $DEFAULT_STORAGE == 1 ]] ||
	die "MOONTV_NODE_DEFAULT_STORAGE must be 1 (default StorageClass) or 0 (none), got '$DEFAULT_STORAGE'"
[[ $SOLE_USER == 0 || $SOLE_USER == 1 ]] ||
	die "MOONTV_NODE_SOLE_USER must be 1 (the only user of the node) or 0, got '$SOLE_USER'"
GATEWAY_NAMESPACE=${GATEWAY_REF%/*}
GATEWAY_NAME=${GATEWAY_REF#*/}

# ---------------------------------------------------------------------------------------------
# Host packages

# command -> Debian package
declare -A NODE_PACKAGES=(
	[containerd]=containerd [ctr]=containerd [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins
	[iptables]=iptables [nft]=nftables [conntrack]=conntrack [ipset]=ipset [debootstrap]=debootstrap
	[gcc]=gcc [/usr/lib/x86_64-linux-gnu/libc.a]=libc6-dev [openssl]=openssl [curl]=curl
	[findmnt]=util-linux [busybox]=busybox-static
)

deps() {
	local what missing=()
	for what in "${!NODE_PACKAGES[@]}"; do
		if [[ $what == /* ]]; then
			[[ -e $what ]] || missing+=("${NODE_PACKAGES[$what]}")
		else
			command -v "$what" >/dev/null 2>&1 || missing+=("${NODE_PACKAGES[$what]}")
		fi
	done
	((${#missing[@]})) || return 0
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	echo "installing the node's host packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	# policy-rc.d 101: Debian must not start the packaged containerd; the node runs its own.
	local policy=/usr/sbin/policy-rc.d made_policy=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
	fi
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		{ ((made_policy)) && rm -f "$policy"; die "apt-get install ${missing[*]} failed"; }
	((made_policy)) && rm -f "$policy"
	return 0
}

# ---------------------------------------------------------------------------------------------
# Helpers

bin_dir() {
	bash "$ROOT/tools/toolchain.sh" --bin-dir
}

need_binaries() {
	local b missing=()
	for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns \
		kube-router traefik metrics-server; do
		[[ -x $BIN/$b ]] || missing+=("$b")
	done
	((${#missing[@]} == 0)) ||
		die "missing from $BIN: ${missing[*]}; run: bash tools/toolchain.sh --only etcd,kube,node,coredns,kube-router,traefik,metrics-server"
}

kctl() {
	kubectl --kubeconfig "$KUBECONFIG_PATH" --context "$CONTEXT" "$@"
}

module_dir() {
	go mod download -json "$1" | python3 -c 'import json,sys
d = json.load(sys.stdin)
if "Error" in d: sys.exit("node: " + d["Error"])
print(d["Dir"])'
}

sysctl_path() {
	echo "/proc/sys/${1//.//}"
}

# start NAME COMMAND...: run COMMAND in its own session, log to $LOGS/NAME.log.
start() {
	local name=$1
	shift
	setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
	echo $! >"$PIDS/$name.pid"
}

running() {
	local pid
	[[ -f $PIDS/$1.pid ]] && pid=$(cat "$PIDS/$1.pid") && kill -0 "$pid" 2>/dev/null
}

# fail COMPONENT MESSAGE: say which component failed, show its log tail, tear down, exit 1.
fail() {
	local name=$1 state="still running"
	shift
	trap - ERR
	set +e
	running "$name" || state="not running"
	{
		echo "node-up: $name: $* ($state)"
		if [[ -f $LOGS/$name.log ]]; then
			echo "--- last lines of $LOGS/$name.log"
			tail -n 40 "$LOGS/$name.log"
			echo "---"
		fi
	} >&2
	if [[ ${MOONTV_NODE_KEEP_ON_FAILURE:-0} == 1 ]]; then
		echo "node-up: MOONTV_NODE_KEEP_ON_FAILURE=1: leaving the node as it is" >&2
	else
		echo "node-up: tearing down what was started" >&2
		down >&2 || true
	fi
	exit 1
}

remaining() {
	local left=$((DEADLINE - $(date +%s)))
	((left > 0)) && echo "$left" || echo 1
}

# wait_ready NAME WHAT COMMAND...: poll COMMAND until it succeeds, the component dies or the
# start deadline passes.
wait_ready() {
	local name=$1 what=$2
	shift 2
	while :; do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		if [[ -f $PIDS/$name.pid ]] && ! running "$name"; then
			fail "$name" "exited before $what"
		fi
		(($(date +%s) < DEADLINE)) || fail "$name" "not $what within ${TIMEOUT}s of the start"
		sleep 0.5
	done
}

# ---------------------------------------------------------------------------------------------
# Certificates and kubeconfigs

pki() {
	local d=$NODE_DIR/pki
	mkdir -p "$d"
	ca ca moontv-node-ca
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/sa.key" 2>/dev/null
	openssl ec -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
	cert apiserver kube-apiserver "" serverAuth \
		"IP:$NODE_IP,IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
	cert kubelet-serving "system:node:$NODE_NAME" system:nodes serverAuth "IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE_NAME"
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
	cert admin moontv-node-admin system:masters clientAuth
	cert controller-manager system:kube-controller-manager "" clientAuth
	cert scheduler system:kube-scheduler "" clientAuth
	cert kubelet "system:node:$NODE_NAME" system:nodes clientAuth
	cert kube-proxy system:kube-proxy "" clientAuth
	cert coredns moontv-node:coredns "" clientAuth
	cert kube-router moontv-node:kube-router "" clientAuth
	cert traefik moontv-node:traefik "" clientAuth
	# The aggregation layer: the API server proxies to metrics-server as front-proxy-client (its
	# own CA, as requestheader authentication wants); metrics-server serves under its Service's name.
	ca front-proxy-ca moontv-node-front-proxy-ca
	CA=front-proxy-ca cert front-proxy-client front-proxy-client "" clientAuth
	cert metrics-server-serving metrics-server.kube-system.svc "" serverAuth \
		"DNS:metrics-server.kube-system.svc,IP:$NODE_IP"
	cert metrics-server moontv-node:metrics-server "" clientAuth
	local name
	for name in admin controller-manager scheduler kubelet kube-proxy coredns kube-router traefik \
		metrics-server; do
		kubeconfig "$name"
	done
	cp "$NODE_DIR/admin.kubeconfig" "$KUBECONFIG_PATH"
	# Run through sudo: the caller uses the kubeconfig (and its client key) as itself.
	if [[ -n ${SUDO_OWNER:-} ]]; then
		chown "$SUDO_OWNER" "$NODE_DIR" "$d" "$KUBECONFIG_PATH" "$d/ca.crt" "$d/admin.crt" "$d/admin.key"
	fi
}

# ca NAME CN: a self-signed CA, $NODE_DIR/pki/NAME.{crt,key}.
ca() {
	local d=$NODE_DIR/pki
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/$1.key" 2>/dev/null
	openssl req -x509 -new -key "$d/$1.key" -subj "/CN=$2" -days 30 -out "$d/$1.crt" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

# cert NAME CN O EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]: signed by the CA $CA (default: ca).
cert() {
	local d=$NODE_DIR/pki name=$1 cn=$2 o=$3 eku=$4 sans=${5:-} subj ca=${CA:-ca}
	subj="/CN=$cn"
	[[ -z $o ]] || subj+="/O=$o"
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/$name.key" 2>/dev/null
	openssl req -new -key "$d/$name.key" -subj "$subj" -out "$d/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$eku"
		[[ -z $sans ]] || echo "subjectAltName=$sans"
	} >"$d/$name.ext"
	openssl x509 -req -in "$d/$name.csr" -CA "$d/$ca.crt" -CAkey "$d/$ca.key" -CAcreateserial \
		-days 30 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
	rm -f "$d/$name.csr" "$d/$name.ext"
}

kubeconfig() {
	local name=$1 d=$NODE_DIR/pki
	cat >"$NODE_DIR/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CONTEXT
  cluster:
    certificate-authority: $d/ca.crt
    server: https://$NODE_IP:$APISERVER_PORT
users:
- name: $name
  user:
    client-certificate: $d/$name.crt
    client-key: $d/$name.key
contexts:
- name: $CONTEXT
  context: {cluster: $CONTEXT, user: $name}
current-context: $CONTEXT
EOF
}

# ---------------------------------------------------------------------------------------------
# Host network: the bridge, the forwarding guard, kernel settings

save_host() {
	local key dir
	mkdir -p "$HOST"
	: >"$HOST/sysctl"
	for key in "${SYSCTLS[@]}"; do
		[[ -f $(sysctl_path "$key") ]] && echo "$key $(cat "$(sysctl_path "$key")")" >>"$HOST/sysctl"
	done
	# iptables-nft creates the nftables tables it writes to (mangle, the ip6 ones): noted so that
	# `down` can remove those it created, once empty
	if command -v nft >/dev/null; then
		nft list tables >"$HOST/nft-tables" 2>/dev/null || true
	fi
	: >"$HOST/created-dirs"
	for dir in "${HOST_DIRS[@]}"; do
		[[ -e $dir ]] || echo "$dir" >>"$HOST/created-dirs"
	done
}

host_network() {
	ip link add "$BRIDGE" type bridge
	ip addr add "$NODE_IP/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	echo 1 >/proc/sys/net/ipv4/ip_forward
	echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
	# Pod traffic stays on this machine: nothing from the pod network is forwarded anywhere but
	# back onto the bridge, and nothing is forwarded into it from elsewhere. In the mangle table,
	# so that no ACCEPT of the filter table (kube-proxy, kube-router, dockerd) comes first.
	iptables -w -t mangle -N "$GUARD_CHAIN"
	iptables -w -t mangle -A "$GUARD_CHAIN" -s "$POD_CIDR" ! -o "$BRIDGE" -j DROP
	iptables -w -t mangle -A "$GUARD_CHAIN" -d "$POD_CIDR" ! -i "$BRIDGE" -j DROP
	iptables -w -t mangle -I FORWARD 1 -j "$GUARD_CHAIN"
	# The host's FORWARD policy may be DROP (dockerd sets it); pods talk to each other across the
	# bridge. Appended, so that kube-router's policy chain (inserted first) still decides.
	iptables -w -t filter -N "$FORWARD_CHAIN"
	iptables -w -t filter -A "$FORWARD_CHAIN" -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
	iptables -w -t filter -A FORWARD -j "$FORWARD_CHAIN"
}

# ---------------------------------------------------------------------------------------------
# Configuration files

write_configs() {
	mkdir -p "$NODE_DIR/cni/net.d" "$NODE_DIR/containerd" "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs" \
		"$NODE_DIR/volumes"
	cat >"$NODE_DIR/cni/net.d/10-moontv-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "moontv-node",
  "plugins": [{
    "type": "bridge",
    "bridge": "$BRIDGE",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dataDir": "$NODE_DIR/cni/ipam"
    }
  }]
}
EOF
	cat >"$NODE_DIR/containerd/config.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The VM lacks CAP_SYS_RESOURCE: a negative oom_score_adj fails in runc.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "$(command -v runc)"
  Root = "$NODE_DIR/containerd/runc"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "$NODE_DIR/cni/net.d"
EOF
	cat >"$NODE_DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $NODE_DIR/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $NODE_DIR/pki/kubelet-serving.crt
tlsPrivateKeyFile: $NODE_DIR/pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$SOCK
# cgroup v1 on this VM: kubelet 1.36 refuses it unless told; runc uses cgroupfs too.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
# The VM lacks CAP_SYS_RESOURCE: no negative oom_score_adj.
oomScoreAdj: 0
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
podLogsDir: $NODE_DIR/pod-logs
volumePluginDir: $NODE_DIR/kubelet/volume-plugins
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# Images are imported, never pulled: do not collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
syncFrequency: 10s
maxPods: 110
EOF
	cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODE_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
oomScoreAdj: 0
nodePortAddresses: [$NODE_IP/32]
iptables: {localhostNodePorts: false}
# Leave the host's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
	cat >"$NODE_DIR/traefik.yaml" <<EOF
global: {checkNewVersion: false, sendAnonymousUsage: false}
log: {level: INFO}
entryPoints:
  web: {address: "127.0.0.1:$GATEWAY_PORT"}
  ping: {address: "127.0.0.1:$TRAEFIK_PING_PORT"}
ping: {entryPoint: ping}
# Per-service request counts and latency (the canary gate's real-traffic signal).
metrics:
  prometheus: {entryPoint: ping, addServicesLabels: true, addEntryPointsLabels: false,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]}
# Every failed request (499 and 5xx) with its route, backend Service and pod (ServiceURL), the
# status the pod answered (OriginStatus, empty when none answered) and durations: what the
# gate's error ratio counts, one line each.
accessLog:
  filePath: $LOGS/gateway-failures.log
  format: json
  filters: {statusCodes: ["499-599"]}
  fields: {headers: {defaultMode: drop}}
providers:
  kubernetesGateway:
    statusAddress: {ip: 127.0.0.1}
  # Traefik's own resources, for what its Gateway provider lacks (a mirroring TraefikService
  # stands in for RequestMirror, which it answers with 500). Named the legacy way: a mirror's
  # Service is <namespace>-<service>-<port>@kubernetescrd in the metrics (docs/releasing.md).
  kubernetesCRD: {safeNaming: false}
EOF
	cat >"$NODE_DIR/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    ready 127.0.0.1:$COREDNS_READY_PORT
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $NODE_DIR/coredns.kubeconfig $CONTEXT
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF
}

# The API server's audit policy: who wrote what (Metadata level: user, verb, object, response
# code; never a request or response body, so no Secret value), for every write outside the system
# namespaces, refused ones included. The cluster's own machinery (kubelet, controllers,
# scheduler, kube-system service accounts), the high-volume events and leases, and access and
# token reviews (questions that store nothing, such as the preflight's) are left out.
audit_policy() {
	cat >"$NODE_DIR/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:nodes", "system:serviceaccounts:kube-system"]
- level: None
  users: ["system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy",
          "system:apiserver"]
- level: None
  resources: [{group: "", resources: [events]}, {group: coordination.k8s.io, resources: [leases]},
              {group: events.k8s.io, resources: [events]}]
- level: None
  resources: [{group: authorization.k8s.io}, {group: authentication.k8s.io,
              resources: [selfsubjectreviews, tokenreviews]}]
- level: None
  namespaces: [kube-system, kube-public, kube-node-lease]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
EOF
}

# ---------------------------------------------------------------------------------------------
# Images

pause_image() {
	local d=$NODE_DIR/pause
	mkdir -p "$d"
	gcc -static -O2 -s -o "$d/pause" "$ROOT/tools/node/pause.c"
	python3 "$ROOT/tools/docker_archive.py" "$d/pause.tar" "$PAUSE_IMAGE" --add "$d/pause=/pause" \
		--user 65535:65535 --cmd /pause
}

import_images() {
	local f
	for f in "$@"; do
		[[ -f $f ]] || die "no image tarball '$f'"
		ctr -a "$SOCK" -n k8s.io images import "$f" >/dev/null || die "ctr images import $f failed"
	done
}

# ---------------------------------------------------------------------------------------------
# Cluster objects

objects() {
	local default_annotation=false
	((DEFAULT_STORAGE)) && default_annotation=true
	kctl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "moontv-node:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "moontv-node:kube-router"}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, update]
EOF
	traefik_access
	metrics_server_access
	local who
	for who in coredns kube-router; do
		kctl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "moontv-node:$who"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "moontv-node:$who"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "moontv-node:$who"}
EOF
	done
	local i items=""
	for ((i = 0; i < VOLUMES; i++)); do
		mkdir -p "$NODE_DIR/volumes/pv-$i"
		# Any user id may write: hostPath volumes ignore fsGroup.
		chmod 0777 "$NODE_DIR/volumes/pv-$i"
		items+="
- apiVersion: v1
  kind: PersistentVolume
  metadata: {name: $STORAGE_CLASS-$i}
  spec:
    capacity: {storage: 100Gi}
    accessModes: [ReadWriteOnce]
    storageClassName: $STORAGE_CLASS
    persistentVolumeReclaimPolicy: Retain
    hostPath: {path: $NODE_DIR/volumes/pv-$i, type: Directory}"
	done
	kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: List
items:
- apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata:
    name: $STORAGE_CLASS
    annotations: {storageclass.kubernetes.io/is-default-class: "$default_annotation"}
  provisioner: kubernetes.io/no-provisioner
  volumeBindingMode: Immediate
  reclaimPolicy: Retain$items
EOF
}

# traefik_access: the role of Traefik's user (Gateway API objects, Services and EndpointSlices,
# and Traefik's own resources, read only) and its binding.
traefik_access() {
	kctl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "moontv-node:traefik"}
rules:
- apiGroups: [""]
  resources: [namespaces, secrets, configmaps, services, nodes]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: ["*"]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: ["*/status"]
  verbs: [get, update, patch]
- apiGroups: [traefik.io]
  resources: ["*"]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "moontv-node:traefik"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "moontv-node:traefik"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "moontv-node:traefik"}
EOF
}

# metrics_server_access: what metrics-server's user may do (upstream's manifests/base/rbac.yaml,
# bound to its client certificate's user instead of a service account): read pods and nodes and
# the kubelets' metrics, read the API server's front-proxy CA and delegate authentication and
# authorization to it; and who may read the metrics (system:aggregated-metrics-reader, aggregated
# into view, edit and admin).
metrics_server_access() {
	kctl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "system:aggregated-metrics-reader"
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
rules:
- apiGroups: [metrics.k8s.io]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:metrics-server"}
rules:
- apiGroups: [""]
  resources: [nodes/metrics]
  verbs: [get]
- apiGroups: [""]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:metrics-server"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:metrics-server"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "moontv-node:metrics-server"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "metrics-server:system:auth-delegator"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "moontv-node:metrics-server"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: metrics-server-auth-reader, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "moontv-node:metrics-server"}
EOF
}

# metrics_api: the Service of metrics-server (no selector: its EndpointSlice names the host
# process on the node's address) and the APIService that the API server proxies
# /apis/metrics.k8s.io/v1beta1 to, checking metrics-server's certificate against the node's CA.
# Registered only once metrics-server answers: an unavailable aggregated API fails discovery,
# and with it namespace deletion.
metrics_api() {
	kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system, labels: {app.kubernetes.io/name: metrics-server}}
spec:
  ports:
  - {name: https, port: 443, protocol: TCP, targetPort: $METRICS_SERVER_PORT, appProtocol: https}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server
  namespace: kube-system
  labels:
    kubernetes.io/service-name: metrics-server
    endpointslice.kubernetes.io/managed-by: moontv-node
addressType: IPv4
ports:
- {name: https, port: $METRICS_SERVER_PORT, protocol: TCP, appProtocol: https}
endpoints:
- addresses: [$NODE_IP]
  conditions: {ready: true}
  nodeName: $NODE_NAME
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: $METRICS_API}
spec:
  service: {name: metrics-server, namespace: kube-system, port: 443}
  group: metrics.k8s.io
  version: v1beta1
  caBundle: $(base64 -w0 "$NODE_DIR/pki/ca.crt")
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
}

start_metrics_server() {
	local p=$NODE_DIR/pki kubeconfig=$NODE_DIR/metrics-server.kubeconfig
	start metrics-server "$BIN/metrics-server" --kubeconfig "$kubeconfig" \
		--authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
		--bind-address "$NODE_IP" --secure-port "$METRICS_SERVER_PORT" \
		--tls-cert-file "$p/metrics-server-serving.crt" --tls-private-key-file "$p/metrics-server-serving.key" \
		--kubelet-certificate-authority "$p/ca.crt" --kubelet-preferred-address-types InternalIP \
		--kubelet-use-node-status-port --metric-resolution "$METRICS_RESOLUTION" \
		--kubelet-request-timeout 5s --profiling=false
}

wait_metrics_server() {
	wait_ready metrics-server "live" \
		curl -sf --cacert "$NODE_DIR/pki/ca.crt" "https://$NODE_IP:$METRICS_SERVER_PORT/livez"
	metrics_api
	wait_ready metrics-server "serving $METRICS_API (APIService Available)" \
		kctl wait --for=condition=Available "apiservice/$METRICS_API" --timeout=2s
}

# The Go module of the Traefik binary the node runs (it ships the CRDs of Traefik's resources).
traefik_module() {
	local version
	version=$("$BIN/traefik" version | sed -n 's/^Version:[[:space:]]*//p')
	[[ -n $version ]] || fail traefik "cannot read the version of $BIN/traefik"
	echo "github.com/traefik/traefik/v3@v${version#v}"
}

traefik_crds() {
	local module dir
	module=$(traefik_module)
	dir=$(module_dir "$module") || fail traefik "cannot download $module"
	kctl apply --server-side --force-conflicts \
		-f "$dir/docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml" >/dev/null
}

crds() {
	local gw po
	gw=$(module_dir "$GATEWAY_API_MODULE") || fail kube-apiserver "cannot download $GATEWAY_API_MODULE"
	po=$(module_dir "$PROMETHEUS_OPERATOR_MODULE") || fail kube-apiserver "cannot download $PROMETHEUS_OPERATOR_MODULE"
	kctl apply --server-side --force-conflicts -f "$gw/config/crd/standard/" >/dev/null
	kctl apply --server-side --force-conflicts -f "$po/example/prometheus-operator-crd/" >/dev/null
	traefik_crds
	kctl wait --for=condition=Established crd --all --timeout="$(remaining)s" >/dev/null
}

start_traefik() {
	start traefik env KUBECONFIG="$NODE_DIR/traefik.kubeconfig" "$BIN/traefik" \
		--configFile="$NODE_DIR/traefik.yaml"
}

wait_traefik() {
	wait_ready traefik "answering ping" curl -sf "http://127.0.0.1:$TRAEFIK_PING_PORT/ping"
	wait_ready traefik "programming Gateway $GATEWAY_REF" \
		kctl -n "$GATEWAY_NAMESPACE" wait --for=condition=Programmed "gateway/$GATEWAY_NAME" --timeout=2s
}

# A node started by an older `up` runs Traefik without its CRD provider: give it the CRDs, the
# access and the provider, restarting Traefik alone (a few seconds without the Gateway), and only
# when the caller is the node's sole user.
update_traefik() {
	grep -q '^  kubernetesCRD:' "$NODE_DIR/traefik.yaml" && return 0
	if [[ $SOLE_USER != 1 ]]; then
		echo "traefik: runs without its kubernetesCRD provider (started by an older node-up); it is" \
			"updated by the next node-up made when no one else uses the node"
		return 0
	fi
	echo "traefik: adding its kubernetesCRD provider (restarting Traefik only)"
	traefik_crds
	kctl wait --for=condition=Established crd/traefikservices.traefik.io --timeout="$(remaining)s" >/dev/null
	traefik_access
	sed -i 's/^  kubernetesGateway:$/  kubernetesCRD: {safeNaming: false}\n&/' "$NODE_DIR/traefik.yaml"
	stop traefik
	start_traefik
	wait_traefik
}

gateway() {
	kctl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $GATEWAY_NAMESPACE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: moontv-node}
spec:
  controllerName: traefik.io/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: $GATEWAY_NAME, namespace: $GATEWAY_NAMESPACE}
spec:
  gatewayClassName: moontv-node
  listeners:
  - name: web
    protocol: HTTP
    port: $GATEWAY_PORT
    allowedRoutes:
      namespaces: {from: All}
EOF
}

# ---------------------------------------------------------------------------------------------
# up

up() {
	local started
	started=$(date +%s)
	DEADLINE=$((started + TIMEOUT))
	command -v kubectl >/dev/null || die "kubectl is not on PATH"
	BIN=$(bin_dir)
	need_binaries
	if node_running; then
		echo "the node is already running"
		DEADLINE=$(($(date +%s) + TIMEOUT))
		update_traefik
		[[ -f $PIDS/metrics-server.pid ]] ||
			echo "metrics-server: not running (the node was started by an older node-up, whose API" \
				"server lacks the aggregation layer); it starts with the next node-up after node-down"
		report
		return 0
	fi
	deps
	clean
	mkdir -p "$NODE_DIR" "$PIDS" "$LOGS"
	set -E
	trap 'fail node-up "a set-up step failed (line $LINENO)"' ERR
	save_host
	host_network
	pki
	write_configs
	audit_policy
	pause_image

	start etcd "$BIN/etcd" --name "$NODE_NAME" --data-dir "$NODE_DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
		--initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
		--initial-cluster "$NODE_NAME=http://127.0.0.1:$((ETCD_PORT + 1))" \
		--unsafe-no-fsync --log-level warn
	start containerd containerd --config "$NODE_DIR/containerd/config.toml"
	local p=$NODE_DIR/pki
	start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
		--service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC \
		--client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
		--kubelet-client-certificate "$p/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$p/apiserver-kubelet-client.key" --kubelet-certificate-authority "$p/ca.crt" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
		--kubelet-preferred-address-types InternalIP,Hostname \
		--allow-privileged=true --enable-admission-plugins NodeRestriction --profiling=false \
		--audit-policy-file "$NODE_DIR/audit-policy.yaml" --audit-log-path "$AUDIT_LOG" \
		--audit-log-maxsize 100 --audit-log-maxbackup 1 \
		--requestheader-client-ca-file "$p/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
		--requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
		--requestheader-extra-headers-prefix X-Remote-Extra- \
		--proxy-client-cert-file "$p/front-proxy-client.crt" --proxy-client-key-file "$p/front-proxy-client.key" \
		--enable-aggregator-routing=true
	wait_ready etcd "healthy" curl -sf "http://127.0.0.1:$ETCD_PORT/health"
	wait_ready containerd "answering on $SOCK" ctr -a "$SOCK" version
	import_images "$NODE_DIR/pause/pause.tar"
	wait_ready kube-apiserver "ready" kctl get --raw /readyz
	start kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig "$NODE_DIR/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$NODE_DIR/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$NODE_DIR/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port "$CM_PORT" --leader-elect=false \
		--cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" --root-ca-file "$p/ca.crt" \
		--service-account-private-key-file "$p/sa.key" --use-service-account-credentials=true \
		--allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
		--service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
	start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$NODE_DIR/scheduler.kubeconfig" \
		--authentication-kubeconfig "$NODE_DIR/scheduler.kubeconfig" \
		--authorization-kubeconfig "$NODE_DIR/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false --profiling=false
	objects
	start kubelet "$BIN/kubelet" --config "$NODE_DIR/kubelet/config.yaml" \
		--kubeconfig "$NODE_DIR/kubelet.kubeconfig" --root-dir "$NODE_DIR/kubelet" \
		--cert-dir "$NODE_DIR/kubelet/pki" \
		--hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
	start kube-proxy "$BIN/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml"
	start coredns "$BIN/coredns" -conf "$NODE_DIR/Corefile"
	start_metrics_server
	crds
	gateway
	start_traefik
	wait_ready kube-controller-manager "healthy" curl -sfk "https://127.0.0.1:$CM_PORT/healthz"
	wait_ready kube-scheduler "healthy" curl -sfk "https://127.0.0.1:$SCHEDULER_PORT/healthz"
	wait_ready kubelet "healthy" curl -sf "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
	wait_ready kubelet "Ready (node $NODE_NAME)" kctl wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
	# kube-router reads its node's addresses at start: the node must be registered.
	start kube-router "$BIN/kube-router" --kubeconfig "$NODE_DIR/kube-router.kubeconfig" \
		--hostname-override "$NODE_NAME" --run-firewall=true --run-router=false \
		--run-service-proxy=false --run-loadbalancer=false --enable-cni=false --enable-ipv6=false \
		--service-cluster-ip-range "$SERVICE_CIDR" --health-port "$ROUTER_HEALTH_PORT" --metrics-port 0
	wait_ready kube-proxy "healthy" curl -sf "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"
	wait_ready coredns "ready" curl -sf "http://127.0.0.1:$COREDNS_READY_PORT/ready"
	wait_ready kube-router "healthy" curl -sf "http://127.0.0.1:$ROUTER_HEALTH_PORT/healthz"
	wait_traefik
	wait_metrics_server
	echo "node ready in $(($(date +%s) - started))s"
	report
}

all_running() {
	local c
	for c in "${COMPONENTS[@]}"; do
		# a node started by an older node-up has no metrics-server (nor the aggregation layer)
		[[ $c == metrics-server && ! -f $PIDS/$c.pid ]] && continue
		running "$c" || return 1
	done
}

node_running() {
	[[ -d $NODE_DIR ]] && all_running && kctl get --raw /readyz >/dev/null 2>&1
}

# What an earlier node left when its processes went without `down` (state in NODE_DIR, kernel
# settings its kubelet changed, the bridge and chains): removed, restoring what that node saved,
# so the machine is as it was before that node. A running node is left alone.
clean() {
	local removed=
	command -v kubectl >/dev/null || die "kubectl is not on PATH"
	if node_running; then
		echo "the node is running: nothing to clean"
		return 0
	fi
	if [[ -d $NODE_DIR ]]; then
		echo "a stopped or partial node is left in $NODE_DIR; removing it first"
		down
		removed=1
	fi
	if ip link show "$BRIDGE" >/dev/null 2>&1 || iptables -w -t mangle -S "$GUARD_CHAIN" >/dev/null 2>&1; then
		if curl -sk -o /dev/null --max-time 3 "https://$NODE_IP:$APISERVER_PORT/livez"; then
			die "a node whose state is not in $NODE_DIR is running (another MOONTV_CLUSTER_DIR?); stop it with that setting"
		fi
		echo "removing the network leftovers of an earlier node"
		clean_network
		return 0
	fi
	[[ -n ${removed:-} ]] || echo "no earlier node left"
}

report() {
	echo "kubeconfig: $KUBECONFIG_PATH"
	echo "context: $CONTEXT"
	echo "gateway: http://127.0.0.1:$GATEWAY_PORT"
	echo "gateway-ref: $GATEWAY_REF"
	echo "containerd: $SOCK"
	echo "storage-class: $STORAGE_CLASS"
	echo "gateway-metrics: http://127.0.0.1:$TRAEFIK_PING_PORT/metrics"
	echo "gateway-failures: $LOGS/gateway-failures.log"
	# A node started by an older node-up runs without metrics-server: then no metrics-api line.
	[[ ! -f $PIDS/metrics-server.pid ]] || echo "metrics-api: $METRICS_API"
	# A node started by an older node-up runs without auditing: then no audit-log line.
	if tr '\0' ' ' <"/proc/$(cat "$PIDS/kube-apiserver.pid")/cmdline" 2>/dev/null | grep -q -- --audit-log-path; then
		echo "audit-log: $AUDIT_LOG"
	fi
}

# ---------------------------------------------------------------------------------------------
# down

# stop NAME: SIGTERM, then SIGKILL after 10 s.
stop() {
	local name=$1 pid i
	[[ -f $PIDS/$name.pid ]] || return 0
	pid=$(cat "$PIDS/$name.pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 20; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$PIDS/$name.pid"
}

# Processes in the kubelet's pod cgroups (cgroup v1 and v2 layouts).
pod_pids() {
	local f
	for f in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods /sys/fs/cgroup/kubepods; do
		if [[ -d $f ]]; then
			find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null || true
		fi
	done | sort -un
}

# The containerd shims that serve this node's containerd (their command line names its socket).
shim_pids() {
	local p cmd
	for p in /proc/[0-9]*; do
		cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		if [[ $cmd == *containerd-shim*" -address $SOCK "* ]]; then
			echo "${p#/proc/}"
		fi
	done
}

kill_pods() {
	local pid inodes="" ns i
	for pid in $(pod_pids); do
		ns=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) && inodes+=" $ns"
	done
	for ((i = 0; i < 10; i++)); do
		pid=$(pod_pids)
		[[ -n $pid ]] || break
		# shellcheck disable=SC2086 # a list of PIDs
		kill -9 $pid 2>/dev/null || true
		sleep 0.5
	done
	# containers outside the pod cgroups (none normally), then the shims themselves
	for pid in $(shim_pids); do
		pkill -9 -P "$pid" 2>/dev/null || true
		kill -9 "$pid" 2>/dev/null || true
	done
	# A killed shim leaves its socket: /run/containerd/s/<sha256 of SOCKET/NAMESPACE/TASK-ID>.
	local task sum
	for task in "$NODE_DIR"/containerd/state/io.containerd.runtime.v2.task/*/*; do
		[[ -d $task ]] || continue
		sum=$(printf '%s' "$SOCK/$(basename "$(dirname "$task")")/$(basename "$task")" | sha256sum | cut -d' ' -f1)
		rm -f "/run/containerd/s/$sum"
		# libcni's cached results of the sandbox's networks (the pod network and loopback)
		rm -f /var/lib/cni/results/*-"$(basename "$task")"-*
	done
	# The pods' network namespaces (bind-mounted under /run/netns by the CRI plugin).
	local f
	for f in /run/netns/cni-*; do
		[[ -e $f ]] || continue
		ns=$(stat -L -c %i "$f" 2>/dev/null || true)
		if [[ -n $ns && " $inodes " == *" $ns "* ]] || [[ -z $ns ]]; then
			umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null || true
			rm -f "$f"
		fi
	done
}

unmount_state() {
	local m
	while IFS= read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done < <(findmnt -rn -o TARGET | grep -F "$NODE_DIR/" | sort -r)
	# the shims' sockets and the overlay mounts name the state under the containerd root
	while IFS= read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done < <(findmnt -rn -o TARGET | grep -F "$NODE_DIR" | sort -r)
}

# remove_chains IPTABLES: delete every KUBE-* chain (kube-proxy, kubelet, kube-router) and this
# script's chains, with the rules that jump to them, from every table.
remove_chains() {
	local ipt=$1 table rule chain
	for table in filter nat mangle raw; do
		"$ipt" -w -t "$table" -S >/dev/null 2>&1 || continue
		while IFS= read -r rule; do
			# shellcheck disable=SC2086 # the rule's words
			eval "\"$ipt\" -w -t $table -D ${rule#-A }" 2>/dev/null || true
		done < <("$ipt" -w -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j (KUBE-|MOONTV-NODE-)' |
			grep -vE '^-A (KUBE-|MOONTV-NODE-)')
		for chain in $("$ipt" -w -t "$table" -S 2>/dev/null | sed -n 's/^-N \(\(KUBE-\|MOONTV-NODE-\)[^ ]*\)$/\1/p'); do
			"$ipt" -w -t "$table" -F "$chain" 2>/dev/null || true
		done
		for chain in $("$ipt" -w -t "$table" -S 2>/dev/null | sed -n 's/^-N \(\(KUBE-\|MOONTV-NODE-\)[^ ]*\)$/\1/p'); do
			"$ipt" -w -t "$table" -X "$chain" 2>/dev/null || true
		done
	done
}

clean_network() {
	local bin set
	bin=$(bin_dir 2>/dev/null || true)
	if [[ -x $bin/kube-proxy ]] && command -v iptables >/dev/null; then
		"$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true
	fi
	if command -v iptables >/dev/null; then
		remove_chains iptables
		remove_chains ip6tables
	fi
	# nftables tables kube-proxy may create (nftables mode); none of ours otherwise
	if command -v nft >/dev/null; then
		nft delete table ip kube-proxy 2>/dev/null || true
		nft delete table ip6 kube-proxy 2>/dev/null || true
	fi
	if command -v ipset >/dev/null; then
		for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router|inet6:KUBE-|inet6:kube-router)'); do
			ipset destroy "$set" 2>/dev/null || true
		done
	fi
	if ip link show "$BRIDGE" >/dev/null 2>&1; then
		ip link del "$BRIDGE"
	fi
	if command -v conntrack >/dev/null; then
		conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
		conntrack -D -d "$POD_CIDR" >/dev/null 2>&1 || true
	fi
}

restore_host() {
	local key value dir
	if [[ -f $HOST/sysctl ]]; then
		while read -r key value; do
			if [[ $key == net.ipv4.ip_forward && $value == 0 ]] && pgrep -x dockerd >/dev/null; then
				continue # a dockerd started meanwhile needs forwarding
			fi
			echo "$value" >"$(sysctl_path "$key")" 2>/dev/null || true
		done <"$HOST/sysctl"
	fi
	if [[ -f $HOST/nft-tables ]] && command -v nft >/dev/null; then
		local table rules
		while read -r table; do
			grep -qxF "$table" "$HOST/nft-tables" && continue
			# only tables without a rule (their base chains are left by iptables-nft)
			rules=$(nft list "$table" 2>/dev/null | grep -cvE '^\s*(table |chain |type |policy |\}|$)' || true)
			if [[ $rules == 0 ]]; then
				# shellcheck disable=SC2086 # "table FAMILY NAME"
				nft delete $table 2>/dev/null || true
			fi
		done < <(nft list tables 2>/dev/null)
	fi
	# the kubelet's pod cgroups
	for dir in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
		[[ -d $dir ]] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	# /var/log/containers holds the kubelet's links to the pods' logs
	if [[ -d /var/log/containers ]]; then
		find /var/log/containers -maxdepth 1 -type l -lname "$NODE_DIR/*" -delete 2>/dev/null || true
	fi
	if [[ -d /var/lib/cni/results ]]; then
		find /var/lib/cni/results -maxdepth 1 -name 'moontv-node-*' -delete 2>/dev/null || true
	fi
	# the kubelet's device plugin socket is always under /var/lib/kubelet, whatever its root dir
	if [[ -f $HOST/created-dirs ]] && grep -qx /var/lib/kubelet "$HOST/created-dirs"; then
		rm -f /var/lib/kubelet/device-plugins/kubelet.sock
	fi
	if [[ -f $HOST/created-dirs ]]; then
		while read -r dir; do
			[[ -d $dir ]] && find "$dir" -depth -type d -empty -delete 2>/dev/null || true
		done <"$HOST/created-dirs"
	fi
}

down() {
	local c i
	if [[ ! -d $NODE_DIR ]]; then
		echo "no node state in $NODE_DIR"
		clean_network
		return 0
	fi
	for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
		c=${COMPONENTS[$i]}
		[[ $c == containerd ]] && kill_pods
		stop "$c"
	done
	kill_pods
	unmount_state
	clean_network
	restore_host
	rm -rf --one-file-system "$NODE_DIR"
	echo "node stopped; state removed"
}

status() {
	local c
	if [[ ! -d $NODE_DIR ]]; then
		echo "node: not running"
		return 0
	fi
	for c in "${COMPONENTS[@]}"; do
		if running "$c"; then echo "  $c: running"; else echo "  $c: not running"; fi
	done
	if kctl get --raw /readyz >/dev/null 2>&1; then
		echo "node: running (kubeconfig $KUBECONFIG_PATH, context $CONTEXT, gateway http://127.0.0.1:$GATEWAY_PORT)"
	else
		echo "node: state in $NODE_DIR but the API server does not answer"
	fi
}

default_storage() {
	local value
	case ${1:-} in
	on) value=true ;;
	off) value=false ;;
	*) die "default-storage takes 'on' or 'off', got '${1:-}'" ;;
	esac
	kctl annotate --overwrite storageclass "$STORAGE_CLASS" \
		"storageclass.kubernetes.io/is-default-class=$value" >/dev/null
	echo "StorageClass $STORAGE_CLASS default: $value"
}

# Sourced (for trying single steps): define the functions only.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

case ${1:-} in
up) up ;;
down) down ;;
clean) clean ;;
status) status ;;
deps) deps ;;
import)
	shift
	(($#)) || die "import needs at least one docker-archive tarball"
	[[ -S $SOCK ]] || die "the node's containerd is not running ($SOCK is missing); run node-up"
	import_images "$@"
	echo "imported: $*"
	;;
default-storage) default_storage "${2:-}" ;;
-h | --help) usage ;;
"") usage >&2 && exit 2 ;;
*) die "unknown command '$1' (accepted: up, down, clean, status, import, default-storage, deps, --help)" ;;
esac
