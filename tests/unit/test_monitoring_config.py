"""Pure monitoring generators: settings model, rules, Alertmanager/Prometheus/blackbox configs,
dashboard and agent configs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from components.monitoring.agents import fluent_bit_config, otel_collector_config
from components.monitoring.config import (
    NULL_RECEIVER,
    ScrapeTargets,
    alertmanager_config,
    alertmanager_config_spec,
    blackbox_config,
    prometheus_config,
)
from components.monitoring.dashboard import dashboard
from components.monitoring.model import (
    KUBE_PROMETHEUS_STACK_VERSION,
    LogShipping,
    MonitoringSettings,
    TraceExport,
)
from components.monitoring.rules import (
    BACKUP_FAILED,
    CANARY_ERRORS,
    HPA_AT_MAX,
    STORAGE_DOWN,
    TRACK_DOWN,
    TRACK_LATENCY,
    RuleScope,
    alert_rules,
    health_gate_queries,
)
from tests import helpers


@dataclass(frozen=True)
class Track:
    name: str
    role: str


CANARY_TRACKS = [Track("stable", "primary"), Track("canary", "canary")]
RECEIVERS = {
    "receivers": [
        {"name": "oncall", "kind": "slack", "channel": "#moontv", "severities": ["critical"]},
        {"name": "hook", "kind": "webhook"},
        {"name": "mail", "kind": "email", "to": "ops@example.org", "from": "am@example.org",
         "smarthost": "smtp.example.org:587", "authUsername": "am"},
    ]
}
SECRETS = {
    "oncall": "https://hooks.slack.example/T000/B000/XXXX",
    "hook": "https://alerts.example.org/hook?token=s3cr3t",
    "mail": "smtp-password",
}


def rules_by_name(rules: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.setdefault(rule["alert"], []).append(rule)
    return found


# --- settings model -------------------------------------------------------------------------

def test_given_empty_monitoring_object_then_defaults_match_the_documented_thresholds() -> None:
    s = MonitoringSettings.model_validate({})
    assert (s.enabled, s.mode, s.chart_version) == (True, "install", KUBE_PROMETHEUS_STACK_VERSION)
    assert s.thresholds.success_rate == 0.99
    assert s.thresholds.p99_latency_ms == 500
    assert s.thresholds.success_window == "1m"
    assert s.receivers == ()


def test_given_camel_case_keys_then_nested_values_are_read() -> None:
    s = MonitoringSettings.model_validate({
        "probeInterval": "5s",
        "thresholds": {"successRate": 0.95, "p99LatencyMs": 250, "for": {"trackDown": "10s"}},
        "selectorLabels": {"release": "prom"},
    })
    assert s.probe_interval == "5s"
    assert s.thresholds.success_rate == 0.95
    assert s.thresholds.p99_latency_ms == 250
    assert s.thresholds.for_.track_down == "10s"
    assert s.selector_labels == {"release": "prom"}


@pytest.mark.parametrize(
    ("config", "location"),
    [
        ({"mode": "helm"}, ("mode",)),
        ({"probeIntervall": "5s"}, ("probeIntervall",)),
        ({"probeInterval": "5 seconds"}, ("probeInterval",)),
        ({"thresholds": {"successRate": 1.5}}, ("thresholds", "successRate")),
        ({"receivers": [{"name": "x", "kind": "pager"}]}, ("receivers", 0)),
        ({"receivers": [{"name": "Bad_Name", "kind": "webhook"}]},
         ("receivers", 0, "webhook", "name")),
        ({"logs": {"enabled": True, "kind": "splunk", "endpoint": "http://x"}}, ("logs", "kind")),
    ],
)
def test_given_bad_value_then_the_error_names_its_key(config: dict, location: tuple) -> None:
    with pytest.raises(ValidationError) as err:
        MonitoringSettings.model_validate(config)
    assert location in [e["loc"] for e in err.value.errors()]


def test_given_model_is_frozen_then_assignment_fails() -> None:
    with pytest.raises(ValidationError):
        MonitoringSettings().enabled = False  # type: ignore[misc]


def test_given_duplicate_receiver_names_then_validation_names_them() -> None:
    with pytest.raises(ValidationError, match="repeated: ops"):
        MonitoringSettings.model_validate(
            {"receivers": [{"name": "ops", "kind": "webhook"}, {"name": "ops", "kind": "slack"}]}
        )


@pytest.mark.parametrize("section", ["logs", "traces"])
def test_given_shipping_enabled_without_endpoint_then_validation_fails(section: str) -> None:
    with pytest.raises(ValidationError, match=f"{section}.endpoint is required"):
        MonitoringSettings.model_validate({section: {"enabled": True}})
    with pytest.raises(ValidationError, match=f"{section}.endpoint must be an http"):
        MonitoringSettings.model_validate({section: {"enabled": True, "endpoint": "loki:3100"}})


def test_given_receivers_then_only_those_with_credentials_need_secrets() -> None:
    s = MonitoringSettings.model_validate(RECEIVERS)
    assert s.secret_receivers() == ["oncall", "hook", "mail"]
    plain_mail = MonitoringSettings.model_validate({"receivers": [
        {"name": "m", "kind": "email", "to": "a@b.c", "from": "d@e.f", "smarthost": "smtp:25"}
    ]})
    assert plain_mail.secret_receivers() == []


# --- alert rules ----------------------------------------------------------------------------

def test_given_canary_release_then_each_track_gets_down_and_latency_alerts() -> None:
    rules = rules_by_name(alert_rules(CANARY_TRACKS, MonitoringSettings()))
    assert [r["labels"]["track"] for r in rules[TRACK_DOWN]] == ["stable", "canary"]
    assert [r["labels"]["track"] for r in rules[TRACK_LATENCY]] == ["stable", "canary"]
    down = {r["labels"]["track"]: r for r in rules[TRACK_DOWN]}
    assert down["stable"]["labels"]["severity"] == "critical"
    assert down["canary"]["labels"]["severity"] == "warning"
    assert down["stable"]["expr"] == (
        'probe_success{track="stable"} == 0 or absent(probe_success{track="stable"})'
    )


def test_given_canary_role_then_canary_error_rate_uses_the_gate_query_and_threshold() -> None:
    settings = MonitoringSettings.model_validate(
        {"thresholds": {"successRate": 0.95, "for": {"canaryErrors": "3m"}}}
    )
    (rule,) = rules_by_name(alert_rules(CANARY_TRACKS, settings))[CANARY_ERRORS]
    assert rule["expr"] == 'avg_over_time(probe_success{track="canary"}[1m]) < 0.95'
    assert rule["for"] == "3m"


def test_given_rolling_release_then_no_canary_alert() -> None:
    rules = rules_by_name(alert_rules([Track("stable", "primary")], MonitoringSettings()))
    assert CANARY_ERRORS not in rules


def test_given_idle_blue_green_colour_then_it_is_not_probed() -> None:
    tracks = [Track("blue", "primary"), Track("green", "idle")]
    rules = rules_by_name(alert_rules(tracks, MonitoringSettings()))
    assert [r["labels"]["track"] for r in rules[TRACK_DOWN]] == ["blue"]


def test_given_p99_threshold_then_latency_alert_compares_seconds() -> None:
    settings = MonitoringSettings.model_validate({"thresholds": {"p99LatencyMs": 250}})
    rule = rules_by_name(alert_rules(CANARY_TRACKS, settings))[TRACK_LATENCY][0]
    assert rule["expr"] == (
        'quantile_over_time(0.99, probe_duration_seconds{track="stable"}[5m]) > 0.25'
    )


def test_given_no_namespace_then_only_probe_and_storage_rules() -> None:
    rules = alert_rules(CANARY_TRACKS, MonitoringSettings(), RuleScope(storage=False))
    assert [g["name"] for g in rules["groups"]] == ["moontv-tracks"]
    assert all("namespace" not in r["labels"] for g in rules["groups"] for r in g["rules"])


def test_given_namespace_then_kubernetes_rules_are_scoped_and_alerts_carry_namespace() -> None:
    scope = RuleScope(namespace="moontv-prod", backup_cronjob="moontv-backup")
    rules = alert_rules(CANARY_TRACKS, MonitoringSettings(), scope)
    by_name = rules_by_name(rules)
    assert {HPA_AT_MAX, BACKUP_FAILED, STORAGE_DOWN} <= by_name.keys()
    assert 'job_name=~"moontv-backup-.*"' in by_name[BACKUP_FAILED][0]["expr"]
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["namespace"] == "moontv-prod"
            if group["name"] == "moontv-kubernetes":
                assert 'namespace="moontv-prod"' in rule["expr"]


def test_given_no_backup_cronjob_then_no_backup_alert() -> None:
    rules = rules_by_name(alert_rules(CANARY_TRACKS, MonitoringSettings(), RuleScope("ns")))
    assert BACKUP_FAILED not in rules


def test_given_gate_defaults_then_queries_match_the_documented_promql() -> None:
    gate = health_gate_queries("canary", MonitoringSettings())
    assert gate["success"] == 'avg(avg_over_time(probe_success{track="canary"}[1m]))'
    assert gate["latency"] == (
        'max(quantile_over_time(0.99, probe_duration_seconds{track="canary"}[5m]))'
    )
    assert (gate["successMin"], gate["latencyMaxSeconds"]) == ("0.99", "0.5")


# --- metric allow-list ----------------------------------------------------------------------

def test_metric_name_extraction_skips_functions_labels_ranges_and_keywords() -> None:
    expr = (
        'sum by (pod) (increase(kube_x_total{a="b{c}"}[15m])) > 1e3 '
        "or on (namespace) absent(up{job=\"j\"}) / ignoring (le) foo:bar"
    )
    assert helpers.metric_names(expr) == {"kube_x_total", "up", "foo:bar"}


def test_given_all_rules_and_panels_then_they_use_only_produced_metrics() -> None:
    scope = RuleScope(namespace="moontv", backup_cronjob="moontv-backup")
    exprs = [r["expr"] for g in alert_rules(CANARY_TRACKS, MonitoringSettings(), scope)["groups"]
             for r in g["rules"]]
    exprs += helpers.dashboard_queries(dashboard(CANARY_TRACKS, "moontv"))
    used = set().union(*(helpers.metric_names(e) for e in exprs))
    assert used <= helpers.ALLOWED, used - helpers.ALLOWED
    assert {"probe_success", "probe_duration_seconds", "redis_up"} <= used


# --- alertmanager ---------------------------------------------------------------------------

def test_given_receivers_then_each_gets_a_route_for_its_severities() -> None:
    s = MonitoringSettings.model_validate(RECEIVERS)
    config = alertmanager_config(s.receivers, SECRETS)
    assert config["route"]["receiver"] == NULL_RECEIVER
    routes = {r["receiver"]: r for r in config["route"]["routes"]}
    assert routes["oncall"]["matchers"] == ['severity=~"critical"']
    assert routes["hook"]["matchers"] == ['severity=~"critical|warning"']
    assert all(r["continue"] for r in routes.values())
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["hook"]["webhook_configs"][0]["url"] == SECRETS["hook"]
    assert receivers["oncall"]["slack_configs"][0]["api_url"] == SECRETS["oncall"]
    assert receivers["mail"]["email_configs"][0]["auth_password"] == SECRETS["mail"]


def test_given_receiver_without_secret_then_error_names_the_receiver() -> None:
    s = MonitoringSettings.model_validate(RECEIVERS)
    with pytest.raises(ValueError, match="without a secret value: hook"):
        alertmanager_config(s.receivers, {"oncall": "x", "mail": "y"})


def test_given_crd_spec_then_secrets_are_references_never_values() -> None:
    s = MonitoringSettings.model_validate(RECEIVERS)
    spec = alertmanager_config_spec(s.receivers, "moontv-alert-receivers")
    text = repr(spec)
    assert not any(value in text for value in SECRETS.values())
    receivers = {r["name"]: r for r in spec["receivers"]}
    ref = {"name": "moontv-alert-receivers", "key": "hook"}
    assert receivers["hook"]["webhookConfigs"][0]["urlSecret"] == ref
    assert receivers["oncall"]["slackConfigs"][0]["apiURL"]["key"] == "oncall"
    assert receivers["mail"]["emailConfigs"][0]["authPassword"]["key"] == "mail"
    assert spec["inhibitRules"][0]["sourceMatch"][0]["value"] == TRACK_DOWN


# --- prometheus / blackbox ------------------------------------------------------------------

def test_given_targets_then_probe_job_goes_through_blackbox_with_track_labels() -> None:
    targets = ScrapeTargets(
        probes={"stable": "http://moontv-stable:3000/login"},
        blackbox="blackbox:9115", alertmanagers=["alertmanager:9093"],
        storage_exporter="storage-exporter:9121",
    )
    settings = MonitoringSettings.model_validate({"probeInterval": "10s"})
    config = prometheus_config(targets, settings, ["rules.yml"])
    probe, storage = config["scrape_configs"]
    assert config["global"]["scrape_interval"] == "10s"
    assert probe["static_configs"] == [
        {"targets": ["http://moontv-stable:3000/login"], "labels": {"track": "stable"}}
    ]
    assert probe["relabel_configs"][-1] == {
        "target_label": "__address__", "replacement": "blackbox:9115"
    }
    assert storage == {"job_name": "moontv-storage",
                       "static_configs": [{"targets": ["storage-exporter:9121"]}]}
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]


def test_blackbox_login_module_refuses_redirects() -> None:
    module = blackbox_config()["modules"]["http_login"]
    assert module["prober"] == "http"
    assert module["http"]["follow_redirects"] is False


# --- dashboard ------------------------------------------------------------------------------

def test_given_swarm_then_dashboard_has_no_kubernetes_panels() -> None:
    board = dashboard(CANARY_TRACKS)
    assert not any("kube_" in q or "kubelet_" in q for q in helpers.dashboard_queries(board))
    assert 'track=~"stable|canary"' in helpers.dashboard_queries(board)[0]


def test_given_kubernetes_then_dashboard_shows_replicas_hpa_restarts_storage() -> None:
    board = dashboard(CANARY_TRACKS, "moontv")
    text = " ".join(helpers.dashboard_queries(board))
    for metric in ("kube_deployment_status_replicas_available",
                   "kube_horizontalpodautoscaler_spec_max_replicas",
                   "kube_pod_container_status_restarts_total", "redis_up"):
        assert metric in text
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


# --- log and trace agents -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kind", "endpoint", "expected"),
    [
        ("loki", "http://loki.logging:3100", ["Name loki", "Host loki.logging", "Port 3100",
                                              "tls Off"]),
        ("elasticsearch", "https://es.example.org", ["Name es", "Port 443", "tls On"]),
    ],
)
def test_given_log_endpoint_then_fluent_bit_ships_there(
    kind: str, endpoint: str, expected: list[str]
) -> None:
    logs = LogShipping.model_validate({"enabled": True, "kind": kind, "endpoint": endpoint})
    conf = fluent_bit_config(logs, "moontv")
    lines = [line.strip() for line in conf.splitlines()]
    for line in expected:
        assert line in lines
    assert "Path /var/log/containers/*_moontv_*.log" in lines


@pytest.mark.parametrize(("protocol", "exporter"), [("grpc", "otlp"), ("http", "otlphttp")])
def test_given_trace_endpoint_then_collector_exports_otlp(protocol: str, exporter: str) -> None:
    traces = TraceExport.model_validate(
        {"enabled": True, "endpoint": "http://jaeger:4317", "protocol": protocol}
    )
    conf = otel_collector_config(traces)
    assert conf["exporters"] == {exporter: {"endpoint": "http://jaeger:4317",
                                            "tls": {"insecure": True}}}
    assert conf["service"]["pipelines"]["traces"]["exporters"] == [exporter]
