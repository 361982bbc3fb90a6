"""Shared helpers for the Swarm integration tests: engine check, images, waiting, cleanup.

The app is the LunaTV twin (tests/integration/images.py) in two builds, one per track; the
tests tell the tracks apart as a user tells LunaTV versions apart, by the ``Version`` of
``/api/server-config`` (see :mod:`tests.integration.swarm_load`).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from components import release
from components.image_settings import reported_version
from components.swarm import preflight, traefik
from components.swarm import spec as sw
from tests import helpers
from tests.conftest import skip_or_fail
from tests.integration import images

ROOT = Path(__file__).resolve().parents[2]
HOST = "moontv.test"
OWNER = "owner-it"
OWNER_PASSWORD = "owner-it-Pass-1"
STORAGE_PASSWORD = "storage-it-Pass-2"
#: The Version each twin build reports, and its image tag: the stable (blue) track runs OLD,
#: the canary (green) track NEW.
OLD_TAG, NEW_TAG = images.APP_V1.rsplit(":", 1)[1], images.APP_V2.rsplit(":", 1)[1]
OLD, NEW = reported_version(OLD_TAG), reported_version(NEW_TAG)
TAGS = {OLD: OLD_TAG, NEW: NEW_TAG}


def blue_green(active: str) -> dict[str, Any]:
    """Blue-green with blue on OLD and green on NEW."""
    return helpers.blue_green(active, blue=TAGS[OLD], green=TAGS[NEW])


def canary(weight: int) -> dict[str, Any]:
    """A canary of NEW at ``weight`` % over a stable OLD."""
    return helpers.canary(weight, version=TAGS[NEW])


def require_engine() -> bool:
    """Make sure a Swarm manager is reachable; returns True when this call started it.

    Starts it with ``tools/cluster.sh swarm-up`` when that script exists; otherwise skips (or
    fails under MOONTV_REQUIRE_ENGINE=1) with the preflight message.
    """
    if preflight.check() is None:
        return False
    cluster = ROOT / "tools" / "cluster.sh"
    if cluster.exists():
        subprocess.run(["bash", str(cluster), "swarm-up"], capture_output=True, text=True,
                       timeout=600, check=False)
    problem = preflight.check()
    if problem is not None:
        skip_or_fail(problem)
    return cluster.exists()


def release_engine(started: bool) -> None:
    """Stop what :func:`require_engine` started (``tools/cluster.sh swarm-down``)."""
    if started:
        subprocess.run(["bash", str(ROOT / "tools" / "cluster.sh"), "swarm-down"],
                       capture_output=True, text=True, timeout=300, check=False)


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def build_images() -> None:
    """Build the edge image (tests/fixtures/swarm-images; skips, or fails under
    MOONTV_REQUIRE_ENGINE=1, when that is impossible). The app and storage images come from
    the ``local_images`` fixture."""
    result = subprocess.run([str(ROOT / "tests/fixtures/swarm-images/build.sh")],
                            capture_output=True, text=True, timeout=3000, check=False)
    if result.returncode != 0:
        skip_or_fail(f"cannot build the Swarm test images: {result.stderr.strip()[-600:]}")


def spec_for(stack: str, raw_release: dict, port: int, replicas: int = 2) -> sw.SwarmSpec:
    plan = release.plan(release.parse(raw_release), TAGS[OLD], replicas)
    return sw.SwarmSpec(
        stack=stack, image_repository=images.APP_REPOSITORY, plan=plan, host=HOST,
        site_env={"NEXT_PUBLIC_SITE_NAME": "MoonTV-IT"}, storage_kind="redis",
        storage_image=images.REDIS, edge_image="moontv-edge:test", http_port=port,
        owner_username=OWNER, health_interval="2s",
        constraints=(), edge_constraints=("node.role == manager",),
    )


def login(port: int, host: str, username: str, password: str) -> tuple[int, str]:
    """``POST /api/login`` through the edge; returns (status, the ``auth`` cookie or "")."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/api/login", body=json.dumps({"username": username,
                                                            "password": password}),
                     headers={"Host": host, "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        cookie = next((c.split(";", 1)[0] for c in response.headers.get_all("Set-Cookie") or []
                       if c.startswith("auth=")), "")
        return response.status, cookie
    finally:
        conn.close()


