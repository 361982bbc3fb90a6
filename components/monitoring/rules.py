"""Prometheus alert rules and the health-gate queries (pure: no Pulumi import).

MoonTV exposes no metrics, so track health comes from blackbox probes of ``/login``: each probe
series carries the label ``track``. Latency uses ``probe_duration_seconds``, a gauge with one
sample per probe: ``quantile_over_time(0.99, …[window])`` over those samples is the p99 of the
probe round-trips in the window, with no histogram needed. With the default 15s interval and a
5m window that is 20 samples, so p99 is close to the slowest probe: a deliberately strict reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from components import app_facts
from components.monitoring.model import MonitoringSettings, TrackLike

PROBE_JOB = "moontv-probe"
STORAGE_JOB = "moontv-storage"
PROBE_MODULE = "http_login"
PROBE_PATH = app_facts.PROBE_PATH

TRACK_DOWN = "MoonTVTrackDown"
TRACK_LATENCY = "MoonTVTrackLatencyHigh"
CANARY_ERRORS = "MoonTVCanaryErrorRateHigh"
STORAGE_DOWN = "MoonTVStorageDown"
POD_RESTARTS = "MoonTVPodRestarting"
HPA_AT_MAX = "MoonTVHPAAtMaximum"
VOLUME_FULL = "MoonTVVolumeNearlyFull"
BACKUP_FAILED = "MoonTVBackupFailed"
RESTORE_DRILL_FAILED = "MoonTVRestoreDrillFailed"


@dataclass(frozen=True)
class RuleScope:
    """Where the rules run. Without a namespace (Swarm) the Kubernetes rules are left out."""

    namespace: str | None = None
    storage: bool = True
    backup_cronjob: str | None = None
    drill_cronjob: str | None = None


def monitored(tracks: Sequence[TrackLike]) -> list[TrackLike]:
    """Tracks worth probing: an idle track is scaled down and would only raise false alarms."""
    return [t for t in tracks if t.role != "idle"]


def success_rate_query(track: str, window: str = "1m") -> str:
    """Fraction of successful ``/login`` probes of a track (the rollout gate's success query)."""
    return f'avg_over_time(probe_success{{track="{track}"}}[{window}])'


def latency_p99_query(track: str, window: str = "5m") -> str:
    """p99 of the probe round-trips of a track, in seconds (the rollout gate's latency query)."""
    return f'quantile_over_time(0.99, probe_duration_seconds{{track="{track}"}}[{window}])'


def volume_usage_query(namespace: str) -> str:
    """Used fraction of every PVC in a namespace (kubelet volume stats)."""
    ns = f'namespace="{namespace}"'
    return (
        f"kubelet_volume_stats_used_bytes{{{ns}}} / on (namespace, persistentvolumeclaim) "
        f"kubelet_volume_stats_capacity_bytes{{{ns}}}"
    )


def health_gate_queries(track: str, settings: MonitoringSettings) -> dict[str, str]:
    """The PromQL the rollout health gate evaluates (one sample each: the probe series of the
    track reduced across probers), with the thresholds it compares against."""
    th = settings.thresholds
    return {
        "success": f"avg({success_rate_query(track, th.success_window)})",
        "successMin": str(th.success_rate),
        "latency": f"max({latency_p99_query(track, th.latency_window)})",
        "latencyMaxSeconds": str(th.p99_latency_ms / 1000),
    }


def health_gates(tracks: Sequence[TrackLike], settings: MonitoringSettings
                 ) -> dict[str, dict[str, str]]:
    """:func:`health_gate_queries` of every monitored track: the stack output the rollout CLI
    reads (``healthQueries``)."""
    return {t.name: health_gate_queries(t.name, settings) for t in monitored(tracks)}


def _alert(
    name: str, expr: str, for_: str, severity: str, summary: str, description: str,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    labels = {"severity": severity, **(extra or {})}
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": labels,
        "annotations": {"summary": summary, "description": description},
    }


def _track_rules(tracks: Sequence[TrackLike], settings: MonitoringSettings) -> list[dict[str, Any]]:
    th = settings.thresholds
    rules = []
    for track in monitored(tracks):
        t = track.name
        primary = track.role == "primary"
        selector = f'probe_success{{track="{t}"}}'
        rules.append(_alert(
            TRACK_DOWN,
            f"{selector} == 0 or absent({selector})",
            th.for_.track_down,
            "critical" if primary else "warning",
            f"MoonTV track {t} fails its {PROBE_PATH} probe",
            f"The blackbox probe of {PROBE_PATH} on track {t} has failed (or returned no data) "
            f"for {th.for_.track_down}.",
            {"track": t},
        ))
        seconds = th.p99_latency_ms / 1000
        rules.append(_alert(
            TRACK_LATENCY,
            f"{latency_p99_query(t, th.latency_window)} > {seconds:g}",
            th.for_.latency,
            "warning",
            f"MoonTV track {t} answers slowly",
            f"p99 of {PROBE_PATH} probe durations on track {t} over {th.latency_window} is "
            f"{{{{ $value | humanizeDuration }}}}, above {th.p99_latency_ms}ms.",
            {"track": t},
        ))
        if track.role == "canary":
            rules.append(_alert(
                CANARY_ERRORS,
                f"{success_rate_query(t, th.success_window)} < {th.success_rate:g}",
                th.for_.canary_errors,
                "warning",
                f"Canary track {t} fails probes",
                f"Probe success rate of canary {t} over {th.success_window} is "
                f"{{{{ $value | humanizePercentage }}}}, below {th.success_rate:g}; "
                "hold or roll back the canary.",
                {"track": t},
            ))
    return rules


def _storage_rules(settings: MonitoringSettings) -> list[dict[str, Any]]:
    up = f'up{{job="{STORAGE_JOB}"}}'
    return [_alert(
        STORAGE_DOWN,
        f'redis_up{{job="{STORAGE_JOB}"}} == 0 or {up} == 0 or absent({up})',
        settings.thresholds.for_.storage_down,
        "critical",
        "MoonTV storage backend is down",
        "The storage exporter cannot reach Kvrocks/Redis (or is not scraped). MoonTV cannot "
        "read its admin config or user data.",
    )]


def _kubernetes_rules(scope: RuleScope, settings: MonitoringSettings) -> list[dict[str, Any]]:
    th = settings.thresholds
    ns = f'namespace="{scope.namespace}"'
    rules = [
        _alert(
            POD_RESTARTS,
            f"increase(kube_pod_container_status_restarts_total{{{ns}}}[15m]) > {th.restarts}",
            th.for_.pod_restarts,
            "warning",
            "MoonTV container restarting",
            f"Container {{{{ $labels.container }}}} of pod {{{{ $labels.pod }}}} restarted more "
            f"than {th.restarts} times in 15 minutes.",
        ),
        _alert(
            HPA_AT_MAX,
            f"kube_horizontalpodautoscaler_status_current_replicas{{{ns}}}"
            " >= on (namespace, horizontalpodautoscaler) "
            f"kube_horizontalpodautoscaler_spec_max_replicas{{{ns}}}",
            th.for_.hpa_at_max,
            "warning",
            "MoonTV autoscaler at its maximum",
            "HPA {{ $labels.horizontalpodautoscaler }} has run at maxReplicas for "
            f"{th.for_.hpa_at_max}; raise the maximum or find the load.",
        ),
        _alert(
            VOLUME_FULL,
            f"{volume_usage_query(scope.namespace or '')} > {th.volume_used_ratio:g}",
            th.for_.volume_full,
            "warning",
            "MoonTV volume nearly full",
            "PVC {{ $labels.persistentvolumeclaim }} is {{ $value | humanizePercentage }} full.",
        ),
    ]
    if scope.backup_cronjob:
        rules.append(_alert(
            BACKUP_FAILED,
            f'kube_job_status_failed{{{ns},job_name=~"{scope.backup_cronjob}-.*"}} > 0',
            th.for_.backup_failed,
            "warning",
            "MoonTV backup job failed",
            "Job {{ $labels.job_name }} of CronJob " + scope.backup_cronjob + " failed; the "
            "alert clears when the failed Job is removed (history limit or by hand).",
        ))
    if scope.drill_cronjob:
        rules.append(_alert(
            RESTORE_DRILL_FAILED,
            f'kube_job_status_failed{{{ns},job_name=~"{scope.drill_cronjob}-.*"}} > 0',
            th.for_.backup_failed,
            "critical",
            "MoonTV restore drill failed",
            "Job {{ $labels.job_name }} could not restore the newest backup into a scratch "
            "instance with the same key count and content hash: the backups may not be "
            "restorable. See docs/runbooks/daily-operations.md (restore drill).",
        ))
    return rules


def alert_rules(
    tracks: Sequence[TrackLike], settings: MonitoringSettings, scope: RuleScope = RuleScope()
) -> dict[str, Any]:
    """Prometheus rule groups (the ``spec`` of a PrometheusRule, or a rules file)."""
    groups: list[dict[str, Any]] = [
        {"name": "moontv-tracks", "rules": _track_rules(tracks, settings)}
    ]
    if scope.storage:
        groups.append({"name": "moontv-storage", "rules": _storage_rules(settings)})
    if scope.namespace:
        groups.append({"name": "moontv-kubernetes", "rules": _kubernetes_rules(scope, settings)})
        # Label every alert with the namespace: an AlertmanagerConfig only routes alerts whose
        # namespace label matches its own, and absent() results carry no namespace.
        for group in groups:
            for rule in group["rules"]:
                rule["labels"]["namespace"] = scope.namespace
    return {"groups": [g for g in groups if g["rules"]]}
