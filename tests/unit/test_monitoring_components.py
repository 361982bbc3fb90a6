"""Monitoring components under Pulumi mocks: what they declare, and that receiver URLs never
appear in plain text."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes_validate
import pulumi
import pytest
import yaml

from components.monitoring.config import NULL_RECEIVER
from components.monitoring.kubernetes import Monitoring, MonitoringArgs
from components.monitoring.model import KUBE_PROMETHEUS_STACK_VERSION, MonitoringSettings
from components.monitoring.rules import TRACK_DOWN, RuleScope, alert_rules
from components.monitoring.swarm import (
    SwarmMonitoring,
    SwarmMonitoringArgs,
)
from tests.program import Run, is_secret, run_program, unwrap

K8S_VERSION = "1.35.0"
NS = "moontv"
SECRET_VALUES = {
    "oncall": "https://hooks.slack.example/T0/B0/s3cr3t-slack",
    "hook": "https://alerts.example.org/hook?token=s3cr3t-hook",
    "mail": "s3cr3t-smtp-password",
}
RECEIVERS = [
    {"name": "oncall", "kind": "slack", "channel": "#moontv", "severities": ["critical"]},
    {"name": "hook", "kind": "webhook"},
    {"name": "mail", "kind": "email", "to": "ops@example.org", "from": "am@example.org",
     "smarthost": "smtp.example.org:587", "authUsername": "am"},
]


@dataclass(frozen=True)
class Track:
    name: str
    role: str


CANARY = (Track("stable", "primary"), Track("canary", "canary"))


def custom(run: Run, kind: str) -> dict[str, dict[str, Any]]:
    """Logical name -> inputs of every Prometheus Operator object of ``kind``."""
    return {r.name: r.raw for r in run.resources
            if r.type.startswith("kubernetes:monitoring.coreos.com") and r.raw.get("kind") == kind}


def settings(**extra: Any) -> MonitoringSettings:
    return MonitoringSettings.model_validate({"receivers": RECEIVERS, **extra})


def k8s_args(**changes: Any) -> MonitoringArgs:
    base: dict[str, Any] = {
        "namespace": NS, "tracks": CANARY, "settings": settings(),
        "receiver_secrets": {n: pulumi.Output.secret(v) for n, v in SECRET_VALUES.items()},
        "storage_selector": {"app.kubernetes.io/name": "moontv",
                             "app.kubernetes.io/component": "storage"},
        "backup_cronjob": "moontv-backup",
    }
    return MonitoringArgs(**{**base, **changes})


def deploy(args: MonitoringArgs) -> Run:
    return run_program(lambda: Monitoring("monitoring", args))


def plain_strings(value: Any) -> Iterator[str]:
    """Every string in a value, not descending into Pulumi secrets."""
    if is_secret(value):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from plain_strings(v)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from plain_strings(item)


# --- Kubernetes -------------------------------------------------------------------------------

def test_given_install_mode_then_pinned_kube_prometheus_stack_selects_our_objects() -> None:
    deployed = deploy(k8s_args())
    (release,) = deployed.raw("kubernetes:helm.sh/v3:Release").values()
    assert release["chart"] == "kube-prometheus-stack"
    assert release["version"] == KUBE_PROMETHEUS_STACK_VERSION
    assert release["repositoryOpts"]["repo"] == (
        "https://prometheus-community.github.io/helm-charts"
    )
    assert release["namespace"] == "monitoring"
    spec = release["values"]["prometheus"]["prometheusSpec"]
    assert spec["probeSelectorNilUsesHelmValues"] is False
    assert spec["ruleSelectorNilUsesHelmValues"] is False
    sidecar = release["values"]["grafana"]["sidecar"]["dashboards"]
    assert (sidecar["label"], sidecar["labelValue"]) == ("grafana_dashboard", "1")


def test_given_existing_mode_then_no_chart_and_selector_labels_on_every_custom_resource() -> None:
    args = k8s_args(settings=settings(mode="existing", selectorLabels={"release": "prom"}))
    deployed = deploy(args)
    assert not deployed.raw("kubernetes:helm.sh/v3:Release")
    customs = [r for r in deployed.resources if r.type.startswith("kubernetes:monitoring")]
    assert len(customs) == 5  # 2 probes, ServiceMonitor, PrometheusRule, AlertmanagerConfig
    for resource in customs:
        assert resource.raw["metadata"]["labels"]["release"] == "prom"


def test_given_canary_release_then_one_probe_per_track_through_the_blackbox_exporter() -> None:
    probes = custom(deploy(k8s_args()), "Probe")
    by_track = {p["spec"]["targets"]["staticConfig"]["labels"]["track"]: p for p in
                probes.values()}
    assert set(by_track) == {"stable", "canary"}
    spec = by_track["canary"]["spec"]
    assert spec["targets"]["staticConfig"]["static"] == [
        "http://moontv-canary.moontv.svc:80/login"
    ]
    assert spec["prober"]["url"] == "moontv-blackbox.moontv.svc:9115"
    assert (spec["module"], spec["jobName"], spec["interval"]) == (
        "http_login", "moontv-probe", "15s"
    )
    assert by_track["canary"]["apiVersion"] == "monitoring.coreos.com/v1"


def test_given_idle_colour_then_only_active_colour_is_probed_through_its_service_port() -> None:
    args = k8s_args(tracks=(Track("blue", "primary"), Track("green", "idle")))
    (probe,) = custom(deploy(args), "Probe").values()
    assert probe["spec"]["targets"]["staticConfig"]["static"] == [
        "http://moontv-blue.moontv.svc:80/login"
    ]


def test_prometheus_rule_carries_the_generated_rules() -> None:
    (rule,) = custom(deploy(k8s_args()), "PrometheusRule").values()
    expected = alert_rules(CANARY, settings(), RuleScope(NS, True, "moontv-backup"))
    assert rule["spec"] == expected
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert TRACK_DOWN in alerts and "MoonTVBackupFailed" in alerts


def test_given_storage_selector_then_service_monitor_scrapes_exporter_as_storage_job() -> None:
    (monitor,) = custom(deploy(k8s_args()), "ServiceMonitor").values()
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "storage"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "metrics"
    assert {"action": "replace", "targetLabel": "job",
            "replacement": "moontv-storage"} in endpoint["relabelings"]


def test_given_no_storage_exporter_then_no_service_monitor_and_no_storage_alert() -> None:
    deployed = deploy(k8s_args(storage_selector=None))
    assert not custom(deployed, "ServiceMonitor")
    (rule,) = custom(deployed, "PrometheusRule").values()
    assert "moontv-storage" not in [g["name"] for g in rule["spec"]["groups"]]


def test_alertmanager_config_references_the_receiver_secret() -> None:
    deployed = deploy(k8s_args())
    (config,) = custom(deployed, "AlertmanagerConfig").values()
    assert config["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    receivers = {r["name"]: r for r in config["spec"]["receivers"]}
    assert set(receivers) == {NULL_RECEIVER, "oncall", "hook", "mail"}
    assert receivers["hook"]["webhookConfigs"][0]["urlSecret"] == {
        "name": "moontv-alert-receivers", "key": "hook"
    }
    (secret,) = deployed.raw("kubernetes:core/v1:Secret").values()
    assert secret["metadata"]["name"] == "moontv-alert-receivers"
    assert unwrap(secret["stringData"]) == SECRET_VALUES


def test_no_receiver_secret_appears_in_plain_text_anywhere() -> None:
    deployed = deploy(k8s_args())
    assert deployed.raw("kubernetes:core/v1:Secret"), "the secret must exist to be checked"
    for resource in deployed.resources:
        text = "\n".join(plain_strings(resource.raw))
        for value in SECRET_VALUES.values():
            assert value not in text, f"{resource.type} {resource.name} leaks a receiver secret"
    # and the Secret holds them as Pulumi secrets
    (secret,) = deployed.raw("kubernetes:core/v1:Secret").values()
    assert is_secret(secret["stringData"]) or all(
        is_secret(v) for v in secret["stringData"].values()
    )


def test_given_receiver_without_secret_value_then_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"moontv:monitoring.receivers: no secret value for hook"):
        Monitoring("monitoring", k8s_args(receiver_secrets={"oncall": "x", "mail": "y"}))


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar() -> None:
    maps = deploy(k8s_args()).raw("kubernetes:core/v1:ConfigMap")
    board = maps["moontv-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    model = json.loads(board["data"]["moontv.json"])
    titles = [p["title"] for p in model["panels"]]
    assert "Probe success rate by track" in titles and "Container restarts (1h)" in titles


def test_blackbox_exporter_runs_restricted_with_the_generated_modules() -> None:
    deployed = deploy(k8s_args())
    deployment = deployed.raw("kubernetes:apps/v1:Deployment")["moontv-blackbox"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    config = deployed.raw("kubernetes:core/v1:ConfigMap")["moontv-blackbox-config"]
    assert "http_login" in yaml.safe_load(config["data"]["blackbox.yml"])["modules"]
    policies = deployed.raw("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    assert {"moontv-blackbox-policy", "moontv-allow-probes"} <= set(policies)


def test_given_logs_and_traces_enabled_then_fluent_bit_and_collector_are_declared() -> None:
    args = k8s_args(settings=settings(
        logs={"enabled": True, "kind": "elasticsearch", "endpoint": "https://es.example.org:9243"},
        traces={"enabled": True, "endpoint": "http://jaeger.tracing:4317"},
    ))
    deployed = deploy(args)
    (daemonset,) = deployed.raw("kubernetes:apps/v1:DaemonSet").values()
    assert daemonset["metadata"]["name"] == "moontv-fluent-bit"
    maps = deployed.raw("kubernetes:core/v1:ConfigMap")
    conf = maps["moontv-fluent-bit-config"]["data"]["fluent-bit.conf"]
    assert "Host es.example.org" in conf and "Port 9243" in conf
    collector = yaml.safe_load(maps["moontv-otel-collector-config"]["data"]["collector.yaml"])
    assert collector["exporters"]["otlp"]["endpoint"] == "http://jaeger.tracing:4317"
    assert "moontv-otel-collector" in deployed.raw("kubernetes:apps/v1:Deployment")
    policies = deployed.raw("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    egress = policies["moontv-fluent-bit-policy"]["spec"]["egress"][0]["ports"]
    assert {"port": 9243, "protocol": "TCP"} in egress


def test_given_logs_and_traces_disabled_then_no_agents() -> None:
    deployed = deploy(k8s_args())
    assert not deployed.raw("kubernetes:apps/v1:DaemonSet")
    assert set(deployed.raw("kubernetes:apps/v1:Deployment")) == {"moontv-blackbox"}


def test_given_monitoring_disabled_then_nothing_is_declared() -> None:
    deployed = deploy(k8s_args(settings=settings(enabled=False)))
    assert [r.type for r in deployed.resources] == ["moontv:monitoring:Monitoring"]


def test_declared_kubernetes_objects_pass_strict_schema_validation() -> None:
    args = k8s_args(settings=settings(
        logs={"enabled": True, "endpoint": "http://loki.logging:3100"},
        traces={"enabled": True, "endpoint": "http://jaeger.tracing:4317"},
    ))
    checked = 0
    for resource in deploy(args).resources:
        kind = resource.type.split(":")[-1]
        if resource.type.startswith(("kubernetes:core", "kubernetes:apps",
                                    "kubernetes:networking", "kubernetes:rbac")):
            manifest = resource.inputs
            manifest.setdefault("metadata", {}).setdefault("name", resource.name)
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
            checked += 1
        assert kind  # every type token is well formed
    assert checked >= 12


# --- Swarm ------------------------------------------------------------------------------------

def swarm_args(**changes: Any) -> SwarmMonitoringArgs:
    base: dict[str, Any] = {
        "tracks": CANARY, "network": "moontv-net",
        "settings": settings(images={"prometheus": "local/prometheus:test",
                                     "blackboxExporter": "local/blackbox:test",
                                     "alertmanager": "local/alertmanager:test"}),
        "receiver_secrets": {n: pulumi.Output.secret(v) for n, v in SECRET_VALUES.items()},
        "storage_exporter": "moontv-storage-exporter:9121",
    }
    return SwarmMonitoringArgs(**{**base, **changes})


def deploy_swarm(
    args: SwarmMonitoringArgs, options: dict[str, pulumi.ResourceOptions] | None = None
) -> Run:
    """Run the component under mocks; ``options`` (if given) collects each child's options."""

    def record(transformed: pulumi.ResourceTransformationArgs) -> None:
        if options is not None:
            options[transformed.name] = transformed.opts

    return run_program(lambda: SwarmMonitoring(
        "monitoring", args, opts=pulumi.ResourceOptions(transformations=[record])))


