"""The `bash run` blocks of docs/runbooks, run as written and in order, against a real
redis-server, a key ring, a backup directory and a local S3 server, all on 127.0.0.1 (the
`bash cluster` blocks are checked by tests/unit/test_runbooks.py)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, skip_or_fail
from tests.helpers import free_port
from tests.integration.test_storage_tool import (  # noqa: F401  (fixtures)
    PASSWORD,
    cli,
    redis,
    s3,
    snapshot,
)
from tests.runbooks import RUNBOOKS, Block, shell_blocks

pytestmark = pytest.mark.integration


def run_blocks(name: str) -> list[Block]:
    return [b for b in shell_blocks("run") if b.file == RUNBOOKS / name]


def execute(block: Block, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{block.where} failed ({result.returncode}):\n{block.text}\n{result.stdout}\n"
        f"{result.stderr}"
    )
    return result.stdout


@pytest.fixture
def sandbox(redis, s3, tmp_path):  # noqa: F811  (pytest fixtures by name)
    """The variables the runbooks name, pointing at real servers on 127.0.0.1."""
    port, _ = s3
    keys = tmp_path / "keys"
    keys.mkdir()
    for key_id in ("k1", "k2"):
        (keys / key_id).write_text(base64.b64encode(os.urandom(32)).decode())
    backups = tmp_path / "backups"
    backups.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "STORAGE_URL": f"redis://:{PASSWORD}@127.0.0.1:{redis}",
        "BACKUP_KEYS_DIR": str(keys),
        "BACKUP_KEY_ID": "k1",
        "BACKUP_DIR": str(backups),
        "SCRATCH_PORT": str(free_port()),
        "S3_BUCKET": "offsite",
        "S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "S3_PREFIX": "moontv/",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    return redis, env


def test_given_the_daily_operations_runbook_then_each_command_runs_and_does_what_it_says(
    sandbox,
):
    port, env = sandbox
    cli(port, "HSET", "u:alice:fav", "src+1", '{"title":"x"}', "src+2", '{"title":"y"}')
    cli(port, "SET", "admin:config", '{"SiteConfig":{"SiteName":"MoonTV"}}')
    before = snapshot(port)
    blocks = run_blocks("daily-operations.md")
    assert len(blocks) >= 5
    outputs = []
    for block in blocks:
        if "restore" in block.text and "rotation" not in block.text:
            cli(port, "FLUSHALL")  # the restore section starts from lost data
        outputs.append(execute(block, env))
    text = "\n".join(outputs)
    assert "restore drill passed: 2 keys" in text
    assert "copied moontv-" in text and "fetched s3://offsite/moontv/moontv-" in text
    rotation = sorted(
        line.split()[1] for line in outputs[-1].splitlines() if line.startswith("moontv-")
    )
    assert rotation == ["k1", "k2"]
    assert snapshot(port) == before


def test_given_the_capacity_runbook_then_the_measurement_runs_and_prints_the_figures(tmp_path):
    if not Path("/usr/bin/docker").exists() or shutil.which("ab") is None:
        skip_or_fail("the capacity measurement needs the Docker engine and ab (tools/test-deps.sh)")
    [block] = run_blocks("capacity-planning.md")
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
    }
    out = execute(block, env, timeout=900)
    assert "/api/favorites:" in out and "req/s at p99" in out
    assert "memory per replica:" in out
