"""Traefik dynamic configuration for Swarm, rendered from the route table (pure)."""

from __future__ import annotations

import pytest
import yaml

from components import app_facts, release
from components.swarm import traefik
from tests.helpers import both_colours, canary

HOST = "moontv.example.org"


def config_for(raw: dict) -> dict:
    """When the edge configuration is rendered for release config ``raw``."""
    return traefik.dynamic_config(release.plan(release.parse(raw), "v1", 2).routes(HOST))


def default_weights(config: dict) -> dict[str, int]:
    entries = config["http"]["services"]["moontv"]["weighted"]["services"]
    return {e["name"]: e["weight"] for e in entries}


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        (0, {"moontv-stable": 100}),
        (20, {"moontv-stable": 80, "moontv-canary": 20}),
        (100, {"moontv-canary": 100}),
    ],
)
def test_given_canary_weight_then_default_route_weights_follow_the_plan(weight, expected):
    config = config_for(canary(weight))
    assert default_weights(config) == expected
    assert config["http"]["routers"]["moontv"]["service"] == "moontv"


@pytest.mark.parametrize("weight", [0, 20, 100])
def test_given_canary_then_header_always_and_never_pin_tracks_above_the_weights(weight):
    routers = config_for(canary(weight))["http"]["routers"]
    always, never = routers["moontv-header-always"], routers["moontv-header-never"]
    assert always["service"] == "moontv-canary"
    assert never["service"] == "moontv-stable"
    assert always["rule"] == f"Host(`{HOST}`) && Header(`x-moontv-canary`, `always`)"
    assert "Header(`x-moontv-canary`, `never`)" in never["rule"]
    assert min(always["priority"], never["priority"]) > routers["moontv"]["priority"]


def test_given_canary_cookie_then_cookie_routers_use_the_tables_pattern_below_the_header():
    routers = config_for(canary(20, cookie="moontv_canary"))["http"]["routers"]
    cookie = routers["moontv-cookie-always"]
    assert cookie["service"] == "moontv-canary"
    assert cookie["rule"].endswith(
        r"HeaderRegexp(`Cookie`, `(^|.*;\s*)moontv_canary=always(;.*|$)`)")
    assert routers["moontv"]["priority"] < cookie["priority"]
    assert cookie["priority"] < routers["moontv-header-always"]["priority"]


def test_given_no_cookie_then_no_cookie_routers():
    routers = config_for(canary(20))["http"]["routers"]
    assert not [name for name in routers if "cookie" in name]


@pytest.mark.parametrize(("active", "inactive"), [("blue", "green"), ("green", "blue")])
def test_given_blue_green_then_active_gets_all_traffic_and_preview_host_the_other(
    active, inactive
):
    config = config_for(both_colours(active))
    assert default_weights(config) == {f"moontv-{active}": 100}
    preview = config["http"]["routers"]["moontv-preview"]
    assert preview["service"] == f"moontv-{inactive}"
    assert preview["rule"] == f"Host(`preview.{HOST}`)"
    assert not [name for name in config["http"]["routers"] if "header" in name]


def test_given_blue_green_scaled_down_inactive_then_no_preview_route_nor_backend():
    config = config_for(both_colours("green", scaleDownInactive=True))
    assert set(config["http"]["routers"]) == {"moontv", "moontv-blocked"}
    assert set(config["http"]["services"]) == {"moontv", "moontv-green"}


def test_given_rolling_then_one_backend_takes_everything():
    config = config_for({"strategy": "rolling"})
    assert default_weights(config) == {"moontv-stable": 100}


@pytest.mark.parametrize("raw", [canary(20, cookie="c"), both_colours("blue")])
def test_given_any_release_then_blocked_paths_outrank_every_rule_and_get_the_apps_404(raw):
    config = config_for(raw)["http"]
    for name, router in config["routers"].items():
        if name.endswith("-blocked"):
            assert router["rule"].endswith("(Path(`/api/cron`) || PathPrefix(`/api/cron/`))")
            assert router["middlewares"] == [traefik.NOT_FOUND, traefik.RETRY]
            assert router["priority"] == max(r["priority"] for r in config["routers"].values())
        else:
            assert "/api/cron" not in router["rule"]
            assert router["middlewares"] == [traefik.RETRY]
    assert config["middlewares"][traefik.NOT_FOUND] == {
        "replacePath": {"path": app_facts.NOT_FOUND_PATH}}
    for name, service in config["services"].items():
        if name != "moontv":
            lb = service["loadBalancer"]
            assert lb["passHostHeader"] is True
            assert lb["servers"] == [{"url": f"http://{name}:3000"}]


def test_render_is_stable_yaml_and_a_weight_change_changes_the_hash():
    one = traefik.render(config_for(canary(20)))
    again = traefik.render(config_for(canary(20)))
    other = traefik.render(config_for(canary(25)))
    assert one == again
    assert yaml.safe_load(one) == config_for(canary(20))
    assert traefik.content_hash(one) == traefik.content_hash(again)
    assert traefik.content_hash(one) != traefik.content_hash(other)
