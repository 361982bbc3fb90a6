"""The rollout CLI's decisions, against an in-memory stack and a Prometheus HTTP fake on
127.0.0.1: given a stack config, when a command runs, then the config, the `up`s and the exit
status are these."""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout import commands
from rollout.cli import main
from rollout.health import Gate, HealthPolicy, QueryError, check, query, stack_gates
from rollout.stack import (
    ROUTE_TARGETS,
    SECRET,
    EngineError,
    decode_config,
    diff,
    engine_env,
    error_tail,
)
from tests.helpers import DIGEST, FakePrometheus, canary
from tests.program import run_stack

ROOT = Path(__file__).resolve().parents[2]
CANARY = canary(0)
BLUE_GREEN = {
    "strategy": "blue-green",
    "blueGreen": {"blue": "v1", "green": "v2", "active": "blue"},
}
IMAGE = {"repository": "registry.local/moontv", "tag": "v1"}


class FakeStack:
    """A shipped stack file's config in memory (monitoring on), with `pulumi config set
    --path` typing; records writes, previews and ups; its outputs are the program's."""

    def __init__(
        self,
        release: dict[str, Any] | None,
        fail_up: set[int] | None = None,
        stack: str = "dev",
        image: dict[str, Any] | None = None,
    ):
        self.name = stack
        shipped = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        self.data: dict[str, Any] = shipped
        self.data["moontv:image"] = copy.deepcopy(IMAGE if image is None else image)
        self.data["moontv:monitoring"] = {"enabled": True, "mode": "existing"}
        self.data.pop("moontv:release", None)
        if release is not None:
            self.data["moontv:release"] = copy.deepcopy(release)
        self.ups: list[dict[str, Any]] = []
        self.targets: list[tuple[str, ...]] = []  # of each up; () is the whole stack
        self.previews: list[dict[str, Any]] = []
        self.writes = 0
        self._fail_up = fail_up or set()

    def config(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    def outputs(self) -> dict[str, Any]:
        """The outputs of the program run under mocks on the current config."""
        return run_stack(self.name, self.data).outputs

    def write(self, sets: Mapping[str, str], removes: list[str]) -> None:
        self.writes += 1
        for path in removes:
            *parents, leaf = self._walk(path)
            del parents[-1][leaf]
        for path, text in sets.items():
            *parents, leaf = self._walk(path)
            parents[-1][leaf] = self._typed(text)

    def _walk(self, path: str) -> list[Any]:
        key, *parts = path.split(".")
        node = self.data.setdefault(key, {})
        nodes: list[Any] = [node]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            nodes.append(node)
        return [*nodes, parts[-1]]

    @staticmethod
    def _typed(text: str) -> Any:
        if text in ("true", "false"):
            return text == "true"
        return int(text) if re.fullmatch(r"-?[1-9][0-9]*|0", text) else text

    def up(self, targets: Sequence[str] = ()) -> None:
        self.targets.append(tuple(targets))
        if len(self.ups) + 1 in self._fail_up:
            self.ups.append({})
            raise EngineError("error: update failed: resource moontv-canary timed out")
        self.ups.append(copy.deepcopy(self.data))

    def preview(self) -> None:
        self.previews.append(copy.deepcopy(self.data))

    @property
    def release(self) -> dict[str, Any]:
        release: dict[str, Any] = self.data.get("moontv:release", {})
        return release

    def weights_at_each_up(self) -> list[int | None]:
        return [u.get("moontv:release", {}).get("canary", {}).get("weight") for u in self.ups]


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.stop()


def run(stack: FakeStack, *argv: str) -> int:
    return main([*argv, "--stack", stack.name], open_stack=lambda name, cwd: stack)


def auto(stack: FakeStack, prom: FakePrometheus, *extra: str) -> int:
    return run(stack, "auto", "--prometheus", prom.url, "--interval", "0s", *extra)


# --- manual commands -----------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [0, 25, 50, 100])
def test_given_canary_when_set_weight_then_config_holds_it_and_up_runs_once(weight: int) -> None:
    stack = FakeStack(CANARY)
    assert run(stack, "set-weight", str(weight), "--reason", "ramp") == 0
    assert stack.weights_at_each_up() == [weight]
    assert stack.release["canary"] == {"version": "v2", "weight": weight}
    assert stack.release["lastDecision"]["action"] == "set-weight"
    assert stack.release["lastDecision"]["reason"] == "ramp"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stack.release["lastDecision"]["at"])


