"""Gateway API provider: one HTTPRoute per host of the route table.

Rules: the blocked paths rewritten (``URLRewrite``, ``ReplaceFullPath``) to a path the app answers
with 404 (a rule without backends would answer 500), one rule per override, then the weighted
``backendRefs``. The blocked rule has the longest path prefix, so it wins over the others.

A mirror adds a rule matching its read methods only (writes keep matching the weighted rule, so
they are never copied). With ``traffic.gateway.implementation: standard`` it carries the standard
``RequestMirror`` filter; with ``traefik`` (whose Gateway provider answers every request of a rule
with that filter with 500) its backend is a ``TraefikService`` of type mirroring. A method match
outranks header matches in Gateway API's precedence, so with a mirror each override rule also
matches per mirrored method, and a forced track stays forced.

Track affinity (Flagger's ``sessionAffinity`` with ``primaryCookieName`` works the same way):
each weighted ``backendRef`` carries its own ``ResponseHeaderModifier`` that adds the
``Set-Cookie`` naming its track (and the mirror rule, which stands in for the weighted rule at
weight 0, adds the one of the track that answers), and one rule per pinned track, after the
overrides, matches a ``Cookie`` header naming it. Gateway API breaks a precedence tie by rule
order, so an override beats a cookie rule; a cookie rule beats the weighted rule by its header
match.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import naming
from components.kubernetes.traffic import SERVICE_PORT, RouteArgs, service
from components.release import Affinity, Mirror, Override, Route, RouteTable

API_VERSION = "gateway.networking.k8s.io/v1"
TRAEFIK_API_VERSION = "traefik.io/v1alpha1"
TRAEFIK_GROUP = "traefik.io"


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


def set_cookie(affinity: Affinity | None, track: str) -> list[dict[str, Any]]:
    """The filters that tell a browser ``track`` served it (none without affinity). ``add``,
    not ``set``: the app's own cookies (``auth`` at login) stay in the answer."""
    if affinity is None:
        return []
    header = {"name": "Set-Cookie", "value": affinity.set_cookie(track)}
    return [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [header]}}]


def mirror_name(route: Route) -> str:
    """The TraefikService that mirrors ``route`` (implementation ``traefik``)."""
    return naming.resource_name(route.name, "mirror")


def _methods(mirror: Mirror | None) -> list[dict[str, Any]]:
    """Per-method variants of a match when there is a mirror (see the module docstring)."""
    return [{"method": method} for method in mirror.methods] if mirror else []


def _mirror_rule(route: Route, mirror: Mirror, implementation: str) -> dict[str, Any]:
    matches = [{**_prefix("/"), **method} for method in _methods(mirror)]
    # A rule filter: Traefik drops a backendRef's filters on a TraefikService.
    cookie = set_cookie(route.affinity, mirror.source)
    if implementation == "traefik":
        ref = {"group": TRAEFIK_GROUP, "kind": "TraefikService", "name": mirror_name(route)}
        return {"matches": matches, **({"filters": cookie} if cookie else {}),
                "backendRefs": [ref]}
    copy = {"backendRef": _backend(naming.track_name(mirror.track)), "percent": mirror.percent}
    return {"matches": matches,
            "filters": [{"type": "RequestMirror", "requestMirror": copy}, *cookie],
            "backendRefs": [_backend(naming.track_name(mirror.source))]}


def _weighted(route: Route) -> list[dict[str, Any]]:
    refs = []
    for b in route.backends:
        ref = _backend(service(route, b), b.weight)
        # a backend at weight 0 answers no request of this rule
        filters = set_cookie(route.affinity, b.track) if b.weight else []
        if filters:
            ref["filters"] = filters
        refs.append(ref)
    return refs


def route_rules(route: Route, table: RouteTable,
                implementation: str = "standard") -> list[dict[str, Any]]:
    rewrite = {"path": {"type": "ReplaceFullPath", "replaceFullPath": table.not_found}}
    rules: list[dict[str, Any]] = [{
        "matches": [_prefix(path) for path in table.blocked],
        "filters": [{"type": "URLRewrite", "urlRewrite": rewrite}],
        "backendRefs": [_backend(service(route, route.backends[0]))],
    }]
    for o in route.overrides:
        match = {**_prefix("/"), "headers": [_header(o)]}
        rules.append({"matches": [{**match, **m} for m in _methods(route.mirror)] + [match],
                      "backendRefs": [_backend(naming.track_name(o.track))]})
    pinned = route.affinity.pinned if route.affinity else ()
    for track in pinned:
        assert route.affinity is not None
        cookie = {"type": "RegularExpression", "name": "cookie",
                  "value": route.affinity.pattern(track)}
        match = {**_prefix("/"), "headers": [cookie]}
        rules.append({"matches": [{**match, **m} for m in _methods(route.mirror)] + [match],
                      "backendRefs": [_backend(naming.track_name(track))]})
    if route.mirror:
        rules.append(_mirror_rule(route, route.mirror, implementation))
    rules.append({"matches": [_prefix("/")], "backendRefs": _weighted(route)})
    return rules


def traefik_mirroring(mirror: Mirror) -> dict[str, Any]:
    """The ``spec`` of the TraefikService that answers from ``mirror.source`` and copies
    ``percent`` % of the requests to ``mirror.track`` (read requests carry no body to copy)."""
    return {"mirroring": {
        "kind": "Service", "name": naming.track_name(mirror.source), "port": SERVICE_PORT,
        "mirrorBody": False,
        "mirrors": [{"kind": "Service", "name": naming.track_name(mirror.track),
                     "port": SERVICE_PORT, "percent": mirror.percent}],
    }}


class GatewayRouter:
    def declare(self, name: str, args: RouteArgs,
                opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        gateway = args.traffic.gateway
        made: list[pulumi.Resource] = []
        parent_ref: dict[str, Any] = {"name": gateway.name, "namespace": gateway.namespace}
        if gateway.section_name:
            parent_ref["sectionName"] = gateway.section_name
        implementation = gateway.implementation
        for route in args.table.routes:
            resource = f"{name}-route" if route.role == "public" else f"{name}-{route.role}-route"
            # The route names the TraefikService: it must exist before the route does.
            needs: list[pulumi.Resource] = []
            if route.mirror and implementation == "traefik":
                needs.append(k8s.apiextensions.CustomResource(
                    f"{resource}-mirror",
                    api_version=TRAEFIK_API_VERSION,
                    kind="TraefikService",
                    metadata={"name": mirror_name(route), "namespace": args.namespace,
                              "labels": args.labels},
                    spec=traefik_mirroring(route.mirror),
                    opts=opts,
                ))
            made += needs
            made.append(k8s.apiextensions.CustomResource(
                resource,
                api_version=API_VERSION,
                kind="HTTPRoute",
                metadata={"name": route.name, "namespace": args.namespace, "labels": args.labels},
                spec={"parentRefs": [parent_ref], "hostnames": [route.host],
                      "rules": route_rules(route, args.table, implementation)},
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=needs)),
            ))
        return made
