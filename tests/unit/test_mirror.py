"""Traffic mirroring: config refused in words before any resource, the route table's mirror entry,
and each provider's rendering of it — reads copied to the candidate, writes never."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components import release as r
from components import settings
from components.errors import ConfigError
from components.swarm import traefik
from tests.helpers import both_colours, canary
from tests.program import given, stack_config

HOST = "tv.example.com"
MIRROR = {"percent": 50}


def release_problems(cfg: dict[str, Any]) -> list[str]:
    with pytest.raises(r.ReleaseError) as exc:
        r.parse(cfg)
    return exc.value.problems


def stack_problems(**changes: Any) -> list[str]:
    """The problems of the dev stack with ``changes`` (top-level ``moontv:`` keys)."""
    raw = {k.split(":", 1)[1]: v for k, v in stack_config("dev").items()}
    with pytest.raises(ConfigError) as exc:
        settings.validate({**raw, **changes})
    return exc.value.problems


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_given_a_write_method_to_mirror_then_it_is_refused_with_the_reason(method):
    (problem,) = release_problems(canary(0, mirror={"percent": 10, "methods": ["GET", method]}))
    assert problem.startswith("moontv:release.canary.mirror.methods: must be a non-empty list")
    assert f"{method} writes: a mirrored {method} would be applied twice to the shared storage" \
        in problem
    assert problem.endswith(f'got ["GET", "{method}"]')


@pytest.mark.parametrize(("methods", "words"), [
    ([], "got []"), (["get"], '"get" is not accepted'), (["GET", "GET"], "lists a method twice"),
    ("GET", 'got "GET"'), (["CONNECT"], '"CONNECT" is not accepted')])
def test_given_bad_methods_then_the_key_and_accepted_methods_are_named(methods, words):
    (problem,) = release_problems(canary(0, mirror={"percent": 10, "methods": methods}))
    assert problem.startswith("moontv:release.canary.mirror.methods: must be a non-empty list "
                              "of distinct methods out of GET, HEAD, OPTIONS")
    assert words in problem


@pytest.mark.parametrize("percent", [-1, 101, "half", True])
def test_given_a_percent_outside_0_to_100_then_it_is_refused(percent):
    problems = release_problems(both_colours(mirror={"percent": percent}))
    assert problems == [f"moontv:release.blueGreen.mirror.percent: must be an integer 0..100, "
                        f"got {r.show(percent)}"]


def test_given_several_mirror_problems_then_all_are_reported_at_once():
    problems = release_problems(canary(0, mirror={"percent": 150, "methods": ["POST"], "x": 1}))
    assert [p.split(":", 2)[1] for p in problems] == [
        "release.canary.mirror.percent", "release.canary.mirror.methods",
        "release.canary.mirror.x"]


@pytest.mark.parametrize("section", ["canary", "blueGreen"])
def test_given_mirroring_with_the_rolling_strategy_then_it_is_refused_naming_the_key(section):
    cfg = {"strategy": "rolling", section: {"mirror": MIRROR}}
    assert release_problems(cfg) == [
        f"moontv:release.{section}.mirror: mirroring needs a release candidate to send the copies "
        "to: strategy rolling runs one version only; use strategy canary or blue-green, or "
        "remove mirror"]
    # and from the whole stack: the same one message, no second one about the section
    assert stack_problems(release=cfg) == release_problems(cfg)


def test_given_blue_green_scaled_down_then_mirroring_is_refused():
    assert release_problems(both_colours(scaleDownInactive=True, mirror=MIRROR)) == [
        "moontv:release.blueGreen.mirror: cannot mirror while blueGreen.scaleDownInactive is "
        "true: the inactive colour runs no replica to send the copies to; remove mirror or "
        "scaleDownInactive"]


def test_given_the_nginx_provider_then_mirroring_is_refused_with_the_reason():
    problems = stack_problems(release={**canary(0, mirror=MIRROR), "affinity": {"enabled": False}},
                              traffic={"host": HOST, "provider": "nginx"})
    assert len(problems) == 1
    assert problems[0].startswith(
        "moontv:release.canary.mirror: the nginx traffic provider cannot mirror read requests "
        "only: ingress-nginx's mirror-target annotation copies every request")


def test_given_a_gateway_implementation_that_is_unknown_then_the_accepted_ones_are_named():
    problems = stack_problems(traffic={"host": HOST, "gateway": {"implementation": "envoy"}})
    assert problems == ["moontv:traffic.gateway.implementation: must be one of 'standard' or "
                        "'traefik', got \"envoy\""]


def test_given_defaults_then_mirror_methods_are_get_and_head():
    assert r.MirrorSettings.model_validate(MIRROR).methods == ("GET", "HEAD")


# --- the route table ---------------------------------------------------------------------------


def table(cfg: dict[str, Any]) -> r.RouteTable:
    return r.plan(r.parse(cfg), "v1", 2).routes(HOST)


def test_given_a_canary_at_weight_0_with_a_mirror_then_the_public_route_mirrors_to_it():
    public, preview = table(canary(0, mirror={"percent": 30, "methods": ["GET"]})).routes
    assert public.mirror == r.Mirror("stable", "canary", 30, ("GET",))
    assert preview.mirror is None


@pytest.mark.parametrize("cfg", [canary(10, mirror=MIRROR), canary(0, mirror={"percent": 0}),
                                 canary(0)])
def test_given_users_on_the_canary_or_percent_0_then_there_is_no_mirror(cfg):
    assert all(route.mirror is None for route in table(cfg).routes)


def test_given_blue_green_with_a_preview_then_the_active_colour_mirrors_to_it():
    public = table(both_colours("green", mirror=MIRROR)).routes[0]
    assert public.mirror == r.Mirror("green", "blue", 50, ("GET", "HEAD"))
    assert public.backends == (r.Backend("green", 100),)


def test_given_a_mirror_then_promotion_and_abort_keep_or_drop_it_as_config():
    cfg = canary(0, mirror=MIRROR)
    assert r.set_weight(cfg, 10)["canary"]["mirror"] == MIRROR  # kept, inactive while weighted
    assert table(r.rollback(r.set_weight(cfg, 10))).routes[0].mirror is not None


# --- Gateway API -------------------------------------------------------------------------------


def _matches(match: dict[str, Any], method: str, path: str, headers: dict[str, str]) -> bool:
    prefix = match["path"]["value"].rstrip("/")
    if not (path == prefix or path.startswith(prefix + "/") or prefix == ""):
        return False
    if "method" in match and match["method"] != method:
        return False
    for h in match.get("headers", []):
        value = headers.get(h["name"].lower())
        if value is None:
            return False
        if h["type"] == "Exact" and value != h["value"]:
            return False
        if h["type"] == "RegularExpression" and not re.fullmatch(h["value"], value):
            return False
    return True


def gateway_pick(rules: list[dict[str, Any]], method: str, path: str,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The rule a conformant Gateway picks: longest path prefix, then a method match, then the
    most header matches, then the earlier rule (Gateway API's HTTPRoute precedence)."""
    candidates = [((len(m["path"]["value"]), "method" in m, len(m.get("headers", []))), -i, rule)
                  for i, rule in enumerate(rules) for m in rule["matches"]
                  if _matches(m, method, path, {k.lower(): v for k, v in (headers or {}).items()})]
    return max(candidates, key=lambda c: (c[0], c[1]))[2]


