"""Least privilege on the real node: the app stack deployed as ``moontv-deployer`` only.

An admin (the node's kubeconfig) runs ``deploy/deployer`` for the namespace and writes the
deployer's kubeconfig with ``tools/deployer-kubeconfig.sh``; everything after that runs with the
deployer's short-lived token: a preflight that names a missing permission before anything is
written, the staging-shaped node stack's ``up``, a weight step and ``destroy``, and attempts
outside the namespace that the API server refuses (403). The API server's audit log shows the
weight step as exactly the writes the program declares, attributed to the ServiceAccount.
The tests of this module share one deployment and run in file order.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from components.kubernetes import access
from tests.conftest import ROOT
from tests.helpers import canary
from tests.integration import node as node_host
from tests.integration.engine import Project, changes, require_engine
from tests.integration.test_node_engine import (  # noqa: F401  (node_images is a fixture)
    CONFIG,
    OWNER_PASSWORD,
    node_images,
)
from tests.program import run_stack

pytestmark = pytest.mark.integration
STACK = "node"
NAMESPACE = "moontv-least"
HOST = "least.node.local"
CANARY = "v100.1.2"
DEPLOYER = f"system:serviceaccount:{NAMESPACE}:{access.SERVICE_ACCOUNT}"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
READY_TIMEOUT = 300
FIGURES: dict[str, Any] = {}


@dataclass
class Identity:
    node: node_host.Node
    kubeconfig: Path
    deployer: auto.Stack
    app: auto.Stack
    config: dict[str, Any]

    def as_deployer(self, *args: str, stdin: str | None = None
                    ) -> subprocess.CompletedProcess[str]:
        """kubectl with the deployer's kubeconfig (no check: refusals are expected)."""
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                              input=stdin, capture_output=True, text=True, check=False,
                              timeout=60)

    def set_weight(self, weight: int) -> None:
        self.config["moontv:release"] = canary(weight, CANARY)
        file = Path(self.app.workspace.work_dir) / f"Pulumi.{STACK}.yaml"
        settings = yaml.safe_load(file.read_text())
        settings["config"]["moontv:release"] = self.config["moontv:release"]
        file.write_text(yaml.safe_dump(settings))

    def deployer_records(self, since: int) -> list[dict[str, Any]]:
        """The deployer's completed requests in the audit log after the first ``since``."""
        return [r for r in self.node.audit_records()[since:]
                if r.get("user", {}).get("username") == DEPLOYER
                and r.get("stage") == "ResponseComplete"]


def app_config(node: node_host.Node, kubeconfig: Path, weight: int) -> dict[str, Any]:
    return {
        **CONFIG,
        "moontv:namespace": NAMESPACE,
        "moontv:traffic": {**CONFIG["moontv:traffic"], "host": HOST},
        "moontv:kubernetes": {"context": node.context, "kubeconfig": str(kubeconfig),
                              "createNamespace": False},
        "moontv:release": canary(weight, CANARY),
    }


@pytest.fixture(scope="module")
def identity(node, node_images, tmp_path_factory):  # noqa: F811
    audited = node_host.with_auditing(node)
    if audited is not node:  # restarted with auditing: the old containerd took the images
        audited.import_images(*node_images.values())
    env = require_engine()
    admin = Project(tmp_path_factory.mktemp("deployer"), env, program="deploy/deployer")
    deployer = admin.stack(STACK, {
        "moontv-deployer:namespace": NAMESPACE,
        "moontv-deployer:kubernetes": {"context": audited.context,
                                       "kubeconfig": audited.kubeconfig},
    })
    kubeconfig = tmp_path_factory.mktemp("ci") / "deployer.kubeconfig"
    app = None
    started = time.monotonic()
    try:
        assert deployer.up().summary.result == "succeeded"
        FIGURES["deployer stack up (s)"] = round(time.monotonic() - started, 1)
        written = subprocess.run(
            ["bash", str(ROOT / "tools/deployer-kubeconfig.sh"), "--namespace", NAMESPACE,
             "--kubeconfig", audited.kubeconfig, "--context", audited.context,
             "--duration", "1h", "--output", str(kubeconfig)],
            capture_output=True, text=True, check=False, timeout=60)
        assert written.returncode == 0, written.stderr
        config = app_config(audited, kubeconfig, 10)
        project = Project(tmp_path_factory.mktemp("least-app"), env)
        app = project.stack(STACK, config, secrets={"moontv:ownerPassword": OWNER_PASSWORD})
        yield Identity(audited, kubeconfig, deployer, app, config)
    finally:
        print("\n[deployer] figures " + json.dumps(FIGURES, sort_keys=True))
        if app is not None:
            app.destroy()
        deployer.destroy()


