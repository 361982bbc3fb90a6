"""Gateway API provider: an HTTPRoute with weighted ``backendRefs`` and header-match rules."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import naming
from components.kubernetes.traffic import (
    CRON_PATH,
    SERVICE_PORT,
    RouteArgs,
    preview_host,
    routed_tracks,
)

API_VERSION = "gateway.networking.k8s.io/v1"


def _backend(service: str, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"kind": "Service", "name": service, "port": SERVICE_PORT}
    if weight is not None:
        ref["weight"] = weight
    return ref


def route_rules(args: RouteArgs) -> list[dict[str, Any]]:
    """Rules in precedence order: cron blocked, header/cookie overrides, then weighted default."""
    plan = args.plan
    # A rule without backendRefs forwards nothing: the gateway answers it with an error status.
    rules: list[dict[str, Any]] = [
        {"matches": [{"path": {"type": "PathPrefix", "value": CRON_PATH}}]}
    ]
    for value, track in sorted(plan.header_routes.items()):
        matches = [{"path": {"type": "PathPrefix", "value": "/"},
                    "headers": [{"type": "Exact", "name": plan.header, "value": value}]}]
        if plan.cookie:
            matches.append({"path": {"type": "PathPrefix", "value": "/"}, "headers": [{
                "type": "RegularExpression", "name": "cookie",
                "value": f"(^|.*;\\s*){plan.cookie}={value}(;.*|$)"}]})
        rules.append({"matches": matches,
                      "backendRefs": [_backend(naming.track_name(track))]})
    rules.append({
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [_backend(naming.track_name(t.name), t.weight)
                        for t in routed_tracks(plan)],
    })
    return rules


class GatewayRouter:
    def declare(self, name: str, args: RouteArgs, parent: pulumi.Resource) -> None:
        t = args.traffic
        parent_ref: dict[str, Any] = {"name": t.gateway.name, "namespace": t.gateway.namespace}
        if t.gateway.section_name:
            parent_ref["sectionName"] = t.gateway.section_name
        opts = pulumi.ResourceOptions(parent=parent)

        def route(resource: str, route_name: str, host: str, rules: list[dict[str, Any]]) -> None:
            k8s.apiextensions.CustomResource(
                resource,
                api_version=API_VERSION,
                kind="HTTPRoute",
                metadata={"name": route_name, "namespace": args.namespace,
                          "labels": args.labels},
                spec={"parentRefs": [parent_ref], "hostnames": [host], "rules": rules},
                opts=opts,
            )

        route(f"{name}-route", naming.PRIMARY_SERVICE, t.host, route_rules(args))
        if args.plan.preview:
            route(f"{name}-preview-route", naming.PREVIEW_SERVICE, preview_host(t), [
                {"matches": [{"path": {"type": "PathPrefix", "value": CRON_PATH}}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "backendRefs": [_backend(naming.PREVIEW_SERVICE)]},
            ])
