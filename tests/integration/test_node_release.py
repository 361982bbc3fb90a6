"""Release paths on the real node with real traffic, through the engine and the node's Gateway on
127.0.0.1, with the app twin in several versions (told apart by ``/api/server-config``): the
canary split and its overrides, the blue-green switch and switch-back, a rolling change, every
strategy change in each direction and the switch to a colour scaled to 0 (all under load), a
version that never gets Ready, ``rollout auto`` promoting a healthy canary and rolling back a
faulty one (a real Prometheus configured from the stack's own monitoring objects, gating on the
gateway's per-backend request metrics), favourites that survive, and faults (a canary pod
deleted mid ``auto``, the API server stopped during ``up``).

One stack (its own namespace and host, so it never meets the other node tests' stacks) is
deployed once and walked through the strategies in file order; the last test destroys it.
Figures are printed with a ``[release]`` prefix and collected by ``benchmarks/node_release.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from components.image_settings import reported_version
from components.monitoring.rules import PROBE_JOB
from tests.conftest import ROOT
from tests.helpers import blue_green, canary
from tests.integration import images, prometheus_objects
from tests.integration import node as node_host
from tests.integration import swarm_load as load
from tests.integration.engine import Project, changes, require_engine
from tests.integration.test_node_engine import (  # noqa: F401  (node_images is a fixture)
    CONFIG,
    OWNER,
    OWNER_PASSWORD,
    node_images,
)

# Its own CI group: it runs beside the other node tests, on the same node (tests/README.md).
pytestmark = [pytest.mark.integration, pytest.mark.ci_group("node-release")]
STACK = "node"
NAMESPACE = "moontv-release"
HOST = "release.node.local"
PREVIEW = f"preview.{HOST}"
COOKIE = "moontv-canary"
STABLE, CANARY, FAULTY = "v100.1.1", "v100.1.2", "v100.1.3-faulty"
#: A twin whose /login (the readiness probe) answers 500: its pods never get Ready.
NEVER_READY = "v100.1.4-login"
VERSION = {tag: reported_version(tag) for tag in (STABLE, CANARY, FAULTY)}
PATH = "/api/server-config"
SAMPLE = 1000
TOLERANCE = 0.05
READY_TIMEOUT = 300
#: Load during a switch: at least this many clients, at this many requests/s in all, for at
#: least this long (paced, so that the load does not take the cores the cluster needs; a gap in
#: service of 10 ms is still seen).
CONCURRENCY = 10
RATE = 100.0
SWITCH_SECONDS = 30.0

#: Favourites saved through the stack's host, checked after each switch, rollback and restart.
SAVED: list[str] = []
#: The public (no header) and canary (header) load of the last ``monitored`` block.
PUBLIC_LOAD: dict[str, load.Tally] = {}
#: When the last ``monitored`` block's load started (epoch seconds), and its pods by IP then.
WATCH: dict[str, Any] = {}
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


def wait_all_ready(node) -> None:
    """Every rollout of the stack complete and no old pod left (:func:`node.unsettled`)."""
    node_host.wait_settled(node, NAMESPACE, READY_TIMEOUT)


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
        print("\n[release] figures " + json.dumps(FIGURES, sort_keys=True))
        stack.destroy()


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


def up_under_load(release: Release, at_least: float = 0.0) -> tuple[load.Tally, dict[str, int]]:
    """Run ``up`` under load, from 3 s before it until 3 s after every old pod is gone and at
    least ``at_least`` s in all; return the load's tally and ``up``'s changes."""
    with load.Continuous(
        release.port, HOST, concurrency=CONCURRENCY, path=PATH, label=load.server_version,
        rate=RATE,
    ) as traffic:
        started = time.monotonic()
        time.sleep(3)
        changed = release.up()
        wait_all_ready(release.node)
        time.sleep(max(3.0, at_least - (time.monotonic() - started)))
        return traffic.stop(), changed


def switch_under_load(release: Release, active: str, **extra: Any) -> load.Tally:
    """Set blue-green ``active`` and run ``up`` inside ≥30 s of load; return the load's tally."""
    release.set_release(blue_green(active, blue=STABLE, green=CANARY, **extra))
    tally, changed = up_under_load(release, SWITCH_SECONDS)
    assert changed
    return tally


