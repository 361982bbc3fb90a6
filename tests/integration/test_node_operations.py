"""Operations on the real node: `rollout check pre|post` against the deployed node stack
(failing cases included), the end-to-end restore (favourites saved -> backup -> storage wiped
-> restore -> favourites back) and the restore drill passing and failing, all through the
objects the program deploys (CronJobs, Secrets, the Gateway on 127.0.0.1).

Monitoring for `check post` is a real Prometheus and blackbox exporter on 127.0.0.1 with the
program's own configuration and alert rules, reaching the tracks and the storage exporter
through `kubectl port-forward` (the node runs no Prometheus Operator).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.monitoring.config import ScrapeTargets, blackbox_config, prometheus_config
from components.monitoring.model import MonitoringSettings
from components.monitoring.rules import RuleScope, alert_rules
from rollout import check_post, check_pre
from rollout.check import FAIL, PASS, Kubectl, Target, report, run_checks, validated
from tests.conftest import require_tools
from tests.helpers import free_port
from tests.integration import node as node_host
from tests.integration.engine import Project, require_engine
from tests.integration.test_node_engine import (  # noqa: F401  (node_images is a fixture)
    CONFIG,
    OWNER,
    OWNER_PASSWORD,
    READY_TIMEOUT,
    node_config,
    node_images,
)

pytestmark = pytest.mark.integration
STACK = "node"
# Its own namespace and host name: other node tests may deploy the node stack at the same time.
NAMESPACE = "moontv-ops"
HOST = "moontv-ops.node.local"
STORAGE = "moontv-redis"
JOB_TIMEOUT = 300


def ops_config(node) -> dict[str, Any]:
    return {
        **node_config(node),
        "moontv:namespace": NAMESPACE,
        "moontv:traffic": {**CONFIG["moontv:traffic"], "host": HOST},
    }


def request(
    node, method: str, path: str, body: Any = None, cookie: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through the node's Gateway (127.0.0.1) with this stack's host name."""
    return node_host.gateway_request(node.gateway, HOST, method, path, body, cookie)


def wait_all_ready(node) -> None:
    def not_ready() -> list[str]:
        out = json.loads(
            node.kubectl("get", "deployments,statefulsets", "-n", NAMESPACE, "-o", "json")
        )
        return [
            f"{w['kind']}/{w['metadata']['name']}"
            for w in out["items"]
            if (w["status"].get("readyReplicas") or 0) < w["spec"].get("replicas", 1)
        ]

    if not node_host.wait_until(lambda: not not_ready(), READY_TIMEOUT, interval=2):
        pods = node.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False)
        raise AssertionError(f"not Ready after {READY_TIMEOUT}s: {not_ready()}\n{pods}")


def kubectl(node, *args: str, check: bool = True, timeout: int = 120) -> str:
    return node.kubectl(*args, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def deployed(node, node_images, tmp_path_factory):  # noqa: F811
    project = Project(tmp_path_factory.mktemp("node-ops"), require_engine())
    stack = project.stack(STACK, ops_config(node), secrets={"moontv:ownerPassword": OWNER_PASSWORD})
    try:
        assert stack.up().summary.result == "succeeded"
        wait_all_ready(node)
        yield project
    finally:
        stack.destroy()


@contextlib.contextmanager
def port_forward(node, target: str, remote: int) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "kubectl",
            "--kubeconfig",
            node.kubeconfig,
            "--context",
            node.context,
            "port-forward",
            "-n",
            NAMESPACE,
            "--address",
            "127.0.0.1",
            target,
            f"{port}:{remote}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"kubectl port-forward {target} {port}:{remote} did not start")
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def storage_url(node, port: int) -> str:
    encoded = kubectl(
        node,
        "get",
        "secret",
        f"{STORAGE}-backup-url",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.data.STORAGE_URL}",
    )
    url = urllib.parse.urlsplit(base64.b64decode(encoded).decode())
    return f"redis://:{url.password}@127.0.0.1:{port}"


