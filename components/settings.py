"""Typed, validated stack configuration: the only module that reads ``pulumi.Config``.

Every ``moontv:*`` key of the stack is parsed into frozen pydantic models in one pass, so a bad
stack file reports *every* problem at once, each naming the key path, the value and what is
accepted. Secret values (owner password, external storage URL) are read with
``Config.get_secret`` and stay ``pulumi.Output`` secrets; when the owner password is absent it is
generated (``components/passwords.py``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pulumi
import pydantic
from pydantic import AfterValidator, Field, model_validator

from components import release as release_model
from components.errors import ConfigError, ConfigModel, config_error, format_errors, int_range
from components.image import ImageBuildSettings
from components.monitoring.model import MonitoringSettings, missing_receiver_secrets
from components.passwords import generated_password

NAMESPACE = "moontv"
PREFIX = f"{NAMESPACE}:"
#: Keys that must be set with ``pulumi config set --secret``; never echoed in errors.
SECRET_KEYS = frozenset({"ownerPassword", "storageUrl", "registryPassword", "alertReceiverUrls",
                         "backupKeys", "backupOffsiteSecretKey"})

_QUANTITY_CPU = r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$"
_QUANTITY_MEM = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DNS_NAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_CRON = r"^(@(hourly|daily|weekly|monthly)|(\S+\s+){4}\S+)$"
#: The config key that holds each track's version (for messages).
VERSION_KEYS = {"stable": "image.digest", "canary": "release.canary.version",
                "blue": "release.blueGreen.blue", "green": "release.blueGreen.green"}

CpuQuantity = Annotated[str, Field(pattern=_QUANTITY_CPU)]
MemQuantity = Annotated[str, Field(pattern=_QUANTITY_MEM)]
DnsLabel = Annotated[str, Field(pattern=_DNS_LABEL, max_length=63)]


class ImageSettings(ConfigModel):
    repository: str = "ghcr.io/moontechlab/lunatv"
    tag: release_model.Tag
    digest: release_model.Digest | None = None
    pull_policy: Literal["IfNotPresent", "Always"] = "IfNotPresent"
    #: Build the image from source (components/image.py); the built digest runs the stable track.
    build: ImageBuildSettings | None = None

    @property
    def version(self) -> str:
        """The stable version string: ``tag`` or ``tag@sha256:…``."""
        return release_model.join_version(self.tag, self.digest)


class SiteSettings(ConfigModel):
    """Site settings; they only *seed* the admin config on first start (the database wins)."""

    name: str = "MoonTV"
    announcement: str = ""
    search_max_page: Annotated[int, int_range(1, 100)] = 5
    douban_proxy_type: Literal[
        "direct", "cors-proxy-zwei", "cmliussss-cdn-tencent", "cmliussss-cdn-ali", "custom"
    ] = "cmliussss-cdn-tencent"
    douban_proxy: str = ""
    douban_image_proxy_type: Literal[
        "direct", "server", "img3", "cmliussss-cdn-tencent", "cmliussss-cdn-ali", "custom"
    ] = "cmliussss-cdn-tencent"
    douban_image_proxy: str = ""
    disable_yellow_filter: bool = False
    fluid_search: bool = True

    def env(self) -> dict[str, str]:
        """The app's environment variables for these settings."""
        return {
            "NEXT_PUBLIC_SITE_NAME": self.name,
            "ANNOUNCEMENT": self.announcement,
            "NEXT_PUBLIC_SEARCH_MAX_PAGE": str(self.search_max_page),
            "NEXT_PUBLIC_DOUBAN_PROXY_TYPE": self.douban_proxy_type,
            "NEXT_PUBLIC_DOUBAN_PROXY": self.douban_proxy,
            "NEXT_PUBLIC_DOUBAN_IMAGE_PROXY_TYPE": self.douban_image_proxy_type,
            "NEXT_PUBLIC_DOUBAN_IMAGE_PROXY": self.douban_image_proxy,
            "NEXT_PUBLIC_DISABLE_YELLOW_FILTER": str(self.disable_yellow_filter).lower(),
            "NEXT_PUBLIC_FLUID_SEARCH": str(self.fluid_search).lower(),
        }


