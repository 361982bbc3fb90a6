"""A review stack's whole lifecycle through the script the workflow runs
(scripts/review-stack.sh), on a copy of the project with a file backend, rendering instead of a
cluster: create, update, destroy leaves nothing; two pull requests at once stay apart."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.engine import PASSPHRASE, require_engine

pytestmark = pytest.mark.integration
COPY = ("Pulumi.yaml", "Pulumi.pr.yaml", "__main__.py", "components", "scripts", "tools")


class Checkout:
    def __init__(self, tmp: Path):
        self.dir = tmp / "checkout"
        self.dir.mkdir()
        for name in COPY:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, self.dir / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, self.dir / name)
        (self.dir / "venv").symlink_to(ROOT / "venv")
        self.state = tmp / "state"
        self.rendered = tmp / "rendered"
        self.env = {
            **require_engine(),
            "PULUMI_BACKEND_URL": f"file://{self.state}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        }

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "scripts/review-stack.sh", *args],
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str) -> str:
        """The script's output; the engine's goes to ``self.engine``."""
        process = self.start(*args)
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, f"review-stack.sh {' '.join(args)}:\n{out}\n{err}"
        self.engine = err
        return out

    def up(self, pr: int) -> str:
        return self.run("up", str(pr), "--render-dir", str(self.rendered))

    def stacks(self) -> list[str]:
        listing = subprocess.run(
            ["pulumi", "stack", "ls", "--json"],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return sorted(s["name"] for s in yaml.safe_load(listing.stdout))

    def manifests(self, pr: int) -> list[dict]:
        docs = []
        for path in sorted((self.rendered / f"pr-{pr}").rglob("*.yaml")):
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
        return docs


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    return Checkout(tmp_path)


def namespaces(docs: list[dict]) -> set[str]:
    """The namespace of every object (a Namespace counts as its own name)."""
    return {d["metadata"].get("namespace") or d["metadata"]["name"] for d in docs}


def test_review_stack_lifecycle_create_update_destroy_leaves_nothing(checkout: Checkout) -> None:
    created = checkout.up(7)
    assert "creating pr-7 from Pulumi.pr.yaml" in created
    assert created.strip().splitlines()[-1] == "https://pr-7.preview.moontv.example.com"
    assert checkout.stacks() == ["pr-7"]
    docs = checkout.manifests(7)
    assert {d["kind"] for d in docs} >= {"Namespace", "Deployment", "StatefulSet", "HTTPRoute"}
    assert namespaces(docs) == {"moontv-pr-7"}
    [route] = [d for d in docs if d["kind"] == "HTTPRoute"]
    assert route["spec"]["hostnames"] == ["pr-7.preview.moontv.example.com"]
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert not [d for d in docs if d["kind"] in {"CronJob", "PersistentVolumeClaim"}]
    first = sorted(p.name for p in (checkout.rendered / "pr-7").rglob("*.yaml"))

    updated = checkout.up(7)  # the next push of the pull request
    assert "pr-7 exists: updating it" in updated
    assert re.search(r"Resources:\n\s+\d+ unchanged\n", checkout.engine), checkout.engine
    assert updated.strip().splitlines()[-1] == "https://pr-7.preview.moontv.example.com"
    assert checkout.stacks() == ["pr-7"]
    assert sorted(p.name for p in (checkout.rendered / "pr-7").rglob("*.yaml")) == first
    assert checkout.run("url", "7").strip() == "https://pr-7.preview.moontv.example.com"

    destroyed = checkout.run("destroy", "7")  # the pull request closes
    assert "pr-7 destroyed and removed" in destroyed
    assert checkout.stacks() == []
    assert not list((checkout.rendered / "pr-7").rglob("*.yaml"))
    assert not (checkout.dir / "Pulumi.pr-7.yaml").exists()
    assert not [p for p in checkout.state.rglob("*pr-7*") if p.is_file()]

    again = checkout.run("destroy", "7")
    assert "no stack pr-7: nothing to destroy" in again


def test_two_pull_requests_at_once_stay_apart(checkout: Checkout) -> None:
    running = {pr: checkout.start("up", str(pr), "--render-dir", str(checkout.rendered))
               for pr in (21, 22)}  # fmt: skip
    for pr, process in running.items():
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, f"pr-{pr}:\n{out}\n{err}"
        assert out.strip().splitlines()[-1] == f"https://pr-{pr}.preview.moontv.example.com"
    assert checkout.stacks() == ["pr-21", "pr-22"]
    one, two = checkout.manifests(21), checkout.manifests(22)
    assert namespaces(one) == {"moontv-pr-21"} and namespaces(two) == {"moontv-pr-22"}
    hosts = {
        pr: [d["spec"]["hostnames"] for d in docs if d["kind"] == "HTTPRoute"]
        for pr, docs in ((21, one), (22, two))
    }
    assert hosts == {21: [["pr-21.preview.moontv.example.com"]],
                     22: [["pr-22.preview.moontv.example.com"]]}  # fmt: skip

    checkout.run("destroy", "21")  # one closes: the other is untouched
    assert checkout.stacks() == ["pr-22"]
    assert checkout.manifests(22) == two
    checkout.run("destroy", "22")
    assert checkout.stacks() == []


def test_given_another_stack_half_written_then_a_review_stack_is_still_found(
    checkout: Checkout,
) -> None:
    """Two pull requests' jobs share the backend: while one writes its state, the other must
    still find its own stack (a listing of every stack read the half-written file: "EOF")."""
    checkout.up(22)
    subprocess.run(["pulumi", "stack", "init", "pr-21", "--non-interactive"], cwd=checkout.dir,
                   env=checkout.env, check=True, capture_output=True)  # fmt: skip
    [state] = [p for p in checkout.state.rglob("pr-21.json") if "history" not in p.parts]
    state.write_text(state.read_text()[:20])  # the other job is writing it

    assert checkout.run("url", "22").strip() == "https://pr-22.preview.moontv.example.com"
    assert "pr-22 exists: updating it" in checkout.up(22)


def test_configure_gives_a_pulumi_deployments_review_stack_its_namespace_and_host(
    checkout: Checkout,
) -> None:
    """The pre-run command of deploy/pr.deployment-settings.json, on a stack named the way
    Pulumi Deployments names review stacks and holding the template's config; twice (each
    deployment runs it) gives the same result."""
    stack = "pr-acme-moontv-8"
    shutil.copy2(checkout.dir / "Pulumi.pr.yaml", checkout.dir / f"Pulumi.{stack}.yaml")
    checkout.state.mkdir(exist_ok=True)
    subprocess.run(["pulumi", "stack", "init", stack, "--non-interactive"], cwd=checkout.dir,
                   env=checkout.env, check=True, capture_output=True)  # fmt: skip
    for _ in range(2):
        out = checkout.run("configure", stack)
        assert f"{stack}: namespace moontv-pr-8, host pr-8.preview.moontv.example.com" in out
    config = yaml.safe_load((checkout.dir / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert config["moontv:namespace"] == "moontv-pr-8"
    assert config["moontv:traffic"]["host"] == "pr-8.preview.moontv.example.com"