def route_of(implementation: str | None, cfg: dict[str, Any]) -> tuple[list[dict], Any]:
    traffic: dict[str, Any] = {"host": HOST}
    if implementation:
        traffic["gateway"] = {"implementation": implementation}
    run = given("dev").with_traffic(**traffic).with_release(cfg).run().run
    return run.named("HTTPRoute", "moontv").inputs["spec"]["rules"], run


def backend_names(rule: dict[str, Any]) -> list[str]:
    return [ref["name"] for ref in rule["backendRefs"]]


@pytest.mark.parametrize("implementation", ["standard", "traefik"])
def test_given_a_mirror_then_reads_take_the_mirror_rule_and_writes_never_do(implementation):
    rules, _ = route_of(implementation, canary(0, mirror=MIRROR))
    mirror_rule = next(rule for rule in rules if any("method" in m for m in rule["matches"])
                       and not any("headers" in m for m in rule["matches"]))
    for method in ("GET", "HEAD"):
        assert gateway_pick(rules, method, "/api/favorites") is mirror_rule
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        picked = gateway_pick(rules, method, "/api/favorites")
        assert picked is rules[-1] and backend_names(picked) == ["moontv-stable", "moontv-canary"]
        assert [ref.get("weight") for ref in picked["backendRefs"]] == [100, 0]


@pytest.mark.parametrize("implementation", ["standard", "traefik"])
def test_given_a_mirror_then_the_header_still_forces_a_track_and_blocked_paths_stay_blocked(
        implementation):
    rules, _ = route_of(implementation, canary(0, cookie="trk", mirror=MIRROR))
    for method in ("GET", "HEAD", "POST"):
        for headers in ({"x-moontv-canary": "always"}, {"Cookie": "a=1; trk=always"}):
            assert backend_names(gateway_pick(rules, method, "/", headers)) == ["moontv-canary"]
        assert backend_names(gateway_pick(rules, method, "/", {"x-moontv-canary": "never"})) == [
            "moontv-stable"]
        assert gateway_pick(rules, method, "/api/cron") is rules[0]


