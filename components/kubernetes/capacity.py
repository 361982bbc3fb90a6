"""Replica counts at release events: what the program asks the cluster before ``up``, and the
pure rules that turn it into each track's ``spec.replicas``.

With ``autoscaling.enabled`` the HorizontalPodAutoscaler sizes the primary track, so the count
that matters at a release event is the live one, which no stack file holds. Before any resource
is registered, :func:`gather` reads the app's Deployments (their replicas, ready replicas and
who owns ``spec.replicas``) and the track the ``moontv`` Service selects; :func:`decide` then
says, per track (as Argo Rollouts does for a blue-green switch):

* the **incoming primary** (a switch, a strategy change, the first ``up``) is given at least
  the outgoing primary's ready replicas (and ``autoscaling.minReplicas``), so the routes, which
  wait for its rollout, move only to that much Ready capacity; the HPA then takes it over;
* the **HPA-held primary** gets no ``replicas`` once the autoscaler owns the field (a manager
  through the ``scale`` subresource), so no ``up`` resets what the HPA set; while the program
  still owns it (the HPA has not changed it yet) it is given the live count, so dropping it
  does not reset it to 1 either;
* the **outgoing primary** changes only after the routes moved away from it and, when the HPA
  had it above the size it now runs at (``previewReplicas``), keeps its live replicas for
  ``release.blueGreen.scaleDownDelaySeconds`` from the ``up`` that switched (recorded on its
  Deployment as :data:`PRIMARY_UNTIL`); the first ``up`` after that scales it down.

Without a readable cluster (``renderDir``, or the cluster did not answer) nothing live is
known: the HPA-held primary gets no ``replicas`` and every other track its planned count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from components import naming
from components.release import ReleasePlan
from components.settings import AutoscalingSettings, KubernetesSettings

#: Annotation of a Deployment that stopped being the primary: when (UTC, ISO 8601).
PRIMARY_UNTIL = "moontv.io/primary-until"
#: Pulumi applies the Deployment even where another field manager (the HPA, through the
#: ``scale`` subresource) owns ``spec.replicas``: the program sets replicas there only on
#: purpose (an incoming primary, the outgoing one after its delay).
PATCH_FORCE = "pulumi.com/patchForce"
TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class LiveDeployment:
    """One app Deployment as the cluster has it."""

    replicas: int  # spec.replicas
    ready: int  # status.readyReplicas
    #: spec.replicas is owned by a manager through the scale subresource (the HPA)
    autoscaled: bool = False
    #: the PRIMARY_UNTIL annotation, if any
    primary_until: str | None = None


@dataclass(frozen=True)
class Live:
    """The app's Deployments by track name, and the track Service ``moontv`` selects."""

    deployments: Mapping[str, LiveDeployment]
    primary: str | None