class OwnerSettings(ConfigModel):
    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "admin"


class ComputeQuantities(ConfigModel):
    cpu: CpuQuantity
    memory: MemQuantity


class ResourceSettings(ConfigModel):
    requests: ComputeQuantities = ComputeQuantities(cpu="100m", memory="256Mi")
    limits: ComputeQuantities = ComputeQuantities(cpu="1", memory="768Mi")


class AutoscalingSettings(ConfigModel):
    enabled: bool = False
    min_replicas: Annotated[int, int_range(1, 100)] = 2
    max_replicas: Annotated[int, int_range(1, 100)] = 5
    target_cpu: Annotated[int, int_range(1, 100)] = 70
    target_memory: Annotated[int, int_range(1, 100)] | None = None

    @model_validator(mode="after")
    def _min_le_max(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) must not exceed maxReplicas "
                f"({self.max_replicas})"
            )
        return self


#: Backup key ids: a Secret key name (letters, digits, `.`, `_`, `-`).
_KEY_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
#: The backup key generated for every stack (kept in the stack state); more come from backupKeys.
GENERATED_BACKUP_KEY = "k1"


class OffsiteSettings(ConfigModel):
    """Optional off-site copy of every backup to an S3-compatible bucket."""

    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    endpoint: Annotated[str, Field(pattern=r"^https?://[^\s/]+$")]
    access_key_id: Annotated[str, Field(min_length=1)]
    region: str = "us-east-1"
    prefix: str = "moontv/"


class DrillSettings(ConfigModel):
    """Scheduled restore drill of the newest backup into a scratch instance."""

    enabled: bool = True
    schedule: Annotated[str, Field(pattern=_CRON)] = "30 4 * * 0"


class BackupSettings(ConfigModel):
    enabled: bool = True
    schedule: Annotated[str, Field(pattern=_CRON)] = "0 3 * * *"
    retention: Annotated[int, int_range(1, 365)] = 7
    size: MemQuantity = "2Gi"
    #: The key that encrypts new backups: the generated `k1` or one of ``moontv:backupKeys``.
    key_id: Annotated[str, Field(pattern=_KEY_ID)] = GENERATED_BACKUP_KEY
    offsite: OffsiteSettings | None = None
    drill: DrillSettings = DrillSettings()


class StorageSettings(ConfigModel):
    kind: Literal["kvrocks", "redis", "external"] = "kvrocks"
    #: For ``external``: the protocol MoonTV speaks to the URL in ``moontv:storageUrl``.
    external_type: Literal["kvrocks", "redis"] = "redis"
    size: MemQuantity = "5Gi"
    #: false: the data lives in an emptyDir of ``size`` and goes with the pod (review stacks).
    persistent: bool = True
    storage_class: str | None = None
    kvrocks_image: str = "apache/kvrocks:2.11.1"
    redis_image: str = "redis:7.4.2-alpine"
    #: Prometheus exporter sidecar of the storage StatefulSet (metrics port 9121).
    exporter_image: str = "oliver006/redis_exporter:v1.67.0"
    backup: BackupSettings = BackupSettings()

    @property
    def app_type(self) -> Literal["kvrocks", "redis"]:
        """The NEXT_PUBLIC_STORAGE_TYPE the app is given."""
        return self.external_type if self.kind == "external" else self.kind


class KubernetesSettings(ConfigModel):
    """Where Kubernetes objects go: a kubeconfig context, or YAML rendered to a directory."""

    context: str | None = None
    kubeconfig: str | None = None
    render_dir: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> KubernetesSettings:
        if self.render_dir and (self.context or self.kubeconfig):
            raise ValueError("set either renderDir or context/kubeconfig, not both")
        return self


class GatewayRef(ConfigModel):
    name: DnsLabel = "moontv-gateway"
    namespace: DnsLabel = "gateway-system"
    section_name: str | None = None


