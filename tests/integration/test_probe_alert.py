"""A real Prometheus, blackbox exporter and Alertmanager, run on 127.0.0.1 with the generated
configuration, watch two stand-in MoonTV tracks (Python http.server answering /login).
When the canary stops answering, MoonTVTrackDown{track="canary"} must fire within the
configured window and reach the webhook receiver; the stable track must stay quiet.

Tools come from tools/test-deps.sh; without them the test skips, unless
MOONTV_REQUIRE_ENGINE=1 where a skip is a failure.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.monitoring.config import (
    ScrapeTargets,
    alertmanager_config,
    blackbox_config,
    prometheus_config,
)
from components.monitoring.model import MonitoringSettings
from components.monitoring.rules import TRACK_DOWN, RuleScope, alert_rules, health_gate_queries
from tests.conftest import require_tools
from tests.helpers import BLACKBOX, LocalServer, QuietHandler, free_port

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("prometheus", "prometheus-blackbox-exporter", "prometheus-alertmanager")
FOR_WINDOW = 5.0
SETTINGS = MonitoringSettings.model_validate({
    "probeInterval": "1s",
    "thresholds": {"successWindow": "10s", "for": {"trackDown": f"{FOR_WINDOW:g}s"}},
    "receivers": [{"name": "ops", "kind": "webhook", "severities": ["critical", "warning"]}],
})
# Detection needs: one failed probe (≤1s scrape + 5s timeout at worst; a refused connection
# fails at once), one rule evaluation (1s), then the `for` window. Anything beyond this bound
# means the wiring, not the timing, is wrong.
FIRING_BOUND = FOR_WINDOW + 25.0


@dataclass(frozen=True)
class Track:
    name: str
    role: str


TRACKS = [Track("stable", "primary"), Track("canary", "canary")]


@pytest.fixture(scope="module", autouse=True)
def monitoring_tools() -> None:
    require_tools(TOOLS)


class LoginApp(LocalServer):
    """Stand-in for one MoonTV track: GET /login answers 200 with an HTML page."""

    def __init__(self) -> None:
        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path == "/login":
                    self.reply(200, "text/html", b"<html><body>login</body></html>")
                else:
                    self.reply(404, "text/html", b"not found")

        super().__init__(Handler)
        self.url = f"http://{self.address}/login"


class WebhookSink(LocalServer):
    """Receives Alertmanager webhook notifications."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        sink = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                sink.received.append(json.loads(self.rfile.read(length)))
                self.reply(200, "text/plain", b"")

        super().__init__(Handler)
        self.url = f"http://{self.address}/alerts"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> tuple[Any, float]:
    """Poll ``check`` every 0.25s until it returns a truthy value; return it and the seconds."""
    start = time.monotonic()
    last_error: Exception | None = None
    while time.monotonic() - start < timeout:
        try:
            value = check()
            if value:
                return value, time.monotonic() - start
        except OSError as err:  # not listening yet
            last_error = err
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} ({last_error})")


@dataclass
class Stack:
    prometheus: str
    apps: dict[str, LoginApp]
    sink: WebhookSink
    processes: list[subprocess.Popen[bytes]]

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        return get_json(url)["data"]["result"]

    def alerts(self) -> list[dict[str, Any]]:
        return get_json(f"{self.prometheus}/api/v1/alerts")["data"]["alerts"]


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    apps = {t.name: LoginApp() for t in TRACKS}
    sink = WebhookSink()
    processes: list[subprocess.Popen[bytes]] = []
    ports = {name: free_port() for name in ("blackbox", "alertmanager", "prometheus")}
    try:
        blackbox = tmp_path / "blackbox.yml"
        blackbox.write_text(yaml.safe_dump(blackbox_config()))
        processes.append(start([
            "prometheus-blackbox-exporter", f"--config.file={blackbox}",
            f"--web.listen-address=127.0.0.1:{ports['blackbox']}",
        ], tmp_path / "blackbox.log"))

        am = alertmanager_config(SETTINGS.receivers, {"ops": sink.url})
        am["route"] |= {"group_wait": "1s", "group_interval": "1s"}  # notify at once in a test
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am))
        processes.append(start([
            "prometheus-alertmanager", f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            "--cluster.listen-address=",
        ], tmp_path / "alertmanager.log"))

        rules = alert_rules(TRACKS, SETTINGS, RuleScope(storage=False))
        (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
        targets = ScrapeTargets(
            probes={name: app.url for name, app in apps.items()},
            blackbox=f"127.0.0.1:{ports['blackbox']}",
            alertmanagers=[f"127.0.0.1:{ports['alertmanager']}"],
        )
        config = prometheus_config(targets, SETTINGS, [str(tmp_path / "rules.yml")])
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        processes.append(start([
            "prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ], tmp_path / "prometheus.log"))

        yield Stack(f"http://127.0.0.1:{ports['prometheus']}", apps, sink, processes)
    finally:
        for process in reversed(processes):
            stop(process)
        for app in apps.values():
            app.stop()
        sink.stop()


def firing(stack: Stack, track: str) -> list[dict[str, Any]]:
    return [a for a in stack.alerts() if a["labels"].get("alertname") == TRACK_DOWN
            and a["labels"].get("track") == track and a["state"] == "firing"]


def test_given_canary_stops_then_track_down_fires_within_the_window(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given both tracks answer and every probe metric the rules rely on is produced
    def both_healthy() -> bool:
        values = {r["metric"]["track"]: r["value"][1] for r in stack.query("probe_success")}
        return values == {"stable": "1", "canary": "1"}

    wait_for("both tracks probed successfully", both_healthy, timeout=60)
    for metric in sorted(BLACKBOX):
        assert stack.query(f'{metric}{{track="canary"}}'), f"{metric} not produced"
    # (until the first probes land, absent() rightly reports both tracks down)
    wait_for("no TrackDown alert while healthy",
             lambda: not [a for a in stack.alerts() if a["labels"]["alertname"] == TRACK_DOWN],
             timeout=30)

    # When the canary stops answering
    stack.apps["canary"].stop()

    # Then MoonTVTrackDown{track="canary"} fires within the configured window
    alerts, seconds = wait_for("canary TrackDown firing", lambda: firing(stack, "canary"),
                               timeout=FIRING_BOUND)
    assert seconds >= FOR_WINDOW, "alert fired before its `for` window elapsed"
    assert alerts[0]["labels"]["severity"] == "warning"
    assert not firing(stack, "stable")

    # ... the gate queries read the failure from the real series
    gate = health_gate_queries("canary", SETTINGS)
    success = float(stack.query(gate["success"])[0]["value"][1])
    assert success < SETTINGS.thresholds.success_rate
    stable_gate = health_gate_queries("stable", SETTINGS)
    assert float(stack.query(stable_gate["success"])[0]["value"][1]) == 1.0
    assert float(stack.query(stable_gate["latency"])[0]["value"][1]) > 0

    # ... and Alertmanager delivers it to the webhook receiver
    def notified() -> list[dict[str, Any]]:
        return [a for n in stack.sink.received for a in n["alerts"]
                if a["labels"].get("alertname") == TRACK_DOWN
                and a["labels"].get("track") == "canary" and a["status"] == "firing"]

    _, delivery = wait_for("webhook notification", notified, timeout=30)
    with capsys.disabled():
        print(f"\n[probe-alert] canary down -> {TRACK_DOWN} firing after {seconds:.1f}s "
              f"(for {FOR_WINDOW:g}s, scrape/eval 1s); webhook after a further {delivery:.1f}s")