def test_given_kubernetes_when_set_weight_then_up_targets_only_the_routes() -> None:
    stack = FakeStack(CANARY)
    assert run(stack, "set-weight", "30") == 0
    assert stack.targets == [ROUTE_TARGETS]


def test_given_kubernetes_when_staged_or_promoted_then_up_covers_the_whole_stack() -> None:
    stack = FakeStack(CANARY)
    assert run(stack, "stage", "v3") == 0
    assert run(stack, "promote") == 0
    assert stack.targets == [(), ()]


def test_given_swarm_when_set_weight_then_up_covers_the_whole_stack() -> None:
    stack = FakeStack(CANARY, stack="swarm")
    stack.data.pop("moontv:monitoring")  # the fake's Kubernetes monitoring mode
    assert run(stack, "set-weight", "30") == 0
    assert stack.targets == [()]


def _engine_glob(glob: str) -> re.Pattern[str]:
    """The engine's ``--target`` glob: ``**`` any text, ``*`` any text without ``:``."""
    parts = ("[^:]*".join(re.escape(p) for p in seg.split("*")) for seg in glob.split("**"))
    return re.compile("^" + ".*".join(parts) + "$")


@pytest.mark.parametrize("provider", ["gateway", "nginx"])
def test_given_a_weight_change_then_every_changed_resource_matches_the_route_targets(
    provider: str,
) -> None:
    traffic = {"host": "moontv.staging.example.com", "provider": provider}
    if provider == "gateway":
        traffic["gateway"] = {"name": "public", "namespace": "gateway-system"}

    def resources(weight: int) -> dict[str, Any]:
        release = canary(weight)
        if provider == "nginx":  # ingress-nginx cannot keep a browser on its track
            release["affinity"] = {"enabled": False}
        result = run_stack("staging", {"moontv:release": release, "moontv:traffic": traffic})
        urn = "urn:pulumi:staging::moontv::{}::{}"
        return {urn.format(r.type, r.name): r.inputs for r in result.resources}

    before, after = resources(10), resources(20)
    changed = {urn for urn in after if before.get(urn) != after[urn]}
    globs = [_engine_glob(glob) for glob in ROUTE_TARGETS]
    targeted = {urn for urn in after if any(g.match(urn) for g in globs)}
    assert changed and changed <= targeted
    assert all(re.search(r":(HTTPRoute|Ingress)::", urn) for urn in targeted)