def call(
    release: Release, method: str, path: str, body: Any = None, cookie: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request through the Gateway to the stack's host."""
    return node_host.gateway_request(
        f"http://127.0.0.1:{release.port}", HOST, method, path, body, cookie
    )


def login(release: Release) -> str:
    status, headers, body = call(
        release, "POST", "/api/login", {"username": OWNER, "password": OWNER_PASSWORD}
    )
    assert status == 200, body
    return node_host.cookie(headers)


def save_favourite(release: Release, key: str) -> None:
    favourite = {
        "title": f"kept {key}",
        "source_name": "release",
        "year": "2026",
        "cover": "",
        "total_episodes": 1,
    }
    status, _, body = call(
        release,
        "POST",
        "/api/favorites",
        {"key": key, "favorite": favourite},
        cookie=login(release),
    )
    assert status == 200, body
    SAVED.append(key)


def favourites_kept(release: Release) -> None:
    """Every favourite saved so far is still there (whichever track answers)."""
    for _ in range(3):  # a few answers, so that more than one pod is asked
        status, _, body = call(release, "GET", "/api/favorites", cookie=login(release))
        assert status == 200, body
        assert set(SAVED) <= set(json.loads(body)), (SAVED, body[:300])


def only_version(tally: load.Tally) -> str:
    assert len(tally.tracks) == 1, dict(tally.tracks)
    return next(iter(tally.tracks))


def test_given_blue_green_when_switched_and_switched_back_under_load_then_no_request_fails(release):
    release.set_release(blue_green("blue", blue=STABLE, green=CANARY))
    release.up()
    wait_all_ready(release.node)
    assert only_version(release.burst(100)) == VERSION[STABLE]
    assert only_version(release.burst(100, host=PREVIEW)) == VERSION[CANARY]
    save_favourite(release, "release+blue-green")

    to_green = switch_under_load(release, "green")
    assert to_green.failures == [], (len(to_green.failures), to_green.failures[:5])
    assert set(to_green.tracks) == {VERSION[STABLE], VERSION[CANARY]}
    assert only_version(release.burst(100)) == VERSION[CANARY]
    assert only_version(release.burst(100, host=PREVIEW)) == VERSION[STABLE]

    favourites_kept(release)

    to_blue = switch_under_load(release, "blue")
    assert to_blue.failures == [], (len(to_blue.failures), to_blue.failures[:5])
    assert only_version(release.burst(100)) == VERSION[STABLE]
    assert only_version(release.burst(100, host=PREVIEW)) == VERSION[CANARY]
    favourites_kept(release)
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


def test_given_rolling_when_the_version_changes_under_load_then_no_request_fails(release):
    release.set_release({"strategy": "rolling"}, image={**CONFIG["moontv:image"], "tag": STABLE})
    release.up()
    wait_all_ready(release.node)
    assert only_version(release.burst(100)) == VERSION[STABLE]

    release.set_release({"strategy": "rolling"}, image={**CONFIG["moontv:image"], "tag": CANARY})
    tally, changed = up_under_load(release, SWITCH_SECONDS)
    assert changed
    assert tally.failures == [], (len(tally.failures), tally.failures[:5])
    assert set(tally.tracks) == {VERSION[STABLE], VERSION[CANARY]}
    assert only_version(release.burst(100)) == VERSION[CANARY]
    FIGURES["rolling: failed/total"] = f"{len(tally.failures)}/{tally.total}"
    print(
        f"\n[release] rolling {STABLE} -> {CANARY}: {len(tally.failures)} failed of {tally.total}"
    )


def change_under_load(release: Release, settings: dict[str, Any], tag: str) -> load.Tally:
    """Set ``moontv:release`` (and the image tag) and run ``up`` under load (an ``up`` here
    takes 20-50 s: no longer window is needed)."""
    release.set_release(settings, image={**CONFIG["moontv:image"], "tag": tag})
    return up_under_load(release)[0]


#: Every strategy change in each direction, and the switch to a colour scaled to 0, from the
#: rolling stack the test before leaves: (event, release, image tag, versions then serving).
STRATEGY_CHANGES: list[tuple[str, dict[str, Any], str, set[str]]] = [
    ("rolling -> canary", canary(10, STABLE), CANARY, {CANARY, STABLE}),
    ("canary -> blue-green", blue_green("blue", blue=CANARY, green=STABLE), CANARY, {CANARY}),
    ("blue-green -> rolling", {"strategy": "rolling"}, CANARY, {CANARY}),
    ("rolling -> blue-green (inactive scaled to 0)",
     blue_green("green", blue=STABLE, green=CANARY, scaleDownInactive=True), CANARY, {CANARY}),
    ("switch to the colour at 0",
     blue_green("blue", blue=STABLE, green=CANARY, scaleDownInactive=True), CANARY, {STABLE}),
    ("blue-green -> canary", canary(10, CANARY), STABLE, {STABLE, CANARY}),
    ("canary -> rolling", {"strategy": "rolling"}, CANARY, {CANARY}),
]


#: Replicas of the colours after the events that scale one to 0.
IDLE_COLOUR = {
    "rolling -> blue-green (inactive scaled to 0)": {"moontv-blue": 0, "moontv-green": 1},
    "switch to the colour at 0": {"moontv-blue": 1, "moontv-green": 0},
}


def test_given_load_when_the_strategy_changes_each_way_then_no_request_fails(release):
    """The routes and the host Service move only once the Deployments they point at are Ready,
    and a colour going idle is scaled down only after they moved (components/kubernetes/app.py)."""
    results: dict[str, load.Tally] = {}
    for event, settings, tag, serving in STRATEGY_CHANGES:
        tally = results[event] = change_under_load(release, settings, tag)
        FIGURES[f"{event}: failed/total"] = f"{len(tally.failures)}/{tally.total}"
        print(f"\n[release] {event}: {len(tally.failures)} failed of {tally.total}")
        assert tally.failures == [], (event, len(tally.failures), tally.failures[:5])
        after = release.burst(200)
        assert after.failures == [] and set(after.tracks) == {VERSION[v] for v in serving}, (
            event, dict(after.tracks), after.failures[:5])
        if event in IDLE_COLOUR:
            assert replicas(release.node) == IDLE_COLOUR[event], event


def test_given_a_version_that_never_gets_ready_when_up_then_up_fails_naming_the_deployment(
    release,
):
    release.set_release(
        {"strategy": "rolling"},
        image={**CONFIG["moontv:image"], "tag": NEVER_READY},
        kubernetes={**release.config["moontv:kubernetes"], "progressDeadlineSeconds": 30},
    )
    started = time.monotonic()
    with pytest.raises(auto.CommandError) as failed:
        release.stack.up()
    seconds = time.monotonic() - started
    message = str(failed.value)
    FIGURES["never-ready version: up fails after (s)"] = round(seconds, 1)
    reasons = [
        line.strip()
        for line in message.splitlines()
        if "moontv-stable" in line or "ProgressDeadline" in line or "Minimum" in line
    ]
    print(
        f"\n[release] never-ready version: up failed after {seconds:.0f}s:\n"
        + "\n".join(reasons[:6])
    )
    assert "moontv-stable" in message and "ProgressDeadlineExceeded" in message, message[-3000:]
    assert seconds < 240
    # the old pods kept serving meanwhile (maxUnavailable 0)
    assert only_version(release.burst(100)) == VERSION[CANARY]
    release.set_release(
        {"strategy": "rolling"},
        image={**CONFIG["moontv:image"], "tag": CANARY},
        kubernetes={**release.config["moontv:kubernetes"], "progressDeadlineSeconds": 300},
    )
    release.up()
    wait_all_ready(release.node)


# --- rollout auto against a Prometheus configured from the program's own objects -------------


def traffic_gate(namespace: str) -> list[str]:
    """The gateway's per-backend request metrics as the gate's queries ($track: the track):
    success ratio and p99 of the real requests each track's Service answered."""
    service = f'service=~".*-svc-{namespace}-moontv-$track-.*"'
    requests = f"sum(rate(traefik_service_requests_total{{{service}}}[20s]))"
    errors = f'sum(rate(traefik_service_requests_total{{{service},code=~"5.."}}[20s]))'
    success = f"1 - ({errors} or vector(0)) / {requests}"
    latency = (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(traefik_service_request_duration_seconds_bucket{{{service}}}[20s])))"
    )
    return ["--success-query", success, "--latency-query", latency]


