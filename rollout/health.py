"""Health of a release track, from Prometheus and an optional smoke request.

The queries and thresholds are the stack's: the program exports, per monitored track, the gate it
builds from ``moontv:monitoring.thresholds`` (stack output ``healthQueries``: ``success`` and
``latency`` PromQL, ``successMin`` and ``latencyMaxSeconds``). They read the blackbox-exporter
probe metrics of the track (probes carry a ``track`` label), each reduced to one sample. An
operator may override any of them (``$track`` in a query is replaced by the track name).

A query that fails or returns no data counts as unhealthy: no evidence, no promotion.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from string import Template
from typing import Any

from components.release import HEADER
from rollout.stack import UsageError

OUTPUT = "healthQueries"


@dataclass(frozen=True)
class Gate:
    """What one track must meet."""

    success_query: str
    latency_query: str
    min_success: float
    max_p99_ms: float


def stack_gates(outputs: Mapping[str, Any]) -> dict[str, Gate]:
    """The gate of every monitored track, from the stack outputs (none without monitoring)."""
    return {
        track: Gate(
            q["success"], q["latency"], float(q["successMin"]), float(q["latencyMaxSeconds"]) * 1000
        )
        for track, q in (outputs.get(OUTPUT) or {}).items()
    }


class QueryError(Exception):
    """Prometheus could not answer a query with a number."""


@dataclass(frozen=True)
class HealthPolicy:
    prometheus: str
    gates: Mapping[str, Gate] = field(default_factory=dict)  # :func:`stack_gates`
    # the operator's overrides of the stack's gate
    success_query: str | None = None
    latency_query: str | None = None
    min_success: float | None = None
    max_p99_ms: float | None = None
    smoke_url: str | None = None
    timeout: float = 10.0

    def gate(self, track: str) -> Gate | None:
        """The stack's gate of ``track`` with the overrides applied (None: no gate)."""
        given: dict[str, Any] = {
            "success_query": self.success_query,
            "latency_query": self.latency_query,
            "min_success": self.min_success,
            "max_p99_ms": self.max_p99_ms,
        }
        overrides = {k: v for k, v in given.items() if v is not None}
        stack = self.gates.get(track)
        if stack is not None:
            return replace(stack, **overrides)
        return Gate(**overrides) if len(overrides) == len(given) else None


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


def has_samples(policy: HealthPolicy, track: str) -> bool:
    """Whether the gate's queries of ``track`` return data yet (any other answer, a failure
    included, is for :func:`check` to judge). False also for a track without a gate."""
    gate = policy.gate(track)
    if gate is None:
        return False
    for text in (gate.success_query, gate.latency_query):
        try:
            query(policy.prometheus, Template(text).safe_substitute(track=track), policy.timeout)
        except QueryError as exc:
            if str(exc).endswith(("no data", "no data (NaN)")):
                return False
    return True


def check(policy: HealthPolicy, track: str) -> Health:
    """Health of ``track`` against its gate; :class:`UsageError` when it has none."""
    gate = policy.gate(track)
    if gate is None:
        raise UsageError(
            f"no health gate for track {track}: the stack exports none (output {OUTPUT}; "
            "enable moontv:monitoring and run up), and --success-query, --latency-query, "
            "--min-success and --max-p99-ms are not all given"
        )
    queries = {
        name: Template(text).safe_substitute(track=track)
        for name, text in (("success", gate.success_query), ("latency", gate.latency_query))
    }
    try:
        success = query(policy.prometheus, queries["success"], policy.timeout)
        p99_ms = query(policy.prometheus, queries["latency"], policy.timeout) * 1000
    except QueryError as exc:
        return Health(False, f"metrics unavailable: {exc}")
    measured = (
        f"success {success:.4g} (min {gate.min_success:g}), "
        f"p99 {p99_ms:.0f} ms (max {gate.max_p99_ms:g})"
    )
    if success < gate.min_success:
        return Health(False, f"success rate too low: {measured}")
    if p99_ms > gate.max_p99_ms:
        return Health(False, f"p99 latency too high: {measured}")
    if policy.smoke_url:
        failure = smoke(policy.smoke_url, track, policy.timeout)
        if failure:
            return Health(False, f"{failure}; {measured}")
        measured += ", smoke ok"
    return Health(True, measured)
