"""The HorizontalPodAutoscaler under load on the real node, through the engine and the node's
Gateway on 127.0.0.1, with metrics-server: the twin's ``/api/burn`` route spends a known amount
of CPU per request, so a bounded load raises the primary's replicas and, once it stops, the HPA
brings them back (a short scale-down window, set for this stack only through
``autoscaling.behavior``).

With the HPA scaled up, a blue-green switch, a strategy change, a canary promotion and a
rolling update move the traffic only to at least as many Ready replicas as the outgoing primary
had (``components/kubernetes/capacity.py``) and lose no request of the load; the colour that
lost the traffic keeps its replicas for ``release.blueGreen.scaleDownDelaySeconds``; an ``up``
with nothing to change, while the HPA holds 5 replicas, leaves 5. Each event prints the load's
p99 before it and while the traffic moved; the bound (at most twice) is asserted by the test
marked ``bench`` (``make bench-release``, alone on the machine): beside CI's other groups on the
two cores, or other sessions' node tests, the starting pods of the incoming primary and the
other groups' work set those figures, not the release.

One stack (its own namespace and host, and its own name for the twin's images on the node)
walks through these in file order; the last test destroys it. Figures are printed with an
``[autoscaling]`` prefix, and collected by ``benchmarks/node_release.py``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from components.image_settings import reported_version
from tests.helpers import blue_green, canary
from tests.integration import images
from tests.integration import node as node_host
from tests.integration import swarm_load as load
from tests.integration.engine import Project, changes, require_engine
from tests.integration.test_node_engine import (  # noqa: F401  (node_images is a fixture)
    CONFIG,
    OWNER,
    OWNER_PASSWORD,
    node_images,
)

# The `node` group (the shorter of the two node groups: tests/README.md).
pytestmark = [pytest.mark.integration, pytest.mark.ci_group("swarm")]
STACK = "node"
NAMESPACE = "moontv-autoscaling"
HOST = "autoscaling.node.local"
STABLE, CANDIDATE = "v100.1.1", "v100.1.2"
#: The twin's images under this module's own name on the node (``Node.import_as``).
REPOSITORY = "moontv.local/lunatv-twin-autoscaling"
IMAGE = {**CONFIG["moontv:image"], "repository": REPOSITORY}
VERSION = {tag: reported_version(tag) for tag in (STABLE, CANDIDATE)}
MIN, MAX = 2, 5
#: Seconds the colour that lost the traffic keeps its replicas (short for the test, longer
#: than the switching `up` and its settling, counted from the start of that `up`).
DELAY = 120
#: The test stack's HPA: up by at most 2 pods per 15 s (fewer pods starting at once on the two
#: cores), down after 45 s at a lower need (Kubernetes' default: 300 s; long enough that the
#: new pods' first, low CPU samples after a switch do not shrink the incoming primary).
AUTOSCALING = {
    "enabled": True, "minReplicas": MIN, "maxReplicas": MAX, "targetCpu": 50,
    "behavior": {
        "scaleUp": {"stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}]},
        "scaleDown": {"stabilizationWindowSeconds": 45,
                      "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
    },
}
#: The app pods request 50m of CPU (the default is 100m): the node's two cores are allocated
#: to every stack on it, and this one runs up to 16 app pods at once (two colours at 5 during
#: the scale-down delay, then stable at 5 beside them).
RESOURCES = {"requests": {"cpu": "50m"}}
#: The load: 10 requests/s of 25 ms of CPU each (a quarter of a core and the app's own work
#: per request: above the HPA's target of 50 % of the 50m request even at 5 pods), from 6
#: clients.
BURN = "/api/burn?ms=25"
RATE = 10.0
CONCURRENCY = 6
#: Seconds of load before an event whose p99 is the reference.
BEFORE_SECONDS = 20.0
#: Seconds either side of the new version's first answer: the window of the traffic moving.
MOVE_WINDOW = 10.0
SCALE_TIMEOUT = 240
READY_TIMEOUT = 300
#: Figures for the bench target, printed at the end of the module.
FIGURES: dict[str, Any] = {}


@dataclass
class Scaled:
    node: Any
    stack: auto.Stack
    cookie: str = ""

    @property
    def port(self) -> int:
        port = urllib.parse.urlsplit(self.node.gateway).port
        assert port is not None
        return port

    def set_config(self, **values: Any) -> None:
        """Write ``moontv:`` objects to the stack config file."""
        file = Path(self.stack.workspace.work_dir) / f"Pulumi.{STACK}.yaml"
        settings = yaml.safe_load(file.read_text())
        settings["config"].update({f"moontv:{k}": v for k, v in values.items()})
        file.write_text(yaml.safe_dump(settings))

    def up(self) -> dict[str, int]:
        result = self.stack.up()
        assert result.summary.result == "succeeded"
        return changes(result.summary.resource_changes)


def stack_config(node) -> dict[str, Any]:
    return {
        **CONFIG,
        "moontv:namespace": NAMESPACE,
        "moontv:traffic": {**CONFIG["moontv:traffic"], "host": HOST},
        "moontv:kubernetes": {"context": node.context, "kubeconfig": node.kubeconfig},
        "moontv:monitoring": {"enabled": False},
        "moontv:image": {**IMAGE, "tag": STABLE},
        "moontv:autoscaling": AUTOSCALING,
        "moontv:resources": RESOURCES,
        "moontv:release": blue_green("blue", blue=STABLE, green=CANDIDATE, previewReplicas=1,
                                     scaleDownDelaySeconds=DELAY),
    }


def deployments(node) -> dict[str, dict[str, int]]:
    """App Deployment -> its wanted and ready replicas."""
    out = node.kubectl("get", "deployments", "-n", NAMESPACE, "-l",
                       "app.kubernetes.io/component=app", "-o", "json", check=False)
    items = json.loads(out or '{"items": []}')["items"]
    return {d["metadata"]["name"]: {"wanted": d["spec"].get("replicas", 1),
                                    "ready": d["status"].get("readyReplicas") or 0}
            for d in items}


def hpa(node) -> dict[str, Any]:
    out = json.loads(node.kubectl("get", "hpa", "-n", NAMESPACE, "moontv", "-o", "json"))
    status = out.get("status", {})
    return {"target": out["spec"]["scaleTargetRef"]["name"],
            "current": status.get("currentReplicas"), "desired": status.get("desiredReplicas")}


@dataclass
class Timeline:
    """Every change of the app Deployments' wanted and ready replicas, as a watch of the API
    server delivers it (so the count at a given moment is exact, not a poll's)."""

    samples: list[tuple[float, dict[str, dict[str, int]]]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def record(self, name: str, wanted: int, ready: int) -> None:
        state = {k: dict(v) for k, v in (self.samples[-1][1] if self.samples else {}).items()}
        if state.get(name) != {"wanted": wanted, "ready": ready}:
            state[name] = {"wanted": wanted, "ready": ready}
            self.samples.append((time.monotonic(), state))

    def ready_at(self, name: str, moment: float) -> int:
        """``name``'s ready replicas at ``moment``."""
        before = [s for t, s in self.samples if t <= moment] or [self.samples[0][1]]
        return before[-1].get(name, {}).get("ready", 0)

    def lowest(self, name: str, since: float, until: float) -> int:
        """``name``'s fewest ready replicas from ``since`` to ``until``."""
        inside = [s for t, s in self.samples if since <= t <= until]
        return min((s.get(name, {}).get("ready", 0)
                    for s in [*inside, {name: {"ready": self.ready_at(name, since)}}]), default=0)

    def lines(self, since: float = 0.0) -> str:
        rows = []
        for moment, state in self.samples:
            if moment < since:
                continue
            counts = " ".join(f"{n.removeprefix('moontv-')}={v['ready']}/{v['wanted']}"
                              for n, v in sorted(state.items()))
            rows.append(f"  {moment - self.started:6.1f}s {counts}")
        return "\n".join(rows)


@contextmanager
def watched(node) -> Iterator[Timeline]:
    """A :class:`Timeline` of the stack's app Deployments, kept by a watch in a thread."""
    from kubernetes import client, watch
    from kubernetes import config as kube_config

    api = client.AppsV1Api(kube_config.new_client_from_config(config_file=node.kubeconfig,
                                                              context=node.context))
    timeline = Timeline()
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            for event in watch.Watch().stream(
                    api.list_namespaced_deployment, NAMESPACE,
                    label_selector="app.kubernetes.io/component=app", timeout_seconds=2):
                item = event["object"]
                if event["type"] == "DELETED":
                    continue
                timeline.record(item.metadata.name, item.spec.replicas or 0,
                                item.status.ready_replicas or 0)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert node_host.wait_until(lambda: timeline.samples, 30, interval=0.2)
    try:
        yield timeline
    finally:
        stop.set()
        thread.join(timeout=30)


class FirstSeen:
    """A load label that also notes when each version first answered (monotonic time)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(self, body: str) -> str | None:
        version = load.server_version(body)
        if version:
            with self.lock:
                self.at.setdefault(version, time.monotonic())
        return version


def burn(scaled: Scaled, label: load.Label = load.server_version) -> load.Continuous:
    return load.Continuous(scaled.port, HOST, concurrency=CONCURRENCY, path=BURN, label=label,
                           headers={"Cookie": scaled.cookie}, rate=RATE)


def login(node) -> str:
    status, headers, body = node_host.gateway_request(
        node.gateway, HOST, "POST", "/api/login", {"username": OWNER, "password": OWNER_PASSWORD})
    assert status == 200, body
    return headers["set-cookie"].split(";", 1)[0]


def wait_settled(node) -> None:
    node_host.wait_settled(node, NAMESPACE, READY_TIMEOUT)


@pytest.fixture(scope="module")
def scaled(node, node_images, tmp_path_factory):  # noqa: F811
    for tag in (STABLE, CANDIDATE):
        node.import_as(node_images[f"{images.APP_REPOSITORY}:{tag}"], f"{REPOSITORY}:{tag}")
    project = Project(tmp_path_factory.mktemp("node-autoscaling"), require_engine())
    stack = project.stack(STACK, stack_config(node),
                          secrets={"moontv:ownerPassword": OWNER_PASSWORD})
    try:
        assert stack.up().summary.result == "succeeded"
        wait_settled(node)
        yield Scaled(node, stack, login(node))
    finally:
        print("\n[autoscaling] figures " + json.dumps(FIGURES, sort_keys=True))
        stack.destroy()


def primary_at_least(node, name: str, count: int) -> bool:
    return deployments(node).get(name, {}).get("ready", 0) >= count


def test_given_a_bounded_load_then_the_primary_scales_up_by_two_or_more_and_back_down(scaled):
    node = scaled.node
    # the first up leaves the count to the HPA, which raises it to its minimum
    at_min = node_host.wait_until(
        lambda: deployments(node)["moontv-blue"] == {"wanted": MIN, "ready": MIN}, 180)
    assert at_min, deployments(node)
    with watched(node) as timeline:
        started = time.monotonic()
        with burn(scaled) as traffic:
            up = node_host.wait_until(lambda: primary_at_least(node, "moontv-blue", MIN + 2),
                                      SCALE_TIMEOUT)
            first = next((t for t, s in timeline.samples
                          if s.get("moontv-blue", {}).get("wanted", 0) > MIN), time.monotonic())
            node_host.wait_until(lambda: hpa(node)["current"] == MAX, 60)
            tally = traffic.stop()
        stopped = time.monotonic()
        down = node_host.wait_until(
            lambda: deployments(node)["moontv-blue"]["wanted"] == MIN, SCALE_TIMEOUT)
        back = time.monotonic()
    peak = max(s.get("moontv-blue", {}).get("ready", 0) for _, s in timeline.samples)
    print(f"\n[autoscaling] {RATE:g} requests/s of {BURN}: first scale-up "
          f"{first - started:.0f} s after the load began, peak {peak} ready; back to {MIN} "
          f"{back - stopped:.0f} s after it stopped; {len(tally.failures)} failed of "
          f"{tally.total}, p99 {tally.percentile_ms(0.99):.0f} ms\n[autoscaling] replicas "
          f"(ready/wanted) over time:\n{timeline.lines()}")
    FIGURES["HPA: first scale-up after the load began (s)"] = round(first - started)
    FIGURES["HPA: peak ready replicas"] = peak
    FIGURES["HPA: back to the minimum after the load stopped (s)"] = round(back - stopped)
    assert up, f"the primary never reached {MIN + 2} ready replicas\n{timeline.lines()}"
    assert peak >= MIN + 2
    assert down, f"the primary did not come back to {MIN}\n{timeline.lines()}"
    assert tally.failures == [], tally.failures[:5]


@dataclass
class Event:
    name: str
    before: load.Tally
    during: load.Tally
    ready_before: int  # the outgoing primary's ready replicas when the event began
    ready_when_moved: int  # the incoming primary's when its version first answered
    #: the incoming primary's fewest ready replicas from then to the end (the HPA may lower
    #: it once it measures the new pods: printed, not a claim of the program)
    lowest: int
    moved: float  # when the new version first answered (time.monotonic())
    up_changes: dict[str, int]

    @property
    def p99_before(self) -> float:
        return self.before.percentile_ms(0.99)

    @property
    def p99_moving(self) -> float:
        """p99 of the requests sent from MOVE_WINDOW s before the new version first answered
        to MOVE_WINDOW s after: the traffic moving to the incoming primary."""
        return self.during.percentile_ms(0.99, self.moved - MOVE_WINDOW, self.moved + MOVE_WINDOW)

    def report(self) -> str:
        return (f"[autoscaling] {self.name}: outgoing primary {self.ready_before} ready, "
                f"incoming {self.ready_when_moved} ready when its version first answered "
                f"(fewest after: {self.lowest}); failed {len(self.during.failures)} of "
                f"{self.during.total}; p99 before {self.p99_before:.0f} ms "
                f"({self.before.total} requests), while the traffic moved "
                f"{self.p99_moving:.0f} ms ({self.p99_moving / self.p99_before:.2f}x), over the "
                f"whole up {self.during.percentile_ms(0.99):.0f} ms; up: {self.up_changes}")

    def check(self) -> None:
        FIGURES[f"{self.name}: failed/total"] = f"{len(self.during.failures)}/{self.during.total}"
        FIGURES[f"{self.name}: ready replicas, outgoing -> incoming when moved"] = (
            f"{self.ready_before} -> {self.ready_when_moved}")
        FIGURES[f"{self.name}: p99 before / moving (ms)"] = (
            f"{self.p99_before:.0f} / {self.p99_moving:.0f}")
        assert self.during.failures == [], (self.name, self.during.failures[:5])
        assert self.ready_when_moved >= self.ready_before, self.report()


def event_under_load(scaled: Scaled, name: str, outgoing: str, incoming: str, new_version: str,
                     **config: Any) -> Event:
    """With the burn load on and the HPA holding ``outgoing`` at its maximum, write ``config``
    and run ``up``: the load's p99 over ``BEFORE_SECONDS`` before, then during the ``up``
    until every old pod is gone; the incoming primary's ready replicas when ``new_version``
    first answered."""
    node = scaled.node
    with watched(node) as timeline, burn(scaled) as warm:
        assert node_host.wait_until(lambda: primary_at_least(node, outgoing, MIN + 2),
                                    SCALE_TIMEOUT), timeline.lines()
        # steady: the HPA at its peak for the load before the reference window
        node_host.wait_until(lambda: hpa(node)["current"] == MAX, 60)
        warm.stop()
        with burn(scaled) as reference:
            time.sleep(BEFORE_SECONDS)
        before = reference.stop()
        ready_before = deployments(node)[outgoing]["ready"]
        seen = FirstSeen()
        with burn(scaled, label=seen) as traffic:
            started = time.monotonic()
            scaled.set_config(**config)
            changed = scaled.up()
            wait_settled(node)
            time.sleep(MOVE_WINDOW)
            during = traffic.stop()
        ended = time.monotonic()
    moved = seen.at.get(VERSION[new_version], ended)
    event = Event(name, before, during, ready_before, timeline.ready_at(incoming, moved),
                  timeline.lowest(incoming, moved, ended), moved, changed)
    print(f"\n{event.report()}\n[autoscaling] replicas (ready/wanted) from the up "
          f"({started - timeline.started:.1f} s); the new version first answered at "
          f"{moved - timeline.started:.1f} s:\n{timeline.lines(started - 5)}")
    return event


def annotation(node, deployment: str, key: str) -> str | None:
    out = json.loads(node.kubectl("get", "deployment", "-n", NAMESPACE, deployment, "-o", "json"))
    return (out["metadata"].get("annotations") or {}).get(key)


def test_given_the_hpa_scaled_up_when_blue_green_switches_then_green_carries_it_at_once(scaled):
    event = event_under_load(
        scaled, "blue-green switch", "moontv-blue", "moontv-green", CANDIDATE,
        release=blue_green("green", blue=STABLE, green=CANDIDATE, previewReplicas=1,
                           scaleDownDelaySeconds=DELAY))
    event.check()
    node = scaled.node
    # the old colour keeps its replicas for the delay, then the next up scales it down
    kept = deployments(node)["moontv-blue"]["wanted"]
    since = annotation(node, "moontv-blue", "moontv.io/primary-until")
    print(f"[autoscaling] after the switch blue keeps {kept} replicas (primary until {since})")
    assert kept >= event.ready_before and since
    until = datetime.fromisoformat(since.replace("Z", "+00:00")) + timedelta(seconds=DELAY)
    assert datetime.now(UTC) < until - timedelta(seconds=10), (since, "the switch took too long")
    within = scaled.up()  # within the delay: blue stays
    assert deployments(node)["moontv-blue"]["wanted"] == kept, within
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 2)
    scaled.up()
    wait_settled(node)
    assert deployments(node)["moontv-blue"]["wanted"] == 1
    assert annotation(node, "moontv-blue", "moontv.io/primary-until") is None


def test_given_the_hpa_scaled_up_when_a_canary_is_promoted_then_stable_keeps_its_capacity(scaled):
    # to canary (stable, the incoming primary, sized to green's ready replicas) with the
    # candidate staged at 20 %
    image = {**IMAGE, "tag": STABLE}
    staged = event_under_load(scaled, "blue-green -> canary at 20 %", "moontv-green",
                              "moontv-stable", STABLE, image=image,
                              release=canary(20, CANDIDATE, replicas=1))
    staged.check()
    promoted = event_under_load(scaled, "canary promotion", "moontv-stable", "moontv-stable",
                                CANDIDATE, image={**image, "tag": CANDIDATE},
                                release={"strategy": "canary", "canary": {"weight": 0}})
    promoted.check()


def test_given_the_hpa_scaled_up_when_the_version_rolls_then_no_capacity_is_lost(scaled):
    event = event_under_load(scaled, "rolling update", "moontv-stable", "moontv-stable", STABLE,
                             image={**IMAGE, "tag": STABLE},
                             release={"strategy": "rolling"})
    event.check()


def test_given_the_hpa_holds_5_when_up_has_nothing_to_change_then_5_stay(scaled):
    node = scaled.node
    with burn(scaled) as traffic:
        assert node_host.wait_until(
            lambda: hpa(node)["current"] == MAX and primary_at_least(node, "moontv-stable", MAX),
            SCALE_TIMEOUT), (hpa(node), deployments(node))
        first = scaled.up()
        after_first = deployments(node)["moontv-stable"]
        second = scaled.up()
        time.sleep(5)
        after_second = deployments(node)["moontv-stable"]
        tally = traffic.stop()
    print(f"\n[autoscaling] no-op up with the HPA at {MAX}: changes {first}, then {second}; "
          f"stable {after_first} after the first, {after_second} after the second; "
          f"{len(tally.failures)} failed of {tally.total}")
    assert after_first["wanted"] == MAX and after_second["wanted"] == MAX
    assert second == {}
    assert tally.failures == []


@pytest.mark.bench  # make bench-release: alone on the machine
def test_given_the_hpa_scaled_up_when_the_traffic_moves_then_p99_stays_within_twice(scaled):
    """A strategy change to blue-green (the incoming colour sized to the stable track's ready
    replicas) with the HPA scaled up: p99 while the traffic moves at most twice p99 before."""
    event = event_under_load(
        scaled, "rolling -> blue-green", "moontv-stable", "moontv-blue", CANDIDATE,
        image={**IMAGE, "tag": STABLE},
        release=blue_green("blue", blue=CANDIDATE, green=STABLE, previewReplicas=1,
                           scaleDownDelaySeconds=DELAY))
    event.check()
    assert event.p99_moving <= 2 * event.p99_before, event.report()


def test_given_the_autoscaling_stack_when_destroyed_then_its_namespace_is_empty(scaled):
    scaled.stack.destroy()

    def gone() -> bool:
        return not scaled.node.kubectl("get", "all", "-n", NAMESPACE, "-o", "name",
                                       "--ignore-not-found", check=False).split()

    assert node_host.wait_until(gone, 120, interval=2)
