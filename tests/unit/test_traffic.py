"""Traffic routing per release state, rendered from the one route table: Gateway API weights,
overrides and blocked paths, ingress-nginx canary annotations, blue-green selectors — and a
weight edit touching the route alone."""

from __future__ import annotations

import json

import pytest

from components import app_facts
from components.release import AFFINITY_COOKIE, ReleasePlan, cookie_pattern, parse, plan
from tests.helpers import both_colours, canary
from tests.program import Run, Then, given

HEADER = "x-moontv-canary"
ANNOTATION = "nginx.ingress.kubernetes.io"


def rules(then: Then, route: str = "moontv") -> list[dict]:
    rules: list[dict] = then.run.named("HTTPRoute", route).inputs["spec"]["rules"]
    return rules


def overrides(then: Then) -> dict[tuple[str, str], str]:
    """(header name, value or pattern) -> Service, for every override rule."""
    out = {}
    for rule in rules(then):
        for match in rule["matches"]:
            for header in match.get("headers", []):
                out[(header["name"], header["value"])] = rule["backendRefs"][0]["name"]
    return out


def nginx() -> dict:
    return {"host": "tv.example.com", "provider": "nginx"}


def without_affinity(release: dict) -> dict:
    """``release`` with track affinity off (what the nginx provider requires)."""
    return {**release, "affinity": {"enabled": False}}


@pytest.mark.parametrize("weight", [0, 25, 50, 100])
def test_given_canary_weight_when_run_then_the_route_sends_that_share_to_canary(weight):
    then = given("dev").with_release(canary(weight)).run()
    then.then_weights(stable=100 - weight, canary=weight)
    expected = {(HEADER, "always"): "moontv-canary", (HEADER, "never"): "moontv-stable"}
    if 0 < weight < 100:  # two tracks share the default traffic: a browser keeps its track
        expected |= {("cookie", cookie_pattern(AFFINITY_COOKIE, track)): f"moontv-{track}"
                     for track in ("stable", "canary")}
    assert overrides(then) == expected


def test_given_a_canary_cookie_when_run_then_the_header_rules_come_before_the_cookie_rules():
    then = given("dev").with_release(canary(10, cookie="moontv_canary")).run()
    headers = [h for rule in rules(then)[1:-1] for m in rule["matches"] for h in m["headers"]]
    assert [(h["name"], h["type"]) for h in headers] == [
        (HEADER, "Exact"), (HEADER, "Exact"),
        ("cookie", "RegularExpression"), ("cookie", "RegularExpression"),
        ("cookie", "RegularExpression"), ("cookie", "RegularExpression")]  # then affinity
    assert headers[2]["value"] == r"(^|.*;\s*)moontv_canary=always(;.*|$)"
    assert headers[4]["value"] == r"(^|.*;\s*)moontv\-track=stable(;.*|$)"


def test_given_blue_green_preview_when_run_then_the_preview_host_has_its_own_route():
    then = given("dev").with_release(both_colours("green")).run()
    spec = then.run.named("HTTPRoute", "moontv-preview").inputs["spec"]
    assert spec["hostnames"] == ["preview.moontv.dev.local"]
    assert spec["rules"][-1]["backendRefs"] == [
        {"kind": "Service", "name": "moontv-preview", "port": 80}]
    then.then_weights(green=100).then_outputs(activeTrack="green", previewTrack="blue")


@pytest.mark.parametrize("weight", [0, 50, 100])
def test_given_nginx_and_canary_weight_when_run_then_the_canary_ingress_carries_it(weight):
    run = given("dev").with_traffic(**nginx()).with_release(
        without_affinity(canary(weight))).run().run
    main = run.named("Ingress", "moontv")
    ann = run.named("Ingress", "moontv-canary").inputs["metadata"]["annotations"]
    assert ann == {f"{ANNOTATION}/canary": "true", f"{ANNOTATION}/canary-weight": str(weight),
                   f"{ANNOTATION}/canary-by-header": HEADER}
    # ingress-nginx: a canary Ingress shares host and path with the main one
    canary_rule = run.named("Ingress", "moontv-canary").inputs["spec"]["rules"][0]
    main_rule = main.inputs["spec"]["rules"][0]
    assert canary_rule["host"] == main_rule["host"] == "tv.example.com"
    assert canary_rule["http"]["paths"][0]["path"] == "/"
    assert f"{ANNOTATION}/canary" not in main.inputs["metadata"]["annotations"]


