"""The node stack (Pulumi.node.yaml) through the real engine on the real single-node cluster.

Pods run from the locally built images, traffic enters through the node's Traefik Gateway on
127.0.0.1, DNS is CoreDNS and NetworkPolicies are enforced by kube-router: every claim about
ports, names, policies and routing is exercised for real. The tests of this module share one
deployment and run in file order; the last one destroys it.
"""

from __future__ import annotations

import importlib
import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pytest
from pulumi import automation as auto

from tests.conftest import skip_or_fail
from tests.integration import node as node_host
from tests.integration.engine import Project, changes, require_engine, stack_config

pytestmark = pytest.mark.integration
STACK = "node"
CONFIG = stack_config(STACK)
NAMESPACE = CONFIG["moontv:namespace"]
HOST = CONFIG["moontv:traffic"]["host"]
OWNER = "admin"
OWNER_PASSWORD = "node-owner-password-1"
PROBE_IMAGE = "moontv.local/busybox:1"
APP = {"app.kubernetes.io/name": "moontv"}
READY_TIMEOUT = 300


@dataclass
class Deployed:
    stack: auto.Stack
    up_seconds: float


def images_module() -> Any:
    try:
        return importlib.import_module("tests.integration.images")
    except ImportError as err:
        skip_or_fail(f"the test images cannot be built here ({err})")


@pytest.fixture(scope="module")
def node_images(node, tmp_path_factory):
    """The app twin (two versions), Redis, the exporters and a busybox probe, in the node."""
    built = images_module().build_all()
    # through tools/cluster.sh: it runs ctr through sudo when the tests do not run as root
    node.import_images(*built.values())
    probe = node_host.busybox_image(tmp_path_factory.mktemp("probe") / "busybox.tar", PROBE_IMAGE)
    node.import_images(probe)
    return built


def node_config(node) -> dict[str, Any]:
    return {**CONFIG, "moontv:kubernetes": {"context": node.context,
                                            "kubeconfig": node.kubeconfig}}


@pytest.fixture(scope="module")
def deployed(node, node_images, tmp_path_factory):
    project = Project(tmp_path_factory.mktemp("node-stack"), require_engine())
    stack = project.stack(STACK, node_config(node),
                          secrets={"moontv:ownerPassword": OWNER_PASSWORD})
    started = time.monotonic()
    try:
        result = stack.up()
        assert result.summary.result == "succeeded"
        wait_all_ready(node)
        yield Deployed(stack=stack, up_seconds=time.monotonic() - started)
    finally:
        stack.destroy()


def workloads(node) -> list[dict[str, Any]]:
    out = node.kubectl("get", "deployments,statefulsets", "-n", NAMESPACE, "-o", "json")
    return json.loads(out)["items"]


def not_ready(node) -> list[str]:
    return [f"{w['kind']}/{w['metadata']['name']}" for w in workloads(node)
            if (w["status"].get("readyReplicas") or 0) < w["spec"].get("replicas", 1)]


def wait_all_ready(node) -> None:
    left = node_host.wait_until(lambda: not not_ready(node), READY_TIMEOUT, interval=2)
    if not left:
        pods = node.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False)
        events = node.kubectl("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp",
                              check=False)
        raise AssertionError(f"not Ready after {READY_TIMEOUT}s: {not_ready(node)}\n{pods}\n"
                             f"{events[-4000:]}")


