"""The real single-node cluster of ``tools/cluster.sh node-up`` as the tests see it.

``Node`` wraps the facts ``node-up`` prints (kubeconfig, context, Gateway URL, containerd
socket) with kubectl and image import; ``host_footprint()`` lists what a node can leave on the
machine (processes, mounts, links, iptables chains and rules, nftables tables, ipsets, kernel
settings, directories) so that a test can compare the machine before ``node-up`` and after
``node-down``.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from components.quantity import parse_quantity
from tests.conftest import ROOT, skip_or_fail

STATE_ROOT = Path(os.environ.get("MOONTV_CLUSTER_DIR", Path.home() / ".cache/moontv-cluster"))
STATE_DIR = STATE_ROOT / "node"
BRIDGE = "moontv0"
POD_CIDR_PREFIX = "10.244.0."
NODE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
                 "kube-proxy", "coredns", "kube-router", "traefik", "metrics-server")
#: Kernel settings the node changes and must restore (ip_forward stays on while dockerd runs).
SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "vm.overcommit_memory",
           "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops", "kernel.keys.root_maxkeys",
           "kernel.keys.root_maxbytes", "net.ipv4.conf.all.route_localnet")
#: Host directories the node's components write outside its state directory.
HOST_DIRS = ("/var/log/containers", "/var/log/pods", "/var/lib/cni", "/var/lib/kubelet", "/etc/cni",
             "/opt/cni", "/usr/libexec/kubernetes", "/etc/kubernetes")


class Sessions:
    """Test sessions (processes) using the one node of this machine.

    Each registers a lease (a file named by its PID) before ``node-up``; at the end it drops
    it and stops the node only when no other live session holds one: the last one out stops
    it, whoever started it. Registering with node-up and checking with node-down happen under
    one lock, so a node is never stopped under a session that is starting to use it.

    The session that started the node keeps the machine's footprint from before ``node-up``
    (``node-baseline.json``) for the teardown test, whichever session runs it; ``stop_node``
    drops it.
    Sessions run their node tests side by side under ``using``: shared, or exclusive for a test
    that changes the node for everyone.
    """

    def __init__(self) -> None:
        self.dir = STATE_ROOT / "node-sessions"
        self.lock_path = STATE_ROOT / "node-sessions.lock"
        self.use_lock_path = STATE_ROOT / "node-use.lock"
        self.baseline_path = STATE_ROOT / "node-baseline.json"

    @contextlib.contextmanager
    def using(self, exclusive: bool = False) -> Iterator[None]:
        """Held around one node test (its set-up, call and tear-down)."""
        self.use_lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self.use_lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def save_baseline(self, baseline: dict[str, object]) -> None:
        """Kept with the running node's identity (its etcd's PID): a node restarted by hand
        since then does not get it."""
        footprint = {k: sorted(v) if isinstance(v, set) else v for k, v in baseline.items()}
        self.baseline_path.write_text(json.dumps({"node": _node_identity(),
                                                  "footprint": footprint}))

    def saved_baseline(self) -> dict[str, object]:
        """The footprint before a test session's ``node-up`` of the running node; {} when no
        test session started it (someone ran ``node-up`` by hand)."""
        try:
            saved = json.loads(self.baseline_path.read_text())
        except (OSError, ValueError):
            return {}
        if saved.get("node") != _node_identity():
            return {}
        return {k: v if isinstance(v, dict) else set(v) for k, v in saved["footprint"].items()}

    def stop_node(self) -> subprocess.CompletedProcess[str]:
        """``node-down``, under ``locked``; forgets the baseline once the node is down."""
        result = cluster("node-down")
        if result.returncode == 0:
            self.baseline_path.unlink(missing_ok=True)
        return result

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def join(self) -> None:
        # made under the lock: the last session out removes the directory under it
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / str(os.getpid())).touch()

    def leave(self) -> None:
        (self.dir / str(os.getpid())).unlink(missing_ok=True)

    def others(self) -> list[int]:
        """The PIDs of other live sessions (stale leases are removed)."""
        live = []
        for lease in self.dir.glob("*"):
            pid = int(lease.name) if lease.name.isdigit() else 0
            if pid == os.getpid():
                continue
            try:
                os.kill(pid, 0)
                live.append(pid)
            except (ProcessLookupError, ValueError):
                lease.unlink(missing_ok=True)
            except PermissionError:  # alive, another user's
                live.append(pid)
        return live


def cluster(*args: str, timeout: int = 900,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "tools/cluster.sh"), *args], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


def _node_identity() -> str:
    try:
        return (STATE_DIR / "pids" / "etcd.pid").read_text().strip()
    except OSError:
        return ""


def start(sessions: Sessions, run=cluster, footprint=None):  # type: ignore[no-untyped-def]
    """Join ``sessions`` and run ``node-up``; returns (node-up's result, the machine's footprint
    before the node started, seconds node-up took). When the node was running already, the
    footprint is the one the session that started it saved ({} if none did).

    The footprint is taken after ``node-deps`` installed the node's host packages: on a fresh
    machine ``node-up`` installs nftables, conntrack and ipset itself, and a footprint taken
    before that sees no nftables tables at all (``nft`` is missing), so the tables a running
    dockerd owns would look left behind by the node.

    It is also taken after ``node-clean`` removed what an earlier node left when its processes
    were killed without ``node-down`` (a CI job that ended): that node's kubelet changed kernel
    settings, and ``node-up`` restores them from that node's saved state before it starts, so a
    footprint taken before would hold the earlier node's values.
    """
    with sessions.locked():
        sessions.join()
        for step in ("node-deps", "node-clean"):
            prepared = run(step)
            if prepared.returncode != 0:
                sessions.leave()
                return prepared, {}, 0.0
        baseline = (footprint or host_footprint)()
        started = time.monotonic()
        # Alone on the node, node-up may restart a part of it to update it (tools/node.sh).
        sole = "0" if sessions.others() else "1"
        result = run("node-up", env={"MOONTV_NODE_SOLE_USER": sole})
        seconds = time.monotonic() - started
        if result.returncode == 0:
            if "the node is already running" in result.stdout:
                baseline = sessions.saved_baseline()
            else:
                sessions.save_baseline(baseline)
    if result.returncode != 0:
        sessions.leave()
    return result, baseline, seconds


def bin_dir() -> Path:
    out = subprocess.run(["bash", str(ROOT / "tools/toolchain.sh"), "--bin-dir"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return Path(out.strip())


def missing_binaries() -> list[str]:
    found = bin_dir()
    return [b for b in NODE_BINARIES if not (found / b).exists()]


@dataclass
class Node:
    kubeconfig: str
    context: str
    gateway: str  # http://127.0.0.1:PORT
    gateway_namespace: str
    gateway_name: str
    containerd: str  # the node's containerd socket
    storage_class: str
    #: the Gateway's Prometheus metrics (requests and latency per backend Service)
    gateway_metrics: str = ""
    #: the Gateway's log of failed requests (JSON lines: status, backend, durations)
    gateway_failures: str = ""
    #: start to node Ready, seconds (as measured around node-up)
    start_seconds: float = 0.0
    #: the machine before the node started ({} when no test session started it)
    baseline: dict[str, object] = field(default_factory=dict)
    #: False when the node was running already (another session started it).
    owned: bool = True
    #: The API server's audit log ("" when the node runs without auditing).
    audit_log: str = ""
    #: The APIService of the resource metrics (``kubectl top``); "" when the node runs without
    #: metrics-server (started by an older node-up).
    metrics_api: str = ""

    @classmethod
    def parse(cls, stdout: str, **extra: object) -> Node:
        info = dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)
        namespace, _, name = info["gateway-ref"].partition("/")
        return cls(kubeconfig=info["kubeconfig"], context=info["context"], gateway=info["gateway"],
                   gateway_namespace=namespace, gateway_name=name, containerd=info["containerd"],
                   storage_class=info["storage-class"],
                   gateway_metrics=info.get("gateway-metrics", ""),
                   gateway_failures=info.get("gateway-failures", ""),
                   audit_log=info.get("audit-log", ""), metrics_api=info.get("metrics-api", ""),
                   **extra)  # type: ignore[arg-type]

    def audit_records(self) -> list[dict[str, Any]]:
        """Every record of the API server's audit log so far (JSON lines)."""
        path = Path(self.audit_log)
        try:
            text = path.read_text()
        except PermissionError:
            text = subprocess.run(["sudo", "-n", "cat", str(path)], capture_output=True,
                                  text=True, check=True, timeout=60).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None,
                timeout: int = 120) -> str:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, "--context", self.context, *args],
            input=stdin, capture_output=True, text=True, check=False, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def apply(self, objects: list[dict[str, object]]) -> None:
        self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                           "items": objects}))

    def import_images(self, *tarballs: Path | str) -> None:
        result = cluster("node-import", *map(str, tarballs))
        if result.returncode != 0:
            raise AssertionError(f"node-import failed:\n{result.stdout}{result.stderr}")

    def import_as(self, tarball: Path | str, target: str, tries: int = 3) -> None:
        """Import the image ``tarball`` and give it a second name ``target`` in the node's
        containerd: a module's own name, which another test session's import of the same tag
        (built from another tree) does not replace while the module runs. Such an import can
        land between this import and the tag: the tag is checked to be this tarball's image,
        and the two steps are retried when it is not."""
        ctr = [*([] if os.geteuid() == 0 else ["sudo", "-n"]), "ctr", "-a", self.containerd,
               "-n", "k8s.io", "images"]

        def run(*args: str) -> str:
            result = subprocess.run([*ctr, *args], capture_output=True, text=True, check=False,
                                    timeout=600)
            if result.returncode != 0:
                raise AssertionError(f"ctr images {' '.join(args)} failed:\n{result.stderr}")
            return result.stdout

        found: list[str] = []
        for _ in range(tries):
            imported = re.search(r"unpacking (\S+) \((sha256:[0-9a-f]{64})\)",
                                 run("import", str(tarball)))
            assert imported, f"ctr images import {tarball} named no image"
            source, digest = imported.groups()
            run("tag", "--force", source, target)
            found = [line.split()[2] for line in run("ls", f"name=={target}").splitlines()[1:]]
            if found == [digest]:
                return
        raise AssertionError(f"{target} is not the image of {tarball} after {tries} tries: "
                             f"{found}")

    def exec(self, namespace: str, pod: str, *command: str, check: bool = False,
             container: str | None = None, timeout: int = 60) -> subprocess.CompletedProcess[str]:
        args = ["kubectl", "--kubeconfig", self.kubeconfig, "--context", self.context, "exec",
                "-n", namespace, pod, *(["-c", container] if container else []), "--", *command]
        return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)

    def pods_by_ip(self, namespace: str) -> dict[str, str]:
        """Pod IP -> ``name (image tag[, deleting])`` of the pods in ``namespace`` now."""
        pods = json.loads(self.kubectl("get", "pods", "-n", namespace, "-o", "json",
                                       check=False) or '{"items": []}')["items"]
        found = {}
        for pod in pods:
            ip = pod.get("status", {}).get("podIP")
            if ip:
                tags = ",".join(c["image"].rsplit(":", 1)[-1] for c in pod["spec"]["containers"])
                deleting = ", deleting" if pod["metadata"].get("deletionTimestamp") else ""
                found[ip] = f"{pod['metadata']['name']} ({tags}{deleting})"
        return found

    def failed_requests(self, since: float, host: str,
                        pods: dict[str, str] | None = None) -> list[str]:
        """The Gateway's failed requests (499, 5xx) for ``host`` since ``since`` (epoch seconds),
        one line each: time, status sent, status the pod answered (``-``: none answered), path,
        backend Service, pod address and, from ``pods`` (:meth:`pods_by_ip`), its name."""
        path = Path(self.gateway_failures) if self.gateway_failures else None
        if path is None or not path.exists():
            return []
        lines = []
        for raw in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            started = entry.get("StartUTC", "")
            try:
                when = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            if when < since or entry.get("RequestHost") != host:
                continue
            backend = urllib.parse.urlsplit(entry.get("ServiceURL") or "").hostname or "-"
            lines.append(
                f"{started[11:23]} {entry.get('DownstreamStatus')} "
                f"origin={entry.get('OriginStatus') or '-'} {entry.get('RequestPath')} "
                f"service={entry.get('ServiceName', '-')} backend={backend} "
                f"pod={(pods or {}).get(backend, '?')} "
                f"duration={int(entry.get('Duration', 0)) / 1e6:.0f}ms "
                f"origin-duration={int(entry.get('OriginDuration', 0)) / 1e6:.0f}ms")
        return lines

    def top(self, what: str, namespace: str | None = None) -> dict[str, Usage]:
        """``kubectl top pods|nodes``: usage by name (pods by ``NAMESPACE/NAME`` when
        ``namespace`` is None, i.e. ``-A``); empty while the metrics API has none yet."""
        scope = [] if what == "nodes" else ["-n", namespace] if namespace else ["-A"]
        return parse_top(self.kubectl("top", what, *scope, "--no-headers", check=False))

    def wait_pod_ready(self, namespace: str, pod: str, timeout: int = 120) -> None:
        self.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"pod/{pod}",
                     f"--timeout={timeout}s", timeout=timeout + 30)


