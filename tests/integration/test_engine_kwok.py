"""A staging-like stack through the real engine against a local kwok cluster."""

from __future__ import annotations

import json

import pytest
from pulumi import automation as auto

from tests.integration.engine import Project, changes, require_engine, stack_config

pytestmark = pytest.mark.integration
NAMESPACE = "moontv-it"
STORAGE_CLASS = "kwok-local"


def local_volumes(kwok, count: int = 2) -> None:
    """Static PersistentVolumes of a StorageClass without provisioner: kwok has none (the
    program checks that the named StorageClass exists before `up`)."""
    items: list[dict] = [{
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
    }]
    items += [{
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"moontv-it-pv-{i}"},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": STORAGE_CLASS, "hostPath": {"path": f"/tmp/moontv-pv-{i}"},
                 "persistentVolumeReclaimPolicy": "Delete"},
    } for i in range(count)]
    kwok.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                       "items": items}))


def kwok_config(kwok, **overrides):
    config = stack_config(
        "staging",
        **{
            "moontv:namespace": NAMESPACE,
            "moontv:kubernetes": {"context": kwok.context, "kubeconfig": kwok.kubeconfig},
            "moontv:autoscaling": {"enabled": False},
            "moontv:storage": {"kind": "kvrocks", "size": "1Gi", "storageClass": STORAGE_CLASS,
                               "backup": {"enabled": True, "size": "1Gi"}},
        },
    )
    config.update(overrides)
    return config


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path, require_engine())


def test_staging_on_kwok_up_noop_edit_destroy(kwok, project):
    local_volumes(kwok)
    stack = project.stack("staging", kwok_config(kwok, **{
        "moontv:release": {"strategy": "canary", "canary": {"version": "v100.1.2", "weight": 10}},
    }))
    try:
        up = stack.up()
        assert up.summary.result == "succeeded"
        deployments = json.loads(kwok.kubectl("get", "deployments", "-n", NAMESPACE, "-o", "json",
                                             "-l", "app.kubernetes.io/component=app"))
        available = {d["metadata"]["name"]: d["status"].get("availableReplicas", 0)
                     for d in deployments["items"]}
        assert available == {"moontv-stable": 2, "moontv-canary": 2}

        again = stack.up()
        assert changes(again.summary.resource_changes) == {}

        # a weight edit changes exactly one resource: the route
        stack.set_config("moontv:release.canary.weight", auto.ConfigValue("25"), path=True)
        preview = stack.preview(diff=True)
        assert changes(preview.change_summary) == {"update": 1}, preview.change_summary
        assert "HTTPRoute" in preview.stdout

        # a replica edit diffs only the replica counts of the two tracks
        stack.set_config("moontv:release.canary.weight", auto.ConfigValue("10"), path=True)
        stack.set_config("moontv:replicas", auto.ConfigValue("3"))
        preview = stack.preview(diff=True)
        assert changes(preview.change_summary) == {"update": 2}, preview.change_summary
        lines = [line.strip() for line in preview.stdout.splitlines()]
        updated = [line for line in lines if line.endswith("(update)")]
        assert updated == ["~ kubernetes:apps/v1:Deployment: (update)"] * 2, updated
        values = [line for line in lines if "=>" in line and not line.startswith("~ stable")]
        assert values == ["~ replicas: 2 => 3"] * 2, values
        stack.up()
        deployments = json.loads(kwok.kubectl("get", "deployments", "-n", NAMESPACE, "-o", "json",
                                             "-l", "app.kubernetes.io/component=app"))
        assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in deployments["items"]} == {
            "moontv-stable": 3, "moontv-canary": 3}
    finally:
        stack.destroy()
    left = kwok.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name")
    assert left.strip() == "" or "Terminating" in kwok.kubectl(
        "get", "namespace", NAMESPACE, "--ignore-not-found")
    assert kwok.kubectl("get", "all", "-n", NAMESPACE, "-o", "name", check=False).strip() == ""
