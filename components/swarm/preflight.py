"""Before deploying to Swarm: is the Docker engine reachable, and is it a Swarm manager?

:func:`check` asks the engine (``GET /info`` on ``DOCKER_HOST``, default the local socket) and
returns ``None`` when it is ready, else one message saying what to run. :func:`diagnose` is the
pure part, so the messages are tested without an engine.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

DEFAULT_HOST = "unix:///var/run/docker.sock"
INIT_HINT = "docker swarm init --advertise-addr 127.0.0.1"
START_HINT = "start the Docker engine (`dockerd &` or `systemctl start docker`)"


class SwarmNotReady(RuntimeError):
    """The engine cannot take a Swarm deployment; the message says what to run."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def engine_info(host: str, timeout: float = 5.0) -> dict[str, Any]:
    """``GET /info`` of the engine at ``host`` (``unix://…`` or ``tcp://…``)."""
    url = urlparse(host)
    conn: http.client.HTTPConnection
    if url.scheme == "unix":
        conn = _UnixConnection(url.path, timeout)
    elif url.scheme in ("tcp", "http"):
        conn = http.client.HTTPConnection(url.hostname or "localhost", url.port or 2375,
                                          timeout=timeout)
    else:
        raise OSError(f"unsupported DOCKER_HOST scheme {url.scheme!r} (use unix:// or tcp://)")
    try:
        conn.request("GET", "/info")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"GET /info answered HTTP {response.status}")
        info: dict[str, Any] = json.loads(body)
        return info
    finally:
        conn.close()


def diagnose(host: str, info: Mapping[str, Any] | None, error: str | None = None) -> str | None:
    """The problem with the engine at ``host`` given its ``/info`` (or the connection error)."""
    if info is None:
        return (
            f"Docker engine not reachable at {host} ({error or 'no answer'}): {START_HINT}, "
            f"then `{INIT_HINT}`, and run again (tools/cluster.sh swarm-up does both)."
        )
    swarm = info.get("Swarm") or {}
    state = swarm.get("LocalNodeState", "inactive")
    if state == "locked":
        return f"The Swarm at {host} is locked: run `docker swarm unlock` and run again."
    if state != "active":
        return (
            f"Docker engine at {host} is not in Swarm mode (state {state!r}): run "
            f"`{INIT_HINT}` (or tools/cluster.sh swarm-up) and run again."
        )
    if not swarm.get("ControlAvailable", False):
        return (
            f"Docker engine at {host} is a Swarm worker: deploy from a manager node "
            "(`docker node ls` works only there)."
        )
    return None


def check(env: Mapping[str, str] | None = None) -> str | None:
    """``None`` when the engine named by ``DOCKER_HOST`` is a ready Swarm manager, else why not."""
    host = (env if env is not None else os.environ).get("DOCKER_HOST") or DEFAULT_HOST
    try:
        info = engine_info(host)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return diagnose(host, None, str(exc) or type(exc).__name__)
    return diagnose(host, info)


def require(env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`SwarmNotReady` with the message of :func:`check` when not ready."""
    problem = check(env)
    if problem is not None:
        raise SwarmNotReady(problem)
