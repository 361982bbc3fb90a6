"""storage-tool.js (init-container wait, backup CronJob) against a real Redis on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import pytest

from tests.conftest import ROOT, skip_or_fail

SCRIPT = ROOT / "components/kubernetes/scripts/storage-tool.js"
PASSWORD = "test-pass-1234"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis(tmp_path):
    if not shutil.which("redis-server") or not shutil.which("node"):
        skip_or_fail("redis-server and node are needed (tools/test-deps.sh installs them)")
    port = _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--requirepass", PASSWORD,
         "--dir", str(tmp_path), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), "-a", PASSWORD, "--no-auth-warning",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


READERS = {"string": ["GET"], "hash": ["HGETALL"], "list": ["LRANGE", "0", "-1"],
           "set": ["SMEMBERS"], "zset": ["ZRANGE", "0", "-1", "WITHSCORES"]}


def snapshot(port: int) -> dict[str, tuple[str, list[str]]]:
    """Every key with its type and value (sets and hashes in sorted order)."""
    out = {}
    for key in cli(port, "KEYS", "*").split("\n"):
        kind = cli(port, "TYPE", key)
        lines = cli(port, READERS[kind][0], key, *READERS[kind][1:]).split("\n")
        out[key] = (kind, sorted(lines) if kind in ("set", "hash") else lines)
    return out


def tool(port: int, *args: str, retention: int = 7, timeout: float = 30):
    env = {"STORAGE_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}",
           "BACKUP_RETENTION": str(retention), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["node", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_given_moontv_data_when_backed_up_and_restored_then_every_key_returns(redis, tmp_path):
    cli(redis, "SET", "admin:config", json.dumps({"SiteConfig": {"SiteName": "中文 MoonTV"}}))
    cli(redis, "HSET", "u:alice:pr", "src+1", '{"title":"x"}', "src+2", '{"title":"y"}')
    cli(redis, "RPUSH", "u:alice:sh", "one", "two", "three")
    cli(redis, "SADD", "sys:users", "alice", "bob")
    cli(redis, "ZADD", "u:alice:skip", "1.5", "a", "3", "b")
    cli(redis, "SET", "cache:tmp", "soon gone", "PX", "600000")
    before = snapshot(redis)
    assert len(before) == 6

    result = tool(redis, "backup", str(tmp_path / "backups"))
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "backups").glob("moontv-*.json"))
    assert len(files) == 1 and "(6 keys)" in result.stdout

    cli(redis, "FLUSHALL")
    result = tool(redis, "restore", str(files[0]))
    assert result.returncode == 0, result.stderr
    after = snapshot(redis)
    assert after == before
    assert 0 < int(cli(redis, "PTTL", "cache:tmp")) <= 600000


def test_given_retention_2_then_only_the_two_newest_backups_stay(redis, tmp_path):
    cli(redis, "SET", "k", "v")
    folder = tmp_path / "b"
    folder.mkdir()
    for stamp in ("20200101T000000Z", "20210101T000000Z", "20220101T000000Z"):
        (folder / f"moontv-{stamp}.json").write_text("{}")
    result = tool(redis, "backup", str(folder), retention=2)
    assert result.returncode == 0, result.stderr
    kept = sorted(p.name for p in folder.glob("moontv-*.json"))
    assert len(kept) == 2 and "moontv-20220101T000000Z.json" in kept


def test_wait_returns_once_storage_answers_and_keeps_trying_before(redis):
    assert tool(redis, "wait").returncode == 0
    closed = _free_port()
    with pytest.raises(subprocess.TimeoutExpired):
        tool(closed, "wait", timeout=5)


def test_wrong_password_fails_clearly(redis, tmp_path):
    env = {"STORAGE_URL": f"redis://:wrong@127.0.0.1:{redis}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(["node", str(SCRIPT), "backup", str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    assert "storage-tool:" in result.stderr and "Traceback" not in result.stderr