@contextlib.contextmanager
def monitoring(node, tmp_path: Path, exporter_port: int) -> Iterator[str]:
    """Prometheus and the blackbox exporter on 127.0.0.1 with the program's own configuration
    and alert rules, probing each track's Service through a port-forward."""
    require_tools(["prometheus", "prometheus-blackbox-exporter"])
    settings = MonitoringSettings.model_validate({"probeInterval": "2s"})
    model, _ = validated(ops_config(node))
    tracks = [t for t in model.plan.tracks if t.role != "idle"]
    with contextlib.ExitStack() as stack:
        probes = {}
        for track in tracks:
            local = stack.enter_context(port_forward(node, f"service/moontv-{track.name}", 80))
            probes[track.name] = f"http://127.0.0.1:{local}/login"
        ports = {name: free_port() for name in ("blackbox", "prometheus")}
        (tmp_path / "blackbox.yml").write_text(yaml.safe_dump(blackbox_config()))
        (tmp_path / "rules.yml").write_text(
            yaml.safe_dump(alert_rules(tracks, settings, RuleScope(storage=True)))
        )
        targets = ScrapeTargets(
            probes=probes,
            blackbox=f"127.0.0.1:{ports['blackbox']}",
            storage_exporter=f"127.0.0.1:{exporter_port}",
        )
        (tmp_path / "prometheus.yml").write_text(
            yaml.safe_dump(prometheus_config(targets, settings, [str(tmp_path / "rules.yml")]))
        )
        processes = [
            subprocess.Popen(
                [
                    "prometheus-blackbox-exporter",
                    f"--config.file={tmp_path / 'blackbox.yml'}",
                    f"--web.listen-address=127.0.0.1:{ports['blackbox']}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        ]
        stack.callback(lambda: [p.terminate() or p.wait(timeout=10) for p in processes])
        url = f"http://127.0.0.1:{ports['prometheus']}"
        time.sleep(8)  # a few scrapes and rule evaluations
        yield url


def target(node, **kwargs: Any) -> Target:
    return Target(
        stack=STACK,
        config=ops_config(node),
        cluster=Kubectl(node.kubeconfig, node.context),
        url=node.gateway,
        extra={"host": HOST, "history": lambda: []},
        **kwargs,
    )


def by_name(results) -> dict[str, Any]:
    return {r.name: r for r in results}


def run_job(node, cronjob: str, name: str) -> str:
    """Create a Job from ``cronjob`` and wait for it to finish: 'Complete' or 'Failed'."""
    kubectl(node, "create", "job", "-n", NAMESPACE, f"--from=cronjob/{cronjob}", name)
    ok = node_host.wait_until(lambda: _finished(node, name), JOB_TIMEOUT, interval=2)
    assert ok, f"Job {name} did not finish in {JOB_TIMEOUT}s:\n" + kubectl(
        node, "describe", "job", "-n", NAMESPACE, name, check=False
    )
    return _finished(node, name) or ""


def _finished(node, name: str) -> str | None:
    job = json.loads(kubectl(node, "get", "job", "-n", NAMESPACE, name, "-o", "json"))
    for condition in job.get("status", {}).get("conditions", []):
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return str(condition["type"])
    return None


def job_log(node, name: str) -> str:
    return kubectl(node, "logs", "-n", NAMESPACE, f"job/{name}", "--all-containers", check=False)


def login(node) -> str:
    status, headers, body = request(
        node, "POST", "/api/login", {"username": OWNER, "password": OWNER_PASSWORD}
    )
    assert status == 200, body
    return node_host.cookie(headers)


def favourites(node, cookie: str) -> dict[str, Any]:
    status, _, body = request(node, "GET", "/api/favorites", cookie=cookie)
    assert status == 200, body
    return json.loads(body)


def wipe_storage(node, url: str) -> None:
    password = urllib.parse.urlsplit(url).password or ""
    result = node.exec(
        NAMESPACE,
        f"{STORAGE}-0",
        "redis-cli",
        "-a",
        password,
        "--no-auth-warning",
        "FLUSHALL",
        container="redis",
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr


def test_given_favourites_when_backed_up_wiped_and_restored_on_the_node_then_they_are_back(
    node, deployed
):
    cookie = login(node)
    saved = {}
    for i in range(3):
        key = f"node-ops+{i}"
        favourite = {
            "title": f"Restore test {i}",
            "source_name": "node-ops",
            "year": "2026",
            "cover": "",
            "total_episodes": 1,
        }
        status, _, body = request(
            node, "POST", "/api/favorites", {"key": key, "favorite": favourite}, cookie=cookie
        )
        assert status == 200, body
        saved[key] = favourite["title"]
    before = favourites(node, cookie)
    assert {k: v["title"] for k, v in before.items() if k in saved} == saved

    assert run_job(node, f"{STORAGE}-backup", "backup-e2e") == "Complete", job_log(
        node, "backup-e2e"
    )
    assert ".json.enc" in job_log(node, "backup-e2e")
    with port_forward(node, f"statefulset/{STORAGE}", 6379) as port:
        wipe_storage(node, storage_url(node, port))
    cookie = login(node)  # the owner's password hash went with the wipe; login recreates it
    assert not favourites(node, cookie)

    assert run_job(node, f"{STORAGE}-restore", "restore-e2e") == "Complete", job_log(
        node, "restore-e2e"
    )
    after = favourites(node, login(node))
    assert {k: v["title"] for k, v in after.items() if k in saved} == saved
    print(f"\n[node] restore: {job_log(node, 'restore-e2e').strip().splitlines()[-1]}")


def set_backup_key(node, secret: str, value: str) -> None:
    """Replace key ``k1`` of the backup-keys Secret with ``value`` (base64)."""
    kubectl(node, "patch", "secret", "-n", NAMESPACE, secret, "--type=merge",
            "-p", json.dumps({"data": {"k1": value}}))


def test_given_the_newest_backup_then_the_drill_passes_and_with_a_wrong_key_it_fails(
    node, deployed
):
    drill = f"{STORAGE}-restore-drill"
    assert run_job(node, drill, "drill-pass") == "Complete", job_log(node, "drill-pass")
    passed = job_log(node, "drill-pass")
    assert '"drill":"passed"' in passed and "restore drill passed" in passed
    summary = [line for line in passed.splitlines() if "restore drill passed" in line]
    print(f"\n[node] drill passing: {summary[0]}")

    secret = f"{STORAGE}-backup-keys"
    original = json.loads(kubectl(node, "get", "secret", "-n", NAMESPACE, secret, "-o", "json"))
    wrong = base64.b64encode(b"a-different-key-material-of-44-characters!!").decode()
    set_backup_key(node, secret, wrong)
    try:
        time.sleep(5)  # mounted Secrets are read per pod start; the drill pod is new
        assert run_job(node, drill, "drill-fail") == "Failed"
        failed = job_log(node, "drill-fail")
        assert "cannot decrypt with key k1" in failed
        print(f"[node] drill failing: {failed.strip().splitlines()[-1]}")
    finally:
        set_backup_key(node, secret, original["data"]["k1"])


def test_given_the_deployed_node_then_check_pre_and_post_pass(node, deployed, tmp_path, capsys):
    project: Project = deployed

    def preview() -> str | None:
        result = project.cli(
            "preview", "--stack", STACK, "--non-interactive", "--policy-pack", "policy", check=False
        )
        return None if result.returncode == 0 else (result.stdout + result.stderr)[-800:]

    with (
        port_forward(node, f"statefulset/{STORAGE}", 6379) as port,
        port_forward(node, f"statefulset/{STORAGE}", 9121) as exporter,
        monitoring(node, tmp_path, exporter) as prometheus,
    ):
        url = storage_url(node, port)
        pre = run_checks(
            check_pre.CHECKS, target(node, storage_url=url, state_dir=tmp_path, preview=preview)
        )
        lines: list[str] = []
        report("pre", STACK, pre, False, lines.append)
        print("\n[node] rollout check pre\n" + "\n".join(lines))
        assert all(r.status != FAIL for r in pre), lines
        owner = _owner_password(node)
        post = run_checks(
            check_post.CHECKS,
            target(
                node,
                storage_url=url,
                state_dir=tmp_path,
                prometheus=prometheus,
                owner_password=owner,
            ),
        )
        lines = []
        code = report("post", STACK, post, False, lines.append)
        print("[node] rollout check post\n" + "\n".join(lines))
    assert code == 0, lines
    checks = by_name(post)
    assert checks["smoke"].reason.endswith(
        "/api/server-config version 100.1.0 (x-moontv-canary: never)"
    )
    assert checks["security"].status == checks["tracks-ready"].status == PASS


def _owner_password(node) -> str | None:
    from rollout.check import owner_password

    return owner_password(Kubectl(node.kubeconfig, node.context), NAMESPACE)


def test_given_a_broken_deployment_then_check_post_fails_naming_each_problem(node, deployed):
    kubectl(
        node,
        "label",
        "namespace",
        NAMESPACE,
        "--overwrite",
        "pod-security.kubernetes.io/enforce=baseline",
    )
    policy = json.loads(
        kubectl(node, "get", "networkpolicy", "-n", NAMESPACE, "moontv-default-deny", "-o", "json")
    )
    kubectl(node, "delete", "networkpolicy", "-n", NAMESPACE, "moontv-default-deny")
    kubectl(node, "scale", "deployment", "-n", NAMESPACE, "moontv-canary", "--replicas=0")
    try:
        results = by_name(
            run_checks(
                [check_post.check_tracks_ready, check_post.check_security, check_post.check_smoke],
                target(node, owner_password="wrong-password"),
            )
        )
        assert results["security"].status == FAIL
        assert "enforce=baseline, not restricted" in results["security"].reason
        assert "NetworkPolicies missing: moontv-default-deny" in results["security"].reason
        assert results["smoke"].reason == "POST /api/login as admin answered 401"
        assert results["tracks-ready"].status == FAIL
        assert "moontv-canary" in results["tracks-ready"].reason
    finally:
        kubectl(
            node,
            "label",
            "namespace",
            NAMESPACE,
            "--overwrite",
            "pod-security.kubernetes.io/enforce=restricted",
        )
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            policy["metadata"].pop(key, None)
        node.kubectl("apply", "-f", "-", stdin=json.dumps(policy))
        kubectl(node, "scale", "deployment", "-n", NAMESPACE, "moontv-canary", "--replicas=1")
