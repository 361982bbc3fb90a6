"""The toolchain's Traefik (the version the node and the Swarm edge run) as a process on
127.0.0.1 with a file provider: for tests that need a real router but no cluster (the mirror's
share and p99 in test_traefik_mirror.py, the browser's per-request split in test_app_twin.py)."""

from __future__ import annotations

import contextlib
import http.client
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import skip_or_fail
from tests.helpers import free_port
from tests.integration import node as node_host


@dataclass(frozen=True)
class Traefik:
    #: entry point name → its port on 127.0.0.1
    ports: dict[str, int]
    metrics: str
    dynamic_file: Path
    log: Path


def binary() -> Path:
    return node_host.bin_dir() / "traefik"


@contextlib.contextmanager
def running(
    tmp: Path, config: dict, entrypoints: list[str], ready: Callable[[dict[str, int]], bool]
) -> Iterator[Traefik]:
    """Traefik with ``config`` (its dynamic configuration, watched: rewrite
    ``dynamic_file`` to change it) and one entry point per name in ``entrypoints``, each on a
    free port of 127.0.0.1, plus one for Prometheus metrics; yields once ``ready(ports)``."""
    traefik = binary()
    if not traefik.exists():
        skip_or_fail(f"{traefik} is not built (tools/toolchain.sh --only traefik)")
    dynamic_file = tmp / "dynamic.yml"
    dynamic_file.write_text(yaml.safe_dump(config))
    ports = {name: free_port() for name in entrypoints}
    metrics = free_port()
    args = [str(traefik),
            *(f"--entryPoints.{name}.address=127.0.0.1:{port}" for name, port in ports.items()),
            f"--entryPoints.metrics.address=127.0.0.1:{metrics}",
            "--metrics.prometheus.entryPoint=metrics",
            "--metrics.prometheus.addServicesLabels=true",
            f"--providers.file.filename={dynamic_file}", "--providers.file.watch=true",
            "--log.level=INFO"]
    log = tmp / "traefik.log"
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            with contextlib.suppress(OSError, http.client.HTTPException):
                return ready(ports)
            return False

        assert node_host.wait_until(up, 30, interval=0.3), log.read_text()[-2000:]
        yield Traefik(ports, f"http://127.0.0.1:{metrics}/metrics", dynamic_file, log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
