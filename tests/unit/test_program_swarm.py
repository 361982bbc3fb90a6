"""The whole program on the shipped Swarm stack file, under mocks."""

from __future__ import annotations

import json

import pytest

from components.swarm import preflight
from tests.helpers import canary
from tests.program import given, run_stack


@pytest.fixture
def engine_ready(monkeypatch):
    monkeypatch.setattr(preflight, "check", lambda env=None: None)


def test_given_the_swarm_stack_then_each_track_is_a_service_behind_the_edge(engine_ready):
    run = run_stack("swarm")
    services = {r.inputs["name"] for r in run.of_type("docker:index/service:Service")}
    assert {"moontv-swarm-stable", "moontv-swarm-canary"} <= services, services
    assert run.outputs["weights"] == {"stable": 100, "canary": 0}
    for secret in run.secrets:
        for r in run.resources:
            if r.type != "docker:index/secret:Secret":
                assert secret not in json.dumps(r.inputs), f"secret value in {r.name}"


def test_given_no_swarm_engine_then_the_program_says_what_to_run(monkeypatch):
    monkeypatch.setattr(preflight, "check", lambda env=None: "run: docker swarm init")
    from components.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        run_stack("swarm")
    assert exc.value.problems == ["moontv:platform: swarm: run: docker swarm init"]


@pytest.mark.parametrize("weight", [0, 25, 100])
def test_given_the_swarm_stack_when_the_canary_weight_is_set_then_the_edge_splits_by_it(
    engine_ready, weight
):
    then = given("swarm").with_release(canary(weight, version="v100.1.2")).run()
    then.then_weights(**{k: v for k, v in {"stable": 100 - weight, "canary": weight}.items() if v})
    routers = then.traefik()["http"]["routers"]
    assert routers["moontv-header-always"]["service"] == "moontv-canary"
    assert routers["moontv-blocked"]["middlewares"][0] == "moontv-not-found"
