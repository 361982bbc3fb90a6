"""Release paths on the real node with real traffic: the canary split and its overrides, the
blue-green switch and switch-back, a rolling version change, each measured through the node's
Gateway on 127.0.0.1 with the app twin in two versions (told apart by ``/api/server-config``).

One stack (its own namespace and host, so it never meets the other node tests' stacks) is
deployed once and walked through the strategies in file order; the last test destroys it.
Figures are printed with a ``[release]`` prefix and collected by ``benchmarks/node_release.py``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from tests.helpers import blue_green, canary
from tests.integration import images
from tests.integration import node as node_host
from tests.integration import swarm_load as load
from tests.integration.engine import Project, changes, require_engine
from tests.integration.test_node_engine import (  # noqa: F401  (node_images is a fixture)
    CONFIG,
    OWNER_PASSWORD,
    node_images,
)

pytestmark = pytest.mark.integration
STACK = "node"
NAMESPACE = "moontv-release"
HOST = "release.node.local"
PREVIEW = f"preview.{HOST}"
COOKIE = "moontv-canary"
STABLE, CANARY, FAULTY = "v100.1.1", "v100.1.2", "v100.1.3-faulty"
#: A twin whose /login (the readiness probe) answers 500: its pods never get Ready.
NEVER_READY = "v100.1.4-login"
VERSION = {STABLE: "100.1.1", CANARY: "100.1.2", FAULTY: "100.1.3-faulty"}
PATH = "/api/server-config"
SAMPLE = 1000
TOLERANCE = 0.05
READY_TIMEOUT = 300
#: Load during a switch: at least this many workers for at least this long.
CONCURRENCY = 10
SWITCH_SECONDS = 30.0

#: Figures for the bench target, printed at the end of each test.
FIGURES: dict[str, Any] = {}


@dataclass
class Release:
    node: Any
    stack: auto.Stack
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        port = urllib.parse.urlsplit(self.node.gateway).port
        assert port is not None
        return port

    def set_release(self, release: dict[str, Any], **others: Any) -> None:
        """Write ``moontv:release`` (and other ``moontv:`` objects) to the stack config."""
        values = {"moontv:release": release, **{f"moontv:{k}": v for k, v in others.items()}}
        self.config.update(values)
        file = Path(self.stack.workspace.work_dir) / f"Pulumi.{STACK}.yaml"
        settings = yaml.safe_load(file.read_text())
        settings["config"].update(values)  # objects as YAML holds them; secrets kept
        file.write_text(yaml.safe_dump(settings))

    def up(self) -> dict[str, int]:
        result = self.stack.up()
        assert result.summary.result == "succeeded"
        return changes(result.summary.resource_changes)

    def burst(
        self, total: int = SAMPLE, host: str = HOST, headers: dict[str, str] | None = None
    ) -> load.Tally:
        return load.burst(
            self.port,
            host,
            total,
            concurrency=CONCURRENCY,
            headers=headers,
            path=PATH,
            label=load.server_version,
        )


def release_config(node, **overrides: Any) -> dict[str, Any]:
    return {
        **CONFIG,
        "moontv:namespace": NAMESPACE,
        "moontv:traffic": {**CONFIG["moontv:traffic"], "host": HOST},
        "moontv:kubernetes": {"context": node.context, "kubeconfig": node.kubeconfig},
        **overrides,
    }


def workloads(node) -> list[dict[str, Any]]:
    out = node.kubectl("get", "deployments,statefulsets", "-n", NAMESPACE, "-o", "json")
    return json.loads(out)["items"]


def not_ready(node) -> list[str]:
    return [
        f"{w['kind']}/{w['metadata']['name']}"
        for w in workloads(node)
        if (w["status"].get("readyReplicas") or 0) < w["spec"].get("replicas", 1)
        or (w["status"].get("updatedReplicas") or 0) < w["spec"].get("replicas", 1)
    ]


def wait_all_ready(node) -> None:
    if not node_host.wait_until(lambda: not not_ready(node), READY_TIMEOUT, interval=2):
        pods = node.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False)
        raise AssertionError(f"not Ready after {READY_TIMEOUT}s: {not_ready(node)}\n{pods}")


def replicas(node) -> dict[str, int]:
    """Replicas of the blue and green Deployments."""
    return {
        w["metadata"]["name"]: w["spec"].get("replicas", 1)
        for w in workloads(node)
        if w["metadata"]["name"] in ("moontv-blue", "moontv-green")
    }


@pytest.fixture(scope="module")
def release(node, node_images, tmp_path_factory):  # noqa: F811
    never_ready = images.build_app(
        f"{images.APP_REPOSITORY}:{NEVER_READY}", "100.1.4-login", fault="login"
    )
    node.import_images(never_ready)
    project = Project(tmp_path_factory.mktemp("node-release"), require_engine())
    config = release_config(node, **{"moontv:release": canary(10, CANARY, cookie=COOKIE)})
    stack = project.stack(STACK, config, secrets={"moontv:ownerPassword": OWNER_PASSWORD})
    started = time.monotonic()
    try:
        assert stack.up().summary.result == "succeeded"
        wait_all_ready(node)
        FIGURES["up from empty to all Ready (s)"] = round(time.monotonic() - started, 1)
        yield Release(node, stack, config)
    finally:
        stack.destroy()
        print("\n[release] figures " + json.dumps(FIGURES, sort_keys=True))


def share_of(tally: load.Tally, version: str) -> float:
    return tally.share(VERSION[version])


def assert_split(tally: load.Tally, weight: int) -> float:
    assert tally.failures == [], tally.failures[:5]
    assert tally.total >= SAMPLE
    share = share_of(tally, CANARY)
    assert abs(share - weight / 100) <= TOLERANCE, (weight, dict(tally.tracks))
    return share


def test_given_canary_weight_10_when_1000_requests_then_the_canary_serves_10_percent(release):
    share = assert_split(release.burst(), 10)
    FIGURES["split error at weight 10"] = round(abs(share - 0.10), 4)
    print(f"\n[release] weight 10: canary share {share:.3f} of {SAMPLE}")


@pytest.mark.parametrize(("value", "version"), [("always", CANARY), ("never", STABLE)])
def test_given_the_canary_header_or_cookie_then_one_track_serves_every_request(
    release, value, version
):
    by_header = release.burst(200, headers={"x-moontv-canary": value})
    by_cookie = release.burst(200, headers={"Cookie": f"theme=dark; {COOKIE}={value}"})
    for tally in (by_header, by_cookie):
        assert tally.failures == []
        assert dict(tally.tracks) == {VERSION[version]: 200}


def test_given_weight_10_when_set_to_50_then_one_resource_changes_and_the_split_follows(release):
    release.set_release(canary(50, CANARY, cookie=COOKIE))
    seen: dict[str, float] = {}
    result: dict[str, Any] = {}
    started = time.monotonic()

    def run_up() -> None:
        try:
            result["changes"] = release.up()
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            result["error"] = exc
        seen["up done"] = time.monotonic() - started

    worker = threading.Thread(target=run_up)
    worker.start()
    deadline = started + 300
    while time.monotonic() < deadline:
        probe = release.burst(40)
        if not probe.failures and share_of(probe, CANARY) >= 0.35:
            seen["split"] = time.monotonic() - started
            break
        time.sleep(0.2)
    worker.join(timeout=300)
    assert "error" not in result, result.get("error")
    assert result["changes"] == {"update": 1}
    assert "split" in seen, "the 50/50 split was never observed"
    share = assert_split(release.burst(), 50)
    FIGURES["split error at weight 50"] = round(abs(share - 0.50), 4)
    FIGURES["weight edit: up start to new split (s)"] = round(seen["split"], 1)
    FIGURES["weight edit: up duration (s)"] = round(seen["up done"], 1)
    print(
        f"\n[release] weight 50: canary share {share:.3f} of {SAMPLE}; new split seen "
        f"{seen['split']:.1f}s after up started (up took {seen['up done']:.1f}s)"
    )


def switch_under_load(release: Release, active: str, **extra: Any) -> load.Tally:
    """Set blue-green ``active`` and run ``up`` inside ≥30 s of load; return the load's tally."""
    release.set_release(blue_green(active, blue=STABLE, green=CANARY, **extra))
    with load.Continuous(
        release.port, HOST, concurrency=CONCURRENCY, path=PATH, label=load.server_version
    ) as traffic:
        started = time.monotonic()
        time.sleep(3)
        assert release.up()
        wait_all_ready(release.node)
        time.sleep(max(3.0, SWITCH_SECONDS - (time.monotonic() - started)))
        return traffic.stop()


