"""Secrets mounted as files, read by the programs that use them: storage-tool.js (STORAGE_URL_FILE)
and the Redis exporter (REDIS_PASSWORD_FILE, in the shape the program renders), against a real
Redis on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require_tools
from tests.helpers import free_port
from tests.integration.test_storage_tool import PASSWORD, SCRIPT, redis_server
from tests.program import run_stack

pytestmark = pytest.mark.integration


def test_storage_tool_reads_the_storage_url_from_the_mounted_file(tmp_path):
    with redis_server(tmp_path / "redis") as port:
        url_file = tmp_path / "url"
        url_file.write_text(f"redis://:{PASSWORD}@127.0.0.1:{port}\n")
        env = {k: v for k, v in os.environ.items() if k != "STORAGE_URL"}
        result = subprocess.run(["node", str(SCRIPT), "wait"], capture_output=True, text=True,
                                env={**env, "STORAGE_URL_FILE": str(url_file)}, timeout=30,
                                check=False)
        assert result.returncode == 0, result.stderr
        assert f"127.0.0.1:{port} is ready" in result.stdout


def redis_up(password_file: Path | None, port: int) -> float:
    """``redis_up`` of a Redis exporter scraping 127.0.0.1:``port`` (password from the file)."""
    listen = free_port()
    env = {"PATH": os.environ["PATH"], "REDIS_ADDR": f"redis://localhost:{port}"}
    if password_file is not None:
        env["REDIS_PASSWORD_FILE"] = str(password_file)
    proc = subprocess.Popen(
        ["prometheus-redis-exporter", f"--web.listen-address=127.0.0.1:{listen}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{listen}/metrics", timeout=5) as r:
                    metrics = r.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        (line,) = [m for m in metrics.splitlines() if m.startswith("redis_up ")]
        return float(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_exporter_authenticates_with_the_password_file_the_program_renders(tmp_path):
    require_tools(["redis-server", "prometheus-redis-exporter"])
    run = run_stack("dev", {"moontv:storage": {"kind": "redis"}})
    sts = run.named("StatefulSet", "moontv-redis").inputs["spec"]["template"]["spec"]
    exporter = next(c for c in sts["containers"] if c["name"] == "exporter")
    env = {e["name"]: e.get("value") for e in exporter["env"]}
    assert "REDIS_PASSWORD" not in env  # no secret in the environment
    (secret,) = [s.inputs["stringData"] for s in run.kind("Secret")
                 if "redis.conf" in s.inputs.get("stringData", {})]
    name = Path(env["REDIS_PASSWORD_FILE"]).name
    passwords = json.loads(secret[name])
    assert passwords == {env["REDIS_ADDR"]: secret["password"]}

    with redis_server(tmp_path / "redis", password=secret["password"]) as port:
        # the same file for this Redis's address
        password_file = tmp_path / name
        password_file.write_text(json.dumps({f"redis://localhost:{port}": secret["password"]}))
        assert redis_up(password_file, port) == 1
        assert redis_up(None, port) == 0  # without it the exporter cannot log in