@dataclass(frozen=True)
class Usage:
    """What ``kubectl top`` reports for a pod or node."""

    cpu_cores: float
    memory_bytes: int


def parse_top(text: str) -> dict[str, Usage]:
    """The rows of ``kubectl top … --no-headers``: ``NAME CPU MEMORY`` (pods, one namespace),
    ``NAMESPACE NAME CPU MEMORY`` (pods, ``-A``: keyed ``NAMESPACE/NAME``) or ``NAME CPU CPU%
    MEMORY MEMORY%`` (nodes). CPU in cores (``3m`` is 0.003), memory in bytes."""
    found = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) == 3:
            name, cpu, memory = cols
        elif len(cols) == 4:
            name, cpu, memory = f"{cols[0]}/{cols[1]}", cols[2], cols[3]
        elif len(cols) == 5:
            name, cpu, memory = cols[0], cols[1], cols[3]
        else:
            continue
        try:
            found[name] = Usage(float(parse_quantity(cpu)), int(parse_quantity(memory)))
        except ValueError:
            continue  # a header or a message, not a row
    return found


def unsettled(node: Node, namespace: str) -> list[str]:
    """What keeps ``namespace`` from being settled, one line each (empty: settled).

    A Deployment is settled when its rollout is complete as ``kubectl rollout status`` sees
    it: the controller has seen its newest spec and every replica is updated, ready and
    available, with no replica of an older version left (``status.replicas`` counts those);
    a StatefulSet when every replica is ready at its update revision. A pod being deleted
    unsettles the namespace too: the app's preStop delay keeps it answering while the
    Gateway lets go of it, so a measurement started now would count what the old version
    answers (a faulty canary just replaced serves its 500s for a few more seconds).
    """
    out = node.kubectl("get", "deployments,statefulsets,pods", "-n", namespace, "-o", "json")
    found = []
    for item in json.loads(out)["items"]:
        kind, meta, spec = item["kind"], item["metadata"], item.get("spec", {})
        status = item.get("status", {})
        name = f"{kind}/{meta['name']}"
        if kind == "Pod":
            if meta.get("deletionTimestamp"):
                found.append(f"{name}: being deleted")
            continue
        want = spec.get("replicas", 1)
        have = {key: status.get(key) or 0 for key in ("replicas", "updatedReplicas",
                                                        "readyReplicas", "availableReplicas")}
        if (status.get("observedGeneration") or 0) < meta.get("generation", 0):
            found.append(f"{name}: the controller has not seen generation {meta['generation']}")
        elif kind == "Deployment" and any(value != want for value in have.values()):
            found.append(f"{name}: {want} wanted, " + ", ".join(
                f"{value} {key.removesuffix('Replicas') if key != 'replicas' else 'in all'}"
                for key, value in have.items()))
        elif kind == "StatefulSet" and (
                have["readyReplicas"] < want or (want and status.get("currentRevision")
                                                 != status.get("updateRevision"))):
            found.append(f"{name}: {have['readyReplicas']}/{want} ready, revision "
                         f"{status.get('currentRevision')} -> {status.get('updateRevision')}")
    return found



