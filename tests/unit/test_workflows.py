"""The workflows as data: credentials before every deploy, the candidate through the gates,
concurrency that cannot drop a release, the image scanned before it is pushed, and the scripts'
refusals of a backend that cannot work. Expressions are evaluated by the pipeline harness's own
evaluator (tests/integration/expressions.py), which must know every one the workflows use."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.expressions import ExpressionError, Scope, condition, evaluate, interpolate

WORKFLOWS = ROOT / ".github" / "workflows"
#: The environment of each deploying job and the secret holding its deployer kubeconfig.
KUBECONFIG_SECRETS = {
    ("deployment.yml", "staging"): "KUBECONFIG_STAGING",
    ("deployment.yml", "testing"): "KUBECONFIG_TESTING",
    ("deployment.yml", "prod"): "KUBECONFIG_PROD",
    ("deployment.yml", "preview"): "KUBECONFIG_PR_PREVIEW",
    ("review-stacks.yml", "up"): "PREVIEW_KUBECONFIG",
    ("review-stacks.yml", "destroy"): "PREVIEW_KUBECONFIG",
}


def flow(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def scope(**contexts: Any) -> Scope:
    base: dict[str, Any] = {
        "github": {"event_name": "push", "ref": "refs/heads/main", "sha": "a" * 40},
        "vars": {},
        "secrets": {},
        "matrix": {},
        "env": {},
        "steps": {},
        "needs": {},
    }
    base.update(contexts)
    return Scope(base)


# --- the evaluator ------------------------------------------------------------------------------


def test_given_expressions_then_github_semantics_apply() -> None:
    s = scope(matrix={"stack": "dev"}, secrets={"P": "pw"})
    assert evaluate("matrix.stack != 'dev' && secrets.P || ''", s) == ""
    s.contexts["matrix"]["stack"] = "prod"
    assert evaluate("matrix.stack != 'dev' && secrets.P || ''", s) == "pw"
    assert evaluate("github.EVENT_NAME == 'PUSH'", s) is True  # case-insensitive
    assert evaluate("github.event.pull_request.number", s) is None
    assert interpolate("pr-${{ github.event.pull_request.number }}", s) == "pr-"
    assert evaluate("format('{0}@{1}', 'a', 'b')", s) == "a@b"
    assert evaluate("!cancelled() && '' != 'x'", s) is True
    with pytest.raises(ExpressionError, match="unknown function"):
        evaluate("toLower('A')", s)
    with pytest.raises(ExpressionError, match="unknown context"):
        evaluate("jobz.x", s)


def test_given_an_if_without_a_status_function_then_it_needs_success() -> None:
    failed = scope()
    failed.status = "failure"
    assert condition("failure()", failed) is True
    assert condition("always() && steps.sync.outcome == 'success'", failed) is False
    assert condition("github.event_name == 'push'", failed) is False
    assert condition(None, failed) is False
    assert condition("github.event_name == 'push'", scope()) is True


def _expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [e for k, v in node.items() for e in _expressions(k) + _expressions(v)]
    if isinstance(node, list):
        return [e for v in node for e in _expressions(v)]
    if isinstance(node, str):
        return re.findall(r"\$\{\{(.*?)\}\}", node, re.S)
    return []


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_given_every_workflow_then_the_harness_knows_each_expression_it_uses(name: str) -> None:
    data = flow(name)
    expressions = _expressions(data)
    for job in data["jobs"].values():
        expressions += [str(job["if"])] if "if" in job else []
        expressions += [str(s["if"]) for s in job.get("steps", []) if "if" in s]
    assert expressions
    known = scope()
    known.workspace = ROOT
    for text in expressions:
        evaluate(text.replace("${{", "").replace("}}", ""), known)


# --- credentials --------------------------------------------------------------------------------


def _deploys(step: dict[str, Any]) -> bool:
    """A pulumi step (pulumi/actions, even the install) or one that runs pulumi or rollout."""
    run = step.get("run", "")
    return bool(
        "pulumi/actions" in step.get("uses", "")
        or re.search(r"rollout\b|review-stack\.sh|drift\.py|pulumi (up|preview|destroy)", run)
    )


def _kubeconfig_index(steps: list[dict[str, Any]]) -> int | None:
    return next(
        (i for i, s in enumerate(steps) if "scripts/kubeconfig.sh" in s.get("run", "")), None
    )


@pytest.mark.parametrize("name", ["deployment.yml", "drift.yml", "review-stacks.yml"])
def test_given_a_job_that_deploys_then_a_kubeconfig_from_its_environment_comes_first(
    name: str,
) -> None:
    checked = 0
    for job_name, job in flow(name)["jobs"].items():
        steps = job.get("steps", [])
        deploying = [i for i, s in enumerate(steps) if _deploys(s)]
        if not deploying:
            continue
        written = _kubeconfig_index(steps)
        assert written is not None, f"{name} {job_name}: no kubeconfig step"
        assert written < min(deploying), f"{name} {job_name}: kubeconfig after a deploy step"
        data = steps[written]["env"]["KUBECONFIG_DATA"]
        if name == "drift.yml":
            for stack, secret in (("staging", "STAGING"), ("testing", "TESTING"), ("prod", "PROD")):
                secrets = {f"KUBECONFIG_{s}": s for s in ("STAGING", "TESTING", "PROD")}
                assert interpolate(data, scope(matrix={"stack": stack}, secrets=secrets)) == secret
        else:
            assert data == f"${{{{ secrets.{KUBECONFIG_SECRETS[(name, job_name)]} }}}}"
        checked += 1
    assert checked >= 1


def test_given_the_kubeconfig_script_then_it_writes_a_private_file_and_checks_contexts(
    tmp_path: Path,
) -> None:
    script = ROOT / "scripts" / "kubeconfig.sh"
    config = yaml.safe_dump({"apiVersion": "v1", "contexts": [{"name": "staging"}]})

    def run(data: str, *contexts: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG_DATA": data}
        return subprocess.run(
            ["bash", str(script), "KUBECONFIG_STAGING", *contexts],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    empty = run("")
    assert empty.returncode == 1 and "secret KUBECONFIG_STAGING is empty" in empty.stderr
    wrong = run(config, "prod")
    assert wrong.returncode == 1 and "has no context 'prod' (it has: staging)" in wrong.stderr
    done = run(config, "staging")
    assert done.returncode == 0, done.stderr
    written = tmp_path / ".kube" / "config"
    assert yaml.safe_load(written.read_text())["contexts"] == [{"name": "staging"}]
    assert written.stat().st_mode & 0o077 == 0


# --- the candidate through the gates, and the rollback ------------------------------------------


@pytest.mark.parametrize("job", ["staging", "testing", "prod"])
def test_given_a_deploy_job_then_the_candidate_is_staged_gated_and_deployed_with_the_policy_pack(
    job: str,
) -> None:
    steps = flow("deployment.yml")["jobs"][job]["steps"]
    runs = [s.get("run", "") for s in steps]

    def at(pattern: str) -> int:
        return next(i for i, r in enumerate(runs) if re.search(pattern, r))

    stage = at(r"rollout stage \"\$VERSION\" --repository \"\$IMAGE\" --config-only")
    pre = at(r"rollout check pre")
    up = next(i for i, s in enumerate(steps) if (s.get("with") or {}).get("command") == "up")
    assert steps[up]["with"]["policyPacks"] == "policy"
    auto = at(r"rollout auto")
    post = at(r"rollout check post")
    rollback = at(r"rollout rollback --candidate \"\$VERSION\"")
    assert _kubeconfig_index(steps) < stage < pre < up < auto < post < rollback  # type: ignore[operator]
    assert steps[rollback]["if"] == "failure()"
    assert sum("rollout stage" in r for r in runs) == 1  # no up of the candidate outside the pack
    env = flow("deployment.yml")["jobs"][job]["env"]
    assert env["IMAGE"] == "${{ needs.image.outputs.image }}"


# --- concurrency -----------------------------------------------------------------------------


def test_given_two_pushes_then_their_builds_never_share_a_group_and_a_pr_cancels_its_own() -> None:
    image = flow("enhanced-docker-build.yml")
    assert "branches" not in image[True]["push"]  # main is built once, by Deployment
    group, cancel = image["concurrency"]["group"], image["concurrency"]["cancel-in-progress"]
    first = scope()
    second = scope(github={"event_name": "push", "ref": "refs/heads/main", "sha": "b" * 40})
    assert interpolate(group, first) != interpolate(group, second)
    assert interpolate(cancel, first) is False
    pr = {"event_name": "pull_request", "ref": "refs/pull/7/merge"}
    one = scope(github={**pr, "sha": "c" * 40})
    two = scope(github={**pr, "sha": "d" * 40})
    assert interpolate(group, one) == interpolate(group, two)
    assert interpolate(cancel, one) is True
    deploy = flow("deployment.yml")
    for job in ("staging", "testing", "prod"):
        assert deploy["jobs"][job]["concurrency"]["cancel-in-progress"] is False


# --- minor ----------------------------------------------------------------------------------------


def test_given_a_fork_pull_request_then_no_preview_runs() -> None:
    job = flow("deployment.yml")["jobs"]["preview"]
    event = {"pull_request": {"head": {"repo": {"full_name": "fork/moontv"}}}}
    fork = scope(github={"event_name": "pull_request", "repository": "acme/moontv", "event": event})
    assert condition(job["if"], fork) is False
    event["pull_request"]["head"]["repo"]["full_name"] = "acme/moontv"
    assert condition(job["if"], fork) is True


def test_given_the_dev_preview_then_it_uses_the_empty_passphrase_its_salt_was_made_with() -> None:
    job = flow("deployment.yml")["jobs"]["preview"]
    step = next(s for s in job["steps"] if "pulumi/actions" in s.get("uses", ""))
    value = step["env"]["PULUMI_CONFIG_PASSPHRASE"]
    secrets = {"PULUMI_CONFIG_PASSPHRASE": "team-passphrase"}
    assert interpolate(value, scope(matrix={"stack": "dev"}, secrets=secrets)) == ""
    assert interpolate(value, scope(matrix={"stack": "prod"}, secrets=secrets)) == "team-passphrase"
    assert "encryptionsalt" in (ROOT / "Pulumi.dev.yaml").read_text()


def test_given_the_image_build_then_trivy_scans_before_anything_is_pushed_and_signing_follows() -> (
    None
):
    steps = flow("enhanced-docker-build.yml")["jobs"]["build"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    scan = uses.index("aquasecurity/trivy-action")
    builds = [i for i, u in enumerate(uses) if u == "docker/build-push-action"]
    before, after = [i for i in builds if i < scan], [i for i in builds if i > scan]
    assert before and all(steps[i]["with"]["push"] is False for i in before)
    assert [steps[i]["with"]["push"] for i in after] == [True]
    assert steps[after[0]]["id"] == "build"
    sign = next(i for i, s in enumerate(steps) if "cosign sign" in s.get("run", ""))
    assert sign > after[0]


# --- backends -----------------------------------------------------------------------------------


def _script(path: str, tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a script with a `pulumi` stand-in first on PATH that fails, so a script that went on
    past its check can neither reach a backend nor build the toolchain."""
    stub = tmp / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "pulumi").write_text(
        "#!/bin/sh\necho 'pulumi stand-in: not to be reached' >&2\nexit 99\n"
    )
    (stub / "pulumi").chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    base["PATH"] = f"{stub}:{base['PATH']}"
    return subprocess.run(
        ["bash", str(ROOT / path), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_given_an_empty_backend_variable_then_stack_sh_refuses_it_in_words(tmp_path: Path) -> None:
    result = _script("tools/stack.sh", tmp_path, "preview", "staging", PULUMI_BACKEND_URL="")
    assert result.returncode == 2
    assert "PULUMI_BACKEND_URL is set but empty (an unset repository variable?)" in result.stderr


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("", "PULUMI_BACKEND_URL is set but empty"),
        ("file:///tmp/state", "deleted with the runner"),
    ],
)
def test_given_a_backend_that_keeps_no_state_then_review_stacks_refuse_it_on_hosted_runners(
    backend: str, message: str, tmp_path: Path
) -> None:
    result = _script(
        "scripts/review-stack.sh",
        tmp_path,
        "up",
        "7",
        PULUMI_BACKEND_URL=backend,
        RUNNER_ENVIRONMENT="github-hosted",
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_given_an_empty_backend_variable_then_the_rollout_cli_refuses_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rollout.stack import UsageError, engine_env

    monkeypatch.setenv("PULUMI_BACKEND_URL", "")
    with pytest.raises(UsageError, match="set but empty"):
        engine_env("staging", tmp_path)