@pytest.mark.parametrize(
    ("release", "argv", "message"),
    [
        (CANARY, ["set-weight", "101"], "canary.weight: must be an integer 0..100, got 101"),
        (CANARY, ["set-weight", "-1"], "canary.weight: must be an integer 0..100, got -1"),
        (CANARY, ["set-weight", "ten"], 'canary.weight: must be an integer 0..100, got "ten"'),
        (None, ["set-weight", "10"], 'set-weight needs strategy canary, got "rolling"'),
        ({"strategy": "canary"}, ["set-weight", "10"], "set-weight needs a canary"),
        ({"strategy": "canary"}, ["promote"], "promote needs a canary"),
        (None, ["rollback"], "rollback needs strategy canary or blue-green"),
        (
            {"strategy": "blue-green", "blueGreen": {"blue": "v1"}},
            ["switch", "green"],
            "cannot switch to green, it has no version",
        ),
        (CANARY, ["switch"], "switch needs strategy blue-green"),
        ({"strategy": "linear"}, ["status"], "moontv:release.strategy: must be one of"),
        (
            {"strategy": "canary", "canary": {"weight": 5}},
            ["set-weight", "10"],
            "weight: must be 0",
        ),
    ],
)
def test_given_bad_input_then_exit_2_with_message_and_config_untouched(
    release: dict[str, Any] | None,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = FakeStack(release)
    before = copy.deepcopy(stack.data)
    assert run(stack, *argv) == 2
    assert message in capsys.readouterr().err
    assert (stack.data, stack.writes, stack.ups) == (before, 0, [])


@pytest.mark.parametrize(
    ("release", "version", "expected"),
    [
        (CANARY, "v3", {"version": "v3", "weight": 0}),
        ({"strategy": "canary"}, "latest", {"version": "latest", "weight": 0}),
    ],
)
def test_given_canary_when_staged_then_candidate_runs_at_weight_0(
    release: dict[str, Any], version: str, expected: dict[str, Any]
) -> None:
    stack = FakeStack(release)
    assert run(stack, "stage", version) == 0
    assert stack.ups[0]["moontv:release"]["canary"] == expected
    assert stack.release["lastDecision"]["action"] == "stage"


@pytest.mark.parametrize(
    ("stack_name", "release", "image", "version", "message"),
    [
        (
            "staging",
            CANARY,
            IMAGE,
            "latest",
            "moontv:release.canary.version: must not be the mutable tag 'latest'",
        ),
        (
            "prod",
            {"strategy": "blue-green", "blueGreen": {"blue": f"v1@{DIGEST}", "active": "blue"}},
            {**IMAGE, "digest": DIGEST},
            "v2",
            "moontv:release.blueGreen.green: prod requires a digest-pinned version",
        ),
    ],
)
def test_given_change_the_environment_refuses_then_exit_2_and_config_untouched(
    stack_name: str,
    release: dict[str, Any],
    image: dict[str, Any],
    version: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = FakeStack(release, stack=stack_name, image=image)
    before = copy.deepcopy(stack.data)
    assert run(stack, "stage", version) == 2
    err = capsys.readouterr().err
    assert "the change would make the stack config invalid" in err
    assert message in err
    assert (stack.data, stack.writes, stack.ups) == (before, 0, [])


def test_given_staging_with_its_owner_password_set_when_a_weight_step_then_the_hidden_secret_passes(
) -> None:
    # `pulumi config --json` reads every secret back as the placeholder: its strength is the
    # program's to check with the real value, not a reason to refuse every release decision.
    stack = FakeStack(canary(10), stack="staging")
    stack.data["moontv:ownerPassword"] = SECRET
    assert run(stack, "set-weight", "25") == 0
    assert stack.release["canary"]["weight"] == 25


def test_given_prod_when_staging_a_pinned_version_then_green_previews_it() -> None:
    stack = FakeStack(
        {"strategy": "blue-green", "blueGreen": {"blue": f"v1@{DIGEST}", "active": "blue"}},
        stack="prod",
        image={**IMAGE, "digest": DIGEST},
    )
    assert run(stack, "stage", f"v2@{DIGEST}") == 0
    assert stack.ups[0]["moontv:release"]["blueGreen"]["green"] == f"v2@{DIGEST}"


def test_given_canary_when_promoted_then_image_takes_the_canary_version() -> None:
    stack = FakeStack({"strategy": "canary", "canary": {"version": f"v2@{DIGEST}", "weight": 50}})
    assert run(stack, "promote") == 0
    assert stack.data["moontv:image"] == {**IMAGE, "tag": "v2", "digest": DIGEST}
    assert stack.release["canary"] == {"weight": 0, "previous": "v1"}
    assert stack.release["lastDecision"]["action"] == "promote"
    assert len(stack.ups) == 1


def test_given_canary_when_rolled_back_then_weight_0_and_canary_kept() -> None:
    stack = FakeStack({"strategy": "canary", "canary": {"version": "v2", "weight": 50}})
    assert run(stack, "rollback") == 0
    assert stack.release["canary"] == {"version": "v2", "weight": 0}


def test_given_canary_when_aborted_then_canary_version_removed() -> None:
    stack = FakeStack({"strategy": "canary", "canary": {"version": "v2", "weight": 50}})
    assert run(stack, "abort") == 0
    assert stack.release["canary"] == {"weight": 0}
    assert stack.data["moontv:image"] == IMAGE


@pytest.mark.parametrize(
    ("argv", "active"),
    [(["switch"], "green"), (["switch", "green"], "green"), (["promote"], "green")],
)
def test_given_blue_green_when_switched_then_active_colour_changes(
    argv: list[str], active: str
) -> None:
    stack = FakeStack(BLUE_GREEN)
    assert run(stack, *argv) == 0
    assert stack.ups[0]["moontv:release"]["blueGreen"]["active"] == active


def test_given_blue_green_when_switching_to_active_colour_then_nothing_changes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = FakeStack(BLUE_GREEN)
    assert run(stack, "switch", "blue") == 0
    assert "blue is already active" in capsys.readouterr().out
    assert (stack.writes, stack.ups) == (0, [])


def test_given_dry_run_then_preview_sees_the_change_and_config_is_restored() -> None:
    stack = FakeStack(CANARY)
    before = copy.deepcopy(stack.data)
    assert run(stack, "promote", "--dry-run") == 0
    assert stack.ups == []
    assert stack.previews[0]["moontv:image"]["tag"] == "v2"
    assert stack.data == before


def test_status_shows_strategy_versions_weights_and_health(
    prometheus: FakePrometheus, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = FakeStack({"strategy": "canary", "canary": {"version": "v2", "weight": 25}})
    assert run(stack, "status", "--prometheus", prometheus.url) == 0
    out = capsys.readouterr().out
    assert "strategy: canary" in out
    assert "track stable: version v1, weight 75%, role primary" in out
    assert "track canary: version v2, weight 25%, role canary" in out
    assert "header x-moontv-canary: always -> canary, never -> stable" in out
    assert "health canary: success 1 (min 0.99), p99 100 ms (max 500)" in out
    assert stack.ups == []


def test_given_no_pulumi_project_then_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--stack", "dev", "--cwd", str(tmp_path)]) == 2
    assert f"--cwd: no Pulumi.yaml in {tmp_path}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["auto", "--prometheus", "http://x", "--steps", "50,10"], "--steps: must be"),
        (["auto", "--prometheus", "http://x", "--steps", "0,10"], "--steps: must be"),
        (["auto", "--prometheus", "http://x", "--interval", "soon"], "--interval: must be"),
        (["auto", "--prometheus", "x"], "--prometheus: must be an http(s) URL"),
        (["auto", "--prometheus", "http://x", "--min-success", "2"], "--min-success: must be"),
        (["auto"], "the following arguments are required: --prometheus"),
        (["switch", "red"], "invalid choice: 'red'"),
    ],
)
def test_given_bad_flags_then_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = FakeStack(CANARY)
    with pytest.raises(SystemExit) as info:
        run(stack, *argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert stack.writes == 0


# --- auto: canary ------------------------------------------------------------------------------


def test_given_healthy_canary_when_auto_then_weight_reaches_100_and_promotes(
    prometheus: FakePrometheus,
) -> None:
    stack = FakeStack(CANARY)
    assert auto(stack, prometheus, "--steps", "10,50,100") == 0
    assert stack.weights_at_each_up() == [10, 50, 100, 0]
    assert stack.data["moontv:image"]["tag"] == "v2"
    assert "version" not in stack.release["canary"]
    assert stack.release["lastDecision"]["action"] == "promote"


def test_given_auto_then_health_is_checked_before_each_step_and_it_waits_the_interval(
    prometheus: FakePrometheus,
) -> None:
    stack = FakeStack(CANARY)
    slept: list[float] = []
    ctx = commands.Context(stack=stack, out=lambda line: None, sleep=slept.append)
    policy = HealthPolicy(prometheus.url, stack_gates(stack.outputs()))
    assert commands.auto(ctx, policy, [25, 100], 30.0) == 0
    assert slept == [30.0, 30.0]
    success_queries = [q for q in prometheus.queries if "probe_success" in q]
    assert success_queries == ['avg(avg_over_time(probe_success{track="canary"}[1m]))'] * 3


@pytest.mark.parametrize(
    ("success", "latency", "reason"),
    [
        ([0.5], [0.1], "step 1/3 at 0%: success rate too low: success 0.5 (min 0.99)"),
        ([1.0, 1.0, 0.9], [0.1], "step 3/3 at 50%: success rate too low: success 0.9"),
        ([1.0, 1.0, 1.0, 0.9], [0.1], "final check at 100%: success rate too low"),
        (
            [1.0],
            [0.1, 0.9],
            "step 2/3 at 10%: p99 latency too high: success 1 (min 0.99), p99 900 ms (max 500)",
        ),
        ([None], [0.1], "step 1/3 at 0%: metrics unavailable: "),
    ],
)
def test_given_unhealthy_canary_when_auto_then_weight_back_to_0_and_reason_recorded(
    prometheus: FakePrometheus,
    success: list[float | None],
    latency: list[float | None],
    reason: str,
) -> None:
    prometheus.success, prometheus.latency = success, latency
    stack = FakeStack(CANARY)
    assert auto(stack, prometheus, "--steps", "10,50,100") == 1
    assert stack.weights_at_each_up()[-1] == 0
    assert stack.release["canary"] == {"version": "v2", "weight": 0}
    decision = stack.release["lastDecision"]
    assert decision["action"] == "rollback"
    assert decision["reason"].startswith(reason)
    assert stack.data["moontv:image"] == IMAGE


def test_given_canary_already_at_25_when_auto_then_it_continues_from_there(
    prometheus: FakePrometheus,
) -> None:
    stack = FakeStack({"strategy": "canary", "canary": {"version": "v2", "weight": 25}})
    assert auto(stack, prometheus, "--steps", "10,25,50,100") == 0
    assert stack.weights_at_each_up() == [50, 100, 0]


def test_given_smoke_url_failing_when_auto_then_rolls_back(prometheus: FakePrometheus) -> None:
    prometheus.smoke_status = 503
    stack = FakeStack(CANARY)
    assert auto(stack, prometheus, "--smoke-url", prometheus.url + "/smoke") == 1
    assert (
        f"smoke GET {prometheus.url}/smoke answered 503" in stack.release["lastDecision"]["reason"]
    )
    assert prometheus.smoke_headers[0]["x-moontv-canary"] == "always"


def test_given_healthy_smoke_url_when_auto_then_it_is_checked_each_step(
    prometheus: FakePrometheus,
) -> None:
    stack = FakeStack(CANARY)
    assert (
        auto(stack, prometheus, "--steps", "50,100", "--smoke-url", prometheus.url + "/smoke") == 0
    )
    assert len(prometheus.smoke_headers) == 3


def test_given_up_fails_mid_rollout_then_auto_rolls_back_and_records_it(
    prometheus: FakePrometheus,
) -> None:
    stack = FakeStack(CANARY, fail_up={2})
    assert auto(stack, prometheus, "--steps", "10,50,100") == 1
    assert stack.weights_at_each_up() == [10, None, 0]
    assert stack.release["lastDecision"]["reason"] == (
        "step 2/3: update failed: error: update failed: resource moontv-canary timed out"
    )


def test_given_custom_queries_and_thresholds_then_auto_uses_them(
    prometheus: FakePrometheus,
) -> None:
    prometheus.success, prometheus.latency = [0.95], [0.7]
    stack = FakeStack(CANARY)
    code = auto(
        stack,
        prometheus,
        "--steps",
        "100",
        "--success-query",
        'sum(rate(probe_success{job="x",track="$track"}[5m]))',
        "--latency-query",
        'max(probe_duration_seconds{track="$track"})',
        "--min-success",
        "0.9",
        "--max-p99-ms",
        "800",
    )
    assert code == 0
    assert 'sum(rate(probe_success{job="x",track="canary"}[5m]))' in prometheus.queries


def test_given_dry_run_when_auto_then_one_preview_and_config_restored(
    prometheus: FakePrometheus,
) -> None:
    stack = FakeStack(CANARY)
    before = copy.deepcopy(stack.data)
    assert auto(stack, prometheus, "--dry-run") == 0
    assert stack.ups == []
    assert stack.previews[0]["moontv:release"]["canary"]["weight"] == 10
    assert stack.data == before


@pytest.mark.parametrize(
    ("release", "message"),
    [
        ({"strategy": "canary"}, "auto needs a canary"),
        (None, "auto needs strategy canary or blue-green, got 'rolling'"),
    ],
)
def test_given_nothing_to_roll_out_when_auto_then_exit_2(
    prometheus: FakePrometheus,
    release: dict[str, Any] | None,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = FakeStack(release)
    assert auto(stack, prometheus) == 2
    assert message in capsys.readouterr().err
    assert stack.writes == 0


def test_given_prometheus_unreachable_when_auto_then_exit_2_and_config_untouched(
    capsys: pytest.CaptureFixture[str],
) -> None:
    closed = FakePrometheus()
    url = closed.url
    closed.stop()
    stack = FakeStack(CANARY)
    assert run(stack, "auto", "--prometheus", url, "--interval", "0s") == 2
    assert f"--prometheus: vector(1): cannot reach {url}" in capsys.readouterr().err
    assert stack.writes == 0


# --- auto: blue-green ----------------------------------------------------------------------------


def test_given_healthy_preview_when_auto_blue_green_then_switches(
    prometheus: FakePrometheus,
) -> None:
    stack = FakeStack(BLUE_GREEN)
    assert auto(stack, prometheus) == 0
    assert [u["moontv:release"]["blueGreen"]["active"] for u in stack.ups] == ["green"]
    assert 'avg(avg_over_time(probe_success{track="green"}[1m]))' in prometheus.queries


def test_given_unhealthy_preview_when_auto_blue_green_then_stays_and_records_why(
    prometheus: FakePrometheus,
) -> None:
    prometheus.success = [0.2]
    stack = FakeStack(BLUE_GREEN)
    assert auto(stack, prometheus) == 1
    assert stack.release["blueGreen"]["active"] == "blue"
    assert stack.release["lastDecision"]["reason"].startswith(
        "preview green unhealthy, blue stays active: success rate too low"
    )


def test_given_colour_unhealthy_after_switch_when_auto_then_switches_back(
    prometheus: FakePrometheus,
) -> None:
    prometheus.success = [1.0, 0.3]
    stack = FakeStack(BLUE_GREEN)
    assert auto(stack, prometheus) == 1
    assert [u["moontv:release"]["blueGreen"]["active"] for u in stack.ups] == ["green", "blue"]
    assert stack.release["lastDecision"]["action"] == "rollback"
    assert "green unhealthy after the switch" in stack.release["lastDecision"]["reason"]


# --- pieces ----------------------------------------------------------------------------------


def test_diff_sets_changed_leaves_and_removes_missing_ones() -> None:
    old = {"strategy": "canary", "canary": {"version": "v2", "weight": 10}}
    new = {"strategy": "canary", "canary": {"weight": 0}, "blueGreen": {"scaleDownInactive": True}}
    assert diff("moontv:release", old, new) == (
        {"moontv:release.canary.weight": "0", "moontv:release.blueGreen.scaleDownInactive": "true"},
        ["moontv:release.canary.version"],
    )


def test_diff_removes_a_vanished_object_whole() -> None:
    old = {"strategy": "canary", "lastDecision": {"action": "promote", "reason": "r", "at": "t"}}
    assert diff("moontv:release", old, {"strategy": "canary"}) == (
        {},
        ["moontv:release.lastDecision"],
    )


@pytest.mark.parametrize(
    ("success", "message"),
    [([None], "no data"), (["NaN"], "no data (NaN)")],
)
def test_query_without_a_number_is_an_error(
    prometheus: FakePrometheus, success: list[Any], message: str
) -> None:
    prometheus.success = success
    with pytest.raises(QueryError, match=re.escape(message)):
        query(prometheus.url, "probe_success")


def test_query_with_an_error_status_names_the_query(prometheus: FakePrometheus) -> None:
    with pytest.raises(QueryError, match=r"^up: HTTP 400 from http://127\.0\.0\.1:\d+$"):
        query(prometheus.url, "up")


def test_check_reports_measurements_when_healthy(prometheus: FakePrometheus) -> None:
    prometheus.success, prometheus.latency = [0.995], [0.25]
    gate = Gate("probe_success", "probe_duration_seconds", 0.99, 500)
    health = check(HealthPolicy(prometheus.url, {"canary": gate}), "canary")
    assert health.ok
    assert health.summary == "success 0.995 (min 0.99), p99 250 ms (max 500)"


# --- the gate comes from the stack ----------------------------------------------------------------


def test_given_thresholds_in_the_stack_config_when_auto_then_the_exported_gate_applies(
    prometheus: FakePrometheus,
) -> None:
    # Given the stack's own thresholds (not the code defaults) and a canary at 0.95 / 700 ms
    prometheus.success, prometheus.latency = [0.95], [0.7]
    stack = FakeStack(CANARY)
    stack.data["moontv:monitoring"]["thresholds"] = {
        "successRate": 0.9, "p99LatencyMs": 800, "successWindow": "2m"}
    # When auto runs, then the exported queries and thresholds pass it
    assert auto(stack, prometheus, "--steps", "100") == 0
    assert 'avg(avg_over_time(probe_success{track="canary"}[2m]))' in prometheus.queries
    assert stack.release["lastDecision"]["reason"].startswith(
        "all steps healthy (success 0.95 (min 0.9), p99 700 ms (max 800)")


def test_given_a_stack_without_monitoring_when_auto_then_exit_2_naming_the_output(
    prometheus: FakePrometheus, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = FakeStack(CANARY)
    stack.data["moontv:monitoring"] = {"enabled": False}
    assert auto(stack, prometheus) == 2
    assert "no health gate for track canary: the stack exports none (output healthQueries" in (
        capsys.readouterr().err)
    assert stack.ups == [] and stack.writes == 0


def test_engine_env_defaults_to_the_project_file_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert engine_env("dev", tmp_path) == {
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_BACKEND_URL": f"file://{tmp_path}/.pulumi-state",
        "PULUMI_CONFIG_PASSPHRASE": "",
    }
    assert "PULUMI_CONFIG_PASSPHRASE" not in engine_env("prod", tmp_path)
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file:///elsewhere")
    assert "PULUMI_BACKEND_URL" not in engine_env("dev", tmp_path)


@pytest.mark.parametrize("script", ["canary-deploy.sh", "blue-green-deploy.sh"])
def test_deploy_scripts_have_help_and_refuse_missing_arguments(script: str) -> None:
    path = ROOT / "scripts" / script
    shown = subprocess.run(
        ["bash", str(path), "--help"], check=False, capture_output=True, text=True
    )
    assert shown.returncode == 0
    assert shown.stdout.startswith(f"Usage: scripts/{script} --stack STACK --version VERSION")
    missing = subprocess.run(
        ["bash", str(path), "--stack", "dev"], check=False, capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert "--stack and --version are required" in missing.stderr


def test_decode_config_reads_objects_scalars_and_hides_secrets() -> None:
    entries = {
        "moontv:release": {
            "value": '{"strategy":"canary"}',
            "objectValue": {"strategy": "canary"},
            "secret": False,
        },
        "moontv:replicas": {"value": "2", "secret": False},
        "moontv:environment": {"value": "dev", "secret": False},
        "moontv:ownerPassword": {"value": "[secret]", "secret": True},
        "kubernetes:context": {"value": "kind", "secret": False},
    }
    assert decode_config(entries) == {
        "moontv:release": {"strategy": "canary"},
        "moontv:replicas": 2,
        "moontv:environment": "dev",
        "moontv:ownerPassword": "[secret]",
    }


def test_engine_errors_keep_the_useful_tail() -> None:
    from pulumi.automation._cmd import CommandResult
    from pulumi.automation.errors import CommandError

    only_stdout = CommandError(
        CommandResult("Updating\n  2 errored\nerror: plugin missing\n", "", 255)
    )
    assert error_tail(only_stdout) == "Updating\n  2 errored\nerror: plugin missing"
    with_stderr = CommandError(CommandResult("noise", "error: stack is locked\n", 255))
    assert error_tail(with_stderr) == "error: stack is locked"


# --- the deployment workflow's failure step -------------------------------------------------------

CANDIDATE = f"v2@{DIGEST}"


def failure_step(stack: FakeStack, job: str = "testing") -> int:
    """Run the `Roll back on failure` step of deployment.yml's ``job`` (its own command line,
    with the job's VERSION) against ``stack``."""
    import shlex

    workflow = yaml.safe_load((ROOT / ".github/workflows/deployment.yml").read_text())
    (step,) = [s for s in workflow["jobs"][job]["steps"] if s.get("name") == "Roll back on failure"]
    env = {"VERSION": CANDIDATE, "GITHUB_RUN_ID": "42"}
    words = shlex.split(re.sub(r"\$(\w+)", lambda m: env[m.group(1)], step["run"]))
    assert words[:3] == ["venv/bin/python", "-m", "rollout"], words
    return run(stack, *words[3:])


def bg(active: str, green: str | None = CANDIDATE) -> dict[str, Any]:
    colours: dict[str, Any] = {"blue": "v1", "active": active}
    if green is not None:
        colours["green"] = green
    return {"strategy": "blue-green", "blueGreen": colours}


@pytest.mark.parametrize(
    ("success", "reason"),
    [
        ([0.2], "preview green unhealthy, blue stays active"),
        ([1.0, 0.3], "green unhealthy after the switch"),
    ],
)
def test_given_auto_rolled_back_blue_green_when_the_failure_step_runs_then_blue_stays_active(
    prometheus: FakePrometheus, success: list[float], reason: str
) -> None:
    prometheus.success = list(success)
    stack = FakeStack(bg("blue"))
    assert auto(stack, prometheus) == 1
    ups = len(stack.ups)
    assert failure_step(stack) == 0
    assert failure_step(stack) == 0  # idempotent
    assert stack.release["blueGreen"]["active"] == "blue"
    assert len(stack.ups) == ups  # nothing to change, no up
    assert reason in stack.release["lastDecision"]["reason"]


def test_given_prometheus_unreachable_when_the_failure_step_runs_then_the_preview_stays_off(
    prometheus: FakePrometheus,
) -> None:
    url = prometheus.url
    prometheus.stop()
    stack = FakeStack(bg("blue"))
    assert run(stack, "auto", "--prometheus", url, "--interval", "0s") == 2
    assert failure_step(stack) == 0
    assert stack.release["blueGreen"]["active"] == "blue" and stack.ups == []


def test_given_the_candidate_active_when_post_fails_then_the_failure_step_switches_back_once() -> (
    None
):
    stack = FakeStack(bg("green"))
    assert failure_step(stack) == 0
    assert [u["moontv:release"]["blueGreen"]["active"] for u in stack.ups] == ["blue"]
    assert failure_step(stack) == 0
    assert len(stack.ups) == 1


def test_given_a_failure_before_the_candidate_was_staged_then_nothing_is_switched() -> None:
    stack = FakeStack(bg("green", green="v0"))  # the previous release is active, no candidate
    assert failure_step(stack) == 0
    assert stack.release["blueGreen"]["active"] == "green" and stack.ups == []


def test_given_canary_promoted_when_post_fails_then_the_previous_stable_comes_back(
    prometheus: FakePrometheus,
) -> None:
    stack = FakeStack({"strategy": "canary", "canary": {"version": CANDIDATE, "weight": 0}})
    assert auto(stack, prometheus) == 0
    assert stack.data["moontv:image"]["tag"] == "v2"
    assert failure_step(stack, "staging") == 0
    assert stack.data["moontv:image"] == IMAGE
    assert stack.release["canary"] == {"version": CANDIDATE, "weight": 0}
    assert stack.release["lastDecision"]["action"] == "rollback"
    ups = len(stack.ups)
    assert failure_step(stack, "staging") == 0
    assert len(stack.ups) == ups


def test_given_canary_taking_traffic_when_the_failure_step_runs_then_weight_0() -> None:
    stack = FakeStack({"strategy": "canary", "canary": {"version": CANDIDATE, "weight": 25}})
    assert failure_step(stack, "staging") == 0
    assert stack.release["canary"]["weight"] == 0 and len(stack.ups) == 1
    assert failure_step(stack, "staging") == 0
    assert len(stack.ups) == 1


def test_given_a_second_rollback_then_the_first_reason_is_kept() -> None:
    stack = FakeStack({"strategy": "canary", "canary": {"version": "v2", "weight": 25}})
    assert run(stack, "rollback", "--reason", "p99 too high") == 0
    assert run(stack, "rollback", "--reason", "post failed") == 0
    reason = stack.release["lastDecision"]["reason"]
    assert reason.startswith("post failed; earlier rollback at ") and reason.endswith(
        ": p99 too high"
    )


def test_given_a_built_repository_when_staged_config_only_then_no_up_and_the_stack_names_it() -> (
    None
):
    stack = FakeStack(bg("blue", green=None), stack="testing")
    code = run(stack, "stage", CANDIDATE, "--repository", "ghcr.io/acme/moontv", "--config-only")
    assert code == 0
    assert stack.ups == [] and stack.writes == 1
    assert stack.data["moontv:image"]["repository"] == "ghcr.io/acme/moontv"
    assert stack.release["blueGreen"]["green"] == CANDIDATE
    assert stack.release["lastDecision"]["action"] == "stage"


def test_given_a_whole_up_then_the_policy_pack_runs_and_a_route_step_skips_it(
    tmp_path: Path,
) -> None:
    from rollout.stack import PulumiStack

    calls: list[dict[str, Any]] = []

    class Recorder:
        def up(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    stack = PulumiStack.__new__(PulumiStack)
    stack._stack = Recorder()  # type: ignore[attr-defined]
    stack._on_output = print  # type: ignore[attr-defined]
    stack._policy_packs = [str(ROOT / "policy")]  # type: ignore[attr-defined]
    stack.up()
    stack.up(ROUTE_TARGETS)
    assert calls[0]["policy_packs"] == [str(ROOT / "policy")] and calls[0]["target"] is None
    assert calls[1]["policy_packs"] is None and calls[1]["target"] == list(ROUTE_TARGETS)


def test_given_no_samples_yet_when_auto_starts_then_it_waits_for_them_and_goes_on(
    prometheus: FakePrometheus,
) -> None:
    """A candidate the pipeline's up deployed moments ago has no samples at the first check:
    auto waits (polling) up to --interval for them instead of rolling back a healthy release."""
    prometheus.success = [None, None, 1.0]
    stack = FakeStack(CANARY)
    slept: list[float] = []
    lines: list[str] = []
    ctx = commands.Context(stack=stack, out=lines.append, sleep=slept.append)
    policy = HealthPolicy(prometheus.url, stack_gates(stack.outputs()))
    assert commands.auto(ctx, policy, [25, 100], 30.0) == 0, lines
    assert slept[:2] == [commands.SAMPLES_POLL] * 2 and slept[2:] == [30.0, 30.0], slept
    assert any("first samples after 10s" in line for line in lines), lines
    assert stack.release.get("lastDecision", {}).get("action") == "promote"


def test_given_no_samples_within_the_interval_when_auto_starts_then_it_rolls_back(
    prometheus: FakePrometheus,
) -> None:
    prometheus.success = [None]
    stack = FakeStack(CANARY)
    slept: list[float] = []
    ctx = commands.Context(stack=stack, out=lambda line: None, sleep=slept.append)
    policy = HealthPolicy(prometheus.url, stack_gates(stack.outputs()))
    assert commands.auto(ctx, policy, [25, 100], 12.0) != 0
    assert slept == [5.0, 5.0, 2.0], slept  # the whole interval, then no more
    assert stack.weights_at_each_up() == [0]
    decision = stack.release["lastDecision"]
    assert decision["action"] == "rollback" and "no data" in decision["reason"], decision
