"""``python -m rollout history``: decisions read back from the git history of a stack file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from rollout.cli import main

STACK_FILE = """\
config:
  moontv:environment: staging
  moontv:image:
    tag: {tag}
  moontv:replicas: {replicas}
  moontv:release:
    strategy: canary
    canary:
      version: v100.1.2
      weight: {weight}
{decision}"""


def decision(action: str, reason: str, at: str) -> str:
    return (
        f"    lastDecision:\n      action: {action}\n      reason: '{reason}'\n      at: '{at}'\n"
    )


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def write(repo: Path, *, tag="v100.1.1", replicas=2, weight=0, last="") -> None:
    (repo / "Pulumi.staging.yaml").write_text(
        STACK_FILE.format(tag=tag, replicas=replicas, weight=weight, decision=last)
    )


def commit(repo: Path, author: str, message: str) -> None:
    git(repo, "add", "-A")
    git(
        repo,
        "-c",
        f"user.name={author}",
        "-c",
        "user.email=a@example.com",
        "commit",
        "-qm",
        message,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Given a stack whose file was committed through one promotion, an unrelated edit and a
    rollback, with an abort made in the working tree but not committed yet."""
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "Pulumi.yaml").write_text("name: moontv\nruntime: python\n")
    write(tmp_path)
    commit(tmp_path, "Dev", "seed")
    promoted = decision("promote", "all steps healthy", "2026-11-29T04:00:00Z")
    write(tmp_path, tag="v100.1.2", last=promoted)
    commit(tmp_path, "github-actions[bot]", "release(staging): all steps healthy")
    write(tmp_path, tag="v100.1.2", replicas=3, last=promoted)
    commit(tmp_path, "Dev", "staging: 3 replicas")
    rolled_back = decision("rollback", "step 2/4 at 10%: success 0.42", "2026-11-29T05:00:00Z")
    write(tmp_path, tag="v100.1.2", replicas=3, weight=0, last=rolled_back)
    commit(tmp_path, "github-actions[bot]", "release(staging): step 2/4")
    aborted = decision("abort", "aborted by operator", "2026-11-29T06:00:00Z")
    write(tmp_path, tag="v100.1.2", replicas=3, last=aborted)
    return tmp_path


def test_given_committed_decisions_then_history_lists_each_once_newest_first(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--cwd", str(repo), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(d["action"], d["author"]) for d in found] == [
        ("abort", ""),
        ("rollback", "github-actions[bot]"),
        ("promote", "github-actions[bot]"),
    ]
    assert found[0]["commit"] == "uncommitted"
    assert found[1]["reason"] == "step 2/4 at 10%: success 0.42"
    assert found[2]["at"] == "2026-11-29T04:00:00Z"
    assert found[2]["state"] == "stable v100.1.2, canary v100.1.2 at 0%"
    assert all(d["stack"] == "staging" for d in found)


def test_given_text_output_and_a_limit_then_the_newest_decisions_are_shown(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--cwd", str(repo), "--stack", "staging", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "abort" in out and "uncommitted" in out and "promote" not in out


def test_given_no_decisions_then_it_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "Pulumi.yaml").write_text("name: moontv\n")
    write(tmp_path)
    commit(tmp_path, "Dev", "seed")
    assert main(["history", "--cwd", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "no release decisions recorded for staging"


def test_given_an_unknown_stack_or_no_git_then_exit_2_naming_the_problem(
    repo: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--cwd", str(repo), "--stack", "nope"]) == 2
    assert "no stack file Pulumi.nope.yaml" in capsys.readouterr().err
    plain = tmp_path_factory.mktemp("plain")
    (plain / "Pulumi.yaml").write_text("name: moontv\n")
    (plain / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": {}}))
    assert main(["history", "--cwd", str(plain)]) == 2
    assert "is not a git checkout" in capsys.readouterr().err
