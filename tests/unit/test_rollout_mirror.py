"""``rollout auto --mirror``: the first step sends the candidate copies of read requests only;
a candidate unhealthy on them is stopped before any user reaches it, and the decision is
recorded like every other."""

from __future__ import annotations

import pytest

from rollout import commands
from rollout.health import HealthPolicy, stack_gates
from tests.helpers import FakePrometheus, canary
from tests.unit.test_rollout import BLUE_GREEN, FakeStack, auto, prometheus, run

__all__ = ["prometheus"]  # the fixture, shared with test_rollout

MIRRORED = canary(0, mirror={"percent": 50})
BG_MIRRORED = {**BLUE_GREEN, "blueGreen": {**BLUE_GREEN["blueGreen"], "mirror": {"percent": 50}}}


def test_given_a_mirror_when_auto_then_it_waits_the_mirror_step_checks_and_then_steps(
        prometheus: FakePrometheus) -> None:
    stack = FakeStack(MIRRORED)
    slept: list[float] = []
    lines: list[str] = []
    ctx = commands.Context(stack=stack, out=lines.append, sleep=slept.append)
    policy = HealthPolicy(prometheus.url, stack_gates(stack.outputs()))
    assert commands.auto(ctx, policy, [50, 100], 30.0, mirror=300.0) == 0
    assert slept == [300.0, 30.0, 30.0]
    assert lines[0] == ("mirror step (300s, 50% of GET, HEAD): 50% of GET, HEAD requests copied "
                        "to canary (answers from stable)")
    assert stack.weights_at_each_up() == [50, 100, 0]
    assert stack.release["lastDecision"]["action"] == "promote"


@pytest.mark.parametrize(("success", "latency", "words"), [
    ([0.5], [0.1], "success rate too low: success 0.5 (min 0.99)"),
    ([1.0], [0.9], "p99 latency too high: success 1 (min 0.99), p99 900 ms (max 500)"),
    ([None], [0.1], "metrics unavailable: "),
])
def test_given_a_canary_unhealthy_on_mirrored_requests_then_no_weight_is_ever_set(
        prometheus: FakePrometheus, success: list[float | None], latency: list[float | None],
        words: str) -> None:
    prometheus.success, prometheus.latency = success, latency
    stack = FakeStack(MIRRORED)
    assert auto(stack, prometheus, "--mirror", "0s", "--steps", "10,100") == 1
    assert stack.weights_at_each_up() == [0]  # the one up records the decision
    assert stack.release["canary"] == {"version": "v2", "weight": 0, "mirror": {"percent": 50}}
    decision = stack.release["lastDecision"]
    assert decision["action"] == "rollback"
    assert decision["reason"].startswith(
        "mirror step (0s, 50% of GET, HEAD): canary unhealthy on mirrored requests, no user was "
        f"sent to it: {words}")


def test_given_a_blue_green_preview_unhealthy_on_mirrored_requests_then_no_switch(
        prometheus: FakePrometheus) -> None:
    prometheus.success = [0.2]
    stack = FakeStack(BG_MIRRORED)
    assert auto(stack, prometheus, "--mirror", "0s") == 1
    assert [u["moontv:release"]["blueGreen"]["active"] for u in stack.ups] == ["blue"]
    assert stack.release["lastDecision"]["reason"].startswith(
        "mirror step (0s, 50% of GET, HEAD): green unhealthy on mirrored requests")


def test_given_a_healthy_blue_green_preview_when_auto_with_mirror_then_it_switches(
        prometheus: FakePrometheus) -> None:
    stack = FakeStack(BG_MIRRORED)
    assert auto(stack, prometheus, "--mirror", "0s") == 0
    assert [u["moontv:release"]["blueGreen"]["active"] for u in stack.ups] == ["green"]


@pytest.mark.parametrize(("release", "message"), [
    (canary(0), "--mirror: the stack mirrors nothing: set moontv:release.canary.mirror.percent"),
    (canary(0, mirror={"percent": 0}), "--mirror: the stack mirrors nothing"),
    (canary(10, mirror={"percent": 50}), "--mirror: the canary already takes 10% of traffic"),
    (BLUE_GREEN, "set moontv:release.blueGreen.mirror.percent"),
])
def test_given_no_active_mirror_when_auto_with_mirror_then_exit_2_and_nothing_changes(
        prometheus: FakePrometheus, capsys: pytest.CaptureFixture[str], release: dict,
        message: str) -> None:
    stack = FakeStack(release)
    assert auto(stack, prometheus, "--mirror", "5m") == 2
    assert message in capsys.readouterr().err
    assert (stack.writes, stack.ups) == (0, [])


def test_given_a_mirror_when_status_then_it_is_shown(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(FakeStack(MIRRORED), "status") == 0
    assert "mirror: 50% of GET, HEAD requests copied to canary (answers from stable)" in \
        capsys.readouterr().out