@contextlib.contextmanager
def monitored(release: Release, tmp: Path) -> Iterator[str]:
    """Prometheus from the stack's Probe/ServiceMonitor/PrometheusRule objects, plus the
    gateway's metrics, with traffic on both tracks (the canary's by its header)."""
    metrics = urllib.parse.urlsplit(release.node.gateway_metrics)
    gateway = {
        "job_name": "gateway",
        "metrics_path": metrics.path,
        "static_configs": [{"targets": [metrics.netloc]}],
    }
    config = prometheus_objects.configuration(release.node, NAMESPACE, tmp, extra_jobs=[gateway])
    WATCH.update(since=time.time(), pods=release.node.pods_by_ip(NAMESPACE))
    with (
        prometheus_objects.running(config) as prometheus,
        load.Continuous(
            release.port, HOST, concurrency=2, path=PATH, label=load.server_version,
            rate=load.USERS_RATE,
        ) as public,
        load.Continuous(
            release.port,
            HOST,
            concurrency=2,
            path=PATH,
            label=load.server_version,
            headers={"x-moontv-canary": "always"},
            rate=load.USERS_RATE,
        ) as canary_load,
    ):
        PUBLIC_LOAD["canary"] = canary_load.tally

        def scraped() -> bool:
            # the probes (through the blackbox exporter pod) and the gateway: the gate's inputs
            up = prometheus_objects.targets_up(prometheus)
            gate = [h for k, h in up.items() if k.startswith((f"{PROBE_JOB}/", "gateway/"))]
            return len(gate) == 3 and all(health == "up" for health in gate)

        assert node_host.wait_until(scraped, 60), prometheus_objects.targets_up(prometheus)
        time.sleep(12)  # a few probes and gateway samples in the gate's windows
        PUBLIC_LOAD["tally"] = public.tally
        yield prometheus


