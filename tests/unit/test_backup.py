"""Backup objects: encryption key ring in its own Secret, off-site copy, restore-drill CronJob,
and the settings that drive them."""

from __future__ import annotations

import json

import pytest

from components import settings
from components.errors import ConfigError
from components.monitoring.model import MonitoringSettings
from components.monitoring.rules import RESTORE_DRILL_FAILED, RuleScope, alert_rules
from tests.unit.test_settings import raw, with_

K2 = "k2-material-abcdefghijklmnopqrstuvwxyz0123456789"


def backup(kind: str = "kvrocks", **options) -> dict:
    """Stack overrides: storage ``kind`` with backups on (dev ships with them off)."""
    return {"moontv:storage": {"kind": kind, "backup": {"enabled": True, **options}}}


def _pod(run, name: str) -> dict:
    spec = run.named("CronJob", name).inputs["spec"]
    return spec["jobTemplate"]["spec"]["template"]["spec"]


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_given_backups_then_the_key_ring_is_its_own_secret_mounted_read_only(run):
    r = run("dev", backup())
    ring = r.named("Secret", "moontv-kvrocks-backup-keys").inputs["stringData"]
    assert list(ring) == ["k1"] and len(ring["k1"]) == 44
    pod = _pod(r, "moontv-kvrocks-backup")
    [container] = pod["containers"]
    env = _env(container)
    assert env["BACKUP_KEY_ID"] == "k1" and env["BACKUP_KEYS_DIR"] == "/etc/moontv-backup-keys"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/moontv-backup-keys"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    keys_volume = volumes[mounts["/etc/moontv-backup-keys"]["name"]]
    assert keys_volume["secret"]["secretName"] == "moontv-kvrocks-backup-keys"
    # never beside the data: the backup volume holds no key, the key Secret no backup
    assert mounts["/backup"]["name"] != mounts["/etc/moontv-backup-keys"]["name"]
    assert ring["k1"] not in json.dumps(r.named("CronJob", "moontv-kvrocks-backup").inputs)


def test_given_a_rotated_key_then_new_backups_use_it_and_the_old_one_stays_in_the_ring(run):
    r = run("dev", backup(keyId="k2"), secrets={"moontv:backupKeys": json.dumps({"k2": K2})})
    ring = r.named("Secret", "moontv-kvrocks-backup-keys").inputs["stringData"]
    assert set(ring) == {"k1", "k2"} and ring["k2"] == K2
    assert _env(_pod(r, "moontv-kvrocks-backup")["containers"][0])["BACKUP_KEY_ID"] == "k2"


def test_given_offsite_settings_then_the_backup_job_copies_with_a_secret_key(run):
    offsite = {
        "bucket": "moontv-backups",
        "endpoint": "https://s3.example.com",
        "accessKeyId": "AKIDEXAMPLE",
    }
    r = run(
        "dev",
        backup(offsite=offsite),
        secrets={"moontv:backupOffsiteSecretKey": "offsite-Secret-Key-123"},
    )
    spec = _pod(r, "moontv-kvrocks-backup")
    env = _env(spec["containers"][0])
    assert env["S3_BUCKET"] == "moontv-backups" and env["S3_ENDPOINT"] == "https://s3.example.com"
    assert env["S3_PREFIX"] == "moontv/" and env["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"
    # the secret key is a file of a mounted Secret, never an environment variable
    assert "AWS_SECRET_ACCESS_KEY" not in env
    directory, key = env["AWS_SECRET_ACCESS_KEY_FILE"].rsplit("/", 1)
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == directory)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])["secret"]
    assert volume["items"] == [{"key": key, "path": key}]
    secret = [s for s in r.kind("Secret") if s.metadata_name == volume["secretName"]]
    assert secret[0].inputs["stringData"][key] == "offsite-Secret-Key-123"


def test_given_backups_then_a_restore_drill_restores_into_a_loopback_scratch_instance(run):
    r = run("dev", backup("redis", drill={"schedule": "0 5 * * 1"}))
    job = r.named("CronJob", "moontv-redis-restore-drill").inputs["spec"]
    assert job["schedule"] == "0 5 * * 1"
    pod = job["jobTemplate"]["spec"]["template"]["spec"]
    [scratch] = pod["initContainers"]
    assert scratch["restartPolicy"] == "Always" and scratch["command"][0] == "redis-server"
    assert scratch["command"][1:5] == ["--bind", "127.0.0.1", "--port", "6390"]
    [drill] = pod["containers"]
    assert drill["command"][-2:] == ["drill", "/backup"]
    env = _env(drill)
    assert env["STORAGE_URL"] == "redis://127.0.0.1:6390" and env["BACKUP_KEY_ID"] == "k1"
    mount = {m["mountPath"]: m for m in drill["volumeMounts"]}["/backup"]
    assert mount["readOnly"] is True
    claim = {v["name"]: v for v in pod["volumes"]}[mount["name"]]["persistentVolumeClaim"]
    assert claim == {"claimName": "moontv-redis-backup", "readOnly": True}