def test_given_a_kubeconfig_from_the_script_then_it_holds_only_a_token_of_the_deployer(identity):
    written = yaml.safe_load(identity.kubeconfig.read_text())
    (user,) = written["users"]
    assert set(user["user"]) == {"token"}  # no client certificate, no admin credentials
    assert identity.kubeconfig.stat().st_mode & 0o077 == 0
    who = identity.as_deployer("auth", "whoami", "-o", "json")
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == DEPLOYER, who.stderr


def test_given_a_role_without_patch_on_httproutes_when_up_runs_then_preflight_names_it_first(
        identity):
    node = identity.node
    role = json.loads(node.kubectl("get", "role", access.SERVICE_ACCOUNT, "-n", NAMESPACE,
                                   "-o", "json"))
    original = json.dumps({**role, "metadata": {k: v for k, v in role["metadata"].items()
                                                if k != "resourceVersion"}})
    for rule in role["rules"]:
        if "httproutes" in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "patch"]
    node.kubectl("replace", "-f", "-", stdin=json.dumps(role))
    since = len(node.audit_records())
    try:
        with pytest.raises(auto.CommandError) as exc:
            identity.app.up()
    finally:
        node.kubectl("replace", "-f", "-", stdin=original)
    message = str(exc.value)
    assert (f"moontv:kubernetes: the deployer cannot patch httproutes in {NAMESPACE}: add "
            "{apiGroups: ['gateway.networking.k8s.io'], resources: [httproutes], verbs: "
            "[patch]} to its Role") in message, message[-3000:]
    assert [r for r in identity.deployer_records(since) if r["verb"] in WRITES] == []
    left = node.kubectl("get", "all,configmaps,secrets", "-n", NAMESPACE, "-o", "name")
    assert sorted(left.split()) == ["configmap/kube-root-ca.crt"]


def test_given_the_deployer_when_up_runs_then_the_stack_is_deployed_and_serves(identity):
    node = identity.node
    started = time.monotonic()
    result = identity.app.up()
    assert result.summary.result == "succeeded"
    ready = node_host.wait_until(lambda: not not_ready(node), READY_TIMEOUT, interval=2)
    assert ready, not_ready(node)
    FIGURES["up as the deployer, empty to all Ready (s)"] = round(time.monotonic() - started, 1)
    status, _, _ = node_host.gateway_request(node.gateway, HOST, "GET", "/login")
    assert status == 200


def expected_weight_step(before: int, after: int) -> list[tuple[str, str, str, str]]:
    """(verb, resource, name, request) of each write a weight step makes, from the program under
    mocks. The provider updates each changed object with two PATCH requests: a JSON patch that
    hands older field managers' fields to its server-side-apply manager (pulumi-kubernetes
    4.34 ``fixCSAFieldManagers``, sent on every update, empty when there is nothing to hand
    over), then the server-side apply itself (``?fieldManager=pulumi-kubernetes-…``)."""
    runs = [run_stack(STACK, {**app_config_for_mocks(), "moontv:release": canary(w, CANARY)})
            for w in (before, after)]
    old, new = ({(r.type, r.name): r for r in run.kubernetes()} for run in runs)
    assert old.keys() == new.keys()
    return sorted(("patch", access.RESOURCES[r.kind].plural, r.metadata_name or r.name, request)
                  for key, r in new.items() if r.inputs != old[key].inputs
                  for request in ("field managers", "apply"))


def request(record: dict[str, Any]) -> str:
    return "apply" if "fieldManager=pulumi-kubernetes" in record["requestURI"] else "field managers"


def app_config_for_mocks() -> dict[str, Any]:
    return {"moontv:namespace": NAMESPACE,
            "moontv:traffic": {**CONFIG["moontv:traffic"], "host": HOST},
            "moontv:kubernetes": {"context": "moontv-node", "createNamespace": False}}


