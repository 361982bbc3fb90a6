"""What the MoonTV image is and expects: the one module that spells these facts.

Kubernetes, Swarm and monitoring read them from here (see docs and the upstream image: Next.js
standalone server, ``node start.js`` in ``/app`` as ``nextjs:nodejs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

PORT = 3000
"""The port the app listens on (``PORT``)."""
SERVICE_PORT = 80
"""The port of every Kubernetes Service in front of the app (in-cluster URLs use it)."""
UID = GID = 1001
"""User ``nextjs`` and group ``nodejs`` of the image."""
PROBE_PATH = "/login"
"""Answers 200 without a session: the health of a replica."""
LIVENESS_PATH = "/manifest.json"
"""The file ``start.js`` writes into the public directory, served without a session and without
the database: the server process answers (liveness), whatever storage and rendering do."""
BLOCKED_PATHS: tuple[str, ...] = ("/api/cron",)
"""Never routed publicly: ``/api/cron`` starts a fan-out of outbound requests for anyone."""
NOT_FOUND_PATH = "/_next/static/moontv-blocked"
"""A path the app answers with 404 before any session check (an unknown static file)."""
PUBLIC_DIR = "/app/public"
"""Written at start (``manifest.json``): it must be writable and filled from the image."""
WRITABLE_PATHS: Mapping[str, str] = MappingProxyType(
    {"public": PUBLIC_DIR, "next-cache": "/app/.next/cache", "tmp": "/tmp"}
)
"""Where the app may write at run time (volume name -> path); the root stays read-only."""

USERNAME_ENV, PASSWORD_ENV = "USERNAME", "PASSWORD"
STORAGE_TYPE_ENV = "NEXT_PUBLIC_STORAGE_TYPE"
LISTEN_ENV: Mapping[str, str] = MappingProxyType({"HOSTNAME": "0.0.0.0", "PORT": str(PORT)})
"""Bind every address: on Kubernetes HOSTNAME is the pod name, and Next would bind the pod IP."""

STORAGE_PORTS: Mapping[str, int] = MappingProxyType({"kvrocks": 6666, "redis": 6379})
STORAGE_DATA_DIRS: Mapping[str, str] = MappingProxyType(
    {"kvrocks": "/var/lib/kvrocks", "redis": "/data"}
)
URL_VARIABLES: Mapping[str, str] = MappingProxyType(
    {"kvrocks": "KVROCKS_URL", "redis": "REDIS_URL", "upstash": "UPSTASH_URL"}
)
"""The variable holding the storage URL, by ``NEXT_PUBLIC_STORAGE_TYPE``."""
UPSTASH_TOKEN_ENV = "UPSTASH_TOKEN"
"""The Upstash REST token (``NEXT_PUBLIC_STORAGE_TYPE=upstash``)."""
READ_ENV = frozenset({
    USERNAME_ENV, PASSWORD_ENV, STORAGE_TYPE_ENV, *URL_VARIABLES.values(), UPSTASH_TOKEN_ENV,
    *LISTEN_ENV, "NEXT_PUBLIC_SITE_NAME", "ANNOUNCEMENT", "NEXT_PUBLIC_SEARCH_MAX_PAGE",
    "NEXT_PUBLIC_DOUBAN_PROXY_TYPE", "NEXT_PUBLIC_DOUBAN_PROXY",
    "NEXT_PUBLIC_DOUBAN_IMAGE_PROXY_TYPE", "NEXT_PUBLIC_DOUBAN_IMAGE_PROXY",
    "NEXT_PUBLIC_DISABLE_YELLOW_FILTER", "NEXT_PUBLIC_FLUID_SEARCH",
})
"""Every variable LunaTV reads (the upstream sources; docs: the MoonTV runtime contract): an
app container is given no other."""


def probe_url(host: str, port: int) -> str:
    """``http://<host>:<port>/login``: the URL that tells whether a replica is up."""
    return f"http://{host}:{port}{PROBE_PATH}"
