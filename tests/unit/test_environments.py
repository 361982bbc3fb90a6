"""The environments as shipped: `testing` is production's topology at a small size, the `pr`
template is a one-replica review stack, and every environment file passes validation and the
policy pack."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components import settings
from tests.conftest import ROOT
from tests.program import Run, run_stack
from tests.unit.test_policy_pack import pack, violations_of


def stack_file(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]


def raw(stack: str) -> dict[str, Any]:
    return {key.split(":", 1)[1]: value for key, value in stack_file(stack).items()}


@pytest.fixture(scope="module")
def prod() -> Run:
    return run_stack("prod")


@pytest.fixture(scope="module")
def testing() -> Run:
    return run_stack("testing")


@pytest.fixture
def stack_context(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    monkeypatch.setattr(pack, "STACK", {"name": None, "environment": None})
    return pack.STACK


def kinds(run: Run) -> set[str]:
    return {r.kind for r in run.kubernetes()}


def test_given_the_testing_file_then_it_validates_as_the_testing_environment() -> None:
    model = settings.validate(raw("testing"))
    assert model.environment == "testing"


def test_given_testing_then_it_has_prods_strategy_monitoring_and_kinds_of_objects(
    prod: Run, testing: Run
) -> None:
    assert testing.outputs["strategy"] == prod.outputs["strategy"] == "blue-green"
    assert stack_file("testing")["moontv:monitoring"]["mode"] == "existing"
    assert stack_file("testing")["moontv:monitoring"]["enabled"] is True
    # Same topology: every kind of object prod has (HPA, PDB, probes, rules, backups...).
    assert kinds(prod) <= kinds(testing), kinds(prod) - kinds(testing)


def test_given_testing_then_it_is_smaller_than_prod_in_its_own_namespace_and_host(
    prod: Run, testing: Run
) -> None:
    t, p = stack_file("testing"), stack_file("prod")
    assert int(t["moontv:replicas"]) < int(p["moontv:replicas"])
    assert t["moontv:autoscaling"]["maxReplicas"] < p["moontv:autoscaling"]["maxReplicas"]
    assert testing.outputs["namespace"] == "moontv-testing" != prod.outputs["namespace"]
    assert testing.outputs["url"] == "https://moontv.testing.example.com" != prod.outputs["url"]
    hpa = testing.kind("HorizontalPodAutoscaler")[0].inputs["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 3)
    namespaces = {
        r.inputs["metadata"].get("namespace")
        for r in testing.kubernetes()
        if r.kind not in {"Namespace"}
    }
    assert "moontv-testing" in namespaces and "moontv" not in namespaces


def test_given_testing_then_it_passes_every_policy(
    stack_context: dict[str, str | None],
) -> None:
    assert violations_of("testing") == []