def test_given_a_weight_step_when_up_runs_then_the_audit_log_holds_exactly_its_writes(identity):
    expected = expected_weight_step(10, 50)
    assert expected == [("patch", "httproutes", "moontv", "apply"),
                        ("patch", "httproutes", "moontv", "field managers")]
    identity.set_weight(50)
    since = len(identity.node.audit_records())
    started = time.monotonic()
    result = identity.app.up()
    FIGURES["weight step 10 -> 50 as the deployer (s)"] = round(time.monotonic() - started, 1)
    assert result.summary.result == "succeeded"
    assert changes(result.summary.resource_changes) == {"update": 1}
    records = identity.deployer_records(since)
    writes = [r for r in records if "dryRun" not in r["requestURI"]]
    assert sorted((r["verb"], r["objectRef"]["resource"], r["objectRef"]["name"], request(r))
                  for r in writes) == expected, json.dumps(writes, indent=1)[:3000]
    for record in writes:
        assert record["objectRef"]["namespace"] == NAMESPACE
        assert record["responseStatus"]["code"] == 200
        assert record["level"] == "Metadata" and "requestObject" not in record
    record = next(r for r in writes if request(r) == "apply")
    print("\n[deployer] audit record of the weight step: " + json.dumps(record))
    dry_runs = len(records) - len(writes)
    FIGURES["dry-run requests of the weight step (audited, nothing written)"] = dry_runs


def labelled(api_version: str, kind: str, name: str, namespace: str | None = None) -> str:
    """A server-side apply body that only adds a label (kubectl sends it without reading)."""
    metadata = {"name": name, "labels": {"least-probe": "1"},
                **({"namespace": namespace} if namespace else {})}
    return json.dumps({"apiVersion": api_version, "kind": kind, "metadata": metadata})


APPLY = ("apply", "--server-side", "--field-manager", "least-probe", "-f", "-")
ATTEMPTS = [
    # (what, kubectl arguments as the deployer, stdin)
    ("a ConfigMap in another namespace",
     ("create", "configmap", "least-probe", "-n", "default", "--from-literal=a=b"), None),
    ("a change to another namespace's Gateway", APPLY,
     labelled("gateway.networking.k8s.io/v1", "Gateway", "moontv-node", "gateway-system")),
    ("a Namespace (cluster-scoped)", ("create", "namespace", "least-probe"), None),
    ("a ClusterRoleBinding to cluster-admin (cluster-scoped)",
     ("create", "clusterrolebinding", "least-probe", "--clusterrole=cluster-admin",
      f"--serviceaccount={NAMESPACE}:{access.SERVICE_ACCOUNT}"), None),
    ("a change to a StorageClass it may read", APPLY,
     labelled("storage.k8s.io/v1", "StorageClass", "moontv-node-local")),
    ("a change to its own Role", APPLY,
     labelled("rbac.authorization.k8s.io/v1", "Role", access.SERVICE_ACCOUNT, NAMESPACE)),
]


@pytest.mark.parametrize(("what", "args", "stdin"), ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
def test_given_the_deployer_when_it_writes_outside_what_it_owns_then_the_api_server_refuses(
        identity, what, args, stdin):
    since = len(identity.node.audit_records())
    result = identity.as_deployer(*args, stdin=stdin)
    assert result.returncode != 0 and "forbidden" in result.stderr.lower(), (what, result)
    refused = [r for r in identity.deployer_records(since) if r["verb"] in WRITES]
    assert [r["responseStatus"]["code"] for r in refused] == [403], refused
    print(f"\n[deployer] refused {what}: {result.stderr.strip()}")


def test_given_the_deployer_when_destroy_runs_then_everything_of_the_stack_goes_but_the_namespace(
        identity):
    node = identity.node
    started = time.monotonic()
    result = identity.app.destroy()
    FIGURES["destroy as the deployer (s)"] = round(time.monotonic() - started, 1)
    assert result.summary.result == "succeeded"
    left = node.kubectl("get", "deployments,statefulsets,services,httproutes,secrets",
                        "-n", NAMESPACE, "-o", "name")
    assert left.split() == []
    assert node.kubectl("get", "namespace", NAMESPACE, "-o", "name").strip() == (
        f"namespace/{NAMESPACE}")


def not_ready(node) -> list[str]:
    out = node.kubectl("get", "deployments,statefulsets", "-n", NAMESPACE, "-o", "json")
    return [f"{w['kind']}/{w['metadata']['name']}" for w in json.loads(out)["items"]
            if (w["status"].get("readyReplicas") or 0) < w["spec"].get("replicas", 1)]
