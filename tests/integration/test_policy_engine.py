"""``pulumi preview --policy-pack policy`` through the real engine, on every Kubernetes stack.

The shipped dev, staging and prod stacks are previewed rendered (no cluster needed) with the
CrossGuard pack loaded by the engine through the Python language host. A pack config that asks
staging for digests shows that a violation fails the preview and names the resource.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.engine import Project, require_engine, stack_config

pytestmark = pytest.mark.integration

PACK_LINE = "moontv-policies@v0.0.1 (local: policy)"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return Project(tmp_path_factory.mktemp("policy"), require_engine())


def preview_with_pack(project: Project, stack: str, *extra: str):
    render = project.dir.parent / f"rendered-{stack}"
    project.stack(stack, stack_config(stack, **{"moontv:kubernetes": {"renderDir": str(render)}}))
    return project.cli("preview", "--stack", stack, "--non-interactive", "--policy-pack", "policy",
                       *extra, check=False)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_given_a_shipped_stack_then_the_engine_preview_passes_the_policy_pack(
    project: Project, stack: str
) -> None:
    result = preview_with_pack(project, stack)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"✅ {PACK_LINE}" in out, out
    assert "[mandatory]" not in out


def test_given_a_violation_then_the_engine_preview_fails_and_names_it(project: Project) -> None:
    config = project.dir.parent / "require-digests.json"
    config.write_text(json.dumps({"image-digest-pinned-in-prod": {"requireDigests": True}}))
    result = preview_with_pack(project, "staging", "--policy-pack-config", str(config))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"❌ {PACK_LINE}" in out, out
    assert ("[mandatory]  image-digest-pinned-in-prod  "
            "(kubernetes:apps/v1:Deployment: moontv-stable)") in out
    assert "container 'moontv' must be pinned by digest" in out
