"""Pins spelled in more than one file agree with their one source.

- The Pulumi CLI of the workflows' ``pulumi/actions`` steps is tools/toolchain.sh's
  ``PULUMI_CLI_VERSION`` (each workflow names it once, in its ``env``).
- Every default image named in README, docs/, Pulumi.*.yaml or docker/Dockerfile is the one in
  components/image_defaults.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from components import image_defaults

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def toolchain_pulumi_version() -> str:
    text = (ROOT / "tools" / "toolchain.sh").read_text()
    found = re.findall(r"^PULUMI_CLI_VERSION=(\S+)$", text, re.M)
    assert len(found) == 1, found
    return found[0]


def pulumi_steps(workflow: dict) -> list[dict]:
    return [step for job in workflow.get("jobs", {}).values() for step in job.get("steps", [])
            if str(step.get("uses", "")).startswith("pulumi/actions@")]


def test_given_the_workflows_then_every_pulumi_step_installs_the_toolchains_cli() -> None:
    version = toolchain_pulumi_version()
    seen = 0
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        steps = pulumi_steps(workflow)
        if not steps:
            continue
        assert workflow["env"]["PULUMI_CLI_VERSION"] == version, path.name
        for step in steps:
            assert step.get("with", {}).get("pulumi-version") == "${{ env.PULUMI_CLI_VERSION }}", (
                path.name, step.get("name"))
            seen += 1
    assert seen >= 10  # deployment, drift, review stacks


def test_given_a_workflow_pin_that_drifts_then_the_check_names_it(tmp_path: Path) -> None:
    drifted = {"env": {"PULUMI_CLI_VERSION": "3.1.0"},
               "jobs": {"j": {"steps": [{"uses": "pulumi/actions@abc", "with": {}}]}}}
    steps = pulumi_steps(drifted)
    assert len(steps) == 1
    assert drifted["env"]["PULUMI_CLI_VERSION"] != toolchain_pulumi_version()
    assert steps[0]["with"].get("pulumi-version") is None


_REF = re.compile(r"(?<![\w./-])((?:[a-z0-9.-]+/)*[a-z0-9._-]+):(v?\d[\w.-]*)")


def spelled_refs(text: str) -> dict[str, set[str]]:
    """repository -> tags named in ``text`` for the repositories of image_defaults."""
    repos = {ref.rsplit(":", 1)[0] for ref in image_defaults.ALL.values()}
    found: dict[str, set[str]] = {}
    for repo, tag in _REF.findall(text):
        if repo in repos:
            found.setdefault(repo, set()).add(tag)
    return found


def test_given_the_docs_and_stacks_then_every_default_image_they_name_is_the_pinned_one() -> None:
    defaults = dict(ref.rsplit(":", 1) for ref in image_defaults.ALL.values())
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted(ROOT.glob("Pulumi.*.yaml")), ROOT / "docker" / "Dockerfile"]
    stale = {}
    for path in files:
        for repo, tags in spelled_refs(path.read_text()).items():
            wrong = {t for t in tags if t.split("@")[0] != defaults[repo]}
            if wrong:
                stale[f"{path.relative_to(ROOT)} {repo}"] = sorted(wrong)
    assert stale == {}
    assert spelled_refs("x apache/kvrocks:2.11.1 y") == {"apache/kvrocks": {"2.11.1"}}


def test_given_the_dockerfile_then_its_base_default_is_the_pinned_node_line() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert default.split("@")[0] == image_defaults.NODE_BASE
