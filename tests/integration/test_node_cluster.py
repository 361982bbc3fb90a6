"""The real single node itself: pods run, Services route, CoreDNS resolves Service names, the
Gateway on 127.0.0.1 splits traffic by weight, kube-router enforces NetworkPolicies,
metrics-server serves ``kubectl top``.

Only a static busybox image (written by hand, no registry) runs here, so these tests depend on
nothing but the node.
"""

from __future__ import annotations

import collections
import copy
import http.client
import json
import time
from typing import Any

import pytest

from components.quantity import parse_quantity
from tests.conftest import skip_or_fail
from tests.integration import node as node_host

pytestmark = pytest.mark.integration
NAMESPACE = "node-smoke"
IMAGE = "moontv.local/busybox:1"
HOST = "smoke.node.local"
#: metrics-server scrapes the kubelet every 10 s and needs two scrapes of a pod for its CPU rate;
#: the rest is slack for a loaded machine.
TOP_TIMEOUT = 60


def web(name: str) -> list[dict[str, Any]]:
    """A busybox httpd answering its own name on port 8080, and its Service on port 80."""
    pod = node_host.restricted_pod(name, NAMESPACE, IMAGE, {"app": name}, [
        "/bin/busybox", "sh", "-c",
        f"echo {name} > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www"])
    spec: dict[str, Any] = copy.deepcopy(pod["spec"])
    spec["containers"][0]["volumeMounts"] = [{"name": "www", "mountPath": "/www"}]
    spec["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080},
                                               "periodSeconds": 1}
    spec["volumes"] = [{"name": "www", "emptyDir": {}}]
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": NAMESPACE},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
         "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]


@pytest.fixture(scope="module")
def smoke(node, tmp_path_factory):
    node.import_images(node_host.busybox_image(tmp_path_factory.mktemp("img") / "bb.tar", IMAGE))
    node.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
                *web("web-a"), *web("web-b"),
                node_host.restricted_pod("client", NAMESPACE, IMAGE, {"app": "client"},
                                         ["/bin/busybox", "sleep", "3600"])])
    node.kubectl("rollout", "status", "-n", NAMESPACE, "deployment/web-a", "deployment/web-b",
                 "--timeout=120s", timeout=150)
    node.wait_pod_ready(NAMESPACE, "client")
    yield node
    node.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def client(node, *command: str) -> str:
    result = node.exec(NAMESPACE, "client", "/bin/busybox", *command)
    return result.stdout.strip() if result.returncode == 0 else ""


def fetch(node, url: str) -> str:
    return client(node, "timeout", "5", "/bin/busybox", "wget", "-q", "-O-", url)


def test_given_a_service_when_a_pod_resolves_its_name_then_coredns_answers_its_cluster_ip(smoke):
    cluster_ip = smoke.kubectl("get", "service", "-n", NAMESPACE, "web-a", "-o",
                               "jsonpath={.spec.clusterIP}")
    answer = client(smoke, "nslookup", f"web-a.{NAMESPACE}.svc.cluster.local")
    assert cluster_ip in answer


def test_given_a_service_when_a_pod_requests_it_by_name_then_kube_proxy_routes_to_the_pod(smoke):
    assert fetch(smoke, "http://web-a") == "web-a"
    assert fetch(smoke, "http://web-b") == "web-b"


def gateway_get(node) -> str:
    host, _, port = node.gateway.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": HOST})
        response = conn.getresponse()
        body = response.read().decode().strip()
        return body if response.status == 200 else f"HTTP {response.status}"
    finally:
        conn.close()


def test_given_an_httproute_90_10_when_100_requests_go_through_the_gateway_then_90_and_10(smoke):
    smoke.apply([{
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "split", "namespace": NAMESPACE},
        "spec": {"parentRefs": [{"name": smoke.gateway_name,
                                 "namespace": smoke.gateway_namespace}],
                 "hostnames": [HOST],
                 "rules": [{"backendRefs": [{"name": "web-a", "port": 80, "weight": 90},
                                            {"name": "web-b", "port": 80, "weight": 10}]}]},
    }])
    assert node_host.wait_until(lambda: gateway_get(smoke) in ("web-a", "web-b"), 60)
    tally = collections.Counter(gateway_get(smoke) for _ in range(100))
    assert tally == {"web-a": 90, "web-b": 10}


def test_given_a_deny_ingress_policy_when_pods_connect_then_only_the_policy_target_is_cut_off(
        smoke):
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "deny-web-b", "namespace": NAMESPACE},
              "spec": {"podSelector": {"matchLabels": {"app": "web-b"}},
                       "policyTypes": ["Ingress"]}}
    smoke.apply([policy])
    try:
        assert node_host.wait_until(lambda: fetch(smoke, "http://web-b") == "", 30)
        assert fetch(smoke, "http://web-a") == "web-a"
    finally:
        smoke.kubectl("delete", "networkpolicy", "-n", NAMESPACE, "deny-web-b")
    assert node_host.wait_until(lambda: fetch(smoke, "http://web-b") == "web-b", 30)


def test_given_the_node_when_pods_run_then_they_are_on_the_bridge_network(smoke):
    pods = json.loads(smoke.kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"]
    assert pods
    assert all(p["status"]["podIP"].startswith(node_host.POD_CIDR_PREFIX) for p in pods)


def test_given_a_running_pod_when_kubectl_top_then_it_reports_its_cpu_and_memory(smoke):
    if not smoke.metrics_api:
        skip_or_fail("the running node was started without metrics-server (by an older "
                     "tools/node.sh); it gets it when it is next started")
    started = time.monotonic()
    found = node_host.wait_until(
        lambda: smoke.top("pods", NAMESPACE).get("client"), TOP_TIMEOUT, interval=2)
    seconds = time.monotonic() - started
    assert found, (f"no metrics for pod client after {TOP_TIMEOUT}s:\n"
                   + smoke.kubectl("top", "pods", "-n", NAMESPACE, check=False)
                   + smoke.kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "yaml",
                                   check=False))
    print(f"\nkubectl top pods: client {found} after {seconds:.1f}s "
          f"(node-up took {smoke.start_seconds:.1f}s)")
    # kubectl top rounds memory down to Mi (a sleeping busybox shows 0Mi): the API has bytes.
    usage = json.loads(smoke.kubectl(
        "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/client"))
    [container] = usage["containers"]
    assert parse_quantity(container["usage"]["memory"]) > 0, usage
    assert parse_quantity(container["usage"]["cpu"]) >= 0, usage
    every = smoke.top("pods")  # kubectl top pods -A
    assert {f"{NAMESPACE}/web-a", f"{NAMESPACE}/client"} <= {
        name.rsplit("-", 2)[0] if name.startswith(f"{NAMESPACE}/web-") else name
        for name in every}, every
    nodes = node_host.wait_until(lambda: smoke.top("nodes"), TOP_TIMEOUT, interval=2)
    assert nodes and nodes["moontv-node"].cpu_cores > 0 and nodes["moontv-node"].memory_bytes > 0
    print(smoke.kubectl("top", "pods", "-A") + smoke.kubectl("top", "nodes"))