def only_version(tally: load.Tally) -> str:
    assert len(tally.tracks) == 1, dict(tally.tracks)
    return next(iter(tally.tracks))


def test_given_blue_green_when_switched_and_switched_back_under_load_then_no_request_fails(release):
    release.set_release(blue_green("blue", blue=STABLE, green=CANARY))
    release.up()
    wait_all_ready(release.node)
    assert only_version(release.burst(100)) == VERSION[STABLE]
    assert only_version(release.burst(100, host=PREVIEW)) == VERSION[CANARY]

    to_green = switch_under_load(release, "green")
    assert to_green.failures == [], (len(to_green.failures), to_green.failures[:5])
    assert set(to_green.tracks) == {VERSION[STABLE], VERSION[CANARY]}
    assert only_version(release.burst(100)) == VERSION[CANARY]
    assert only_version(release.burst(100, host=PREVIEW)) == VERSION[STABLE]

    to_blue = switch_under_load(release, "blue")
    assert to_blue.failures == [], (len(to_blue.failures), to_blue.failures[:5])
    assert only_version(release.burst(100)) == VERSION[STABLE]
    assert only_version(release.burst(100, host=PREVIEW)) == VERSION[CANARY]
    FIGURES["blue-green switch: failed/total"] = f"{len(to_green.failures)}/{to_green.total}"
    FIGURES["blue-green switch-back: failed/total"] = f"{len(to_blue.failures)}/{to_blue.total}"
    print(
        f"\n[release] switch to green: {len(to_green.failures)} failed of {to_green.total}; "
        f"back to blue: {len(to_blue.failures)} failed of {to_blue.total}"
    )


def test_given_scale_down_inactive_then_the_inactive_colour_scales_to_0_and_back(release):
    release.set_release(blue_green("blue", blue=STABLE, green=CANARY, scaleDownInactive=True))
    release.up()
    assert replicas(release.node) == {"moontv-blue": 1, "moontv-green": 0}
    assert only_version(release.burst(100)) == VERSION[STABLE]

    release.set_release(blue_green("blue", blue=STABLE, green=CANARY))
    release.up()
    wait_all_ready(release.node)
    assert replicas(release.node) == {"moontv-blue": 1, "moontv-green": 1}
    assert only_version(release.burst(100, host=PREVIEW)) == VERSION[CANARY]


def test_given_the_release_stack_when_destroyed_then_its_namespace_is_empty(release):
    release.stack.destroy()

    def gone() -> bool:
        left = release.node.kubectl(
            "get", "all,pvc", "-n", NAMESPACE, "-o", "name", "--ignore-not-found", check=False
        ).split()
        return not left

    assert node_host.wait_until(gone, 120, interval=2)