def request(node, method: str, path: str, body: Any = None,
            cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through the Gateway (127.0.0.1) with the stack's host name."""
    return node_host.gateway_request(node.gateway, HOST, method, path, body, cookie)


def pods(node, **labels: str) -> list[str]:
    selector = ",".join(f"{k}={v}" for k, v in {**APP, **labels}.items())
    out = node.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json")
    return [p["metadata"]["name"] for p in json.loads(out)["items"]
            if p["status"].get("phase") == "Running"]


def storage_service(node) -> tuple[str, str, int]:
    """The storage Service's name, the address its name resolves to (the ClusterIP, or the
    storage pod's IP when the Service is headless) and its Redis port."""
    out = node.kubectl("get", "services", "-n", NAMESPACE, "-l",
                       "app.kubernetes.io/component=storage", "-o", "json")
    services = json.loads(out)["items"]
    assert len(services) == 1, [s["metadata"]["name"] for s in services]
    spec = services[0]["spec"]
    address = spec.get("clusterIP")
    if address in (None, "None"):
        selector = ",".join(f"{k}={v}" for k, v in spec["selector"].items())
        storage = json.loads(node.kubectl("get", "pods", "-n", NAMESPACE, "-l", selector,
                                          "-o", "json"))["items"]
        assert len(storage) == 1
        address = storage[0]["status"]["podIP"]
    port = next(p["port"] for p in spec["ports"] if p["port"] != 9121)
    return services[0]["metadata"]["name"], address, port


def test_given_the_node_stack_when_up_then_every_deployment_and_statefulset_is_ready(
        node, deployed):
    assert not_ready(node) == []
    kinds = {w["kind"] for w in workloads(node)}
    assert kinds == {"Deployment", "StatefulSet"}
    start = (f"{node.start_seconds:.1f}s" if node.owned
             else "(started by another session, not measured)")
    print(f"\n[node] start to Ready {start}; up from empty to all Ready {deployed.up_seconds:.1f}s")


def test_given_the_gateway_when_logging_in_as_owner_then_a_favourite_is_saved_and_read_back(
        node, deployed):
    status, _, _ = request(node, "GET", "/login")
    assert status == 200

    status, _, _ = request(node, "POST", "/api/login", {"username": OWNER, "password": "wrong"})
    assert status == 401
    status, headers, body = request(node, "POST", "/api/login",
                                    {"username": OWNER, "password": OWNER_PASSWORD})
    assert status == 200, body
    cookie = node_host.cookie(headers)
    assert cookie.startswith("auth=")

    status, _, _ = request(node, "GET", "/api/favorites")
    assert status == 401
    key = "node-test+42"
    favourite = {"title": "Node test", "source_name": "node-test", "year": "2026",
                 "cover": "", "total_episodes": 1}
    status, _, body = request(node, "POST", "/api/favorites", {"key": key, "favorite": favourite},
                              cookie=cookie)
    assert status == 200, body
    status, _, body = request(node, "GET", f"/api/favorites?key={urllib.parse.quote(key)}",
                              cookie=cookie)
    assert status == 200, body
    assert json.loads(body)["title"] == "Node test"


def test_given_the_gateway_when_requesting_api_cron_then_the_app_is_not_reached(node, deployed):
    status, _, body = request(node, "GET", "/api/cron")
    # the route rewrites /api/cron to a static path the app answers 404 on: no cron, no 5xx
    assert 400 <= status < 500, (status, body[:200])


def test_given_an_app_pod_when_resolving_the_storage_service_name_then_dns_answers(node, deployed):
    name, address, _ = storage_service(node)
    app = pods(node, **{"app.kubernetes.io/component": "app"})
    assert app
    result = node.exec(NAMESPACE, app[0], "getent", "hosts", name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == address


def probe_pod(node, name: str, labels: dict[str, str]) -> str:
    node.apply([node_host.restricted_pod(name, NAMESPACE, PROBE_IMAGE, labels,
                                         ["/bin/busybox", "sleep", "3600"])])
    node.wait_pod_ready(NAMESPACE, name)
    return name


def redis_reply(node, pod: str, address: str, port: int) -> str:
    """What the storage port answers to PING from ``pod`` (empty when unreachable)."""
    result = node.exec(NAMESPACE, pod, "/bin/busybox", "sh", "-c",
                       f"printf 'PING\\r\\n' | /bin/busybox timeout 5 /bin/busybox nc {address} "
                       f"{port}")
    return result.stdout.strip()


def test_given_network_policies_when_pods_connect_to_storage_then_only_the_allowed_ones_reach_it(
        node, deployed):
    _, address, port = storage_service(node)
    allowed = probe_pod(node, "probe-as-backup", {**APP, "app.kubernetes.io/component": "backup"})
    outsider = probe_pod(node, "probe-outsider", {"app.kubernetes.io/name": "probe"})
    try:
        # an allowed pod reaches Redis (it asks for the password: the connection is made)
        assert "NOAUTH" in redis_reply(node, allowed, address, port)
        # a pod outside the allowed set does not
        assert redis_reply(node, outsider, address, port) == ""
    finally:
        node.kubectl("delete", "pod", "-n", NAMESPACE, allowed, outsider, "--wait=false",
                     check=False)


def test_given_pod_security_restricted_when_the_stack_runs_then_every_pod_was_admitted(
        node, deployed):
    namespace = json.loads(node.kubectl("get", "namespace", NAMESPACE, "-o", "json"))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    events = json.loads(node.kubectl("get", "events", "-n", NAMESPACE, "-o", "json"))["items"]
    refused = [e["message"] for e in events if "violates PodSecurity" in e.get("message", "")]
    assert refused == []
    # the backup CronJob's pod is admitted too: run it once
    cronjob = json.loads(node.kubectl("get", "cronjobs", "-n", NAMESPACE, "-o", "json"))["items"]
    assert cronjob
    name = cronjob[0]["metadata"]["name"]
    node.kubectl("create", "job", "-n", NAMESPACE, f"{name}-node-test", f"--from=cronjob/{name}")
    try:
        node.kubectl("wait", "-n", NAMESPACE, "--for=condition=Complete", f"job/{name}-node-test",
                     "--timeout=120s", timeout=150)
    finally:
        node.kubectl("delete", "job", "-n", NAMESPACE, f"{name}-node-test", check=False)


def test_given_the_deployed_stack_when_up_again_then_nothing_changes(deployed):
    again = deployed.stack.up()
    assert changes(again.summary.resource_changes) == {}


def test_given_the_deployed_stack_when_destroyed_then_the_namespace_is_empty(node, deployed):
    deployed.stack.destroy()

    def gone() -> bool:
        left = node.kubectl("get", "all,pvc,networkpolicies,configmaps,secrets", "-n", NAMESPACE,
                            "-o", "name", "--ignore-not-found", check=False).split()
        left = [name for name in left if name != "configmap/kube-root-ca.crt"]
        return not left

    assert node_host.wait_until(gone, 120, interval=2)
