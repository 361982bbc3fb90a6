"""Each policy rule on a compliant and a non-compliant resource (policy/rules.py)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "policy"))

import rules

from tests.helpers import DIGEST

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LABELS = {"app.kubernetes.io/name": "moontv", "moontv.io/track": "stable"}


def container(name: str = "moontv", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "image": f"ghcr.io/moontechlab/lunatv:1.2.3@{DIGEST}",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1001,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "livenessProbe": {"httpGet": {"path": "/login", "port": 3000}},
        "readinessProbe": {"httpGet": {"path": "/login", "port": 3000}},
    }
    spec.update(overrides)
    return spec


def deployment(
    *containers: dict[str, Any],
    replicas: int = 2,
    namespace: str = "moontv",
    name: str = "moontv-stable",
    init: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": LABELS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "initContainers": list(init),
                    "containers": list(containers or (container(),)),
                },
            },
        },
    }


def with_security(**changes: Any) -> dict[str, Any]:
    c = container()
    c["securityContext"] = {**c["securityContext"], **changes}
    return deployment(c)


GOOD = deployment()


@pytest.mark.parametrize(
    "rule",
    [
        rules.run_as_non_root,
        rules.no_privilege_escalation,
        rules.drop_all_capabilities,
        rules.seccomp_runtime_default,
        rules.read_only_root_filesystem,
        rules.requests_and_limits,
        rules.liveness_and_readiness,
        rules.no_latest_tag,
        rules.digest_pinned,
    ],
)
def test_given_a_hardened_deployment_then_every_pod_rule_passes(rule: Any) -> None:
    assert rule(DEPLOYMENT, GOOD) == []


@pytest.mark.parametrize(
    ("rule", "props", "expected"),
    [
        (rules.run_as_non_root, with_security(runAsUser=0), "runs as uid 0"),
        (
            rules.run_as_non_root,
            with_security(runAsNonRoot=None, runAsUser=None),
            "must set runAsNonRoot",
        ),
        (
            rules.no_privilege_escalation,
            with_security(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation: false",
        ),
        (rules.no_privilege_escalation, with_security(privileged=True), "is privileged"),
        (
            rules.drop_all_capabilities,
            with_security(capabilities={"drop": ["NET_RAW"]}),
            "must drop ALL",
        ),
        (
            rules.drop_all_capabilities,
            with_security(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
            "adds capabilities ['SYS_ADMIN']",
        ),
        (
            rules.seccomp_runtime_default,
            with_security(seccompProfile={"type": "Unconfined"}),
            "got 'Unconfined'",
        ),
        (
            rules.read_only_root_filesystem,
            with_security(readOnlyRootFilesystem=False),
            "readOnlyRootFilesystem: true",
        ),
        (
            rules.requests_and_limits,
            deployment(container(resources={"requests": {"cpu": "1", "memory": "1Gi"}})),
            "has no limits for cpu, memory",
        ),
        (
            rules.liveness_and_readiness,
            deployment(container(readinessProbe=None)),
            "has no readinessProbe",
        ),
        (
            rules.no_latest_tag,
            deployment(container(image="ghcr.io/moontechlab/lunatv:latest")),
            "moving tag 'latest'",
        ),
        (
            rules.no_latest_tag,
            deployment(container(image="ghcr.io/moontechlab/lunatv")),
            "has no tag",
        ),
        (
            rules.digest_pinned,
            deployment(container(image="ghcr.io/moontechlab/lunatv:1.2.3")),
            "must be pinned by digest",
        ),
    ],
)
def test_given_a_weakened_deployment_then_the_rule_reports_it(
    rule: Any, props: dict[str, Any], expected: str
) -> None:
    found = rule(DEPLOYMENT, props)
    assert any(expected in message for message in found), found


def test_given_an_init_container_then_pod_security_covers_it_too() -> None:
    init = container("fill-public")
    init["securityContext"] = {**init["securityContext"], "readOnlyRootFilesystem": False}
    found = rules.read_only_root_filesystem(DEPLOYMENT, deployment(init=(init,)))
    assert found == ["initContainer 'fill-public' must set readOnlyRootFilesystem: true"]
    # probes are asked of long-running containers only
    init_no_probes = container("fill-public", livenessProbe=None, readinessProbe=None)
    assert rules.liveness_and_readiness(DEPLOYMENT, deployment(init=(init_no_probes,))) == []


def test_given_container_level_seccomp_then_it_counts_and_overrides_the_pod() -> None:
    props = copy.deepcopy(GOOD)
    props["spec"]["template"]["spec"]["securityContext"] = {}
    assert rules.seccomp_runtime_default(DEPLOYMENT, props) != []
    props["spec"]["template"]["spec"]["containers"][0]["securityContext"]["seccompProfile"] = {
        "type": "RuntimeDefault"
    }
    assert rules.seccomp_runtime_default(DEPLOYMENT, props) == []


def test_given_a_cronjob_then_its_nested_pod_template_is_checked() -> None:
    cron = {"spec": {"jobTemplate": {"spec": {"template": GOOD["spec"]["template"]}}}}
    assert rules.run_as_non_root("kubernetes:batch/v1:CronJob", cron) == []
    bad = copy.deepcopy(cron)
    pod = bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["runAsUser"] = 0
    assert rules.run_as_non_root("kubernetes:batch/v1:CronJob", bad) != []


def test_given_a_swarm_service_then_image_rules_apply() -> None:
    good = {"taskSpec": {"containerSpec": {"image": f"ghcr.io/moontechlab/lunatv:1.2.3@{DIGEST}"}}}
    bad = {"taskSpec": {"containerSpec": {"image": "ghcr.io/moontechlab/lunatv:latest"}}}
    assert rules.no_latest_tag(rules.SWARM_SERVICE_TYPE, good) == []
    assert rules.no_latest_tag(rules.SWARM_SERVICE_TYPE, bad) != []
    assert rules.digest_pinned(rules.SWARM_SERVICE_TYPE, bad) != []


def test_given_other_resource_types_then_pod_rules_ignore_them() -> None:
    assert rules.run_as_non_root("kubernetes:core/v1:Namespace", {"metadata": {}}) == []


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("ghcr.io/o/lunatv:1.2.3", "1.2.3"),
        ("localhost:5000/lunatv", None),
        ("localhost:5000/lunatv:7", "7"),
        (f"ghcr.io/o/lunatv:1.2.3@{DIGEST}", "1.2.3"),
        (f"ghcr.io/o/lunatv@{DIGEST}", None),
    ],
)
def test_image_tag(image: str, tag: str | None) -> None:
    assert rules.image_tag(image) == tag


@pytest.mark.parametrize(
    ("config", "environment", "required"),
    [
        ({}, "prod", True),
        ({}, "production", True),
        ({}, "staging", False),
        ({}, None, False),
        ({"requireDigests": True}, "staging", True),
        ({"requireDigests": False}, "prod", False),
    ],
)
def test_digests_required(config: dict[str, Any], environment: str | None, required: bool) -> None:
    assert rules.digests_required(config, environment) is required


def service(kind: str | None, name: str = "moontv") -> dict[str, Any]:
    spec = {"ports": [{"port": 80}]} | ({"type": kind} if kind else {})
    return {"metadata": {"labels": {"app.kubernetes.io/name": name}}, "spec": spec}


@pytest.mark.parametrize(
    ("props", "violations"),
    [
        (service(None), 0),
        (service("ClusterIP"), 0),
        (service("NodePort"), 1),
        (service("LoadBalancer"), 1),
        (service("LoadBalancer", name="traefik"), 0),
    ],
)
def test_app_service_not_exposed(props: dict[str, Any], violations: int) -> None:
    assert len(rules.app_service_not_exposed(rules.SERVICE_TYPE, props)) == violations


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"NEXT_PUBLIC_STORAGE_TYPE": "kvrocks", "NEXT_PUBLIC_SITE_NAME": "MoonTV"}, None),
        ({"REDIS_URL": "redis://moontv-redis:6379"}, None),
        ({"PASSWORD": "hunter2"}, "'PASSWORD' looks secret"),
        ({"upstash_token": "x"}, "'upstash_token' looks secret"),
        ({"KVROCKS_URL": "redis://:pw@moontv-kvrocks:6666"}, "URL with credentials"),
        ({"kvrocks.conf": "port 6666\nrequirepass s3cret\n"}, "sets a password"),
    ],
)
def test_no_secrets_in_config_map(data: dict[str, str], expected: str | None) -> None:
    found = rules.no_secrets_in_config_map(rules.CONFIG_MAP_TYPE, {"data": data})
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0]


# --- stack rules ---------------------------------------------------------------------------


def res(type_: str, name: str, props: dict[str, Any]) -> rules.Resource:
    return rules.Resource(type_, name, props, f"urn:pulumi:test::moontv::{type_}::{name}")


def netpol(namespace: str) -> rules.Resource:
    return res(
        rules.NETWORK_POLICY_TYPE, f"deny-{namespace}", {"metadata": {"namespace": namespace}}
    )


def pdb(namespace: str, match: dict[str, str]) -> rules.Resource:
    props = {"metadata": {"namespace": namespace}, "spec": {"selector": {"matchLabels": match}}}
    return res(rules.PDB_TYPE, "pdb", props)


def test_network_policy_per_namespace() -> None:
    app = res(DEPLOYMENT, "app", deployment(namespace="moontv"))
    storage = res("kubernetes:apps/v1:StatefulSet", "kvrocks", deployment(namespace="data"))
    assert (
        rules.network_policy_per_namespace([app, storage, netpol("moontv"), netpol("data")]) == []
    )
    found = rules.network_policy_per_namespace([app, storage, netpol("moontv")])
    assert [v.message for v in found] == ["kvrocks: namespace 'data' has no NetworkPolicy"]
    assert found[0].urn == storage.urn


def test_pdb_for_replicated_workloads() -> None:
    app = res(DEPLOYMENT, "app", deployment(replicas=3))
    assert rules.pdb_for_replicated_workloads([app, pdb("moontv", LABELS)]) == []
    subset = {"app.kubernetes.io/name": "moontv"}
    assert rules.pdb_for_replicated_workloads([app, pdb("moontv", subset)]) == []
    assert len(rules.pdb_for_replicated_workloads([app])) == 1
    other_ns = rules.pdb_for_replicated_workloads([app, pdb("elsewhere", LABELS)])
    assert len(other_ns) == 1
    wrong = rules.pdb_for_replicated_workloads([app, pdb("moontv", {"moontv.io/track": "canary"})])
    assert "3 replicas but no PodDisruptionBudget" in wrong[0].message


def test_given_one_replica_then_no_pdb_is_needed_unless_an_hpa_keeps_more() -> None:
    single = res(DEPLOYMENT, "app", deployment(replicas=1))
    assert rules.pdb_for_replicated_workloads([single]) == []
    hpa = res(
        rules.HPA_TYPE,
        "hpa",
        {
            "metadata": {"namespace": "moontv"},
            "spec": {"scaleTargetRef": {"name": "moontv-stable"}, "minReplicas": 2},
        },
    )
    assert len(rules.pdb_for_replicated_workloads([single, hpa])) == 1


def test_match_expressions_in_pdb_selectors() -> None:
    app = res(DEPLOYMENT, "app", deployment(replicas=2))
    selector = {
        "matchExpressions": [
            {"key": "moontv.io/track", "operator": "In", "values": ["stable", "canary"]}
        ]
    }
    ok = res(
        rules.PDB_TYPE, "pdb", {"metadata": {"namespace": "moontv"}, "spec": {"selector": selector}}
    )
    assert rules.pdb_for_replicated_workloads([app, ok]) == []
    selector["matchExpressions"][0]["operator"] = "NotIn"
    assert len(rules.pdb_for_replicated_workloads([app, ok])) == 1