def services_of(stack: str) -> list[str]:
    out = docker("service", "ls", "--format", "{{.Name}}",
                 "--filter", f"label=app.kubernetes.io/instance={stack}")
    return [line for line in out.split() if line]


def wait_converged(names: list[str], deadline_s: float = 240) -> None:
    """Wait until each service runs its desired replicas and no update is in progress."""
    deadline = time.monotonic() + deadline_s
    pending: list[str] = names
    while time.monotonic() < deadline:
        pending = []
        for name in names:
            info = json.loads(docker("service", "inspect", name))[0]
            desired = info["Spec"]["Mode"]["Replicated"]["Replicas"]
            update = (info.get("UpdateStatus") or {}).get("State", "completed")
            tasks = docker("service", "ps", name, "--filter", "desired-state=running",
                           "--format", "{{.CurrentState}}").splitlines()
            running = sum(1 for t in tasks if t.startswith("Running"))
            if running != desired or update not in ("completed", "rollback_completed"):
                pending.append(f"{name} {running}/{desired} update={update}")
        if not pending:
            return
        time.sleep(1)
    raise AssertionError(f"services did not converge: {pending}")


def container_of(service: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}",
                     "--filter", "health=healthy").split()
        if ids:
            return ids[0]
        time.sleep(1)
    raise AssertionError(f"no healthy container for {service}")


def wait_routing(spec: sw.SwarmSpec, edge_service: str, settle_s: float = 3.0) -> None:
    """Wait until Traefik's watched file holds this spec's routing, then let it reload."""
    expected = traefik.render(traefik.dynamic_config(spec.plan.routes(spec.host)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = docker("exec", container_of(edge_service), "cat", traefik.DYNAMIC_FILE,
                         check=False)
        if current == expected:
            time.sleep(settle_s)  # Traefik throttles provider reloads (2 s by default)
            return
        time.sleep(1)
    raise AssertionError("the edge never received the expected dynamic config")


def redis_cli(service: str, *args: str) -> str:
    cmd = f'redis-cli --no-auth-warning -a "$(sed -n "s/^requirepass //p" ' \
          f'/run/secrets/{sw.STORAGE_CONFIG})" ' + " ".join(args)
    return docker("exec", container_of(service), "sh", "-c", cmd).strip()


def remove_stack(stack: str, volumes: list[str]) -> None:
    docker("stack", "rm", stack, check=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}",
                      check=False).split()
        nets = docker("network", "ls", "-q", "--filter", f"name={stack}-net",
                      check=False).split()
        if not left and not nets:
            break
        time.sleep(1)
    for volume in volumes:
        for _ in range(30):
            if docker("volume", "rm", "-f", volume, check=False) is not None and not docker(
                "volume", "ls", "-q", "--filter", f"name=^{volume}$", check=False
            ).split():
                break
            time.sleep(1)


OBJECT_KINDS = ("service", "config", "secret", "network")


def named_objects(prefix: str) -> dict[str, list[str]]:
    """Services, configs, secrets and networks whose name starts with ``<prefix>-``."""
    found: dict[str, list[str]] = {}
    for kind in OBJECT_KINDS:
        names = docker(kind, "ls", "--format", "{{.Name}}", "--filter", f"name={prefix}-",
                       check=False).split()
        names = [n for n in names if n.startswith(f"{prefix}-")]
        if names:
            found[kind] = names
    return found


def remove_named(prefix: str) -> dict[str, list[str]]:
    """Remove what :func:`named_objects` finds (services first); returns what was there."""
    found = named_objects(prefix)
    for kind in OBJECT_KINDS:
        for name in found.get(kind, []):
            docker(kind, "rm", name, check=False)
        # configs, secrets and the network are in use until the task containers are gone
        deadline = time.monotonic() + 120
        for name in found.get("service", []) if kind == "service" else []:
            while time.monotonic() < deadline and docker(
                "ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={name}",
                check=False).split():
                time.sleep(1)
    return found


def running_containers(services: list[str]) -> set[str]:
    """IDs of the running task containers of ``services`` (to see whether an update restarted
    them)."""
    ids: set[str] = set()
    for service in services:
        ids.update(docker("ps", "-q", "--no-trunc", "--filter",
                          f"label=com.docker.swarm.service.name={service}").split())
    return ids
