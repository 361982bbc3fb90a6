"""Review stacks as shipped: the `pr` template, what a copy for one pull request deploys, the
Pulumi Deployments settings file and the self-managed workflow (no engine needed here; the
lifecycle through the engine is tests/integration/test_review_stacks.py)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from components import settings
from components.errors import ConfigError
from tests.conftest import ROOT
from tests.program import Run, run_stack

SCRIPT = ROOT / "scripts/review-stack.sh"
WORKFLOW = ROOT / ".github/workflows/review-stacks.yml"
DEPLOYMENT_SETTINGS = ROOT / "deploy/pr.deployment-settings.json"
# The REST API's DeploymentSettings (sdk/go/common/apitype/deployments.go, pulumi 3.274.0).
SETTINGS_KEYS = {
    "sourceContext": {"git"},
    "gitHub": {
        "repository",
        "pullRequestTemplate",
        "deployCommits",
        "previewPullRequests",
        "paths",
    },
    "operationContext": {"preRunCommands", "environmentVariables"},
}


def template() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "Pulumi.pr.yaml").read_text())["config"]


def for_pr(number: int) -> dict[str, Any]:
    """What scripts/review-stack.sh sets on the copy for pull request ``number``."""
    host = template()["moontv:traffic"]["host"]
    return {
        "moontv:namespace": f"moontv-pr-{number}",
        "moontv:traffic": {**template()["moontv:traffic"], "host": f"pr-{number}.{host}"},
    }


@pytest.fixture(scope="module")
def pr7() -> Run:
    return run_stack("pr", for_pr(7))


def test_given_the_template_then_it_is_a_valid_review_environment() -> None:
    raw = {key.split(":", 1)[1]: value for key, value in template().items()}
    model = settings.validate(raw)
    assert model.environment == "review"
    assert model.replicas == 1 and not model.autoscaling.enabled
    assert not model.storage.backup.enabled and not model.storage.persistent
    assert model.resources.limits.cpu == "500m" and model.resources.limits.memory == "384Mi"


def test_given_a_copy_for_one_pr_then_everything_is_in_its_namespace_and_host(pr7: Run) -> None:
    assert pr7.outputs["namespace"] == "moontv-pr-7"
    assert pr7.outputs["url"] == "https://pr-7.preview.moontv.example.com"
    namespaced = [r for r in pr7.kubernetes() if r.kind != "Namespace"]
    assert {r.inputs["metadata"]["namespace"] for r in namespaced} == {"moontv-pr-7"}
    [route] = pr7.kind("HTTPRoute")
    assert route.inputs["spec"]["hostnames"] == ["pr-7.preview.moontv.example.com"]


def test_given_a_review_stack_then_one_replica_no_backups_and_storage_in_an_emptydir(
    pr7: Run,
) -> None:
    assert [d.inputs["spec"]["replicas"] for d in pr7.kind("Deployment")] == [1]
    assert not pr7.kind("CronJob") and not pr7.kind("PersistentVolumeClaim")
    assert not pr7.kind("HorizontalPodAutoscaler")
    [storage] = pr7.kind("StatefulSet")
    spec = storage.inputs["spec"]
    assert spec["volumeClaimTemplates"] == []
    assert {"name": "data", "emptyDir": {"sizeLimit": "512Mi"}} in spec["template"]["spec"][
        "volumes"
    ]


def test_given_two_prs_then_namespace_host_and_stack_differ() -> None:
    one, two = run_stack("pr", for_pr(1)), run_stack("pr", for_pr(2))
    assert one.outputs["namespace"] != two.outputs["namespace"]
    assert one.outputs["url"] != two.outputs["url"]


def test_given_ephemeral_storage_on_swarm_then_the_key_is_refused() -> None:
    raw = {key.split(":", 1)[1]: value for key, value in template().items()}
    raw |= {"platform": "swarm", "kubernetes": {}}
    with pytest.raises(ConfigError) as exc:
        settings.validate(raw)
    assert any(
        p.startswith("moontv:storage.persistent: is not read on the swarm platform")
        for p in exc.value.problems
    ), exc.value.problems


def test_given_the_deployment_settings_file_then_pr_is_the_review_stack_template() -> None:
    found = json.loads(DEPLOYMENT_SETTINGS.read_text())
    assert set(found) == set(SETTINGS_KEYS)
    for key, fields in SETTINGS_KEYS.items():
        assert set(found[key]) <= fields, key
    assert found["gitHub"]["pullRequestTemplate"] is True
    assert found["sourceContext"]["git"]["branch"] == "refs/heads/main"
    commands = found["operationContext"]["preRunCommands"]
    assert 'bash scripts/review-stack.sh configure "$PULUMI_CI_STACK"' in commands


def test_given_the_workflow_then_each_pr_has_its_own_serialized_lifecycle() -> None:
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert flow[True]["pull_request"]["types"] == ["opened", "reopened", "synchronize", "closed"]
    assert flow["concurrency"] == {
        "group": "review-stack-${{ github.event.pull_request.number }}",
        "cancel-in-progress": False,
    }
    runs = {name: [s.get("run", "") for s in job["steps"]] for name, job in flow["jobs"].items()}
    assert 'scripts/review-stack.sh up "$PR_NUMBER"' in runs["up"]
    assert 'scripts/review-stack.sh destroy "$PR_NUMBER"' in runs["destroy"]
    assert "github.event.action != 'closed'" in flow["jobs"]["up"]["if"]
    assert "github.event.action == 'closed'" in flow["jobs"]["destroy"]["if"]
    comment = next(s for s in flow["jobs"]["up"]["steps"] if "gh pr comment" in s.get("run", ""))
    assert comment["if"] == "steps.up.outputs.created == 'true'"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "abc"], "PR must be a pull request number"),
        (["up", "0"], "PR must be a pull request number"),
        (["configure", "pr"], "STACK must end in -<pull request number>"),
        (["url", "3", "--render-dir", "x"], "--render-dir goes with up only"),
        (["remove", "3"], "accepted: up, url, destroy, configure"),
    ],
)
def test_given_bad_input_then_exit_2_naming_it(args: list[str], message: str) -> None:
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_given_the_template_then_it_passes_every_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_policy_pack import pack, violations_of

    monkeypatch.setattr(pack, "STACK", {"name": None, "environment": None})
    assert violations_of("pr") == []
