"""`python -m rollout check pre` through the real engine: the stack config from the backend
(`pulumi config --json`), the policy pack run by `pulumi preview`, on copies of the shipped
stacks rendered to a directory (no cluster)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.integration.engine import Project, require_engine, stack_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return Project(tmp_path_factory.mktemp("check"), require_engine())


def check_pre(project: Project, stack: str) -> tuple[int, dict[str, dict[str, str]]]:
    render = project.dir.parent / f"rendered-{stack}"
    project.stack(stack, stack_config(stack, **{"moontv:kubernetes": {"renderDir": str(render)}}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rollout",
            "check",
            "pre",
            "--stack",
            stack,
            "--cwd",
            str(project.dir),
            "--json",
        ],
        cwd=ROOT,
        env=project.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode in (0, 1), result.stderr
    assert result.stdout.startswith("{"), result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["stack"] == stack and doc["phase"] == "pre"
    return result.returncode, {c["name"]: c for c in doc["checks"]}


def test_given_the_staging_stack_then_config_and_policy_pass_through_the_engine(project):
    code, checks = check_pre(project, "staging")
    assert checks["config"]["status"] == "PASS", checks["config"]
    assert checks["policy"]["status"] == "PASS", checks["policy"]
    assert checks["policy"]["reason"] == "pulumi preview with the policy pack passed"
    assert checks["backup-age"]["status"] == "SKIP"  # rendered: no cluster to read
    assert checks["rollback-target"]["status"] == "PASS"
    assert code == (1 if "FAIL" in {c["status"] for c in checks.values()} else 0)


def test_given_the_prod_stack_with_placeholder_digests_then_check_pre_fails_on_images(project):
    code, checks = check_pre(project, "prod")
    assert code == 1
    assert checks["images-exist"]["status"] == "FAIL"
    assert "the digest is a placeholder" in checks["images-exist"]["reason"]
    assert checks["images-pinned"]["status"] == "PASS"  # pinned, just not to a real digest
