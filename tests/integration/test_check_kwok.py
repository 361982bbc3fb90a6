"""The cluster checks of `rollout check pre|post` against a real API server: the staging-like
stack deployed by the engine to the local kwok cluster (kwok marks pods Ready), read back with
kubectl, failing cases included. The full stack on the real node, with traffic, storage and
monitoring: tests/integration/test_node_operations.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rollout import check_post, check_pre
from rollout.check import FAIL, PASS, SKIP, Kubectl, Target, run_checks
from tests.integration.engine import Project, require_engine
from tests.integration.node import wait_until
from tests.integration.test_engine_kwok import NAMESPACE, kwok_config, local_volumes

pytestmark = pytest.mark.integration
CANARY = {"strategy": "canary", "canary": {"version": "v100.1.2", "weight": 10}}


@pytest.fixture(scope="module")
def deployed(kwok, tmp_path_factory):
    local_volumes(kwok)
    project = Project(tmp_path_factory.mktemp("check-kwok"), require_engine())
    config = kwok_config(kwok, **{"moontv:release": CANARY})
    stack = project.stack("staging", config)
    try:
        assert stack.up().summary.result == "succeeded"
        yield config
    finally:
        stack.destroy()


def target(kwok, config, **kwargs) -> Target:
    return Target(
        stack="staging", config=config, cluster=Kubectl(kwok.kubeconfig, kwok.context), **kwargs
    )


def results(checks, t: Target) -> dict:
    return {r.name: r for r in run_checks(checks, t)}


def ready(kwok) -> bool:
    out = json.loads(kwok.kubectl("get", "deployments", "-n", NAMESPACE, "-o", "json"))
    return all(
        (d["status"].get("readyReplicas") or 0) >= d["spec"]["replicas"]
        for d in out["items"]
        if d["spec"]["replicas"]
    )


def test_given_the_deployed_stack_then_tracks_and_security_pass(kwok, deployed):
    assert wait_until(lambda: ready(kwok), 120, interval=2)
    found = results(
        [check_post.check_tracks_ready, check_post.check_security], target(kwok, deployed)
    )
    assert found["tracks-ready"].status == PASS, found["tracks-ready"].reason
    assert "moontv-stable 2/2" in found["tracks-ready"].reason
    assert "moontv-canary 2/2" in found["tracks-ready"].reason
    assert found["security"].status == PASS, found["security"].reason


def test_given_no_successful_backup_then_pre_fails_and_a_fresh_one_passes(kwok, deployed):
    t = target(kwok, deployed)
    found = results([check_pre.check_backup_age], t)["backup-age"]
    assert found.status == FAIL and "has never completed a backup" in found.reason
    now = datetime.now(UTC)
    for age, status in ((timedelta(hours=2), PASS), (timedelta(hours=30), FAIL)):
        stamp = (now - age).strftime("%Y-%m-%dT%H:%M:%SZ")
        kwok.kubectl(
            "patch",
            "cronjob",
            "-n",
            NAMESPACE,
            "moontv-kvrocks-backup",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"lastSuccessfulTime": stamp}}),
        )
        found = results([check_pre.check_backup_age], t)["backup-age"]
        assert found.status == status, found.reason


def test_given_a_weakened_namespace_then_security_fails_naming_what_is_missing(kwok, deployed):
    policy = json.loads(
        kwok.kubectl("get", "networkpolicy", "-n", NAMESPACE, "moontv-allow-dns", "-o", "json")
    )
    kwok.kubectl("delete", "networkpolicy", "-n", NAMESPACE, "moontv-allow-dns")
    kwok.kubectl(
        "label",
        "namespace",
        NAMESPACE,
        "--overwrite",
        "pod-security.kubernetes.io/enforce=privileged",
    )
    try:
        found = results([check_post.check_security], target(kwok, deployed))["security"]
        assert found.status == FAIL
        assert "enforce=privileged, not restricted" in found.reason
        assert found.reason.endswith("NetworkPolicies missing: moontv-allow-dns")
    finally:
        kwok.kubectl(
            "label",
            "namespace",
            NAMESPACE,
            "--overwrite",
            "pod-security.kubernetes.io/enforce=restricted",
        )
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            policy["metadata"].pop(key, None)
        kwok.kubectl("apply", "-f", "-", stdin=json.dumps(policy))


def test_given_a_scaled_down_track_then_tracks_ready_fails(kwok, deployed):
    kwok.kubectl("scale", "deployment", "-n", NAMESPACE, "moontv-canary", "--replicas=0")
    kwok.kubectl(
        "patch",
        "deployment",
        "-n",
        NAMESPACE,
        "moontv-stable",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"template": {"spec": {"nodeSelector": {"no-such-node": "true"}}}}}),
    )
    # The Deployment controller has rolled one pod of the new template (it cannot schedule).
    kwok.kubectl("wait", "deployment/moontv-stable", "-n", NAMESPACE, "--timeout=60s",
                 "--for=jsonpath={.status.updatedReplicas}=1")
    found = results([check_post.check_tracks_ready], target(kwok, deployed))["tracks-ready"]
    assert found.status == FAIL
    assert "moontv-canary: scaled to 0, the stack declares 2" in found.reason
    assert "moontv-stable: 2/2 ready, 1/2 updated" in found.reason


def test_given_no_cluster_namespace_yet_then_backup_age_is_skipped(kwok, deployed):
    config = {**deployed, "moontv:namespace": "moontv-not-yet"}
    found = results([check_pre.check_backup_age], target(kwok, config))["backup-age"]
    assert found.status == SKIP and "does not exist yet" in found.reason