def wait_settled(node: Node, namespace: str, timeout: float) -> None:
    """Wait until :func:`unsettled` finds nothing in ``namespace``; AssertionError naming what
    is not settled, with the pods, after ``timeout`` seconds."""
    if not wait_until(lambda: not unsettled(node, namespace), timeout, interval=1):
        pods = node.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False)
        raise AssertionError(
            f"not settled after {timeout}s: {unsettled(node, namespace)}\n{pods}")


def with_auditing(node: Node) -> Node:
    """``node`` with API-server auditing on. A node that an older ``node-up`` started runs
    without it; it is restarted (``node-down``, ``node-up``) only when no other test session
    uses it, else the caller is skipped (in CI, where every run starts its node, a failure)."""
    if node.audit_log:
        return node
    sessions = Sessions()
    with sessions.locked():
        others = sessions.others()
        if others:
            skip_or_fail(f"the running node was started without API-server auditing (by an "
                         f"older tools/node.sh) and test sessions {others} use it; it gets "
                         "auditing when it is next started")
        cluster("node-down")
        started = time.monotonic()
        result = cluster("node-up")
        if result.returncode == 0:  # the machine before the node is the same
            sessions.save_baseline(node.baseline)
    if result.returncode != 0:
        raise AssertionError(f"node-up with auditing failed:\n{result.stdout}\n{result.stderr}")
    restarted = Node.parse(result.stdout, start_seconds=time.monotonic() - started,
                           baseline=node.baseline, owned=True)
    assert restarted.audit_log, result.stdout
    return restarted