class TlsSettings(ConfigModel):
    secret_name: DnsLabel | None = None
    issuer: str | None = None  # cert-manager ClusterIssuer

    @model_validator(mode="after")
    def _one_source(self) -> TlsSettings:
        if self.secret_name and self.issuer:
            raise ValueError("set either secretName or issuer, not both")
        return self


class TrafficSettings(ConfigModel):
    host: Annotated[str, Field(pattern=_DNS_NAME)] = "moontv.local"
    provider: Literal["gateway", "nginx"] = "gateway"
    gateway: GatewayRef = GatewayRef()
    ingress_class: str = "nginx"
    #: Namespace whose pods (the gateway or ingress controller) may reach the app.
    controller_namespace: DnsLabel | None = None
    tls: TlsSettings = TlsSettings()

    @property
    def allowed_namespace(self) -> str:
        if self.controller_namespace:
            return self.controller_namespace
        return self.gateway.namespace if self.provider == "gateway" else "ingress-nginx"


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ValueError(
            "must be an IPv4 or IPv6 network in CIDR notation, address/prefix length with no "
            "host bits set (e.g. 169.254.20.10/32 or 0.0.0.0/0)"
        ) from None
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]


class DnsEgressSettings(ConfigModel):
    """Where pods may send DNS queries (port 53, UDP and TCP): the pods of ``namespace`` (the
    cluster DNS, e.g. CoreDNS in kube-system) and the addresses in ``cidrs`` (a node-local DNS
    cache such as 169.254.20.10, or a DNS server outside the pod network). The default allows
    any address, so node-local caches and host DNS work out of the box."""

    namespace: DnsLabel | None = "kube-system"
    cidrs: tuple[Cidr, ...] = ("0.0.0.0/0",)

    @model_validator(mode="after")
    def _some_target(self) -> DnsEgressSettings:
        if not self.namespace and not self.cidrs:
            raise config_error(
                "needs a namespace or at least one CIDR: with neither, no pod could resolve names"
            )
        return self


class NetworkPolicySettings(ConfigModel):
    dns: DnsEgressSettings = DnsEgressSettings()


class SwarmSettings(ConfigModel):
    """The ``moontv:swarm`` object (camelCase keys)."""

    http_port: Annotated[int, int_range(1, 65535)] = 80
    edge_image: str = "traefik:v3.7.13"
    #: Overrides storage.kvrocksImage / storage.redisImage on Swarm.
    storage_image: str | None = None
    #: The image's command, run by the secrets entrypoint wrapper.
    app_command: tuple[str, ...] = ("node", "start.js")
    health_interval: Annotated[str, Field(pattern=r"^[0-9]+(ms|s|m)$")] = "10s"
    constraints: tuple[str, ...] = ()
    edge_constraints: tuple[str, ...] = ("node.role == manager",)


class MoonTVSettings(ConfigModel):
    """The whole ``moontv:*`` namespace of a stack (secret keys are handled apart)."""

    environment: Literal["dev", "review", "testing", "staging", "prod"]
    platform: Literal["kubernetes", "swarm"] = "kubernetes"
    namespace: DnsLabel = "moontv"
    image: ImageSettings
    site: SiteSettings = SiteSettings()
    owner: OwnerSettings = OwnerSettings()
    replicas: Annotated[int, int_range(1, 50)] = 1
    resources: ResourceSettings = ResourceSettings()
    autoscaling: AutoscalingSettings = AutoscalingSettings()
    storage: StorageSettings = StorageSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    traffic: TrafficSettings = TrafficSettings()
    network_policy: NetworkPolicySettings = NetworkPolicySettings()
    release: release_model.ReleaseSettings = release_model.ReleaseSettings()
    swarm: SwarmSettings = SwarmSettings()
    monitoring: MonitoringSettings = MonitoringSettings.model_validate({"enabled": False})
    # Secret keys are declared so unknown-key checks accept them; their values are read apart.
    owner_password: pydantic.SecretStr | None = None
    storage_url: pydantic.SecretStr | None = None
    registry_password: pydantic.SecretStr | None = None
    alert_receiver_urls: dict[str, pydantic.SecretStr] | None = None
    backup_keys: dict[str, pydantic.SecretStr] | None = None
    backup_offsite_secret_key: pydantic.SecretStr | None = None

    @pydantic.field_validator("backup_keys", mode="before")
    @classmethod
    def _decode_object(cls, value: Any) -> Any:
        """A secret object arrives as its JSON text."""
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def plan(self) -> release_model.ReleasePlan:
        return release_model.plan(self.release, self.image.version, self.replicas)


