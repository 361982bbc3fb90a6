"""MoonTV's database on Kubernetes: Kvrocks or Redis StatefulSet, or an external URL.

All MoonTV state lives here (admin config, users, favourites), so the StatefulSet keeps it on a
PVC with persistence on, only the app and the backup job may reach it, and a CronJob writes
timestamped logical snapshots to a backup PVC, keeping the newest ``retention`` files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import app_facts, naming
from components.kubernetes import pod
from components.passwords import generated_password
from components.settings import GENERATED_BACKUP_KEY, StorageSettings

SCRIPT = Path(__file__).parent / "scripts" / "storage-tool.js"
SCRIPT_DIR = "/opt/moontv"
STORAGE_UID = 999  # the `redis` user of the Redis image; Kvrocks runs as any uid
EXPORTER_PORT = 9121
KEYS_DIR = "/etc/moontv-backup-keys"
SCRATCH_PORT = 6390  # the restore drill's scratch instance, on the pod's loopback only
#: The Pulumi Kubernetes provider's annotation: do not wait for the resource to become ready.
SKIP_AWAIT = "pulumi.com/skipAwait"
#: The exporter's password file (``REDIS_PASSWORD_FILE``: a JSON map address -> password).
EXPORTER_DIR, EXPORTER_PASSWORDS = "/etc/redis-exporter", "passwords.json"
#: The backup Job reads the storage URL and the off-site secret key from these files.
URL_DIR, OFFSITE_DIR = "/etc/moontv-storage", "/etc/moontv-offsite"
#: A scheduled backup or drill that could not start within this many seconds is skipped until
#: its next run (the stale-backup alert tells).
STARTING_DEADLINE_SECONDS = 3600


@dataclass(frozen=True)
class StorageArgs:
    namespace: pulumi.Input[str]
    instance: str
    storage: StorageSettings
    #: Image with Node that runs the backup script (the MoonTV image itself).
    tool_image: pulumi.Input[str]
    #: ``moontv:image.pullSecret``: the tool image is the MoonTV image.
    tool_pull_secret: str | None = None
    external_url: pulumi.Output[str] | None = None
    #: Namespace whose Prometheus scrapes the storage exporter (None: no exporter traffic).
    metrics_namespace: str | None = None
    #: Backup key ring additions (``moontv:backupKeys``): key id -> secret key material.
    backup_keys: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    #: Secret access key of the off-site bucket (with ``storage.backup.offsite``).
    offsite_secret_key: pulumi.Output[str] | None = None


def _server_config(kind: str, password: pulumi.Output[str]) -> pulumi.Output[str]:
    """The server's config file; it carries the password, so it lives in a Secret."""
    port, data_dir = app_facts.STORAGE_PORTS[kind], app_facts.STORAGE_DATA_DIRS[kind]
    if kind == "kvrocks":
        lines = ["bind 0.0.0.0", f"port {port}", f"dir {data_dir}",
                 "pidfile /tmp/kvrocks.pid", "daemonize no"]
    else:
        lines = ["bind 0.0.0.0", f"port {port}", f"dir {data_dir}", "appendonly yes",
                 "appendfsync everysec", "save 3600 1 300 100 60 10000"]
    return password.apply(lambda pw: "\n".join([*lines, f"requirepass {pw}"]) + "\n")