def gateway_request(gateway: str, host: str, method: str, path: str, body: Any = None,
                    cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through the node's Gateway (``http://127.0.0.1:PORT``) for ``host``:
    status, headers (lower-case names; a repeated one, such as ``set-cookie``, holds its values
    one per line) and body. ``body`` is sent as JSON."""
    parsed = urllib.parse.urlsplit(gateway)
    conn = http.client.HTTPConnection(parsed.hostname or "127.0.0.1", parsed.port, timeout=15)
    headers = {"Host": host, **({"Cookie": cookie} if cookie else {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        headers: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            headers[key] = f"{headers[key]}\n{value}" if key in headers else value
        return response.status, headers, response.read()
    finally:
        conn.close()


def cookie(headers: dict[str, str], name: str = "auth") -> str:
    """``name=value`` of the cookie ``name`` that a :func:`gateway_request` answer sets (the
    app's ``auth`` at login; the track affinity cookie may be set beside it)."""
    found = [line.split(";", 1)[0].strip() for line in headers.get("set-cookie", "").splitlines()
             if line.split("=", 1)[0].strip() == name]
    assert len(found) == 1, headers.get("set-cookie")
    return found[0]

def busybox_image(out: Path, ref: str = "moontv.local/busybox:1") -> Path:
    """A one-file image holding Debian's static busybox (runs as nobody)."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    subprocess.run(["python3", str(ROOT / "tools/docker_archive.py"), str(out), ref,
                    "--add", f"{busybox}=/bin/busybox", "--user", "65534:65534",
                    "--cmd", "/bin/busybox", "sleep", "3600"], check=True, timeout=60)
    return out


def restricted_pod(name: str, namespace: str, image: str, labels: dict[str, str],
                   command: list[str]) -> dict[str, object]:
    """A pod that Pod Security ``restricted`` admits."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": image, "imagePullPolicy": "Never", "command": command,
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True},
            }],
        },
    }


