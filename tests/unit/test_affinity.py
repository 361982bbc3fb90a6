"""Track affinity: the config refused in words before any resource, the route table's affinity
entry, and each provider's rendering of it (Gateway API cookie rules and per-backend
``Set-Cookie``, Traefik's sticky cookie on Swarm, ingress-nginx refused), with every rule kept
consistent with the overrides, the blocked paths and the mirror."""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pytest

from components import release as r
from components.errors import ConfigError
from components.swarm import traefik
from tests.helpers import both_colours, canary
from tests.program import RecordingMocks, given
from tests.unit.test_mirror import (
    HOST,
    backend_names,
    gateway_pick,
    release_problems,
    route_of,
    stack_problems,
    swarm_pick,
)

COOKIE = r.AFFINITY_COOKIE


def with_affinity(release: dict[str, Any], **affinity: Any) -> dict[str, Any]:
    return {**release, "affinity": affinity}


def table(cfg: dict[str, Any]) -> r.RouteTable:
    return r.plan(r.parse(cfg), "v1", 2).routes(HOST)


def set_cookie_of(ref: dict[str, Any]) -> list[str]:
    """The ``Set-Cookie`` values a rule's or backendRef's filters add."""
    return [h["value"] for f in ref.get("filters", []) if f["type"] == "ResponseHeaderModifier"
            for h in f["responseHeaderModifier"]["add"] if h["name"] == "Set-Cookie"]


# --- config ------------------------------------------------------------------------------------


def test_given_a_canary_then_affinity_is_on_with_the_default_cookie():
    affinity = r.plan(r.parse(canary(10)), "v1", 2).affinity
    assert affinity == r.Affinity("moontv-track", secure=False)
    assert affinity.set_cookie("canary") == "moontv-track=canary; Path=/; SameSite=Lax; HttpOnly"
    secure = r.plan(r.parse(with_affinity(canary(10), secure=True)), "v1", 2).affinity
    assert secure is not None
    assert secure.set_cookie("stable").endswith("; HttpOnly; Secure")


@pytest.mark.parametrize("release", [{"strategy": "rolling"}, both_colours("blue")])
def test_given_another_strategy_then_there_is_no_affinity(release):
    assert r.plan(r.parse(release), "v1", 2).affinity is None


def test_given_affinity_disabled_then_a_cookie_setting_is_refused_not_ignored():
    assert release_problems(with_affinity(canary(10), enabled=False, secure=True)) == [
        "moontv:release.affinity.secure: is read only when affinity.enabled is true: remove it"]


def test_given_affinity_disabled_then_the_table_has_none():
    assert all(route.affinity is None
               for route in table(with_affinity(canary(10), enabled=False)).routes)


@pytest.mark.parametrize("name", ["a b", "a;b", "a=b", "", "trk,x", "(t)", "t\u00e9", "`t",
                                  "x" * 65, 7])
def test_given_a_cookie_name_that_is_not_a_token_then_it_is_refused_naming_the_key(name):
    (problem,) = release_problems(with_affinity(canary(10), cookie=name))
    assert problem.startswith("moontv:release.affinity.cookie: must be a cookie name: an RFC "
                              "6265 token of 1 to 64 characters"), problem
    assert problem.endswith(f"got {r.show(name)}")


@pytest.mark.parametrize("name", ["trk", "Moon.TV_track-1", "a!#$%&'*+.^_|~b"])
def test_given_a_token_then_it_is_the_cookie(name):
    affinity = r.plan(r.parse(with_affinity(canary(10), cookie=name)), "v1", 2).affinity
    assert affinity is not None and affinity.cookie == name


@pytest.mark.parametrize(("release", "why"), [
    ({"strategy": "rolling"}, "rolling runs one track"),
    (both_colours("blue"), "must move every browser at once")])
def test_given_affinity_with_another_strategy_then_it_is_refused(release, why):
    (problem,) = release_problems(with_affinity(release, enabled=True))
    assert problem.startswith("moontv:release.affinity: is read only by strategy canary, not ")
    assert why in problem


@pytest.mark.parametrize("release", [
    canary(10, cookie=COOKIE),
    with_affinity(canary(10, cookie="trk"), cookie="trk")])
