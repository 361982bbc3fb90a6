"""Configuration of the log shipper (Fluent Bit) and the trace collector (OpenTelemetry
Collector) (pure: no Pulumi import)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from components.monitoring.model import LogShipping, TraceExport

OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
FLUENT_BIT_HTTP_PORT = 2020


def _host_port_tls(endpoint: str, default_port: int) -> tuple[str, int, bool]:
    url = urlparse(endpoint)
    tls = url.scheme == "https"
    return url.hostname or "", url.port or (443 if tls else default_port), tls


def log_target(logs: LogShipping) -> tuple[str, int, bool]:
    """Host, port and TLS flag of the log store (Loki defaults to 3100, Elasticsearch 9200)."""
    return _host_port_tls(logs.endpoint or "", 3100 if logs.kind == "loki" else 9200)


def trace_port(traces: TraceExport) -> int:
    """Port of the trace endpoint (OTLP defaults: 4317 gRPC, 4318 HTTP)."""
    default = OTLP_GRPC_PORT if traces.protocol == "grpc" else OTLP_HTTP_PORT
    return _host_port_tls(traces.endpoint or "", default)[1]


def fluent_bit_config(logs: LogShipping, namespace: str) -> str:
    """``fluent-bit.conf``: tail the containers of ``namespace``, enrich with Kubernetes
    metadata, ship to Loki or Elasticsearch."""
    if not logs.enabled or logs.endpoint is None:
        raise ValueError("fluent_bit_config needs logs.enabled with an endpoint")
    host, port, tls = log_target(logs)
    sections = [
        ("SERVICE", {
            "Flush": "5", "Log_Level": "info", "HTTP_Server": "On",
            "HTTP_Listen": "0.0.0.0", "HTTP_Port": str(FLUENT_BIT_HTTP_PORT),
            "storage.path": "/var/fluent-bit/state",
        }),
        ("INPUT", {
            "Name": "tail",
            "Path": f"/var/log/containers/*_{namespace}_*.log",
            "Tag": "kube.*",
            "multiline.parser": "docker, cri",
            "DB": "/var/fluent-bit/state/tail.db",
            "Mem_Buf_Limit": "16MB",
            "Skip_Long_Lines": "On",
        }),
        ("FILTER", {
            "Name": "kubernetes", "Match": "kube.*", "Merge_Log": "On",
            "Labels": "On", "Annotations": "Off",
        }),
    ]
    output: dict[str, str] = {"Name": "loki" if logs.kind == "loki" else "es",
                              "Match": "kube.*", "Host": host, "Port": str(port),
                              "tls": "On" if tls else "Off"}
    if logs.kind == "loki":
        output |= {"labels": f"job=fluent-bit, namespace={namespace}", "line_format": "json"}
    else:
        output |= {"Logstash_Format": "On", "Logstash_Prefix": "moontv",
                   "Suppress_Type_Name": "On", "Replace_Dots": "On"}
    sections.append(("OUTPUT", output))
    lines: list[str] = []
    for name, keys in sections:
        lines.append(f"[{name}]")
        lines += [f"    {k} {v}" for k, v in keys.items()]
        lines.append("")
    return "\n".join(lines)


def otel_collector_config(traces: TraceExport) -> dict[str, Any]:
    """OpenTelemetry Collector config: OTLP in (gRPC and HTTP), batched OTLP out."""
    if not traces.enabled or traces.endpoint is None:
        raise ValueError("otel_collector_config needs traces.enabled with an endpoint")
    exporter = "otlp" if traces.protocol == "grpc" else "otlphttp"
    insecure = urlparse(traces.endpoint).scheme == "http"
    target: dict[str, Any] = {"endpoint": traces.endpoint}
    if insecure:
        target["tls"] = {"insecure": True}
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"},
                    "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"},
                }
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80,
                               "spike_limit_percentage": 25},
            "batch": {},
        },
        "exporters": {exporter: target},
        "extensions": {"health_check": {"endpoint": "0.0.0.0:13133"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": [exporter],
                }
            },
        },
    }