@dataclass(frozen=True)
class Scale:
    """What the program declares for one track's Deployment."""

    replicas: int | None  # None: not set (the HPA owns the count)
    primary_until: str | None = None  # PRIMARY_UNTIL to keep on it
    #: it is losing the traffic: it changes only once the routes point elsewhere
    after_routes: bool = False
    note: str | None = None  # what `up` tells the operator


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def decide(plan: ReleasePlan, autoscaling: AutoscalingSettings, delay_seconds: int,
           live: Live | None, now: datetime) -> dict[str, Scale]:
    """Each track's :class:`Scale` for ``plan`` given what runs (``live``; None: unknown)."""
    hpa = autoscaling.enabled
    scales: dict[str, Scale] = {}
    if live is None:
        for track in plan.tracks:
            held = hpa and track.role == "primary"
            scales[track.name] = Scale(None if held else track.replicas)
        return scales
    outgoing = live.primary if live.primary != plan.primary else None
    for track in plan.tracks:
        current = live.deployments.get(track.name)
        if hpa and track.role == "primary":
            if current is not None and live.primary == track.name:
                # the HPA-held primary: its count is the HPA's (the live one while the
                # program still owns the field)
                scales[track.name] = Scale(None if current.autoscaled else current.replicas)
                continue
            before = live.deployments.get(outgoing) if outgoing else None
            if before is None and current is None:
                # the first up: no traffic moves, so the HPA sizes it from the start (a static
                # count on an HPA's target is what kube-score calls critical)
                scales[track.name] = Scale(None)
                continue
            wanted = max(autoscaling.min_replicas, before.ready if before else 0,
                         current.replicas if current else 0)
            count = min(wanted, autoscaling.max_replicas)
            note = (f"{naming.track_name(track.name)} takes the traffic with {count} replicas "
                    f"(the outgoing {naming.track_name(outgoing)} had {before.ready} ready)"
                    if before and outgoing else None)
            scales[track.name] = Scale(count, note=note)
            continue
        losing = current is not None and track.name == outgoing
        since = current.primary_until if current is not None else None
        if hpa and current is not None and (losing or since) and current.replicas > track.replicas:
            start = _parse(since) if since else None
            start = start or now
            until = start + timedelta(seconds=delay_seconds)
            if now < until:
                scales[track.name] = Scale(
                    current.replicas, iso(start), after_routes=losing,
                    note=(f"{naming.track_name(track.name)} keeps its {current.replicas} replicas "
                          f"until {iso(until)} (release.blueGreen.scaleDownDelaySeconds "
                          f"{delay_seconds}); the first up after that scales it to "
                          f"{track.replicas}"))
                continue
        scales[track.name] = Scale(track.replicas, after_routes=losing)
    return scales


def _owned_by_scale(managed_fields: list[Any] | None) -> bool:
    """Whether a manager through the ``scale`` subresource owns ``spec.replicas``."""
    for entry in managed_fields or []:
        if getattr(entry, "subresource", None) != "scale":
            continue
        fields = getattr(entry, "fields_v1", None) or {}
        if isinstance(fields, str):
            fields = json.loads(fields)
        if "f:replicas" in (fields.get("f:spec") or {}):
            return True
    return False


def gather(target: KubernetesSettings, namespace: str, instance: str) -> Live:
    """Read the app's Deployments in ``namespace`` and the track Service ``moontv`` selects."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from components.kubernetes.preflight import api_client

    api = api_client(target)
    selector = ",".join(f"{k}={v}" for k, v in naming.selector_labels(instance, "app").items())
    listed = client.AppsV1Api(api).list_namespaced_deployment(
        namespace, label_selector=selector, _request_timeout=TIMEOUT_SECONDS)
    deployments = {}
    for item in listed.items:
        track = (item.metadata.labels or {}).get(naming.TRACK_LABEL)
        if not track:
            continue
        deployments[track] = LiveDeployment(
            replicas=item.spec.replicas if item.spec.replicas is not None else 1,
            ready=(item.status.ready_replicas or 0) if item.status else 0,
            autoscaled=_owned_by_scale(item.metadata.managed_fields),
            primary_until=(item.metadata.annotations or {}).get(PRIMARY_UNTIL))
    primary = None
    try:
        service = client.CoreV1Api(api).read_namespaced_service(
            naming.PRIMARY_SERVICE, namespace, _request_timeout=TIMEOUT_SECONDS)
        primary = (service.spec.selector or {}).get(naming.TRACK_LABEL)
    except ApiException as exc:
        if exc.status != 404:
            raise
    return Live(deployments, primary)


def read(target: KubernetesSettings, namespace: str, instance: str) -> tuple[Live | None, str]:
    """:func:`gather`, or None and why when the cluster cannot be read."""
    try:
        return gather(target, namespace, instance), ""
    except Exception as exc:  # unreachable, bad kubeconfig, TLS: the provider will say more
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, (f"could not read the app's live replica counts ({detail}); the "
                      "autoscaled primary keeps whatever the HPA set, and a switch moves the "
                      "traffic without first sizing the incoming colour to the outgoing one")
