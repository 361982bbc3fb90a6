"""Gateway API provider: one HTTPRoute per host of the route table.

Rules: the blocked paths rewritten (``URLRewrite``, ``ReplaceFullPath``) to a path the app answers
with 404 (a rule without backends would answer 500), one rule per override, then the weighted
``backendRefs``. The blocked rule has the longest path prefix, so it wins over the others.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import naming
from components.kubernetes.traffic import SERVICE_PORT, RouteArgs, service
from components.release import Override, Route, RouteTable

API_VERSION = "gateway.networking.k8s.io/v1"


def _backend(name: str, weight: int | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"kind": "Service", "name": name, "port": SERVICE_PORT}
    if weight is not None:
        ref["weight"] = weight
    return ref


def _prefix(path: str) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": path}}


def _header(override: Override) -> dict[str, str]:
    if override.kind == "header":
        return {"type": "Exact", "name": override.name, "value": override.value}
    return {"type": "RegularExpression", "name": "cookie", "value": override.pattern}


def route_rules(route: Route, table: RouteTable) -> list[dict[str, Any]]:
    rewrite = {"path": {"type": "ReplaceFullPath", "replaceFullPath": table.not_found}}
    rules: list[dict[str, Any]] = [{
        "matches": [_prefix(path) for path in table.blocked],
        "filters": [{"type": "URLRewrite", "urlRewrite": rewrite}],
        "backendRefs": [_backend(service(route, route.backends[0]))],
    }]
    rules += [{"matches": [{**_prefix("/"), "headers": [_header(o)]}],
               "backendRefs": [_backend(naming.track_name(o.track))]} for o in route.overrides]
    rules.append({"matches": [_prefix("/")],
                  "backendRefs": [_backend(service(route, b), b.weight) for b in route.backends]})
    return rules


class GatewayRouter:
    def declare(self, name: str, args: RouteArgs, parent: pulumi.Resource) -> None:
        gateway = args.traffic.gateway
        parent_ref: dict[str, Any] = {"name": gateway.name, "namespace": gateway.namespace}
        if gateway.section_name:
            parent_ref["sectionName"] = gateway.section_name
        for route in args.table.routes:
            k8s.apiextensions.CustomResource(
                f"{name}-route" if route.role == "public" else f"{name}-{route.role}-route",
                api_version=API_VERSION,
                kind="HTTPRoute",
                metadata={"name": route.name, "namespace": args.namespace, "labels": args.labels},
                spec={"parentRefs": [parent_ref], "hostnames": [route.host],
                      "rules": route_rules(route, args.table)},
                opts=pulumi.ResourceOptions(parent=parent),
            )