def test_given_nginx_when_run_then_blocked_paths_are_rewritten_to_a_404_of_the_app():
    run = given("dev").with_traffic(**nginx()).run().run
    blocked = run.named("Ingress", "moontv-blocked").inputs
    assert blocked["metadata"]["annotations"] == {
        f"{ANNOTATION}/rewrite-target": app_facts.NOT_FOUND_PATH}
    paths = blocked["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in paths] == [
        ("/api/cron", "moontv-stable")]
    assert [p["path"] for p in run.named("Ingress", "moontv").inputs["spec"]["rules"][0][
        "http"]["paths"]] == ["/"]


@pytest.mark.parametrize(("active", "preview"), [("blue", "green"), ("green", "blue")])
def test_given_blue_green_when_run_then_services_select_active_and_preview(active, preview):
    then = given("dev").with_release(both_colours(active)).run()
    track = "moontv.io/track"
    assert then.run.named("Service", "moontv").inputs["spec"]["selector"][track] == active
    selector = then.run.named("Service", "moontv-preview").inputs["spec"]["selector"]
    assert selector[track] == preview
    then.then_weights(**{active: 100})


def test_given_scale_down_inactive_when_run_then_the_idle_colour_has_no_replicas_nor_route():
    then = given("dev").with_release(both_colours(scaleDownInactive=True)).run()
    assert then.run.named("Deployment", "moontv-green").inputs["spec"]["replicas"] == 0
    then.then_weights(blue=100)
    assert [r.metadata_name for r in then.run.kind("HTTPRoute")] == ["moontv"]
    assert not [s for s in then.run.kind("Service") if s.metadata_name == "moontv-preview"]


def _by_name(run: Run) -> dict[str, str]:
    return {f"{r.type}::{r.name}": json.dumps(r.inputs, sort_keys=True) for r in run.resources}


@pytest.mark.parametrize("provider", [{}, nginx()])
def test_when_only_the_weight_changes_then_only_the_route_changes(provider):
    stack = given("dev").with_traffic(**provider)
    off = without_affinity if provider else dict
    a = _by_name(stack.with_release(off(canary(10))).run().run)
    b = _by_name(stack.with_release(off(canary(25))).run().run)
    assert a.keys() == b.keys()
    changed = sorted(k for k in a if a[k] != b[k])
    assert len(changed) == 1, changed
    assert changed[0].split("::")[0].endswith((":HTTPRoute", ":Ingress"))


def test_when_blue_green_switches_then_public_traffic_moves_in_one_route_edit():
    stack = given("dev")
    a = _by_name(stack.with_release(both_colours("blue")).run().run)
    b = _by_name(stack.with_release(both_colours("green")).run().run)
    changed = sorted(k.split("::")[0].rsplit(":", 1)[-1] for k in a if a[k] != b[k])
    # the public route and the two in-cluster Service selectors; the preview route stays
    assert changed == ["HTTPRoute", "Service", "Service"], changed


# --- the route table itself (pure) ---------------------------------------------------------------


def plan_of(release: dict) -> ReleasePlan:
    return plan(parse(release), "v1", 2)


def test_given_canary_at_zero_when_routed_then_it_stays_a_backend_for_the_overrides():
    table = plan_of(canary(0)).routes("tv.example.com")
    public, preview = table.routes
    assert (preview.name, preview.backends[0].track) == ("moontv-preview", "canary")
    assert [(b.track, b.weight) for b in public.backends] == [("stable", 100), ("canary", 0)]
    assert [(o.kind, o.value, o.track) for o in public.overrides] == [
        ("header", "always", "canary"), ("header", "never", "stable")]
    assert table.blocked == app_facts.BLOCKED_PATHS


def test_given_blue_green_when_routed_then_the_preview_colour_is_only_on_the_preview_host():
    public, preview = plan_of(both_colours("blue")).routes("tv.example.com").routes
    assert [(b.track, b.weight) for b in public.backends] == [("blue", 100)]
    assert (preview.host, preview.backends[0].track, preview.backends[0].weight) == (
        "preview.tv.example.com", "green", None)
