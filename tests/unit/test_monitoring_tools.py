"""Generated monitoring configuration checked by the real tools (Debian packages):
promtool (rules syntax, rule unit tests, Prometheus config), amtool (Alertmanager config and
routing) and the blackbox exporter (--config.check).

The tools are installed by tools/test-deps.sh; without them (and without root to
install them) the tests skip, unless MOONTV_REQUIRE_ENGINE=1 where a skip is a failure.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from copy import deepcopy
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
from components.monitoring.dashboard import dashboard
from components.monitoring.model import MonitoringSettings
from components.monitoring.rules import (
    BACKUP_FAILED,
    CANARY_ERRORS,
    HPA_AT_MAX,
    POD_RESTARTS,
    RESTORE_DRILL_FAILED,
    STORAGE_DOWN,
    TRACK_DOWN,
    TRACK_LATENCY,
    VOLUME_FULL,
    RuleScope,
    alert_rules,
)
from tests.conftest import require_tools
from tests.helpers import dashboard_queries

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("promtool", "prometheus-alertmanager", "amtool", "prometheus-blackbox-exporter")
NS = "moontv"


@dataclass(frozen=True)
class Track:
    name: str
    role: str


TRACKS = [Track("stable", "primary"), Track("canary", "canary")]
SCOPE = RuleScope(namespace=NS, backup_cronjob="moontv-backup",
                  drill_cronjob="moontv-restore-drill")


@pytest.fixture(scope="module", autouse=True)
def monitoring_tools() -> None:
    require_tools(TOOLS)


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- promtool check rules -------------------------------------------------------------------

def test_generated_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = alert_rules(TRACKS, MonitoringSettings(), SCOPE)
    count = sum(len(g["rules"]) for g in rules["groups"])
    result = run("promtool", "check", "rules", str(write_yaml(tmp_path / "rules.yml", rules)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    rules = alert_rules(TRACKS, MonitoringSettings(), SCOPE)
    rules["groups"][0]["rules"][0]["expr"] = "probe_success{track=}"
    result = run("promtool", "check", "rules", str(write_yaml(tmp_path / "bad.yml", rules)))
    assert result.returncode != 0


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    exprs = dashboard_queries(dashboard(TRACKS, NS))
    recording = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"moontv:dashboard:{i}", "expr": q} for i, q in enumerate(exprs)
    ]}]}
    result = run("promtool", "check", "rules", str(write_yaml(tmp_path / "dash.yml", recording)))
    assert result.returncode == 0, result.stdout + result.stderr


# --- promtool test rules: every alert fires on a bad series, stays quiet on a healthy one ---

def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


PROBE = {"job": "moontv-probe"}
STABLE = {**PROBE, "instance": "http://moontv-stable:3000/login", "track": "stable"}
CANARY = {**PROBE, "instance": "http://moontv-canary:3000/login", "track": "canary"}
STORAGE = {"job": "moontv-storage", "instance": "moontv-storage:9121"}
POD = {"namespace": NS, "pod": "moontv-stable-5d9f-abcde", "container": "moontv"}
HPA = {"namespace": NS, "horizontalpodautoscaler": "moontv-stable"}
PVC = {"namespace": NS, "persistentvolumeclaim": "data-moontv-kvrocks-0"}
JOB = {"namespace": NS, "job_name": "moontv-backup-29391840"}
DRILL = {"namespace": NS, "job_name": "moontv-restore-drill-29391900"}
HEALTHY_PROBES = [series("probe_success", STABLE, "1x80"), series("probe_success", CANARY, "1x80")]


def alert_labels(name: str, severity: str, base: dict[str, str], **extra: str) -> dict[str, str]:
    return {**base, **extra, "severity": severity, "namespace": NS}


# alertname -> (eval time, failing series, expected alert labels, healthy series)
CASES: dict[str, tuple[str, list[dict], list[dict], list[dict]]] = {
    TRACK_DOWN: (
        "2m",
        [series("probe_success", STABLE, "0x10"), series("probe_success", CANARY, "1x10")],
        [alert_labels(TRACK_DOWN, "critical", STABLE)],
        HEALTHY_PROBES,
    ),
    TRACK_LATENCY: (
        "11m",
        [series("probe_duration_seconds", STABLE, "0.1x50"),
         series("probe_duration_seconds", CANARY, "0.9x50")],
        [alert_labels(TRACK_LATENCY, "warning", CANARY)],
        [series("probe_duration_seconds", STABLE, "0.1x50"),
         series("probe_duration_seconds", CANARY, "0.2x50")],
    ),
    CANARY_ERRORS: (
        "4m",
        [series("probe_success", CANARY, "1 0 " * 10)],
        [alert_labels(CANARY_ERRORS, "warning", CANARY)],
        [series("probe_success", CANARY, "1x20")],
    ),
    STORAGE_DOWN: (
        "2m",
        [series("redis_up", STORAGE, "0x10"), series("up", STORAGE, "1x10")],
        [alert_labels(STORAGE_DOWN, "critical", STORAGE)],
        [series("redis_up", STORAGE, "1x10"), series("up", STORAGE, "1x10")],
    ),
    POD_RESTARTS: (
        "20m",
        [series("kube_pod_container_status_restarts_total", POD, "0+1x80"),
         series("kube_pod_container_status_restarts_total", {**POD, "namespace": "other"},
                "0x80")],
        [alert_labels(POD_RESTARTS, "warning", POD)],
        [series("kube_pod_container_status_restarts_total", POD, "2x80"),
         series("kube_pod_container_status_restarts_total", {**POD, "namespace": "other"},
                "0+1x80")],
    ),
    HPA_AT_MAX: (
        "17m",
        [series("kube_horizontalpodautoscaler_status_current_replicas", HPA, "5x80"),
         series("kube_horizontalpodautoscaler_spec_max_replicas", HPA, "5x80")],
        [alert_labels(HPA_AT_MAX, "warning", HPA)],
        [series("kube_horizontalpodautoscaler_status_current_replicas", HPA, "3x80"),
         series("kube_horizontalpodautoscaler_spec_max_replicas", HPA, "5x80")],
    ),
    VOLUME_FULL: (
        "7m",
        [series("kubelet_volume_stats_used_bytes", PVC, "90x40"),
         series("kubelet_volume_stats_capacity_bytes", PVC, "100x40")],
        [alert_labels(VOLUME_FULL, "warning", PVC)],
        [series("kubelet_volume_stats_used_bytes", PVC, "50x40"),
         series("kubelet_volume_stats_capacity_bytes", PVC, "100x40")],
    ),
    BACKUP_FAILED: (
        "2m",
        [series("kube_job_status_failed", JOB, "1x10"),
         series("kube_job_status_failed", {**JOB, "job_name": "other-29391840"}, "1x10")],
        [alert_labels(BACKUP_FAILED, "warning", JOB)],
        [series("kube_job_status_failed", JOB, "0x10"),
         series("kube_job_status_failed", {**JOB, "job_name": "other-29391840"}, "1x10")],
    ),
    RESTORE_DRILL_FAILED: (
        "2m",
        [series("kube_job_status_failed", DRILL, "1x10"),
         series("kube_job_status_failed", JOB, "0x10")],
        [alert_labels(RESTORE_DRILL_FAILED, "critical", DRILL)],
        [series("kube_job_status_failed", DRILL, "0x10"),
         series("kube_job_status_failed", JOB, "1x10")],
    ),
}


def without_annotations(rules: dict) -> dict:
    """promtool compares annotations exactly; these tests are about expr, `for` and labels
    (annotation templates are checked by `promtool check rules` above)."""
    stripped = deepcopy(rules)
    for group in stripped["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return stripped


@pytest.fixture(scope="module")
def rule_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("promtool")
    rules = without_annotations(alert_rules(TRACKS, MonitoringSettings(), SCOPE))
    write_yaml(directory / "rules.yml", rules)
    yield directory


def promtool_test(directory: Path, alertname: str, eval_time: str, input_series: list[dict],
                  exp_alerts: list[dict]) -> subprocess.CompletedProcess[str]:
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": input_series,
            "alert_rule_test": [{
                "eval_time": eval_time,
                "alertname": alertname,
                "exp_alerts": [{"exp_labels": labels} for labels in exp_alerts],
            }],
        }],
    }
    path = write_yaml(directory / f"test-{alertname}.yml", test)
    return run("promtool", "test", "rules", path.name, cwd=directory)


def test_every_alert_has_a_firing_case() -> None:
    fired = {r["alert"] for g in alert_rules(TRACKS, MonitoringSettings(), SCOPE)["groups"]
             for r in g["rules"]}
    assert fired == set(CASES)


@pytest.mark.parametrize("alertname", sorted(CASES))
def test_given_failing_series_then_alert_fires(rule_tests: Path, alertname: str) -> None:
    eval_time, failing, expected, _ = CASES[alertname]
    result = promtool_test(rule_tests, alertname, eval_time, failing, expected)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alertname", sorted(CASES))
def test_given_healthy_series_then_alert_stays_quiet(rule_tests: Path, alertname: str) -> None:
    eval_time, _, _, healthy = CASES[alertname]
    result = promtool_test(rule_tests, alertname, eval_time, healthy, [])
    assert result.returncode == 0, result.stdout + result.stderr


def test_given_no_probe_series_then_track_down_fires_for_each_track(rule_tests: Path) -> None:
    expected = [{"track": t.name, "severity": s, "namespace": NS}
                for t, s in zip(TRACKS, ("critical", "warning"), strict=True)]
    result = promtool_test(rule_tests, TRACK_DOWN, "2m",
                           [series("redis_up", STORAGE, "1x10")], expected)
    assert result.returncode == 0, result.stdout + result.stderr


def test_given_failing_series_then_wrong_expectation_is_reported(rule_tests: Path) -> None:
    """The harness itself can fail: expecting silence while a track is down must not pass."""
    _, failing, _, _ = CASES[TRACK_DOWN]
    result = promtool_test(rule_tests, TRACK_DOWN, "2m", failing, [])
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


# --- prometheus.yml, alertmanager.yml, blackbox.yml -----------------------------------------

def test_generated_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    write_yaml(tmp_path / "rules.yml", alert_rules(TRACKS, MonitoringSettings()))
    targets = ScrapeTargets(
        probes={"stable": "http://moontv-stable:3000/login",
                "canary": "http://moontv-canary:3000/login"},
        blackbox="blackbox:9115", alertmanagers=["alertmanager:9093"],
        storage_exporter="storage-exporter:9121",
    )
    config = write_yaml(tmp_path / "prometheus.yml",
                        prometheus_config(targets, MonitoringSettings(), ["rules.yml"]))
    result = run("promtool", "check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


RECEIVERS = MonitoringSettings.model_validate({"receivers": [
    {"name": "oncall", "kind": "slack", "channel": "#moontv", "severities": ["critical"]},
    {"name": "hook", "kind": "webhook"},
    {"name": "mail", "kind": "email", "to": "ops@example.org", "from": "am@example.org",
     "smarthost": "smtp.example.org:587", "authUsername": "am", "severities": ["warning"]},
]}).receivers
SECRETS = {"oncall": "https://hooks.slack.example/T0/B0/X", "hook": "https://hook.example/x",
           "mail": "smtp-password"}


@pytest.fixture
def am_config(tmp_path: Path) -> Path:
    return write_yaml(tmp_path / "alertmanager.yml", alertmanager_config(RECEIVERS, SECRETS))


def test_generated_alertmanager_config_passes_amtool(am_config: Path) -> None:
    result = run("amtool", "check-config", str(am_config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 receivers" in result.stdout and "1 inhibit rules" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical"], "oncall,hook"),
        (["severity=warning"], "hook,mail"),
        (["severity=info"], "moontv-null"),
    ],
)
def test_given_severity_then_amtool_routes_to_the_right_receivers(
    am_config: Path, labels: list[str], receivers: str
) -> None:
    result = run("amtool", "config", "routes", "test", f"--config.file={am_config}",
                 "alertname=MoonTVTrackDown", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_generated_blackbox_config_passes_config_check(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "blackbox.yml", blackbox_config())
    result = run("prometheus-blackbox-exporter", "--config.check", f"--config.file={path}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_blackbox_config_check_rejects_unknown_keys(tmp_path: Path) -> None:
    config = blackbox_config()
    config["modules"]["http_login"]["http"]["follow_redirect"] = False  # misspelt
    path = write_yaml(tmp_path / "blackbox.yml", config)
    result = run("prometheus-blackbox-exporter", "--config.check", f"--config.file={path}")
    assert result.returncode != 0
