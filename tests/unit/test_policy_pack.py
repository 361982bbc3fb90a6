"""The CrossGuard wrappers of policy/pack.py, and the shipped stacks against the whole pack."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "policy"))

import pack
from pulumi_policy import policy as policy_runtime

from tests.conftest import ROOT
from tests.program import run_stack

LATEST_DEPLOYMENT = {
    "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "x.io/a/b:latest"}]}}}
}


def policy(name: str) -> Any:
    [found] = [p for p in pack.POLICIES if p.name == name]
    return found


def resource_args(type_: str, props: dict[str, Any], config: dict[str, Any] | None = None) -> Any:
    return ResourceValidationArgs(type_, props, f"urn:{type_}", "r", None, None, config)  # type: ignore[arg-type]


def check(p: Any, args: Any) -> list[tuple[str, str | None]]:
    reported: list[tuple[str, str | None]] = []
    p.validate(args, lambda message, urn=None: reported.append((message, urn)))
    return reported


def test_the_pack_registers_every_rule_once() -> None:
    names = [p.name for p in pack.POLICIES]
    assert len(names) == len(set(names)) == 13
    stack_policies = {p.name for p in pack.POLICIES if isinstance(p, StackValidationPolicy)}
    assert stack_policies == {"networkpolicy-per-namespace", "pdb-for-replicated-workloads"}
    assert all(
        isinstance(p, ResourceValidationPolicy | StackValidationPolicy) for p in pack.POLICIES
    )


def test_a_resource_policy_reports_each_violation() -> None:
    found = check(
        policy("image-no-latest-tag"),
        resource_args("kubernetes:apps/v1:Deployment", LATEST_DEPLOYMENT),
    )
    assert found == [("container 'app' uses the moving tag 'latest': x.io/a/b:latest", None)]


@pytest.fixture
def stack_context(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """pack.STACK, restored after the test."""
    monkeypatch.setattr(pack, "STACK", {"name": None, "environment": None})
    return pack.STACK


def configure_stack(stack: str, config: dict[str, str]) -> None:
    """Call ConfigureStack on the pack's analyzer servicer as the engine does."""
    from pulumi.runtime.proto import analyzer_pb2

    servicer = policy_runtime._PolicyAnalyzerServicer("p", "0.0.1", pack.POLICIES,
                                                      EnforcementLevel.MANDATORY)
    servicer.ConfigureStack(analyzer_pb2.AnalyzerStackConfigureRequest(
        stack=stack, project="moontv", config=config), None)


@pytest.mark.parametrize(
    ("stack", "environment", "config", "violations"),
    [
        ("prod", "prod", {}, 1),
        ("eu-1", "prod", {}, 1),  # the environment decides, not the stack name
        ("prod", "staging", {}, 0),
        ("staging", "staging", {}, 0),
        ("staging", "staging", {"requireDigests": True}, 1),
        ("prod", "prod", {"requireDigests": False}, 0),
    ],
)
def test_the_digest_policy_follows_the_stack_environment_or_the_pack_config(
    stack_context: dict[str, str | None], stack: str, environment: str,
    config: dict[str, Any], violations: int,
) -> None:
    configure_stack(stack, {"moontv:environment": environment, "moontv:replicas": "3"})
    assert stack_context == {"name": stack, "environment": environment}
    props = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x.io/a:1"}]}}}}
    args = resource_args("kubernetes:apps/v1:Deployment", props, config)
    assert len(check(policy("image-digest-pinned-in-prod"), args)) == violations


@pytest.mark.parametrize(
    ("name", "environment", "expected"),
    [("org/moontv/prod", None, "prod"), ("prod", "staging", "staging"), (None, None, None)],
)
def test_without_moontv_environment_the_stack_name_decides(
    stack_context: dict[str, str | None], name: str | None, environment: str | None,
    expected: str | None,
) -> None:
    stack_context.update(name=name, environment=environment)
    assert pack.stack_environment() == expected


def test_a_stack_policy_reports_the_offending_urn() -> None:
    workload = type(
        "R",
        (),
        {
            "resource_type": "kubernetes:apps/v1:Deployment",
            "name": "app",
            "urn": "urn:app",
            "props": {"metadata": {"namespace": "moontv"}},
        },
    )()
    args = StackValidationArgs([workload])  # type: ignore[list-item]
    found = check(policy("networkpolicy-per-namespace"), args)
    assert found == [("app: namespace 'moontv' has no NetworkPolicy", "urn:app")]


def violations_of(stack: str, environment: str | None = None) -> list[str]:
    """Every violation the pack's own policies report on the program's resources for ``stack``,
    with the stack context the engine would give it (by default the stack's environment)."""
    run = run_stack(stack)
    environment = environment or yaml.safe_load(
        (ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["moontv:environment"]
    pack.STACK.update(name=stack, environment=environment)
    found: list[str] = []
    resources = [
        PolicyResource(r.type, r.inputs, f"urn:{r.type}::{r.name}", r.name, None,  # type: ignore[arg-type]
                       None, None, [], {})
        for r in run.resources
    ]
    for p in pack.POLICIES:
        if isinstance(p, StackValidationPolicy):
            p.validate(StackValidationArgs(resources, {}),
                       lambda message, urn=None, name=p.name: found.append(f"{name}: {message}"))
            continue
        for r in resources:
            p.validate(resource_args(r.resource_type, r.props),
                       lambda message, urn=None, where=f"{p.name} {r.name}":
                       found.append(f"{where}: {message}"))
    return found


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_given_a_shipped_stack_then_it_passes_every_policy(
    stack_context: dict[str, str | None], stack: str
) -> None:
    assert violations_of(stack) == []


def test_given_tag_only_images_in_prod_then_the_pack_reports_each_one(
    stack_context: dict[str, str | None],
) -> None:
    found = violations_of("staging", environment="prod")  # staging runs tags, not digests
    assert found and all(v.startswith("image-digest-pinned-in-prod ") for v in found), found
    assert any("moontv-stable: container 'moontv' must be pinned by digest" in v for v in found)
