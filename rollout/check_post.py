"""Checks run after a deployment (``python -m rollout check post``)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from typing import Any

from components import naming
from components.image_settings import reported_version
from components.monitoring.rules import PROBE_JOB, STORAGE_JOB
from components.release import split_version
from rollout.check_data import compare, key_counts, state_file
from rollout.check_types import Result, Target, failed, no_cluster, passed, skipped
from rollout.health import QueryError

RESTRICTED = "restricted"
PSS_LABEL = "pod-security.kubernetes.io/enforce"


def check_tracks_ready(t: Target) -> Result:
    model = t.settings()
    if t.cluster is None:
        return no_cluster("tracks-ready", model)
    problems, ready = [], []
    for track in model.plan.tracks:
        if track.role == "idle" or track.replicas == 0:
            continue
        name = naming.track_name(track.name)
        deployment = t.cluster.get("deployment", model.namespace, name)
        if deployment is None:
            problems.append(f"Deployment {name} is missing")
            continue
        want = (deployment.get("spec") or {}).get("replicas", 1)
        # the HPA may run the primary track above its declared count, never below its minimum
        declared = track.replicas
        if model.autoscaling.enabled and track.role == "primary":
            declared = model.autoscaling.min_replicas
        status = deployment.get("status") or {}
        have, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
        if want < declared:
            problems.append(f"{name}: scaled to {want}, the stack declares {declared}")
        elif have < want or updated < want:
            problems.append(f"{name}: {have}/{want} ready, {updated}/{want} updated")
        else:
            ready.append(f"{name} {have}/{want}")
    if problems:
        return failed("tracks-ready", "; ".join(problems))
    return passed("tracks-ready", ", ".join(ready) + " ready")


#: A tag that names a release (``v100.1.2``, ``1.2.3-rc.1``): the app compiles that version in.
#: The pipeline's branch builds (``main``, ``sha-abc1234``, ``pr-7``: components/tags.py) name
#: none; the app reports the version of the LunaTV commit they were built from.
RELEASE_TAG = re.compile(r"^v?\d+\.\d+")


def intended_version(t: Target) -> str | None:
    """The version ``/api/server-config`` should report: the primary track's tag without
    ``v`` (the app's compiled-in version) or, for a release that compiles in another one, what
    it reports (``REPORTED_VERSIONS``), unless ``--expect-version`` says otherwise. None when
    the tag names no release (a branch build): there is nothing to compare with."""
    if t.expect_version:
        return t.expect_version
    plan = t.settings().plan
    tag, _ = split_version(plan.track(plan.primary).version)
    return reported_version(tag) if RELEASE_TAG.match(tag) else None


def _open(
    t: Target,
    opener: urllib.request.OpenerDirector,
    path: str,
    route: dict[str, str],
    body: dict[str, Any] | None = None,
) -> tuple[int, bytes]:
    assert t.url is not None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if t.extra.get("host"):
        headers["Host"] = t.extra["host"]
    headers.update(route)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(t.url.rstrip("/") + path, data=data, headers=headers)
    try:
        with opener.open(request, timeout=t.timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_smoke(t: Target) -> Result:
    """Log in with the owner account through the public route, read the favourites, and see
    the intended version in /api/server-config."""
    model = t.settings()
    if t.url is None:
        return failed(
            "smoke", "no public URL: give --url (e.g. https://" + model.traffic.host + ")"
        )
    if not t.owner_password:
        return failed(
            "smoke",
            "no owner password: set MOONTV_OWNER_PASSWORD (or give a cluster "
            "to read it from the app Secret)",
        )
    # With a canary taking a share of the traffic, pin the requests to the primary track.
    plan = model.plan
    route = {plan.header: "never"} if "never" in plan.header_routes else {}
    pinned = f" ({plan.header}: never)" if route else ""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    try:
        status, _ = _open(
            t,
            opener,
            "/api/login",
            route,
            {"username": model.owner.username, "password": t.owner_password},
        )
        if status != 200:
            return failed("smoke", f"POST /api/login as {model.owner.username} answered {status}")
        status, _ = _open(t, opener, "/api/favorites", route)
        if status != 200:
            return failed("smoke", f"GET /api/favorites after login answered {status}")
        status, body = _open(t, opener, "/api/server-config", route)
    except (urllib.error.URLError, OSError) as exc:
        return failed("smoke", f"{t.url}: {getattr(exc, 'reason', exc)}")
    if status != 200:
        return failed("smoke", f"GET /api/server-config answered {status}")
    try:
        version = str(json.loads(body).get("Version"))
    except (ValueError, AttributeError):
        return failed("smoke", "GET /api/server-config did not answer a JSON object")
    want = intended_version(t)
    if want is None:
        tag, _ = split_version(plan.track(plan.primary).version)
        return passed(
            "smoke",
            f"login as {model.owner.username}, favourites 200, /api/server-config version "
            f"{version}{pinned}; the tag {tag} names no release: not compared "
            "(--expect-version compares)",
        )
    if version != want:
        return failed("smoke", f"/api/server-config reports version {version}, intended {want}")
    return passed(
        "smoke",
        f"login as {model.owner.username}, favourites 200, /api/server-config version "
        f"{version}{pinned}",
    )


def _prometheus(t: Target, path: str) -> Any:
    assert t.prometheus is not None
    url = t.prometheus.rstrip("/") + path
    try:
        with urllib.request.urlopen(url, timeout=t.timeout) as response:
            body = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise QueryError(f"{url}: {getattr(exc, 'reason', exc)}") from None
    if body.get("status") != "success":
        raise QueryError(f"{url}: {body.get('error', 'failed')}")
    return body["data"]


def check_monitoring(t: Target) -> Result:
    model = t.settings()
    if not model.monitoring.enabled:
        return skipped("monitoring", "monitoring.enabled is false")
    if t.prometheus is None:
        return failed("monitoring", "monitoring is on: give --prometheus URL")
    try:
        targets = _prometheus(t, "/api/v1/targets?state=active")["activeTargets"]
        alerts = _prometheus(t, "/api/v1/alerts")["alerts"]
    except QueryError as exc:
        return failed("monitoring", str(exc))
    ours = [x for x in targets if _is_moontv(x.get("labels", {}), model.namespace)]
    down = [
        f"{x['labels'].get('job')} {x['labels'].get('instance')} "
        f"({x.get('lastError') or x.get('health')})"
        for x in ours
        if x.get("health") != "up"
    ]
    firing = sorted(
        {
            a["labels"].get("alertname", "?")
            for a in alerts
            if a.get("state") == "firing" and a["labels"].get("alertname", "").startswith("MoonTV")
        }
    )
    if not ours:
        return failed("monitoring", "Prometheus scrapes no MoonTV target")
    problems = []
    if down:
        problems.append(f"{len(down)} of {len(ours)} targets down: {'; '.join(down)}")
    if firing:
        problems.append(f"alerts firing: {', '.join(firing)}")
    if problems:
        return failed("monitoring", "; ".join(problems))
    return passed("monitoring", f"{len(ours)} targets up, no MoonTV alert firing")


def _is_moontv(labels: dict[str, str], namespace: str) -> bool:
    return (
        labels.get("job") in (PROBE_JOB, STORAGE_JOB)
        or labels.get("namespace") == namespace
        or labels.get("job", "").startswith("moontv")
    )


def check_logs(t: Target) -> Result:
    model = t.settings()
    if not (model.monitoring.enabled and model.monitoring.logs.enabled):
        return skipped("logs", "log shipping is off (monitoring.logs.enabled)")
    if t.cluster is None:
        return no_cluster("logs", model)
    name = naming.resource_name(naming.APP, "fluent-bit")
    agent = t.cluster.get("daemonset", model.namespace, name)
    if agent is None:
        return failed("logs", f"DaemonSet {name} is missing")
    status = agent.get("status") or {}
    want, ready = status.get("desiredNumberScheduled", 0), status.get("numberReady", 0)
    if not want or ready < want:
        return failed("logs", f"{name}: {ready}/{want} log shippers ready")
    return passed(
        "logs",
        f"{name}: {ready}/{want} log shippers ready, shipping to "
        f"{model.monitoring.logs.kind} {model.monitoring.logs.endpoint}",
    )


def check_data_consistency(t: Target) -> Result:
    if t.storage_url is None:
        return skipped("data-consistency", "no --storage-url: key counts not compared")
    path = state_file(t.state_dir, t.stack)
    if not path.exists():
        return failed("data-consistency", f"no key counts recorded by `check pre` ({path})")
    before = json.loads(path.read_text())["counts"]
    after = key_counts(t.storage_url, t.timeout)
    problems = compare(before, after, t.key_tolerance)
    measured = (
        f"keys {before['total']} -> {after['total']}, favourite lists "
        f"{before['u:*:fav']} -> {after['u:*:fav']} (tolerance {t.key_tolerance:.0%} "
        "loss per group)"
    )
    if problems:
        return failed("data-consistency", f"{'; '.join(problems)}; {measured}")
    return passed("data-consistency", measured)


def expected_policies(t: Target) -> list[str]:
    model = t.settings()
    names = [
        naming.resource_name(naming.APP, p)
        for p in ("default-deny", "allow-dns", "allow-gateway-to-app", "allow-app-egress")
    ]
    if model.storage.kind != "external":
        names.append(naming.resource_name(naming.APP, model.storage.kind, "from-app"))
    return names


def check_security(t: Target) -> Result:
    model = t.settings()
    if t.cluster is None:
        return no_cluster("security", model)
    namespace = t.cluster.get("namespace", None, model.namespace)
    if namespace is None:
        return failed("security", f"namespace {model.namespace} does not exist")
    labels = (namespace.get("metadata") or {}).get("labels") or {}
    problems = []
    if labels.get(PSS_LABEL) != RESTRICTED:
        problems.append(
            f"namespace {model.namespace} has {PSS_LABEL}="
            f"{labels.get(PSS_LABEL, '(unset)')}, not {RESTRICTED}"
        )
    listed = t.cluster.get("networkpolicy", model.namespace) or {"items": []}
    present = {item["metadata"]["name"] for item in listed.get("items", [])}
    missing = [name for name in expected_policies(t) if name not in present]
    if missing:
        problems.append(f"NetworkPolicies missing: {', '.join(missing)}")
    if problems:
        return failed("security", "; ".join(problems))
    return passed(
        "security",
        f"namespace {model.namespace} enforces PSS {RESTRICTED}; "
        f"{len(present)} NetworkPolicies incl. default-deny",
    )


CHECKS = [
    check_tracks_ready,
    check_smoke,
    check_monitoring,
    check_logs,
    check_data_consistency,
    check_security,
]
