"""Stack config checks through the real engine: what `preview` and `up` print, and that a refused
`up` registers nothing.

Given the shipped prod stack (its digests are placeholders) rendered to a directory, when it is
previewed then every placeholder is a warning naming its key; when it is brought up then the update
fails naming each key, without a traceback, and the stack has no resource. Given contradictions
and a misspelt key, the engine prints every one, without a traceback.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.engine import Project, require_engine, stack_config
from tests.program import OWNER_PASSWORD

pytestmark = pytest.mark.integration

PLACEHOLDER_KEYS = ["moontv:image.digest", "moontv:storage.kvrocksImage",
                    "moontv:storage.exporterImage", "moontv:release.blueGreen.blue",
                    "moontv:monitoring.images.blackboxExporter"]


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path, require_engine())


def prod_rendered(tmp_path):
    # Monitoring in mode `existing` needs the Prometheus Operator's CRDs only on a cluster.
    return stack_config("prod", **{"moontv:kubernetes": {"renderDir": str(tmp_path / "out")}})


def test_given_placeholder_digests_when_previewed_then_each_key_is_a_warning(project, tmp_path):
    project.stack("prod", prod_rendered(tmp_path), {"moontv:ownerPassword": OWNER_PASSWORD})
    result = project.cli("preview", "--stack", "prod", "--non-interactive", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for key in PLACEHOLDER_KEYS:
        assert f"{key}: " in output and "(`up` refuses it)" in output, key


def test_given_placeholder_digests_when_up_then_it_fails_first_naming_each_key(project, tmp_path):
    project.stack("prod", prod_rendered(tmp_path), {"moontv:ownerPassword": OWNER_PASSWORD})
    result = project.cli("up", "--yes", "--stack", "prod", "--non-interactive", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for key in PLACEHOLDER_KEYS:
        assert f"{key}: " in output and "pins a placeholder digest" in output, key
    assert "Traceback" not in output
    state = json.loads(project.cli("stack", "export", "--stack", "prod").stdout)
    registered = [r["type"] for r in state["deployment"].get("resources") or []]
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == [], registered
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.yaml"))


def test_given_contradictions_and_a_misspelt_key_then_the_engine_prints_all(project, tmp_path):
    config = stack_config("dev", **{
        "moontv:kubernetes": {"renderDir": str(tmp_path / "out")},
        "moontv:replica": 2,
        "moontv:swarm": {"httpPort": 8080},
        "moontv:resources": {"limits": {"cpu": "10m"}},
    })
    project.stack("dev", config)
    result = project.cli("preview", "--stack", "dev", "--non-interactive", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "moontv:replica: unknown key; accepted keys:" in output
    assert "moontv:swarm: is not read on the kubernetes platform: remove it" in output
    assert "moontv:resources.limits.cpu: must not be below resources.requests.cpu (100m)" in output
    assert "Traceback" not in output
