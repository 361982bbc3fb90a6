"""Validated stack settings → Swarm stack description."""

from __future__ import annotations

import pytest

from components import image_defaults, settings
from components.swarm import spec as sw
from components.swarm.options import SwarmSettings, cpus, mebibytes, spec_from_settings

RAW = {
    "environment": "dev",
    "platform": "swarm",
    "namespace": "moontv-dev",
    "image": {"repository": "ghcr.io/moontechlab/lunatv", "tag": "v100.1.1"},
    "replicas": 2,
    "traffic": {"host": "moontv.dev.local"},
    "site": {"name": "MoonTV (dev)"},
    "owner": {"username": "boss"},
    "storage": {"kind": "redis"},
    "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                  "limits": {"cpu": "1.5", "memory": "1Gi"}},
    "release": {"strategy": "canary", "canary": {"version": "v100.1.2", "weight": 10}},
}


@pytest.mark.parametrize(("quantity", "expected"), [("100m", 0.1), ("1", 1.0), ("1.5", 1.5)])
def test_cpu_quantities_become_cores(quantity, expected):
    assert cpus(quantity) == expected


@pytest.mark.parametrize(
    ("quantity", "expected"), [("768Mi", 768), ("1Gi", 1024), ("1000M", 953), ("1", 4)]
)
def test_memory_quantities_become_mebibytes(quantity, expected):
    assert mebibytes(quantity) == expected


def test_given_dev_settings_then_the_swarm_spec_carries_them():
    swarm = SwarmSettings.model_validate({"httpPort": 8080})
    spec = spec_from_settings(settings.validate(RAW), swarm)
    assert spec.stack == "moontv-dev"
    assert spec.host == "moontv.dev.local"
    assert spec.owner_username == "boss"
    assert spec.storage_kind == "redis" and spec.storage_image == image_defaults.REDIS
    assert spec.site_env["NEXT_PUBLIC_SITE_NAME"] == "MoonTV (dev)"
    assert spec.resources == sw.Resources(1.5, 1024, 0.25, 256)
    assert spec.http_port == 8080 and spec.edge_image == image_defaults.TRAEFIK
    assert [(t.name, t.weight) for t in spec.plan.tracks] == [("stable", 90), ("canary", 10)]


def test_swarm_settings_use_camel_case_keys_and_reject_unknown_ones():
    parsed = SwarmSettings.model_validate({"httpPort": 8080, "storageImage": "r:1"})
    assert parsed.http_port == 8080 and parsed.storage_image == "r:1"
    with pytest.raises(ValueError, match="routingMesh"):
        SwarmSettings.model_validate({"routingMesh": True})
