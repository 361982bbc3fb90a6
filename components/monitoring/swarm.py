"""Monitoring of MoonTV on Docker Swarm, where there is no Prometheus Operator.

Prometheus, the blackbox exporter and Alertmanager run as Swarm services on the application's
overlay network, configured by the same generators as on Kubernetes. prometheus.yml, the rules
and blackbox.yml are ``docker.ServiceConfig``s; alertmanager.yml contains receiver URLs, so it
is a ``docker.Secret``. Config and secret names carry a content hash: Swarm configs are
immutable, so a change creates a new one, the service switches to it and the old one goes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_docker as docker
import yaml

from components import app_facts, naming
from components.monitoring.config import (
    ScrapeTargets,
    alertmanager_config,
    blackbox_config,
    prometheus_config,
)
from components.monitoring.model import MonitoringSettings, TrackLike, require_receiver_secrets
from components.monitoring.rules import RuleScope, alert_rules, health_gates, monitored

PROMETHEUS_PORT, ALERTMANAGER_PORT, BLACKBOX_PORT = 9090, 9093, 9115
PROMETHEUS_DIR, ALERTMANAGER_DIR, BLACKBOX_DIR = (
    "/etc/prometheus", "/etc/alertmanager", "/etc/blackbox"
)


@dataclass(frozen=True)
class SwarmMonitoringArgs:
    tracks: Sequence[TrackLike]
    settings: MonitoringSettings
    network: pulumi.Input[str]  # overlay network shared with the MoonTV services
    # receiver name -> URL (webhook, slack) or SMTP password (email), as secret Outputs.
    receiver_secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    storage_exporter: str | None = None  # host:port of the redis_exporter on the network
    prometheus_port: int | None = PROMETHEUS_PORT  # published in host mode; None: not published
    provider: docker.Provider | None = None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


class SwarmMonitoring(pulumi.ComponentResource):
    """Prometheus + blackbox exporter + Alertmanager services for one Swarm environment."""

    probe_targets: dict[str, str]
    health_queries: dict[str, dict[str, str]]
    prometheus: docker.Service | None
    alertmanager: docker.Service | None
    blackbox: docker.Service | None

    def __init__(
        self, name: str, args: SwarmMonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("moontv:monitoring:SwarmMonitoring", name, None, opts)
        self._args = args
        s = args.settings
        require_receiver_secrets(s, args.receiver_secrets)
        self._opts = pulumi.ResourceOptions(
            parent=self, providers=[args.provider] if args.provider else None
        )
        # Configs and the Alertmanager secret are named after their content: a new content is a
        # new object, created before the old one (still mounted by a running service) is deleted.
        # Delete-first, the provider's default for explicitly named objects, Swarm refuses.
        self._content_named_opts = pulumi.ResourceOptions.merge(
            self._opts, pulumi.ResourceOptions(delete_before_replace=False)
        )
        tracks = monitored(args.tracks)
        self.probe_targets = {
            t.name: app_facts.probe_url(naming.track_name(t.name), app_facts.PORT)
            for t in tracks
        }
        self.health_queries = health_gates(args.tracks, s)
        self.prometheus = self.alertmanager = self.blackbox = None
        if s.enabled:
            names = {k: naming.resource_name(naming.APP, k)
                     for k in ("prometheus", "blackbox", "alertmanager")}
            self.blackbox = self._service(
                names["blackbox"], args.settings.images.blackbox_exporter, BLACKBOX_PORT,
                [f"--config.file={BLACKBOX_DIR}/blackbox.yml"],
                configs=[self._config("blackbox-yml", _yaml(blackbox_config()),
                                      f"{BLACKBOX_DIR}/blackbox.yml")],
            )
            self.alertmanager = self._service(
                names["alertmanager"], args.settings.images.alertmanager, ALERTMANAGER_PORT,
                [f"--config.file={ALERTMANAGER_DIR}/alertmanager.yml",
                 "--storage.path=/alertmanager", "--cluster.listen-address="],
                secrets=[self._alertmanager_secret()],
                volume=("alertmanager-data", "/alertmanager"),
            )
            targets = ScrapeTargets(
                probes=self.probe_targets,
                blackbox=f"{names['blackbox']}:{BLACKBOX_PORT}",
                alertmanagers=[f"{names['alertmanager']}:{ALERTMANAGER_PORT}"],
                storage_exporter=args.storage_exporter,
            )
            rules = alert_rules(tracks, s, RuleScope(storage=args.storage_exporter is not None))
            rules_file = f"{PROMETHEUS_DIR}/moontv-rules.yml"
            self.prometheus = self._service(
                names["prometheus"], args.settings.images.prometheus, PROMETHEUS_PORT,
                [f"--config.file={PROMETHEUS_DIR}/prometheus.yml",
                 "--storage.tsdb.path=/prometheus"],
                configs=[
                    self._config("prometheus-yml",
                                 _yaml(prometheus_config(targets, s, [rules_file])),
                                 f"{PROMETHEUS_DIR}/prometheus.yml"),
                    self._config("rules-yml", _yaml(rules), rules_file),
                ],
                volume=("prometheus-data", "/prometheus"),
                published=args.prometheus_port,
            )
        self.register_outputs(
            {"probeTargets": self.probe_targets, "healthQueries": self.health_queries})

    def _labels(self, component: str) -> list[docker.ServiceLabelArgsDict]:
        return [{"label": k, "value": v}
                for k, v in naming.labels(naming.APP, component).items()]

    def _config(
        self, key: str, content: str, path: str
    ) -> docker.ServiceTaskSpecContainerSpecConfigArgsDict:
        config = docker.ServiceConfig(
            naming.resource_name(naming.APP, key),
            name=naming.resource_name(naming.APP, key, _digest(content)),
            data_raw=content,
            labels=self._labels("monitoring"),
            opts=self._content_named_opts,
        )
        return {"config_id": config.id, "config_name": config.name, "file_name": path,
                "file_mode": 0o444}

    def _alertmanager_secret(self) -> docker.ServiceTaskSpecContainerSpecSecretArgsDict:
        receivers = self._args.settings.receivers
        needed = {n: self._args.receiver_secrets[n]
                  for n in self._args.settings.secret_receivers()}

        def render(values: dict[str, str]) -> str:
            return _yaml(alertmanager_config(receivers, values))

        rendered: pulumi.Output[str] = pulumi.Output.all(**needed).apply(render)
        content: pulumi.Output[str] = pulumi.Output.secret(rendered)
        encoded: pulumi.Output[str] = pulumi.Output.secret(content.apply(_base64))
        secret = docker.Secret(
            naming.resource_name(naming.APP, "alertmanager-yml"),
            # The name carries a short content hash so a change rolls to a new secret; the hash
            # reveals nothing of the URLs, so the name is not kept secret (that would hide the
            # whole service spec from previews).
            name=pulumi.Output.unsecret(content.apply(
                lambda text: naming.resource_name(naming.APP, "alertmanager-yml", _digest(text))
            )),
            data=encoded,
            labels=self._labels("monitoring"),
            opts=self._content_named_opts,
        )
        return {"secret_id": secret.id, "secret_name": secret.name,
                "file_name": f"{ALERTMANAGER_DIR}/alertmanager.yml", "file_mode": 0o400}

    def _service(
        self, name: str, image: str, port: int, service_args: list[str], *,
        configs: Sequence[docker.ServiceTaskSpecContainerSpecConfigArgsDict] = (),
        secrets: Sequence[docker.ServiceTaskSpecContainerSpecSecretArgsDict] = (),
        volume: tuple[str, str] | None = None, published: int | None = None,
    ) -> docker.Service:
        component = name.removeprefix(f"{naming.APP}-")
        mounts: list[docker.ServiceTaskSpecContainerSpecMountArgsDict] = []
        if volume:
            mounts.append({"type": "volume", "source": naming.resource_name(naming.APP, volume[0]),
                           "target": volume[1]})
        endpoint: docker.ServiceEndpointSpecArgsDict = {"mode": "dnsrr"}
        if published:
            endpoint["ports"] = [{"target_port": port, "published_port": published,
                                  "publish_mode": "host", "protocol": "tcp"}]
        return docker.Service(
            name,
            name=name,
            labels=self._labels(component),
            task_spec={
                "container_spec": {
                    "image": image,
                    "args": service_args,
                    "configs": list(configs),
                    "secrets": list(secrets),
                    "mounts": mounts,
                    "read_only": True,
                    "labels": self._labels(component),
                    "healthcheck": {
                        "tests": ["CMD", "wget", "-q", "-O", "/dev/null",
                                  f"http://127.0.0.1:{port}/-/healthy"],
                        "interval": "10s", "timeout": "3s", "retries": 3,
                    },
                },
                "networks_advanceds": [{"name": self._args.network, "aliases": [name]}],
                "resources": {"limits": {"memory_bytes": 512 * 1024 * 1024}},
                "restart_policy": {"condition": "any", "delay": "5s"},
            },
            mode={"replicated": {"replicas": 1}},
            endpoint_spec=endpoint,
            update_config={"order": "start-first", "failure_action": "rollback"},
            opts=self._opts,
        )


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
