"""From validated stack settings to the Swarm stack description.

``moontv:swarm`` holds what only Swarm needs (:class:`SwarmSettings`); everything else (image,
release plan, site, owner, storage, resources, traffic host, namespace) comes from the common
:class:`~components.settings.MoonTVSettings`, so the Pulumi program and the compose CLI build
the same :class:`~components.swarm.spec.SwarmSpec`.
"""

from __future__ import annotations

import re

from components.settings import MoonTVSettings, SwarmSettings
from components.swarm.spec import Resources, SwarmSpec

_MEM_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_MEM = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?")


def cpus(quantity: str) -> float:
    """Kubernetes CPU quantity (``100m``, ``1``, ``0.5``) as cores."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def mebibytes(quantity: str) -> int:
    """Kubernetes memory quantity (``768Mi``, ``1Gi``, ``512M``) as whole MiB (at least 4)."""
    match = _MEM.fullmatch(quantity)
    if match is None:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    size = float(match.group(1)) * _MEM_UNITS[match.group(2) or ""]
    return max(4, int(size // 2**20))


def spec_from_settings(model: MoonTVSettings, swarm: SwarmSettings) -> SwarmSpec:
    """The Swarm stack for validated settings."""
    storage = model.storage
    default_image = storage.redis_image if storage.kind == "redis" else storage.kvrocks_image
    res = model.resources
    assert storage.kind != "upstash"  # settings refuses it on swarm
    return SwarmSpec(
        stack=model.namespace,
        image_repository=model.image.repository,
        plan=model.plan,
        host=model.traffic.host,
        owner_username=model.owner.username,
        site_env=model.site.env(),
        storage_kind=storage.kind,
        storage_external_type=storage.external_type,
        storage_image=swarm.storage_image or default_image,
        resources=Resources(
            cpu_limit=cpus(res.limits.cpu),
            memory_limit_mib=mebibytes(res.limits.memory),
            cpu_reservation=cpus(res.requests.cpu),
            memory_reservation_mib=mebibytes(res.requests.memory),
        ),
        edge_image=swarm.edge_image,
        http_port=swarm.http_port,
        app_command=swarm.app_command,
        constraints=swarm.constraints,
        edge_constraints=swarm.edge_constraints,
        health_interval=swarm.health_interval,
    )
