"""Two consecutive runs of the deployment workflow's staging job, replayed locally with the
workflow's own commands (scripts/release-state.sh, tools/stack.sh up for the `pulumi up` step,
`python -m rollout stage` and `auto`), each in a fresh clone of a local bare repository that
stands in for GitHub, with one shared state backend standing in for the cluster's state.

Without the release-state steps (the workflow before the fix) the second run's `pulumi up`
deploys the stack file from git again and reverts the promotion; with them it starts from the
promoted version."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.helpers import FakePrometheus
from tests.integration.engine import PASSPHRASE, require_engine

pytestmark = pytest.mark.integration
STACK = "staging"


def sh(cwd: Path, env: dict[str, str], *argv: str) -> str:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=900
    )
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def shipped_tag() -> str:
    config = yaml.safe_load((ROOT / f"Pulumi.{STACK}.yaml").read_text())["config"]
    return str(config["moontv:image"]["tag"])


# The release the first run builds: any real tag the shipped stack does not run yet.
NEW = next(tag for tag in ("v100.1.2", "v100.1.1", "v100.1.0") if tag != shipped_tag())


class Repo:
    """A bare repository on `main` with this project, its staging stack rendering to a shared
    directory (the "cluster"), and one file state backend shared by every run."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.bare = tmp / "remote.git"
        self.rendered = tmp / "cluster"
        self.env = {
            **require_engine(),
            "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "MOONTV_STACK": STACK,
        }
        (tmp / "state").mkdir()
        seed = tmp / "seed"
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        for name in files:
            if (ROOT / name).is_file() and not name.startswith(("venv", "rendered/")):
                (seed / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, seed / name)
        path = seed / f"Pulumi.{STACK}.yaml"
        document = yaml.safe_load(path.read_text())
        document["config"]["moontv:kubernetes"] = {"renderDir": str(self.rendered)}
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        git = ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
        sh(tmp, self.env, "git", "init", "-q", "--bare", "-b", "main", str(self.bare))
        sh(seed, self.env, "git", "init", "-q", "-b", "main")
        sh(seed, self.env, "git", "add", "-A")
        sh(seed, self.env, *git, "commit", "-q", "-m", "seed")
        sh(seed, self.env, "git", "push", "-q", str(self.bare), "main")

    def checkout(self, name: str) -> Path:
        """actions/checkout: a fresh clone of main."""
        work = self.tmp / name
        sh(self.tmp, self.env, "git", "clone", "-q", str(self.bare), str(work))
        (work / "venv").symlink_to(ROOT / "venv")
        return work

    def stable_image(self) -> str:
        """The image the stable track runs in the "cluster"."""
        for path in self.rendered.rglob("*.yaml"):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "Deployment":
                    if doc["metadata"]["name"] == "moontv-stable":
                        return str(doc["spec"]["template"]["spec"]["containers"][0]["image"])
        raise AssertionError("no moontv-stable Deployment rendered")


def stack_file(work: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((work / f"Pulumi.{STACK}.yaml").read_text())["config"])


def release_job(repo: Repo, name: str, version: str, prometheus: str, fixed: bool) -> Path:
    """The steps of deployment.yml's staging job, in order (the fixed workflow syncs first and
    records last)."""
    work = repo.checkout(name)
    env = {**repo.env, "VERSION": version, "GITHUB_SHA": name}
    python = str(work / "venv/bin/python")
    if fixed:
        sh(work, env, "bash", "scripts/release-state.sh", "sync", STACK)
    sh(work, env, "bash", "tools/stack.sh", "up", STACK)  # the pulumi/actions `up` step
    sh(work, env, python, "-m", "rollout", "stage", version, "--reason", f"build {name}")
    sh(work, env, python, "-m", "rollout", "auto", "--prometheus", prometheus,
       "--steps", "100", "--interval", "0s", "--reason", f"build {name}")  # fmt: skip
    if fixed:
        sh(work, env, "bash", "scripts/release-state.sh", "record", STACK)
    return work


def next_run_up(repo: Repo, name: str, fixed: bool) -> Path:
    """The next run of the job, up to its `pulumi up` (before it stages its own build)."""
    work = repo.checkout(name)
    if fixed:
        sh(work, repo.env, "bash", "scripts/release-state.sh", "sync", STACK)
    sh(work, repo.env, "bash", "tools/stack.sh", "up", STACK)
    return work


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()  # the canary is healthy: auto promotes it
    yield fake
    fake.stop()


@pytest.mark.parametrize("fixed", [False, True], ids=["before-the-fix", "after-the-fix"])
def test_given_a_promotion_then_the_next_pipeline_run_keeps_it_only_when_recorded_in_git(
    tmp_path: Path, prometheus: FakePrometheus, fixed: bool
) -> None:
    repo = Repo(tmp_path)
    old = shipped_tag()

    first = release_job(repo, "run1", NEW, prometheus.url, fixed)
    assert stack_file(first)["moontv:image"]["tag"] == NEW
    assert stack_file(first)["moontv:release"]["lastDecision"]["action"] == "promote"
    assert repo.stable_image().endswith(f":{NEW}")

    second = next_run_up(repo, "run2", fixed)
    if fixed:
        assert stack_file(second)["moontv:image"]["tag"] == NEW
        assert repo.stable_image().endswith(f":{NEW}"), "the promotion survived the next run"
        log = sh(repo.bare, repo.env, "git", "log", "--format=%an|%s", "main").splitlines()
        assert log[0].startswith("github-actions[bot]|release(staging): all steps healthy")
        history = sh(second, repo.env, str(second / "venv/bin/python"), "-m", "rollout",
                     "history", "--stack", STACK)  # fmt: skip
        assert "promote" in history and "github-actions[bot]" in history
    else:
        assert stack_file(second)["moontv:image"]["tag"] == old
        assert repo.stable_image().endswith(f":{old}"), "the promotion was reverted"
