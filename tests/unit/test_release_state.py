"""scripts/release-state.sh against a local bare repository standing in for GitHub: a release
decision made in one pipeline run is committed back and is what the next run starts from."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

SCRIPT = "scripts/release-state.sh"
WORKFLOW = ROOT / ".github/workflows/deployment.yml"


def _other_tag(stack: str) -> str:
    """A release tag different from the one the shipped stack file runs."""
    shipped = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    current = shipped["config"]["moontv:image"]["tag"]
    return next(t for t in ("v100.1.2", "v100.1.1", "v100.1.0") if t != current)


PROMOTED = _other_tag("staging")
PROMOTED_PROD = _other_tag("prod")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


class Remote:
    """A bare repository holding this project's stack files and scripts on ``main``."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.bare = tmp / "remote.git"
        git(tmp, "init", "-q", "--bare", "-b", "main", str(self.bare))
        seed = tmp / "seed"
        seed.mkdir()
        for name in ("Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml", SCRIPT):
            (seed / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, seed / name)
        git(seed, "init", "-q", "-b", "main")
        self.commit_all(seed, "seed")
        git(seed, "push", "-q", str(self.bare), "main")
        self.runs = 0

    @staticmethod
    def commit_all(cwd: Path, message: str) -> None:
        git(cwd, "add", "-A")
        git(
            cwd,
            "-c",
            "user.name=Dev",
            "-c",
            "user.email=dev@example.com",
            "commit",
            "-q",
            "-m",
            message,
        )

    def clone(self, name: str | None = None) -> Path:
        """A fresh checkout, as actions/checkout gives each pipeline run."""
        self.runs += 1
        work = self.tmp / (name or f"run{self.runs}")
        git(self.tmp, "clone", "-q", str(self.bare), str(work))
        (work / "venv").symlink_to(ROOT / "venv")
        return work

    def show(self, ref: str, path: str) -> str:
        return git(self.bare, "show", f"{ref}:{path}")

    def log(self, ref: str = "main") -> list[str]:
        return git(self.bare, "log", "--format=%an|%s", ref).splitlines()


def state(work: Path, command: str, stack: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work.parent)}
    return subprocess.run(
        ["bash", SCRIPT, command, stack, *extra],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def config(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)["config"]


def decide(
    work: Path, stack: str, tag: str, action: str = "promote", reason: str = "all steps healthy"
) -> None:
    """What `python -m rollout promote` leaves in the stack file: a new tag and lastDecision."""
    path = work / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    old = config(text)["moontv:image"]["tag"]
    assert old != tag
    text = text.replace(f"tag: {old}", f"tag: {tag}", 1)
    text = text.replace(
        "  moontv:release:\n",
        "  moontv:release:\n    lastDecision:\n"
        f"      action: {action}\n      reason: {reason}\n"
        "      at: '2026-11-29T04:00:00Z'\n",
        1,
    )
    path.write_text(text)


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path)


def test_given_a_promotion_when_recorded_then_the_next_run_starts_from_it(remote: Remote) -> None:
    run1 = remote.clone()
    assert state(run1, "sync", "staging").returncode == 0
    decide(run1, "staging", PROMOTED)
    recorded = state(run1, "record", "staging")
    assert recorded.returncode == 0, recorded.stderr

    author, subject = remote.log()[0].split("|", 1)
    assert author == "github-actions[bot]"
    assert subject == "release(staging): all steps healthy"
    body = git(remote.bare, "log", "-1", "--format=%b", "main")
    assert "Decision: promote" in body and "Reason: all steps healthy" in body

    run2 = remote.clone()
    assert state(run2, "sync", "staging").returncode == 0
    assert config((run2 / "Pulumi.staging.yaml").read_text())["moontv:image"]["tag"] == PROMOTED


def test_given_no_change_when_recorded_then_nothing_is_committed(remote: Remote) -> None:
    run = remote.clone()
    state(run, "sync", "staging")
    before = remote.log()
    result = state(run, "record", "staging")
    assert result.returncode == 0 and "no release decision to record" in result.stdout
    assert remote.log() == before


def test_given_a_checkout_older_than_main_when_synced_then_it_takes_mains_decision(
    remote: Remote,
) -> None:
    stale = remote.clone("stale")  # checked out before the promotion landed
    run1 = remote.clone()
    state(run1, "sync", "staging")
    decide(run1, "staging", PROMOTED)
    state(run1, "record", "staging")

    result = state(stale, "sync", "staging")
    assert result.returncode == 0 and "taken from origin/main" in result.stdout
    assert config((stale / "Pulumi.staging.yaml").read_text())["moontv:image"]["tag"] == PROMOTED


