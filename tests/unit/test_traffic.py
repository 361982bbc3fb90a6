"""Traffic routing per release state: Gateway API weights and matches, ingress-nginx canary
annotations, blue-green selectors — and a weight edit touching the route alone."""

from __future__ import annotations

import json

import pytest

from tests.program import Run

HEADER = "x-moontv-canary"


def canary(weight: int, **extra) -> dict:
    return {"moontv:release": {"strategy": "canary",
                               "canary": {"version": "v100.1.2", "weight": weight, **extra}}}


def blue_green(active: str, **extra) -> dict:
    return {"moontv:release": {"strategy": "blue-green", "blueGreen": {
        "blue": "v100.1.1", "green": "v100.1.2", "active": active, **extra}}}


def nginx(overrides: dict) -> dict:
    return {**overrides, "moontv:traffic": {"host": "tv.example.com", "provider": "nginx"}}


def default_backends(run: Run) -> dict[str, int]:
    rule = run.named("HTTPRoute", "moontv").inputs["spec"]["rules"][-1]
    return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}


def header_rules(run: Run) -> dict[str, str]:
    out = {}
    for rule in run.named("HTTPRoute", "moontv").inputs["spec"]["rules"]:
        for match in rule["matches"]:
            for header in match.get("headers", []):
                if header["name"] == HEADER:
                    out[header["value"]] = rule["backendRefs"][0]["name"]
    return out


@pytest.mark.parametrize("weight", [0, 25, 50, 100])
def test_given_canary_weight_then_the_route_sends_that_share_to_canary(run, weight):
    r = run("dev", canary(weight))
    assert default_backends(r) == {"moontv-stable": 100 - weight, "moontv-canary": weight}
    assert header_rules(r) == {"always": "moontv-canary", "never": "moontv-stable"}


def test_given_a_canary_cookie_then_the_route_matches_it(run):
    r = run("dev", canary(10, cookie="moontv_canary"))
    cookies = [h for rule in r.named("HTTPRoute", "moontv").inputs["spec"]["rules"]
               for m in rule["matches"] for h in m.get("headers", []) if h["name"] == "cookie"]
    assert {c["type"] for c in cookies} == {"RegularExpression"}
    assert any("moontv_canary=always" in c["value"] for c in cookies)


@pytest.mark.parametrize("weight", [0, 50, 100])
def test_given_nginx_and_canary_weight_then_the_canary_ingress_carries_it(run, weight):
    r = run("dev", nginx(canary(weight)))
    main = r.named("Ingress", "moontv")
    ann = r.named("Ingress", "moontv-canary").inputs["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/canary"] == "true"
    assert ann["nginx.ingress.kubernetes.io/canary-weight"] == str(weight)
    assert ann["nginx.ingress.kubernetes.io/canary-by-header"] == HEADER
    # ingress-nginx: a canary Ingress shares host and path with the main one
    canary_rule = r.named("Ingress", "moontv-canary").inputs["spec"]["rules"][0]
    main_rule = main.inputs["spec"]["rules"][0]
    assert canary_rule["host"] == main_rule["host"] == "tv.example.com"
    assert canary_rule["http"]["paths"][0]["path"] == "/"
    assert "nginx.ingress.kubernetes.io/canary" not in main.inputs["metadata"]["annotations"]


def test_given_nginx_then_api_cron_goes_to_a_service_without_endpoints(run):
    r = run("dev", nginx({}))
    paths = {p["path"]: p["backend"]["service"]["name"]
             for p in r.named("Ingress", "moontv").inputs["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {"/": "moontv", "/api/cron": "moontv-blackhole"}
    assert "selector" not in r.named("Service", "moontv-blackhole").inputs["spec"]


@pytest.mark.parametrize(("active", "preview"), [("blue", "green"), ("green", "blue")])
def test_given_blue_green_then_services_select_active_and_preview(run, active, preview):
    r = run("dev", blue_green(active))
    track = "moontv.io/track"
    assert r.named("Service", "moontv").inputs["spec"]["selector"][track] == active
    assert r.named("Service", "moontv-preview").inputs["spec"]["selector"][track] == preview
    assert default_backends(r) == {f"moontv-{active}": 100, f"moontv-{preview}": 0}
    preview_route = r.named("HTTPRoute", "moontv-preview").inputs["spec"]
    assert preview_route["hostnames"] == ["preview.moontv.dev.local"]
    assert r.outputs["activeTrack"] == active and r.outputs["previewTrack"] == preview


def test_given_scale_down_inactive_then_the_idle_colour_has_no_replicas_nor_traffic(run):
    r = run("dev", blue_green("blue", scaleDownInactive=True))
    assert r.named("Deployment", "moontv-green").inputs["spec"]["replicas"] == 0
    assert default_backends(r) == {"moontv-blue": 100}
    assert not [s for s in r.kind("Service") if s.metadata_name == "moontv-preview"]


def _by_name(run: Run) -> dict[str, str]:
    return {f"{r.type}::{r.name}": json.dumps(r.inputs, sort_keys=True) for r in run.resources}


@pytest.mark.parametrize(("before", "after"), [
    (canary(10), canary(25)),
    (nginx(canary(10)), nginx(canary(25))),
])
def test_when_only_the_weight_changes_then_only_the_route_changes(run, before, after):
    a, b = _by_name(run("dev", before)), _by_name(run("dev", after))
    assert a.keys() == b.keys()
    changed = sorted(k for k in a if a[k] != b[k])
    assert len(changed) == 1, changed
    assert changed[0].split("::")[0].endswith((":HTTPRoute", ":Ingress"))


def test_when_blue_green_switches_then_public_traffic_moves_in_one_route_edit(run):
    a, b = _by_name(run("dev", blue_green("blue"))), _by_name(run("dev", blue_green("green")))
    changed = sorted(k.split("::")[0].rsplit(":", 1)[-1] for k in a if a[k] != b[k])
    # the route weights (public cutover) and the two in-cluster Service selectors
    assert changed == ["HTTPRoute", "Service", "Service"], changed
