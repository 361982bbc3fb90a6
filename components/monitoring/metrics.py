"""Metrics the monitoring stack can rely on, by the component that produces them (pure).

Rules and dashboards may reference only these: MoonTV itself exports nothing. Tests check
every generated expression against this allow-list.
"""

from __future__ import annotations

import re

BLACKBOX = frozenset({"probe_success", "probe_duration_seconds", "probe_http_status_code"})
PROMETHEUS = frozenset({"up"})  # synthetic, per scrape target
REDIS_EXPORTER = frozenset({"redis_up", "redis_connected_clients", "redis_memory_used_bytes"})
KUBE_STATE_METRICS = frozenset({
    "kube_pod_container_status_restarts_total",
    "kube_deployment_status_replicas_available",
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_job_status_failed",
})
KUBELET = frozenset({"kubelet_volume_stats_used_bytes", "kubelet_volume_stats_capacity_bytes"})
ALLOWED = BLACKBOX | PROMETHEUS | REDIS_EXPORTER | KUBE_STATE_METRICS | KUBELET

_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "atan2", "inf", "nan",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TEMPLATE = re.compile(r"\{\{.*?\}\}")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (function names and keywords excluded)."""
    text = _TEMPLATE.sub(" ", expr)
    for pattern in (_STRING, _MATCHERS, _RANGE, _GROUPING):
        text = pattern.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group()
        rest = text[match.end():].lstrip()
        before = text[: match.start()]
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        if before and (before[-1].isdigit() or before[-1] == "."):
            continue  # exponent or duration suffix of a number literal
        names.add(word)
    return names
