"""`rollout auto` end to end: the real Pulumi engine on a render-mode dev stack (file backend in a
temp dir, no cluster) and a real Prometheus on 127.0.0.1 scraping a probe exporter whose values
the test controls.

Given a staged canary, when the probes stay healthy, then the weight climbs to 100 and the
canary is promoted; when they turn unhealthy after the first step, then the weight goes back to
0 and the stack config records why.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.monitoring.model import MonitoringSettings
from components.monitoring.rules import health_gates
from components.release import Track
from rollout.health import OUTPUT, HealthPolicy, check, stack_gates
from tests.conftest import ROOT, skip_or_fail
from tests.helpers import LocalServer, QuietHandler, free_port
from tests.integration.engine import Project, require_engine, stack_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

CANARY_VERSION = "v100.1.2"


class ProbeExporter(LocalServer):
    """`/metrics` with blackbox-style probe metrics for the canary track."""

    def __init__(self) -> None:
        self.success = 1
        self.duration = 0.12
        exporter = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                body = (
                    "# TYPE probe_success gauge\n"
                    f'probe_success{{track="canary"}} {exporter.success}\n'
                    f'probe_success{{track="stable"}} 1\n'
                    "# TYPE probe_duration_seconds gauge\n"
                    f'probe_duration_seconds{{track="canary"}} {exporter.duration}\n'
                ).encode()
                self.reply(200, "text/plain; version=0.0.4", body)

        super().__init__(Handler)


@pytest.fixture
def exporter() -> Iterator[ProbeExporter]:
    probes = ProbeExporter()
    yield probes
    probes.stop()


@pytest.fixture
def prometheus(tmp_path: Path, exporter: ProbeExporter) -> Iterator[str]:
    if not shutil.which("prometheus"):
        skip_or_fail("prometheus is needed (tools/test-deps.sh installs it)")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "probes", "static_configs": [{"targets": [exporter.address]}]}
                ],
            }
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: _has_samples(url), 60, "Prometheus scraping the exporter")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _has_samples(url: str) -> bool:
    query = "count_over_time(probe_success[1m])"
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?query={query}", timeout=2) as response:
            return b'"value"' in response.read()
    except OSError:
        return False


def _wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the program with a dev-like render-mode stack holding a staged canary, after
    its first `up`; returns the project directory and the engine environment."""
    copy = Project(tmp_path, require_engine())
    release = {"strategy": "canary", "canary": {"version": CANARY_VERSION, "weight": 0}}
    config = stack_config(
        "dev",
        **{"moontv:kubernetes": {"renderDir": str(tmp_path / "out")}, "moontv:release": release,
           # the stack exports the health gate the CLI reads (output healthQueries)
           "moontv:monitoring": {"enabled": True, "mode": "existing"}},
    )
    up = copy.stack("dev", config).up()
    assert up.summary.result == "succeeded"
    return copy.dir, copy.env


def _release(work: Path) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((work / "Pulumi.dev.yaml").read_text())["config"]
    return config


def _weight(work: Path) -> int | None:
    """The canary weight in the stack file, or None while the file is being rewritten."""
    try:
        weight = _release(work)["moontv:release"]["canary"]["weight"]
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    return int(weight)


