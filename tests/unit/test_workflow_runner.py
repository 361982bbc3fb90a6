"""The pipeline harness's runner on small workflows written for the purpose: GitHub's semantics
for needs, if:, env precedence, the command files, job outputs, matrices, reusable workflows,
and the refusals (a uses: missing from the table, an unknown expression)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.expressions import ExpressionError
from tests.integration.workflow_runner import (
    USES,
    Event,
    HarnessError,
    Runner,
    action_name,
    commit_to,
)


def origin_with(tmp_path: Path, workflows: dict[str, Any]) -> tuple[Path, str]:
    origin = tmp_path / "origin.git"
    subprocess.run(
        ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(origin)], check=True
    )
    seed = tmp_path / "seed"
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(seed)], check=True)
    subprocess.run(["git", "-C", str(seed), "remote", "add", "origin", str(origin)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(seed),
            "-c",
            "user.email=a@b",
            "-c",
            "user.name=a",
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            "seed",
        ],
        check=True,
    )
    subprocess.run(["git", "-C", str(seed), "push", "--quiet", "origin", "HEAD:main"], check=True)

    def write(clone: Path) -> None:
        folder = clone / ".github" / "workflows"
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in workflows.items():
            (folder / name).write_text(yaml.safe_dump(data, sort_keys=False))

    return origin, commit_to(origin, tmp_path, "workflows", write)


def runner(tmp_path: Path, workflows: dict[str, Any], **kwargs: Any) -> tuple[Runner, Event]:
    origin, sha = origin_with(tmp_path, workflows)
    work = tmp_path / "work"
    work.mkdir()
    return Runner(origin, work, **kwargs), Event("push", sha, "refs/heads/main")


def test_given_a_failing_step_then_later_steps_run_only_on_failure_or_always(tmp_path):
    flow = {
        "on": "push",
        "jobs": {
            "a": {
                "runs-on": "x",
                "steps": [
                    {"id": "one", "run": "echo value=1 >> $GITHUB_OUTPUT"},
                    {"name": "breaks", "run": "exit 3"},
                    {"name": "skipped", "run": "echo never"},
                    {"name": "on failure", "if": "failure()", "run": "echo rolled back"},
                    {
                        "name": "always",
                        "if": "always() && steps.one.outcome == 'success'",
                        "run": "echo recorded",
                    },
                ],
            },
            "b": {"needs": "a", "runs-on": "x", "steps": [{"run": "echo b"}]},
            "c": {
                "needs": "a",
                "if": "always()",
                "runs-on": "x",
                "steps": [{"run": "echo ${{ needs.a.result }}"}],
            },
        },
    }
    r, event = runner(tmp_path, {"f.yml": flow})
    jobs = r.run("f.yml", event)
    a = jobs["a"]
    assert a.result == "failure"
    assert [(s.name, s.outcome) for s in a.steps] == [
        ("Run echo value=1 >> $GITHUB_OUTPUT", "success"),
        ("breaks", "failure"),
        ("skipped", "skipped"),
        ("on failure", "success"),
        ("always", "success"),
    ]
    assert jobs["b"].result == "skipped"
    assert jobs["c"].result == "success" and "failure" in jobs["c"].steps[0].log


def test_given_env_at_every_level_then_step_beats_github_env_beats_job_beats_workflow(tmp_path):
    flow = {
        "on": "push",
        "env": {"A": "workflow", "B": "workflow", "C": "workflow", "D": "workflow"},
        "jobs": {
            "j": {
                "runs-on": "x",
                "env": {"B": "job", "C": "job", "D": "job"},
                "outputs": {"out": "${{ steps.s.outputs.word }}"},
                "steps": [
                    {"run": "echo C=github-env >> $GITHUB_ENV; echo D=github-env >> $GITHUB_ENV"},
                    {
                        "id": "s",
                        "env": {"D": "step"},
                        "run": "echo \"$A $B $C $D\"; {\n echo 'word<<EOF'; echo two\n"
                        " echo lines; echo EOF; } >> $GITHUB_OUTPUT\n"
                        "echo '### done' >> $GITHUB_STEP_SUMMARY",
                    },
                ],
            }
        },
    }
    r, event = runner(tmp_path, {"f.yml": flow})
    job = r.run("f.yml", event)["j"]
    assert job.steps[1].log.strip() == "workflow job github-env step"
    assert job.outputs == {"out": "two\nlines"}
    assert job.summary == "### done\n"


def test_given_a_matrix_and_a_reusable_workflow_then_each_runs_and_outputs_flow(tmp_path):
    called = {
        "on": {"workflow_call": {"outputs": {"v": {"value": "${{ jobs.build.outputs.v }}"}}}},
        "jobs": {
            "build": {
                "runs-on": "x",
                "outputs": {"v": "${{ steps.b.outputs.v }}"},
                "steps": [{"id": "b", "run": "echo v=1.2.3 >> $GITHUB_OUTPUT"}],
            }
        },
    }
    flow = {
        "on": "push",
        "jobs": {
            "image": {"uses": "./.github/workflows/called.yml"},
            "deploy": {
                "needs": "image",
                "runs-on": "x",
                "strategy": {"matrix": {"include": [{"stack": "a"}, {"stack": "b"}]}},
                "concurrency": {"group": "deploy-${{ matrix.stack }}"},
                "steps": [{"run": "echo ${{ matrix.stack }}@${{ needs.image.outputs.v }}"}],
            },
        },
    }
    r, event = runner(tmp_path, {"f.yml": flow, "called.yml": called})
    jobs = r.run("f.yml", event)
    assert jobs["image"].outputs == {"v": "1.2.3"}
    assert jobs["deploy (a)"].steps[0].log.strip() == "a@1.2.3"
    assert jobs["deploy (b)"].concurrency == "deploy-b"
    assert jobs["deploy"].result == "success"


def test_given_a_uses_missing_from_the_table_or_an_unknown_expression_then_the_run_fails(tmp_path):
    flow = {"on": "push", "jobs": {"j": {"runs-on": "x", "steps": [{"uses": "actions/cache@v9"}]}}}
    r, event = runner(
        tmp_path,
        {
            "f.yml": flow,
            "g.yml": {
                "on": "push",
                "jobs": {"j": {"runs-on": "x", "steps": [{"run": "echo ${{ toLower('A') }}"}]}},
            },
        },
    )
    with pytest.raises(HarnessError, match="actions/cache, which has no local equivalent"):
        r.run("f.yml", event)
    with pytest.raises(ExpressionError, match="unknown function toLower"):
        r.run("g.yml", event)


def test_given_checkout_and_gh_then_the_job_works_in_a_clone_and_api_calls_are_recorded(tmp_path):
    flow = {
        "on": "push",
        "jobs": {
            "j": {
                "runs-on": "x",
                "steps": [
                    {"uses": "actions/checkout@0123"},
                    {"run": "git log -1 --format=%s; gh pr comment 7 --body hi; echo $HOME"},
                ],
            }
        },
    }
    r, event = runner(tmp_path, {"f.yml": flow})
    job = r.run("f.yml", event)["j"]
    assert job.result == "success", job.log()
    lines = job.steps[1].log.splitlines()
    assert lines[0] == "workflows" and lines[-1].endswith("/home")
    assert r.api_calls == [["pr", "comment", "7", "--body", "hi"]]


def test_given_the_table_then_it_keys_on_action_names_without_versions():
    assert (
        action_name("pulumi/actions@8e5e406f4007fca908480587cb9893c07090f58d") == "pulumi/actions"
    )
    assert all("@" not in key for key in USES)
