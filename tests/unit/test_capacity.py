"""Replica counts at release events (components/kubernetes/capacity.py): the pure rules, the
program's Deployments for a live cluster (under mocks), and ``scaleDownDelaySeconds``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from components import release, settings
from components.errors import ConfigError
from components.kubernetes import capacity
from components.kubernetes.capacity import Live, LiveDeployment, Scale
from components.settings import AutoscalingSettings
from tests.helpers import blue_green, canary
from tests.program import run_stack, stack_config

NOW = datetime(2026, 12, 7, 6, 0, 0, tzinfo=UTC)
HPA = AutoscalingSettings.model_validate({"enabled": True, "minReplicas": 2, "maxReplicas": 8})
OFF = AutoscalingSettings.model_validate({"enabled": False})


def switch_plan(active: str, preview_replicas: int = 2) -> release.ReleasePlan:
    bg = blue_green(active, blue="v1", green="v2", previewReplicas=preview_replicas)
    return release.plan(release.parse(bg), "v1", 2)


def test_given_the_hpa_held_blue_at_6_when_switched_to_green_then_green_gets_6_first():
    live = Live({"blue": LiveDeployment(6, 6, autoscaled=True), "green": LiveDeployment(2, 2)},
                "blue")
    scales = capacity.decide(switch_plan("green"), HPA, 300, live, NOW)
    assert scales["green"].replicas == 6 and not scales["green"].after_routes
    # blue keeps its replicas, changes only after the routes moved, and records the switch
    assert scales["blue"] == Scale(6, "2026-12-07T06:00:00Z", after_routes=True,
                                   note=scales["blue"].note)
    assert "until 2026-12-07T06:05:00Z" in (scales["blue"].note or "")


def test_given_an_outgoing_primary_above_the_maximum_then_the_incoming_one_gets_the_maximum():
    live = Live({"blue": LiveDeployment(12, 11, autoscaled=True)}, "blue")
    assert capacity.decide(switch_plan("green"), HPA, 300, live, NOW)["green"].replicas == 8


def test_given_the_incoming_colour_counts_ready_replicas_only():
    live = Live({"blue": LiveDeployment(6, 4, autoscaled=True), "green": LiveDeployment(2, 2)},
                "blue")
    assert capacity.decide(switch_plan("green"), HPA, 300, live, NOW)["green"].replicas == 4


@pytest.mark.parametrize(("ago", "replicas", "until"), [
    (timedelta(seconds=299), 6, "2026-12-07T05:55:01Z"),
    (timedelta(seconds=300), 2, None),
    (timedelta(hours=2), 2, None),
])
def test_given_a_switch_recorded_then_the_old_colour_is_scaled_down_after_the_delay_only(
    ago, replicas, until
):
    since = capacity.iso(NOW - ago)
    live = Live({"blue": LiveDeployment(6, 6, primary_until=since),
                 "green": LiveDeployment(6, 6, autoscaled=True)}, "green")
    blue = capacity.decide(switch_plan("green"), HPA, 300, live, NOW)["blue"]
    assert (blue.replicas, blue.primary_until, blue.after_routes) == (replicas, until, False)


def test_given_delay_0_then_the_old_colour_is_scaled_down_once_the_routes_moved():
    live = Live({"blue": LiveDeployment(6, 6, autoscaled=True)}, "blue")
    assert capacity.decide(switch_plan("green"), HPA, 0, live, NOW)["blue"] == Scale(
        2, after_routes=True)


def test_given_an_old_colour_not_above_its_preview_size_then_there_is_nothing_to_delay():
    live = Live({"blue": LiveDeployment(2, 2, autoscaled=True)}, "blue")
    assert capacity.decide(switch_plan("green", 3), HPA, 300, live, NOW)["blue"] == Scale(
        3, after_routes=True)


def test_given_a_switch_back_within_the_delay_then_the_capacity_is_still_there():
    live = Live({"blue": LiveDeployment(6, 6, primary_until="2026-12-07T05:59:00Z"),
                 "green": LiveDeployment(6, 6, autoscaled=True)}, "green")
    scales = capacity.decide(switch_plan("blue"), HPA, 300, live, NOW)
    # the annotation goes with the primary role
    assert (scales["blue"].replicas, scales["blue"].primary_until) == (6, None)
    assert scales["green"].replicas == 6 and scales["green"].after_routes


def test_given_no_event_then_the_hpa_held_primary_keeps_what_the_hpa_set():
    held = Live({"blue": LiveDeployment(5, 5, autoscaled=True), "green": LiveDeployment(2, 2)},
                "blue")
    scales = capacity.decide(switch_plan("blue"), HPA, 300, held, NOW)
    assert scales == {"blue": Scale(None), "green": Scale(2)}
    # the program still owns the count (the HPA never changed it): it keeps the live value
    owned = Live({"blue": LiveDeployment(4, 4)}, "blue")
    assert capacity.decide(switch_plan("blue"), HPA, 300, owned, NOW)["blue"] == Scale(4)


def test_given_a_canary_promotion_or_rolling_update_then_the_stable_track_stays_hpa_held():
    live = Live({"stable": LiveDeployment(5, 5, autoscaled=True),
                 "canary": LiveDeployment(2, 2)}, "stable")
    promoted = release.plan(release.parse({"strategy": "rolling"}), "v2", 2)
    assert capacity.decide(promoted, HPA, 300, live, NOW) == {"stable": Scale(None)}
    staged = release.plan(release.parse(canary(10, "v2", replicas=2)), "v1", 2)
    assert capacity.decide(staged, HPA, 300, live, NOW) == {"stable": Scale(None),
                                                          "canary": Scale(2)}


def test_given_a_strategy_change_then_the_new_primary_gets_the_old_ones_ready_replicas():
    live = Live({"stable": LiveDeployment(5, 5, autoscaled=True)}, "stable")
    to_blue_green = release.plan(release.parse(blue_green("blue", blue="v1")), "v1", 2)
    assert capacity.decide(to_blue_green, HPA, 300, live, NOW)["blue"].replicas == 5


def test_given_the_first_up_then_the_hpa_sizes_the_primary_from_the_start():
    """No traffic moves at the first up: no static count on the HPA's target."""
    assert capacity.decide(switch_plan("blue"), HPA, 300, Live({}, None), NOW)["blue"] == Scale(
        None)


