"""The first ``up`` on a real cluster whose storage is not what the stack assumes.

A cluster without a default StorageClass must fail ``up`` at once, saying what is missing,
instead of waiting ten minutes on PVCs that cannot bind; a cluster whose default class binds
``WaitForFirstConsumer`` must finish ``up`` although the backup PVC binds only when the first
backup Job mounts it. Both on the real node (tools/cluster.sh node-up), through the real engine.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.integration import node as node_host
from tests.integration.engine import Project, require_engine, stack_config
from tests.integration.test_node_engine import OWNER_PASSWORD, node_config, node_images

__all__ = ["node_images"]  # the module fixture that imports the test images into the node

# The node's default StorageClass is switched off: no other node test may make a PVC meanwhile.
pytestmark = [pytest.mark.integration, pytest.mark.node_exclusive]

NAMESPACE = "moontv-first-up"
CONFIG = stack_config("node", **{"moontv:namespace": NAMESPACE})
CONFIG["moontv:traffic"] = {**CONFIG["moontv:traffic"], "host": "first-up.node.local"}
WFFC_CLASS = "moontv-first-consumer"


def with_node(node) -> dict:
    return {**CONFIG, "moontv:kubernetes": node_config(node)["moontv:kubernetes"]}


def set_default_storage(on: bool) -> None:
    result = node_host.cluster("node-default-storage", "on" if on else "off")
    assert result.returncode == 0, result.stdout + result.stderr


def namespace_exists(node) -> bool:
    out = node.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name")
    return bool(out.strip())


def test_given_no_default_storage_class_when_up_then_it_fails_at_once_naming_the_key(
    node, node_images, tmp_path
):
    project = Project(tmp_path, require_engine())
    stack = project.stack("first-up", with_node(node),
                          secrets={"moontv:ownerPassword": OWNER_PASSWORD})
    set_default_storage(False)
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as failed:
            stack.up()
        seconds = time.monotonic() - started
    finally:
        set_default_storage(True)
        stack.workspace.remove_stack("first-up", force=True)
    message = str(failed.value)
    assert "storage.storageClass" in message and "no default StorageClass" in message, message
    assert seconds < 60, f"up took {seconds:.0f}s to fail"
    assert not namespace_exists(node), "up created Kubernetes objects before failing"


def test_given_a_wait_for_first_consumer_default_class_when_up_then_it_finishes(
    node, node_images, tmp_path
):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # the storage container runs as a non-root uid
    volume = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"{WFFC_CLASS}-data"},
        "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": WFFC_CLASS, "persistentVolumeReclaimPolicy": "Delete",
                 "hostPath": {"path": str(data), "type": "Directory"}},
    }
    storage_class = {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": WFFC_CLASS,
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    project = Project(tmp_path, require_engine())
    stack = project.stack("first-up", with_node(node),
                          secrets={"moontv:ownerPassword": OWNER_PASSWORD})
    set_default_storage(False)
    node.apply([storage_class, volume])
    try:
        result = stack.up()
        assert result.summary.result == "succeeded"
        for kind in ("deployment", "statefulset"):
            node.kubectl("rollout", "status", kind, "-n", NAMESPACE, "--timeout=300s",
                         "--watch", timeout=330)
        claims = json.loads(node.kubectl("get", "pvc", "-n", NAMESPACE, "-o", "json"))["items"]
        phases = {c["metadata"]["name"]: c["status"].get("phase") for c in claims}
        backup = [name for name in phases if "backup" in name]
        assert backup and all(phases[name] == "Pending" for name in backup), phases
        assert any(phase == "Bound" for name, phase in phases.items() if name not in backup), phases
    finally:
        stack.destroy()
        stack.workspace.remove_stack("first-up", force=True)
        node.kubectl("delete", "storageclass", WFFC_CLASS, "--ignore-not-found")
        node.kubectl("delete", "pv", f"{WFFC_CLASS}-data", "--ignore-not-found")
        set_default_storage(True)
