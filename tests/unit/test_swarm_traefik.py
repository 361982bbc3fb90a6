"""Traefik dynamic configuration for Swarm, from release plans (pure)."""

from __future__ import annotations

import pytest
import yaml

from components import release
from components.swarm import traefik

HOST = "moontv.example.org"


def plan_for(raw: dict, stable: str = "v1", replicas: int = 2) -> release.ReleasePlan:
    return release.plan(release.parse(raw), stable, replicas)


def canary(weight: int, cookie: str | None = None) -> release.ReleasePlan:
    body: dict = {"version": "v2", "weight": weight}
    if cookie:
        body["cookie"] = cookie
    return plan_for({"strategy": "canary", "canary": body})


def blue_green(active: str, scale_down: bool = False) -> release.ReleasePlan:
    return plan_for(
        {
            "strategy": "blue-green",
            "blueGreen": {"blue": "v1", "green": "v2", "active": active,
                          "scaleDownInactive": scale_down},
        }
    )


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
    config = traefik.traefik_dynamic_config(canary(weight), HOST)
    assert default_weights(config) == expected
    assert config["http"]["routers"]["moontv"]["service"] == "moontv"


@pytest.mark.parametrize("weight", [0, 20, 100])
def test_given_canary_then_header_always_and_never_pin_tracks_above_the_weights(weight):
    routers = traefik.traefik_dynamic_config(canary(weight), HOST)["http"]["routers"]
    always, never = routers["moontv-header-always"], routers["moontv-header-never"]
    assert always["service"] == "moontv-canary"
    assert never["service"] == "moontv-stable"
    assert "Header(`x-moontv-canary`, `always`)" in always["rule"]
    assert "Header(`x-moontv-canary`, `never`)" in never["rule"]
    assert min(always["priority"], never["priority"]) > routers["moontv"]["priority"]


def test_given_canary_cookie_then_cookie_routers_rank_between_header_and_default():
    routers = traefik.traefik_dynamic_config(canary(20, cookie="moontv_canary"), HOST)
    routers = routers["http"]["routers"]
    cookie = routers["moontv-cookie-always"]
    assert cookie["service"] == "moontv-canary"
    assert "moontv_canary=always" in cookie["rule"]
    assert routers["moontv"]["priority"] < cookie["priority"]
    assert cookie["priority"] < routers["moontv-header-always"]["priority"]


def test_given_no_cookie_then_no_cookie_routers():
    routers = traefik.traefik_dynamic_config(canary(20), HOST)["http"]["routers"]
    assert not [name for name in routers if "cookie" in name]


@pytest.mark.parametrize(("active", "inactive"), [("blue", "green"), ("green", "blue")])
def test_given_blue_green_then_active_gets_all_traffic_and_preview_host_the_other(
    active, inactive
):
    config = traefik.traefik_dynamic_config(blue_green(active), HOST)
    assert default_weights(config) == {f"moontv-{active}": 100}
    preview = config["http"]["routers"]["moontv-preview"]
    assert preview["service"] == f"moontv-{inactive}"
    assert preview["rule"].startswith(f"Host(`preview.{HOST}`)")
    assert not [name for name in config["http"]["routers"] if "header" in name]


def test_given_blue_green_scaled_down_inactive_then_no_preview_route_nor_backend():
    config = traefik.traefik_dynamic_config(blue_green("green", scale_down=True), HOST)
    assert "moontv-preview" not in config["http"]["routers"]
    assert set(config["http"]["services"]) == {"moontv", "moontv-green"}


def test_given_rolling_then_one_backend_takes_everything():
    config = traefik.traefik_dynamic_config(plan_for({"strategy": "rolling"}), HOST)
    assert default_weights(config) == {"moontv-stable": 100}
    assert set(config["http"]["routers"]) == {"moontv"}


@pytest.mark.parametrize("plan", [canary(20, cookie="c"), blue_green("blue")])
def test_every_router_excludes_api_cron_and_every_backend_passes_the_host(plan):
    config = traefik.traefik_dynamic_config(plan, HOST)["http"]
    for router in config["routers"].values():
        assert router["rule"].endswith("!(Path(`/api/cron`) || PathPrefix(`/api/cron/`))")
        assert router["middlewares"] == [traefik.RETRY]
    for name, service in config["services"].items():
        if name != "moontv":
            lb = service["loadBalancer"]
            assert lb["passHostHeader"] is True
            assert lb["servers"] == [{"url": f"http://{name}:3000"}]


def test_render_is_stable_yaml_and_a_weight_change_changes_the_hash():
    one = traefik.render(traefik.traefik_dynamic_config(canary(20), HOST))
    again = traefik.render(traefik.traefik_dynamic_config(canary(20), HOST))
    other = traefik.render(traefik.traefik_dynamic_config(canary(25), HOST))
    assert one == again
    assert yaml.safe_load(one) == traefik.traefik_dynamic_config(canary(20), HOST)
    assert traefik.content_hash(one) == traefik.content_hash(again)
    assert traefik.content_hash(one) != traefik.content_hash(other)


@pytest.mark.parametrize("host", ["", "Moontv.Example", "moontv example", "-x.org"])
def test_given_a_bad_host_then_the_error_names_the_setting(host):
    with pytest.raises(ValueError, match="traffic host: must be a lower-case DNS name"):
        traefik.traefik_dynamic_config(canary(20), host)
