"""Traffic providers: one protocol, one implementation per provider, one place that picks it.

A provider gets the release plan (tracks and their weights) and declares the routing objects
for it. Services are fixed: ``moontv-<track>`` per track, ``moontv`` for the primary track and
``moontv-preview`` for the preview track. ``/api/cron`` is never routed publicly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pulumi

from components import app_facts
from components.release import ReleasePlan, Track
from components.settings import TrafficSettings

SERVICE_PORT = app_facts.SERVICE_PORT
CRON_PATH = app_facts.BLOCKED_PATHS[0]


@dataclass(frozen=True)
class RouteArgs:
    namespace: pulumi.Input[str]
    instance: str
    plan: ReleasePlan
    traffic: TrafficSettings
    labels: dict[str, str]


class Router(Protocol):
    """Declares the routing resources for a plan (children of ``parent``)."""

    def declare(self, name: str, args: RouteArgs, parent: pulumi.Resource) -> None: ...


def routed_tracks(plan: ReleasePlan) -> list[Track]:
    """Tracks that take part in weighted routing: every track that runs or receives traffic."""
    return [t for t in plan.tracks if t.replicas > 0 or t.weight > 0]


def preview_host(traffic: TrafficSettings) -> str:
    return f"preview.{traffic.host}"


def router_for(provider: str) -> Router:
    """The one place that maps ``moontv:traffic.provider`` to its implementation."""
    from components.kubernetes.traffic import gateway, nginx

    routers: dict[str, Router] = {"gateway": gateway.GatewayRouter(), "nginx": nginx.NginxRouter()}
    return routers[provider]