def test_given_the_drill_is_disabled_or_backups_off_then_no_drill_job(run):
    r = run("dev", backup(drill={"enabled": False}))
    assert r.named("CronJob", "moontv-kvrocks-backup")
    assert not [c for c in r.kind("CronJob") if "drill" in (c.metadata_name or "")]
    r = run("dev", {"moontv:storage": {"backup": {"enabled": False}}})
    assert not r.kind("CronJob")


def test_given_monitoring_then_a_failed_drill_raises_an_alert(run):
    r = run("staging")
    rules = [
        rule
        for g in r.named("PrometheusRule", "moontv-alerts").inputs["spec"]["groups"]
        for rule in g["rules"]
    ]
    drill = [rule for rule in rules if rule["alert"] == RESTORE_DRILL_FAILED]
    assert len(drill) == 1
    assert 'job_name=~"moontv-kvrocks-restore-drill-.*"' in drill[0]["expr"]
    assert drill[0]["labels"]["severity"] == "critical"


def test_given_no_drill_cronjob_then_no_drill_alert():
    spec = alert_rules([], MonitoringSettings(), RuleScope(namespace="moontv"))
    names = {rule["alert"] for g in spec["groups"] for rule in g["rules"]}
    assert RESTORE_DRILL_FAILED not in names


@pytest.mark.parametrize(
    ("path", "value", "key", "hint"),
    [
        ("storage.backup.keyId", "k9", "moontv:storage.backup.keyId", "backupKeys.k9"),
        ("storage.backup.keyId", "bad id!", "moontv:storage.backup.keyId", "a key id"),
        ("storage.backup.offsite", {"bucket": "b-1", "endpoint": "https://s3.example.com",
                                    "accessKeyId": "A"}, "moontv:backupOffsiteSecretKey",
         "required"),
        ("storage.backup.offsite.endpoint", "s3.example.com",
         "moontv:storage.backup.offsite.endpoint", "an http(s) URL"),
        ("storage.backup.drill.schedule", "weekly", "moontv:storage.backup.drill.schedule",
         "cron expression"),
        ("backupKeys", {"k2": "short"}, "moontv:backupKeys.k2", "32 characters"),
    ],
)
def test_given_bad_backup_settings_then_the_key_and_what_is_accepted_are_named(
    path, value, key, hint
):
    with pytest.raises(ConfigError) as exc:
        settings.validate(with_(with_(raw(), "storage.backup.enabled", True), path, value))
    found = [p for p in exc.value.problems if p.startswith(key)]
    assert found and hint in found[0], exc.value.problems
    assert "short" not in " ".join(exc.value.problems) or path != "backupKeys"


def test_given_backups_then_a_suspended_restore_cronjob_loads_the_newest_on_demand(run):
    r = run("dev", backup())
    job = r.named("CronJob", "moontv-kvrocks-restore").inputs["spec"]
    assert job["suspend"] is True
    [container] = job["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][-2:] == ["restore", "/backup"]
    env = _env(container)
    assert env["BACKUP_KEY_ID"] == "k1" and "S3_BUCKET" not in env
    assert {"name": "backup", "mountPath": "/backup", "readOnly": True} in container["volumeMounts"]
    assert r.named("CronJob", "moontv-kvrocks-backup").inputs["spec"]["suspend"] is False


def test_given_kvrocks_then_the_drill_scratch_reads_a_loopback_config_file(run):
    r = run("dev", backup("kvrocks"))
    pod = _pod(r, "moontv-kvrocks-restore-drill")
    [scratch] = pod["initContainers"]
    assert scratch["command"] == ["kvrocks", "-c", "/etc/scratch/kvrocks.conf"]
    volume = {v["name"]: v for v in pod["volumes"]}["scratch-config"]["configMap"]["name"]
    [conf] = [c for c in r.kind("ConfigMap") if "kvrocks.conf" in c.inputs["data"]
              and "port 6390" in c.inputs["data"]["kvrocks.conf"]]
    assert "bind 127.0.0.1\n" in conf.inputs["data"]["kvrocks.conf"]
    assert volume