def configs_by_key(deployed: Run) -> dict[str, dict[str, Any]]:
    return deployed.raw("docker:index/serviceConfig:ServiceConfig")


def test_swarm_declares_prometheus_blackbox_and_alertmanager_with_the_given_images() -> None:
    services = deploy_swarm(swarm_args()).raw("docker:index/service:Service")
    images = {name: s["taskSpec"]["containerSpec"]["image"] for name, s in services.items()}
    assert images == {"moontv-prometheus": "local/prometheus:test",
                      "moontv-blackbox": "local/blackbox:test",
                      "moontv-alertmanager": "local/alertmanager:test"}
    for service in services.values():
        assert service["taskSpec"]["networksAdvanceds"][0]["name"] == "moontv-net"
        assert service["taskSpec"]["containerSpec"]["readOnly"] is True
    ports = services["moontv-prometheus"]["endpointSpec"]["ports"]
    assert ports == [{"targetPort": 9090, "publishedPort": 9090, "publishMode": "host",
                      "protocol": "tcp"}]


def test_swarm_prometheus_config_probes_each_track_and_loads_the_rules() -> None:
    deployed = deploy_swarm(swarm_args())
    configs = configs_by_key(deployed)
    prometheus = yaml.safe_load(configs["moontv-prometheus-yml"]["dataRaw"])
    probe = prometheus["scrape_configs"][0]
    assert {c["labels"]["track"]: c["targets"] for c in probe["static_configs"]} == {
        "stable": ["http://moontv-stable:3000/login"],
        "canary": ["http://moontv-canary:3000/login"],
    }
    assert probe["relabel_configs"][-1]["replacement"] == "moontv-blackbox:9115"
    assert prometheus["scrape_configs"][1]["static_configs"][0]["targets"] == [
        "moontv-storage-exporter:9121"
    ]
    assert prometheus["rule_files"] == ["/etc/prometheus/moontv-rules.yml"]
    rules = yaml.safe_load(configs["moontv-rules-yml"]["dataRaw"])
    assert rules == alert_rules(CANARY, settings(), RuleScope(storage=True))
    mounted = deployed.raw("docker:index/service:Service")["moontv-prometheus"]
    files = {c["fileName"] for c in mounted["taskSpec"]["containerSpec"]["configs"]}
    assert files == {"/etc/prometheus/prometheus.yml", "/etc/prometheus/moontv-rules.yml"}