# ---------------------------------------------------------------------------------------------
# What a node can leave on the machine


def privileged() -> bool:
    """Root, or passwordless sudo (tools/node.sh re-runs itself through it)."""
    if os.geteuid() == 0:
        return True
    return shutil.which("sudo") is not None and subprocess.run(
        ["sudo", "-n", "true"], capture_output=True, check=False, timeout=30).returncode == 0


def _run(*args: str) -> str:
    tool = shutil.which(args[0]) or shutil.which(args[0], path="/usr/sbin:/sbin")
    if tool is None:
        return ""
    sudo = ["sudo", "-n"] if os.geteuid() != 0 and args[0] in ("iptables", "ip6tables",
                                                               "ipset", "nft") else []
    return subprocess.run([*sudo, tool, *args[1:]], capture_output=True, text=True, check=False,
                          timeout=60).stdout


def _node_processes() -> set[str]:
    """Processes whose command line names the node's state directory (every component and
    containerd shim of the node does), or that run in the kubelet's pod cgroups. (Not the
    environment: other sessions' tools carry the node's KUBECONFIG there.)"""
    marker = str(STATE_DIR).encode()
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.add(f"{proc.name} {command[:120]}")
    for cgroup in Path("/sys/fs/cgroup").glob("*/kubepods"):
        for procs in cgroup.rglob("cgroup.procs"):
            found.update(f"{pid} (pod cgroup)" for pid in procs.read_text().split())
    return found