def test_given_the_canary_cookie_and_the_affinity_cookie_alike_then_it_is_refused(release):
    (problem,) = release_problems(release)
    assert re.match(r"moontv:release\.(canary|affinity)\.cookie: '[a-z-]+' is both "
                    "canary.cookie", problem), problem


def test_given_nginx_then_affinity_is_refused_before_any_resource_with_the_reason(monkeypatch):
    registered: list[str] = []
    monkeypatch.setattr(RecordingMocks, "new_resource",
                        lambda self, args: registered.append(args.name) or ("x", {}))
    with pytest.raises(ConfigError) as exc:
        given("dev").with_traffic(host=HOST, provider="nginx").with_release(canary(10)).run()
    assert registered == []
    (problem,) = exc.value.problems
    assert problem.startswith(
        "moontv:release.affinity.enabled: track affinity (on by default with strategy canary) "
        "cannot be rendered by the nginx traffic provider: ingress-nginx sets no cookie naming "
        "the track that served")
    assert "pins a pod, not a track" in problem
    assert problem.endswith("set release.affinity.enabled false (a page load may then mix "
                            "versions while the canary weight is between 1 and 99) or use "
                            "traffic.provider gateway")
    explicit = stack_problems(release=with_affinity(canary(10), enabled=True),
                              traffic={"host": HOST, "provider": "nginx"})
    assert explicit == [problem.replace(" (on by default with strategy canary)", "")]


def test_given_nginx_then_preview_warns_that_ingress_nginx_is_retired(monkeypatch):
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warned.append(message))
    given("dev").with_traffic(host=HOST, provider="nginx").with_release(
        with_affinity(canary(10), enabled=False)).run()
    assert [w for w in warned if "retired" in w] == [
        "moontv:traffic.provider: nginx renders for ingress-nginx, which its maintainers retired "
        "in March 2026 (no further releases or security fixes); it cannot keep a browser on its "
        "track (release.affinity) nor mirror read requests only: move to traffic.provider "
        "gateway (Gateway API, the default)"]
    warned.clear()
    given("dev").with_release(canary(10)).run()
    assert not [w for w in warned if "retired" in w]


# --- the route table ---------------------------------------------------------------------------


@pytest.mark.parametrize(("weight", "pinned"), [
    (0, ()), (10, ("stable", "canary")), (50, ("stable", "canary")), (100, ())])
def test_given_a_weight_then_the_tracks_in_the_split_are_pinned(weight, pinned):
    public, preview = table(canary(weight)).routes
    assert public.affinity == r.Affinity(COOKIE, False, pinned)
    assert preview.affinity is None  # the preview host has one backend, no split


def test_given_a_cookie_pattern_then_it_finds_the_cookie_among_others_and_nothing_else():
    pattern = r.Affinity(COOKIE, False).pattern("canary")
    for header in ("moontv-track=canary", "a=1; moontv-track=canary", "moontv-track=canary; b=2",
                   "a=1;moontv-track=canary;b=2"):
        assert re.fullmatch(pattern, header), header
    for header in ("moontv-track=stable", "xmoontv-track=canary", "moontv-track=canary2",
                   "moontv-track-x=canary", "a=moontv-track=canary"):
        assert not re.fullmatch(pattern, header), header


# --- Gateway API -------------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [10, 50])
def test_given_a_split_then_each_backend_sets_its_own_cookie_and_a_cookie_keeps_the_track(
        weight):
    rules, _ = route_of(None, canary(weight, cookie="trk"))
    weighted = rules[-1]
    assert [(ref["name"], ref["weight"], set_cookie_of(ref)) for ref in weighted["backendRefs"]] \
        == [("moontv-stable", 100 - weight, [f"{COOKIE}=stable; Path=/; SameSite=Lax; HttpOnly"]),
            ("moontv-canary", weight, [f"{COOKIE}=canary; Path=/; SameSite=Lax; HttpOnly"])]
    for method in ("GET", "POST"):
        assert gateway_pick(rules, method, "/") is weighted  # a new browser: split by weight
        for track in ("stable", "canary"):
            picked = gateway_pick(rules, method, "/login",
                                  {"Cookie": f"auth=x; {COOKIE}={track}; theme=dark"})
            assert backend_names(picked) == [f"moontv-{track}"]
            assert set_cookie_of(picked) == [] == set_cookie_of(picked["backendRefs"][0])
        # the overrides beat the cookie (tie on one header: the earlier rule wins)
        held = {"Cookie": f"{COOKIE}=stable"}
        assert backend_names(gateway_pick(rules, method, "/", {**held, "x-moontv-canary":
                                                                "always"})) == ["moontv-canary"]
        assert backend_names(gateway_pick(rules, method, "/", {
            "Cookie": f"{COOKIE}=canary; trk=never"})) == ["moontv-stable"]
        # the blocked paths stay blocked
        assert gateway_pick(rules, method, "/api/cron", held) is rules[0]
    # a cookie naming a track outside the split (or garbage) is split by weight and replaced
    assert gateway_pick(rules, "GET", "/", {"Cookie": f"{COOKIE}=green"}) is weighted


