"""The dev stack through the real engine in render mode: preview, up, no-op up, destroy."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from components import passwords
from tests.integration.engine import Project, changes, require_engine, stack_config
from tests.program import OWNER_PASSWORD
from tests.unit.test_kubernetes import KUBERNETES_VERSION

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path, require_engine())


def render_config(tmp_path, **overrides):
    return stack_config("dev", **{"moontv:kubernetes": {"renderDir": str(tmp_path / "out")},
                                  **overrides})


def rendered(tmp_path) -> list[dict]:
    docs = []
    for path in sorted((tmp_path / "out").rglob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_dev_preview_up_noop_destroy(project, tmp_path):
    stack = project.stack("dev", render_config(tmp_path))
    preview = stack.preview()
    assert preview.change_summary.get("create", 0) >= 15

    up = stack.up()
    assert up.summary.result == "succeeded"
    assert changes(up.summary.resource_changes) == {"create": preview.change_summary["create"]}
    outputs = up.outputs
    assert outputs["strategy"].value == "rolling" and outputs["weights"].value == {"stable": 100}

    docs = rendered(tmp_path)
    kinds = sorted({d["kind"] for d in docs})
    assert {"Deployment", "StatefulSet", "Service", "NetworkPolicy", "HTTPRoute"} <= set(kinds)
    for doc in docs:
        if doc["apiVersion"].startswith("gateway.networking.k8s.io"):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)

    again = stack.up()
    assert changes(again.summary.resource_changes) == {}, again.summary.resource_changes

    gone = stack.destroy()
    assert gone.summary.result == "succeeded"
    assert not list((tmp_path / "out").rglob("*.yaml"))


def test_given_a_weight_edit_then_preview_shows_one_update(project, tmp_path):
    release = {"strategy": "canary", "canary": {"version": "v100.1.2", "weight": 10}}
    stack = project.stack("dev", render_config(tmp_path, **{"moontv:release": release}))
    stack.up()
    stack.set_config("moontv:release.canary.weight", auto_value("25"), path=True)
    preview = stack.preview(diff=True)
    assert changes(preview.change_summary) == {"update": 1}, preview.change_summary
    assert "HTTPRoute: (update)" in preview.stdout
    assert "weight: 10 => 25" in preview.stdout and "weight: 90 => 75" in preview.stdout


def test_given_a_switch_to_a_colour_at_0_then_traffic_waits_for_it_and_the_old_one_for_traffic(
    project, tmp_path
):
    """The order `up` follows (the state's dependencies): the route and the host Service wait for
    the Deployment they point at; the colour going idle waits for the route and the Service."""
    release = {"strategy": "blue-green", "blueGreen": {
        "active": "green", "blue": "v100.1.1", "green": "v100.1.2", "scaleDownInactive": True}}
    stack = project.stack("dev", render_config(tmp_path, **{"moontv:release": release}))
    stack.up()
    resources = stack.export_stack().deployment["resources"]

    def urn(kind: str, name: str) -> str:
        return next(r["urn"] for r in resources
                    if r["type"] == kind and r["outputs"]["metadata"]["name"] == name)

    def needs(urn_: str) -> set[str]:
        return set(next(r for r in resources if r["urn"] == urn_).get("dependencies", []))

    active = urn("kubernetes:apps/v1:Deployment", "moontv-green")
    idle = urn("kubernetes:apps/v1:Deployment", "moontv-blue")
    route = urn("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "moontv")
    host_service = urn("kubernetes:core/v1:Service", "moontv")
    assert active in needs(route) and active in needs(host_service)
    assert {route, host_service} <= needs(idle)
    assert idle not in needs(route) | needs(host_service)
    stack.destroy()


def auto_value(value: str):
    from pulumi import automation as auto

    return auto.ConfigValue(value)


def test_secrets_stay_encrypted_in_state_and_render_mode_warns(project, tmp_path):
    stack = project.stack("dev", render_config(tmp_path),
                          secrets={"moontv:ownerPassword": OWNER_PASSWORD})
    up = stack.up()
    assert "plain-text values" in up.stdout  # the render-mode caveat is flagged at run time
    state = json.dumps(stack.export_stack().deployment)
    assert OWNER_PASSWORD not in state
    generated = [r for r in stack.export_stack().deployment["resources"]
                 if r["type"] == passwords.TYPE]
    assert generated, "the storage password is generated"
    for resource in generated:
        assert resource["outputs"]["result"].get("4dabf18193072939515e22adb298388d"), \
            "generated passwords are stored as secrets"
    stack.destroy()


def test_given_bad_config_then_the_engine_prints_every_problem_without_a_traceback(
        project, tmp_path):
    bad = render_config(tmp_path, **{"moontv:replicas": 0, "moontv:release": {
        "strategy": "canary", "canary": {"version": "v2", "weight": 150}}})
    project.stack("dev", bad)
    result = project.cli("preview", "--stack", "dev", "--non-interactive", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "moontv:replicas: must be an integer 1..50, got 0" in output
    assert "moontv:release.canary.weight: must be an integer 0..100, got 150" in output
    assert "Traceback" not in output
