"""Monitoring of MoonTV on Kubernetes through the Prometheus Operator.

Declares, in the application namespace: a blackbox exporter, one ``Probe`` per monitored track
(``moontv-<track>.<ns>.svc:80/login``: the Service port), a ``ServiceMonitor`` for the storage
exporter, the ``PrometheusRule``, an ``AlertmanagerConfig`` whose receiver URLs are keys of a
Kubernetes Secret, the Grafana dashboard ConfigMap and, when enabled, Fluent Bit and an
OpenTelemetry Collector. Mode ``install`` also installs the pinned kube-prometheus-stack chart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import app_facts, naming
from components.kubernetes import pod
from components.monitoring.agents import (
    FLUENT_BIT_HTTP_PORT,
    OTLP_GRPC_PORT,
    OTLP_HTTP_PORT,
    fluent_bit_config,
    log_target,
    otel_collector_config,
    trace_port,
)
from components.monitoring.config import alertmanager_config_spec, blackbox_config
from components.monitoring.dashboard import dashboard
from components.monitoring.model import (
    KUBE_PROMETHEUS_STACK_CHART,
    KUBE_PROMETHEUS_STACK_REPO,
    MonitoringSettings,
    TrackLike,
    require_receiver_secrets,
)
from components.monitoring.rules import (
    PROBE_JOB,
    PROBE_MODULE,
    STORAGE_JOB,
    RuleScope,
    alert_rules,
    health_gates,
    monitored,
)

BLACKBOX_PORT = 9115
MONITORING_API = "monitoring.coreos.com/v1"
ALERTMANAGER_CONFIG_API = "monitoring.coreos.com/v1alpha1"
DASHBOARD_LABEL = {"grafana_dashboard": "1"}


@dataclass(frozen=True)
class MonitoringArgs:
    namespace: str
    tracks: Sequence[TrackLike]
    settings: MonitoringSettings
    instance: str = naming.APP
    # receiver name -> URL (webhook, slack) or SMTP password (email), as secret Outputs.
    receiver_secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # Labels of the storage exporter's Service; None when there is no exporter to scrape.
    storage_selector: Mapping[str, str] | None = None
    storage_metrics_port: str = "metrics"
    backup_cronjob: str | None = None
    drill_cronjob: str | None = None
    provider: pulumi.ProviderResource | None = None


class Monitoring(pulumi.ComponentResource):
    """Probes, alerts, dashboard and telemetry agents for one MoonTV environment."""

    probe_targets: dict[str, str]
    prober_url: str
    health_queries: dict[str, dict[str, str]]
    chart: k8s.helm.v3.Release | None
    receiver_secret: k8s.core.v1.Secret | None

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("moontv:monitoring:Monitoring", name, None, opts)
        self._args = args
        self._ns = args.namespace
        s = args.settings
        require_receiver_secrets(s, args.receiver_secrets)
        self._opts = pulumi.ResourceOptions(
            parent=self, providers=[args.provider] if args.provider else None
        )
        tracks = monitored(args.tracks)
        blackbox = naming.resource_name(naming.APP, "blackbox")
        self.prober_url = f"{blackbox}.{self._ns}.svc:{BLACKBOX_PORT}"
        self.probe_targets = {
            t.name: app_facts.probe_url(
                f"{naming.track_name(t.name)}.{self._ns}.svc", app_facts.SERVICE_PORT)
            for t in tracks
        }
        self.health_queries = health_gates(args.tracks, s)
        self.chart = None
        self.receiver_secret = None
        if s.enabled:
            self.chart = self._chart() if s.mode == "install" else None
            crd_opts = pulumi.ResourceOptions.merge(
                self._opts, pulumi.ResourceOptions(depends_on=[self.chart] if self.chart else [])
            )
            self._blackbox_exporter(blackbox)
            for track in tracks:
                self._custom("Probe", naming.resource_name(naming.track_name(track.name), "probe"),
                             self._probe_spec(track.name), crd_opts, MONITORING_API)
            if args.storage_selector is not None:
                self._custom("ServiceMonitor", naming.resource_name(naming.APP, "storage"),
                             self._storage_monitor_spec(), crd_opts, MONITORING_API)
            scope = RuleScope(namespace=self._ns, storage=args.storage_selector is not None,
                              backup_cronjob=args.backup_cronjob,
                              drill_cronjob=args.drill_cronjob)
            self._custom("PrometheusRule", naming.resource_name(naming.APP, "alerts"),
                         alert_rules(tracks, s, scope), crd_opts, MONITORING_API)
            self._alertmanager(crd_opts)
            self._dashboard(tracks)
            if s.logs.enabled:
                self._fluent_bit()
            if s.traces.enabled:
                self._otel_collector()
        self.register_outputs({
            "probeTargets": self.probe_targets,
            "proberUrl": self.prober_url,
            "healthQueries": self.health_queries,
        })

    # --- helpers ------------------------------------------------------------------------------

    def _meta(self, name: str, component: str, extra: Mapping[str, str] | None = None,
              namespace: str | None = None) -> dict[str, Any]:
        labels = naming.labels(self._args.instance, component)
        labels.update(extra or {})
        return {"name": name, "namespace": namespace or self._ns, "labels": labels}

    def _selector(self, component: str) -> dict[str, str]:
        return naming.selector_labels(self._args.instance, component)

    def _custom(self, kind: str, name: str, spec: Any, opts: pulumi.ResourceOptions,
                api_version: str) -> k8s.apiextensions.CustomResource:
        meta = self._meta(name, "monitoring", self._args.settings.selector_labels)
        return k8s.apiextensions.CustomResource(
            f"{name}-{kind.lower()}", api_version=api_version, kind=kind, metadata=meta,
            spec=spec, opts=opts,
        )

    # --- kube-prometheus-stack ----------------------------------------------------------------

    def _chart(self) -> k8s.helm.v3.Release:
        s = self._args.settings
        values = {
            "prometheus": {"prometheusSpec": {
                # Select every ServiceMonitor/Probe/PrometheusRule, not only the chart's own.
                "ruleSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
            }},
            "alertmanager": {"alertmanagerSpec": {
                "alertmanagerConfigSelector": {
                    "matchLabels": {"app.kubernetes.io/part-of": naming.PART_OF}
                },
                "alertmanagerConfigNamespaceSelector": {},
                "alertmanagerConfigMatcherStrategy": {"type": "None"},
            }},
            "grafana": {"sidecar": {"dashboards": {
                "enabled": True, "label": "grafana_dashboard", "labelValue": "1",
                "searchNamespace": "ALL",
            }}},
        }
        return k8s.helm.v3.Release(
            "kube-prometheus-stack",
            k8s.helm.v3.ReleaseArgs(
                chart=KUBE_PROMETHEUS_STACK_CHART,
                version=s.chart_version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KUBE_PROMETHEUS_STACK_REPO),
                name="kube-prometheus-stack",
                namespace=s.monitoring_namespace,
                create_namespace=True,
                values=values,
            ),
            opts=self._opts,
        )

    def _config_deployment(self, name: str, component: str, uid: int, config_path: str,
                           container: dict[str, Any]) -> None:
        """One restricted replica of ``container`` with ConfigMap ``name`` at ``config_path``."""
        metadata = self._meta(name, component)
        metadata["annotations"] = pod.skip_checks(*pod.image_checks(container["image"]))
        k8s.apps.v1.Deployment(
            name, metadata=metadata,
            spec={
                "replicas": 1,
                "selector": {"matchLabels": self._selector(component)},
                "template": {
                    "metadata": {"labels": naming.labels(self._args.instance, component)},
                    "spec": {
                        **pod.pod_defaults(uid),
                        "containers": [{
                            **container,
                            "resources": pod.with_ephemeral(container["resources"]),
                            "securityContext": pod.container_security(),
                            "volumeMounts": [{"name": "config", "mountPath": config_path}],
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": name}}],
                    },
                },
            },
            opts=self._opts,
        )

    # --- probes -------------------------------------------------------------------------------

    def _blackbox_exporter(self, name: str) -> None:
        component = "blackbox-exporter"
        selector = self._selector(component)
        k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=self._meta(name, component),
            data={"blackbox.yml": yaml.safe_dump(blackbox_config(), sort_keys=False)},
            opts=self._opts,
        )
        self._config_deployment(name, component, 65534, "/etc/blackbox", {
            "name": "blackbox-exporter",
            "image": self._args.settings.images.blackbox_exporter,
            "args": ["--config.file=/etc/blackbox/blackbox.yml"],
            "ports": [{"name": "http", "containerPort": BLACKBOX_PORT}],
            "resources": {
                "requests": {"cpu": "10m", "memory": "32Mi"},
                "limits": {"cpu": "200m", "memory": "64Mi"},
            },
            "readinessProbe": {"httpGet": {"path": "/-/healthy", "port": "http"}},
            "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 20},
        })
        k8s.core.v1.Service(
            f"{name}-service", metadata=self._meta(name, component),
            spec={"selector": selector,
                  "ports": [{"name": "http", "port": BLACKBOX_PORT, "targetPort": "http"}]},
            opts=self._opts,
        )
        # Let the blackbox exporter reach the tracks, and Prometheus reach the exporter, under
        # the namespace's default-deny policies.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-policy", metadata=self._meta(name, component),
            spec={
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{
                    "from": [{"namespaceSelector": {"matchLabels": {
                        "kubernetes.io/metadata.name": self._args.settings.monitoring_namespace
                    }}}],
                    "ports": [{"port": BLACKBOX_PORT, "protocol": "TCP"}],
                }],
                "egress": [
                    {"to": [{"podSelector": {"matchExpressions": [
                        {"key": naming.TRACK_LABEL, "operator": "Exists"}]}}],
                     "ports": [{"port": app_facts.PORT, "protocol": "TCP"}]},
                    {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                ],
            },
            opts=self._opts,
        )
        k8s.networking.v1.NetworkPolicy(
            naming.resource_name(naming.APP, "allow-probes"),
            metadata=self._meta(naming.resource_name(naming.APP, "allow-probes"), component),
            spec={
                "podSelector": {"matchExpressions": [
                    {"key": naming.TRACK_LABEL, "operator": "Exists"}]},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": selector}}],
                             "ports": [{"port": app_facts.PORT, "protocol": "TCP"}]}],
            },
            opts=self._opts,
        )

    def _probe_spec(self, track: str) -> dict[str, Any]:
        return {
            "jobName": PROBE_JOB,
            "interval": self._args.settings.probe_interval,
            "module": PROBE_MODULE,
            "prober": {"url": self.prober_url, "scheme": "http", "path": "/probe"},
            "targets": {"staticConfig": {
                "static": [self.probe_targets[track]], "labels": {"track": track},
            }},
        }

    def _storage_monitor_spec(self) -> dict[str, Any]:
        return {
            "selector": {"matchLabels": dict(self._args.storage_selector or {})},
            "namespaceSelector": {"matchNames": [self._ns]},
            "endpoints": [{
                "port": self._args.storage_metrics_port,
                "interval": self._args.settings.probe_interval,
                "relabelings": [
                    {"action": "replace", "targetLabel": "job", "replacement": STORAGE_JOB}
                ],
            }],
        }

    # --- alerting and dashboard ---------------------------------------------------------------

    def _alertmanager(self, crd_opts: pulumi.ResourceOptions) -> None:
        receivers = self._args.settings.receivers
        secret_name = naming.resource_name(naming.APP, "alert-receivers")
        needed = {n: self._args.receiver_secrets[n]
                  for n in self._args.settings.secret_receivers()}
        if needed:
            self.receiver_secret = k8s.core.v1.Secret(
                secret_name, metadata=self._meta(secret_name, "monitoring"), type="Opaque",
                string_data={n: pulumi.Output.secret(v) for n, v in needed.items()},
                opts=self._opts,
            )
        depends = [self.receiver_secret] if self.receiver_secret else []
        self._custom(
            "AlertmanagerConfig", naming.resource_name(naming.APP, "alerting"),
            alertmanager_config_spec(receivers, secret_name),
            pulumi.ResourceOptions.merge(crd_opts, pulumi.ResourceOptions(depends_on=depends)),
            ALERTMANAGER_CONFIG_API,
        )

    def _dashboard(self, tracks: Sequence[TrackLike]) -> None:
        name = naming.resource_name(naming.APP, "dashboard")
        k8s.core.v1.ConfigMap(
            name, metadata=self._meta(name, "monitoring", DASHBOARD_LABEL),
            data={"moontv.json": json.dumps(dashboard(tracks, self._ns), indent=1)},
            opts=self._opts,
        )

    # --- logs and traces ----------------------------------------------------------------------

    def _egress_policy(self, name: str, component: str, ports: Sequence[int]) -> None:
        k8s.networking.v1.NetworkPolicy(
            f"{name}-policy", metadata=self._meta(name, component),
            spec={
                "podSelector": {"matchLabels": self._selector(component)},
                "policyTypes": ["Egress"],
                "egress": [
                    {"ports": [{"port": port, "protocol": "TCP"} for port in ports]},
                    {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                ],
            },
            opts=self._opts,
        )

    def _fluent_bit(self) -> None:
        component, name = "log-shipper", naming.resource_name(naming.APP, "fluent-bit")
        cluster_name = naming.resource_name(name, self._ns)  # cluster-scoped: one per namespace
        logs = self._args.settings.logs
        k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=self._meta(name, component),
            data={"fluent-bit.conf": fluent_bit_config(logs, self._ns)}, opts=self._opts,
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=self._meta(name, component), opts=self._opts
        )
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-role", metadata={"name": cluster_name,
                                      "labels": naming.labels(self._args.instance, component)},
            rules=[{"apiGroups": [""], "resources": ["pods", "namespaces"],
                    "verbs": ["get", "list", "watch"]}],
            opts=self._opts,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-binding", metadata={"name": cluster_name,
                                         "labels": naming.labels(self._args.instance, component)},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                      "name": role.metadata.name},
            subjects=[{"kind": "ServiceAccount", "name": account.metadata.name,
                       "namespace": self._ns}],
            opts=self._opts,
        )
        k8s.apps.v1.DaemonSet(
            name, metadata=self._meta(name, component),
            spec={
                "selector": {"matchLabels": self._selector(component)},
                "template": {
                    "metadata": {"labels": naming.labels(self._args.instance, component)},
                    "spec": {
                        "serviceAccountName": account.metadata.name,
                        # Container logs on the node are root-owned: the shipper reads them as
                        # root, with every capability dropped and a read-only root filesystem.
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "fluent-bit",
                            "image": self._args.settings.images.fluent_bit,
                            "args": ["--config=/fluent-bit/etc/fluent-bit.conf"],
                            "ports": [{"name": "http", "containerPort": FLUENT_BIT_HTTP_PORT}],
                            "securityContext": pod.container_security(non_root=False),
                            "resources": {
                                "requests": {"cpu": "20m", "memory": "32Mi"},
                                "limits": {"cpu": "200m", "memory": "128Mi"},
                            },
                            "livenessProbe": {"httpGet": {"path": "/", "port": "http"}},
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/fluent-bit/etc"},
                                {"name": "varlog", "mountPath": "/var/log", "readOnly": True},
                                {"name": "state", "mountPath": "/var/fluent-bit/state"},
                            ],
                        }],
                        "volumes": [
                            {"name": "config", "configMap": {"name": name}},
                            {"name": "varlog", "hostPath": {"path": "/var/log"}},
                            {"name": "state", "hostPath": {
                                "path": f"/var/lib/{cluster_name}", "type": "DirectoryOrCreate"}},
                        ],
                        "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                    },
                },
            },
            opts=self._opts,
        )
        # the log store, and the API server for the kubernetes filter's metadata
        self._egress_policy(name, component, [log_target(logs)[1], 443, 6443])

    def _otel_collector(self) -> None:
        component, name = "trace-collector", naming.resource_name(naming.APP, "otel-collector")
        traces = self._args.settings.traces
        selector = self._selector(component)
        k8s.core.v1.ConfigMap(
            f"{name}-config", metadata=self._meta(name, component),
            data={"collector.yaml": yaml.safe_dump(otel_collector_config(traces),
                                                   sort_keys=False)},
            opts=self._opts,
        )
        self._config_deployment(name, component, 10001, "/etc/otelcol", {
            "name": "otel-collector",
            "image": self._args.settings.images.otel_collector,
            "args": ["--config=/etc/otelcol/collector.yaml"],
            "ports": [
                {"name": "otlp-grpc", "containerPort": OTLP_GRPC_PORT},
                {"name": "otlp-http", "containerPort": OTLP_HTTP_PORT},
                {"name": "health", "containerPort": 13133},
            ],
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            },
            "readinessProbe": {"httpGet": {"path": "/", "port": "health"}},
            "livenessProbe": {"httpGet": {"path": "/", "port": "health"}},
        })
        k8s.core.v1.Service(
            f"{name}-service", metadata=self._meta(name, component),
            spec={"selector": selector, "ports": [
                {"name": "otlp-grpc", "port": OTLP_GRPC_PORT, "targetPort": "otlp-grpc"},
                {"name": "otlp-http", "port": OTLP_HTTP_PORT, "targetPort": "otlp-http"},
            ]},
            opts=self._opts,
        )
        self._egress_policy(name, component, [trace_port(traces)])
