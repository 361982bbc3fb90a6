"""A Prometheus on 127.0.0.1 configured from the monitoring objects the program declares.

The node runs no Prometheus Operator, so this does the operator's part for the tests: it reads
the ``Probe``, ``ServiceMonitor`` and ``PrometheusRule`` objects of a namespace from the cluster
and writes the scrape and rule configuration they describe (never a hand-written copy). In-cluster
addresses are resolved the way the cluster would: a prober ``<service>.<namespace>.svc:<port>``
to the Service's cluster IP (kube-proxy routes it from the host), a ServiceMonitor's endpoints to
the ready pod addresses of the Services it selects. Extra scrape jobs (e.g. the Gateway's own
metrics) can be added. Probes themselves run in the cluster: the blackbox exporter pod probes the
track Services by their cluster DNS names.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import free_port

_SERVICE_ADDRESS = re.compile(r"^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?:(\d+)$")


def _items(node: Any, kind: str, namespace: str) -> list[dict[str, Any]]:
    return json.loads(node.kubectl("get", kind, "-n", namespace, "-o", "json"))["items"]


def _cluster_address(node: Any, address: str) -> str:
    match = _SERVICE_ADDRESS.match(address)
    if match is None:
        return address
    name, namespace, port = match.groups()
    service = json.loads(node.kubectl("get", "service", "-n", namespace, name, "-o", "json"))
    return f"{service['spec']['clusterIP']}:{port}"


def probe_jobs(node: Any, namespace: str) -> list[dict[str, Any]]:
    """One scrape job per ``Probe`` (static targets through its prober), as the operator makes."""
    jobs = []
    for probe in _items(node, "probes.monitoring.coreos.com", namespace):
        spec = probe["spec"]
        static = spec["targets"]["staticConfig"]
        prober = spec["prober"]
        jobs.append(
            {
                "job_name": f"probe/{namespace}/{probe['metadata']['name']}",
                "metrics_path": prober.get("path", "/probe"),
                "scheme": prober.get("scheme", "http"),
                "scrape_interval": spec.get("interval", "30s"),
                "params": {"module": [spec["module"]]},
                "static_configs": [
                    {"targets": static["static"], "labels": static.get("labels", {})}
                ],
                "relabel_configs": [
                    {"target_label": "job", "replacement": spec.get("jobName", "probe")},
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {
                        "target_label": "__address__",
                        "replacement": _cluster_address(node, prober["url"]),
                    },
                ],
            }
        )
    return jobs


def service_monitor_jobs(node: Any, namespace: str) -> list[dict[str, Any]]:
    """One scrape job per ``ServiceMonitor`` endpoint: the ready addresses of the selected
    Services' named port, with the endpoint's relabelings."""
    jobs = []
    for monitor in _items(node, "servicemonitors.monitoring.coreos.com", namespace):
        spec = monitor["spec"]
        selector = ",".join(f"{k}={v}" for k, v in spec["selector"]["matchLabels"].items())
        namespaces = spec.get("namespaceSelector", {}).get("matchNames", [namespace])
        for index, endpoint in enumerate(spec["endpoints"]):
            targets = []
            for ns in namespaces:
                services = json.loads(
                    node.kubectl("get", "services", "-n", ns, "-l", selector, "-o", "json")
                )["items"]
                for service in services:
                    slices = json.loads(
                        node.kubectl(
                            "get",
                            "endpointslices",
                            "-n",
                            ns,
                            "-l",
                            f"kubernetes.io/service-name={service['metadata']['name']}",
                            "-o",
                            "json",
                        )
                    )["items"]
                    for piece in slices:
                        ports = [
                            p["port"]
                            for p in piece.get("ports") or []
                            if p.get("name") == endpoint["port"]
                        ]
                        targets += [
                            f"{address}:{port}"
                            for e in piece.get("endpoints") or []
                            if (e.get("conditions") or {}).get("ready", True)
                            for address in e["addresses"]
                            for port in ports
                        ]
            relabel = [{"target_label": "job", "replacement": monitor["metadata"]["name"]}]
            relabel += [
                {_snake(k): v for k, v in r.items()} for r in endpoint.get("relabelings", [])
            ]
            jobs.append(
                {
                    "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/{index}",
                    "scrape_interval": endpoint.get("interval", "30s"),
                    "metrics_path": endpoint.get("path", "/metrics"),
                    "static_configs": [{"targets": sorted(set(targets))}],
                    "relabel_configs": relabel,
                }
            )
    return jobs


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def rule_groups(node: Any, namespace: str) -> dict[str, Any]:
    """The rule groups of every ``PrometheusRule`` (a Prometheus rule file)."""
    groups = []
    for rule in _items(node, "prometheusrules.monitoring.coreos.com", namespace):
        groups += rule["spec"]["groups"]
    return {"groups": groups}


def configuration(
    node: Any,
    namespace: str,
    out: Path,
    interval: str = "2s",
    extra_jobs: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``prometheus.yml`` and ``rules.yml`` for ``namespace`` into ``out``; return the
    first. ``interval`` is the global scrape and rule evaluation interval."""
    rules = out / "rules.yml"
    rules.write_text(yaml.safe_dump(rule_groups(node, namespace)))
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": [
            *probe_jobs(node, namespace),
            *service_monitor_jobs(node, namespace),
            *(extra_jobs or []),
        ],
    }
    path = out / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def running(config: Path, timeout: float = 60) -> Iterator[str]:
    """Debian's ``prometheus`` on a free port of 127.0.0.1 with ``config``; yields its URL."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing (tools/test-deps.sh installs it)"
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (config.parent / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={config.parent / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                "prometheus did not become ready:\n"
                + (config.parent / "prometheus.log").read_text()[-2000:]
            )
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def targets_up(prometheus: str) -> dict[str, str]:
    """``{job/instance: health}`` of the active targets."""
    with urllib.request.urlopen(f"{prometheus}/api/v1/targets", timeout=5) as response:
        active = json.load(response)["data"]["activeTargets"]
    return {f"{t['labels'].get('job')}/{t['labels'].get('instance')}": t["health"] for t in active}


def traefik_requests(text: str, service: str, by: str) -> dict[str, float]:
    """``traefik_service_requests_total`` of Traefik's ``service`` (e.g. ``moontv-canary@file``)
    in a ``/metrics`` text, summed per value of the label ``by`` (``method``, ``code``)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("traefik_service_requests_total{") and f'service="{service}"' in line:
            value = line.split(f'{by}="', 1)[1].split('"', 1)[0]
            out[value] = out.get(value, 0.0) + float(line.rsplit(" ", 1)[1])
    return out
