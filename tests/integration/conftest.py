"""Session fixtures for the local clusters; each is started once and stopped at the end."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, skip_or_fail
from tests.integration.engine import toolchain_bin


@dataclass(frozen=True)
class Kwok:
    kubeconfig: str
    context: str

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        return subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, "--context", self.context, *args],
            input=stdin, capture_output=True, text=True, check=check, timeout=120,
        ).stdout


def _cluster(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "tools/cluster.sh"), command], capture_output=True,
                          text=True, timeout=900, check=False)


@pytest.fixture(scope="session")
def kwok():
    """A kwok Kubernetes cluster on 127.0.0.1 (Gateway API and Prometheus Operator CRDs)."""
    bin_dir = toolchain_bin()
    needed = ("kwok", "kwokctl", "kube-apiserver", "etcd")
    if bin_dir is None or not all((Path(bin_dir) / b).exists() for b in needed):
        skip_or_fail("the kwok cluster binaries are not built (run `make toolchain`)")
    started = _cluster("kwok-up")
    if started.returncode != 0:
        pytest.fail(f"kwok-up failed:\n{started.stdout}\n{started.stderr}")
    info = dict(line.split(": ", 1) for line in started.stdout.splitlines() if ": " in line)
    yield Kwok(kubeconfig=info["kubeconfig"], context=info["context"])
    _cluster("kwok-down")
