"""The app twin (tests/fixtures/app-twin, built by tests/integration/images.py) run by the local
Docker engine on 127.0.0.1 against a Redis on 127.0.0.1 (host network: nothing leaves the
machine). Used by the deploy-gate smoke tests and the capacity measurements."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import skip_or_fail
from tests.helpers import free_port

DOCKER = "/usr/bin/docker"
OWNER = "admin"
PASSWORD = "twin-owner-password-1"


@dataclass(frozen=True)
class Twin:
    url: str
    container: str

    def memory_mib(self) -> float:
        """The container's memory use now (docker stats), in MiB."""
        out = subprocess.run(
            [DOCKER, "stats", "--no-stream", "--format", "{{.MemUsage}}", self.container],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        value = out.split("/")[0].strip()
        units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}
        for unit, factor in units.items():
            if value.endswith(unit):
                return float(value[: -len(unit)]) * factor
        raise ValueError(f"unexpected docker stats memory {out!r}")


def images() -> dict[str, object]:
    try:
        from tests.integration import images as built
    except ImportError as err:
        skip_or_fail(f"the test images cannot be built here ({err})")
    try:
        return built.build_all()
    except built.ImageBuildError as err:
        skip_or_fail(f"the test images cannot be built here ({err})")
    raise AssertionError("unreachable")


@contextlib.contextmanager
def running(ref: str, redis_url: str, cpus: str | None = None) -> Iterator[Twin]:
    """Run the twin image ``ref`` until the block ends; ``cpus`` caps it like a CPU limit."""
    port = free_port()
    limits = ["--cpus", cpus] if cpus else []
    started = subprocess.run(
        [
            DOCKER,
            "run",
            "-d",
            "--rm",
            "--network",
            "host",
            *limits,
            "-e",
            "HOSTNAME=127.0.0.1",
            "-e",
            f"PORT={port}",
            "-e",
            f"USERNAME={OWNER}",
            "-e",
            f"PASSWORD={PASSWORD}",
            "-e",
            "NEXT_PUBLIC_STORAGE_TYPE=redis",
            "-e",
            f"REDIS_URL={redis_url}",
            ref,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if started.returncode != 0:
        pytest.fail(f"docker run {ref} failed: {started.stderr}")
    container = started.stdout.strip()
    twin = Twin(url=f"http://127.0.0.1:{port}", container=container)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{twin.url}/login", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                logs = subprocess.run(
                    [DOCKER, "logs", container],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=60,
                )
                pytest.fail(f"the twin never answered /login:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.2)
        yield twin
    finally:
        subprocess.run(
            [DOCKER, "rm", "-f", container], capture_output=True, check=False, timeout=120
        )
