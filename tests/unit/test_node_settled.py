"""``node.unsettled``: when the node tests may start measuring a namespace. The release tests
used to wait only for ``readyReplicas`` and ``updatedReplicas`` to reach ``spec.replicas``,
which a Deployment meets mid-rollout (one old pod Ready plus one new one), and not for pods being
deleted, which still answer during the preStop delay: a gate measured then counted the 500s
of the faulty canary being replaced."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.node import unsettled


class FakeNode:
    def __init__(self, *items: dict[str, Any]) -> None:
        self.items = list(items)

    def kubectl(self, *args: str, **_: Any) -> str:
        assert args[:2] == ("get", "deployments,statefulsets,pods")
        return json.dumps({"items": self.items})


def deployment(want: int, generation: int = 2, **status: int) -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"name": "moontv-canary", "generation": generation},
            "spec": {"replicas": want}, "status": {"observedGeneration": 2, **status}}


def pod(name: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-06T07:53:32Z"
    return {"kind": "Pod", "metadata": meta, "spec": {}, "status": {}}


DONE = {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}


def test_given_a_complete_rollout_and_no_old_pod_then_settled():
    assert unsettled(FakeNode(deployment(2, **DONE), pod("a"), pod("b")), "ns") == []


def test_given_an_old_pod_still_ready_mid_rollout_then_not_settled():
    # 1 -> 2 replicas with a new version: one old pod and one new pod Ready, the second new one
    # starting; ready and updated both reach 2 (what the old wait accepted)
    mid = deployment(2, replicas=3, updatedReplicas=2, readyReplicas=2, availableReplicas=2)
    assert unsettled(FakeNode(mid), "ns") == [
        "Deployment/moontv-canary: 2 wanted, 3 in all, 2 updated, 2 ready, 2 available"]


def test_given_a_replaced_pod_still_terminating_then_not_settled():
    found = unsettled(FakeNode(deployment(2, **DONE), pod("old", deleting=True), pod("a")), "ns")
    assert found == ["Pod/old: being deleted"]


def test_given_a_spec_the_controller_has_not_seen_then_not_settled():
    found = unsettled(FakeNode(deployment(2, generation=3, **DONE)), "ns")
    assert found == ["Deployment/moontv-canary: the controller has not seen generation 3"]


def test_given_a_statefulset_between_revisions_then_not_settled():
    sts = {"kind": "StatefulSet", "metadata": {"name": "moontv-redis", "generation": 1},
           "spec": {"replicas": 1}, "status": {"observedGeneration": 1, "readyReplicas": 1,
                                                "currentRevision": "r1", "updateRevision": "r2"}}
    assert unsettled(FakeNode(sts), "ns") == [
        "StatefulSet/moontv-redis: 1/1 ready, revision r1 -> r2"]
    sts["status"]["currentRevision"] = "r2"
    assert unsettled(FakeNode(sts), "ns") == []