def rollout_auto(release: Release, prometheus: str, *extra: str) -> tuple[int, str]:
    project_dir = Path(release.stack.workspace.work_dir)
    result = subprocess.run(
        [
            str(ROOT / "venv/bin/python"),
            "-m",
            "rollout",
            "auto",
            "--stack",
            STACK,
            "--cwd",
            str(project_dir),
            "--prometheus",
            prometheus,
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, **release.stack.workspace.env_vars},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    transcript = "\n".join(
        line for line in result.stdout.splitlines() if line.startswith("[rollout]")
    )
    return result.returncode, transcript + "\n" + failed_requests(release) + result.stderr


def failed_requests(release: Release) -> str:
    """Every request of the running ``monitored`` block that failed, as the load generators
    and the Gateway (status sent and answered, backend Service and pod) saw it."""
    lines = []
    for name in ("tally", "canary"):
        tally = PUBLIC_LOAD.get(name)
        if tally is not None:
            with tally.lock:
                failures = list(tally.failures)
                total = tally.total
            lines.append(
                f"[load] {'public' if name == 'tally' else name}: "
                f"{len(failures)} of {total} failed"
                + "".join(f"\n[load]   {f}" for f in failures[:20])
            )
    pods = {**WATCH.get("pods", {}), **release.node.pods_by_ip(NAMESPACE)}
    failed = release.node.failed_requests(WATCH.get("since", 0.0), HOST, pods)
    lines.append(
        f"[gateway] {len(failed)} failed request(s) for {HOST}"
        + "".join(f"\n[gateway]   {line}" for line in failed[:100])
    )
    return "\n".join(lines) + "\n"


def stack_release(release: Release) -> dict[str, Any]:
    file = Path(release.stack.workspace.work_dir) / f"Pulumi.{STACK}.yaml"
    config: dict[str, Any] = yaml.safe_load(file.read_text())["config"]
    return config


def stage(release: Release, stable: str, candidate: str) -> None:
    release.set_release(
        canary(0, candidate, cookie=COOKIE), image={**CONFIG["moontv:image"], "tag": stable}
    )
    release.up()
    wait_all_ready(release.node)


def test_given_a_healthy_canary_when_rollout_auto_then_it_is_promoted(release, tmp_path):
    stage(release, STABLE, CANARY)
    with monitored(release, tmp_path) as prometheus:
        code, transcript = rollout_auto(
            release, prometheus, "--steps", "50,100", "--interval", "5s", *traffic_gate(NAMESPACE)
        )
    print(f"\n[release] rollout auto, healthy canary {CANARY}:\n{transcript}")
    assert code == 0, transcript
    assert "[rollout] done: promoted" in transcript
    config = stack_release(release)
    assert config["moontv:image"]["tag"] == CANARY
    assert config["moontv:release"]["lastDecision"]["action"] == "promote"
    wait_all_ready(release.node)
    assert only_version(release.burst(200)) == VERSION[CANARY]


def test_given_a_faulty_canary_when_rollout_auto_then_it_is_rolled_back_to_weight_0(
    release, tmp_path
):
    stage(release, CANARY, FAULTY)
    save_favourite(release, "release+rollback")
    with monitored(release, tmp_path) as prometheus:
        started = time.monotonic()
        code, transcript = rollout_auto(
            release,
            prometheus,
            "--steps",
            "10,50,100",
            "--interval",
            "5s",
            *traffic_gate(NAMESPACE),
        )
        seconds = time.monotonic() - started
    print(f"\n[release] rollout auto, faulty canary {FAULTY}:\n{transcript}")
    assert code == 1, transcript
    decision = stack_release(release)["moontv:release"]
    assert decision["canary"]["weight"] == 0
    assert decision["lastDecision"]["action"] == "rollback"
    assert "success rate too low" in decision["lastDecision"]["reason"]
    assert only_version(release.burst(200)) == VERSION[CANARY]
    FIGURES["faulty canary: rollout auto start to weight 0 (s)"] = round(seconds, 1)
    print(f"[release] faulty canary: rollout auto start to weight 0 in {seconds:.1f}s")
    public = PUBLIC_LOAD["tally"]
    FIGURES["rollback: failed/total public requests"] = f"{len(public.failures)}/{public.total}"
    assert public.failures == [], public.failures[:5]
    favourites_kept(release)


def test_given_saved_favourites_when_the_storage_pod_is_deleted_then_they_are_still_there(
    release,
):
    save_favourite(release, "release+storage-restart")
    release.node.kubectl("delete", "pod", "-n", NAMESPACE, "moontv-redis-0", "--wait=true")
    wait_all_ready(release.node)
    release.node.wait_pod_ready(NAMESPACE, "moontv-redis-0")

    def answers() -> bool:
        status, _, _ = call(release, "GET", "/api/server-config")
        return status == 200

    assert node_host.wait_until(answers, 60)
    favourites_kept(release)


def route_weights(node) -> dict[str, int]:
    """Backend Service -> weight of the public HTTPRoute's default rule, as the cluster has it."""
    route = json.loads(node.kubectl("get", "httproute", "-n", NAMESPACE, "moontv", "-o", "json"))
    rules = route["spec"]["rules"]
    return {ref["name"]: ref.get("weight", 1) for ref in rules[-1]["backendRefs"]}


def test_given_a_canary_pod_deleted_mid_rollout_auto_then_auto_ends_in_a_recorded_decision(
    release, tmp_path
):
    release.set_release(
        canary(0, CANARY, cookie=COOKIE, replicas=2),
        image={**CONFIG["moontv:image"], "tag": STABLE},
    )
    release.up()
    wait_all_ready(release.node)
    deleted: list[str] = []

    def delete_a_canary_pod() -> None:
        def at_50() -> bool:
            try:
                return stack_release(release)["moontv:release"]["canary"]["weight"] == 50
            except (yaml.YAMLError, KeyError, TypeError):
                return False

        if node_host.wait_until(at_50, 300, interval=0.5):
            pods = json.loads(
                release.node.kubectl(
                    "get",
                    "pods",
                    "-n",
                    NAMESPACE,
                    "-l",
                    "app.kubernetes.io/name=moontv,moontv.io/track=canary",
                    "-o",
                    "json",
                )
            )["items"]
            if pods:
                name = pods[0]["metadata"]["name"]
                release.node.kubectl("delete", "pod", "-n", NAMESPACE, name, "--wait=false")
                deleted.append(name)

    with monitored(release, tmp_path) as prometheus:
        killer = threading.Thread(target=delete_a_canary_pod)
        killer.start()
        code, transcript = rollout_auto(
            release, prometheus, "--steps", "50,100", "--interval", "10s", *traffic_gate(NAMESPACE)
        )
        killer.join(timeout=60)
    print(f"\n[release] rollout auto with canary pod {deleted} deleted at 50%:\n{transcript}")
    assert deleted, "no canary pod was deleted"
    config = stack_release(release)
    action = config["moontv:release"]["lastDecision"]["action"]
    assert (code, action) in ((0, "promote"), (1, "rollback")), transcript
    # whatever was decided is what the cluster routes, and every request succeeds
    wait_all_ready(release.node)
    weights = route_weights(release.node)
    if action == "promote":
        assert config["moontv:image"]["tag"] == CANARY
        assert weights == {"moontv-stable": 100}
    else:
        assert weights.get("moontv-canary", 0) == 0
    tally = release.burst(200)
    assert tally.failures == []
    FIGURES["canary pod deleted mid auto: decision"] = action


def _exited(pid: int) -> bool:
    """The process is gone (or a zombie its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@contextlib.contextmanager
def api_server_stopped(seconds: float) -> Iterator[None]:
    """Stop the node's kube-apiserver for ``seconds``, then start it again with the same command
    line (and record its new pid where ``tools/node.sh`` keeps it)."""
    pid_file = node_host.STATE_DIR / "pids" / "kube-apiserver.pid"
    pid = int(pid_file.read_text())
    argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    log = node_host.STATE_DIR / "logs" / "kube-apiserver.log"
    try:
        os.kill(pid, signal.SIGTERM)
        assert node_host.wait_until(lambda: _exited(pid), 60, interval=0.2)
        time.sleep(seconds)
        yield
    finally:
        with log.open("ab") as out:
            started = subprocess.Popen(
                [a.decode() for a in argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        pid_file.write_text(f"{started.pid}\n")


@pytest.mark.node_exclusive  # the API server stops: no other node test runs meanwhile
def test_given_the_api_server_stops_during_up_when_it_is_back_then_the_next_up_converges(
    release,
):
    release.set_release({"strategy": "rolling"}, image={**CONFIG["moontv:image"], "tag": STABLE})
    outcome: dict[str, Any] = {}

    def run_up() -> None:
        try:
            outcome["changes"] = release.up()
        except auto.CommandError as exc:
            outcome["error"] = str(exc)

    worker = threading.Thread(target=run_up)
    worker.start()
    time.sleep(4)  # up is applying: the canary goes, the stable track rolls
    with api_server_stopped(15):
        pass
    worker.join(timeout=900)
    assert not worker.is_alive(), "up still running 15 minutes after the API server came back"
    if "error" in outcome:
        tail = "\n".join(outcome["error"].strip().splitlines()[-12:])
        print(f"\n[release] up with the API server stopped for 15 s failed:\n{tail}")
    else:
        print(f"\n[release] up with the API server stopped for 15 s succeeded: {outcome}")

    def api_ready() -> bool:
        return release.node.kubectl("get", "--raw", "/readyz", check=False).strip() == "ok"

    assert node_host.wait_until(api_ready, 120)
    release.up()  # converges with no manual step
    wait_all_ready(release.node)
    assert release.up() == {}
    # Traefik's informers relist after the outage; the Gateway serves once its EndpointSlices are
    # current again. How long that took is printed; a Gateway that never catches up fails here.
    started = time.monotonic()
    caught_up = node_host.wait_until(lambda: not release.burst(20).failures, 90, interval=2)
    waited = time.monotonic() - started
    print(f"[release] the Gateway served without failures {waited:.1f} s after up")
    if not caught_up:
        slices = release.node.kubectl(
            "get", "endpointslices", "-n", NAMESPACE, "-o", "wide", check=False
        )
        log = node_host.STATE_DIR / "logs" / "traefik.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""
        pytest.fail(f"the Gateway still fails 90 s after up\n{slices}\n{tail}")
    assert only_version(release.burst(200)) == VERSION[STABLE]
    favourites_kept(release)


def test_given_the_release_stack_when_destroyed_then_its_namespace_is_empty(release):
    release.stack.destroy()

    def gone() -> bool:
        left = release.node.kubectl(
            "get", "all,pvc", "-n", NAMESPACE, "-o", "name", "--ignore-not-found", check=False
        ).split()
        return not left

    assert node_host.wait_until(gone, 120, interval=2)