def test_given_a_rollback_to_weight_0_then_a_canary_cookie_no_longer_holds():
    rules, _ = route_of(None, canary(0))
    picked = gateway_pick(rules, "GET", "/", {"Cookie": f"{COOKIE}=canary"})
    assert picked is rules[-1]
    assert [(ref["name"], set_cookie_of(ref)) for ref in picked["backendRefs"]] == [
        ("moontv-stable", [f"{COOKIE}=stable; Path=/; SameSite=Lax; HttpOnly"]),
        ("moontv-canary", [])]  # weight 0: answers none of this rule


@pytest.mark.parametrize("implementation", ["standard", "traefik"])
def test_given_a_mirror_then_reads_keep_the_mirror_and_still_set_the_stable_cookie(
        implementation):
    rules, _ = route_of(implementation, canary(0, mirror={"percent": 50}))
    for cookie in (None, f"{COOKIE}=stable", f"{COOKIE}=canary"):
        headers = {"Cookie": cookie} if cookie else {}
        mirror_rule = gateway_pick(rules, "GET", "/", headers)
        assert any("method" in m for m in mirror_rule["matches"])
        assert set_cookie_of(mirror_rule) == [f"{COOKIE}=stable; Path=/; SameSite=Lax; HttpOnly"]
        assert gateway_pick(rules, "POST", "/", headers) is rules[-1]


def test_given_blue_green_or_rolling_then_the_route_has_no_cookie():
    for release in (both_colours("green"), {"strategy": "rolling"}):
        rules, _ = route_of(None, release)
        assert not [ref for rule in rules for ref in [rule, *rule["backendRefs"]]
                    if set_cookie_of(ref)]
        assert not [m for rule in rules for m in rule["matches"] if m.get("headers")
                    and m["headers"][0]["name"] == "cookie"]


def test_given_secure_then_every_cookie_the_route_sets_is_secure():
    rules, _ = route_of(None, with_affinity(canary(10), secure=True, cookie="trk"))
    cookies = [c for ref in rules[-1]["backendRefs"] for c in set_cookie_of(ref)]
    assert cookies == ["trk=stable; Path=/; SameSite=Lax; HttpOnly; Secure",
                       "trk=canary; Path=/; SameSite=Lax; HttpOnly; Secure"]


# --- Traefik on Swarm --------------------------------------------------------------------------


def test_given_a_split_on_swarm_then_the_weighted_service_has_the_sticky_cookie():
    config = traefik.dynamic_config(table(canary(10)))
    weighted = config["http"]["services"]["moontv"]["weighted"]
    assert weighted["sticky"] == {"cookie": {
        "name": COOKIE, "path": "/", "sameSite": "lax", "httpOnly": True, "secure": False}}
    assert swarm_pick(config, "GET") == "moontv"
    assert swarm_pick(config, "GET", {"x-moontv-canary": "always"}) == "moontv-canary"
    preview = traefik.dynamic_config(table(both_colours("blue")))["http"]["services"]
    assert "sticky" not in preview["moontv"]["weighted"]


def test_given_affinity_off_on_swarm_then_the_mirror_answers_from_its_source():
    config = traefik.dynamic_config(table(with_affinity(canary(0, mirror={"percent": 50}),
                                                        enabled=False)))
    assert config["http"]["services"]["moontv-mirror"]["mirroring"]["service"] == "moontv-stable"
    assert "sticky" not in config["http"]["services"]["moontv"]["weighted"]