def test_swarm_config_names_change_with_their_content() -> None:
    first = configs_by_key(deploy_swarm(swarm_args()))["moontv-prometheus-yml"]["name"]
    again = configs_by_key(deploy_swarm(swarm_args()))["moontv-prometheus-yml"]["name"]
    changed = configs_by_key(deploy_swarm(swarm_args(settings=settings(probeInterval="5s"))))
    assert first == again
    assert first.startswith("moontv-prometheus-yml-")
    assert changed["moontv-prometheus-yml"]["name"] != first


def test_swarm_content_named_configs_and_secret_are_replaced_create_first() -> None:
    options: dict[str, pulumi.ResourceOptions] = {}
    deployed = deploy_swarm(swarm_args(), options=options)
    kinds = ("docker:index/serviceConfig:ServiceConfig", "docker:index/secret:Secret")
    named = [r.name for r in deployed.resources if r.type in kinds]
    assert len(named) >= 3 and any("alertmanager-yml" in n for n in named), named
    for name in named:
        assert options[name].delete_before_replace is False, name


def test_swarm_alertmanager_config_is_a_secret_and_no_url_is_plain_text() -> None:
    deployed = deploy_swarm(swarm_args())
    (secret,) = deployed.raw("docker:index/secret:Secret").values()
    assert is_secret(secret["data"])
    text = base64.b64decode(unwrap(secret["data"])).decode()
    am = yaml.safe_load(text)
    hook = next(r for r in am["receivers"] if r["name"] == "hook")
    assert hook["webhook_configs"][0]["url"] == SECRET_VALUES["hook"]
    for resource in deployed.resources:
        plain = "\n".join(plain_strings(resource.raw))
        for value in SECRET_VALUES.values():
            assert value not in plain, f"{resource.type} {resource.name} leaks a receiver secret"
    service = deployed.raw("docker:index/service:Service")["moontv-alertmanager"]
    (mounted,) = service["taskSpec"]["containerSpec"]["secrets"]
    assert mounted["fileName"] == "/etc/alertmanager/alertmanager.yml"


def test_swarm_without_storage_exporter_has_no_storage_job_or_alert() -> None:
    configs = configs_by_key(deploy_swarm(swarm_args(storage_exporter=None)))
    prometheus = yaml.safe_load(configs["moontv-prometheus-yml"]["dataRaw"])
    assert [j["job_name"] for j in prometheus["scrape_configs"]] == ["moontv-probe"]
    rules = yaml.safe_load(configs["moontv-rules-yml"]["dataRaw"])
    assert [g["name"] for g in rules["groups"]] == ["moontv-tracks"]


def test_swarm_given_receiver_without_secret_then_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no secret value for oncall"):
        SwarmMonitoring("monitoring", swarm_args(receiver_secrets={"hook": "x", "mail": "y"}))