@dataclass(frozen=True)
class Settings:
    """Validated settings plus the secret values as ``pulumi.Output`` secrets."""

    config: MoonTVSettings
    stack: str
    project: str
    owner_password: pulumi.Output[str]
    storage_url: pulumi.Output[str] | None  # only for storage.kind == "external"
    registry_password: pulumi.Output[str] | None
    #: receiver name -> URL (webhook, Slack) or SMTP password (email), secret Outputs.
    receiver_secrets: dict[str, pulumi.Output[str]]
    #: backup key id -> key material from ``moontv:backupKeys`` (the generated k1 is added later).
    backup_keys: dict[str, pulumi.Output[str]] | None = None
    backup_offsite_secret_key: pulumi.Output[str] | None = None

    @property
    def plan(self) -> release_model.ReleasePlan:
        return self.config.plan()


def _raw_config() -> dict[str, Any]:
    """Every ``moontv:*`` key of the stack, JSON values decoded, secrets still plain text here."""
    merged: dict[str, Any] = {}
    merged.update(pulumi.runtime.config.get_config_env() or {})
    merged.update(pulumi.runtime.config.CONFIG.get())
    raw: dict[str, Any] = {}
    for full_key, value in merged.items():
        if not full_key.startswith(PREFIX):
            continue
        key = full_key[len(PREFIX):]
        if isinstance(value, str) and key not in SECRET_KEYS:
            with contextlib.suppress(ValueError):  # else a plain string value
                value = json.loads(value)
        raw[key] = value
    return raw


def _unprotected_secrets(raw: dict[str, Any]) -> list[str]:
    """Secret keys that were set without ``--secret`` (they would sit in plain text)."""
    env_secrets = set(pulumi.runtime.config.get_config_secret_keys_env())
    return [
        f"{PREFIX}{key}: must be set as a secret (pulumi config set --secret {PREFIX}{key} …)"
        for key in sorted(SECRET_KEYS & raw.keys())
        if not pulumi.runtime.config.is_config_secret(f"{PREFIX}{key}")
        and f"{PREFIX}{key}" not in env_secrets
    ]


def cross_checks(model: MoonTVSettings) -> list[str]:
    """Rules that span several keys or depend on the environment."""
    problems = []
    if model.environment == "prod":
        for track in model.plan().tracks:
            if "@sha256:" not in track.version:
                problems.append(
                    f"{PREFIX}{VERSION_KEYS[track.name]}: prod requires a digest-pinned version "
                    f"(tag@sha256:<64 hex>), got {track.version!r}"
                )
        if model.replicas < 3:
            problems.append(f"{PREFIX}replicas: prod requires at least 3, got {model.replicas}")
    if not model.storage.persistent and model.platform == "swarm":
        problems.append(
            f"{PREFIX}storage.persistent: false is Kubernetes-only (an emptyDir); on the swarm "
            "platform storage is a named volume, remove the key"
        )
    if model.storage.kind == "external" and model.storage_url is None:
        problems.append(
            f"{PREFIX}storageUrl: required when storage.kind is 'external' "
            f"(pulumi config set --secret {PREFIX}storageUrl redis://…)"
        )
    missing = missing_receiver_secrets(model.monitoring.receivers, model.alert_receiver_urls or {})
    if missing:
        problems.append(
            f"{PREFIX}alertReceiverUrls: needs a secret value for receiver(s) {', '.join(missing)} "
            f"(pulumi config set --secret --path {PREFIX}alertReceiverUrls.{missing[0]} …)"
        )
    problems += _backup_checks(model)
    return problems


