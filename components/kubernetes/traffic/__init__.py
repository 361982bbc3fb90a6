"""Traffic providers on Kubernetes: one protocol, one renderer per provider, one place that
picks it.

A provider renders the release plan's :class:`~components.release.RouteTable` (hosts, blocked
paths, overrides, weighted backends) as its routing objects and derives no rule of its own.
Backends are the per-track Services ``moontv-<track>``; a host's only backend (the preview) is
reached through the host's own Service (``moontv-preview``), so a blue-green switch edits the
public route alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pulumi

from components import app_facts, naming
from components.release import Backend, Route, RouteTable
from components.settings import TrafficSettings

SERVICE_PORT = app_facts.SERVICE_PORT


@dataclass(frozen=True)
class RouteArgs:
    namespace: pulumi.Input[str]
    table: RouteTable
    traffic: TrafficSettings
    labels: dict[str, str]


def service(route: Route, backend: Backend) -> str:
    """The Service that reaches ``backend`` of ``route``."""
    return route.name if backend.weight is None else naming.track_name(backend.track)


class Router(Protocol):
    """Declares the routing resources for a route table with ``opts`` (their parent, and the
    Deployments they must wait for), and returns them."""

    def declare(self, name: str, args: RouteArgs,
                opts: pulumi.ResourceOptions) -> list[pulumi.Resource]: ...


def router_for(provider: str) -> Router:
    """The one place that maps ``moontv:traffic.provider`` to its renderer (Swarm has one edge,
    :mod:`components.swarm.traefik`)."""
    from components.kubernetes.traffic import gateway, nginx

    routers: dict[str, Router] = {"gateway": gateway.GatewayRouter(), "nginx": nginx.NginxRouter()}
    return routers[provider]
