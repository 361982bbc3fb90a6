"""The preflight asks a real API server (the kwok cluster) for StorageClasses and custom
resource kinds, and `up` stops before any resource when the cluster lacks them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from pulumi import automation as auto

from components import settings
from components.kubernetes import preflight
from components.settings import KubernetesSettings
from tests.integration.engine import Project, require_engine, stack_config

pytestmark = pytest.mark.integration
NAMESPACE = "moontv-preflight"
GATEWAY = {"gateway": {"name": "public", "namespace": "gateway-system"}}


def target(kwok, content: bool = False) -> KubernetesSettings:
    kubeconfig = Path(kwok.kubeconfig).read_text() if content else kwok.kubeconfig
    return KubernetesSettings(context=kwok.context, kubeconfig=kubeconfig)


@pytest.fixture
def storage_class(kwok):
    """Create StorageClasses for one test; they are deleted afterwards."""
    created: list[str] = []

    def make(name: str, default: bool = False, mode: str = "Immediate") -> None:
        annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        kwok.kubectl("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": annotations},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": mode}))
        created.append(name)

    yield make
    for name in created:
        kwok.kubectl("delete", "storageclass", name, "--ignore-not-found")


def defaults(kwok) -> list[str]:
    classes = json.loads(kwok.kubectl("get", "storageclass", "-o", "json"))["items"]
    return [c["metadata"]["name"] for c in classes if (c["metadata"].get("annotations") or {})
            .get("storageclass.kubernetes.io/is-default-class") == "true"]


def test_storage_classes_are_read_from_the_cluster(kwok, storage_class):
    assert defaults(kwok) == [], "the kwok cluster has no default StorageClass"
    storage_class("moontv-pf-local", mode="WaitForFirstConsumer")
    need = preflight.Needs(volumes=True)
    facts = preflight.gather(target(kwok), need)
    assert preflight.StorageClass("moontv-pf-local", False, "WaitForFirstConsumer") in (
        facts.storage_classes or ())
    (problem,) = preflight.diagnose(need, facts)
    assert "no default StorageClass" in problem and "moontv-pf-local" in problem

    named = preflight.Needs(volumes=True, storage_class="fast-ssd")
    (problem,) = preflight.diagnose(named, preflight.gather(target(kwok, content=True), named))
    assert "StorageClass 'fast-ssd' does not exist" in problem

    storage_class("moontv-pf-default", default=True)
    assert preflight.diagnose(need, preflight.gather(target(kwok), need)) == []


def test_custom_resource_kinds_are_read_from_the_cluster(kwok):
    config = settings.validate({
        "environment": "staging", "image": {"tag": "v100.1.2"},
        "storage": {"kind": "external"}, "storageUrl": "redis://:x@db:6379", "traffic": GATEWAY,
        "monitoring": {"enabled": True, "mode": "existing"}})
    need = preflight.needs(config)
    facts = preflight.gather(target(kwok), need)
    assert {"Probe", "PrometheusRule"} <= facts.served[preflight.MONITORING_V1]
    assert preflight.diagnose(need, facts) == []  # kwok has the operator and Gateway API CRDs

    absent = preflight.Needs(apis=(preflight.ApiNeed(
        "monitoring.mode", "existing", "install it", {"example.moontv.io/v1": ("Widget",)}),))
    (problem,) = preflight.diagnose(absent, preflight.gather(target(kwok), absent))
    assert "Widget (example.moontv.io/v1); install it" in problem


def test_an_unreachable_cluster_warns_instead_of_failing(kwok, tmp_path):
    config = yaml.safe_load(Path(kwok.kubeconfig).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:1"
    unreachable = settings.validate({
        "environment": "staging", "image": {"tag": "v100.1.2"}, "traffic": GATEWAY,
        "kubernetes": {"context": kwok.context, "kubeconfig": yaml.safe_dump(config)}})
    result = preflight.check(unreachable)
    assert result.problems == [] and "could not ask the cluster" in result.warnings[0]


def test_up_without_a_default_storage_class_stops_before_any_resource(kwok, storage_class,
                                                                      tmp_path):
    storage_class("moontv-pf-local", mode="WaitForFirstConsumer")  # a class, but no default
    project = Project(tmp_path, require_engine())
    stack = project.stack("staging", stack_config("staging", **{
        "moontv:namespace": NAMESPACE,
        "moontv:kubernetes": {"context": kwok.context, "kubeconfig": kwok.kubeconfig},
        "moontv:autoscaling": {"enabled": False},
    }))
    started = time.monotonic()
    lines: list[str] = []
    with pytest.raises(auto.CommandError):
        stack.up(on_output=lines.append)
    elapsed = time.monotonic() - started
    output = "\n".join(lines)
    assert "moontv:storage.storageClass: the cluster has no default StorageClass" in output, (
        output)
    assert "kubernetes:" not in output.split("Resources:")[0], output  # no Kubernetes object
    assert elapsed < 120, f"up took {elapsed:.0f} s to fail"
    assert kwok.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found").strip() == ""
