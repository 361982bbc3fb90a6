"""Health of a release track, from Prometheus and an optional smoke request.

The default queries and thresholds are those of the monitoring stack's gate
(``components.monitoring.rules``, the default ``moontv:monitoring.thresholds``). They read the
blackbox-exporter probe metrics of the track under test (probes carry a ``track`` label);
``$track`` in a query is replaced by the track name:

* success: ``avg(avg_over_time(probe_success{track="$track"}[1m]))`` - share of successful probes
* latency: ``max(quantile_over_time(0.99, probe_duration_seconds{track="$track"}[5m]))`` - p99 in
  **seconds**

A query that fails or returns no data counts as unhealthy: no evidence, no promotion.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from string import Template

from components.monitoring.model import Thresholds
from components.monitoring.rules import latency_p99_query, success_rate_query
from components.release import HEADER

GATE = Thresholds()
# One sample per query: the probe series of a track, reduced across probers.
DEFAULT_SUCCESS_QUERY = f"avg({success_rate_query('$track', GATE.success_window)})"
DEFAULT_LATENCY_QUERY = f"max({latency_p99_query('$track', GATE.latency_window)})"


class QueryError(Exception):
    """Prometheus could not answer a query with a number."""


@dataclass(frozen=True)
class HealthPolicy:
    prometheus: str
    success_query: str = DEFAULT_SUCCESS_QUERY
    latency_query: str = DEFAULT_LATENCY_QUERY
    min_success: float = GATE.success_rate
    max_p99_ms: float = float(GATE.p99_latency_ms)
    smoke_url: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class Health:
    ok: bool
    summary: str  # what was measured, and on failure why it failed


def query(prometheus: str, promql: str, timeout: float = 10.0) -> float:
    """Value of an instant query that must return one sample (a scalar or a one-series vector)."""
    url = prometheus.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        raise QueryError(f"{promql}: HTTP {exc.code} from {prometheus}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise QueryError(f"{promql}: cannot reach {prometheus}: {reason}") from None
    except ValueError:
        raise QueryError(f"{promql}: {prometheus} did not answer JSON") from None
    if body.get("status") != "success":
        raise QueryError(f"{promql}: {body.get('error', 'query failed')}")
    data = body.get("data", {})
    result = data.get("result")
    if data.get("resultType") == "scalar":
        samples = [result]
    elif data.get("resultType") == "vector":
        samples = [series.get("value") for series in result or []]
    else:
        raise QueryError(f"{promql}: expected a scalar or vector, got {data.get('resultType')}")
    if not samples:
        raise QueryError(f"{promql}: no data")
    if len(samples) > 1:
        raise QueryError(f"{promql}: {len(samples)} series; aggregate them to one (avg, max)")
    value = float(samples[0][1])
    if math.isnan(value):
        raise QueryError(f"{promql}: no data (NaN)")
    return value


def smoke(url: str, track: str, timeout: float = 10.0) -> str | None:
    """GET ``url`` (forced onto the canary with its header); None when it answers 2xx/3xx."""
    headers = {HEADER: "always"} if track == "canary" else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        return f"smoke GET {url} failed: {getattr(exc, 'reason', exc)}"
    return None if status < 400 else f"smoke GET {url} answered {status}"


def check(policy: HealthPolicy, track: str) -> Health:
    """Health of ``track`` against the policy's thresholds."""
    queries = {
        name: Template(text).safe_substitute(track=track)
        for name, text in (("success", policy.success_query), ("latency", policy.latency_query))
    }
    try:
        success = query(policy.prometheus, queries["success"], policy.timeout)
        p99_ms = query(policy.prometheus, queries["latency"], policy.timeout) * 1000
    except QueryError as exc:
        return Health(False, f"metrics unavailable: {exc}")
    measured = (
        f"success {success:.4g} (min {policy.min_success:g}), "
        f"p99 {p99_ms:.0f} ms (max {policy.max_p99_ms:g})"
    )
    if success < policy.min_success:
        return Health(False, f"success rate too low: {measured}")
    if p99_ms > policy.max_p99_ms:
        return Health(False, f"p99 latency too high: {measured}")
    if policy.smoke_url:
        failure = smoke(policy.smoke_url, track, policy.timeout)
        if failure:
            return Health(False, f"{failure}; {measured}")
        measured += ", smoke ok"
    return Health(True, measured)
