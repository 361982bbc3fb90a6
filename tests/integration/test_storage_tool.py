"""storage-tool.js (init-container wait, encrypted backups, restore, restore drill, off-site copy)
against a real Redis on 127.0.0.1 and a local S3 server (moto).

Every test runs twice: on the host's Debian Node and on the Node line the image ships (the
script runs in the MoonTV image: tests/integration/images.py SHIPPED_NODE)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tools, skip_or_fail
from tests.helpers import free_port, redis_server_command

SCRIPT = ROOT / "components/kubernetes/scripts/storage-tool.js"
PASSWORD = "test-pass-1234"
#: The node binary the script runs on (set per test by the ``node_binary`` fixture).
NODE = "/usr/bin/node"


@pytest.fixture(autouse=True, params=["debian-node", "shipped-node"])
def node_binary(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "shipped-node":
        from tests.integration import images

        try:
            binary = str(images.shipped_node_binary())
        except images.ImageBuildError as exc:
            skip_or_fail(f"Node {images.SHIPPED_NODE} is not available here: {exc}")
    else:
        require_tools(["node"])
        binary = "/usr/bin/node"
    monkeypatch.setattr(sys.modules[__name__], "NODE", binary)
    return binary


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def redis_server(folder: Path, *extra: str, password: str | None = PASSWORD):
    """A throw-away redis-server on 127.0.0.1 (no persistence); yields its port."""
    require_tools(["redis-server", "redis-cli", "node"])
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [*redis_server_command(port, str(folder), password), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis(tmp_path):
    with redis_server(tmp_path / "redis") as port:
        yield port


@pytest.fixture
def keys_dir(tmp_path):
    """A key ring like the mounted key Secret: one file per key id (k1 only, to start)."""
    folder = tmp_path / "keys"
    folder.mkdir()
    (folder / "k1").write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    return folder


def cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), "-a", PASSWORD, "--no-auth-warning", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


READERS = {
    "string": ["GET"],
    "hash": ["HGETALL"],
    "list": ["LRANGE", "0", "-1"],
    "set": ["SMEMBERS"],
    "zset": ["ZRANGE", "0", "-1", "WITHSCORES"],
}


def snapshot(port: int) -> dict[str, tuple[str, list[str]]]:
    """Every key with its type and value (sets and hashes in sorted order)."""
    out = {}
    for key in cli(port, "KEYS", "*").split("\n"):
        kind = cli(port, "TYPE", key)
        lines = cli(port, READERS[kind][0], key, *READERS[kind][1:]).split("\n")
        out[key] = (kind, sorted(lines) if kind in ("set", "hash") else lines)
    return out


def tool(
    port: int,
    *args: str,
    retention: int = 7,
    timeout: float = 30,
    keys: Path | None = None,
    key_id: str = "k1",
    password: str | None = PASSWORD,
    **extra: str,
):
    auth = f":{password}@" if password else ""
    env = {
        "STORAGE_URL": f"redis://{auth}127.0.0.1:{port}",
        "BACKUP_RETENTION": str(retention),
        "PATH": "/usr/bin:/bin",
        **extra,
    }
    if keys is not None:
        env |= {"BACKUP_KEYS_DIR": str(keys), "BACKUP_KEY_ID": key_id}
    return subprocess.run(
        [NODE, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def seed(port: int) -> None:
    """MoonTV-shaped data: admin config, users, a favourite hash, history, skip marks."""
    cli(port, "SET", "admin:config", json.dumps({"SiteConfig": {"SiteName": "中文 MoonTV"}}))
    cli(port, "HSET", "u:alice:fav", "src+1", '{"title":"x"}', "src+2", '{"title":"y"}')
    cli(port, "RPUSH", "u:alice:sh", "one", "two", "three")
    cli(port, "SADD", "sys:users", "alice", "bob")
    cli(port, "ZADD", "u:alice:skip", "1.5", "a", "3", "b")
    cli(port, "SET", "cache:tmp", "soon gone", "PX", "600000")


def test_given_favourites_when_backed_up_wiped_and_restored_then_the_favourites_are_back(
    redis, tmp_path, keys_dir
):
    seed(redis)
    before = snapshot(redis)
    assert len(before) == 6

    result = tool(redis, "backup", str(tmp_path / "backups"), keys=keys_dir)
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "backups").glob("moontv-*.json.enc"))
    assert len(files) == 1 and "(6 keys" in result.stdout and "key k1" in result.stdout

    cli(redis, "FLUSHALL")
    assert cli(redis, "HGETALL", "u:alice:fav") == ""
    result = tool(redis, "restore", str(tmp_path / "backups"), keys=keys_dir)
    assert result.returncode == 0, result.stderr
    assert snapshot(redis) == before
    assert 0 < int(cli(redis, "PTTL", "cache:tmp")) <= 600000


def test_given_a_backup_then_the_file_is_sealed_and_names_only_its_key_id(
    redis, tmp_path, keys_dir
):
    seed(redis)
    assert tool(redis, "backup", str(tmp_path), keys=keys_dir).returncode == 0
    [file] = tmp_path.glob("moontv-*.json.enc")
    text = file.read_text()
    assert "admin:config" not in text and "alice" not in text and "MoonTV" not in text
    doc = json.loads(text)
    assert doc["cipher"] == "aes-256-gcm" and doc["keyId"] == "k1"
    assert (file.stat().st_mode & 0o077) == 0
    assert (keys_dir / "k1").read_text().strip() not in text


def test_given_a_tampered_backup_when_restored_then_it_fails_and_writes_nothing(
    redis, tmp_path, keys_dir
):
    seed(redis)
    assert tool(redis, "backup", str(tmp_path), keys=keys_dir).returncode == 0
    [file] = tmp_path.glob("moontv-*.json.enc")
    doc = json.loads(file.read_text())
    data = bytearray(base64.b64decode(doc["data"]))
    data[5] ^= 1
    doc["data"] = base64.b64encode(bytes(data)).decode()
    file.write_text(json.dumps(doc))
    cli(redis, "FLUSHALL")
    result = tool(redis, "restore", str(file), keys=keys_dir)
    assert result.returncode == 1
    assert "cannot decrypt with key k1" in result.stderr
    assert cli(redis, "DBSIZE") == "0"


def test_given_no_key_when_backing_up_then_it_refuses_with_what_to_set(redis, tmp_path):
    cli(redis, "SET", "k", "v")
    result = tool(redis, "backup", str(tmp_path))
    assert result.returncode == 2
    assert "BACKUP_KEY_ID is not set" in result.stderr
    assert not list(tmp_path.glob("moontv-*"))


def test_given_a_rotated_key_then_old_backups_restore_while_the_old_key_stays_in_the_ring(
    redis, tmp_path, keys_dir
):
    backups = tmp_path / "backups"
    cli(redis, "HSET", "u:alice:fav", "old", "1")
    assert tool(redis, "backup", str(backups), keys=keys_dir).returncode == 0
    [old] = backups.glob("moontv-*.json.enc")
    time.sleep(1.1)  # backup names have one-second stamps
    # Rotation: add k2 to the key Secret, make it the key that encrypts new backups.
    (keys_dir / "k2").write_text(base64.b64encode(os.urandom(32)).decode())
    cli(redis, "HSET", "u:alice:fav", "new", "2")
    result = tool(redis, "backup", str(backups), keys=keys_dir, key_id="k2")
    assert result.returncode == 0 and "key k2" in result.stdout
    listing = tool(redis, "keys", str(backups)).stdout.splitlines()
    assert [line.split()[1] for line in listing] == ["k2", "k1"]

    cli(redis, "FLUSHALL")
    assert tool(redis, "restore", str(old), keys=keys_dir, key_id="k2").returncode == 0
    assert cli(redis, "HKEYS", "u:alice:fav") == "old"
    assert tool(redis, "restore", str(backups), keys=keys_dir, key_id="k2").returncode == 0
    assert sorted(cli(redis, "HKEYS", "u:alice:fav").split()) == ["new", "old"]

    (keys_dir / "k1").unlink()  # retired too early
    result = tool(redis, "restore", str(old), keys=keys_dir, key_id="k2")
    assert result.returncode == 1
    assert "encrypted with key k1, which is not in BACKUP_KEYS_DIR (have: k2)" in result.stderr


def test_given_retention_2_then_only_the_two_newest_backups_stay(redis, tmp_path, keys_dir):
    cli(redis, "SET", "k", "v")
    folder = tmp_path / "b"
    folder.mkdir()
    for stamp in ("20200101T000000Z", "20210101T000000Z", "20220101T000000Z"):
        (folder / f"moontv-{stamp}.json").write_text("{}")
    result = tool(redis, "backup", str(folder), retention=2, keys=keys_dir)
    assert result.returncode == 0, result.stderr
    kept = sorted(p.name for p in folder.glob("moontv-*"))
    assert len(kept) == 2 and "moontv-20220101T000000Z.json" in kept
    assert kept[1].endswith(".json.enc")


def test_given_a_plain_format_1_backup_then_it_still_restores(redis, tmp_path):
    file = tmp_path / "moontv-20240101T000000Z.json"
    file.write_text(
        json.dumps(
            {
                "format": 1,
                "keys": [{"key": "u:bob:fav", "type": "hash", "ttl": None, "value": ["a", "1"]}],
            }
        )
    )
    assert tool(redis, "restore", str(file)).returncode == 0
    assert cli(redis, "HGET", "u:bob:fav", "a") == "1"


def test_given_the_newest_backup_when_drilled_into_an_empty_scratch_then_it_passes(
    redis, tmp_path, keys_dir
):
    seed(redis)
    assert tool(redis, "backup", str(tmp_path / "b"), keys=keys_dir).returncode == 0
    with redis_server(tmp_path / "scratch", password=None) as scratch:
        result = tool(scratch, "drill", str(tmp_path / "b"), keys=keys_dir, password=None)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout.splitlines()[-2])
        assert report["drill"] == "passed" and report["restored"]["keys"] == 6
        assert report["restored"] == report["expected"]
        assert "restore drill passed: 6 keys" in result.stdout
        # a second drill into the now-filled scratch refuses rather than mixing data
        again = tool(scratch, "drill", str(tmp_path / "b"), keys=keys_dir, password=None)
        assert again.returncode == 1 and "only restores into an empty instance" in again.stderr


def test_given_a_scratch_that_loses_data_when_drilled_then_the_counts_differ_and_it_fails(
    redis, tmp_path, keys_dir
):
    blob = "x" * 20000
    for i in range(200):
        cli(redis, "SET", f"u:user{i}:pr", blob)
    assert tool(redis, "backup", str(tmp_path / "b"), keys=keys_dir).returncode == 0
    # A scratch instance too small for the data silently evicts keys while restoring.
    with redis_server(
        tmp_path / "scratch",
        "--maxmemory",
        "2mb",
        "--maxmemory-policy",
        "allkeys-random",
        password=None,
    ) as scratch:
        result = tool(
            scratch, "drill", str(tmp_path / "b"), keys=keys_dir, password=None, timeout=60
        )
    assert result.returncode == 1, result.stdout
    assert "restore drill failed" in result.stderr and "holds 200 keys" in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["drill"] == "failed"


def test_given_no_backup_when_drilled_then_it_fails_clearly(redis, tmp_path, keys_dir):
    result = tool(redis, "drill", str(tmp_path), keys=keys_dir)
    assert result.returncode == 1 and "no backup" in result.stderr


@pytest.fixture
def s3(tmp_path):
    """A local S3 server (moto) on 127.0.0.1 with an empty bucket ``offsite``."""
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        skip_or_fail("moto_server is missing (make setup installs requirements-dev.txt)")
    port = free_port()
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="offsite")
        yield port, client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_given_offsite_settings_then_the_backup_is_copied_and_restores_from_the_copy(
    redis, tmp_path, keys_dir, s3
):
    port, client = s3
    offsite = {
        "S3_BUCKET": "offsite",
        "S3_ENDPOINT": f"http://127.0.0.1:{port}",
        "S3_PREFIX": "moontv/",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    seed(redis)
    before = snapshot(redis)
    result = tool(redis, "backup", str(tmp_path / "pvc"), keys=keys_dir, **offsite)
    assert result.returncode == 0, result.stderr
    [local] = (tmp_path / "pvc").glob("moontv-*.json.enc")
    stored = client.get_object(Bucket="offsite", Key=f"moontv/{local.name}")["Body"].read()
    assert stored == local.read_bytes()

    # The backup volume is lost: fetch the newest off-site copy and restore it.
    result = tool(redis, "fetch", "", str(tmp_path / "fetched"), **offsite)
    assert result.returncode == 0, result.stderr
    cli(redis, "FLUSHALL")
    result = tool(redis, "restore", str(tmp_path / "fetched"), keys=keys_dir)
    assert result.returncode == 0, result.stderr
    assert snapshot(redis) == before


def test_given_an_unreachable_offsite_store_then_the_backup_job_fails(redis, tmp_path, keys_dir):
    cli(redis, "SET", "k", "v")
    offsite = {
        "S3_BUCKET": "offsite",
        "S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    result = tool(redis, "backup", str(tmp_path), keys=keys_dir, **offsite)
    assert result.returncode == 1 and "off-site PUT /offsite/moontv-" in result.stderr
    assert list(tmp_path.glob("moontv-*.json.enc"))  # the local copy is still written


def test_wait_returns_once_storage_answers_and_keeps_trying_before(redis):
    assert tool(redis, "wait").returncode == 0
    closed = free_port()
    with pytest.raises(subprocess.TimeoutExpired):
        tool(closed, "wait", timeout=5)


def test_wrong_password_fails_clearly(redis, tmp_path, keys_dir):
    result = tool(redis, "backup", str(tmp_path), keys=keys_dir, password="wrong")
    assert result.returncode == 1
    assert "storage-tool:" in result.stderr and "Traceback" not in result.stderr


def test_given_a_scratch_that_starts_after_the_drill_then_the_drill_waits_for_it(
    redis, tmp_path, keys_dir
):
    seed(redis)
    assert tool(redis, "backup", str(tmp_path / "b"), keys=keys_dir).returncode == 0
    port = free_port()
    env = {
        "STORAGE_URL": f"redis://127.0.0.1:{port}",
        "PATH": "/usr/bin:/bin",
        "BACKUP_KEYS_DIR": str(keys_dir),
        "BACKUP_KEY_ID": "k1",
    }
    drill = subprocess.Popen(
        [NODE, str(SCRIPT), "drill", str(tmp_path / "b")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert drill.poll() is None  # still waiting for the scratch instance
        scratch = subprocess.Popen(
            redis_server_command(port, str(tmp_path)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            out, err = drill.communicate(timeout=30)
        finally:
            scratch.terminate()
            scratch.wait(timeout=10)
    finally:
        if drill.poll() is None:
            drill.kill()
    assert drill.returncode == 0, err
    assert "waiting for storage" in out and "restore drill passed: 6 keys" in out
