"""Grafana dashboard for MoonTV (pure): per-track probe success and latency, replicas and HPA,
restarts, storage. Kubernetes panels appear only when a namespace is given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components.monitoring.model import TrackLike
from components.monitoring.rules import STORAGE_JOB, monitored, volume_usage_query

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
UID = "moontv-overview"


def _panel(
    pid: int, title: str, exprs: Sequence[tuple[str, str]], unit: str, x: int, y: int
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
             "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def dashboard(tracks: Sequence[TrackLike], namespace: str | None = None) -> dict[str, Any]:
    """Grafana dashboard JSON model (schemaVersion 39)."""
    names = "|".join(t.name for t in monitored(tracks)) or "none"
    probe = f'track=~"{names}"'
    panels = [
        ("Probe success rate by track",
         [(f"avg by (track) (avg_over_time(probe_success{{{probe}}}[5m]))", "{{track}}")],
         "percentunit"),
        ("Probe latency p99 by track",
         [(f"max by (track) (quantile_over_time(0.99, probe_duration_seconds{{{probe}}}[5m]))",
           "{{track}}")],
         "s"),
        ("Storage",
         [(f'redis_up{{job="{STORAGE_JOB}"}}', "up"),
          (f'redis_connected_clients{{job="{STORAGE_JOB}"}}', "clients")],
         "short"),
        ("Storage memory",
         [(f'redis_memory_used_bytes{{job="{STORAGE_JOB}"}}', "used")],
         "bytes"),
    ]
    if namespace:
        ns = f'namespace="{namespace}"'
        panels += [
            ("Available replicas by deployment",
             [(f"kube_deployment_status_replicas_available{{{ns}}}", "{{deployment}}"),
              (f"kube_horizontalpodautoscaler_status_current_replicas{{{ns}}}",
               "HPA {{horizontalpodautoscaler}} current"),
              (f"kube_horizontalpodautoscaler_spec_max_replicas{{{ns}}}",
               "HPA {{horizontalpodautoscaler}} max")],
             "short"),
            ("Container restarts (1h)",
             [(f"sum by (pod) (increase(kube_pod_container_status_restarts_total{{{ns}}}[1h]))",
               "{{pod}}")],
             "short"),
            ("Volume usage",
             [(volume_usage_query(namespace), "{{persistentvolumeclaim}}")],
             "percentunit"),
            ("Backup jobs failed",
             [(f"kube_job_status_failed{{{ns}}}", "{{job_name}}")],
             "short"),
        ]
    return {
        "uid": UID,
        "title": "MoonTV",
        "tags": ["moontv"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                      "label": "Data source"}]
        },
        "panels": [
            _panel(i + 1, title, exprs, unit, (i % 2) * 12, (i // 2) * 8)
            for i, (title, exprs, unit) in enumerate(panels)
        ],
    }