def _auto(work: Path, env: dict[str, str], prometheus: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(ROOT / "venv/bin/python"),
            "-m",
            "rollout",
            "auto",
            "--stack",
            "dev",
            "--cwd",
            str(work),
            "--prometheus",
            prometheus,
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _rendered_images(work: Path) -> dict[str, str]:
    """Deployment name -> container image, from the rendered manifests."""
    images = {}
    for path in (work.parent / "out").rglob("*.yaml"):
        # BaseLoader: rendered rule expressions hold a bare `=`, which the safe loader refuses
        for doc in yaml.load_all(path.read_text(), Loader=yaml.BaseLoader):
            if doc and doc.get("kind") == "Deployment":
                containers = doc["spec"]["template"]["spec"]["containers"]
                images[doc["metadata"]["name"]] = containers[0]["image"]
    return images


def _rendered_route_weights(work: Path) -> dict[str, int]:
    """Service name -> weight in the rendered HTTPRoute ``moontv`` (the default route)."""
    for path in (work.parent / "out").rglob("*httproute*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "HTTPRoute" and doc["metadata"]["name"] == "moontv":
                refs = [ref for rule in doc["spec"]["rules"] for ref in rule.get("backendRefs", [])]
                return {ref["name"]: ref["weight"] for ref in refs if "weight" in ref}
    raise AssertionError("no rendered HTTPRoute moontv")


def test_the_programs_health_gate_on_a_real_prometheus(
    prometheus: str, exporter: ProbeExporter
) -> None:
    tracks = [Track("canary", CANARY_VERSION, 1, 0, "canary"), Track("blue", "v1", 1, 100,
                                                                      "primary")]
    gates = stack_gates({OUTPUT: health_gates(tracks, MonitoringSettings())})
    policy = HealthPolicy(prometheus, gates)
    healthy = check(policy, "canary")
    assert healthy.ok, healthy.summary
    assert healthy.summary == "success 1 (min 0.99), p99 120 ms (max 500)"
    exporter.duration = 0.8
    _wait_for(lambda: not check(policy, "canary").ok, 30, "p99 above 500 ms")
    assert check(policy, "canary").summary.startswith("p99 latency too high: success 1")
    exporter.duration, exporter.success = 0.12, 0
    _wait_for(lambda: "success rate too low" in check(policy, "canary").summary, 30, "failures")
    missing = check(policy, "blue")
    assert not missing.ok
    assert missing.summary.startswith("metrics unavailable: ")
    assert missing.summary.endswith(": no data")


def test_given_healthy_canary_when_auto_then_weight_reaches_100_and_canary_is_promoted(
    project: tuple[Path, dict[str, str]], prometheus: str
) -> None:
    work, env = project
    proc = _auto(work, env, prometheus, "--steps", "50,100", "--interval", "2s")
    out, _ = proc.communicate(timeout=900)
    print(out)
    assert proc.returncode == 0, out
    for line in ("step 1/2: canary weight 50%", "step 2/2: canary weight 100%", "done: promoted"):
        assert f"[rollout] {line}" in out
    config = _release(work)
    assert config["moontv:image"]["tag"] == CANARY_VERSION
    stable = stack_config("dev")["moontv:image"]["tag"]
    assert config["moontv:release"]["canary"] == {"weight": 0, "previous": stable}
    assert config["moontv:release"]["lastDecision"]["action"] == "promote"
    images = _rendered_images(work)
    assert images["moontv-stable"].endswith(f":{CANARY_VERSION}")
    assert "moontv-canary" not in images


def test_given_canary_turning_unhealthy_when_auto_then_weight_back_to_0_and_reason_recorded(
    project: tuple[Path, dict[str, str]], prometheus: str, exporter: ProbeExporter
) -> None:
    work, env = project
    proc = _auto(work, env, prometheus, "--steps", "10,50,100", "--interval", "8s")
    try:
        _wait_for(
            lambda: _weight(work) == 10,
            600,
            "the first step's weight in the stack config",
        )
        exporter.success = 0  # the canary starts failing its probes
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(out)
    assert proc.returncode == 1, out
    assert "[rollout] step 1/3: canary weight 10%" in out
    config = _release(work)
    release = config["moontv:release"]
    assert release["canary"] == {"version": CANARY_VERSION, "weight": 0}
    assert release["lastDecision"]["action"] == "rollback"
    assert release["lastDecision"]["reason"].startswith("step 2/3 at 10%: success rate too low")
    assert config["moontv:image"]["tag"] != CANARY_VERSION
    images = _rendered_images(work)
    assert images["moontv-canary"].endswith(f":{CANARY_VERSION}")  # kept for the header route


def _rollout(work: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "venv/bin/python"), "-m", "rollout", *argv, "--cwd", str(work)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_manual_commands_on_the_real_engine(project: tuple[Path, dict[str, str]]) -> None:
    work, env = project
    before = _release(work)

    unknown = _rollout(work, env, "status", "--stack", "nope")
    assert unknown.returncode == 2
    assert "--stack: no stack named 'nope'" in unknown.stderr

    refused = _rollout(work, env, "set-weight", "101", "--stack", "dev")
    assert refused.returncode == 2
    assert "moontv:release.canary.weight: must be an integer 0..100, got 101" in refused.stderr
    assert _release(work) == before

    dry = _rollout(work, env, "set-weight", "25", "--stack", "dev", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "set moontv:release.canary.weight = 25" in dry.stdout
    assert _release(work) == before

    applied = _rollout(work, env, "set-weight", "25", "--stack", "dev", "--reason", "ramp")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    release = _release(work)["moontv:release"]
    assert release["canary"] == {"version": CANARY_VERSION, "weight": 25}
    assert (release["lastDecision"]["action"], release["lastDecision"]["reason"]) == (
        "set-weight",
        "ramp",
    )
    # the weight step updated the routes only (`up --target`), and the rendered route has it
    assert "updating the routes of dev" in applied.stdout
    assert sorted(_rendered_route_weights(work).values()) == [25, 75]

    status = _rollout(work, env, "status", "--stack", "dev")
    assert status.returncode == 0, status.stderr
    assert "track stable: version v100.1.1, weight 75%, role primary" in status.stdout
    assert f"track canary: version {CANARY_VERSION}, weight 25%, role canary" in status.stdout
    assert "last decision: set-weight at " in status.stdout