def _chains() -> set[str]:
    chains = set()
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            for line in _run(tool, "-w", "-t", table, "-S").splitlines():
                if line.startswith("-N "):
                    chains.add(f"{tool} {table} {line[3:]}")
    return chains


def _rules_mentioning_node() -> set[str]:
    rules = set()
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            for line in _run(tool, "-w", "-t", table, "-S").splitlines():
                if POD_CIDR_PREFIX in line or BRIDGE in line or "MOONTV-NODE" in line:
                    rules.add(f"{tool} {table} {line}")
    return rules


def _links() -> set[str]:
    out = _run("ip", "-j", "link", "show")
    links = json.loads(out) if out.strip() else []
    return {link["ifname"] for link in links
            if link["ifname"] == BRIDGE or link.get("master") == BRIDGE}


def _sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        path = Path("/proc/sys") / key.replace(".", "/")
        if path.exists():
            values[key] = path.read_text().strip()
    return values


def _dockerd_running() -> bool:
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "dockerd":
                return True
        except OSError:
            continue
    return False


def host_footprint() -> dict[str, object]:
    mounts = {line for line in _run("findmnt", "-rn", "-o", "TARGET").splitlines()
              if str(STATE_DIR) in line or line.startswith("/run/netns/cni-")}
    return {
        "processes": _node_processes(),
        "mounts": mounts,
        "links": _links(),
        "chains": {c for c in _chains() if " DOCKER" not in c},
        "rules": _rules_mentioning_node(),
        "nft tables": set(_run("nft", "list", "tables").splitlines()),
        "ipsets": set(_run("ipset", "list", "-n").splitlines()),
        "netns": {p.name for p in Path("/run/netns").glob("cni-*")},
        "cgroups": {str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")},
        "dirs": {d for d in HOST_DIRS if Path(d).exists()} | (
            {str(STATE_DIR)} if STATE_DIR.exists() else set()),
        "sysctls": _sysctls(),
    }


def leftovers(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    """What ``after`` holds that ``before`` did not (sysctls: the values that differ)."""
    found: dict[str, object] = {}
    for key, now in after.items():
        was = before.get(key)
        if isinstance(now, dict):
            assert isinstance(was, dict)
            changed = {k: f"{was.get(k)} -> {v}" for k, v in now.items() if was.get(k) != v}
            if _dockerd_running():  # a dockerd started meanwhile needs forwarding
                changed.pop("net.ipv4.ip_forward", None)
            if changed:
                found[key] = changed
        else:
            assert isinstance(now, set) and isinstance(was, set)
            if key == "processes":
                extra = now  # none may be left, whatever ran before
            else:
                extra = now - was
            if extra:
                found[key] = sorted(extra)
    return found


def wait_until(check, timeout: float, interval: float = 1.0):  # type: ignore[no-untyped-def]
    """Call ``check`` until it returns a truthy value or ``timeout`` seconds pass; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
