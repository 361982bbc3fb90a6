"""The default image of every component the stack runs: the one place these pins are spelled.

Settings models (``components/settings.py``, ``components/monitoring/model.py``) and the Swarm
spec take their defaults from here; README and docs name them and a unit test keeps both in
step. Each pin is a full version, so ``components/image_lifecycle.py`` can check it against its
line's end of life and known fixes, and Renovate (``renovate.json``) proposes the next one.
Stacks that run in prod pin the same tags by digest in their own stack file.
"""

from __future__ import annotations

KVROCKS = "apache/kvrocks:2.17.0"
REDIS = "redis:7.4.10-alpine"
#: Prometheus exporter sidecar of the storage (metrics port 9121).
REDIS_EXPORTER = "oliver006/redis_exporter:v1.67.0"
#: The Swarm edge (the node's Gateway is built from source: tools/traefik.sh).
TRAEFIK = "traefik:v3.7.17"
BLACKBOX_EXPORTER = "quay.io/prometheus/blackbox-exporter:v0.27.0"
FLUENT_BIT = "cr.fluentbit.io/fluent/fluent-bit:5.1.2"
OTEL_COLLECTOR = "otel/opentelemetry-collector-contrib:0.160.0"
#: Swarm only: on Kubernetes the Prometheus Operator runs Prometheus and Alertmanager.
PROMETHEUS = "quay.io/prometheus/prometheus:v3.13.2"
ALERTMANAGER = "quay.io/prometheus/alertmanager:v0.34.0"
#: docker/Dockerfile's ``BASE_IMAGE`` default (a tag: its digest is left to the operator).
NODE_BASE = "node:24.22.3-alpine"

#: name -> reference, for the lifecycle check and the tests.
ALL = {
    "kvrocks": KVROCKS,
    "redis": REDIS,
    "redis exporter": REDIS_EXPORTER,
    "traefik": TRAEFIK,
    "blackbox exporter": BLACKBOX_EXPORTER,
    "fluent bit": FLUENT_BIT,
    "otel collector": OTEL_COLLECTOR,
    "prometheus": PROMETHEUS,
    "alertmanager": ALERTMANAGER,
    "node base": NODE_BASE,
}