def test_given_the_standard_implementation_then_the_rule_carries_a_request_mirror_filter():
    rules, run = route_of("standard", canary(0, mirror={"percent": 25}))
    (rule,) = [rule for rule in rules if rule.get("filters", [{}])[0].get("type") ==
               "RequestMirror"]
    assert rule == {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}, "method": "GET"},
                    {"path": {"type": "PathPrefix", "value": "/"}, "method": "HEAD"}],
        "filters": [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"kind": "Service", "name": "moontv-canary", "port": 80},
            "percent": 25}}, STABLE_COOKIE],
        "backendRefs": [{"kind": "Service", "name": "moontv-stable", "port": 80}]}
    assert run.kind("TraefikService") == []


def test_given_traefik_then_the_rule_names_a_mirroring_traefik_service_created_before_it():
    rules, run = route_of("traefik", both_colours("green", mirror={"percent": 40}))
    (rule,) = [rule for rule in rules if rule["backendRefs"][0].get("kind") == "TraefikService"]
    assert rule["backendRefs"] == [
        {"group": "traefik.io", "kind": "TraefikService", "name": "moontv-mirror"}]
    assert "filters" not in rule  # blue-green: no track affinity
    service = run.named("TraefikService", "moontv-mirror")
    assert service.inputs["apiVersion"] == "traefik.io/v1alpha1"
    assert service.inputs["spec"] == {"mirroring": {
        "kind": "Service", "name": "moontv-green", "port": 80, "mirrorBody": False,
        "mirrors": [{"kind": "Service", "name": "moontv-blue", "port": 80, "percent": 40}]}}
    assert service.inputs["metadata"]["namespace"] == "moontv-dev"


#: What an answer of the stable track carries with track affinity (on by default for canary).
STABLE_COOKIE = {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [
    {"name": "Set-Cookie", "value": "moontv-track=stable; Path=/; SameSite=Lax; HttpOnly"}]}}


def test_given_a_canary_mirror_on_traefik_then_its_answers_set_the_track_cookie_too():
    """At weight 0 the mirror rule answers the reads the weighted rule would: they tell the
    browser its track as the writes do (a rule filter: Traefik drops a backendRef's filters on a
    TraefikService)."""
    rules, _ = route_of("traefik", canary(0, mirror=MIRROR))
    (rule,) = [rule for rule in rules if rule["backendRefs"][0].get("kind") == "TraefikService"]
    assert rule["filters"] == [STABLE_COOKIE]
    assert rules[-1]["backendRefs"][0]["filters"] == [STABLE_COOKIE]
    assert "filters" not in rules[-1]["backendRefs"][1]  # the canary at weight 0 answers none


def test_given_no_mirror_then_the_rules_are_as_before():
    rules, run = route_of("traefik", canary(10, mirror=MIRROR))
    assert not any("method" in m for rule in rules for m in rule["matches"])
    assert run.kind("TraefikService") == []


# --- Traefik on Swarm --------------------------------------------------------------------------


def swarm_pick(config: dict[str, Any], method: str, headers: dict[str, str] | None = None) -> str:
    """The service of the highest-priority router of ``HOST`` that matches a request to ``/``."""
    headers = headers or {}

    def matches(rule: str) -> bool:
        if f"Host(`{HOST}`)" not in rule or "Path(" in rule:
            return False
        methods = re.findall(r"Method\(`([A-Z]+)`\)", rule)
        wanted = re.findall(r"Header\(`([^`]+)`, `([^`]+)`\)", rule)
        return (not methods or method in methods) and all(headers.get(k) == v for k, v in wanted)

    routers = [router for router in config["http"]["routers"].values() if matches(router["rule"])]
    return str(max(routers, key=lambda router: router["priority"])["service"])


def test_given_a_mirror_on_swarm_then_reads_are_mirrored_and_writes_go_to_the_weights():
    config = traefik.dynamic_config(table(canary(0, mirror={"percent": 50})))
    services = config["http"]["services"]
    # answered through the weighted service (its only entry: stable), whose sticky cookie
    # tells a browser its track on reads as on writes
    assert services["moontv-mirror"] == {"mirroring": {
        "service": "moontv", "mirrorBody": False,
        "mirrors": [{"name": "moontv-canary", "percent": 50}]}}
    assert services["moontv"]["weighted"]["services"] == [{"name": "moontv-stable",
                                                          "weight": 100}]
    assert swarm_pick(config, "GET") == swarm_pick(config, "HEAD") == "moontv-mirror"
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert swarm_pick(config, method) == "moontv"
    assert swarm_pick(config, "GET", {"x-moontv-canary": "always"}) == "moontv-canary"
    assert "moontv-canary" in services  # the mirror's target is a service of its own


def test_given_a_blue_green_mirror_on_swarm_then_the_active_colour_answers():
    config = traefik.dynamic_config(table(both_colours("blue", mirror=MIRROR)))
    assert config["http"]["services"]["moontv-mirror"]["mirroring"]["service"] == "moontv-blue"
    assert swarm_pick(config, "GET") == "moontv-mirror"