def test_given_a_concurrent_edit_of_other_lines_then_both_survive(remote: Remote) -> None:
    run = remote.clone()
    state(run, "sync", "staging")
    decide(run, "staging", PROMOTED)
    developer = remote.clone("developer")  # pushes while the release is running
    path = developer / "Pulumi.staging.yaml"
    path.write_text(
        path.read_text().replace("host: moontv.staging.example.com", "host: tv.staging.example.com")
    )
    remote.commit_all(developer, "staging: new host")
    git(developer, "push", "-q")

    result = state(run, "record", "staging")
    assert result.returncode == 0, result.stderr
    merged = config(remote.show("main", "Pulumi.staging.yaml"))
    assert merged["moontv:image"]["tag"] == PROMOTED
    assert merged["moontv:traffic"]["host"] == "tv.staging.example.com"


def test_given_a_concurrent_edit_of_the_same_lines_then_nothing_is_pushed(remote: Remote) -> None:
    run = remote.clone()
    state(run, "sync", "staging")
    decide(run, "staging", PROMOTED)
    developer = remote.clone("developer")
    hand_picked = next(t for t in ("v100.1.0", "v100.0.3") if t != PROMOTED)
    decide(developer, "staging", hand_picked, action="switch", reason="by hand")
    remote.commit_all(developer, "staging: by hand")
    git(developer, "push", "-q")
    before = remote.log()

    result = state(run, "record", "staging")
    assert result.returncode == 1
    assert "changed on origin/main in the same lines" in result.stderr
    assert remote.log() == before


def test_given_prod_when_recorded_with_pr_then_a_release_branch_holds_it_and_sync_uses_it(
    remote: Remote,
) -> None:
    run1 = remote.clone()
    state(run1, "sync", "prod")
    decide(run1, "prod", PROMOTED_PROD, action="switch", reason="preview green healthy")
    result = state(run1, "record", "prod", "--pr")
    assert result.returncode == 0, result.stderr
    assert "open a pull request from release/prod to main" in result.stdout  # no gh here
    assert remote.log("main")[0] == "Dev|seed"  # main untouched until the review
    released = config(remote.show("release/prod", "Pulumi.prod.yaml"))
    assert released["moontv:image"]["tag"] == PROMOTED_PROD

    run2 = remote.clone()
    state(run2, "sync", "prod")
    assert config((run2 / "Pulumi.prod.yaml").read_text())["moontv:image"]["tag"] == PROMOTED_PROD


def test_given_record_without_sync_or_a_bad_stack_then_exit_2() -> None:
    assert (
        subprocess.run(
            ["bash", str(ROOT / SCRIPT), "record", "../x"], capture_output=True, text=True
        ).returncode
        == 2
    )
    missing = subprocess.run(
        ["bash", str(ROOT / SCRIPT), "frobnicate", "staging"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "accepted: sync, record" in missing.stderr


def test_given_the_deployment_workflow_then_release_jobs_sync_first_and_record_last() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    for name, record in (
        ("staging", 'record "$MOONTV_STACK"'),
        ("testing", 'record "$MOONTV_STACK"'),
        ("prod", 'record "$MOONTV_STACK" --pr'),
    ):
        steps = jobs[name]["steps"]
        runs = [str(step.get("run", step.get("uses", ""))) for step in steps]
        sync = next(i for i, r in enumerate(runs) if "release-state.sh sync" in r)
        up = next(i for i, s in enumerate(steps) if (s.get("with") or {}).get("command") == "up")
        rollout = [
            i for i, r in enumerate(runs) if re.search(r"-m rollout (stage|auto|rollback)", r)
        ]
        # The candidate is staged in the config (no up) before the gated `pulumi up`.
        assert sync < min(rollout) < up, name
        last = runs.index(f"scripts/release-state.sh {record}")
        assert last > max(rollout), name  # after the release and its rollback-on-failure
        assert steps[last]["if"] == "always() && steps.sync.outcome == 'success'", name
        assert steps[sync]["id"] == "sync"
        assert jobs[name]["permissions"]["contents"] == "write"
        assert jobs[name]["concurrency"]["cancel-in-progress"] is False
