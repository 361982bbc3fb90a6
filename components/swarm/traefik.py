"""Traefik edge configuration for Swarm, as pure data (no Pulumi).

Swarm service labels cannot express traffic weights, so the routing lives in a Traefik
*file provider* dynamic configuration rendered from the release plan's route table, per host:

* router ``<route>`` (Host) → the weighted service ``<route>`` (one entry per backend with a
  weight above 0), or the only backend's service;
* routers ``<route>-header-<value>`` / ``<route>-cookie-<value>`` (the table's overrides) pin a
  track regardless of the weights, a header above a cookie;
* router ``<route>-blocked`` (the blocked paths, highest priority) replaces the path with one the
  app answers with 404, as every provider does;
* with a mirror, router ``<route>-mirror`` (the mirrored read methods only, above the weighted
  router and below the overrides) → service ``<route>-mirror`` of type mirroring: answered by the
  mirror's source track, ``percent`` % copied to the candidate; writes never match it;
* with track affinity, the weighted service's sticky cookie (``sticky.cookie``: the table's
  cookie name, ``Path=/``, ``SameSite=Lax``, ``HttpOnly``, ``Secure`` as the table says) keeps a
  browser on the track that first served it while that track is in the split; its value is
  Traefik's hash of the track's service name, not the name. A mirror then answers through the
  weighted service (at weight 0 its only entry is the mirror's source), so a read sets the
  cookie as a write does;
* every track service passes the original Host header (the m3u8 proxy builds URLs from it) and
  retries a failed connection on another task.

Backends are the per-track Swarm services reached by their DNS alias on the stack network
(``endpoint_mode: dnsrr``), e.g. ``http://moontv-canary:3000``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from components import app_facts, naming
from components.release import Affinity, Route, RouteTable

EDGE_PORT = 80
ENTRYPOINT = "web"
PING_ENTRYPOINT = "ping"
PING_PORT = 8082
DYNAMIC_DIR = "/etc/traefik/dynamic"
DYNAMIC_FILE = f"{DYNAMIC_DIR}/dynamic.yml"
RETRY = "moontv-retry"
NOT_FOUND = "moontv-not-found"
PRIORITY = {"route": 10, "mirror": 100, "cookie": 200, "header": 300, "blocked": 1000}


def _router(route: Route, rule: str, service: str, kind: str, *middlewares: str) -> dict[str, Any]:
    return {
        "entryPoints": [ENTRYPOINT],
        "rule": " && ".join([f"Host(`{route.host}`)", *([rule] if rule else [])]),
        "service": service,
        "priority": PRIORITY[kind],
        "middlewares": [*middlewares, RETRY],
    }


def sticky(affinity: Affinity) -> dict[str, Any]:
    """A weighted service's ``sticky`` section for the table's affinity."""
    return {"cookie": {"name": affinity.cookie, "path": affinity.path,
                       "sameSite": affinity.same_site.lower(), "httpOnly": affinity.http_only,
                       "secure": affinity.secure}}


def dynamic_config(table: RouteTable) -> dict[str, Any]:
    """The Traefik dynamic configuration (``http`` section) for ``table``."""
    blocked = " || ".join(f"Path(`{p}`) || PathPrefix(`{p.rstrip('/')}/`)" for p in table.blocked)
    routers: dict[str, Any] = {}
    services: dict[str, Any] = {}
    tracks: set[str] = set()
    for route in table.routes:
        first = route.backends[0]
        default = naming.track_name(first.track)
        if first.weight is not None:
            default = route.name
            services[route.name] = {"weighted": {"services": [
                {"name": naming.track_name(b.track), "weight": b.weight}
                for b in route.backends if b.weight]}}
            if route.affinity:
                services[route.name]["weighted"]["sticky"] = sticky(route.affinity)
        routers[route.name] = _router(route, "", default, "route")
        routers[f"{route.name}-blocked"] = _router(
            route, f"({blocked})", naming.track_name(first.track), "blocked", NOT_FOUND)
        for o in route.overrides:
            match = (f"Header(`{o.name}`, `{o.value}`)" if o.kind == "header"
                     else f"HeaderRegexp(`Cookie`, `{o.pattern}`)")
            routers[f"{route.name}-{o.kind}-{o.value}"] = _router(
                route, match, naming.track_name(o.track), o.kind)
        if route.mirror:
            m = route.mirror
            name = naming.resource_name(route.name, "mirror")
            methods = " || ".join(f"Method(`{method}`)" for method in m.methods)
            routers[name] = _router(route, f"({methods})", name, "mirror")
            answers = route.name if route.affinity else naming.track_name(m.source)
            services[name] = {"mirroring": {
                "service": answers, "mirrorBody": False,
                "mirrors": [{"name": naming.track_name(m.track), "percent": m.percent}]}}
            tracks |= {m.source, m.track}
        tracks |= {b.track for b in route.backends} | {o.track for o in route.overrides}
    for track in sorted(tracks):
        url = f"http://{naming.track_name(track)}:{app_facts.PORT}"
        services[naming.track_name(track)] = {
            "loadBalancer": {"servers": [{"url": url}], "passHostHeader": True}
        }
    middlewares = {RETRY: {"retry": {"attempts": 3, "initialInterval": "100ms"}},
                   NOT_FOUND: {"replacePath": {"path": table.not_found}}}
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares}}


def render(config: dict[str, Any]) -> str:
    """The dynamic configuration as the YAML file Traefik reads (stable key order)."""
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


def content_hash(text: str) -> str:
    """Short content hash used in names of immutable Swarm configs and secrets."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def static_args() -> list[str]:
    """Traefik static configuration as command-line flags (entry points, file provider, ping,
    metrics).

    The internal entry point (:data:`PING_PORT`, on the stack network only, never published)
    answers the health check's ``/ping`` and Prometheus' ``/metrics``: per service, so each
    track's requests, codes and durations, mirrored copies included under the mirror target's
    service (``moontv-canary@file``), which is what ``rollout auto``'s gates read."""
    return [
        f"--entryPoints.{ENTRYPOINT}.address=:{EDGE_PORT}",
        f"--entryPoints.{ENTRYPOINT}.transport.lifeCycle.requestAcceptGraceTimeout=5s",
        f"--entryPoints.{PING_ENTRYPOINT}.address=:{PING_PORT}",
        f"--ping.entryPoint={PING_ENTRYPOINT}",
        "--metrics.prometheus=true",
        f"--metrics.prometheus.entryPoint={PING_ENTRYPOINT}",
        "--metrics.prometheus.addServicesLabels=true",
        f"--providers.file.filename={DYNAMIC_FILE}",
        "--providers.file.watch=true",
        "--log.level=INFO",
    ]


def healthcheck_command() -> list[str]:
    """``traefik healthcheck`` against the ping entry point of :func:`static_args`."""
    return [
        "traefik",
        "healthcheck",
        f"--entryPoints.{PING_ENTRYPOINT}.address=:{PING_PORT}",
        f"--ping.entryPoint={PING_ENTRYPOINT}",
    ]
