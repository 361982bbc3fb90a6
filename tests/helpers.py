"""What tests share: release config builders, a digest, free ports, a throw-away redis-server's
command line, one local HTTP server and the fake Prometheus built on it, and the metrics
monitoring may rely on."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DIGEST = "sha256:" + "ab" * 32
"""A well-formed image digest."""


def canary(weight: Any = 0, version: str = "v2", **extra: Any) -> dict[str, Any]:
    """A ``moontv:release`` object: canary ``version`` at ``weight`` % (``extra``: more keys)."""
    return {"strategy": "canary", "canary": {"version": version, "weight": weight, **extra}}


def blue_green(active: str = "blue", **extra: Any) -> dict[str, Any]:
    """A ``moontv:release`` object: blue-green with ``active`` (``extra``: blue, green, …)."""
    return {"strategy": "blue-green", "blueGreen": {"active": active, **extra}}


def both_colours(active: str = "blue", **extra: Any) -> dict[str, Any]:
    """Blue-green with blue ``v1`` and green ``v2`` deployed."""
    return blue_green(active, blue="v1", green="v2", **extra)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_command(port: int, folder: str, password: str | None = None) -> list[str]:
    """``redis-server`` on 127.0.0.1:``port`` without persistence, its files in ``folder``
    (``password``: the one ``requirepass`` asks for; none: no password)."""
    auth = ["--requirepass", password] if password else []
    return [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        *auth,
        "--dir",
        folder,
        "--save",
        "",
        "--appendonly",
        "no",
    ]


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and answers with :meth:`reply`."""

    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class LocalServer:
    """Serves ``handler`` on a free port of 127.0.0.1 from a thread until :meth:`stop`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self._thread.join(timeout=5)
            self.running = False


class FakePrometheus(LocalServer):
    """``/api/v1/query`` answering probe metrics from queues the test controls (the last value
    repeats; None means no data), plus ``/smoke`` answering ``smoke_status``."""

    def __init__(self) -> None:
        self.success: list[float | None] = [1.0]
        self.latency: list[float | None] = [0.1]
        self.smoke_status = 200
        self.queries: list[str] = []
        self.smoke_headers: list[dict[str, str]] = []
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                if url.path == "/smoke":
                    fake.smoke_headers.append({k.lower(): v for k, v in self.headers.items()})
                    self.send(fake.smoke_status, {})
                    return
                promql = urllib.parse.parse_qs(url.query)["query"][0]
                fake.queries.append(promql)
                if promql == "vector(1)":
                    value: float | None = 1.0
                elif "probe_success" in promql:
                    value = fake._next(fake.success)
                elif "probe_duration_seconds" in promql:
                    value = fake._next(fake.latency)
                else:
                    self.send(400, {"status": "error", "error": "unknown query"})
                    return
                result = [] if value is None else [{"metric": {}, "value": [0, str(value)]}]
                self.send(200, {"status": "success",
                                "data": {"resultType": "vector", "result": result}})

            def send(self, status: int, body: dict[str, Any]) -> None:
                self.reply(status, "application/json", json.dumps(body).encode())

        super().__init__(Handler)
        self.url = f"http://{self.address}"

    @staticmethod
    def _next(queue: list[float | None]) -> float | None:
        return queue.pop(0) if len(queue) > 1 else queue[0]


# --- PromQL: rules and dashboards may reference only metrics their exporters produce ---------
# (MoonTV itself exports nothing), by the component that produces them.

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


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a Grafana dashboard."""
    return [t["expr"] for p in board["panels"] for t in p["targets"]]
