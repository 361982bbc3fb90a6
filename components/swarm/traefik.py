"""Traefik edge configuration for Swarm, as pure data (no Pulumi).

Swarm service labels cannot express traffic weights, so the routing lives in a Traefik
*file provider* dynamic configuration generated from the release plan:

* router ``moontv`` (Host ``<host>``) → weighted service ``moontv`` with one entry per track
  whose weight is above 0 (weights taken from the plan);
* routers ``moontv-header-<value>`` (header ``x-moontv-canary: always|never``) with a higher
  priority pin a track regardless of the weights; with a canary cookie, the same values in the
  cookie do the same (below the header in priority);
* router ``moontv-preview`` (Host ``preview.<host>``) → the preview track (inactive blue-green
  colour, or the canary);
* ``/api/cron`` is excluded from every rule, so Traefik answers it with 404;
* every track service passes the original Host header (the m3u8 proxy builds URLs from it) and
  retries a failed connection on another task.

Backends are the per-track Swarm services reached by their DNS alias on the stack network
(``endpoint_mode: dnsrr``), e.g. ``http://moontv-canary:3000``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import yaml

from components import app_facts, naming
from components.release import ReleasePlan

EDGE_PORT = 80
ENTRYPOINT = "web"
PING_ENTRYPOINT = "ping"
PING_PORT = 8082
CRON_PATH = app_facts.BLOCKED_PATHS[0]
DYNAMIC_DIR = "/etc/traefik/dynamic"
DYNAMIC_FILE = f"{DYNAMIC_DIR}/dynamic.yml"
RETRY = "moontv-retry"
PRIORITY_DEFAULT = 10
PRIORITY_PREVIEW = 20
PRIORITY_COOKIE = 200
PRIORITY_HEADER = 300

_HOST = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def service_name(track: str) -> str:
    """Traefik service (and Swarm DNS alias) of one track: ``moontv-<track>``."""
    return naming.track_name(track)


def backend_url(track: str) -> str:
    return f"http://{naming.track_name(track)}:{app_facts.PORT}"


def _check_host(host: str) -> None:
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        raise ValueError(
            f"traffic host: must be a lower-case DNS name such as moontv.example.org, got {host!r}"
        )


def _rule(host: str, *matchers: str) -> str:
    not_cron = f"!(Path(`{CRON_PATH}`) || PathPrefix(`{CRON_PATH}/`))"
    return " && ".join([f"Host(`{host}`)", *matchers, not_cron])


def _router(rule: str, service: str, priority: int) -> dict[str, Any]:
    return {
        "entryPoints": [ENTRYPOINT],
        "rule": rule,
        "service": service,
        "priority": priority,
        "middlewares": [RETRY],
    }


def traefik_dynamic_config(plan: ReleasePlan, host: str) -> dict[str, Any]:
    """The Traefik dynamic configuration (``http`` section) routing ``host`` for ``plan``."""
    _check_host(host)
    tracks = {t.name: t for t in plan.tracks}
    weighted = [
        {"name": service_name(t.name), "weight": t.weight} for t in plan.tracks if t.weight > 0
    ]
    if not weighted:
        raise ValueError(f"release plan: no track takes traffic (weights {_weights(plan)})")
    routed = {t.name for t in plan.tracks if t.weight > 0}
    routers: dict[str, Any] = {
        naming.APP: _router(_rule(host), naming.APP, PRIORITY_DEFAULT),
    }
    for value, track in sorted(plan.header_routes.items()):
        if track not in tracks:
            raise ValueError(f"release plan: header route {value!r} names unknown track {track!r}")
        routed.add(track)
        header = f"Header(`{plan.header}`, `{value}`)"
        routers[f"{naming.APP}-header-{value}"] = _router(
            _rule(host, header), service_name(track), PRIORITY_HEADER
        )
        if plan.cookie:
            cookie = f"HeaderRegexp(`Cookie`, `(^|;\\s*){re.escape(plan.cookie)}={value}(;|$)`)"
            routers[f"{naming.APP}-cookie-{value}"] = _router(
                _rule(host, cookie), service_name(track), PRIORITY_COOKIE
            )
    if plan.preview is not None:
        if plan.preview not in tracks:
            raise ValueError(f"release plan: preview names unknown track {plan.preview!r}")
        routed.add(plan.preview)
        routers[naming.PREVIEW_SERVICE] = _router(
            _rule(f"preview.{host}"), service_name(plan.preview), PRIORITY_PREVIEW
        )
    services: dict[str, Any] = {naming.APP: {"weighted": {"services": weighted}}}
    for name in sorted(routed):
        services[service_name(name)] = {
            "loadBalancer": {"servers": [{"url": backend_url(name)}], "passHostHeader": True}
        }
    middlewares = {RETRY: {"retry": {"attempts": 3, "initialInterval": "100ms"}}}
    return {"http": {"routers": routers, "services": services, "middlewares": middlewares}}


def _weights(plan: ReleasePlan) -> str:
    return ", ".join(f"{t.name}={t.weight}" for t in plan.tracks)


def render(config: dict[str, Any]) -> str:
    """The dynamic configuration as the YAML file Traefik reads (stable key order)."""
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False)


def content_hash(text: str) -> str:
    """Short content hash used in names of immutable Swarm configs and secrets."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def static_args() -> list[str]:
    """Traefik static configuration as command-line flags (entry points, file provider, ping)."""
    return [
        f"--entryPoints.{ENTRYPOINT}.address=:{EDGE_PORT}",
        f"--entryPoints.{ENTRYPOINT}.transport.lifeCycle.requestAcceptGraceTimeout=5s",
        f"--entryPoints.{PING_ENTRYPOINT}.address=:{PING_PORT}",
        f"--ping.entryPoint={PING_ENTRYPOINT}",
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