class Storage(pulumi.ComponentResource):
    """The storage backend; ``url`` is the secret connection URL the app uses."""

    url: pulumi.Output[str]
    host: str | None
    port: int | None
    #: Labels of the storage Service (it has the exporter's `metrics` port), or None.
    selector: dict[str, str] | None
    #: Name of the backup CronJob, or None.
    backup_cronjob: str | None
    #: Name of the restore-drill CronJob, or None.
    drill_cronjob: str | None

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("moontv:kubernetes:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.storage
        self.host = self.port = None
        self.selector = None
        self.backup_cronjob = self.drill_cronjob = None
        if s.is_hosted:  # external or Upstash: nothing of ours to run, store or back up
            assert args.external_url is not None  # settings guarantees it
            self.url = pulumi.Output.secret(args.external_url)
            self.register_outputs({"url": self.url})
            return

        kind = s.kind
        port = app_facts.STORAGE_PORTS[kind]
        service_name = naming.resource_name(naming.APP, kind)
        labels = naming.labels(args.instance, "storage", version=None)
        selector = naming.selector_labels(args.instance, "storage")
        password = generated_password(f"{name}-password", length=32, parent=self)
        self.host, self.port = service_name, port
        self.url = pulumi.Output.secret(
            password.apply(lambda pw: f"redis://:{pw}@{service_name}:{port}")
        )

        config = k8s.core.v1.Secret(
            f"{name}-config",
            metadata={"namespace": args.namespace, "labels": labels},
            string_data={f"{kind}.conf": _server_config(kind, password), "password": password,
                         # the exporter reads the password from a file: {"<its address>": pw}
                         EXPORTER_PASSWORDS: password.apply(
                             lambda pw: json.dumps({f"redis://localhost:{port}": pw}))},
            opts=child,
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": service_name, "namespace": args.namespace, "labels": labels},
            spec={
                "clusterIP": "None",
                "selector": selector,
                "ports": [{"name": kind, "port": port, "targetPort": kind},
                          {"name": "metrics", "port": EXPORTER_PORT, "targetPort": "metrics"}],
            },
            opts=child,
        )
        data_dir = app_facts.STORAGE_DATA_DIRS[kind]
        binary = "kvrocks" if kind == "kvrocks" else "redis-server"
        conf_flag = ["-c"] if kind == "kvrocks" else []
        image = s.kvrocks_image if kind == "kvrocks" else s.redis_image
        self.stateful_set = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata={"name": service_name, "namespace": args.namespace, "labels": labels,
                      "annotations": pod.skip_checks(
                          "CKV_K8S_40", "container-security-context-user-group-id",
                          "pod-probes-identical", *pod.image_checks(image, s.exporter_image))},
            spec={
                "serviceName": service_name,
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        **pod.pod_defaults(uid=STORAGE_UID),
                        "containers": [{
                            "name": kind,
                            "image": image,
                            "command": [binary, *conf_flag, f"/etc/{kind}/{kind}.conf"],
                            "ports": [{"name": kind, "containerPort": port}],
                            "readinessProbe": {"tcpSocket": {"port": kind}, "periodSeconds": 5},
                            "livenessProbe": {"tcpSocket": {"port": kind}, "periodSeconds": 10,
                                              "initialDelaySeconds": 10},
                            # an emptyDir of data (not persistent) counts as ephemeral storage
                            "resources": pod.with_ephemeral({
                                "requests": {"cpu": "50m", "memory": "128Mi"},
                                "limits": {"cpu": "500m", "memory": "512Mi"}},
                                **({} if s.persistent else {"limit": s.size})),
                            "securityContext": pod.container_security(),
                            "volumeMounts": [
                                {"name": "data", "mountPath": data_dir},
                                {"name": "config", "mountPath": f"/etc/{kind}", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }, {
                            "name": "exporter",
                            "image": s.exporter_image,
                            "env": [
                                {"name": "REDIS_ADDR", "value": f"redis://localhost:{port}"},
                                {"name": "REDIS_PASSWORD_FILE",
                                 "value": f"{EXPORTER_DIR}/{EXPORTER_PASSWORDS}"},
                            ],
                            "ports": [{"name": "metrics", "containerPort": EXPORTER_PORT}],
                            "readinessProbe": {"tcpSocket": {"port": "metrics"}},
                            "livenessProbe": {"tcpSocket": {"port": "metrics"},
                                              "periodSeconds": 20},
                            "resources": pod.with_ephemeral({
                                "requests": {"cpu": "10m", "memory": "32Mi"},
                                "limits": {"cpu": "100m", "memory": "64Mi"}}),
                            "securityContext": pod.container_security(),
                            "volumeMounts": [{"name": "exporter", "mountPath": EXPORTER_DIR,
                                              "readOnly": True}],
                        }],
                        "volumes": [
                            {"name": "config", "secret": {
                                "secretName": config.metadata.name, "defaultMode": 0o440,
                                "items": [{"key": f"{kind}.conf", "path": f"{kind}.conf"}]}},
                            {"name": "exporter", "secret": {
                                "secretName": config.metadata.name, "defaultMode": 0o440,
                                "items": [{"key": EXPORTER_PASSWORDS,
                                           "path": EXPORTER_PASSWORDS}]}},
                            pod.empty_dir("tmp", "16Mi"),
                            *([] if s.persistent
                              else [{"name": "data", "emptyDir": {"sizeLimit": s.size}}]),
                        ],
                    },
                },
                "volumeClaimTemplates": (
                    [_claim("data", s.size, s.storage_class)] if s.persistent else []
                ),
            },
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-ingress",
            metadata={"name": f"{service_name}-from-app", "namespace": args.namespace,
                      "labels": labels},
            spec={
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [
                        {"podSelector": {"matchLabels": {
                            "app.kubernetes.io/name": naming.APP,
                            "app.kubernetes.io/component": component}}}
                        for component in ("app", "backup")
                    ],
                    "ports": [{"protocol": "TCP", "port": port}],
                }, *([{
                    "from": [{"namespaceSelector": {"matchLabels": {
                        "kubernetes.io/metadata.name": args.metrics_namespace}}}],
                    "ports": [{"protocol": "TCP", "port": EXPORTER_PORT}],
                }] if args.metrics_namespace else [])],
            },
            opts=child,
        )
        self.selector = selector
        if s.backup.enabled:
            self._backup(name, args, service_name, child)
            self.backup_cronjob = f"{service_name}-backup"
            if s.backup.drill.enabled:
                self.drill_cronjob = f"{service_name}-restore-drill"
        self.register_outputs({"url": self.url, "host": self.host, "port": self.port,
                               "backupCronJob": self.backup_cronjob,
                               "restoreDrillCronJob": self.drill_cronjob})

    def _backup(self, name: str, args: StorageArgs, service_name: str,
                child: pulumi.ResourceOptions) -> None:
        s = args.storage
        labels = naming.labels(args.instance, "backup")
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-backup",
            # Only the CronJob mounts it: with a WaitForFirstConsumer class it binds at the
            # first backup, so `up` must not wait for it to be Bound.
            metadata={"name": f"{service_name}-backup", "namespace": args.namespace,
                      "labels": labels, "annotations": {SKIP_AWAIT: "true"}},
            spec=_claim("backup", s.backup.size, s.storage_class)["spec"],
            opts=child,
        )
        url_secret = k8s.core.v1.Secret(
            f"{name}-url",
            metadata={"name": f"{service_name}-backup-url", "namespace": args.namespace,
                      "labels": labels},
            string_data={"STORAGE_URL": self.url},
            opts=child,
        )
        script = tool_config_map(f"{name}-backup-script", args.namespace, labels, child)
        # The key ring lives in its own Secret, mounted read-only; never on the backup volume.
        ring = {GENERATED_BACKUP_KEY: generated_password(f"{name}-backup-key", length=44,
                                                         parent=self), **args.backup_keys}
        keys = k8s.core.v1.Secret(
            f"{name}-backup-keys",
            metadata={"name": f"{service_name}-backup-keys", "namespace": args.namespace,
                      "labels": labels},
            string_data=ring,
            opts=child,
        )
        env: list[dict[str, Any]] = [
            {"name": "BACKUP_KEY_ID", "value": s.backup.key_id},
            {"name": "BACKUP_KEYS_DIR", "value": KEYS_DIR},
        ]
        offsite = s.backup.offsite
        # the off-site secret key as a file, like the storage URL (storage-tool reads NAME_FILE)
        offsite_mounts: list[dict[str, Any]] = []
        offsite_volumes: list[dict[str, Any]] = []
        if offsite is not None:
            assert args.offsite_secret_key is not None  # settings guarantees it
            offsite_secret = k8s.core.v1.Secret(
                f"{name}-offsite",
                metadata={"name": f"{service_name}-backup-offsite",
                          "namespace": args.namespace, "labels": labels},
                string_data={"AWS_SECRET_ACCESS_KEY": args.offsite_secret_key},
                opts=child,
            )
            env += [
                {"name": "S3_BUCKET", "value": offsite.bucket},
                {"name": "S3_ENDPOINT", "value": offsite.endpoint},
                {"name": "S3_REGION", "value": offsite.region},
                {"name": "S3_PREFIX", "value": offsite.prefix},
                {"name": "AWS_ACCESS_KEY_ID", "value": offsite.access_key_id},
                {"name": "AWS_SECRET_ACCESS_KEY_FILE",
                 "value": f"{OFFSITE_DIR}/AWS_SECRET_ACCESS_KEY"},
            ]
            offsite_mounts.append({"name": "offsite", "mountPath": OFFSITE_DIR, "readOnly": True})
            offsite_volumes.append(_secret_file("offsite", offsite_secret.metadata.name,
                                                "AWS_SECRET_ACCESS_KEY"))
        tool_mounts = [
            {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True},
            {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True},
        ]
        tool_volumes = [
            {"name": "script", "configMap": {"name": script.metadata.name}},
            {"name": "keys", "secret": {"secretName": keys.metadata.name, "defaultMode": 0o440}},
        ]
        # backup: on the schedule. restore: suspended, run on demand (docs/runbooks):
        # `kubectl create job --from=cronjob/<service>-restore …` loads the newest backup.
        modes = {
            "backup": (False, [{"name": "BACKUP_RETENTION", "value": str(s.backup.retention)},
                               *env], offsite_mounts, offsite_volumes),
            "restore": (True, env[:2], [], []),
        }
        for mode, (suspend, mode_env, more_mounts, more_volumes) in modes.items():
            self._tool_cronjob(
                f"{name}-{mode}-job" if mode == "backup" else f"{name}-restore",
                f"{service_name}-{mode}", mode, suspend,
                (args, labels, url_secret.metadata.name, claim.metadata.name),
                (mode_env, tool_mounts + more_mounts, tool_volumes + more_volumes), child)
        if s.backup.drill.enabled:
            self._drill(name, args, service_name, claim.metadata.name,
                        (env[:2], tool_mounts, tool_volumes), child)

    def _tool_cronjob(self, resource: str, cron_name: str, mode: str, suspend: bool,
                      target: tuple[StorageArgs, dict[str, str], Any, Any],
                      tool: tuple[list[dict[str, Any]], list[dict[str, Any]],
                                  list[dict[str, Any]]],
                      child: pulumi.ResourceOptions) -> None:
        """A CronJob running ``storage-tool.js <mode> /backup`` against the storage."""
        args, labels, url_secret, claim = target
        env, mounts, volumes = tool
        s = args.storage
        k8s.batch.v1.CronJob(
            resource,
            metadata={"name": cron_name, "namespace": args.namespace, "labels": labels,
                      "annotations": pod.skip_checks(
                          "CKV_K8S_40", "container-security-context-user-group-id",
                          *pod.image_checks(args.tool_image))},
            spec={
                "schedule": s.backup.schedule,
                "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
                "suspend": suspend,
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"spec": {
                    "backoffLimit": 2,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            **pod.pod_defaults(
                                uid=app_facts.UID, pull_secret=args.tool_pull_secret),
                            "restartPolicy": "OnFailure",
                            "containers": [{
                                "name": mode,
                                "image": args.tool_image,
                                "command": ["node", f"{SCRIPT_DIR}/{SCRIPT.name}", mode,
                                            "/backup"],
                                "env": [
                                    {"name": "STORAGE_URL_FILE", "value": f"{URL_DIR}/STORAGE_URL"},
                                    *env,
                                ],
                                "resources": pod.with_ephemeral({
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"cpu": "500m", "memory": "256Mi"}}),
                                "securityContext": pod.container_security(),
                                "volumeMounts": [
                                    {"name": "backup", "mountPath": "/backup",
                                     "readOnly": mode == "restore"},
                                    {"name": "url", "mountPath": URL_DIR, "readOnly": True},
                                    *mounts,
                                ],
                            }],
                            "volumes": [
                                {"name": "backup", "persistentVolumeClaim": {
                                    "claimName": claim}},
                                _secret_file("url", url_secret, "STORAGE_URL"),
                                *volumes,
                            ],
                        },
                    },
                }},
            },
            opts=child,
        )

    def _drill(self, name: str, args: StorageArgs, service_name: str,
               claim: pulumi.Input[str],
               tool: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]],
               child: pulumi.ResourceOptions) -> None:
        """A CronJob restoring the newest backup into a scratch instance of the same server in
        the Job's own pod (a native sidecar on loopback, empty each run), then comparing key
        count and content hash with the backup. A mismatch fails the Job, which raises
        MoonTVRestoreDrillFailed."""
        s = args.storage
        env, mounts, volumes = tool
        labels = naming.labels(args.instance, "restore-drill")
        kind = s.kind
        config_mounts: list[dict[str, Any]] = []
        config_volumes: list[dict[str, Any]] = []
        if kind == "kvrocks":  # Kvrocks reads its settings from a file only
            conf = k8s.core.v1.ConfigMap(
                f"{name}-scratch-config",
                metadata={"namespace": args.namespace, "labels": labels},
                data={"kvrocks.conf": f"bind 127.0.0.1\nport {SCRATCH_PORT}\ndir /scratch\n"
                                      "pidfile /tmp/kvrocks.pid\ndaemonize no\n"},
                opts=child,
            )
            scratch = ["kvrocks", "-c", "/etc/scratch/kvrocks.conf"]
            config_mounts = [{"name": "scratch-config", "mountPath": "/etc/scratch",
                              "readOnly": True}]
            config_volumes = [{"name": "scratch-config",
                               "configMap": {"name": conf.metadata.name}}]
        else:
            scratch = ["redis-server", "--bind", "127.0.0.1", "--port", str(SCRATCH_PORT),
                       "--dir", "/scratch", "--save", "", "--appendonly", "no"]
        image = s.kvrocks_image if kind == "kvrocks" else s.redis_image
        k8s.batch.v1.CronJob(
            f"{name}-restore-drill",
            metadata={"name": f"{service_name}-restore-drill", "namespace": args.namespace,
                      "labels": labels, "annotations": pod.skip_checks(
                          "CKV_K8S_40", "container-security-context-user-group-id",
                          *pod.image_checks(image, args.tool_image))},
            spec={
                "schedule": s.backup.drill.schedule,
                "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {"spec": {
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": 3600,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            **pod.pod_defaults(
                                uid=app_facts.UID, pull_secret=args.tool_pull_secret),
                            "restartPolicy": "Never",
                            "initContainers": [{
                                "name": "scratch",
                                "image": image,
                                "command": scratch,
                                # native sidecar: ends with the Job. No probe: it listens on the
                                # pod's loopback only, which the kubelet cannot dial; the drill
                                # waits for its PING.
                                "restartPolicy": "Always",
                                # the scratch volume holds a whole restored database
                                "resources": pod.with_ephemeral({
                                    "requests": {"cpu": "50m", "memory": "128Mi"},
                                    "limits": {"cpu": "500m", "memory": "512Mi"}},
                                    limit=s.size),
                                "securityContext": pod.container_security(),
                                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                                                 {"name": "tmp", "mountPath": "/tmp"},
                                                 *config_mounts],
                            }],
                            "containers": [{
                                "name": "drill",
                                "image": args.tool_image,
                                "command": ["node", f"{SCRIPT_DIR}/{SCRIPT.name}", "drill",
                                            "/backup"],
                                "env": [{"name": "STORAGE_URL",
                                         "value": f"redis://127.0.0.1:{SCRATCH_PORT}"}, *env],
                                "resources": pod.with_ephemeral({
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"cpu": "500m", "memory": "256Mi"}}),
                                "securityContext": pod.container_security(),
                                "volumeMounts": [
                                    {"name": "backup", "mountPath": "/backup", "readOnly": True},
                                    *mounts,
                                ],
                            }],
                            "volumes": [
                                {"name": "backup", "persistentVolumeClaim": {
                                    "claimName": claim, "readOnly": True}},
                                pod.empty_dir("scratch", s.size),
                                pod.empty_dir("tmp", "16Mi"),
                                *config_volumes,
                                *volumes,
                            ],
                        },
                    },
                }},
            },
            opts=child,
        )


def tool_config_map(name: str, namespace: pulumi.Input[str], labels: dict[str, str],
                    opts: pulumi.ResourceOptions) -> k8s.core.v1.ConfigMap:
    """ConfigMap carrying storage-tool.js (used by the wait init container and the backup job)."""
    return k8s.core.v1.ConfigMap(
        name,
        metadata={"namespace": namespace, "labels": labels},
        data={SCRIPT.name: SCRIPT.read_text()},
        opts=opts,
    )


def _secret_file(volume: str, secret: pulumi.Input[str], key: str) -> dict[str, Any]:
    """A volume with one key of a Secret as a file of the same name, readable by the pod's group."""
    return {"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440,
                                       "items": [{"key": key, "path": key}]}}


def _claim(name: str, size: str, storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}