def test_given_no_autoscaling_then_the_counts_are_the_planned_ones_and_no_delay_applies():
    live = Live({"blue": LiveDeployment(2, 2), "green": LiveDeployment(1, 1)}, "blue")
    assert capacity.decide(switch_plan("green", 1), OFF, 300, live, NOW) == {
        "green": Scale(2), "blue": Scale(1, after_routes=True)}


def test_given_nothing_live_is_known_then_the_hpa_held_primary_gets_no_count():
    assert capacity.decide(switch_plan("blue"), HPA, 300, None, NOW) == {
        "blue": Scale(None), "green": Scale(2)}


def _entry(subresource: str | None, fields: dict) -> SimpleNamespace:
    return SimpleNamespace(subresource=subresource, fields_v1=fields)


def test_an_autoscaler_owns_the_count_when_a_scale_manager_has_spec_replicas():
    hpa = _entry("scale", {"f:spec": {"f:replicas": {}}})
    pulumi = _entry(None, {"f:spec": {"f:replicas": {}, "f:template": {}}})
    assert capacity._owned_by_scale([pulumi, hpa])
    assert not capacity._owned_by_scale([pulumi])
    assert not capacity._owned_by_scale([_entry("status", {"f:status": {}})])
    assert not capacity._owned_by_scale(None)


# --- the program under mocks -----------------------------------------------------------------


def test_given_a_live_switch_then_the_program_sizes_green_and_keeps_blue_after_the_routes():
    held = Live({"blue": LiveDeployment(6, 6, autoscaled=True), "green": LiveDeployment(3, 3)},
                "blue")
    bg = {"strategy": "blue-green", "blueGreen": {
        "active": "green", "previewReplicas": 3, "scaleDownDelaySeconds": 120,
        "blue": "v100.1.1@sha256:" + "12" * 32, "green": "v100.1.2@sha256:" + "34" * 32}}
    run = run_stack("prod", {"moontv:release": bg}, live=held)
    green = run.named("Deployment", "moontv-green").inputs
    blue = run.named("Deployment", "moontv-blue").inputs
    assert green["spec"]["replicas"] == 6
    assert blue["spec"]["replicas"] == 6
    assert capacity.PRIMARY_UNTIL in blue["metadata"]["annotations"]
    assert blue["metadata"]["annotations"][capacity.PATCH_FORCE] == "true"
    # it keeps its PodDisruptionBudget while it keeps its replicas (the policy pack's rule)
    assert run.named("PodDisruptionBudget", "moontv-blue").inputs["spec"]["maxUnavailable"] == 1
    # blue is declared after the routes and Services it loses (it depends on them)
    order = [(r.kind, r.metadata_name) for r in run.resources]
    assert order.index(("Deployment", "moontv-blue")) > order.index(("HTTPRoute", "moontv"))
    assert order.index(("Deployment", "moontv-green")) < order.index(("HTTPRoute", "moontv"))
    hpa = run.kind("HorizontalPodAutoscaler")[0].inputs["spec"]
    assert hpa["scaleTargetRef"]["name"] == "moontv-green"


# --- release.blueGreen.scaleDownDelaySeconds -------------------------------------------------


def test_scale_down_delay_defaults_to_300_seconds():
    parsed = release.parse(blue_green(blue="v1"))
    assert parsed.blue_green is not None
    assert parsed.blue_green.scale_down_delay_seconds == 300


@pytest.mark.parametrize("value", [-1, 3601, "soon", True, 1.5])
def test_scale_down_delay_outside_0_to_3600_is_refused_naming_the_key(value):
    raw = {k.split(":", 1)[1]: v for k, v in stack_config("staging").items()}
    raw["release"] = blue_green(blue="v100.1.1", scaleDownDelaySeconds=value)
    with pytest.raises(ConfigError) as exc:
        settings.validate(raw)
    assert exc.value.problems == [
        f"moontv:release.blueGreen.scaleDownDelaySeconds: must be an integer 0..3600, "
        f"got {value!r}".replace("'", '"').replace("True", "true")]


@pytest.mark.parametrize("value", [0, 30, 3600])
def test_scale_down_delay_within_0_to_3600_is_accepted(value):
    parsed = release.parse(blue_green(blue="v1", scaleDownDelaySeconds=value))
    assert parsed.blue_green is not None
    assert parsed.blue_green.scale_down_delay_seconds == value