def _backup_checks(model: MoonTVSettings) -> list[str]:
    backup = model.storage.backup
    problems = []
    keys = model.backup_keys or {}
    for key_id, material in keys.items():
        if not re.fullmatch(_KEY_ID, key_id):
            problems.append(f"{PREFIX}backupKeys.{key_id}: key ids are letters, digits, '.', '_' "
                            "and '-' (at most 63)")
        if len(material.get_secret_value()) < 32:
            problems.append(f"{PREFIX}backupKeys.{key_id}: needs at least 32 characters of key "
                            "material (e.g. `openssl rand -base64 32`)")
    if backup.key_id != GENERATED_BACKUP_KEY and backup.key_id not in keys:
        problems.append(
            f"{PREFIX}storage.backup.keyId: must be {GENERATED_BACKUP_KEY} (generated) or a key of "
            f"{PREFIX}backupKeys, got {backup.key_id!r} (pulumi config set --secret --path "
            f"{PREFIX}backupKeys.{backup.key_id} \"$(openssl rand -base64 32)\")"
        )
    if backup.offsite is not None and model.backup_offsite_secret_key is None:
        problems.append(
            f"{PREFIX}backupOffsiteSecretKey: required with storage.backup.offsite (the secret "
            f"access key; pulumi config set --secret {PREFIX}backupOffsiteSecretKey …)"
        )
    return problems


def validate(raw: dict[str, Any]) -> MoonTVSettings:
    """Validate a raw ``moontv`` config mapping; raise ConfigError listing every problem."""
    # `latest` is a moving target: accepted in dev only (the release module enforces it).
    context = {release_model.ALLOW_LATEST: raw.get("environment") == "dev"}
    try:
        model = MoonTVSettings.model_validate(raw, context=context)
    except pydantic.ValidationError as exc:
        raise ConfigError(
            format_errors(exc, PREFIX, model=MoonTVSettings, redact=SECRET_KEYS)
        ) from None
    try:
        problems = cross_checks(model)
    except release_model.ReleaseError as exc:
        problems = [str(exc)]
    if problems:
        raise ConfigError(problems)
    return model


def _receiver_url(urls: pulumi.Output[Any], name: str) -> pulumi.Output[str]:
    url: pulumi.Output[str] = urls.apply(lambda u: str((u or {})[name]))
    return pulumi.Output.secret(url)


def load() -> Settings:
    """Read and validate the stack's ``moontv:*`` config (call inside a Pulumi program)."""
    raw = _raw_config()
    problems = _unprotected_secrets(raw)
    try:
        config = validate(raw)
    except ConfigError as exc:
        raise ConfigError(exc.problems + problems) from None
    if problems:
        raise ConfigError(problems)
    cfg = pulumi.Config(NAMESPACE)
    password = cfg.get_secret("ownerPassword")
    if password is None:
        password = generated_password("owner-password", length=24)
    storage_url = cfg.get_secret("storageUrl") if config.storage.kind == "external" else None
    urls = cfg.get_secret_object("alertReceiverUrls")
    receivers: dict[str, pulumi.Output[str]] = {}
    if urls is not None:
        for name in config.monitoring.secret_receivers():
            receivers[name] = _receiver_url(urls, name)
    return Settings(
        config=config,
        stack=pulumi.get_stack(),
        project=pulumi.get_project(),
        owner_password=password,
        storage_url=storage_url,
        registry_password=cfg.get_secret("registryPassword"),
        receiver_secrets=receivers,
        backup_keys=_backup_keys(cfg, config),
        backup_offsite_secret_key=cfg.get_secret("backupOffsiteSecretKey"),
    )


def _backup_keys(cfg: pulumi.Config, config: MoonTVSettings) -> dict[str, pulumi.Output[str]]:
    keys = cfg.get_secret_object("backupKeys")
    if keys is None:
        return {}
    return {name: _receiver_url(keys, name) for name in (config.backup_keys or {})}


