"""tools/node.sh: a component that fails to start is named, with the tail of its log."""

from __future__ import annotations

import base64
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

SCRIPT = ROOT / "tools" / "node.sh"


def run(tmp_path, body: str) -> subprocess.CompletedProcess[str]:
    """Source tools/node.sh (functions only, nothing started) and run ``body``."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
           "MOONTV_CLUSTER_DIR": str(tmp_path / "state"), "MOONTV_CLUSTER_TIMEOUT": "3",
           # never tear down: the machine's real node may be running
           "MOONTV_NODE_KEEP_ON_FAILURE": "1"}
    script = f'set -euo pipefail\nsource "{SCRIPT}"\nmkdir -p "$PIDS" "$LOGS"\n' \
             f"DEADLINE=$(($(date +%s) + TIMEOUT))\n{body}\n"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_given_a_component_that_exits_when_waiting_for_it_then_it_is_named_with_its_log(tmp_path):
    result = run(tmp_path, """
start kube-scheduler bash -c 'echo "line $RANDOM"; echo "E0101 no such flag --bogus"; exit 3'
wait_ready kube-scheduler "healthy" false
""")
    assert result.returncode == 1
    assert "node-up: kube-scheduler: exited before healthy (not running)" in result.stderr
    assert "E0101 no such flag --bogus" in result.stderr


def test_given_a_component_that_never_gets_ready_when_the_deadline_passes_then_it_is_named(
        tmp_path):
    result = run(tmp_path, """
start coredns bash -c 'echo "listening nowhere"; sleep 30'
wait_ready coredns "ready" false
""")
    pid = (tmp_path / "state" / "node" / "pids" / "coredns.pid").read_text().strip()
    subprocess.run(["kill", pid], check=False)
    assert result.returncode == 1
    assert "node-up: coredns: not ready within 3s of the start (still running)" in result.stderr
    assert "listening nowhere" in result.stderr


def test_given_a_bad_gateway_port_when_run_then_the_setting_and_what_is_accepted_are_named():
    result = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent",
                                 "MOONTV_NODE_GATEWAY_PORT": "http"},
                            check=False, timeout=30)
    assert result.returncode == 1
    assert "MOONTV_NODE_GATEWAY_PORT must be a port number (1-65535), got 'http'" in result.stderr


OLD_TRAEFIK = "providers:\n  kubernetesGateway:\n    statusAddress: {ip: 127.0.0.1}\n"
RECORD = """
calls=()
traefik_crds() { calls+=(crds); }
kctl() { calls+=("kctl $*"); }
traefik_access() { calls+=(access); }
stop() { calls+=("stop $1"); }
start_traefik() { calls+=(start); }
wait_traefik() { calls+=(wait); }
"""


@pytest.mark.parametrize("sole", ["0", "1"])
def test_given_a_running_node_with_an_older_traefik_when_up_then_only_a_sole_user_restarts_it(
        tmp_path, sole):
    config = tmp_path / "state" / "node" / "traefik.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(OLD_TRAEFIK)
    result = run(tmp_path, f"""{RECORD}
SOLE_USER={sole}
update_traefik
update_traefik  # a second call finds nothing to do
echo "calls: ${{calls[*]:-none}}"
""")
    assert result.returncode == 0, result.stderr
    if sole == "1":
        assert "adding its kubernetesCRD provider (restarting Traefik only)" in result.stdout
        assert result.stdout.count("adding its kubernetesCRD") == 1
        assert "calls: crds kctl wait --for=condition=Established " \
               "crd/traefikservices.traefik.io" in result.stdout
        assert result.stdout.rstrip().endswith("access stop traefik start wait")
        assert yaml.safe_load(config.read_text())["providers"] == {
            "kubernetesCRD": {"safeNaming": False},
            "kubernetesGateway": {"statusAddress": {"ip": "127.0.0.1"}}}
    else:
        assert "runs without its kubernetesCRD provider" in result.stdout
        assert "calls: none" in result.stdout
        assert config.read_text() == OLD_TRAEFIK


def test_given_the_node_config_then_traefik_runs_its_crd_provider_and_may_read_its_resources(
        tmp_path):
    result = run(tmp_path, """
kctl() { cat >&2; }  # what would be applied
traefik_access
""")
    assert result.returncode == 0, result.stderr
    role = next(doc for doc in yaml.safe_load_all(result.stderr) if doc["kind"] == "ClusterRole")
    assert {"apiGroups": ["traefik.io"], "resources": ["*"],
            "verbs": ["get", "list", "watch"]} in role["rules"]
    script = SCRIPT.read_text()
    config = script.split('cat >"$NODE_DIR/traefik.yaml"')[1]
    assert "  kubernetesCRD: {safeNaming: false}\n" in config


def test_given_the_node_config_then_metrics_server_reads_the_kubelets_and_anyone_may_be_granted_top(
        tmp_path):
    result = run(tmp_path, """
kctl() { cat >&2; }  # what would be applied
metrics_server_access
""")
    assert result.returncode == 0, result.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(result.stderr)}
    scraper = docs[("ClusterRole", "system:metrics-server")]
    assert {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]} in scraper["rules"]
    reader = docs[("ClusterRole", "system:aggregated-metrics-reader")]
    assert reader["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    for key in (("ClusterRoleBinding", "system:metrics-server"),
                ("ClusterRoleBinding", "metrics-server:system:auth-delegator"),
                ("RoleBinding", "metrics-server-auth-reader")):
        assert docs[key]["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                          "name": "moontv-node:metrics-server"}]
    assert docs[("RoleBinding", "metrics-server-auth-reader")]["roleRef"]["name"] == \
        "extension-apiserver-authentication-reader"


def test_given_the_metrics_api_then_it_points_at_the_host_process_and_verifies_its_certificate(
        tmp_path):
    result = run(tmp_path, """
mkdir -p "$NODE_DIR/pki" && echo "the node CA" >"$NODE_DIR/pki/ca.crt"
kctl() { cat >&2; }
metrics_api
""")
    assert result.returncode == 0, result.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(result.stderr)}
    service, slice_, api = docs["Service"], docs["EndpointSlice"], docs["APIService"]
    assert "selector" not in service["spec"]
    assert service["spec"]["ports"][0]["name"] == slice_["ports"][0]["name"] == "https"
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "metrics-server"
    assert slice_["endpoints"][0]["addresses"] == ["10.244.0.1"]
    assert slice_["ports"][0]["port"] == 20443
    assert api["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert api["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system",
                                      "port": 443}
    assert base64.b64decode(api["spec"]["caBundle"]) == b"the node CA\n"
    assert "insecureSkipTLSVerify" not in api["spec"]


@pytest.mark.parametrize("with_metrics_server", [False, True])
def test_given_a_node_from_an_older_up_without_metrics_server_then_it_still_counts_as_running(
        tmp_path, with_metrics_server):
    started = 'start metrics-server sleep 30' if with_metrics_server else ''
    result = run(tmp_path, f"""
for c in "${{COMPONENTS[@]}}"; do
    [[ $c == metrics-server ]] || start "$c" sleep 30
done
{started}
all_running && echo "all running"
report | grep metrics-api || echo "no metrics-api line"
kill -9 $(cat "$PIDS"/*.pid)
""")
    assert result.returncode == 0, result.stderr
    assert "all running" in result.stdout
    if with_metrics_server:
        assert "metrics-api: v1beta1.metrics.k8s.io" in result.stdout
    else:
        assert "no metrics-api line" in result.stdout
