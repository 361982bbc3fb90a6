"""The ``moontv:monitoring`` configuration object (pure: no Pulumi import).

Receiver URLs and passwords are secrets: this model only names the receivers. The secret values
are read by ``components/settings.py`` as Pulumi secret Outputs and handed to the platform
components keyed by receiver name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal, Protocol
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from components import image_defaults
from components.errors import DnsLabel, matching

# Chart pinned for mode `install` (prometheus-community/kube-prometheus-stack).
KUBE_PROMETHEUS_STACK_CHART = "kube-prometheus-stack"
KUBE_PROMETHEUS_STACK_VERSION = "79.1.1"
KUBE_PROMETHEUS_STACK_REPO = "https://prometheus-community.github.io/helm-charts"

# A Prometheus duration such as "15s", "1m" or "1h30m".
Duration = Annotated[str, matching(
    r"^([0-9]+(ms|s|m|h|d|w|y))+$",
    "a duration such as 30s, 5m or 1h30m (units ms, s, m, h, d, w, y)",
)]
# Receiver names double as Kubernetes Secret keys and Alertmanager receiver names.
ReceiverName = DnsLabel
Email = Annotated[str, matching(r"^[^@\s]+@[^@\s]+$", "an e-mail address (name@domain)")]
Severity = Literal["critical", "warning", "info"]


class TrackLike(Protocol):
    """What monitoring needs from a release track (``components.release.Track`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class AlertWindows(_Model):
    """How long each condition must hold before its alert fires (Prometheus `for`)."""

    track_down: Duration = "1m"
    latency: Duration = "5m"
    canary_errors: Duration = "2m"
    storage_down: Duration = "1m"
    pod_restarts: Duration = "1m"
    hpa_at_max: Duration = "15m"
    volume_full: Duration = "5m"
    backup_failed: Duration = "1m"


class Thresholds(_Model):
    success_rate: float = Field(default=0.99, gt=0, le=1)
    p99_latency_ms: int = Field(default=500, gt=0)
    # Range of the success-rate average; the rollout health gate uses the same window.
    success_window: Duration = "1m"
    # Range over which the p99 of probe durations is taken.
    latency_window: Duration = "5m"
    restarts: int = Field(default=3, ge=1, le=100, description="container restarts within 15m")
    volume_used_ratio: float = Field(default=0.85, gt=0, lt=1)
    # `for` is a Python keyword: the field is for_, the config key stays `for`.
    for_: AlertWindows = Field(
        default_factory=AlertWindows, validation_alias="for", serialization_alias="for"
    )


class _Receiver(_Model):
    name: ReceiverName
    severities: tuple[Severity, ...] = ("critical", "warning")
    send_resolved: bool = True

    @property
    def needs_secret(self) -> bool:
        return True


class WebhookReceiver(_Receiver):
    """Generic webhook; the URL is the secret."""

    kind: Literal["webhook"]


class SlackReceiver(_Receiver):
    """Slack incoming webhook; the webhook URL is the secret."""

    kind: Literal["slack"]
    channel: str | None = None


class EmailReceiver(_Receiver):
    """SMTP e-mail; the SMTP password is the secret (only when authUsername is set)."""

    kind: Literal["email"]
    to: Email
    from_: Email = Field(alias="from")
    smarthost: Annotated[str, matching(
        r"^[^:\s]+:[0-9]{1,5}$", "host:port (e.g. smtp.example.com:587)"
    )]
    auth_username: str | None = None

    @property
    def needs_secret(self) -> bool:
        return self.auth_username is not None


Receiver = Annotated[
    WebhookReceiver | SlackReceiver | EmailReceiver, Field(discriminator="kind")
]


def _check_endpoint(enabled: bool, endpoint: str | None, key: str) -> None:
    if not enabled:
        return
    if endpoint is None:
        raise ValueError(f"{key}.endpoint is required when {key}.enabled is true")
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"{key}.endpoint must be an http(s) URL such as http://loki:3100, got {endpoint!r}"
        )


class LogShipping(_Model):
    enabled: bool = False
    endpoint: str | None = None
    kind: Literal["loki", "elasticsearch"] = "loki"

    @model_validator(mode="after")
    def _endpoint(self) -> LogShipping:
        _check_endpoint(self.enabled, self.endpoint, "logs")
        return self


class TraceExport(_Model):
    enabled: bool = False
    endpoint: str | None = None
    # OTLP over gRPC (port 4317, also what Jaeger accepts) or OTLP over HTTP (4318).
    protocol: Literal["grpc", "http"] = "grpc"

    @model_validator(mode="after")
    def _endpoint(self) -> TraceExport:
        _check_endpoint(self.enabled, self.endpoint, "traces")
        return self


class MonitoringImages(_Model):
    """``moontv:monitoring.images``: what the monitoring components run. Prod pins them by
    digest (``name:tag@sha256:…``), as the policy pack requires."""

    blackbox_exporter: str = image_defaults.BLACKBOX_EXPORTER
    fluent_bit: str = image_defaults.FLUENT_BIT
    otel_collector: str = image_defaults.OTEL_COLLECTOR
    # Swarm only: Kubernetes uses the Prometheus Operator's Prometheus and Alertmanager.
    prometheus: str = image_defaults.PROMETHEUS
    alertmanager: str = image_defaults.ALERTMANAGER


class MonitoringSettings(_Model):
    """``moontv:monitoring``: probes, alert thresholds, receivers, logs and traces."""

    enabled: bool = True
    # install: deploy kube-prometheus-stack; existing: attach to a Prometheus Operator already
    # running (its selectors must match `selectorLabels`).
    mode: Literal["install", "existing"] = "install"
    chart_version: str = KUBE_PROMETHEUS_STACK_VERSION
    # Where kube-prometheus-stack runs: installed there (mode install) or already there (existing).
    monitoring_namespace: str = "monitoring"
    selector_labels: dict[str, str] = Field(default_factory=dict)
    probe_interval: Duration = "15s"
    thresholds: Thresholds = Field(default_factory=Thresholds)
    receivers: tuple[Receiver, ...] = ()
    logs: LogShipping = Field(default_factory=LogShipping)
    traces: TraceExport = Field(default_factory=TraceExport)
    images: MonitoringImages = Field(default_factory=MonitoringImages)

    @model_validator(mode="after")
    def _unique_receivers(self) -> MonitoringSettings:
        names = [r.name for r in self.receivers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"receivers: names must be unique, repeated: {', '.join(duplicates)}")
        return self

    def secret_receivers(self) -> list[str]:
        """Names of the receivers whose secret value must be supplied."""
        return [r.name for r in self.receivers if r.needs_secret]


def missing_receiver_secrets(receivers: Sequence[Receiver], secrets: Mapping[str, object]
                             ) -> list[str]:
    """Names of the receivers that need a secret value (URL, SMTP password) and have none."""
    return [r.name for r in receivers if r.needs_secret and r.name not in secrets]


def require_receiver_secrets(settings: MonitoringSettings, secrets: Mapping[str, object]) -> None:
    """Raise when a receiver that needs a secret value (URL, SMTP password) has none."""
    missing = missing_receiver_secrets(settings.receivers, secrets)
    if missing:
        raise ValueError("moontv:monitoring.receivers: no secret value for " + ", ".join(missing))
